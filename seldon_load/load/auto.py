"""Automatic saturation search as a pure state machine (no clocks, no Locust).

Rises geometrically until a stage is not sustained, then bisects (geometric mean) between
the last sustained and the first unsustained rate, until the bracket is within
``precision`` of its lower end. Never proposes more than ``max_rps``.
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

    def first(self) -> float:
        return min(self.config.start_rps, self.config.max_rps)

    @property
    def narrowing(self) -> bool:
        return self.hi is not None

    def hold_s(self) -> float:
        return self.config.narrow_hold_s if self.narrowing else self.config.hold_s

    def next(self, rate: float, sustained: bool) -> float | None:
        """Record a stage verdict; return the next rate to try, or None when done."""
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
        if self.lo is None:
            nxt = rate / cfg.growth
            if nxt < cfg.min_rps:
                self.done_reason = f"not sustained even at {rate:g} rps"
                return None
            return nxt
        if (self.hi - self.lo) / self.lo <= cfg.precision:
            self.done_reason = f"bracket {self.lo:g}..{self.hi:g} rps within {cfg.precision:.0%}"
            return None
        return math.sqrt(self.lo * self.hi)
