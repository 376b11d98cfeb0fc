"""The listeners of Locust's events that run a seldon-load test on every kind of process.

``seldon_load.plugin`` registers ``on_init`` (and the options) when a locustfile imports it.
Control messages between master and workers are the typed ``messages`` classes, one handler
per type; measurements ride on Locust's own ``worker_report`` (key ``seldon_load``), with the
plan the worker runs (key ``seldon_load_plan``: a worker that missed one gets it again).
"""

from __future__ import annotations

import atexit
import logging
import signal
import sys
import threading
from time import perf_counter

import gevent
from locust.runners import STATE_RUNNING, STATE_SPAWNING, MasterRunner, WorkerRunner

from seldon_load.errors import SeldonLoadError
from seldon_load.locust import patches, webui
from seldon_load.locust.messages import FinalMessage, FlushMessage, PlanMessage, ReadyMessage, receive
from seldon_load.locust.progress import progress_loop
from seldon_load.locust.session import LOCAL, Session
from seldon_load.settings import check_results_dir
from seldon_load.users import ProcessState

log = logging.getLogger("seldon_load")

PLAN_RESEND_S = 1.0  # a worker still reporting an older plan this long after it was sent gets it again
WORKERS_WAIT_S = 5.0  # a headless master's own short-step wait for its workers (then Locust's loop)


def _fail(msg: str) -> None:
    sys.stderr.write(f"seldon-load: error: {msg}\n")
    sys.stderr.flush()
    sys.exit(2)


def on_init(environment, **_kw) -> None:
    session = Session(environment)
    environment.seldon_load = session
    runner = environment.runner
    if runner is None:
        return
    ev = environment.events
    ev.report_to_master.add_listener(lambda client_id, data, **kw: _on_report_to_master(session, data))
    ev.worker_report.add_listener(lambda client_id, data, **kw: _on_worker_report(session, client_id, data))
    ev.test_start.add_listener(lambda **kw: _on_test_start(session))
    ev.test_stop.add_listener(lambda **kw: _on_test_stop(session))
    if isinstance(runner, WorkerRunner):
        runner.register_message(PlanMessage.NAME, lambda environment, msg, **kw: _on_plan(session, msg))
        runner.register_message(FlushMessage.NAME, lambda environment, msg, **kw: _on_flush(session, msg))
        if runner.worker_state in (STATE_SPAWNING, STATE_RUNNING):
            # the master's first spawn came while this worker was still connecting, before this
            # init: its test_start fired with no listener, so do its work now
            _on_test_start(session)
        return
    opts = environment.parsed_options
    headless = bool(getattr(opts, "headless", False))
    # `docker stop`, Kubernetes and `seldon-load run` end a master with SIGTERM, which a headless
    # Locust master running a shape only handles later (if at all): make it Ctrl-C, which stops the
    # test, writes the results and tells the workers to quit.
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        settings = session.load_settings()
        patches.scrub_failures(environment, settings.secrets)
        check_results_dir(settings.results_dir)
        session.pipeline_spec()
        if settings.metrics_urls or settings.prometheus_url:
            session.preflight_scrape()
        if headless and not isinstance(runner, MasterRunner):
            session.ensure_process().preflight()
        elif headless:
            probe = ProcessState(environment, settings, "preflight")
            try:
                probe.preflight()
            finally:
                probe.close()
    except SeldonLoadError as exc:
        if headless:
            _fail(str(exc))
        log.warning("%s (fix it in the form before starting)", exc)
    if isinstance(runner, MasterRunner):
        runner.register_message(FinalMessage.NAME, lambda environment, msg, **kw: _on_final(session, msg))
        runner.register_message(ReadyMessage.NAME, lambda environment, msg, **kw: _on_worker_ready(session, msg))
    if environment.web_ui:
        webui.install_request_guard(environment, list(getattr(opts, "web_allowed_host", None) or []))
        webui.install(environment, session)
        webui.hide_host_credentials(environment)
        if getattr(opts, "web_login", False):
            webui.install_web_login(environment, _fail)
    if headless:
        gevent.spawn(progress_loop, session)
        atexit.register(_results_when_no_test_ran, session)
        if isinstance(runner, MasterRunner):
            patches.quit_once(runner)
            _wait_for_workers(runner, int(getattr(opts, "expect_workers", 1) or 1))


def _wait_for_workers(runner, expected: int) -> None:
    """Locust's headless master looks for its workers once a second, right after this init: a
    worker that connects a few ms after that look costs the whole test a second's start.
    Waiting here in short steps starts it as soon as they are ready; workers slower than
    WORKERS_WAIT_S are left to Locust's own wait and its --expect-workers-max-wait."""
    deadline = perf_counter() + WORKERS_WAIT_S
    while len(runner.clients.ready) < expected and perf_counter() < deadline:
        gevent.sleep(0.02)


def _on_plan(session: Session, msg) -> None:
    plan = receive(PlanMessage, msg.data, "the master")
    if plan is not None:
        session.on_plan(plan)


def _on_flush(session: Session, msg) -> None:
    flush = receive(FlushMessage, msg.data, "the master")
    if flush is not None:
        gevent.spawn(_worker_flush, session, flush)


def _worker_flush(session: Session, flush: FlushMessage) -> None:
    session.stop_closed_loop_users()
    proc = session.process
    if flush.stop and proc is not None and proc.engine is not None:
        proc.engine.stop()  # the master was interrupted: stop the schedule, drain what is in flight
    if proc is not None and proc.test_id == flush.test_id:
        deadline = perf_counter() + proc.settings.drain_timeout_s + 5
        while proc.engine is not None and not proc.engine_done and perf_counter() < deadline:
            gevent.sleep(0.1)
    report = proc.recorder.drain() if proc is not None else None
    session.runner.send_message(FinalMessage.NAME, FinalMessage(flush.test_id, report).to_wire())


def _on_final(session: Session, msg) -> None:
    final = receive(FinalMessage, msg.data, f"worker {msg.node_id}")
    if final is None or final.test_id != session.test_id or session.controller is None:
        return
    if final.report is not None and not session.aggregate.merge(final.report, msg.node_id):
        log.warning("%s", session.aggregate.last_error)
    session.controller.on_final(msg.node_id)


def _on_report_to_master(session: Session, data: dict) -> None:
    proc = session.process
    if proc is not None:
        if proc.stats_feed is not None:
            proc.stats_feed.flush()
        data["seldon_load"] = proc.recorder.drain()
    data["seldon_load_plan"] = [proc.test_id, proc.plan_version] if proc is not None else [None, 0]


def _on_worker_report(session: Session, client_id: str, data: dict) -> None:
    if "seldon_load" in data and session.controller is not None:
        if not session.aggregate.merge(data["seldon_load"], client_id):
            log.warning("%s", session.aggregate.last_error)
    if "seldon_load_plan" in data:
        _resend_missed_plan(session, client_id, data["seldon_load_plan"])


def _resend_missed_plan(session: Session, client_id: str, has: list) -> None:
    """A worker's report names the plan it runs: one that missed the current plan (a message
    can reach a worker before its handlers exist, and Locust drops it) gets it again."""
    c = session.controller
    if c is None or c.t0 is None or c.done or client_id not in c.engine_ids:
        return
    if list(has) == [session.test_id, c.plan_version]:
        return
    now = perf_counter()
    if now - c.published_at < PLAN_RESEND_S or now - session.resent_at.get(client_id, 0.0) < PLAN_RESEND_S:
        return  # the plan may still be on its way
    session.resent_at[client_id] = now
    log.info("worker %s runs plan %s of %s: sending it again", client_id, has, [session.test_id, c.plan_version])
    c.publish_to(client_id)


def _on_worker_ready(session: Session, msg) -> None:
    if receive(ReadyMessage, msg.data, f"worker {msg.node_id}") is None:
        return
    c = session.controller
    if c is not None and c.t0 is not None and not c.done:
        c.publish_to(msg.node_id)


def _on_test_start(session: Session) -> None:
    env = session.environment
    if not session.is_worker and env.shape_class is None:
        # plain `locust -u N` without our shape: a closed-loop controller for the results
        try:
            session.new_controller().start()
        except SeldonLoadError as exc:
            log.error("%s", exc)
    if session.is_master:
        if session.settings is not None:
            patches.scrub_failures(env, session.settings.secrets)
        return
    try:
        proc = session.ensure_process()
        patches.scrub_failures(env, session.settings.secrets)  # workers learn the headers only now
    except SeldonLoadError as exc:
        log.error("%s", exc)
        return
    if session.is_worker and proc.schedule.t0 is None:
        session.runner.send_message(ReadyMessage.NAME, ReadyMessage().to_wire())


def _on_test_stop(session: Session) -> None:
    environment = session.environment
    if not session.is_master:
        session.settings_current = False  # the next test's plan waits for its test_start
    if session.is_worker or session.controller is None or session.results is not None:
        return
    if not session.is_master and session.process is not None:
        session.finish_in_flight()
        session.aggregate.merge(session.process.recorder.drain(), LOCAL)
    c = session.controller
    if not c.done and c.t0 is not None:  # stopped before the plan's end: Ctrl-C, SIGTERM, the web UI
        c.notes.append(f"interrupted at t={c.elapsed():.0f}s: the results cover the run until then")
        if session.is_master:
            _collect_finals_after_interrupt(session)
    from seldon_load.report.outputs import publish

    results = session.build()
    opts = environment.parsed_options
    # with Locust's --json, standard output belongs to Locust's JSON: our summary goes to stderr
    publish(results, session.settings.results_dir, headless=bool(getattr(opts, "headless", False)),
            stream=sys.stderr if getattr(opts, "json", False) else sys.stdout)
    environment.process_exit_code = 0 if results["passed"] else 1


def _results_when_no_test_ran(session: Session) -> None:
    """At exit of a headless master: Ctrl-C while Locust still waits for its workers (or Locust giving
    up on them) ends the process without a test_stop. Scripts and CI read results.json whatever
    happened, so write one that says no test ran and fails."""
    if session.results is not None or session.settings is None:
        return
    if session.controller is not None and session.controller.t0 is not None:
        return  # a test ran; its test_stop writes (or wrote) the results
    try:
        if session.controller is None:
            session.new_controller()
        runner = session.runner
        ready = f"{len(runner.clients.ready)} of {session.environment.parsed_options.expect_workers} workers " \
                "were connected" if session.is_master else "the test had not started"
        session.controller.notes.append(f"no test ran: stopped before it started ({ready}); nothing was measured")
        from seldon_load.report.outputs import publish

        results = session.build()
        results["passed"] = False
        publish(results, session.settings.results_dir, headless=True, stream=sys.stderr)
    except Exception as exc:  # noqa: BLE001 -- at exit: say why, never hide the interrupt behind a traceback
        sys.stderr.write(f"seldon-load: error: no results written: {type(exc).__name__}: {exc}\n")


def _collect_finals_after_interrupt(session: Session) -> None:
    """An interrupted distributed run (Ctrl-C, SIGTERM): ask every worker to stop its schedule and send
    what it measured, and wait for that (bounded by the drain timeout), so its last second is not lost."""
    c = session.controller
    session.runner.send_message(FlushMessage.NAME, FlushMessage(session.test_id, stop=True).to_wire())
    deadline = perf_counter() + session.settings.drain_timeout_s + 3
    while not set(c.engine_ids) <= c.finals and perf_counter() < deadline:
        gevent.sleep(0.1)


