"""Automatic saturation search as a pure state machine (no clocks, no Locust).

Rises geometrically until a stage is not sustained, then narrows the bracket between the
highest sustained and the lowest unsustained rate until it is within ``precision`` of its
lower end. Never proposes more than ``max_rps``.

Narrowing uses what an overloaded stage measured: an open-loop server that fell behind
completed requests at its capacity, so its throughput is the next rate to try (kept inside
the bracket, at least ``precision`` from either end, so each probe can close it). That
takes one or two stages where bisection takes four or five. A stage that fell behind only
a little (a queue growing, or answers a few percent short) was at capacity: the next probe
is just below it, which closes the bracket if sustained. A stage that kept up with its rate
but failed on the SLO or errors says nothing about capacity: bisect then.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from seldon_load.errors import ConfigError


@dataclass(frozen=True)
class AutoConfig:
    start_rps: float = 10.0
    max_rps: float = 5000.0
    growth: float = 2.0
    precision: float = 0.05
    ramp_s: float = 3.0
    hold_s: float = 15.0
    narrow_hold_s: float = 10.0
    cooldown_s: float = 4.0
    budget_s: float = 600.0
    min_rps: float = 0.5
    probe_timeout_s: float = 60.0  # how long a target that failed a stage may take to be ready again

    def validate(self) -> AutoConfig:
        if not (0 < self.start_rps <= self.max_rps):
            raise ConfigError(f"--auto needs 0 < start rps ({self.start_rps:g}) <= --max-rps ({self.max_rps:g})")
        if self.growth <= 1.0:
            raise ConfigError("--auto growth factor must be > 1")
        if not (0 < self.precision < 1):
            raise ConfigError("--auto precision must be between 0 and 1 (e.g. 0.05)")
        if self.hold_s <= 0 or self.narrow_hold_s <= 0 or self.budget_s <= 0:
            raise ConfigError("--auto hold times and budget must be > 0")
        return self


@dataclass
class AutoSearch:
    config: AutoConfig
    lo: float | None = None  # highest sustained rate seen
    hi: float | None = None  # lowest unsustained rate seen
    history: list[tuple[float, bool]] = field(default_factory=list)
    done_reason: str | None = None
    probing: float | None = None  # the rate last proposed from a throughput estimate

    def first(self) -> float:
        return min(self.config.start_rps, self.config.max_rps)

    @property
    def narrowing(self) -> bool:
        return self.hi is not None

    def hold_s(self) -> float:
        return self.config.narrow_hold_s if self.narrowing else self.config.hold_s

    def next(self, rate: float, sustained: bool, throughput: float | None = None,
             fell_behind: bool = False) -> float | None:
        """Record a stage verdict; return the next rate to try, or None when done.

        ``throughput`` is the rate of good answers the stage measured, if known; ``fell_behind``
        says the stage failed for want of capacity (too few answers or a growing queue)."""
        self.history.append((rate, sustained))
        cfg = self.config
        if sustained:
            self.lo = rate if self.lo is None else max(self.lo, rate)
        else:
            self.hi = rate if self.hi is None else min(self.hi, rate)
        if self.hi is None:
            if self.lo is not None and self.lo >= cfg.max_rps:
                self.done_reason = f"not saturated up to --max-rps {cfg.max_rps:g}"
                return None
            return min(rate * cfg.growth, cfg.max_rps)
        if self.lo is not None and (self.hi - self.lo) / self.lo <= cfg.precision + 1e-9:
            self.done_reason = f"bracket {self.lo:g}..{self.hi:g} rps within {cfg.precision:.0%}"
            return None
        probed, self.probing = self.probing, None
        if sustained and probed == rate:
            # the estimate held: the bracket's next probe is just above it, which may close it
            return self.lo * (1 + cfg.precision)
        estimate = self.probing = self._estimate(rate, sustained, throughput, fell_behind)
        if self.lo is None:
            nxt = estimate if estimate is not None else rate / cfg.growth
            if nxt < cfg.min_rps:
                self.done_reason = f"not sustained even at {rate:g} rps"
                return None
            return nxt
        return estimate if estimate is not None else math.sqrt(self.lo * self.hi)

    def _estimate(self, rate: float, sustained: bool, throughput: float | None,
                  fell_behind: bool) -> float | None:
        """The overloaded stage's throughput as the next rate, inside the bracket; None if the
        stage did not fall behind (or the bracket is too narrow to place it)."""
        p = self.config.precision
        if sustained or not throughput or (throughput * (1 + p) > rate and not fell_behind):
            return None
        assert self.hi is not None
        low = self.lo * (1 + p) if self.lo is not None else 0.0
        high = self.hi / (1 + p)
        if low > high:
            return None
        return min(max(throughput, low), high)
