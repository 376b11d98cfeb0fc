"""Mergeable, bounded-error latency histogram over integer microseconds (HdrHistogram-style).

Bucket layout (one configuration everywhere; these module constants are never patched):

* values ``0 .. 127`` µs each have their own bucket (exact);
* from 128 µs up, every power of two ``[2**e, 2**(e+1))`` is split into 64 equal sub-buckets
  of width ``2**(e-6)``. The reported value of a bucket is its midpoint, so the error is at
  most ``(width - 1) / 2 / 2**e < 2**-7`` (0.78 %) of any value in the bucket;
* trackable range ``0 <= v < 2**32`` µs (about 71.6 minutes). Larger values are counted in
  ``overflow`` (and in ``count``, ``sum_us`` and an exact ``max_us``), never dropped.

A bucket index is ``64 * s + (v >> s)`` with ``s = max(bit_length(v) - 7, 0)``; it is computed
for a whole numpy array at once with ``np.frexp`` (exponent == bit length) and a shift.

Counts live in a dense int64 array allocated on first use and covering only the index range
seen so far (``_offset`` .. ``_offset + len``): latencies cluster in a few powers of two, so a
master holding thousands of per-second histograms stays small.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from fractions import Fraction
from numbers import Real
from typing import Any

import numpy as np

SUB_BUCKET_BITS = 6
SUB_BUCKETS = 1 << SUB_BUCKET_BITS  # 64 sub-buckets per power of two
EXACT_LIMIT_US = 2 * SUB_BUCKETS  # values below 128 µs are exact
LIMIT_US = 1 << 32  # values >= LIMIT_US go to overflow
N_BUCKETS = SUB_BUCKETS * (32 - SUB_BUCKET_BITS - 1) + 2 * SUB_BUCKETS  # 1728
MAX_RELATIVE_ERROR = 1.0 / (1 << (SUB_BUCKET_BITS + 1))  # 2**-7

_WIRE_KEYS = frozenset(("i", "c", "n", "sum", "min", "max", "over"))
_PERCENTILE_KEYS = {50: "p50", 90: "p90", 95: "p95", 99: "p99", 99.9: "p999"}


def bucket_index(value_us: int) -> int:
    """Bucket of one in-range value (0 <= value_us < LIMIT_US)."""
    shift = value_us.bit_length() - (SUB_BUCKET_BITS + 1)
    if shift < 0:
        shift = 0
    return (shift << SUB_BUCKET_BITS) + (value_us >> shift)


def bucket_bounds(index: int) -> tuple[int, int]:
    """Smallest and largest integer value (inclusive) that fall into bucket ``index``."""
    if not 0 <= index < N_BUCKETS:
        raise ValueError(f"bucket index out of range: {index}")
    shift = max((index >> SUB_BUCKET_BITS) - 1, 0)
    low = (index - (shift << SUB_BUCKET_BITS)) << shift
    return low, low + (1 << shift) - 1


def _bucket_indexes(values: np.ndarray) -> np.ndarray:
    """Vectorised ``bucket_index`` for an int64 array of in-range values."""
    exponent = np.frexp(values.astype(np.float64))[1]  # == bit_length for ints < 2**53
    shift = np.maximum(exponent - (SUB_BUCKET_BITS + 1), 0).astype(np.int64)
    return (shift << SUB_BUCKET_BITS) + (values >> shift)


_BOUNDS = np.array([bucket_bounds(i) for i in range(N_BUCKETS)], dtype=np.float64)
_MIDPOINTS = (_BOUNDS[:, 0] + _BOUNDS[:, 1]) / 2.0


def percentile_key(q: float) -> str:
    """Report key of a percentile: 50 -> "p50", 99.9 -> "p999"."""
    key = _PERCENTILE_KEYS.get(q)
    return key if key is not None else "p" + repr(float(q)).rstrip("0").rstrip(".").replace(".", "")


class Histogram:
    """Counts of integer-microsecond values; exact count, sum, min, max; mergeable."""

    __slots__ = ("count", "sum_us", "min_us", "max_us", "overflow", "_counts", "_offset", "_view")

    def __init__(self) -> None:
        self.count = 0
        self.sum_us = 0
        self.min_us: int | None = None
        self.max_us: int | None = None
        self.overflow = 0
        self._counts: np.ndarray | None = None
        self._offset = 0
        self._view: memoryview | None = None  # of _counts, for fast scalar increments

    # ---- recording -------------------------------------------------------------------
    def record(self, value_us: int) -> None:
        """Add one value (a float is rounded); negatives clamp to 0, >= 2**32 is overflow."""
        v = value_us if type(value_us) is int else int(round(value_us))
        if v < 0:
            v = 0
        self.count += 1
        self.sum_us += v
        low = self.min_us
        if low is None:
            self.min_us = self.max_us = v
        elif v < low:
            self.min_us = v
        elif v > self.max_us:  # type: ignore[operator]
            self.max_us = v
        if v >= LIMIT_US:
            self.overflow += 1
            return
        shift = v.bit_length() - (SUB_BUCKET_BITS + 1)
        idx = ((shift << SUB_BUCKET_BITS) + (v >> shift) if shift > 0 else v) - self._offset
        view = self._view
        if view is None or not 0 <= idx < len(view):
            # grow with some slack so a stream of scalar records rarely reallocates
            idx += self._offset
            self._ensure(max(idx - 32, 0), min(idx + 33, N_BUCKETS))
            view = self._view = memoryview(self._counts)  # type: ignore[arg-type]
            idx -= self._offset
        view[idx] += 1

    def record_many(self, values_us: Iterable[int] | np.ndarray) -> Histogram:
        """Add many values at once (floats are rounded to the nearest µs). Returns self."""
        a = np.asarray(values_us)
        if a.size == 0:
            return self
        a = a.ravel()
        if a.dtype.kind == "f":
            if np.isnan(a).any():
                raise ValueError("NaN is not a duration")
            a = np.rint(np.clip(a, 0.0, 2.0**62)).astype(np.int64)
        elif a.dtype.kind in "iu":
            a = np.maximum(a.astype(np.int64, copy=False), 0)
        else:
            raise TypeError(f"expected numbers, got dtype {a.dtype}")
        vmin = int(a.min())
        vmax = int(a.max())
        self.count += int(a.size)
        self.sum_us += int(a.sum())
        if self.min_us is None or vmin < self.min_us:
            self.min_us = vmin
        if self.max_us is None or vmax > self.max_us:
            self.max_us = vmax
        if vmax >= LIMIT_US:
            over = a >= LIMIT_US
            self.overflow += int(np.count_nonzero(over))
            a = a[~over]
            if a.size == 0:
                return self
        idx = _bucket_indexes(a)
        lo = int(idx.min())
        self._add_dense(lo, np.bincount(idx - lo))
        return self

    def merge(self, other: Histogram) -> Histogram:
        """Add every value of ``other`` to this histogram (in place). Returns self."""
        if other.count == 0:
            return self
        self.count += other.count
        self.sum_us += other.sum_us
        self.overflow += other.overflow
        if self.min_us is None or (other.min_us is not None and other.min_us < self.min_us):
            self.min_us = other.min_us
        if self.max_us is None or (other.max_us is not None and other.max_us > self.max_us):
            self.max_us = other.max_us
        if other._counts is not None:
            self._add_dense(other._offset, other._counts)
        return self

    def _ensure(self, lo: int, hi: int) -> None:
        """Make the dense array cover bucket indexes [lo, hi)."""
        counts = self._counts
        if counts is None:
            self._counts = np.zeros(hi - lo, dtype=np.int64)
            self._view = None
            self._offset = lo
            return
        c_lo, c_hi = self._offset, self._offset + len(counts)
        if lo >= c_lo and hi <= c_hi:
            return
        n_lo, n_hi = min(lo, c_lo), max(hi, c_hi)
        grown = np.zeros(n_hi - n_lo, dtype=np.int64)
        grown[c_lo - n_lo : c_hi - n_lo] = counts
        self._counts = grown
        self._view = None
        self._offset = n_lo

    def _add_dense(self, lo: int, counts: np.ndarray) -> None:
        if self._counts is None:
            self._counts = counts.astype(np.int64, copy=True)
            self._view = None
            self._offset = lo
            return
        self._ensure(lo, lo + len(counts))
        start = lo - self._offset
        self._counts[start : start + len(counts)] += counts

    # ---- queries ---------------------------------------------------------------------
    def __bool__(self) -> bool:
        return self.count > 0

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Histogram):
            return NotImplemented
        return self.encode() == other.encode()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Histogram(count={self.count}, min_us={self.min_us}, max_us={self.max_us}, overflow={self.overflow})"

    def mean_us(self) -> float | None:
        """Exact mean (from the exact sum), None when empty."""
        return self.sum_us / self.count if self.count else None

    def bucket_counts(self) -> dict[int, int]:
        """Non-empty buckets as {index: count} (for tests and inspection)."""
        if self._counts is None:
            return {}
        nz = np.flatnonzero(self._counts)
        return dict(zip((nz + self._offset).tolist(), self._counts[nz].tolist(), strict=True))

    def percentile(self, q: float) -> float:
        """Value in µs at percentile ``q`` (0..100); NaN when empty.

        Nearest-rank definition: the value of rank ``ceil(q/100 * count)`` (at least 1),
        reported as its bucket's midpoint clamped to [min, max], so within 1 % of the true
        sample value. ``q == 0`` is the exact min, ``q == 100`` the exact max; a rank that
        falls among overflowed values reports the exact max.
        """
        return self.percentiles((q,))[0]

    def percentiles(self, qs: Iterable[float]) -> list[float]:
        """``percentile`` for several q at once (one cumulative sum)."""
        qs = list(qs)
        for q in qs:
            if not (isinstance(q, Real) and 0 <= q <= 100):
                raise ValueError(f"percentile must be within 0..100, got {q!r}")
        if self.count == 0:
            return [math.nan] * len(qs)
        assert self.min_us is not None and self.max_us is not None
        cumulative = np.cumsum(self._counts) if self._counts is not None else np.zeros(0, np.int64)
        in_buckets = int(cumulative[-1]) if len(cumulative) else 0
        out: list[float] = []
        for q in qs:
            if q == 0:
                out.append(float(self.min_us))
                continue
            if q == 100:
                out.append(float(self.max_us))
                continue
            # exact decimal arithmetic: 99.9 % of 1000 is rank 999, not 1000 through float error
            rank = max(1, math.ceil(Fraction(repr(float(q))) * self.count / 100))
            if rank > in_buckets:
                out.append(float(self.max_us))
                continue
            pos = int(np.searchsorted(cumulative, rank, side="left"))
            mid = float(_MIDPOINTS[pos + self._offset])
            out.append(min(max(mid, float(self.min_us)), float(self.max_us)))
        return out

    def percentiles_ms(self, qs: Iterable[float] = (50, 90, 95, 99, 99.9)) -> dict[str, float | None]:
        """{"p50": ms, ...} for the given percentiles; None values when empty."""
        qs = list(qs)
        keys = [percentile_key(q) for q in qs]
        if self.count == 0:
            return dict.fromkeys(keys)
        return {k: v / 1000.0 for k, v in zip(keys, self.percentiles(qs), strict=True)}

    def summary_ms(self) -> dict[str, float | None]:
        """{"mean","p50","p90","p95","p99","p999","max"} in ms; None values when empty."""
        pct = self.percentiles_ms()
        mean = self.mean_us()
        return {
            "mean": None if mean is None else mean / 1000.0,
            **pct,
            "max": None if self.max_us is None else self.max_us / 1000.0,
        }

    def copy(self) -> Histogram:
        h = Histogram()
        h.count, h.sum_us, h.min_us, h.max_us = self.count, self.sum_us, self.min_us, self.max_us
        h.overflow, h._offset = self.overflow, self._offset
        h._counts = None if self._counts is None else self._counts.copy()
        return h

    # ---- wire ------------------------------------------------------------------------
    def encode(self) -> dict[str, Any]:
        """Sparse, msgpack/JSON-friendly form: only non-empty buckets, plain Python ints."""
        if self._counts is None:
            idx: list[int] = []
            cnt: list[int] = []
        else:
            nz = np.flatnonzero(self._counts)
            idx = (nz + self._offset).tolist()
            cnt = self._counts[nz].tolist()
        return {
            "i": idx,
            "c": cnt,
            "n": self.count,
            "sum": self.sum_us,
            "min": self.min_us,
            "max": self.max_us,
            "over": self.overflow,
        }

    @classmethod
    def decode(cls, d: Any) -> Histogram:
        """Inverse of ``encode``; anything inconsistent raises ValueError."""
        if not isinstance(d, dict) or set(d) != _WIRE_KEYS:
            raise ValueError("histogram: expected a dict with keys i, c, n, sum, min, max, over")
        n, total, over = _nonneg_int(d["n"], "n"), _nonneg_int(d["sum"], "sum"), _nonneg_int(d["over"], "over")
        vmin, vmax = d["min"], d["max"]
        idx = _int_array(d["i"], "i")
        cnt = _int_array(d["c"], "c")
        if len(idx) != len(cnt):
            raise ValueError("histogram: i and c differ in length")
        h = cls()
        if n == 0:
            if vmin is not None or vmax is not None or len(idx) or over or total:
                raise ValueError("histogram: empty histogram with values")
            return h
        vmin, vmax = _nonneg_int(vmin, "min"), _nonneg_int(vmax, "max")
        if vmin > vmax:
            raise ValueError("histogram: min > max")
        if len(idx):
            if idx[0] < 0 or idx[-1] >= N_BUCKETS or (len(idx) > 1 and np.any(np.diff(idx) <= 0)):
                raise ValueError("histogram: bucket indexes must increase within range")
            if np.any(cnt <= 0):
                raise ValueError("histogram: bucket counts must be positive")
            if vmin >= LIMIT_US or bucket_index(vmin) != idx[0]:
                raise ValueError("histogram: min is not in the lowest bucket")
            if over == 0 and (vmax >= LIMIT_US or bucket_index(vmax) != idx[-1]):
                raise ValueError("histogram: max is not in the highest bucket")
        if int(cnt.sum()) + over != n:
            raise ValueError("histogram: counts do not add up to n")
        if over and vmax < LIMIT_US:
            raise ValueError("histogram: overflow without a max beyond range")
        if not over and vmax >= LIMIT_US:
            raise ValueError("histogram: max beyond range without overflow")
        h.count, h.sum_us, h.min_us, h.max_us, h.overflow = n, total, vmin, vmax, over
        if len(idx):
            lo = int(idx[0])
            dense = np.zeros(int(idx[-1]) - lo + 1, dtype=np.int64)
            dense[idx - lo] = cnt
            h._counts, h._offset = dense, lo
        return h


def _nonneg_int(x: Any, what: str) -> int:
    if type(x) is not int or x < 0:
        raise ValueError(f"histogram: {what} must be a non-negative int, got {x!r}")
    return x


def _int_array(x: Any, what: str) -> np.ndarray:
    if not isinstance(x, list):
        raise ValueError(f"histogram: {what} must be a list")
    if not x:
        return np.zeros(0, dtype=np.int64)
    if set(map(type, x)) != {int}:  # bool and float are not bucket data
        raise ValueError(f"histogram: {what} must hold ints")
    try:
        return np.array(x, dtype=np.int64)
    except OverflowError as e:
        raise ValueError(f"histogram: {what} holds an int out of range") from e
