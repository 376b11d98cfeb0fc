"""Open-loop load against the real MLServer testbed (issue: arrival engine, stages, workers).

The synth models serialise requests (wait mode), so their capacity is exactly
1000 / service_time_ms requests per second whatever else runs on the machine.
"""

import pytest

from seldon_load.load.plan import RatePlan, parse_stages
from tests.helpers.run import assert_accounting, seldon_load

pytestmark = pytest.mark.integration


def _scheduled_total(results):
    return sum(r["offered_rps"] for r in results["timeline"])


@pytest.mark.parametrize("protocol", ["rest", "grpc"])
def test_below_capacity_rate_is_exact_and_nothing_dropped(testbed, tmp_path, protocol):
    host = testbed.rest_url if protocol == "rest" else testbed.grpc_target
    stages = "40:1s:6s,80:1s:6s"
    # send lag up to 30 ms is tolerated (the default is 10): once, with a third of the shared
    # machine's CPU time stolen by its hypervisor, the 80 rps stage lagged 11.5 ms at p99 with 8 %
    # CPU, and its verdict said "generator", which is right but not what this test is about
    run = seldon_load(["run", "--host", host, "--protocol", protocol, "--model", "synth-5ms",
                       "--stages", stages, "--max-send-lag-ms", "30"], tmp_path)
    assert run.code == 0, run.stderr[-2000:]
    res = run.results
    assert_accounting(res)
    for st, target in zip(res["stages"], (40, 80), strict=True):
        assert st["target_rps"] == target
        assert st["achieved_rps"] == pytest.approx(target, rel=0.02)
        assert st["offered_rps"] == pytest.approx(target, rel=0.02)
        assert st["dropped"] == 0 and st["failures"] == 0
        assert st["sustained"] is True
        assert 5.0 <= st["latency_ms"]["p50"] < 50.0  # at least the 5 ms service time
    # every arrival of the plan was scheduled exactly once
    assert _scheduled_total(res) == round(RatePlan.from_stages(parse_stages(stages)).total_count())
    assert res["saturation"]["saturated"] is False


def test_overload_keeps_the_schedule_and_latency_grows(testbed, tmp_path):
    # synth-10ms serves exactly 100 rps; offer 200. Send lag up to 30 ms is tolerated, as above
    # (once 16.5 ms at p99 under heavy CPU steal: "generator", so no saturation point at all)
    run = seldon_load(["run", "--host", testbed.rest_url, "--model", "synth-10ms", "--stages", "200:1s:8s",
                       "--settle", "1s", "--drain-timeout", "30s", "--max-send-lag-ms", "30"], tmp_path)
    assert run.code == 0, run.stderr[-2000:]
    res = run.results
    assert_accounting(res)
    st = res["stages"][0]
    assert st["offered_rps"] == pytest.approx(200, rel=0.02)  # the schedule, not the server's pace
    assert st["achieved_rps"] == pytest.approx(100, rel=0.05)  # the server's capacity
    assert st["sustained"] is False
    assert any("queue growing" in r for r in st["reasons"])
    hold = [t for t in res["timeline"] if t["phase"] == "hold"]
    assert hold[-1]["p50_ms"] > 3 * hold[0]["p50_ms"]  # latency from intended time keeps rising
    assert res["saturation"]["saturated"] is True
    assert res["saturation"]["capacity_estimate_rps"] == pytest.approx(100, rel=0.05)


def test_in_flight_cap_drops_and_accounts(testbed, tmp_path):
    run = seldon_load(["run", "--host", testbed.rest_url, "--model", "synth-10ms", "--stages", "150:0s:5s",
                       "--max-in-flight", "5", "--settle", "1s"], tmp_path)
    assert run.code == 0, run.stderr[-2000:]
    res = run.results
    assert_accounting(res)
    st = res["stages"][0]
    assert st["dropped"] > 0.2 * st["scheduled"]
    assert st["offered_rps"] == pytest.approx(150, rel=0.02)
    assert any(e["kind"] == "dropped" for e in res["errors"])


@pytest.mark.parametrize("protocol", ["rest", "grpc"])
def test_two_workers_split_the_rate_and_follow_stage_changes(testbed, tmp_path, protocol):
    host = testbed.rest_url if protocol == "rest" else testbed.grpc_target
    run = seldon_load(["run", "--host", host, "--protocol", protocol, "--model", "synth-5ms",
                       "--stages", "40:0s:5s,120:0s:5s", "--workers", "2", "--settle", "1s"], tmp_path)
    assert run.code == 0, run.stderr[-2000:]
    res = run.results
    assert res["workers"] == 2
    assert_accounting(res)
    # if a worker missed the stage change the offered rate would be 80, not 120
    for st, target in zip(res["stages"], (40, 120), strict=True):
        assert st["offered_rps"] == pytest.approx(target, rel=0.02)
        assert st["achieved_rps"] == pytest.approx(target, rel=0.03)


def test_two_workers_overload(testbed, tmp_path):
    run = seldon_load(["run", "--host", testbed.rest_url, "--model", "synth-10ms", "--stages", "200:1s:6s",
                       "--workers", "2", "--settle", "1s", "--drain-timeout", "30s"], tmp_path)
    assert run.code == 0, run.stderr[-2000:]
    res = run.results
    assert_accounting(res)
    st = res["stages"][0]
    assert st["offered_rps"] == pytest.approx(200, rel=0.02)
    assert st["achieved_rps"] == pytest.approx(100, rel=0.06)
    assert st["sustained"] is False
