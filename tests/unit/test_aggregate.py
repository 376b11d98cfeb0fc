"""Aggregate: exact merging over workers and reports, summaries, timeline, bad messages."""

from __future__ import annotations

import copy
import random
import subprocess
import sys
from pathlib import Path

import msgpack
import numpy as np
import pytest

from seldon_load.measure.aggregate import Aggregate
from seldon_load.measure.histogram import Histogram
from seldon_load.measure.messages import ReportMessage, WindowDelta
from seldon_load.measure.recorder import Recorder

T0 = 50.0


def _random_events(seed: int, n: int) -> list[tuple]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        name = rng.choice(["m1", "m2"])
        intended = T0 + rng.uniform(0, 8)
        if rng.random() < 0.05:
            out.append(("drop", name, intended))
            continue
        sent = intended + rng.expovariate(1000)
        done = sent + rng.lognormvariate(-4.5, 1.2)
        kind = "http_503" if rng.random() < 0.1 else None
        out.append(("rec", name, intended, sent, done, kind, "overloaded" if kind else None))
    return out


def _feed(agg: Aggregate, events: list[tuple], n_workers: int, seed: int) -> None:
    """Spread events over workers at random, draining each at random moments."""
    rng = random.Random(seed)
    recorders = [Recorder(T0, worker_id=f"w{i}") for i in range(n_workers)]
    for ev in events:
        k = rng.randrange(n_workers)
        r = recorders[k]
        if ev[0] == "drop":
            r.dropped(ev[1], ev[2])
        else:
            r.record(*ev[1:])
        if rng.random() < 0.002:
            wire = msgpack.unpackb(msgpack.packb(r.drain(), use_bin_type=True), raw=False)
            assert agg.merge(wire, r.worker_id)
    for r in recorders:
        assert agg.merge(r.drain(), r.worker_id)


def _state(agg: Aggregate) -> dict:
    return {
        (s, n): (w.scheduled, w.ok, w.failed, w.dropped, w.completed, w.latency, w.service, w.lag)
        for s in agg.seconds()
        for n in agg.names()
        for w in [agg.window(s, n)]
    }


def test_any_split_over_workers_and_reports_gives_the_same_windows():
    events = _random_events(1, 15_000)
    single = Aggregate()
    _feed(single, events, 1, seed=0)
    for n_workers, seed in ((2, 1), (5, 2), (13, 3)):
        split = Aggregate()
        _feed(split, events, n_workers, seed)
        assert _state(split) == _state(single)
        assert split.bad_messages == 0 and len(split.workers()) == n_workers
    for s in single.seconds():
        for n in single.names():
            w = single.window(s, n)
            assert w.scheduled == w.ok + w.failures + w.dropped


def test_merged_percentiles_are_those_of_the_union_not_an_average():
    rng = np.random.default_rng(3)
    fast = rng.integers(1_000, 2_000, 9_901)  # a healthy worker
    slow = rng.integers(100_000, 200_000, 99)  # a worker that saw the slow tail
    agg = Aggregate()
    for wid, values in (("fast", fast), ("slow", slow)):
        w = WindowDelta(0, "m", scheduled=len(values), ok=len(values), completed=len(values))
        for h in (w.latency, w.service, w.lag):
            h.record_many(values)
        assert agg.merge(ReportMessage(worker_id=wid, windows=[w]).to_wire(), wid)
    union = np.concatenate([fast, slow])
    merged_p99 = agg.summarize(0, 1).latency.percentile(99)
    exact = float(np.percentile(union, 99, method="inverted_cdf"))
    assert abs(merged_p99 - exact) <= 0.01 * exact
    averaged = (np.percentile(fast, 99) + np.percentile(slow, 99)) / 2
    assert abs(averaged - exact) > 0.1 * exact  # what averaging would have got wrong


def _delta(second: int, name: str, ok: int = 0, failed=None, dropped=0, completed=0, lat_us=1000) -> WindowDelta:
    failed = failed or {}
    answered = ok + sum(failed.values())
    w = WindowDelta(second, name, answered + dropped, ok, dict(failed), dropped, completed)
    for h in (w.latency, w.service, w.lag):
        h.record_many([lat_us] * answered)
    return w


def test_summarize_range_rates_names_and_examples():
    agg = Aggregate()
    windows = [_delta(s, "a", ok=10, completed=9, lat_us=1000 * (s + 1)) for s in range(10)]
    windows.append(_delta(3, "a", failed={"timeout": 2}, dropped=1))
    windows.append(_delta(4, "b", ok=100, completed=100, lat_us=50_000))
    msg = ReportMessage(windows=windows, errors={"a": {"timeout": ["t1", "t2"]}, "b": {"http_500": ["x"]}})
    assert agg.merge(msg.to_wire(), "w")
    s = agg.summarize(2.5, 5.2, names={"a"})  # windows 2, 3, 4, 5 of "a"
    assert (s.t_from_s, s.t_to_s, s.duration_s) == (2, 6, 4.0)
    assert (s.scheduled, s.ok, s.failures, s.dropped, s.completed) == (43, 40, 2, 1, 36)
    assert s.failed == {"timeout": 2} and s.requests + s.dropped == s.scheduled
    assert s.offered_rps == 43 / 4 and s.achieved_rps == 36 / 4
    assert (s.latency.min_us, s.latency.max_us, s.latency.count) == (1000, 6000, 42)  # 1 ms: the failed requests
    assert s.error_examples == {"timeout": ["t1", "t2"]}  # "b"'s http_500 is not in range
    both = agg.summarize(4, 5)
    assert both.scheduled == 110 and both.latency.max_us == 50_000 and both.error_examples == {}
    assert agg.summarize(3, 3).duration_s == 0 and agg.summarize(3, 3).achieved_rps == 0.0
    with pytest.raises(ValueError):
        agg.summarize(5, 4)
    assert agg.window(99, "a").scheduled == 0 and agg.names() == ["a", "b"]


def test_cpu_max_counts_reports_whose_interval_midpoint_is_in_range():
    agg = Aggregate()
    for wid, t_s, cpu in (("w1", 3.0, 20.0), ("w1", 6.0, 90.0), ("w2", 5.0, 40.0), ("w2", 9.0, 99.0)):
        assert agg.merge(ReportMessage(cpu_percent=cpu, interval_s=3.0, t_s=t_s, in_flight_max=int(cpu)), wid)
    s = agg.summarize(3, 6)  # midpoints: 1.5, 4.5, 3.5, 7.5
    assert s.cpu_percent_max == 90.0 and s.in_flight_max == 90
    assert agg.summarize(0, 3).cpu_percent_max == 20.0
    assert agg.summarize(8, 9).cpu_percent_max is None


def test_steal_max_is_the_worst_report_in_range():
    agg = Aggregate()
    for wid, t_s, steal in (("w1", 3.0, 2.0), ("w1", 6.0, 31.5), ("w2", 5.0, None), ("w2", 9.0, 50.0)):
        assert agg.merge(ReportMessage(cpu_percent=10.0, steal_percent=steal, interval_s=3.0, t_s=t_s), wid)
    assert agg.summarize(3, 6).steal_percent_max == 31.5  # midpoints 1.5, 4.5, 3.5, 7.5
    assert agg.summarize(0, 3).steal_percent_max == 2.0
    assert agg.summarize(8, 9).steal_percent_max is None


def test_timeline_is_contiguous_and_merges_names():
    agg = Aggregate()
    agg.merge(ReportMessage(windows=[_delta(1, "a", ok=2, completed=2, lat_us=2000),
                                     _delta(1, "b", ok=2, completed=1, lat_us=8000),
                                     _delta(3, "a", failed={"timeout": 1}, dropped=4)]), "w")
    tl = agg.timeline()
    assert [e["t_s"] for e in tl] == [1, 2, 3]
    assert tl[0]["scheduled"] == 4 and tl[0]["completed"] == 3 and tl[0]["ok"] == 4
    assert tl[0]["p50_ms"] == pytest.approx(2.0, rel=0.01) and tl[0]["p99_ms"] == pytest.approx(8.0, rel=0.01)
    assert tl[1] == {"t_s": 2, "scheduled": 0, "completed": 0, "ok": 0, "failures": 0, "dropped": 0,
                     "p50_ms": None, "p99_ms": None, "lag_p99_ms": None}
    assert (tl[2]["failures"], tl[2]["dropped"]) == (1, 4)
    assert agg.timeline(names={"b"})[0]["p50_ms"] == pytest.approx(8.0, rel=0.01)
    assert Aggregate().timeline() == []


def _good_wire() -> dict:
    rec = Recorder(T0)
    rec.record("m", T0 + 0.1, T0 + 0.1, T0 + 0.2, None)
    rec.record("m", T0 + 1.1, T0 + 1.1, T0 + 1.2, "timeout", "slow")
    return rec.drain()


def _broken(fn) -> dict:
    d = copy.deepcopy(_good_wire())
    fn(d)
    return d


BAD = [
    None,
    [],
    b"bytes",
    {"version": 2},
    _broken(lambda d: d.update(version=2)),
    _broken(lambda d: d.pop("windows")),
    _broken(lambda d: d.update(extra=1)),
    _broken(lambda d: d.update(windows={})),
    _broken(lambda d: d.update(cpu_percent="high")),
    _broken(lambda d: d.update(cpu_percent=float("nan"))),
    _broken(lambda d: d.update(in_flight_max=-1)),
    _broken(lambda d: d.update(errors={"m": ["x"]})),
    _broken(lambda d: d.update(errors={"m": {"t": ["a", "b", "c", "d"]}})),
    _broken(lambda d: d["windows"][1].update(second=-1)),
    _broken(lambda d: d["windows"][1].update(second=10**9)),
    _broken(lambda d: d["windows"][1].update(name=3)),
    _broken(lambda d: d["windows"][1].update(ok="1")),
    _broken(lambda d: d["windows"][1].update(scheduled=7)),  # identity broken
    _broken(lambda d: d["windows"][1].update(failed={"timeout": 1.0})),
    _broken(lambda d: d["windows"][1].update(failed=[])),
    _broken(lambda d: d["windows"][1]["latency"].update(n=5)),
    _broken(lambda d: d["windows"][1].update(latency=Histogram().encode())),  # count != answered
    _broken(lambda d: d["windows"][1].pop("lag")),
    _broken(lambda d: d["windows"].append("window")),
]


@pytest.mark.parametrize("bad", BAD)
def test_malformed_messages_raise_value_error(bad):
    with pytest.raises(ValueError):
        ReportMessage.from_wire(bad)


def test_aggregate_survives_bad_messages_and_never_half_applies_one():
    agg = Aggregate()
    assert agg.merge(_good_wire(), "w1")
    before = _state(agg)
    for bad in BAD:  # several of them have a valid first window before the bad one
        assert agg.merge(bad, "w2") is False
    assert agg.bad_messages == len(BAD) and agg.last_error
    assert _state(agg) == before and agg.workers() == ["w1"]
    assert agg.merge(_good_wire(), "w1")
    assert agg.window(0, "m").scheduled == 2 and agg.window(1, "m").failed == {"timeout": 2}


def test_measure_imports_neither_locust_nor_gevent():
    code = (
        "import sys, seldon_load.measure.aggregate, seldon_load.measure.recorder\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('locust', 'gevent'))\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[2])
