"""Wiring of Locust's events to the load controller, measurements, analysis and reports.

Importing this module (every seldon-load locustfile does) registers the options and the
event listeners. Messages that cross the worker -> master boundary are small versioned
dicts, one handler per type:

* ``seldon_load:plan``  master -> worker: the rate plan, test clock, this worker's share;
* ``seldon_load:flush`` master -> worker: the plan is over, send everything you have;
* ``seldon_load:final`` worker -> master: the last measurements of this worker;
* ``seldon_load:ready`` worker -> master: settings loaded and no plan yet, send it;
* measurements between those ride on Locust's own ``worker_report`` (key ``seldon_load``),
  with the plan the worker runs (key ``seldon_load_plan``: a worker that missed one gets it again).
"""

from __future__ import annotations

import atexit
import logging
import signal
import sys
import threading
import uuid
from time import perf_counter

import gevent
import locust.runners
from locust import LoadTestShape, events
from locust.runners import STATE_MISSING, STATE_RUNNING, STATE_SPAWNING, MasterRunner, WorkerRunner

from seldon_load.analyze.results import build_results
from seldon_load.errors import ConfigError, SeldonLoadError
from seldon_load.load.control import Controller, ControllerConfig, Verdict
from seldon_load.measure.aggregate import Aggregate
from seldon_load.settings import Settings, add_arguments, check_results_dir, scrub
from seldon_load.users import OIPUser, OpenLoopUser, ProcessState

log = logging.getLogger("seldon_load")

# workers ship measurements every second (Locust's default is 3 s), so verdicts come sooner
locust.runners.WORKER_REPORT_INTERVAL = 1.0
# A worker whose master vanished (killed, machine lost) quits after this long without the master's
# heartbeat answer (Locust's default is 60 s of load sent on behalf of nobody). The master answers
# every worker heartbeat, once a second.
MASTER_HEARTBEAT_TIMEOUT_S = 10
locust.runners.MASTER_HEARTBEAT_TIMEOUT = MASTER_HEARTBEAT_TIMEOUT_S

PLAN, FLUSH, FINAL = "seldon_load:plan", "seldon_load:flush", "seldon_load:final"
READY = "seldon_load:ready"  # worker -> master: settings loaded, send me my plan
PLAN_RESEND_S = 1.0  # a worker still reporting an older plan this long after it was sent gets it again
FINALS_WAIT_S = 0.9  # the shape's own short-step wait for the final reports (Locust ticks every 1 s)
WORKERS_WAIT_S = 5.0  # a headless master's own short-step wait for its workers (then Locust's loop)
LOCAL = "local"


class Session:
    """Everything seldon-load keeps on one Locust process (attached as ``env.seldon_load``)."""

    def __init__(self, environment) -> None:
        self.environment = environment
        self.settings: Settings | None = None
        self.process: ProcessState | None = None
        self.pending_plan: dict | None = None
        self.aggregate = Aggregate()
        self.controller: Controller | None = None
        self.test_id: str | None = None
        self.results: dict | None = None
        self.master_cpu = 0.0
        self.snapshots: list = []
        self._drainer = None
        self.resent_at: dict[str, float] = {}  # worker -> when its missed plan was last sent again

    @property
    def runner(self):
        return self.environment.runner

    @property
    def is_master(self) -> bool:
        return isinstance(self.runner, MasterRunner)

    @property
    def is_worker(self) -> bool:
        return isinstance(self.runner, WorkerRunner)

    def load_settings(self) -> Settings:
        opts = self.environment.parsed_options
        if self.environment.host:
            opts.host = _hide_url_credentials(self.environment, opts)
        self.settings = Settings.from_options(opts)
        return self.settings

    def ensure_process(self) -> ProcessState:
        settings = self.load_settings()
        if self.process is None:
            wid = self.runner.client_id if self.is_worker else LOCAL
            self.process = ProcessState(self.environment, settings, wid)
        elif self.process.settings != settings:
            self.process.close()
            self.process.settings = settings
            self.process._pool = None
            self.process.metadata = None
        self.process.autostart = self.is_worker
        if self.pending_plan is not None:
            self.process.on_plan(self.pending_plan)
            self.pending_plan = None
        return self.process

    # ---- master / local ---------------------------------------------------------------
    def new_controller(self) -> Controller:
        s = self.load_settings()
        self.aggregate = Aggregate()
        self.results = None
        self.test_id = uuid.uuid4().hex[:12]
        cfg = ControllerConfig(mode=s.mode, stages=s.stages, auto=s.auto, sweep=s.sweep, users=s.users,
                               spawn_rate=s.spawn_rate, run_time_s=s.run_time_s,
                               verdict_delay_s=2.5 if self.is_master else 1.5,
                               drain_timeout_s=s.drain_timeout_s)
        self.controller = Controller(cfg, _Channel(self), judge=self.judge, probe=self.probe)
        if not self.is_master:
            self._start_drainer()
        self.snapshots = []
        if s.metrics_urls or s.prometheus_url:
            gevent.spawn(self._scrape_loop, self.controller)
        return self.controller

    def scrape(self):
        from seldon_load.analyze.metrics import query_prometheus, scrape_all

        s = self.settings
        if s.prometheus_url:
            return query_prometheus(s.prometheus_url)
        return scrape_all(s.metrics_urls)

    def _scrape_loop(self, controller: Controller) -> None:
        """Scrape server metrics at each stage's measured start and end (counter deltas)."""
        done: set[tuple[int, str]] = set()
        while not controller.done and self.controller is controller:
            gevent.sleep(0.2)
            if controller.t0 is None:
                continue
            el = controller.elapsed()
            for win in list(controller.plan.stages):
                start, end = win.measured(self.settings.criteria.settle_s)
                for edge, at in (("start", start), ("end", end)):
                    if (win.index, edge) not in done and el >= at:
                        done.add((win.index, edge))
                        try:
                            self.snapshots.append((win.index, edge, self.scrape()))
                        except SeldonLoadError as exc:
                            log.warning("metrics scrape at stage %d %s failed: %s", win.index, edge, exc)

    def names(self) -> set[str] | None:
        return {self.settings.request_name} if self.settings else None

    def judge(self, win) -> Verdict:
        from seldon_load.analyze.judge import auto_verdict

        c = self.controller
        return auto_verdict(self.aggregate, c.plan.stages[: win.index + 1], self.names(), self.settings.criteria,
                            c.workers_timeline)

    def probe(self) -> str | None:
        """None when the target is ready again (the pre-flight check), else why not."""
        probe = ProcessState(self.environment, self.settings, "probe")
        try:
            probe.preflight()
        except (SeldonLoadError, OSError) as exc:
            return scrub(str(exc), self.settings.secrets)
        finally:
            probe.close()
        return None

    def _start_drainer(self) -> None:
        if self._drainer is None or self._drainer.dead:
            self._drainer = gevent.spawn(self._drain_loop)

    def _drain_loop(self) -> None:
        while True:
            gevent.sleep(1.0)
            if self.process is not None:
                self.aggregate.merge(self.process.recorder.drain(), LOCAL)

    def stop_closed_loop_users(self) -> None:
        """Closed loop, before the final report: let each user finish (and record) the request it has
        out, within the drain timeout, then stop it; otherwise answers arriving after the report were
        lost and requests cut off mid-flight were never counted."""
        s, runner = self.settings, self.runner
        if s is None or s.open_loop or runner is None or not runner.user_count:
            return
        env = self.environment
        saved = env.stop_timeout
        env.stop_timeout = max(0.1, min(s.timeout_s + 1.0, s.drain_timeout_s))
        try:
            runner.stop_users(dict(runner.user_classes_count))
        finally:
            env.stop_timeout = saved

    def finish_in_flight(self) -> None:
        """Before the last drain of a local run (also one stopped early): let the requests still out
        finish within the drain timeout, or cancel them, so each one is recorded exactly once."""
        engine = self.process.engine if self.process is not None else None
        if engine is None:
            return
        deadline = perf_counter() + self.settings.drain_timeout_s
        while engine.in_flight > 0 and perf_counter() < deadline:
            gevent.sleep(0.05)
        cancel = getattr(engine, "cancel", None)
        if engine.in_flight > 0 and cancel is not None:
            cancel(block=True)

    def flush_local(self) -> None:
        def run() -> None:
            self.stop_closed_loop_users()
            proc = self.process
            deadline = perf_counter() + self.settings.drain_timeout_s + 5
            while proc is not None and proc.engine is not None and not proc.engine_done and perf_counter() < deadline:
                gevent.sleep(0.1)
            if proc is not None:
                self.aggregate.merge(proc.recorder.drain(), LOCAL)
            if self.controller is not None:
                self.controller.on_final(LOCAL)

        gevent.spawn(run)

    def build(self) -> dict:
        s, c = self.settings, self.controller
        if not s.open_loop and c.plan.stages:
            last = c.plan.stages[-1]
            last.hold_end_s = max(last.hold_start_s + 1, min(last.hold_end_s, c.elapsed()))
        t = s.target
        pipeline = None
        if s.pipeline_spec or (self.snapshots and s.target.kind == "pipeline"):
            from seldon_load.analyze.pipeline_results import pipeline_section

            pipeline = pipeline_section(self.pipeline_spec(), self.snapshots, self._rows_for_pipeline())
        self.results = build_results(
            agg=self.aggregate, stages=c.plan.stages, names=self.names(), criteria=s.criteria,
            target={"host": t.safe_host, "protocol": t.protocol, "kind": t.kind, "name": t.name},
            mode=s.mode, workers=max((w["workers"] for w in c.workers_timeline), default=1) if self.is_master else 0,
            workers_timeline=c.workers_timeline, max_failure_ratio=s.max_failure_ratio,
            min_saturation_rps=s.min_saturation_rps,
            notes=[*c.notes, *([c.stop_reason] if c.stop_reason else [])], pipeline=pipeline, reruns=c.reruns,
        )
        # a server may echo a header or a URL password in its error messages: never write them
        self.results = scrub(self.results, s.secrets)
        return self.results

    def _rows_for_pipeline(self) -> list[dict]:
        from seldon_load.analyze.stages import stage_table

        c = self.controller
        return stage_table(self.aggregate, c.plan.stages, self.names(), self.settings.criteria,
                           self.settings.open_loop)

    def pipeline_spec(self):
        """The pipeline of --pipeline-spec this test aims at (None without a spec)."""
        s = self.settings
        if not s.pipeline_spec:
            return None
        from seldon_load.analyze.pipeline_spec import read_pipelines

        pipes = read_pipelines(s.pipeline_spec)
        if s.target.kind == "pipeline":
            for p in pipes:
                if p.name == s.target.name:
                    return p
            raise ConfigError(f"--pipeline-spec {s.pipeline_spec!r} has no pipeline named {s.target.name!r}"
                              f" (found: {', '.join(p.name for p in pipes) or 'none'})")
        if len(pipes) != 1:
            raise ConfigError(f"--pipeline-spec {s.pipeline_spec!r}: {len(pipes)} pipelines; give --pipeline NAME")
        return pipes[0]


URL_CREDENTIALS = "seldon_load_url_credentials"  # parsed_options key: (host without them, "user:pw")


def _hide_url_credentials(environment, opts) -> str:
    """The host to use, with ``user:password@``; Locust's own copy loses them.

    Locust shows ``environment.host`` in its web UI, its HTML report and its messages; the credentials
    move to a parsed option instead, which reaches the workers with the others (as --header does).
    They stay tied to the host they came with: a host changed in the web UI form does not get them.
    """
    from urllib.parse import urlsplit, urlunsplit

    host = environment.host
    if "://" not in host:
        return host  # a bare host:port has no place for credentials
    try:
        parts = urlsplit(host)
    except ValueError:
        return host  # Settings says what is wrong with it
    if "@" in parts.netloc:
        creds, bare = parts.netloc.rsplit("@", 1)
        environment.host = urlunsplit(parts._replace(netloc=bare))
        setattr(opts, URL_CREDENTIALS, [environment.host, creds])
        return host
    saved = getattr(opts, URL_CREDENTIALS, None)
    if saved and saved[0] == host:
        return urlunsplit(parts._replace(netloc=f"{saved[1]}@{parts.netloc}"))
    return host


class _Channel:
    """How the controller reaches the engines: Locust messages, or direct calls locally."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def engines(self) -> list[str]:
        r = self.session.runner
        if isinstance(r, MasterRunner):
            return [c.id for c in r.clients.values() if c.state != STATE_MISSING]
        return [LOCAL]

    def publish(self, engine_id: str, message: dict) -> None:
        message["test_id"] = self.session.test_id
        if engine_id == LOCAL:
            _on_plan_message(self.session, message)
        else:
            self.session.runner.send_message(PLAN, message, client_id=engine_id)

    def request_flush(self) -> None:
        if self.session.is_master:
            self.session.runner.send_message(FLUSH, {"test_id": self.session.test_id})
        else:
            self.session.flush_local()


def _on_plan_message(session: Session, message: dict) -> None:
    if session.process is None:
        session.pending_plan = message
    else:
        session.process.on_plan(message)


class SeldonLoadShape(LoadTestShape):
    """Drives every seldon-load test: open-loop stages/auto search, or closed-loop users."""

    def tick(self):
        session: Session = self.runner.environment.seldon_load
        if session.controller is None or session.controller.done:
            if session.controller is not None and session.controller.done:
                return None
            try:
                session.new_controller()
            except SeldonLoadError as exc:
                log.error("%s", exc)
                return None
        controller = session.controller
        answer = controller.tick()
        if answer is not None and controller.finishing_since is not None:
            # the workers' final reports come within milliseconds of the flush the tick asked
            # for, and Locust ticks once a second: wait for them here instead
            deadline = perf_counter() + FINALS_WAIT_S
            while not controller.all_final and perf_counter() < deadline:
                gevent.sleep(0.02)
            answer = controller.tick()
        if answer is None:
            return None
        count, rate = answer
        cls = OpenLoopUser if session.settings.open_loop else OIPUser
        return count, rate, [cls]


# ---- events -------------------------------------------------------------------------------
@events.init_command_line_parser.add_listener
def _add_options(parser, **_kw) -> None:
    add_arguments(parser)


def _fail(msg: str) -> None:
    sys.stderr.write(f"seldon-load: error: {msg}\n")
    sys.stderr.flush()
    sys.exit(2)


@events.init.add_listener
def _on_init(environment, **_kw) -> None:
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
        runner.register_message(PLAN, lambda environment, msg, **kw: _on_plan_message(session, msg.data))
        runner.register_message(FLUSH, lambda environment, msg, **kw: gevent.spawn(_worker_flush, session, msg.data))
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
        _scrub_failures(environment, settings.secrets)
        check_results_dir(settings.results_dir)
        session.pipeline_spec()
        if settings.metrics_urls or settings.prometheus_url:
            session.scrape()
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
        runner.register_message(FINAL, lambda environment, msg, **kw: _on_final(session, msg))
        runner.register_message(READY, lambda environment, msg, **kw: _on_worker_ready(session, msg.node_id))
    if environment.web_ui:
        from seldon_load.report.webui import install

        install(environment, session)
        _hide_host_credentials(environment)
        if getattr(opts, "web_login", False):
            _install_web_login(environment)
    if headless:
        gevent.spawn(_progress_loop, session)
        atexit.register(_results_when_no_test_ran, session)
        if isinstance(runner, MasterRunner):
            _quit_once(runner)
            _wait_for_workers(runner, int(getattr(opts, "expect_workers", 1) or 1))


def _quit_once(runner) -> None:
    """A headless Locust master running a shape calls ``quit`` three times on its way out (at the
    shape's end, in main's stop, in main's shutdown) and each call waits 0.5 s for the workers'
    last statistics: the first call's wait gets them, the workers are gone after it, so the later
    calls only stop (a 2 s run with one worker ended 5.5 s after its start, now 3.85 s)."""
    first = runner.quit
    quit_before = False

    def quit_once() -> None:
        nonlocal quit_before
        if not quit_before:
            quit_before = True
            first()
        else:
            runner.stop(send_stop_to_client=False)
            runner.greenlet.kill(block=True)

    runner.quit = quit_once


def _wait_for_workers(runner, expected: int) -> None:
    """Locust's headless master looks for its workers once a second, right after this init: a
    worker that connects a few ms after that look costs the whole test a second's start.
    Waiting here in short steps starts it as soon as they are ready; workers slower than
    WORKERS_WAIT_S are left to Locust's own wait and its --expect-workers-max-wait."""
    deadline = perf_counter() + WORKERS_WAIT_S
    while len(runner.clients.ready) < expected and perf_counter() < deadline:
        gevent.sleep(0.02)


def _scrub_failures(environment, secrets: list[str]) -> None:
    """Failure messages (what a server answered) go to Locust's statistics, console and web UI:
    replace any secret a server echoed before Locust sees it. Only failures pay for this."""
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


def _hide_host_credentials(environment) -> None:
    """The web UI shows Locust's host; show it without ``user:password@`` (the run still uses them)."""
    from seldon_load.oip.target import _redact

    web_ui = environment.web_ui
    update = web_ui.update_template_args

    def update_without_credentials() -> None:
        update()
        web_ui.template_args["host"] = _redact(str(web_ui.template_args.get("host") or ""))

    web_ui.update_template_args = update_without_credentials
    update_without_credentials()


def _install_web_login(environment) -> None:
    """Locust's --web-login only marks the pages as protected; this is the login behind it: one user
    (SELDON_LOAD_WEB_USER, default ``admin``) whose password is SELDON_LOAD_WEB_PASSWORD."""
    import hmac
    import os
    import secrets

    from flask import Blueprint, redirect, request, session, url_for
    from flask_login import UserMixin, login_user

    password = os.environ.get("SELDON_LOAD_WEB_PASSWORD", "")
    if not password:
        _fail("--web-login needs the password in the environment variable SELDON_LOAD_WEB_PASSWORD")
    username = os.environ.get("SELDON_LOAD_WEB_USER", "admin")
    web_ui = environment.web_ui
    base = getattr(environment.parsed_options, "web_base_path", "") or ""

    class _User(UserMixin):
        def __init__(self, name: str) -> None:
            self.id = name

    web_ui.app.config["SECRET_KEY"] = secrets.token_hex(32)
    web_ui.login_manager.user_loader(lambda name: _User(name) if name == username else None)
    web_ui.auth_args = {"username_password_callback": f"{base}/login_submit"}
    blueprint = Blueprint("seldon_load_login", __name__, url_prefix=base)

    @blueprint.route("/login_submit", methods=["POST"])
    def login_submit():
        given_user = request.form.get("username", "")
        given = request.form.get("password", "")
        if hmac.compare_digest(given_user.encode(), username.encode()) & hmac.compare_digest(
                given.encode(), password.encode()):
            login_user(_User(username))
            return redirect(url_for("locust.index"))
        session["auth_error"] = "Invalid username or password"
        return redirect(url_for("locust.login"))

    web_ui.app.register_blueprint(blueprint)


def _worker_flush(session: Session, data: dict) -> None:
    session.stop_closed_loop_users()
    proc = session.process
    if data.get("stop") and proc is not None and proc.engine is not None:
        proc.engine.stop()  # the master was interrupted: stop the schedule, drain what is in flight
    if proc is not None and proc.test_id == data.get("test_id"):
        deadline = perf_counter() + proc.settings.drain_timeout_s + 5
        while proc.engine is not None and not proc.engine_done and perf_counter() < deadline:
            gevent.sleep(0.1)
    report = proc.recorder.drain() if proc is not None else None
    session.runner.send_message(FINAL, {"test_id": data.get("test_id"), "report": report})


def _on_final(session: Session, msg) -> None:
    data = msg.data or {}
    if data.get("test_id") != session.test_id or session.controller is None:
        return
    if data.get("report") is not None:
        session.aggregate.merge(data["report"], msg.node_id)
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


def _on_worker_ready(session: Session, client_id: str) -> None:
    c = session.controller
    if c is not None and c.t0 is not None and not c.done:
        c.publish_to(client_id)


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
            _scrub_failures(env, session.settings.secrets)
        return
    try:
        proc = session.ensure_process()
        _scrub_failures(env, session.settings.secrets)  # workers learn the headers only now
    except SeldonLoadError as exc:
        log.error("%s", exc)
        return
    if session.is_worker and proc.schedule.t0 is None:
        session.runner.send_message(READY, {})


def _on_test_stop(session: Session) -> None:
    environment = session.environment
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
    session.runner.send_message(FLUSH, {"test_id": session.test_id, "stop": True})
    deadline = perf_counter() + session.settings.drain_timeout_s + 3
    while not set(c.engine_ids) <= c.finals and perf_counter() < deadline:
        gevent.sleep(0.1)


def _progress_loop(session: Session) -> None:
    while True:
        gevent.sleep(5.0)
        c = session.controller
        if c is None or c.t0 is None or c.done:
            continue
        try:
            print(_progress_line(session), file=sys.stderr, flush=True)
        except Exception as exc:  # progress is cosmetic; never let it end the test
            log.debug("progress: %s", exc)


def _progress_line(session: Session) -> str:
    """Current stage, target vs achieved rate, p99 and failures over the last 3 seconds."""
    c = session.controller
    el = c.elapsed()
    now = int(el)
    s = session.aggregate.summarize(max(0, now - 4), max(1, now - 1), session.names())
    stage, phase = c.plan.where(el)
    total = len(c.plan.stages)
    target = c.plan.rate_at(el) if session.settings.open_loop else None
    p99 = s.latency.percentile(99) / 1000.0 if s.latency.count else None
    parts = [f"[seldon-load] t={el:5.0f}s stage {stage + 1}/{total}{'+' if not c.plan.final else ''} {phase or 'end':6}"]
    if target is not None:
        parts.append(f"target {target:7.1f} rps")
    else:
        parts.append(f"users {c.users_at(el)}")
    parts.append(f"achieved {s.achieved_rps:7.1f} rps")
    parts.append(f"p99 {p99:8.1f} ms" if p99 is not None else "p99        - ms")
    parts.append(f"failures {s.failures} dropped {s.dropped} workers {len(c.engine_ids)}")
    return "  ".join(parts)
