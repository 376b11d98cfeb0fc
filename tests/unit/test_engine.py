"""The open-loop engine: schedule arithmetic, accounting of every arrival, cancellation,
and the pooled request greenlets (no sockets: ``send`` is a stand-in)."""

from __future__ import annotations

from time import perf_counter

import gevent
import pytest
from greenlet import getcurrent
from hypothesis import given, settings
from hypothesis import strategies as st

from seldon_load.load.engine import OpenLoopEngine, PlanClock, WorkerSchedule
from seldon_load.load.plan import RatePlan, Stage
from seldon_load.measure.recorder import Recorder
from seldon_load.transport.outcome import OK, Outcome


def plan_of(*stages: tuple[float, float, float]) -> RatePlan:
    return RatePlan.from_stages([Stage(*s) for s in stages])


@settings(max_examples=60, deadline=None)
@given(
    stages=st.lists(
        st.tuples(st.floats(1, 500), st.one_of(st.just(0.0), st.floats(0.01, 3)), st.floats(0.1, 3)), min_size=1, max_size=4
    ),
    probes=st.lists(st.floats(0.01, 1.0), min_size=1, max_size=40),
)
def test_plan_clock_matches_the_plan_exactly(stages, probes) -> None:
    plan = plan_of(*stages)
    clock = PlanClock(plan)
    total = plan.total_count()
    # increasing counts (the arrival loop), then a jump back (a resync) and forward again
    counts = sorted(p * (total + 2) for p in probes) + [p * total for p in probes]
    for n in counts:
        assert clock.time_of(n) == plan.time_of(n)


def test_plan_clock_follows_a_growing_plan() -> None:
    plan = RatePlan()
    plan.add_stage(100, 0, 1)
    clock = PlanClock(plan)
    assert clock.time_of(150) is None  # beyond the plan so far
    plan.add_stage(200, 0, 1)
    clock.sync(plan)
    assert clock.time_of(150) == plan.time_of(150) == pytest.approx(1.25)


def run_engine(plan: RatePlan, send, **kw) -> tuple[OpenLoopEngine, Recorder]:
    sched = WorkerSchedule()
    rec = Recorder(perf_counter())
    engine = OpenLoopEngine(send=send, name="x", recorder=rec, schedule=sched, **kw)
    sched.update(plan, 0.0, 1.0, 1.0)
    rec.set_t0(sched.t0)
    job = gevent.spawn(engine.run)
    job.join(timeout=30)
    assert job.dead and job.successful(), job.exception
    return engine, rec


def totals(rec: Recorder) -> dict[str, int]:
    out = {"scheduled": 0, "ok": 0, "dropped": 0, "failed": 0}
    for w in rec.drain_message().windows:
        out["scheduled"] += w.scheduled
        out["ok"] += w.ok
        out["dropped"] += w.dropped
        out["failed"] += sum(w.failed.values())
    return out


def test_every_arrival_is_sent_once_on_pooled_greenlets() -> None:
    workers: set[int] = set()

    def send() -> Outcome:
        workers.add(id(getcurrent()))
        gevent.sleep(0.002)
        return OK

    plan = plan_of((400, 0, 0.5))
    engine, rec = run_engine(plan, send)
    expected = round(plan.total_count())
    assert engine.sent == expected and engine.dropped == 0
    assert totals(rec) == {"scheduled": expected, "ok": expected, "dropped": 0, "failed": 0}
    assert engine.outstanding == 0 and engine.in_flight == 0
    # a handful of greenlets served all requests (each holds about one request at a time)
    assert len(workers) <= engine.max_seen_in_flight + 1 < expected


def test_in_flight_cap_drops_and_failures_are_counted() -> None:
    calls = {"n": 0}

    def send() -> Outcome:
        calls["n"] += 1
        n = calls["n"]
        gevent.sleep(0.05)
        return OK if n % 2 else Outcome(False, "http_503", "busy")

    plan = plan_of((200, 0, 0.3))
    engine, rec = run_engine(plan, send, max_in_flight=3)
    t = totals(rec)
    assert engine.dropped > 0 and t["dropped"] == engine.dropped
    assert t["scheduled"] == round(plan.total_count()) == t["ok"] + t["failed"] + t["dropped"]
    assert t["failed"] == calls["n"] // 2


def test_requests_still_out_after_the_drain_are_cancelled_exactly_once() -> None:
    def send() -> Outcome:
        gevent.sleep(60)
        return OK

    plan = plan_of((100, 0, 0.1))
    engine, rec = run_engine(plan, send, drain_timeout_s=0.2)
    t = totals(rec)
    assert t["scheduled"] == engine.sent == round(plan.total_count())
    assert t["ok"] == 0 and t["failed"] == engine.sent  # every one recorded as cancelled
    assert engine.outstanding == 0
    assert rec.drain_message().windows == []  # and nothing is recorded twice later


def test_a_transport_bug_is_an_outcome_not_a_crash() -> None:
    def send() -> Outcome:
        raise RuntimeError("boom")

    plan = plan_of((100, 0, 0.1))
    engine, rec = run_engine(plan, send)
    t = totals(rec)
    assert t["failed"] == engine.sent == round(plan.total_count())


def test_latency_is_measured_from_the_intended_time() -> None:
    seen: list[tuple[float, float, float]] = []

    def on_result(due: float, sent: float, done: float, out: Outcome) -> None:
        seen.append((due, sent, done))

    def send() -> Outcome:
        gevent.sleep(0.01)
        return OK

    run_engine(plan_of((50, 0, 0.2)), send, on_result=on_result)
    assert seen
    for due, sent, done in seen:
        assert due <= sent < done
        assert done - due >= 0.01  # latency includes the wait for the answer


def _engine(send) -> tuple[OpenLoopEngine, WorkerSchedule, Recorder]:
    sched = WorkerSchedule()
    rec = Recorder(perf_counter())
    return OpenLoopEngine(send=send, name="x", recorder=rec, schedule=sched), sched, rec


def _ok() -> Outcome:
    return OK


def test_a_worker_whose_plan_came_late_sends_its_share_from_when_the_shares_began() -> None:
    # two workers, 20 arrivals 50 ms apart; the second gets its plan 120 ms into the test (its
    # first copy was dropped and sent again) with the shares dated 0 s: its arrivals due at
    # 50 and 100 ms are sent late, none is lost
    plan = plan_of((20, 0, 1.0))
    first, first_sched, _ = _engine(_ok)
    late, late_sched, _ = _engine(_ok)
    first_sched.update(plan, 0.0, 0.5, 0.5, 0.0)
    jobs = [gevent.spawn(first.run)]
    gevent.sleep(0.12)
    late_sched.update(plan, 0.12, 0.5, 1.0, 0.0)
    jobs.append(gevent.spawn(late.run))
    gevent.joinall(jobs, timeout=30)
    assert all(j.successful() for j in jobs)
    assert (first.sent, late.sent) == (10, 10)


def test_a_share_that_changes_while_the_engine_sleeps_loses_no_arrival() -> None:
    # half of 20 arrivals (every second one, due at 0.1, 0.2, ... s); at 0.32 s the other worker
    # is gone and this one takes every arrival from its last one sent (0.3 s): the one it was
    # sleeping for (0.4 s) is sent too, and the gone worker's due at 0.35 s
    plan = plan_of((20, 0, 1.0))
    engine, sched, rec = _engine(_ok)
    sched.update(plan, 0.0, 0.5, 1.0, 0.0)
    rec.set_t0(sched.t0)
    job = gevent.spawn(engine.run)
    gevent.sleep(0.32)
    sched.update(plan, 0.32, 1.0, 1.0, 0.32)
    job.join(timeout=30)
    assert job.successful()
    assert engine.sent == 3 + 14  # 0.1, 0.2, 0.3 s, then every arrival from 0.35 s to 1.0 s
    assert totals(rec)["scheduled"] == 17
