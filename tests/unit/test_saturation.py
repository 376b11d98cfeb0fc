"""Stage verdicts and the saturation point on synthetic measurements (no server needed)."""

import pytest

from seldon_load.analyze.results import build_results
from seldon_load.analyze.saturation import saturation
from seldon_load.analyze.stages import Criteria, fell_behind, stage_table
from seldon_load.load.plan import RatePlan, Stage
from seldon_load.measure.aggregate import Aggregate
from seldon_load.measure.messages import ReportMessage
from seldon_load.measure.recorder import Recorder

NAME = "rest infer m"


def synth(stages, latency_ms, error_kind=None, error_every=0, lag_ms=0.0, capacity=None, drop_every=0):
    """Fill an aggregate as a server would answer the plan: latency_ms(t_s, stage_rps) -> ms."""
    plan = RatePlan.from_stages(stages)
    rec = Recorder(0.0, "w")
    n = 1
    completed_at = 0.0
    while True:
        t = plan.time_of(n)
        if t is None:
            break
        rate = plan.rate_at(t)
        if drop_every and n % drop_every == 0:
            rec.dropped(NAME, t)
        else:
            sent = t + lag_ms / 1000
            if capacity:  # a single server of fixed capacity: FIFO queue
                completed_at = max(completed_at, sent) + 1.0 / capacity
                done = completed_at
            else:
                done = sent + latency_ms(t, rate) / 1000
            kind = error_kind if error_every and n % error_every == 0 else None
            rec.record(NAME, t, sent, done, kind, "boom" if kind else None)
        n += 1
    agg = Aggregate()
    agg.merge(rec.drain(), "w")
    return agg, plan


def rows(agg, plan, **crit):
    return stage_table(agg, plan.stages, {NAME}, Criteria(**crit))


def test_sustained_below_capacity():
    agg, plan = synth([Stage(50, 1, 6), Stage(100, 1, 6)], lambda t, r: 5.0)
    rs = rows(agg, plan)
    assert [r["sustained"] for r in rs] == [True, True]
    assert rs[1]["achieved_rps"] == pytest.approx(100, rel=0.01)
    assert rs[1]["latency_ms"]["p50"] == pytest.approx(5.0, rel=0.01)
    sat = saturation(rs, Criteria())
    assert sat["saturated"] is False and sat["max_tested_rps"] == 100


def test_queue_growing_is_not_sustained_and_capacity_is_estimated():
    agg, plan = synth([Stage(50, 1, 8), Stage(80, 1, 8), Stage(120, 1, 8)], None, capacity=100.0)
    rs = rows(agg, plan)
    assert [r["sustained"] for r in rs] == [True, True, False]
    assert any("queue growing" in x for x in rs[2]["reasons"])
    assert any("achieved" in x for x in rs[2]["reasons"])
    sat = saturation(rs, Criteria())
    assert sat["saturated"] and sat["max_sustainable_rps"] == 80 and sat["first_unsustained_stage"] == 2
    assert sat["recommended_rps"] == pytest.approx(64)
    assert sat["capacity_estimate_rps"] == pytest.approx(100, rel=0.03)


def test_fell_behind_tells_a_capacity_failure_from_an_slo_or_error_failure():
    agg, plan = synth([Stage(80, 1, 8), Stage(120, 1, 8)], None, capacity=100.0)
    under, over = rows(agg, plan)
    assert not fell_behind(under, Criteria()) and fell_behind(over, Criteria())
    # kept up at its rate: only the SLO broke, or requests failed, which says nothing of capacity
    agg, plan = synth([Stage(40, 0, 5)], lambda t, r: 40.0)
    (slo,) = rows(agg, plan, slo_p99_ms=25)
    assert slo["sustained"] is False and not fell_behind(slo, Criteria(slo_p99_ms=25))
    agg, plan = synth([Stage(100, 0, 5)], lambda t, r: 3.0, error_kind="http_503", error_every=20)
    (errs,) = rows(agg, plan)
    assert errs["sustained"] is False and not fell_behind(errs, Criteria())
    # a queue growing at full throughput (a stage just above capacity) fell behind
    grown = dict(under, latency_trend=3.0, latency_trend_delta_ms=40.0)
    assert fell_behind(grown, Criteria())


def test_errors_above_limit():
    agg, plan = synth([Stage(100, 0, 5)], lambda t, r: 3.0, error_kind="http_503", error_every=20)
    (r,) = rows(agg, plan)
    assert r["failures_by_kind"] == {"http_503": r["failures"]} and r["failures"] > 0
    assert r["sustained"] is False and any("failed or dropped" in x for x in r["reasons"])
    assert r["scheduled"] == r["ok"] + r["failures"] + r["dropped"]


def test_drops_count_against_the_stage():
    agg, plan = synth([Stage(100, 0, 5)], lambda t, r: 3.0, drop_every=10)
    (r,) = rows(agg, plan)
    assert r["dropped"] > 0 and r["sustained"] is False
    assert r["scheduled"] == r["ok"] + r["failures"] + r["dropped"]


def test_slo_breach():
    agg, plan = synth([Stage(20, 0, 5), Stage(40, 0, 5)], lambda t, r: 10.0 if r < 30 else 40.0)
    rs = rows(agg, plan, slo_p99_ms=25)
    assert [r["sustained"] for r in rs] == [True, False]
    assert any("SLO" in x for x in rs[1]["reasons"])


def test_generator_saturated_is_never_a_server_saturation():
    agg, plan = synth([Stage(50, 0, 5), Stage(100, 0, 5)], lambda t, r: 5.0, lag_ms=0.0)
    agg2, _ = synth([Stage(50, 0, 5), Stage(100, 0, 5)], lambda t, r: 5.0, lag_ms=30.0)
    rs = rows(agg2, plan)
    assert all(r["generator_healthy"] is False for r in rs)
    sat = saturation(rs, Criteria())
    assert sat["saturated"] is False and "generator" in sat["inconclusive_reason"]
    res = build_results(agg=agg2, stages=plan.stages, names={NAME}, criteria=Criteria(),
                        target={"host": "h", "protocol": "rest", "kind": "model", "name": "m"}, mode="stages",
                        workers=1, workers_timeline=[])
    assert res["generator"]["healthy"] is False and res["generator"]["warnings"]
    assert saturation(rows(agg, plan), Criteria())["inconclusive_reason"] is None


def test_thresholds_and_results_document():
    agg, plan = synth([Stage(50, 1, 5), Stage(150, 1, 5)], None, capacity=100.0)
    res = build_results(agg=agg, stages=plan.stages, names={NAME}, criteria=Criteria(slo_p99_ms=1000),
                        target={"host": "h", "protocol": "rest", "kind": "model", "name": "m"}, mode="stages",
                        workers=2, workers_timeline=[{"t_s": 0, "workers": 2}], min_saturation_rps=120,
                        max_failure_ratio=0.0)
    assert res["schema"] == "seldon-load/results/v1"
    th = {t["name"]: t["passed"] for t in res["thresholds"]}
    assert th == {"slo_p99_ms": False, "max_failure_ratio": True, "min_saturation_rps": False}
    assert res["passed"] is False
    assert {t["phase"] for t in res["timeline"]} >= {"ramp", "hold"}


@pytest.mark.parametrize(("steal", "noted"), [(2.0, False), (33.0, True)])
def test_cpu_steal_is_reported_per_stage_and_noted_when_high(steal, noted):
    agg, plan = synth([Stage(50, 0, 5), Stage(100, 0, 5)], lambda t, r: 5.0)
    agg.merge(ReportMessage(cpu_percent=10.0, steal_percent=steal, interval_s=1.0, t_s=7.5), "w")  # stage 1
    res = build_results(agg=agg, stages=plan.stages, names={NAME}, criteria=Criteria(),
                        target={"host": "h", "protocol": "rest", "kind": "model", "name": "m"}, mode="stages",
                        workers=1, workers_timeline=[])
    assert [r["steal_percent_max"] for r in res["stages"]] == [None, steal]
    assert res["generator"]["steal_percent_max"] == steal
    # steal alone does not make the generator unhealthy: the send lag says whether the schedule held
    assert res["generator"]["healthy"] is True and all(r["sustained"] for r in res["stages"])
    notes = [n for n in res["notes"] if "steal" in n]
    assert bool(notes) is noted
    if noted:
        assert "33%" in notes[0] and "stage(s) 1" in notes[0]
