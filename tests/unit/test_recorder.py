"""Recorder: accounting, window attribution, drain/reset, examples, CPU and in-flight."""

from __future__ import annotations

import os
import random
import time
from collections import Counter, defaultdict

import msgpack
import psutil
import pytest

from seldon_load.measure.histogram import Histogram
from seldon_load.measure.messages import MAX_EXAMPLES, ReportMessage, WindowDelta
from seldon_load.measure.recorder import Recorder, steal_percent, steal_ticks

T0 = 1000.0


def _sum(messages: list[ReportMessage]) -> dict[tuple[int, str], WindowDelta]:
    """Add up window deltas of several drains (what the master does)."""
    out: dict[tuple[int, str], WindowDelta] = {}
    for m in messages:
        for w in m.windows:
            acc = out.setdefault((w.second, w.name), WindowDelta(w.second, w.name))
            acc.scheduled += w.scheduled
            acc.ok += w.ok
            for k, n in w.failed.items():
                acc.failed[k] = acc.failed.get(k, 0) + n
            acc.dropped += w.dropped
            acc.completed += w.completed
            acc.latency.merge(w.latency)
            acc.service.merge(w.service)
            acc.lag.merge(w.lag)
    return out


def _events(rng: random.Random, n: int):
    kinds = ["http_503", "timeout", "grpc_UNAVAILABLE"]
    for _ in range(n):
        name = rng.choice(["a", "b", "pipe"])
        intended = T0 + rng.uniform(-0.5, 6.0)
        if rng.random() < 0.1:
            yield ("drop", name, intended)
            continue
        sent = intended + rng.expovariate(1 / 0.002)
        done = sent + rng.lognormvariate(-4, 1)
        kind = rng.choice(kinds) if rng.random() < 0.2 else None
        yield ("rec", name, intended, sent, done, kind)


def test_accounting_identity_and_exact_contents_with_random_events_and_drains():
    rng = random.Random(42)
    rec = Recorder(T0)
    drained: list[ReportMessage] = []
    truth: dict[tuple[int, str], Counter] = defaultdict(Counter)
    lat: dict[tuple[int, str], list[int]] = defaultdict(list)
    svc: dict[tuple[int, str], list[int]] = defaultdict(list)
    lag: dict[tuple[int, str], list[int]] = defaultdict(list)
    for ev in _events(rng, 20_000):
        if ev[0] == "drop":
            _, name, intended = ev
            rec.dropped(name, intended)
            key = (max(int(intended - T0), 0), name)
            truth[key]["scheduled"] += 1
            truth[key]["dropped"] += 1
        else:
            _, name, intended, sent, done, kind = ev
            rec.record(name, intended, sent, done, kind, f"{kind} detail" if kind else None)
            key = (max(int(intended - T0), 0), name)
            truth[key]["scheduled"] += 1
            truth[key]["ok" if kind is None else kind] += 1
            truth[(max(int(done - T0), 0), name)]["completed"] += 1
            lat[key].append(round((done - intended) * 1e6))
            svc[key].append(round((done - sent) * 1e6))
            lag[key].append(round((sent - intended) * 1e6))
        if rng.random() < 0.001:
            drained.append(ReportMessage.from_wire(rec.drain()))
    drained.append(ReportMessage.from_wire(rec.drain()))
    assert len(drained) > 5
    got = _sum(drained)
    assert set(got) == set(truth)
    for key, w in got.items():
        t = truth[key]
        assert w.scheduled == t["scheduled"] == w.ok + w.failures + w.dropped
        assert w.ok == t["ok"] and w.dropped == t["dropped"] and w.completed == t["completed"]
        assert w.failed == {k: n for k, n in t.items() if k.startswith(("http", "timeout", "grpc"))}
        for hist, values in ((w.latency, lat[key]), (w.service, svc[key]), (w.lag, lag[key])):
            assert hist == Histogram().record_many(values)
    assert sum(w.completed for w in got.values()) == sum(w.ok + w.failures for w in got.values())


def test_windows_by_intended_time_and_completions_by_finish_time():
    rec = Recorder(T0)
    rec.record("m", T0 + 0.9, T0 + 1.2, T0 + 2.3, None)  # due in 0, sent in 1, done in 2
    rec.record("m", T0 - 3.0, T0 - 3.0, T0 - 2.0, "timeout")  # before t0: window 0
    rec.dropped("m", T0 + 4.99)
    msg = rec.drain_message()
    by_second = {w.second: w for w in msg.windows}
    assert sorted(by_second) == [0, 2, 4]
    w0 = by_second[0]
    assert (w0.scheduled, w0.ok, w0.failed, w0.dropped, w0.completed) == (2, 1, {"timeout": 1}, 0, 1)
    assert w0.latency.max_us == 1_400_000 and w0.service.max_us == 1_100_000 and w0.lag.max_us == 300_000
    w2 = by_second[2]
    assert (w2.scheduled, w2.completed, w2.latency.count) == (0, 1, 0)
    w4 = by_second[4]
    assert (w4.scheduled, w4.dropped, w4.completed, w4.latency.count) == (1, 1, 0, 0)


def test_drain_resets_everything_and_recording_continues():
    rec = Recorder(T0)
    rec.record("m", T0 + 0.1, T0 + 0.1, T0 + 0.2, None)
    rec.note_in_flight(5)
    rec.note_in_flight(3)
    first = rec.drain_message()
    assert [w.scheduled for w in first.windows] == [1] and first.in_flight_max == 5
    empty = rec.drain_message()
    assert empty.windows == [] and empty.errors == {} and empty.in_flight_max == 0
    rec.record("m", T0 + 0.3, T0 + 0.3, T0 + 0.4, None)
    again = rec.drain_message()
    assert [(w.second, w.scheduled, w.ok) for w in again.windows] == [(0, 1, 1)]


def test_error_examples_are_distinct_short_and_at_most_three_per_name_and_kind_over_the_run():
    rec = Recorder(T0)
    for i in range(5):
        rec.record("m", T0, T0, T0 + 0.01, "http_500", f"boom {i}")
    rec.record("m", T0, T0, T0 + 0.01, "timeout", "x" * 5000)
    rec.record("m", T0, T0, T0 + 0.01, "timeout", "x" * 5000)
    rec.record("other", T0, T0, T0 + 0.01, "http_500", "boom 0")
    first = rec.drain_message()
    assert first.errors["m"]["http_500"] == ["boom 0", "boom 1", "boom 2"]
    assert len(first.errors["m"]["timeout"]) == 1 and len(first.errors["m"]["timeout"][0]) <= 200
    assert first.errors["other"] == {"http_500": ["boom 0"]}
    rec.record("m", T0, T0, T0 + 0.01, "http_500", "boom 9")  # cap reached for the run
    rec.record("m", T0, T0, T0 + 0.01, "oip_error", "bad body")
    second = rec.drain_message()
    assert second.errors == {"m": {"oip_error": ["bad body"]}}
    assert all(len(v) <= MAX_EXAMPLES for kinds in first.errors.values() for v in kinds.values())


def test_set_t0_keeps_earlier_records_in_their_windows():
    rec = Recorder(0.0)
    rec.record("m", 5.5, 5.5, 5.6, None)  # window 5 under t0 = 0
    rec.set_t0(5.0)
    rec.record("m", 5.5, 5.5, 5.6, None)  # window 0 under t0 = 5
    assert rec.t0 == 5.0
    windows = {(w.second, w.scheduled) for w in rec.drain_message().windows}
    assert windows == {(5, 1), (0, 1)}


def test_cpu_percent_and_interval_reflect_work_done():
    rec = Recorder(time.perf_counter())
    start = os.times()
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline:  # burn at least 0.05 s of CPU, at most 5 s of wall time
        sum(range(10_000))
        now = os.times()
        if (now.user + now.system) - (start.user + start.system) >= 0.05:
            break
    msg = rec.drain_message()
    assert msg.cpu_percent is not None and msg.cpu_percent > 0
    assert msg.interval_s > 0 and msg.t_s >= msg.interval_s * 0.5


def test_steal_is_a_share_of_all_cpu_time_and_none_where_the_os_has_none(monkeypatch):
    import collections

    import psutil

    linux = collections.namedtuple("scputimes", "user nice system idle iowait irq softirq steal guest guest_nice")
    times = iter([linux(100, 0, 50, 800, 10, 0, 5, 35, 20, 0),  # guest time is inside user already
                  linux(200, 0, 100, 1495, 10, 0, 10, 185, 40, 0)])  # 1000 s more, 150 of them stolen
    monkeypatch.setattr(psutil, "cpu_times", lambda: next(times))
    before = steal_ticks()
    assert before == (35, 1000)
    assert steal_percent(before, steal_ticks()) == 15.0
    assert steal_percent(before, before) is None and steal_percent(None, before) is None  # no time, no share
    other = collections.namedtuple("scputimes", "user system idle")  # macOS: no steal counted
    monkeypatch.setattr(psutil, "cpu_times", lambda: other(1.0, 1.0, 8.0))
    assert steal_ticks() is None


def test_reports_carry_the_machines_steal_where_linux_tells_it():
    rec = Recorder(time.perf_counter())
    time.sleep(0.05)
    msg = rec.drain_message()
    if hasattr(psutil.cpu_times(), "steal"):  # Linux (CI): the report must carry it
        assert msg.steal_percent is not None and 0.0 <= msg.steal_percent <= 100.0
    back = ReportMessage.from_wire(msgpack.unpackb(msgpack.packb(msg.to_wire()), raw=False))
    assert back.steal_percent == msg.steal_percent
    with pytest.raises(ValueError, match="steal_percent"):
        ReportMessage.from_wire(dict(msg.to_wire(), steal_percent="lots"))


def test_drain_is_msgpack_safe_and_validates():
    rec = Recorder(T0, worker_id="w1")
    rec.record("m", T0 + 0.2, T0 + 0.21, T0 + 0.25, None)
    rec.record("m", T0 + 0.3, T0 + 0.31, T0 + 0.35, "http_503", "503 Service Unavailable")
    rec.dropped("m", T0 + 1.5)
    wire = rec.drain()
    back = msgpack.unpackb(msgpack.packb(wire, use_bin_type=True), raw=False)
    assert back == wire
    msg = ReportMessage.from_wire(back)
    assert msg.worker_id == "w1"
    assert [(w.second, w.scheduled, w.ok, w.failures, w.dropped) for w in msg.windows] == [
        (0, 2, 1, 1, 0),
        (1, 1, 0, 0, 1),
    ]
