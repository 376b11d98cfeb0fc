"""The state seldon-load keeps on one Locust process (``environment.seldon_load``).

On the master (or a local run) it owns the ``Controller`` of the current test, the merged
measurements and the results; on a worker, the ``ProcessState`` that runs its share. The
``LocustChannel`` is how the controller reaches the engines: typed plan and flush messages
to workers, or direct calls in a local run.
"""

from __future__ import annotations

import logging
import time
import uuid
from time import perf_counter

import gevent
from locust.runners import STATE_MISSING, MasterRunner, WorkerRunner

from seldon_load.analyze.results import build_results
from seldon_load.errors import ConfigError, SeldonLoadError
from seldon_load.load.control import Controller, ControllerConfig, Verdict
from seldon_load.locust.messages import FlushMessage, PlanMessage
from seldon_load.measure.aggregate import Aggregate
from seldon_load.oip.payload import inferences_per_request
from seldon_load.settings import Settings, scrub
from seldon_load.users import ProcessState

log = logging.getLogger("seldon_load")

LOCAL = "local"


class Session:
    """Everything seldon-load keeps on one Locust process (attached as ``env.seldon_load``)."""

    def __init__(self, environment) -> None:
        self.environment = environment
        self.settings: Settings | None = None
        self.process: ProcessState | None = None
        self.pending_plan: PlanMessage | None = None
        # False between a test's end and the next test_start: a plan that comes first (the master
        # publishes before it spawns) waits for the settings that test_start loads from the form
        self.settings_current = False
        self.start_error: str | None = None  # why the last start from the web UI sent nothing
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
            opts.host = hide_url_credentials(self.environment, opts)
        self.settings = Settings.from_options(opts)
        return self.settings

    def ensure_process(self) -> ProcessState:
        settings = self.load_settings()
        if self.process is None:
            wid = self.runner.client_id if self.is_worker else LOCAL
            self.process = ProcessState(self.environment, settings, wid)
        elif self.process.settings != settings:
            self.process.use_settings(settings)
        self.process.autostart = self.is_worker
        self.settings_current = True
        if self.pending_plan is not None:
            self.process.on_plan(self.pending_plan)
            self.pending_plan = None
        return self.process

    def on_plan(self, plan: PlanMessage) -> None:
        """A plan for this process's engine: adopted now, or once this test's settings are loaded."""
        if self.process is None or not self.settings_current:
            self.pending_plan = plan
        else:
            self.process.on_plan(plan)

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
        self.controller = Controller(cfg, LocustChannel(self), judge=self.judge, probe=self.probe)
        if not self.is_master:
            self._start_drainer()
        self.snapshots = []
        # per-step counters serve only a pipeline; --prometheus-url for a model is for resources alone
        if s.metrics_urls or (s.prometheus_url and (s.pipeline_spec or s.target.kind == "pipeline")):
            gevent.spawn(self._scrape_loop, self.controller)
        return self.controller

    def scrape(self):
        from seldon_load.analyze.metrics import query_prometheus, scrape_all

        s = self.settings
        if s.prometheus_url:
            return query_prometheus(s.prometheus_url)
        return scrape_all(s.metrics_urls)

    def preflight_scrape(self) -> None:
        """Before any load: --metrics-url endpoints must answer (else exit 2); a Prometheus server that
        does not is only warned about: the run goes on and its results say what is missing."""
        try:
            self.scrape()
        except SeldonLoadError as exc:
            if not self.settings.prometheus_url:
                raise
            log.warning("%s: the test goes on without server metrics from it", exc)

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
            target={"host": t.safe_host, "protocol": t.protocol, "kind": t.kind, "name": t.name,
                    "batch_size": inferences_per_request(s.payload or None, s.batch_size)},
            mode=s.mode, workers=max((w["workers"] for w in c.workers_timeline), default=1) if self.is_master else 0,
            workers_timeline=c.workers_timeline, max_failure_ratio=s.max_failure_ratio,
            min_saturation_rps=s.min_saturation_rps,
            notes=[*c.notes, *([c.stop_reason] if c.stop_reason else [])], pipeline=pipeline, reruns=c.reruns,
        )
        self.results = self.server_resources(self.results)
        # a server may echo a header or a URL password in its error messages: never write them
        self.results = scrub(self.results, s.secrets)
        return self.results

    def server_resources(self, results: dict) -> dict:
        """``stages[i].server``: what the server spent in each window, read from Prometheus now."""
        from seldon_load.analyze.resources import Prometheus, attach, read_windows

        s, c = self.settings, self.controller
        batch = int(results["target"].get("batch_size") or s.batch_size)  # a payload file's batch rows too
        if not s.resource_selector:
            return attach(results, None, batch, None, None)
        now = time.time()
        wall0 = now - c.elapsed()
        # a test stopped early: its last window ends now, and windows that never began are not read
        windows = [(r["index"], wall0 + r["start_s"], min(wall0 + r["end_s"], now)) for r in results["stages"]
                   if r.get("start_s") is not None and r.get("end_s") is not None and wall0 + r["start_s"] < now]
        prom = Prometheus(s.prometheus_url)
        started = perf_counter()
        servers = read_windows(prom, s.resource_selector, windows, s.resource_source)
        meta = {"prometheus": prom.where, "selector": s.resource_selector, "queries": prom.queries,
                "query_s": round(prom.query_s, 4), "read_s": round(perf_counter() - started, 3)}
        return attach(results, servers, batch, s.core_hour_cost, s.gpu_hour_cost, meta)

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
        from seldon_load.pipelines import read_pipelines

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


def hide_url_credentials(environment, opts) -> str:
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


class LocustChannel:
    """How the controller reaches the engines: Locust messages, or direct calls locally."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def engines(self) -> list[str]:
        r = self.session.runner
        if isinstance(r, MasterRunner):
            return [c.id for c in r.clients.values() if c.state != STATE_MISSING]
        return [LOCAL]

    def publish(self, engine_id: str, message: dict) -> None:
        plan = PlanMessage.from_controller(message, self.session.test_id)
        if engine_id == LOCAL:
            self.session.on_plan(plan)
        else:
            self.session.runner.send_message(PlanMessage.NAME, plan.to_wire(), client_id=engine_id)

    def request_flush(self) -> None:
        if self.session.is_master:
            self.session.runner.send_message(FlushMessage.NAME, FlushMessage(self.session.test_id).to_wire())
        else:
            self.session.flush_local()
