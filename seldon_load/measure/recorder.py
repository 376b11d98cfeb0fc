"""Worker-side interval recorder: the per-request hot path.

``record`` only appends the three raw timestamps to per-name lists (an error additionally
notes its position and kind); all arithmetic -- windows, durations, histograms -- happens
vectorised in ``drain``, which swaps in fresh containers (HdrHistogram's interval recorder:
an active and an inactive set). Workers run one gevent thread, so the swap needs no lock.

Time: every argument is a ``time.perf_counter()`` float on this process's clock; ``t0`` is the
test start on that clock. Window ``w`` covers ``[t0 + w, t0 + w + 1)``. A request belongs to
the window of its *intended* send time (scheduled/ok/failed/dropped and the three
histograms) and adds one ``completed`` to the window of its *finish* time. Times before
``t0`` go to window 0.
"""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np
import psutil

from seldon_load.measure.messages import MAX_EXAMPLE_CHARS, MAX_EXAMPLES, ReportMessage, WindowDelta


class _NameBuffer:
    """Raw observations of one request name since the last drain."""

    __slots__ = ("intended", "sent", "done", "failures", "dropped")

    def __init__(self) -> None:
        self.intended: list[float] = []
        self.sent: list[float] = []
        self.done: list[float] = []
        self.failures: list[tuple[int, str]] = []  # (position in the lists above, error kind)
        self.dropped: list[float] = []  # intended times of requests never sent


class Recorder:
    """Collects outcomes on a worker and hands them out as ``ReportMessage`` wire dicts."""

    def __init__(self, t0: float, worker_id: str = "") -> None:
        self._t0 = float(t0)
        self.worker_id = worker_id
        self._buffers: dict[str, _NameBuffer] = {}
        self._pending: dict[tuple[int, str], WindowDelta] = {}  # folded by set_t0, not yet drained
        self._examples: dict[tuple[str, str], list[str]] = {}  # whole run, at most MAX_EXAMPLES each
        self._new_examples: dict[str, dict[str, list[str]]] = {}  # since the last drain
        self._in_flight_max = 0
        self._last_wall = time.perf_counter()
        self._last_cpu = _cpu_seconds()
        self._last_ticks = steal_ticks()

    @property
    def t0(self) -> float:
        return self._t0

    def set_t0(self, t0: float) -> None:
        """Move the test start; what was recorded before keeps the windows of the old t0."""
        self._fold_buffers()
        self._t0 = float(t0)

    # ---- hot path --------------------------------------------------------------------
    def record(
        self,
        name: str,
        intended: float,
        sent: float,
        done: float,
        error_kind: str | None,
        message: str | None = None,
    ) -> None:
        """One answered request; ``error_kind`` None means ok."""
        buf = self._buffers.get(name)
        if buf is None:
            buf = self._buffers[name] = _NameBuffer()
        buf.intended.append(intended)
        buf.sent.append(sent)
        buf.done.append(done)
        if error_kind is not None:
            buf.failures.append((len(buf.done) - 1, error_kind))
            if message:
                self._keep_example(name, error_kind, message)

    def dropped(self, name: str, intended: float) -> None:
        """A scheduled request that was never sent (in-flight cap reached)."""
        buf = self._buffers.get(name)
        if buf is None:
            buf = self._buffers[name] = _NameBuffer()
        buf.dropped.append(intended)

    def note_in_flight(self, n: int) -> None:
        if n > self._in_flight_max:
            self._in_flight_max = n

    def _keep_example(self, name: str, kind: str, message: str) -> None:
        kept = self._examples.setdefault((name, kind), [])
        message = str(message)[:MAX_EXAMPLE_CHARS]
        if len(kept) < MAX_EXAMPLES and message not in kept:
            kept.append(message)
            self._new_examples.setdefault(name, {}).setdefault(kind, []).append(message)

    # ---- interval hand-over ----------------------------------------------------------
    def drain(self) -> dict[str, Any]:
        """Everything since the previous drain as a ``ReportMessage`` wire dict; resets."""
        return self.drain_message().to_wire()

    def drain_message(self) -> ReportMessage:
        """Like ``drain`` but returns the typed message."""
        self._fold_buffers()
        windows, self._pending = self._pending, {}
        errors, self._new_examples = self._new_examples, {}
        in_flight_max, self._in_flight_max = self._in_flight_max, 0
        wall, cpu, ticks = time.perf_counter(), _cpu_seconds(), steal_ticks()
        interval_s = wall - self._last_wall
        cpu_percent = 100.0 * (cpu - self._last_cpu) / interval_s if interval_s > 0 else None
        stolen = steal_percent(self._last_ticks, ticks)
        self._last_wall, self._last_cpu, self._last_ticks = wall, cpu, ticks
        return ReportMessage(
            worker_id=self.worker_id,
            windows=sorted(windows.values(), key=lambda w: (w.second, w.name)),
            errors=errors,
            cpu_percent=cpu_percent,
            steal_percent=stolen,
            in_flight_max=in_flight_max,
            interval_s=interval_s,
            t_s=wall - self._t0,
        )

    def _fold_buffers(self) -> None:
        """Turn the raw buffers into window deltas (under the current t0) and start fresh."""
        buffers, self._buffers = self._buffers, {}
        for name, buf in buffers.items():
            _fold(name, buf, self._t0, self._pending)


def steal_ticks() -> tuple[float, float] | None:
    """(steal, total) CPU seconds of the whole machine so far (psutil), or None where the OS
    does not count steal (it is Linux's; guest time is inside user already)."""
    t = psutil.cpu_times()
    steal = getattr(t, "steal", None)
    if steal is None:
        return None
    return steal, sum(t) - getattr(t, "guest", 0.0) - getattr(t, "guest_nice", 0.0)


def steal_percent(before: tuple[int, int] | None, after: tuple[int, int] | None) -> float | None:
    """The share of the machine's CPU time the hypervisor gave to other guests in between."""
    if before is None or after is None or after[1] <= before[1]:
        return None
    return 100.0 * (after[0] - before[0]) / (after[1] - before[1])


def _cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


def _windows(times: np.ndarray, t0: float) -> np.ndarray:
    """Window index of each time: floor(t - t0), clamped to 0."""
    return np.maximum(np.floor(times - t0), 0.0).astype(np.int64)


def _delta(out: dict[tuple[int, str], WindowDelta], second: int, name: str) -> WindowDelta:
    key = (second, name)
    w = out.get(key)
    if w is None:
        w = out[key] = WindowDelta(second, name)
    return w


def _fold(name: str, buf: _NameBuffer, t0: float, out: dict[tuple[int, str], WindowDelta]) -> None:
    if buf.done:
        intended = np.array(buf.intended)
        sent = np.array(buf.sent)
        done = np.array(buf.done)
        win = _windows(intended, t0)
        latency_us = (done - intended) * 1e6
        service_us = (done - sent) * 1e6
        lag_us = (sent - intended) * 1e6
        failed: dict[int, dict[str, int]] = {}
        if buf.failures:
            win_list = win.tolist()
            for pos, kind in buf.failures:
                per_kind = failed.setdefault(win_list[pos], {})
                per_kind[kind] = per_kind.get(kind, 0) + 1
        first, last = int(win[0]), int(win[-1])
        if first == last and not np.any(win != first):
            groups: list[tuple[int, Any]] = [(first, slice(None))]
        else:
            order = np.argsort(win, kind="stable")
            seconds, starts = np.unique(win[order], return_index=True)
            bounds = [*starts.tolist(), len(order)]
            groups = [(int(s), order[bounds[k] : bounds[k + 1]]) for k, s in enumerate(seconds)]
        for second, sel in groups:
            d = _delta(out, second, name)
            n = len(intended) if isinstance(sel, slice) else len(sel)
            kinds = failed.get(second, {})
            n_failed = sum(kinds.values())
            d.scheduled += n
            d.ok += n - n_failed
            for kind, k in kinds.items():
                d.failed[kind] = d.failed.get(kind, 0) + k
            d.latency.record_many(latency_us[sel])
            d.service.record_many(service_us[sel])
            d.lag.record_many(lag_us[sel])
        seconds, counts = np.unique(_windows(done, t0), return_counts=True)
        for second, k in zip(seconds.tolist(), counts.tolist(), strict=True):
            _delta(out, second, name).completed += k
    if buf.dropped:
        seconds, counts = np.unique(_windows(np.array(buf.dropped), t0), return_counts=True)
        for second, k in zip(seconds.tolist(), counts.tolist(), strict=True):
            d = _delta(out, second, name)
            d.scheduled += k
            d.dropped += k

