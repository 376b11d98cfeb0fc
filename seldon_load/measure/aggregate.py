"""Master side: merge worker reports into per-second, per-name windows and summarise them.

Everything is additive: counts add, histograms merge bucket by bucket, so any split of the
same requests over reports and workers gives exactly the same windows, and a percentile of
a merged range is the percentile of the union of all values (within the histogram's 1 %
bound) -- never an average of per-worker percentiles.

Time axis: window ``w`` (an int) covers ``[w, w + 1)`` seconds since the test start, by
intended send time; ``completed`` counts requests that finished in that second.
``summarize(t_from_s, t_to_s)`` takes the windows ``floor(t_from_s) <= w < ceil(t_to_s)``,
i.e. the whole seconds that overlap ``[t_from_s, t_to_s)``; its ``duration_s`` is their number.

Generator CPU: each report says over which interval its ``cpu_percent`` was measured
(``[t_s - interval_s, t_s]`` on the worker's test clock). A report counts for a summary when
the midpoint of that interval lies in ``[floor(t_from_s), ceil(t_to_s))``: a report mostly
about the previous stage does not count for this one, and no report counts twice.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from seldon_load.measure.histogram import Histogram
from seldon_load.measure.messages import MAX_EXAMPLES, ReportMessage, WindowDelta


@dataclass
class WindowStats:
    """Merged totals of one (second, name) over all workers and reports."""

    scheduled: int = 0
    ok: int = 0
    failed: dict[str, int] = field(default_factory=dict)
    dropped: int = 0
    completed: int = 0
    latency: Histogram = field(default_factory=Histogram)
    service: Histogram = field(default_factory=Histogram)
    lag: Histogram = field(default_factory=Histogram)

    @property
    def failures(self) -> int:
        return sum(self.failed.values())

    def add(self, w: WindowDelta | WindowStats) -> None:
        self.scheduled += w.scheduled
        self.ok += w.ok
        for kind, n in w.failed.items():
            self.failed[kind] = self.failed.get(kind, 0) + n
        self.dropped += w.dropped
        self.completed += w.completed
        self.latency.merge(w.latency)
        self.service.merge(w.service)
        self.lag.merge(w.lag)


@dataclass
class Summary:
    """Totals over a range of windows (see the module doc for the exact range)."""

    t_from_s: int  # first window included
    t_to_s: int  # first window no longer included
    duration_s: float
    scheduled: int
    ok: int
    failed: dict[str, int]
    failures: int
    dropped: int
    completed: int
    latency: Histogram
    service: Histogram
    lag: Histogram
    achieved_rps: float  # completed / duration_s (by completion time)
    offered_rps: float  # scheduled / duration_s (by intended time)
    cpu_percent_max: float | None  # highest per-worker CPU among the reports in the range
    steal_percent_max: float | None  # most of the machine's CPU its hypervisor took, same reports
    in_flight_max: int | None
    error_examples: dict[str, list[str]]  # error kind -> up to 3 messages

    @property
    def requests(self) -> int:
        """Answered requests (ok or failed); ``requests + dropped == scheduled``."""
        return self.ok + self.failures


@dataclass
class _CpuSample:
    mid_s: float
    cpu_percent: float | None
    in_flight_max: int
    steal_percent: float | None = None


class Aggregate:
    """All windows of one test, merged from any number of workers' reports."""

    def __init__(self) -> None:
        self._windows: dict[int, dict[str, WindowStats]] = {}
        self._examples: dict[tuple[str, str], list[str]] = {}
        self._samples: dict[str, list[_CpuSample]] = {}
        self.bad_messages = 0
        self.last_error: str | None = None
        self.messages = 0

    def merge(self, msg: dict[str, Any] | ReportMessage, worker_id: str) -> bool:
        """Add one report; a malformed one is counted in ``bad_messages`` and ignored whole."""
        if not isinstance(msg, ReportMessage):
            try:
                msg = ReportMessage.from_wire(msg)
            except ValueError as e:
                self.bad_messages += 1
                self.last_error = f"report from {worker_id!r} rejected: {e}"
                return False
        self.messages += 1
        for w in msg.windows:
            per_name = self._windows.setdefault(w.second, {})
            stats = per_name.get(w.name)
            if stats is None:
                stats = per_name[w.name] = WindowStats()
            stats.add(w)
        for name, kinds in msg.errors.items():
            for kind, messages in kinds.items():
                kept = self._examples.setdefault((name, kind), [])
                for m in messages:
                    if len(kept) < MAX_EXAMPLES and m not in kept:
                        kept.append(m)
        sample = _CpuSample(msg.t_s - msg.interval_s / 2, msg.cpu_percent, msg.in_flight_max, msg.steal_percent)
        self._samples.setdefault(worker_id, []).append(sample)
        return True

    # ---- queries ---------------------------------------------------------------------
    def window(self, second: int, name: str) -> WindowStats:
        """The merged window (an empty one when nothing was recorded there)."""
        return self._windows.get(second, {}).get(name) or WindowStats()

    def seconds(self) -> list[int]:
        return sorted(self._windows)

    def names(self) -> list[str]:
        return sorted({n for per_name in self._windows.values() for n in per_name})

    def workers(self) -> list[str]:
        return sorted(self._samples)

    def error_examples(self, names: set[str] | None = None) -> dict[str, dict[str, list[str]]]:
        """{name: {kind: [messages]}} over the whole run."""
        out: dict[str, dict[str, list[str]]] = {}
        for (name, kind), messages in sorted(self._examples.items()):
            if names is None or name in names:
                out.setdefault(name, {})[kind] = list(messages)
        return out

    def summarize(self, t_from_s: float, t_to_s: float, names: set[str] | None = None) -> Summary:
        """Totals over windows ``floor(t_from_s) <= w < ceil(t_to_s)`` of the given names."""
        if not (math.isfinite(t_from_s) and math.isfinite(t_to_s)) or t_to_s < t_from_s:
            raise ValueError(f"bad summary range [{t_from_s}, {t_to_s})")
        lo, hi = math.floor(t_from_s), math.ceil(t_to_s)
        total = _sum_windows(self._stats_in(sorted(s for s in self._windows if lo <= s < hi), names))
        duration_s = float(hi - lo)
        in_range = [s for samples in self._samples.values() for s in samples if lo <= s.mid_s < hi]
        cpus = [s.cpu_percent for s in in_range if s.cpu_percent is not None]
        stolen = [s.steal_percent for s in in_range if s.steal_percent is not None]
        examples: dict[str, list[str]] = {}
        for (name, kind), messages in sorted(self._examples.items()):
            if kind in total.failed and (names is None or name in names):
                kept = examples.setdefault(kind, [])
                kept.extend(m for m in messages if m not in kept)
                del kept[MAX_EXAMPLES:]
        return Summary(
            t_from_s=lo,
            t_to_s=hi,
            duration_s=duration_s,
            scheduled=total.scheduled,
            ok=total.ok,
            failed=dict(sorted(total.failed.items())),
            failures=total.failures,
            dropped=total.dropped,
            completed=total.completed,
            latency=total.latency,
            service=total.service,
            lag=total.lag,
            achieved_rps=total.completed / duration_s if duration_s else 0.0,
            offered_rps=total.scheduled / duration_s if duration_s else 0.0,
            cpu_percent_max=max(cpus) if cpus else None,
            steal_percent_max=max(stolen) if stolen else None,
            in_flight_max=max((s.in_flight_max for s in in_range), default=None),
            error_examples=examples,
        )

    def timeline(self, names: set[str] | None = None) -> list[dict[str, Any]]:
        """One entry per second from the first to the last window (gaps filled with zeros)."""
        if not self._windows:
            return []
        out = []
        for second in range(min(self._windows), max(self._windows) + 1):
            w = _sum_windows(self._stats_in((second,), names))
            p50, p99 = w.latency.percentiles((50, 99)) if w.latency else (None, None)
            lag_p99 = w.lag.percentile(99) if w.lag else None
            out.append(
                {
                    "t_s": second,
                    "scheduled": w.scheduled,
                    "completed": w.completed,
                    "ok": w.ok,
                    "failures": w.failures,
                    "dropped": w.dropped,
                    "p50_ms": None if p50 is None else p50 / 1000.0,
                    "p99_ms": None if p99 is None else p99 / 1000.0,
                    "lag_p99_ms": None if lag_p99 is None else lag_p99 / 1000.0,
                }
            )
        return out

    def _stats_in(self, seconds: Iterable[int], names: set[str] | None) -> Iterable[WindowStats]:
        for second in seconds:
            per_name = self._windows.get(second)
            if per_name:
                for name, stats in per_name.items():
                    if names is None or name in names:
                        yield stats


def _sum_windows(windows: Iterable[WindowStats]) -> WindowStats:
    total = WindowStats()
    for w in windows:
        total.add(w)
    return total
