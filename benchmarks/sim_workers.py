"""Simulated seldon-load workers for the master-scale benchmark: N zmq clients in one process.

Each simulated worker speaks Locust's worker protocol to a real master (``client_ready``,
``heartbeat``, ``spawning``/``spawning_complete``, ``stats`` every second, ``quit``) and
seldon-load's messages on top (it adopts ``seldon_load:plan``, answers ``seldon_load:flush``
with ``seldon_load:final``). Its ``stats`` carry what a real worker's carry: Locust's own
statistics entry for the request name and a ``ReportMessage`` whose windows hold exactly its
share of the plan's schedule, each answered request with three durations (latency from a
log-normal spread, lag, service), one failure in a thousand. Nothing is sent to a target:
the load of interest is the master's.

What every worker reported is kept (counts per window, and the raw latencies of some
windows) so the benchmark can check the master's results against it: the accounting
identity per second, and the histogram percentiles against exact ones.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field
from importlib.metadata import version
from time import perf_counter, time
from typing import Any

import msgpack
import numpy as np
import zmq

from seldon_load.load.plan import RatePlan
from seldon_load.measure.messages import ReportMessage, WindowDelta

LOCUST_VERSION = version("locust")
REPORT_INTERVAL_S = 1.0  # what the plugin sets for real workers
HEARTBEAT_INTERVAL_S = 1.0  # Locust's
FAILURE_EVERY = 1000
TRACK_EVERY_S = 3  # raw latencies are kept for windows w % TRACK_EVERY_S == 0


def _dumps(msg_type: str, data: Any, node_id: str) -> bytes:
    return msgpack.dumps((msg_type, data, node_id))


def _loads(raw: bytes) -> tuple[str, Any, str]:
    return tuple(msgpack.loads(raw, raw=False, strict_map_key=False))  # type: ignore[return-value]


class Spread:
    """Pre-drawn durations in µs, handed out as slices (no random draws on the hot path)."""

    def __init__(self, seed: int = 7, size: int = 1 << 20) -> None:
        rng = np.random.default_rng(seed)
        self.latency = np.rint(rng.lognormal(math.log(20_000), 0.45, size)).astype(np.int64)  # median 20 ms
        self.lag = np.minimum(np.rint(rng.exponential(250.0, size)), 5_000).astype(np.int64)
        self.size = size
        self._at = 0

    def take(self, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if self._at + n > self.size:
            self._at = 0
        s = slice(self._at, self._at + n)
        self._at += n
        lat = self.latency[s]
        lag = np.minimum(self.lag[s], lat)
        return lat, lag, lat - lag


@dataclass
class SimWorker:
    index: int
    client_id: str
    sock: zmq.Socket
    connected: bool = False
    test_id: str | None = None
    pv: int = 0
    plan: RatePlan | None = None
    share: float = 0.0
    t0: float | None = None  # local perf_counter of test time 0
    reported_to_s: float = 0.0  # test time up to which the schedule is reported
    final_sent: bool = False
    quit: bool = False
    hb_sent: list[float] = field(default_factory=list)
    stages_seen: int = 0
    final_seen: bool = False


class Simulation:
    """N simulated workers connected to one master; ``run`` until they are told to quit."""

    def __init__(self, n: int, port: int, request_name: str, verdict_delay_s: float) -> None:
        self.ctx = zmq.Context()
        self.request_name = request_name
        self.verdict_delay_s = verdict_delay_s
        self.spread = Spread()
        self.workers: list[SimWorker] = []
        for i in range(n):
            cid = f"sim-{i:04d}"
            sock = self.ctx.socket(zmq.DEALER)
            sock.setsockopt(zmq.IDENTITY, cid.encode())
            sock.setsockopt(zmq.LINGER, 0)
            sock.connect(f"tcp://127.0.0.1:{port}")
            self.workers.append(SimWorker(i, cid, sock))
        self.by_sock = {w.sock: w for w in self.workers}
        self.poller = zmq.Poller()
        for w in self.workers:
            self.poller.register(w.sock, zmq.POLLIN)
        # what was reported, for the checks: second -> [scheduled, ok, failed]; second -> latencies
        self.sent: dict[int, list[int]] = {}
        self.tracked: dict[int, list[np.ndarray]] = {}
        self.heartbeat_rtt_s: list[tuple[float, float]] = []  # (local time, round trip)
        self.verdict_lag_s: dict[int, float] = {}  # verdict number -> latest arrival after it was due
        self.reports = 0
        self.report_bytes = 0
        self.report_times: list[float] = []  # perf_counter of each ``stats`` sent

    # ---- sending --------------------------------------------------------------------------
    def _send(self, w: SimWorker, msg_type: str, data: Any) -> None:
        raw = _dumps(msg_type, data, w.client_id)
        if msg_type == "stats":
            self.reports += 1
            self.report_bytes += len(raw)
            self.report_times.append(perf_counter())
        w.sock.send(raw, zmq.NOBLOCK)

    def _heartbeat(self, w: SimWorker) -> None:
        w.hb_sent.append(perf_counter())
        self._send(w, "heartbeat", {"state": "running" if w.plan else "ready", "current_cpu_usage": 35.0,
                                    "current_memory_usage": 180_000_000})

    def _windows(self, w: SimWorker, upto_s: float) -> list[tuple[WindowDelta, np.ndarray]]:
        """This worker's share of the schedule in (reported_to_s, upto_s], by whole-second window,
        each with its raw latencies (µs)."""
        plan, out = w.plan, []
        assert plan is not None
        t = w.reported_to_s
        while t < upto_s - 1e-9:
            sec = math.floor(t)
            end = min(float(sec + 1), upto_s)
            n = math.floor(w.share * plan.count_at(end) + 1e-9) - math.floor(w.share * plan.count_at(t) + 1e-9)
            if n > 0:
                out.append(self._window(w, sec, n))
            t = end
        w.reported_to_s = max(w.reported_to_s, upto_s)
        return out

    def _window(self, w: SimWorker, sec: int, n: int) -> tuple[WindowDelta, np.ndarray]:
        lat, lag, service = self.spread.take(n)
        failed = sum(1 for k in range(n) if (w.index * 7919 + sec * 31 + k) % FAILURE_EVERY == 0)
        d = WindowDelta(sec, self.request_name, scheduled=n, ok=n - failed, completed=n,
                        failed={"http_503": failed} if failed else {})
        d.latency.record_many(lat)
        d.lag.record_many(lag)
        d.service.record_many(service)
        tally = self.sent.setdefault(sec, [0, 0, 0])
        tally[0] += n
        tally[1] += n - failed
        tally[2] += failed
        if sec % TRACK_EVERY_S == 0:
            self.tracked.setdefault(sec, []).append(lat.copy())
        return d, lat

    def _locust_entry(self, windows: list[tuple[WindowDelta, np.ndarray]]) -> dict[str, Any]:
        """Locust's StatsEntry as a worker serialises it (response times in its 2-digit buckets)."""
        ms = np.concatenate([lat for _, lat in windows]) / 1000.0 if windows else np.zeros(0)
        n = int(ms.size)
        rounded = np.where(ms < 100, np.rint(ms), np.where(ms < 1000, np.rint(ms / 10) * 10, np.rint(ms / 100) * 100))
        keys, counts = np.unique(rounded.astype(np.int64), return_counts=True)
        now = time()
        fails = sum(d.failures for d, _ in windows)
        return {"name": self.request_name, "method": "OIP", "last_request_timestamp": now if n else None,
                "start_time": now - 1.0, "num_requests": n, "num_none_requests": 0, "num_failures": fails,
                "total_response_time": float(ms.sum()), "max_response_time": float(ms.max()) if n else 0,
                "min_response_time": float(ms.min()) if n else None, "total_content_length": 120 * n,
                "response_times": dict(zip(keys.tolist(), counts.tolist(), strict=True)),
                "num_reqs_per_sec": {int(now): n} if n else {}, "num_fail_per_sec": {int(now): fails} if fails else {}}

    def _report(self, w: SimWorker, final: bool = False) -> None:
        now = perf_counter()
        windows: list[tuple[WindowDelta, np.ndarray]] = []
        if w.plan is not None and w.t0 is not None:
            upto = w.plan.end_s if final else max(0.0, min(now - w.t0, w.plan.end_s))
            windows = self._windows(w, upto)
        msg = ReportMessage(worker_id=w.client_id, windows=[d for d, _ in windows], cpu_percent=35.0,
                            steal_percent=0.0, in_flight_max=max((d.scheduled for d, _ in windows), default=0) // 50,
                            interval_s=REPORT_INTERVAL_S, t_s=(now - w.t0) if w.t0 is not None else 0.0)
        if final:
            self._send(w, "seldon_load:final", {"test_id": w.test_id, "report": msg.to_wire()})
            w.final_sent = True
            return
        entry = self._locust_entry(windows)
        stats = [entry] if entry["num_requests"] else []
        self._send(w, "stats", {"stats": stats, "stats_total": {**entry, "name": "Aggregated", "method": ""},
                                "errors": {}, "user_classes_count": {"OpenLoopUser": 1} if w.plan else {},
                                "user_count": 1 if w.plan else 0, "seldon_load": msg.to_wire(),
                                "seldon_load_plan": [w.test_id, w.pv]})

    # ---- receiving ------------------------------------------------------------------------
    def _on_message(self, w: SimWorker, msg_type: str, data: Any) -> None:
        now = perf_counter()
        if msg_type == "ack":
            w.connected = True
        elif msg_type == "heartbeat":
            if w.hb_sent:
                sent = w.hb_sent.pop(0)
                self.heartbeat_rtt_s.append((now, now - sent))
        elif msg_type == "spawn":
            self._send(w, "spawning", None)
            count = data["user_classes_count"]
            self._send(w, "spawning_complete", {"user_classes_count": count, "user_count": sum(count.values())})
        elif msg_type == "seldon_load:plan":
            self._on_plan(w, data, now)
        elif msg_type == "seldon_load:flush":
            if data.get("test_id") == w.test_id and not w.final_sent:
                self._report(w, final=True)
        elif msg_type == "quit":
            w.quit = True
            self._send(w, "quit", None)

    def _on_plan(self, w: SimWorker, data: dict[str, Any], now: float) -> None:
        plan = RatePlan.from_wire(data["plan"])
        if data.get("test_id") != w.test_id:
            w.test_id, w.reported_to_s, w.stages_seen, w.final_seen = data["test_id"], 0.0, 0, False
            w.t0 = now - float(data["elapsed_s"])
        w.pv = max(w.pv, int(data.get("pv", 0)))
        if w.plan is not None and w.t0 is not None:
            # a new stage, or the plan turned final: a verdict on the stage before
            verdicts = len(plan.stages) - w.stages_seen + (1 if plan.final and not w.final_seen else 0)
            if verdicts > 0 and w.stages_seen:
                judged = w.plan.stages[w.stages_seen - 1]
                lag = (now - w.t0) - (judged.hold_end_s + self.verdict_delay_s)
                key = w.stages_seen - 1
                self.verdict_lag_s[key] = max(self.verdict_lag_s.get(key, -math.inf), lag)
        if w.plan is None:
            w.t0 = now - float(data["elapsed_s"])
        w.plan, w.share = plan, float(data["share"])
        w.stages_seen, w.final_seen = len(plan.stages), plan.final

    # ---- the loop -------------------------------------------------------------------------
    def run(self, deadline_s: float) -> None:
        start = perf_counter()
        events: list[tuple[float, int, str]] = []
        n = len(self.workers)
        for w in self.workers:
            self._send(w, "client_ready", LOCUST_VERSION)
            phase = (w.index + 0.5) / n
            heapq.heappush(events, (start + phase * HEARTBEAT_INTERVAL_S, w.index, "hb"))
            heapq.heappush(events, (start + phase * REPORT_INTERVAL_S + 0.01, w.index, "stats"))
        while perf_counter() - start < deadline_s and not all(w.quit for w in self.workers):
            now = perf_counter()
            while events and events[0][0] <= now:
                at, i, kind = heapq.heappop(events)
                w = self.workers[i]
                if w.quit:
                    continue
                if kind == "hb":
                    self._heartbeat(w)
                    heapq.heappush(events, (at + HEARTBEAT_INTERVAL_S, i, kind))
                else:
                    if w.connected and not w.final_sent:
                        self._report(w)
                    heapq.heappush(events, (at + REPORT_INTERVAL_S, i, kind))
            wait_ms = max(0.0, (events[0][0] - perf_counter()) * 1000.0) if events else 10.0
            for sock, _ in self.poller.poll(timeout=min(wait_ms, 10.0)):
                w = self.by_sock[sock]
                while True:
                    try:
                        raw = sock.recv(zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    msg_type, data, _node = _loads(raw)
                    self._on_message(w, msg_type, data)

    def close(self) -> None:
        for w in self.workers:
            w.sock.close(linger=0)
        self.ctx.term()
