"""Every place seldon-load overrides Locust's behaviour or reads its internals, in one module.

Each patch says why it exists and was checked against Locust ``CHECKED_WITH``;
tests/unit/test_locust_patches.py has a test per patch that fails when Locust changes
under it (a renamed constant, a changed signature, a listener that moved). Nothing
outside this module reaches into Locust's private attributes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import locust.runners
from locust import stats as locust_stats

from seldon_load.settings import scrub

CHECKED_WITH = ("2.47.0",)  # the Locust versions these patches were checked against

# ---- module constants -----------------------------------------------------------------------
# Workers ship measurements every second (Locust's default is 3 s), so verdicts come sooner.
WORKER_REPORT_INTERVAL_S = 1.0
# A worker whose master vanished (killed, machine lost) quits after this long without the
# master's heartbeat answer (Locust's default is 60 s of load sent on behalf of nobody). The
# master answers every worker heartbeat, once a second.
MASTER_HEARTBEAT_TIMEOUT_S = 10


def set_module_constants() -> None:
    """Locust reads both as module globals of ``locust.runners`` at run time."""
    locust.runners.WORKER_REPORT_INTERVAL = WORKER_REPORT_INTERVAL_S
    locust.runners.MASTER_HEARTBEAT_TIMEOUT = MASTER_HEARTBEAT_TIMEOUT_S


# ---- runner.quit ----------------------------------------------------------------------------
def quit_once(runner) -> None:
    """A headless Locust master running a shape calls ``quit`` three times on its way out (at the
    shape's end, in main's stop, in main's shutdown) and each call waits 0.5 s for the workers'
    last statistics: the first call's wait gets them, the workers are gone after it, so the later
    calls only stop (a 2 s run with one worker ended 5.5 s after its start, now 3.85 s)."""
    first = runner.quit
    quit_before = False

    def quit_once_() -> None:
        nonlocal quit_before
        if not quit_before:
            quit_before = True
            first()
        else:
            runner.stop(send_stop_to_client=False)
            runner.greenlet.kill(block=True)

    runner.quit = quit_once_


# ---- runner state ---------------------------------------------------------------------------
def mark_unstarted_test_stopped(runner) -> None:
    """A master whose shape ends at its first tick (the web UI's preflight failed) stays in INIT,
    because ``MasterRunner.stop`` ignores that state, and Locust's web UI shows INIT as the start
    form: the Saturation tab that says why nothing ran would stay hidden. Mark it stopped, as a
    local runner's ``stop`` does (nothing was spawned, so there is nothing to stop)."""
    if isinstance(runner, locust.runners.MasterRunner) and runner.state == locust.runners.STATE_INIT:
        runner.update_state(locust.runners.STATE_STOPPED)


# ---- the request event's fire ---------------------------------------------------------------
def scrub_failures(environment, secrets: list[str]) -> None:
    """Failure messages (what a server answered) go to Locust's statistics, console and web UI:
    replace any secret a server echoed before Locust sees it. Only failures pay for this.
    Idempotent: the original ``fire`` is kept on the hook and wrapped at most once."""
    hook = environment.events.request
    fire = getattr(hook, "_seldon_load_fire", None) or hook.fire
    hook._seldon_load_fire = fire
    if not secrets:
        hook.fire = fire
        return

    def scrubbed_fire(*, reverse: bool = False, **kwargs):
        exc = kwargs.get("exception")
        if exc is not None:
            text = str(exc)
            clean = scrub(text, secrets)
            if clean != text:
                kwargs["exception"] = type(exc)(clean) if isinstance(exc, Exception) else clean
        return fire(reverse=reverse, **kwargs)

    hook.fire = scrubbed_fire


# ---- the web UI's template arguments --------------------------------------------------------
def wrap_template_args(web_ui, edit: Callable[[dict], None]) -> None:
    """Locust rebuilds ``template_args`` in ``update_template_args`` on every page load: run
    ``edit`` on them after each rebuild (and once now)."""
    update = web_ui.update_template_args

    def update_then_edit() -> None:
        update()
        edit(web_ui.template_args)

    web_ui.update_template_args = update_then_edit
    update_then_edit()


# Locust's Flask blueprint endpoints the web login redirects to
INDEX_ENDPOINT, LOGIN_ENDPOINT = "locust.index", "locust.login"


# ---- statistics in bulk ---------------------------------------------------------------------
# The qualified name of the listener Locust's runner adds to the request event for its statistics.
LOCUST_STATS_LISTENER = "Runner.__init__.<locals>.on_request"


def only_locust_stats_listen(hook) -> bool:
    """True when the runner's statistics are the ``request`` event's one listener (a locustfile
    or plugin that listens too must see every answer as its own event)."""
    handlers = getattr(hook, "_handlers", None)
    return (handlers.__class__ is list and len(handlers) == 1
            and getattr(handlers[0], "__qualname__", "") == LOCUST_STATS_LISTENER
            and bucket() is not None)


def bucket() -> Callable[[float], int] | None:
    """Locust's response-time bucketing, looked up each time (it may be replaced at run time)."""
    return getattr(locust_stats, "bucket_response_time", None)


def extend_stats(stats: Any, name: str, method: str, batch: list[tuple[float, int]]) -> None:
    """Add a batch of successful answers (response time ms, length) to ``stats`` as Locust's
    ``on_request`` would, one ``StatsEntry.extend`` per entry instead of two ``log`` calls per
    answer (what Locust's master does with a worker's report)."""
    part = locust_stats.StatsEntry(stats, name, method)
    times = [rt for rt, _ in batch]
    to_bucket, counts = bucket(), part.response_times
    for rt in times:
        counts[to_bucket(rt)] += 1
    now = time.time()
    part.num_requests = len(batch)
    part.total_response_time = sum(times)
    part.min_response_time = min(times)
    part.max_response_time = max(times)
    part.total_content_length = sum(length for _, length in batch)
    part.num_reqs_per_sec[int(now)] = len(batch)
    part.last_request_timestamp = now
    stats.get(name, method).extend(part)
    stats.total.extend(part)
