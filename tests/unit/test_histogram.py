"""Histogram: bucket layout and its error bound, recording, merging, percentiles, wire form."""

from __future__ import annotations

import json
import math

import msgpack
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seldon_load.measure.histogram import (
    LIMIT_US,
    MAX_RELATIVE_ERROR,
    N_BUCKETS,
    Histogram,
    bucket_bounds,
    bucket_index,
)


def _hist(values) -> Histogram:
    return Histogram().record_many(np.asarray(values, dtype=np.int64))


def test_buckets_tile_the_range_and_midpoints_are_within_one_percent():
    """Proof by exhaustion over all buckets: every integer 0 .. 2**32-1 is in exactly one
    bucket, and the midpoint is within MAX_RELATIVE_ERROR (< 1 %) of both ends of its bucket.
    Within a bucket |mid - v| / v is largest at an end, so the bound holds for every value."""
    assert MAX_RELATIVE_ERROR < 0.01
    expected_low = 0
    for i in range(N_BUCKETS):
        low, high = bucket_bounds(i)
        assert low == expected_low
        assert bucket_index(low) == i and bucket_index(high) == i
        mid = (low + high) / 2
        if low == 0:
            assert high == 0
        else:
            assert (mid - low) / low <= MAX_RELATIVE_ERROR
            assert (high - mid) / high <= MAX_RELATIVE_ERROR
        expected_low = high + 1
    assert expected_low == LIMIT_US
    for i in range(128):
        assert bucket_bounds(i) == (i, i)  # below 128 µs every value is exact


def test_vectorised_index_equals_scalar_index():
    edges = [v for i in range(N_BUCKETS) for v in bucket_bounds(i)]
    rng = np.random.default_rng(1)
    randoms = rng.integers(0, LIMIT_US, 20_000).tolist()
    values = edges + randoms
    h = _hist(values)
    expected: dict[int, int] = {}
    for v in values:
        expected[bucket_index(v)] = expected.get(bucket_index(v), 0) + 1
    assert h.bucket_counts() == expected


@given(st.lists(st.integers(min_value=-1000, max_value=2**34), max_size=200))
@settings(max_examples=200, deadline=None)
def test_record_and_record_many_agree(values):
    one = Histogram()
    for v in values:
        one.record(v)
    assert one == Histogram().record_many(values)
    assert one.count == len(values)
    if values:
        clamped = [max(v, 0) for v in values]
        assert one.sum_us == sum(clamped)
        assert one.min_us == min(clamped) and one.max_us == max(clamped)
        assert one.overflow == sum(v >= LIMIT_US for v in values)


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["one", "many", "merge", "copy"]),
            st.lists(st.integers(min_value=0, max_value=2**33), max_size=20),
        ),
        max_size=30,
    )
)
@settings(max_examples=200, deadline=None)
def test_interleaved_operations_equal_one_record_many(ops):
    """Scalar records after the dense array was regrown or replaced land in the right buckets."""
    h = Histogram()
    everything: list[int] = []
    for op, values in ops:
        everything += values
        if op == "one":
            for v in values:
                h.record(v)
        elif op == "many":
            h.record_many(values)
        elif op == "merge":
            h.merge(_hist(values))
        else:
            h = h.copy()
            for v in values:
                h.record(v)
    assert h == _hist(everything)


def test_negative_clamps_and_overflow_is_counted_not_dropped():
    h = _hist([-5, 10, LIMIT_US - 1, LIMIT_US, 3 * LIMIT_US])
    assert h.count == 5 and h.overflow == 2
    assert h.min_us == 0 and h.max_us == 3 * LIMIT_US
    assert h.sum_us == 0 + 10 + LIMIT_US - 1 + LIMIT_US + 3 * LIMIT_US
    assert h.percentile(100) == 3 * LIMIT_US
    assert h.percentile(90) == 3 * LIMIT_US  # rank 5 lies among the overflowed values
    assert h.percentile(0) == 0.0
    assert abs(h.percentile(60) - (LIMIT_US - 1)) / (LIMIT_US - 1) <= 0.01
    assert Histogram.decode(h.encode()) == h


def test_float_values_are_rounded_and_nan_is_rejected():
    h = Histogram().record_many(np.array([1.4, 1.6, -0.3, 2.5]))
    assert h.bucket_counts() == {1: 1, 2: 2, 0: 1}  # 2.5 rounds half to even
    one = Histogram()
    for v in (1.4, 1.6, -0.3, 2.5):
        one.record(v)
    assert one == h
    with pytest.raises(ValueError):
        Histogram().record(math.nan)
    with pytest.raises(ValueError):
        Histogram().record_many(np.array([1.0, math.nan]))
    with pytest.raises(TypeError):
        Histogram().record_many(np.array(["a"]))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_percentiles_within_one_percent_of_numpy_on_lognormal(seed):
    rng = np.random.default_rng(seed)
    # heavy-tailed latencies from ~100 µs to seconds; n chosen so q*n/100 is never an integer
    values = np.rint(rng.lognormal(mean=9.0, sigma=1.5, size=100_003)).astype(np.int64)
    h = _hist(values)
    for q in (1, 10, 25, 50, 75, 90, 95, 99, 99.9, 99.99):
        exact = float(np.percentile(values, q, method="inverted_cdf"))  # nearest rank
        assert abs(h.percentile(q) - exact) <= 0.01 * exact, q
    assert h.percentile(0) == values.min() and h.percentile(100) == values.max()
    assert h.mean_us() == pytest.approx(values.mean(), rel=1e-12)
    assert h.sum_us == int(values.sum())


def test_percentile_rank_uses_exact_decimal_arithmetic():
    # 99.9 / 100 * 1000 == 999.0000000000001 in floats, which would wrongly give rank 1000
    h = _hist(range(1, 1001))
    assert h.percentile(99.9) == 995.5  # rank 999: value 999, bucket 992..999
    assert h.percentile(99.95) == 1000.0  # rank 1000: bucket 1000..1007, clamped to max
    assert _hist(range(1, 101)).percentile(7) == 7.0  # 7 / 100 * 100 == 7.000000000000001


def test_merge_of_random_splits_equals_histogram_of_union():
    rng = np.random.default_rng(7)
    values = np.rint(rng.lognormal(8, 2, 50_000)).astype(np.int64)
    values[:10] = [0, -3, LIMIT_US, LIMIT_US + 7, 1, 127, 128, 2**20, 2**31, LIMIT_US - 1]
    union = _hist(values)
    for n_parts in (1, 2, 5, 17):
        part_of = rng.integers(0, n_parts, len(values))
        parts = [_hist(values[part_of == p]) for p in range(n_parts)]
        merged = Histogram()
        for p in rng.permutation(n_parts):
            merged.merge(parts[p])
        assert merged.bucket_counts() == union.bucket_counts()
        assert merged == union
        assert merged.percentiles((50, 99, 99.9)) == union.percentiles((50, 99, 99.9))


def test_merge_with_empty_and_copy_independence():
    a = _hist([5, 500, 50_000])
    assert Histogram().merge(a) == a
    assert a.copy().merge(Histogram()) == a
    b = a.copy()
    b.record(7)
    assert b.count == 4 and a.count == 3 and a.bucket_counts() != b.bucket_counts()


def test_empty_histogram_queries():
    h = Histogram()
    assert not h and h.count == 0
    assert h.mean_us() is None
    assert math.isnan(h.percentile(50))
    assert h.percentiles_ms() == {"p50": None, "p90": None, "p95": None, "p99": None, "p999": None}
    assert set(h.summary_ms()) == {"mean", "p50", "p90", "p95", "p99", "p999", "max"}
    assert all(v is None for v in h.summary_ms().values())
    assert Histogram.decode(h.encode()) == h


def test_summary_in_milliseconds():
    h = _hist([1000] * 98 + [20_000, 30_000])
    s = h.summary_ms()
    assert s["p50"] == pytest.approx(1.0, rel=0.01)
    assert s["p99"] == pytest.approx(20.0, rel=0.01)
    assert s["max"] == 30.0
    assert s["mean"] == pytest.approx((98 * 1000 + 50_000) / 100 / 1000)
    assert list(h.percentiles_ms((50, 99.9))) == ["p50", "p999"]


@pytest.mark.parametrize("q", [-1, 100.5, math.nan, "50"])
def test_percentile_out_of_range_raises(q):
    with pytest.raises(ValueError):
        _hist([1, 2, 3]).percentile(q)


def test_encode_is_sparse_and_round_trips_through_json_and_msgpack():
    h = _hist([3, 3, 200, 70_000_000, LIMIT_US + 1])
    enc = h.encode()
    assert set(enc) == {"i", "c", "n", "sum", "min", "max", "over"}
    assert len(enc["i"]) == 3 and sum(enc["c"]) == 4 and enc["over"] == 1
    assert Histogram.decode(json.loads(json.dumps(enc))) == h
    wire = msgpack.unpackb(msgpack.packb(enc, use_bin_type=True), raw=False)
    back = Histogram.decode(wire)
    assert back == h and back.percentiles((0, 50, 99, 100)) == h.percentiles((0, 50, 99, 100))


def _good() -> dict:
    enc = _hist([5, 300, 300, 9000]).encode()
    assert enc["i"] == [5, 203, 518]
    return enc


def _with(**changes) -> dict:
    d = _good()
    d.update(changes)
    return d


@pytest.mark.parametrize(
    "bad",
    [
        None,
        [],
        "x",
        {k: v for k, v in _good().items() if k != "sum"},  # missing key
        {**_good(), "extra": 1},
        _with(n=5),  # counts do not add up
        _with(n=-4),
        _with(n=4.0),
        _with(n=True),
        _with(i=[5, 203]),  # length mismatch
        _with(c=[1, 2, "1"]),
        _with(c=[1, 0, 3]),
        _with(c=[1, 2.0, 1]),
        _with(i=[5, 5, 518]),
        _with(i=[203, 5, 518]),
        _with(i=[5, 203, N_BUCKETS]),
        _with(i=[-1, 203, 518]),
        _with(i="5,300"),
        _with(min=None),
        _with(min=6),  # min is not in the lowest bucket
        _with(max=8000),  # max is not in the highest bucket
        _with(min=9000, max=5),
        _with(over=1),
        _with(i=[5, 203, 2**70]),
        {"i": [], "c": [], "n": 0, "sum": 3, "min": None, "max": None, "over": 0},
        {"i": [], "c": [], "n": 1, "sum": 5, "min": 5, "max": 5, "over": 0},
        {"i": [], "c": [], "n": 1, "sum": 5, "min": 5, "max": 5, "over": 1},  # overflow below range
    ],
)
def test_decode_rejects_malformed(bad):
    with pytest.raises(ValueError):
        Histogram.decode(bad)
