"""Stage plans and arrival schedules are pure: tested as tables, without sleeping."""

import math

import pytest

from seldon_load.errors import ConfigError
from seldon_load.load.arrivals import POISSON, Arrivals
from seldon_load.load.plan import HOLD, RAMP, RatePlan, Stage, parse_duration, parse_stages


@pytest.mark.parametrize("text,seconds", [("10s", 10), ("1m", 60), ("500ms", 0.5), ("2", 2), ("1.5h", 5400)])
def test_parse_duration(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


def test_parse_stages():
    assert parse_stages("50:10s:30s, 100:0:1m") == [Stage(50, 10, 30), Stage(100, 0, 60)]


@pytest.mark.parametrize("bad", ["", "50", "50:10s", "x:1s:1s", "-5:1s:1s", "0:1s:1s", "5:1s:0s", "5:1q:1s",
                                 "5:1s:1s,", "nan:1s:1s", "inf:1s:1s"])
def test_parse_stages_rejects(bad):
    with pytest.raises(ConfigError):
        parse_stages(bad)


def test_counts_and_inverse_are_consistent():
    plan = RatePlan.from_stages(parse_stages("10:10s:10s,20:0s:5s,5:4s:6s"))
    # ramp 0->10 over 10 s = 50, hold 100, hold 100, ramp 20->5 over 4s = 50, hold 30
    assert plan.total_count() == pytest.approx(330)
    assert plan.end_s == pytest.approx(35)
    for n in [0.5, 1, 49.9, 50, 120, 250, 280, 329.99, 330]:
        t = plan.time_of(n)
        assert plan.count_at(t) == pytest.approx(n, abs=1e-6)
    assert plan.time_of(331) is None
    assert plan.where(5) == (0, RAMP) and plan.where(15) == (0, HOLD) and plan.where(21) == (1, HOLD)
    assert plan.rate_at(5) == pytest.approx(5) and plan.rate_at(27) == pytest.approx(20 - 15 * 2 / 4)


def test_schedule_rate_within_hold_is_exact():
    plan = RatePlan.from_stages([Stage(200, 0, 10)])
    times = [plan.time_of(k) for k in range(1, 2001)]
    gaps = {round(b - a, 9) for a, b in zip(times, times[1:], strict=False)}
    assert gaps == {0.005}


def test_wire_round_trip_and_zero_rate_gap():
    plan = RatePlan()
    plan.add_stage(10, 1, 2)
    plan.add_segment(3, 0.0, "cooldown")
    plan.add_stage(20, 0, 1)
    again = RatePlan.from_wire(plan.to_wire())
    assert again.total_count() == pytest.approx(plan.total_count())
    # the first arrival after the pause is due when the next stage starts, not during the pause
    n_before = plan.count_at(3)
    t = again.time_of(n_before + 1)
    assert t == pytest.approx(6 + 1 / 20)
    assert again.stages[1].hold_start_s == pytest.approx(6)


def test_measured_window_excludes_settle_and_is_whole_seconds():
    plan = RatePlan.from_stages([Stage(10, 2.5, 10)])
    assert plan.stages[0].measured(2.0) == (5, 12)


@pytest.mark.parametrize("n", [1, 2, 3, 5])
def test_workers_interleave_into_the_global_schedule(n):
    plan = RatePlan.from_stages([Stage(100, 2, 5)])
    counts = []
    for i in range(n):
        arr = Arrivals(1 / n, (i + 1) / n)
        while True:
            c = arr.next_count()
            if plan.time_of(c) is None:
                break
            counts.append(c)
    assert sorted(round(c, 6) for c in counts) == [float(k) for k in range(1, int(plan.total_count()) + 1)]


def test_resync_takes_over_a_lost_workers_share():
    arr = Arrivals(0.5, 0.5)
    assert [arr.next_count() for _ in range(3)] == [1, 3, 5]
    arr.resync(1.0, 1.0, 5.2)
    assert [arr.next_count() for _ in range(3)] == [6, 7, 8]


def test_poisson_mean_rate():
    arr = Arrivals(1.0, 1.0, POISSON, seed=7)
    counts = [arr.next_count() for _ in range(20000)]
    assert counts == sorted(counts)
    assert counts[-1] / len(counts) == pytest.approx(1.0, rel=0.03)
    gaps = [b - a for a, b in zip(counts, counts[1:], strict=False)]
    cv = math.sqrt(sum((g - 1) ** 2 for g in gaps) / len(gaps))
    assert cv == pytest.approx(1.0, rel=0.05)  # exponential gaps, not even spacing
