"""Which arrivals of the global schedule one worker sends: pure, clock-free.

With ``n`` workers each takes a ``share`` of 1/n and a ``phase`` of (i + 1)/n: worker i sends
the arrivals whose global count is ``(j + phase) / share`` = j*n + i + 1 (evenly spaced mode), so the
workers interleave into exactly the global schedule instead of bursting together. Poisson
mode draws unit-rate exponential gaps in the worker's own count space, which is a
non-homogeneous Poisson process after the plan's time change; superposed over workers it
is Poisson at the total rate.
"""

from __future__ import annotations

import math
import random

UNIFORM = "uniform"
POISSON = "poisson"


class Arrivals:
    """Yields the global arrival counts (``N(t)`` values) this worker must send, in order."""

    def __init__(self, share: float = 1.0, phase: float = 1.0, mode: str = UNIFORM, seed: int | None = None):
        if mode not in (UNIFORM, POISSON):
            raise ValueError(f"unknown arrival mode {mode!r}")
        self.mode = mode
        self._rng = random.Random(seed)
        self.share = share
        self.phase = phase
        self._local = phase
        self._started = False

    def resync(self, share: float, phase: float, global_count_now: float) -> None:
        """Take a new share (workers came or went) from the current point of the schedule."""
        self.share = share
        self.phase = phase
        local_now = global_count_now * share
        if self.mode == UNIFORM:
            self._local = math.floor(local_now - phase) + 1 + phase
        else:
            self._local = local_now + self._rng.expovariate(1.0)
        self._started = True

    def next_count(self) -> float:
        """Global cumulative count at which the next arrival of this worker is due."""
        if not self._started:
            self._started = True
            if self.mode == POISSON:
                self._local = self._rng.expovariate(1.0)
        value = self._local / self.share
        self._local += 1.0 if self.mode == UNIFORM else self._rng.expovariate(1.0)
        return value
