"""Stage plans: pure functions of time, free of clocks and sockets (vegeta's pacer idea).

A plan is a list of linear rate segments. Each stage ramps linearly from the previous
target to its own, then holds it. The cumulative arrival count ``N(t)`` is the integral of
the rate; the k-th arrival is due when ``N(t) = k``. Its inverse gives each request's
intended send time exactly, whatever the sender's jitter, so schedules are table-testable.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from seldon_load.errors import ConfigError

RAMP = "ramp"
HOLD = "hold"
COOLDOWN = "cooldown"

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def parse_duration(text: str, what: str = "duration") -> float:
    """'10s', '1m', '500ms', '2h' or a bare number of seconds -> seconds."""
    m = _DURATION.match(str(text))
    if not m:
        raise ConfigError(f"invalid {what} {text!r}: use e.g. 30s, 2m, 500ms")
    return float(m.group(1)) * _UNIT_S[m.group(2)]


@dataclass(frozen=True)
class Stage:
    """One step of an RPS staircase: ramp to ``target_rps`` in ``ramp_s``, hold ``hold_s``."""

    target_rps: float
    ramp_s: float
    hold_s: float


def parse_stages(text: str) -> list[Stage]:
    """Parse ``RPS:RAMP:HOLD,...`` (e.g. ``50:10s:30s,100:10s:30s``)."""
    if not text or not str(text).strip():
        raise ConfigError("empty --stages: give RPS:RAMP:HOLD,... e.g. 50:10s:30s,100:10s:30s")
    stages = []
    for i, part in enumerate(str(text).split(",")):
        fields = part.strip().split(":")
        if len(fields) != 3:
            raise ConfigError(
                f"invalid stage {i + 1} {part.strip()!r} in --stages: expected RPS:RAMP:HOLD, e.g. 50:10s:30s"
            )
        try:
            rps = float(fields[0])
        except ValueError:
            raise ConfigError(f"invalid stage {i + 1} {part.strip()!r}: RPS {fields[0]!r} is not a number") from None
        if not math.isfinite(rps) or rps <= 0 or rps > 1e6:
            raise ConfigError(f"invalid stage {i + 1} {part.strip()!r}: RPS must be > 0 and <= 1000000")
        ramp = parse_duration(fields[1], f"ramp of stage {i + 1}")
        hold = parse_duration(fields[2], f"hold of stage {i + 1}")
        if hold <= 0:
            raise ConfigError(f"invalid stage {i + 1} {part.strip()!r}: hold must be > 0")
        if ramp > 86400 or hold > 86400:
            raise ConfigError(f"invalid stage {i + 1} {part.strip()!r}: ramp and hold must be <= 24h")
        stages.append(Stage(rps, ramp, hold))
    return stages


@dataclass(frozen=True)
class Segment:
    """Rate goes linearly from ``rate_from`` to ``rate_to`` over ``[start_s, end_s)``."""

    start_s: float
    end_s: float
    rate_from: float
    rate_to: float
    stage: int
    phase: str

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s

    def rate_at(self, t: float) -> float:
        if self.duration_s <= 0:
            return self.rate_to
        return self.rate_from + (self.rate_to - self.rate_from) * (t - self.start_s) / self.duration_s

    def count(self, t: float) -> float:
        """Arrivals due in ``[start_s, t]`` (t within the segment)."""
        tau = t - self.start_s
        if tau <= 0:
            return 0.0
        slope = (self.rate_to - self.rate_from) / self.duration_s if self.duration_s > 0 else 0.0
        return self.rate_from * tau + slope * tau * tau / 2.0

    def time_of(self, n: float) -> float:
        """Inverse of ``count``: when the n-th arrival of this segment is due."""
        a = self.rate_from
        slope = (self.rate_to - a) / self.duration_s if self.duration_s > 0 else 0.0
        if slope == 0.0:
            return self.start_s + n / a
        disc = max(a * a + 2.0 * slope * n, 0.0)
        # numerically stable root of slope/2 tau^2 + a tau - n = 0
        return self.start_s + 2.0 * n / (a + math.sqrt(disc))


@dataclass
class StageWindow:
    """Where a stage's parts lie in test time (seconds since the test started)."""

    index: int
    target_rps: float
    ramp_start_s: float
    hold_start_s: float
    hold_end_s: float
    users: int | None = None

    def measured(self, settle_s: float) -> tuple[int, int]:
        """Whole-second window [start, end) of the hold after settling; at least 1 s long."""
        start = math.ceil(self.hold_start_s + settle_s - 1e-9)
        end = math.floor(self.hold_end_s + 1e-9)
        if end - start < 1:
            start = math.ceil(self.hold_start_s - 1e-9)
            end = max(start + 1, math.floor(self.hold_end_s + 1e-9))
        return start, end


@dataclass
class RatePlan:
    """A growable list of segments; ``final`` once nothing more will be appended."""

    segments: list[Segment] = field(default_factory=list)
    stages: list[StageWindow] = field(default_factory=list)
    final: bool = False
    _cum: list[float] = field(default_factory=list)

    @classmethod
    def from_stages(cls, stages: list[Stage], start_rps: float = 0.0) -> RatePlan:
        plan = cls()
        for st in stages:
            plan.add_stage(st.target_rps, st.ramp_s, st.hold_s)
        plan.final = True
        return plan

    @property
    def end_s(self) -> float:
        return self.segments[-1].end_s if self.segments else 0.0

    @property
    def current_rps(self) -> float:
        return self.segments[-1].rate_to if self.segments else 0.0

    def _append(self, seg: Segment) -> None:
        if seg.duration_s <= 0:
            return
        self._cum.append(self.total_count())
        self.segments.append(seg)

    def total_count(self) -> float:
        if not self.segments:
            return 0.0
        last = self.segments[-1]
        return self._cum[-1] + last.count(last.end_s)

    def add_stage(self, target_rps: float, ramp_s: float, hold_s: float, users: int | None = None) -> StageWindow:
        index = len(self.stages)
        t = self.end_s
        self._append(Segment(t, t + ramp_s, self.current_rps, target_rps, index, RAMP))
        hold_start = t + ramp_s
        self._append(Segment(hold_start, hold_start + hold_s, target_rps, target_rps, index, HOLD))
        win = StageWindow(index, target_rps, t, hold_start, hold_start + hold_s, users)
        self.stages.append(win)
        return win

    def add_segment(self, duration_s: float, rate_rps: float, phase: str) -> None:
        """Extend at a constant rate (holding while a verdict is pending, or cooling down)."""
        t = self.end_s
        stage = self.stages[-1].index if self.stages else -1
        self._append(Segment(t, t + duration_s, rate_rps, rate_rps, stage, phase))

    def segment_at(self, t: float) -> int:
        lo, hi = 0, len(self.segments) - 1
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if self.segments[mid].start_s <= t:
                lo = mid
            else:
                hi = mid - 1
        return lo

    def rate_at(self, t: float) -> float:
        if not self.segments or t < 0 or t >= self.end_s:
            return 0.0
        return self.segments[self.segment_at(t)].rate_at(t)

    def count_at(self, t: float) -> float:
        """N(t): arrivals due in [0, t]."""
        if not self.segments or t <= 0:
            return 0.0
        if t >= self.end_s:
            return self.total_count()
        i = self.segment_at(t)
        return self._cum[i] + self.segments[i].count(t)

    def time_of(self, n: float) -> float | None:
        """When N(t) reaches n (> 0), or None when the plan (so far) ends before that."""
        if n <= 0 or not self.segments or n > self.total_count() + 1e-9:
            return None
        lo, hi = 0, len(self.segments) - 1
        while lo < hi:  # first segment whose cumulative end reaches n
            mid = (lo + hi) // 2
            seg = self.segments[mid]
            if self._cum[mid] + seg.count(seg.end_s) >= n:
                hi = mid
            else:
                lo = mid + 1
        seg = self.segments[lo]
        return min(seg.time_of(n - self._cum[lo]), seg.end_s)

    def where(self, t: float) -> tuple[int, str]:
        """(stage index, phase) at test time t; (-1, '') outside the plan."""
        if not self.segments or t < 0 or t >= self.end_s:
            return -1, ""
        seg = self.segments[self.segment_at(t)]
        return seg.stage, seg.phase

    def to_wire(self) -> dict:
        return {
            "segments": [[s.start_s, s.end_s, s.rate_from, s.rate_to, s.stage, s.phase] for s in self.segments],
            "stages": [
                [w.index, w.target_rps, w.ramp_start_s, w.hold_start_s, w.hold_end_s, w.users] for w in self.stages
            ],
            "final": self.final,
        }

    @classmethod
    def from_wire(cls, data: dict) -> RatePlan:
        plan = cls()
        for s in data["segments"]:
            plan._append(Segment(float(s[0]), float(s[1]), float(s[2]), float(s[3]), int(s[4]), str(s[5])))
        plan.stages = [StageWindow(int(w[0]), float(w[1]), float(w[2]), float(w[3]), float(w[4]), w[5]) for w in data["stages"]]
        plan.final = bool(data["final"])
        return plan
