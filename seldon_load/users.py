"""Locust users that speak the Open Inference Protocol over REST or gRPC.

``OIPUser`` is closed loop (send, wait for the answer, send again): what plain Locust and
concurrency sweeps do. ``OpenLoopUser`` is one per worker process and runs that process's
share of the open-loop schedule (``load.engine``). Both report every call through Locust's
``request`` event, named ``<protocol> infer <target>``, and record intended/sent/done times
into the process's recorder for the results plugin.
"""

from __future__ import annotations

import gc
import logging
import os
from time import perf_counter

import gevent
from gevent.hub import get_hub
from locust import User, constant, task
from locust.runners import STATE_CLEANUP, STATE_STOPPED, STATE_STOPPING

from seldon_load.errors import SeldonLoadError
from seldon_load.load.batcher import ReadBatcher
from seldon_load.load.engine import OpenLoopEngine, WorkerSchedule
from seldon_load.locust import patches
from seldon_load.locust.messages import PlanMessage
from seldon_load.measure.recorder import Recorder
from seldon_load.oip.payload import build_payload_pool
from seldon_load.settings import Settings
from seldon_load.transport.clients import make_client
from seldon_load.transport.outcome import Outcome

log = logging.getLogger(__name__)
REQUEST_TYPE = "OIP"  # the Type column of Locust's statistics for every call


class OIPFailure(Exception):
    """What Locust's statistics show for a failed call: ``<kind>: <message>``."""


class ProcessState:
    """Per-process state shared by this process's users: one client, one payload pool."""

    def __init__(self, environment, settings: Settings, worker_id: str = "local") -> None:
        self.environment = environment
        self.settings = settings
        self.worker_id = worker_id
        self.test_id: str | None = None
        self.plan_version = 0  # of the last plan adopted ("pv"): reported to the master
        self.recorder = Recorder(perf_counter(), worker_id)
        self.schedule = WorkerSchedule(settings.arrival, seed=hash(worker_id) & 0xFFFF)
        self.engine: OpenLoopEngine | None = None
        self.engine_done = False
        self._client = None
        self._pool = None
        self.batcher: ReadBatcher | None = None  # shared by the client's connections and the engine
        self.stats_feed: _StatsFeed | None = None
        self.autostart = False  # start the engine on a plan (a worker, once the test's settings are known)
        self.metadata: dict | None = None

    def new_test(self, test_id: str) -> None:
        """A new test on the same process: fresh clock, schedule and recorder."""
        if self.engine is not None and not self.engine_done:
            self.engine.stop()
            self.engine.cancel(block=False)
        self.test_id = test_id
        self.plan_version = 0
        self.recorder = Recorder(perf_counter(), self.worker_id)
        self.schedule = WorkerSchedule(self.settings.arrival, seed=hash(self.worker_id) & 0xFFFF)
        self.engine = None
        self.engine_done = False

    def on_plan(self, message: PlanMessage) -> None:
        """Adopt the controller's plan (and this process's share of it)."""
        if message.test_id != self.test_id:
            self.new_test(message.test_id)
        log.info("plan: share %.3f phase %.3f at test time %.2fs", message.share, message.phase, message.elapsed_s)
        first = self.schedule.t0 is None
        self.plan_version = max(self.plan_version, message.plan_version)
        self.schedule.update(message.plan, message.elapsed_s, message.share, message.phase, message.from_s)
        if first:
            self.recorder.set_t0(self.schedule.t0)
        if self.autostart and self.settings.open_loop and self.engine is None and not self.engine_done:
            # a worker with a share runs it whether or not Locust gave it the OpenLoopUser:
            # in the second Locust re-balances users for a worker that joined late it may have none
            OpenLoopUser.start_engine(self)

    def use_settings(self, settings: Settings) -> None:
        """New settings (the web UI form changed them): a new client and payload on next use."""
        self.close()
        self.settings = settings
        self._pool = None
        self.metadata = None

    @property
    def client(self):
        if self._client is None:
            s = self.settings
            pool = max(64, s.users if not s.open_loop else min(s.max_in_flight, 256))
            self._client = make_client(s.target, headers=s.headers, timeout_s=s.timeout_s,
                                       tls=_tls(s), pool_size=pool, max_response_bytes=s.max_response_bytes)
            if hasattr(self._client, "defer_reads"):
                self.batcher = ReadBatcher(get_hub())
                self._client.defer_reads(self.batcher)
        return self._client

    @property
    def pool(self):
        if self._pool is None:
            s = self.settings
            if self.metadata is None and not s.payload:
                self.metadata = self.client.model_metadata()
            self._pool = build_payload_pool(s.target, self.metadata, payload_file=s.payload or None,
                                            batch_size=s.batch_size, pool_size=s.payload_variants or 8,
                                            file_variants=s.payload_variants > 0,
                                            seed=os.getpid(), binary=s.binary, raw_grpc=s.grpc_raw)
        return self._pool

    def preflight(self) -> None:
        """Reach the target, check the model, build the payload: errors end with exit 2."""
        self.client.check_target()
        _ = self.pool

    def fire(self, name: str, start: float, done: float, out: Outcome) -> None:
        if not self.settings.locust_stats:
            return
        self.environment.events.request.fire(
            request_type=REQUEST_TYPE, name=name, response_time=(done - start) * 1000.0,
            response_length=out.response_bytes, context={},
            exception=None if out.ok else OIPFailure(f"{out.error_kind}: {out.message or ''}".rstrip(": ")),
        )

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
        if self.batcher is not None:
            self.batcher.close()
            self.batcher = None


class _StatsFeed:
    """Feeds Locust's statistics and UI from the open-loop engine.

    Answers that are ok are handed over in batches (every ``BATCH_S`` or ``BATCH_MAX``
    answers), failures at once: on a generator that sleeps between requests every call into
    Locust runs with cold caches, so a batch is handled in one warm pass. While Locust's own
    statistics are the only listener of its ``request`` event, a batch goes in as one
    ``StatsEntry.extend`` (what Locust's master does with a worker's report: the same
    counts, sums, extremes and response-time buckets as one event per answer, at a fraction
    of the cost); with any other listener every answer is fired as its own event."""

    BATCH_S = 0.1
    BATCH_MAX = 32  # a longer batch would hold up the next sends at high rates (send lag)

    def __init__(self, st: ProcessState, name: str) -> None:
        self._st = st
        self._name = name
        self._hook = st.environment.events.request
        self._fire = self._hook.fire
        self._batch: list[tuple[float, int]] = []
        self._since = 0.0

    def __call__(self, due: float, sent: float, done: float, out: Outcome) -> None:
        if not out.ok:
            self._st.fire(self._name, due, done, out)
            return
        batch = self._batch
        if not batch:
            self._since = done
        batch.append(((done - due) * 1000.0, out.response_bytes))
        if done - self._since >= self.BATCH_S or len(batch) >= self.BATCH_MAX:
            self.flush()

    def flush(self) -> None:
        batch, self._batch = self._batch, []
        if not batch:
            return
        if patches.only_locust_stats_listen(self._hook):
            patches.extend_stats(self._st.environment.stats, self._name, REQUEST_TYPE, batch)
            return
        fire, name = self._fire, self._name
        for response_time, length in batch:
            fire(request_type=REQUEST_TYPE, name=name, response_time=response_time, response_length=length,
                 context={}, exception=None)


def _tls(s: Settings):
    if not s.tls:
        return None
    from seldon_load.transport.tls import TlsConfig

    return TlsConfig(ca_file=s.tls.get("ca_file"), cert_file=s.tls.get("cert_file"), key_file=s.tls.get("key_file"))


def state_of(environment) -> ProcessState | None:
    """This process's state; None while a worker whose first spawn came before its settings
    were loaded catches up (the caller waits a moment)."""
    st = getattr(environment, "seldon_load", None)
    if st is None:
        raise RuntimeError("seldon-load plugin not initialised: import seldon_load.plugin in the locustfile")
    return st.process


class OIPUser(User):
    """Closed loop: one inference call after another, ``--think-time`` apart (default none)."""

    wait_time = constant(0)

    @task
    def infer(self) -> None:
        st = state_of(self.environment)
        if st is None:
            gevent.sleep(0.05)
            return
        try:
            req = st.pool.next()
        except SeldonLoadError as exc:
            log.error("%s", exc)
            gevent.sleep(1.0)
            return
        name = st.settings.request_name
        t = perf_counter()
        out = st.client.infer(req)
        done = perf_counter()
        st.recorder.record(name, t, t, done, out.error_kind, out.message)
        st.fire(name, t, done, out)


class OpenLoopUser(User):
    """Runs this process's share of the open-loop schedule; one per worker process."""

    wait_time = constant(0)

    @task
    def run_schedule(self) -> None:
        st = state_of(self.environment)
        if st is not None and st.engine is None and not st.engine_done:
            self.start_engine(st)
        gevent.sleep(0.5)

    @staticmethod
    def start_engine(st: ProcessState) -> None:
        """The engine runs in its own greenlet, so Locust moving this user between workers
        (it rebalances when workers join) does not interrupt the schedule."""
        # Everything alive now (Locust, gevent, numpy, our modules) lives as long as the
        # process: take it out of the garbage collector's view, or each full collection
        # (40-70 ms here) stalls the loop and shows as send lag.
        gc.freeze()
        pool, client = st.pool, st.client
        name = st.settings.request_name
        next_req = pool.next
        infer = client.infer

        def send() -> Outcome:
            return infer(next_req())

        start = None
        if st.batcher is not None:
            begin = client.start

            def start(token) -> bool:
                return begin(next_req(), token)

        feed = _StatsFeed(st, name) if st.settings.locust_stats else None
        st.stats_feed = feed
        engine = OpenLoopEngine(
            send=send, name=name, recorder=st.recorder, schedule=st.schedule,
            max_in_flight=st.settings.max_in_flight, drain_timeout_s=st.settings.drain_timeout_s,
            on_result=feed,
            batcher=st.batcher, start=start,
        )
        st.engine = engine

        def run() -> None:
            log.info("open-loop engine starting")
            try:
                engine.run()
            finally:
                if feed is not None:
                    feed.flush()
                st.recorder.note_in_flight(engine.max_seen_in_flight)
                if st.schedule.finished:
                    st.engine_done = True
                elif st.engine is engine:
                    st.engine = None

        gevent.spawn(run)

    def on_stop(self) -> None:
        st = state_of(self.environment)
        runner = self.environment.runner
        stopping = runner is None or runner.state in (STATE_STOPPING, STATE_CLEANUP, STATE_STOPPED)
        log.info("open-loop user stopping (runner %s)", runner.state if runner else None)
        if stopping and st is not None and st.engine is not None and not st.engine_done:
            st.engine.stop()  # the test was stopped; requests in flight still complete and are recorded
