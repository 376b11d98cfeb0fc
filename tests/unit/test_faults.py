"""Target faults versus load: classification, stage marking, the saturation verdict, the run's
pass/fail and the generator verdict, on synthetic measurements (no server needed)."""

from __future__ import annotations

import pytest

from seldon_load.analyze.faults import AMBIGUOUS, FAULT, LOAD, kind_class
from seldon_load.analyze.judge import auto_verdict, live_headline
from seldon_load.analyze.results import build_results
from seldon_load.analyze.saturation import saturation
from seldon_load.analyze.stages import Criteria, stage_table
from seldon_load.load.plan import RatePlan, Stage
from seldon_load.measure.aggregate import Aggregate
from seldon_load.measure.recorder import Recorder
from seldon_load.report.console import summary_text, verdict
from seldon_load.report.csvout import stage_row as csv_row
from seldon_load.report.html import render_html

NAME = "rest infer m"
TARGET = {"host": "h", "protocol": "rest", "kind": "model", "name": "m"}
MESSAGES = {"http_500": "HTTP 500: model exploded", "connection_refused": "[Errno 111] Connection refused",
            "timeout": "no answer within 1 s"}


def synth(stages, outcome, capacity=None, lag_ms=0.0, workers=1, until_s=None):
    """Fill an aggregate: ``outcome(t_s)`` -> error kind or None; a FIFO server of ``capacity``
    rps (else 5 ms answers). Requests intended after ``until_s`` are still in flight."""
    plan = RatePlan.from_stages(stages)
    recs = [Recorder(0.0, f"w{i}") for i in range(workers)]
    n, free_at = 1, 0.0
    while (t := plan.time_of(n)) is not None:
        if until_s is not None and t >= until_s:
            break
        sent = t + lag_ms / 1000
        if capacity:
            free_at = max(free_at, sent) + 1.0 / capacity
            done = free_at
        else:
            done = sent + 0.005
        kind = outcome(t)
        if until_s is None or done < until_s:
            recs[n % workers].record(NAME, t, sent, done, kind, MESSAGES.get(kind or "", kind))
        n += 1
    agg = Aggregate()
    for rec in recs:
        agg.merge(rec.drain(), rec.worker_id)
    return agg, plan


def results(agg, plan, mode="stages", criteria=None, **kw):
    return build_results(agg=agg, stages=plan.stages, names={NAME}, criteria=criteria or Criteria(settle_s=1),
                         target=TARGET, mode=mode, workers=1, workers_timeline=kw.pop("workers_timeline", []), **kw)


@pytest.mark.parametrize(("kind", "cls"), [
    ("timeout", LOAD), ("http_429", LOAD), ("http_503", LOAD), ("grpc_RESOURCE_EXHAUSTED", LOAD),
    ("connection_refused", FAULT), ("connection_reset", FAULT), ("tls_error", FAULT), ("http_404", FAULT),
    ("http_400", FAULT), ("invalid_response", FAULT), ("grpc_NOT_FOUND", FAULT), ("grpc_UNAUTHENTICATED", FAULT),
    ("http_500", AMBIGUOUS), ("http_502", AMBIGUOUS), ("grpc_INTERNAL", AMBIGUOUS), ("grpc_UNAVAILABLE", AMBIGUOUS),
])
def test_each_error_kind_has_a_class(kind, cls):
    assert kind_class(kind) == cls


def test_grpc_unavailable_for_a_refused_connection_is_a_fault():
    assert kind_class("grpc_UNAVAILABLE", ["[Errno 111] Connection refused"]) == FAULT
    assert kind_class("grpc_UNAVAILABLE", ["overloaded, try later"]) == AMBIGUOUS


def test_a_model_that_always_fails_is_a_target_fault_and_the_run_fails():
    agg, plan = synth([Stage(10, 1, 4)], lambda t: "http_500")
    res = results(agg, plan, mode="auto")
    (row,) = res["stages"]
    assert row["fault"]["kind"] == "http_500" and row["fault"]["count"] == row["failures"] > 0
    assert row["fault"]["example"] == "HTTP 500: model exploded"
    assert row["sustained"] is False and row["reasons"][0].startswith("target fault: http_500")
    sat = res["saturation"]
    assert sat["saturated"] is False and sat["max_sustainable_rps"] is None and sat["capacity_estimate_rps"] is None
    assert "every request failed" in sat["inconclusive_reason"] and "HTTP 500: model exploded" in sat["inconclusive_reason"]
    assert res["passed"] is False and "every request failed" in res["reason"]
    v = verdict(res)
    assert v.level == "fault" and "HTTP 500: model exploded" in v.headline
    text = summary_text(res)
    assert "Saturated at the first stage" not in text and "Capacity estimate" not in text and "FAULT" in text
    assert "target fault" in render_html(res) and "v-fault" in render_html(res)
    assert csv_row(row)["fault_kind"] == "http_500" and csv_row(row)["fault_example"] == "HTTP 500: model exploded"


def test_a_500_only_under_load_is_load_not_a_fault():
    agg, plan = synth([Stage(20, 1, 4), Stage(80, 1, 4)], lambda t: "http_500" if t > 5 and int(t * 100) % 5 == 0
                      else None)
    rows = stage_table(agg, plan.stages, {NAME}, Criteria(settle_s=1))
    assert rows[0]["fault"] is None and rows[1]["fault"] is None and rows[1]["sustained"] is False
    sat = saturation(rows, Criteria(settle_s=1))
    assert sat["saturated"] and sat["max_sustainable_rps"] == 20 and sat["target_fault"] is None


def test_an_outage_between_the_bracket_ends_is_inconclusive_not_a_number():
    # 50 ok; 100 hits an outage (refused for 2 s); 150 is above the capacity of 120
    stages = [Stage(50, 1, 5), Stage(100, 1, 5), Stage(150, 1, 5)]
    agg, plan = synth(stages, lambda t: "connection_refused" if 9 <= t < 11 else None, capacity=120.0)
    res = results(agg, plan)
    rows = res["stages"]
    assert rows[1]["fault"]["kind"] == "connection_refused" and rows[1]["fault"]["count"] > 0
    assert rows[2]["fault"] is None and rows[2]["sustained"] is False
    sat = res["saturation"]
    assert "target fault in stage 1" in sat["inconclusive_reason"] and "connection_refused" in sat["inconclusive_reason"]
    assert verdict(res).headline.startswith("Inconclusive")
    assert res["passed"] is True  # a stage was sustained: the fault spoils the number, not the run


def test_a_rerun_stage_replaces_the_faulty_one():
    stages = [Stage(50, 1, 5), Stage(100, 1, 5), Stage(100, 1, 5), Stage(150, 1, 5)]
    agg, plan = synth(stages, lambda t: "connection_refused" if 9 <= t < 11 else None, capacity=120.0)
    res = results(agg, plan, mode="auto", reruns={1: 2})
    assert res["stages"][1]["rerun_as"] == 2 and res["stages"][2]["rerun_of"] == 1
    sat = res["saturation"]
    assert sat["inconclusive_reason"] is None and sat["max_sustainable_rps"] == 100 and sat["saturated"]


def test_a_sustained_stage_above_an_unsustained_one_is_inconsistent():
    stages = [Stage(50, 1, 5), Stage(100, 1, 5), Stage(150, 1, 5)]
    # 100 fails on load-like errors (timeouts) that 150 does not have: no trustworthy number
    agg, plan = synth(stages, lambda t: "timeout" if 8 <= t < 12 else None)
    sat = saturation(stage_table(agg, plan.stages, {NAME}, Criteria(settle_s=1)), Criteria(settle_s=1))
    assert sat["max_sustainable_rps"] is None and sat["recommended_rps"] is None
    assert sat["inconclusive_reason"].startswith("inconsistent: stage 2 sustained 150 rps")


def test_refused_from_the_start_is_a_target_fault_not_saturation():
    agg, plan = synth([Stage(10, 1, 4), Stage(20, 1, 4)], lambda t: "connection_refused")
    rows = stage_table(agg, plan.stages, {NAME}, Criteria(settle_s=1))
    headline = live_headline(rows, Criteria(settle_s=1), True)
    assert headline.startswith("TARGET FAULT") and "saturated at the first stage" not in headline
    assert "Connection refused" in headline


@pytest.mark.parametrize("rate", [0.5, 0.7, 1.0, 1.3, 2.0])
def test_very_low_rates_with_a_healthy_generator_are_never_generator_saturated(rate):
    for workers in (1, 2):
        agg, plan = synth([Stage(rate, 0, 6), Stage(rate, 0, 5)], lambda t: "http_500", workers=workers)
        rows = stage_table(agg, plan.stages, {NAME}, Criteria(settle_s=1))
        assert all(r["generator_healthy"] for r in rows), [r["reasons"] for r in rows]
        res = results(agg, plan)
        assert verdict(res).level == "fault" and res["generator"]["healthy"] is True


def test_an_overloaded_stage_live_is_saturation_not_the_generator():
    # 200 rps offered to a 100 rps server, looked at 6 s into the stage: half the requests are still
    # queued at the server (sent, not answered)
    agg, plan = synth([Stage(50, 1, 6), Stage(200, 1, 10)], lambda t: None, capacity=100.0, until_s=14.0)
    rows = stage_table(agg, plan.stages, {NAME}, Criteria(settle_s=1), until_s=14.0, live=True)
    over = rows[1]
    assert over["generator_healthy"] is True and not any(r.startswith("generator") for r in over["reasons"])
    assert over["sustained"] is False
    headline = live_headline(rows, Criteria(settle_s=1), True)
    assert "could not keep up" not in headline and headline.startswith("saturation point 50")


def test_a_lost_worker_still_counts_against_the_generator():
    agg, plan = synth([Stage(40, 0, 10)], lambda t: None, workers=2)
    # drop every second request after t=3 s: the lost worker's share
    rec = Recorder(0.0, "w0")
    n = 1
    while (t := plan.time_of(n)) is not None:
        if t < 3 or n % 2:
            rec.record(NAME, t, t, t + 0.005, None)
        n += 1
    agg = Aggregate()
    agg.merge(rec.drain(), "w0")
    lost = [{"t_s": 0.0, "workers": 2}, {"t_s": 3.5, "workers": 1}]
    (row,) = stage_table(agg, plan.stages, {NAME}, Criteria(settle_s=1), workers_timeline=lost)
    assert row["generator_healthy"] is False and any("a worker was lost" in r for r in row["reasons"])
    (row,) = stage_table(agg, plan.stages, {NAME}, Criteria(settle_s=1))  # no evidence: only a count
    assert row["generator_healthy"] is True


def test_auto_verdict_quotes_the_error_and_flags_faults():
    agg, plan = synth([Stage(10, 1, 4)], lambda t: "http_500")
    v = auto_verdict(agg, plan.stages, {NAME}, Criteria(settle_s=1))
    assert v.all_failed and v.fault and v.errors and not v.sustained
    assert v.message == "http_500 x 30: HTTP 500: model exploded"  # 3 s measured at 10 rps
    agg, plan = synth([Stage(100, 1, 4)], lambda t: "timeout" if int(t * 100) % 10 == 0 else None)
    v = auto_verdict(agg, plan.stages, {NAME}, Criteria(settle_s=1))
    assert v.errors and not v.fault and not v.all_failed and v.message.startswith("timeout x")


def test_the_verdict_modules_need_neither_locust_nor_gevent():
    import subprocess
    import sys

    code = ("import sys, seldon_load.analyze.judge, seldon_load.analyze.results, seldon_load.report.console; "
            "bad = [m for m in ('locust', 'gevent') if m in sys.modules]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_500_only_while_warming_up_is_not_a_fault_once_the_rerun_was_clean():
    stages = [Stage(10, 1, 4), Stage(10, 1, 4), Stage(20, 1, 4)]
    agg, plan = synth(stages, lambda t: "http_500" if t < 4 else None)
    rows = stage_table(agg, plan.stages, {NAME}, Criteria(settle_s=1), reruns={0: 1})
    assert rows[0]["rerun_as"] == 1 and rows[0]["fault"] is None and rows[0]["sustained"] is False
    sat = saturation(rows, Criteria(settle_s=1))
    assert sat["inconclusive_reason"] is None and sat["saturated"] is False and sat["max_tested_rps"] == 20
    rows = stage_table(agg, plan.stages, {NAME}, Criteria(settle_s=1))  # without the re-run: a fault
    assert rows[0]["fault"]["kind"] == "http_500"
