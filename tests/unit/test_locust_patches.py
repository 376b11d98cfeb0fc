"""One test per override in seldon_load.locust.patches: each fails when Locust changes under it
(a constant renamed or no longer read at run time, a signature changed, a listener moved)."""

from __future__ import annotations

import inspect

import locust
import locust.runners
from locust import User
from locust.env import Environment
from locust.event import EventHook
from locust.runners import MasterRunner, WorkerRunner

from seldon_load.locust import patches
from seldon_load.users import REQUEST_TYPE


class _Quiet(User):
    abstract = False


def _local_env() -> Environment:
    env = Environment(user_classes=[_Quiet])
    env.create_local_runner()
    return env


def test_checked_with_the_installed_locust():
    assert locust.__version__ in patches.CHECKED_WITH, (
        f"Locust {locust.__version__}: re-check every patch in seldon_load/locust/patches.py, then add it to "
        "CHECKED_WITH")


def test_module_constants_exist_and_are_read_at_run_time():
    for name in ("WORKER_REPORT_INTERVAL", "MASTER_HEARTBEAT_TIMEOUT"):
        assert isinstance(getattr(locust.runners, name), (int, float)), name
    # read as module globals inside the worker's loops (not bound once as default arguments)
    worker_src = inspect.getsource(WorkerRunner)
    assert "gevent.sleep(WORKER_REPORT_INTERVAL)" in worker_src
    assert "- MASTER_HEARTBEAT_TIMEOUT" in worker_src
    patches.set_module_constants()
    assert locust.runners.WORKER_REPORT_INTERVAL == patches.WORKER_REPORT_INTERVAL_S
    assert locust.runners.MASTER_HEARTBEAT_TIMEOUT == patches.MASTER_HEARTBEAT_TIMEOUT_S


class _FakeGreenlet:
    def __init__(self) -> None:
        self.killed = 0

    def kill(self, block: bool = False) -> None:
        self.killed += 1


def test_quit_once_calls_locusts_quit_once_then_only_stops():
    # what the wrapper relies on: MasterRunner.quit() and stop(send_stop_to_client=...), runner.greenlet
    assert list(inspect.signature(MasterRunner.quit).parameters) == ["self"]
    assert "send_stop_to_client" in inspect.signature(MasterRunner.stop).parameters
    assert "self.greenlet = " in inspect.getsource(locust.runners.Runner.__init__)
    calls = []

    class Runner:
        greenlet = _FakeGreenlet()

        def quit(self) -> None:
            calls.append("quit")

        def stop(self, send_stop_to_client: bool = True) -> None:
            calls.append(("stop", send_stop_to_client))

    r = Runner()
    patches.quit_once(r)
    r.quit()
    r.quit()
    r.quit()
    assert calls == ["quit", ("stop", False), ("stop", False)]
    assert r.greenlet.killed == 2


def test_scrub_failures_rewrites_what_locusts_statistics_see():
    assert "reverse" in inspect.signature(EventHook.fire).parameters
    env = _local_env()
    secret = "Bearer s3cr3t-token-value"
    patches.scrub_failures(env, [secret])
    patches.scrub_failures(env, [secret])  # idempotent: wraps the original once
    env.events.request.fire(request_type=REQUEST_TYPE, name="n", response_time=1.0, response_length=0,
                            context={}, exception=ValueError(f"echo: {secret}"))
    errors = [str(e.error) for e in env.stats.errors.values()]
    assert errors and all(secret not in e and "***" in e for e in errors)
    patches.scrub_failures(env, [])  # no secrets: Locust's own fire again
    assert env.events.request.fire == env.events.request._seldon_load_fire


def test_wrap_template_args_edits_after_each_locust_rebuild(monkeypatch):
    from locust.web import WebUI

    monkeypatch.setattr("sys.argv", ["locust"])  # Locust's web UI parses the command line for its form
    assert "self.update_template_args()" in inspect.getsource(WebUI.__init__)  # the index page rebuilds them
    env = _local_env()
    env.host = "http://user:pw@127.0.0.1:1"
    web_ui = env.create_web_ui("127.0.0.1", 0, delayed_start=True)
    patches.wrap_template_args(web_ui, lambda args: args.update(host="edited"))
    assert web_ui.template_args["host"] == "edited"
    web_ui.template_args["host"] = "x"
    web_ui.update_template_args()  # what Locust's index route calls
    assert web_ui.template_args["host"] == "edited"
    assert "extended_tabs" not in web_ui.template_args or web_ui.template_args["extended_tabs"]


def test_login_endpoints_exist_in_locusts_blueprint(monkeypatch):
    monkeypatch.setattr("sys.argv", ["locust"])
    env = _local_env()
    web_ui = env.create_web_ui("127.0.0.1", 0, delayed_start=True)
    endpoints = set(web_ui.app.view_functions)
    assert {patches.INDEX_ENDPOINT, patches.LOGIN_ENDPOINT} <= endpoints


def test_locusts_statistics_listener_is_recognised_and_a_second_one_is_not():
    env = _local_env()
    hook = env.events.request
    assert patches.only_locust_stats_listen(hook), "Locust's own request listener moved or was renamed"
    hook.add_listener(lambda **kw: None)
    assert not patches.only_locust_stats_listen(hook)


def test_extend_stats_uses_locusts_bucketing_and_statsentry_fields():
    assert patches.bucket() is not None
    env = _local_env()
    patches.extend_stats(env.stats, "n", REQUEST_TYPE, [(1.0, 10), (250.0, 20), (1234.5, 30)])
    entry = env.stats.get("n", REQUEST_TYPE)
    assert entry.num_requests == 3 and env.stats.total.num_requests == 3
    assert entry.total_content_length == 60
    assert entry.min_response_time == 1.0 and entry.max_response_time == 1234.5
    assert sum(entry.response_times.values()) == 3


def test_a_master_stop_in_init_does_nothing_so_an_unstarted_test_is_marked_stopped():
    from locust.runners import STATE_INIT, STATE_STOPPED

    src = inspect.getsource(MasterRunner.stop)
    assert "if self.state not in [STATE_INIT, STATE_STOPPED, STATE_STOPPING]" in src  # why the patch exists
    env = Environment(user_classes=[_Quiet])
    runner = env.create_master_runner("127.0.0.1", 0)
    try:
        runner.update_state(STATE_INIT)
        runner.stop()
        assert runner.state == STATE_INIT
        patches.mark_unstarted_test_stopped(runner)
        assert runner.state == STATE_STOPPED
    finally:
        runner.quit()
    local = _local_env().runner
    before = local.state
    patches.mark_unstarted_test_stopped(local)  # a local runner's stop already does it
    assert local.state == before
