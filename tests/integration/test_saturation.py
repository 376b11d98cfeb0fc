"""The saturation point found against a server of known capacity (synth-10ms: 100 rps)."""

import pytest

from tests.helpers.run import assert_accounting, seldon_load

pytestmark = pytest.mark.integration


def test_auto_search_finds_capacity_within_10_percent_with_two_workers(testbed, tmp_path):
    run = seldon_load(["run", "--host", testbed.rest_url, "--model", "synth-10ms", "--auto", "--max-rps", "400",
                       "--auto-start-rps", "25", "--auto-hold", "5s", "--auto-narrow-hold", "5s",
                       "--auto-precision", "0.08", "--settle", "1s", "--auto-budget", "150s", "--workers", "2"],
                      tmp_path, timeout_s=300)
    assert run.code == 0, run.stderr[-3000:]
    res = run.results
    assert res["mode"] == "auto" and res["workers"] == 2
    assert_accounting(res)
    sat = res["saturation"]
    assert sat["saturated"] is True
    assert sat["max_sustainable_rps"] == pytest.approx(100, rel=0.10)
    assert sat["recommended_rps"] == pytest.approx(0.8 * sat["max_sustainable_rps"])
    assert max(s["target_rps"] for s in res["stages"]) <= 400
    # 25, 50, 100, 200 (overloaded: ~100 rps answered), then one or two stages near 100 close the
    # bracket; bisecting 100..200 took three or four. At exactly its capacity, 100 may fail (a
    # growing queue): then 92.6 just below it closes the bracket, where bisecting 50..100 took four
    assert len(res["stages"]) <= 6, [s["target_rps"] for s in res["stages"]]
    assert sat["criteria"]["min_achieved_ratio"] == 0.95
    # results files are all there
    for name in ("results.json", "stages.csv", "timeline.csv", "report.html"):
        assert (tmp_path / name).stat().st_size > 0


def test_stages_verdicts_and_slo_threshold(testbed, tmp_path):
    run = seldon_load(["run", "--host", testbed.grpc_target, "--model", "synth-10ms",
                       "--stages", "50:1s:5s,90:1s:5s,150:1s:5s", "--settle", "1s", "--slo-p99", "500"], tmp_path)
    # the SLO sits far from both sides: below capacity p99 is 15 ms, but one stall of the shared
    # machine once gave a 50 rps stage 122 ms (60 ms was the SLO then); above it, the queue grows
    # for 5 s and p99 reaches seconds
    res = run.results
    verdicts = [s["sustained"] for s in res["stages"]]
    assert verdicts == [True, True, False]
    assert res["saturation"]["max_sustainable_rps"] == 90
    assert res["saturation"]["first_unsustained_stage"] == 2
    # the third stage breaks the p99 SLO, so the threshold fails: exit code 1, reason printed
    assert run.code == 1, run.stdout[-2000:]
    th = {t["name"]: t for t in res["thresholds"]}
    assert th["slo_p99_ms"]["passed"] is False
    assert "slo_p99_ms" in run.stdout or "SLO" in run.stdout
