"""Verdicts against a real MLServer that misbehaves on purpose (testbed/faulty.py): a model that
always fails, one that fails its first seconds and recovers, very low rates, a target down."""

from __future__ import annotations

import urllib.error
import urllib.request

import orjson
import pytest

from seldon_load.testbed.server import free_port
from tests.helpers.run import assert_accounting, seldon_load

pytestmark = pytest.mark.integration

# send lag up to 30 ms: on the shared 2-core machine CPU steal alone has given 12 ms at 50 rps, and
# these tests check the server's verdicts, not the generator's
AUTO = ["--auto", "--auto-hold", "5s", "--auto-narrow-hold", "5s", "--settle", "1s", "--request-timeout", "2",
        "--max-send-lag-ms", "30"]


def _infer(testbed, model: str) -> tuple[int, dict]:
    body = orjson.dumps({"inputs": [{"name": "INPUT0", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}]})
    req = urllib.request.Request(f"{testbed.rest_url}/v2/models/{model}/infer", data=body,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, orjson.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, orjson.loads(e.read())


def test_the_always_failing_model_answers_500_with_its_message(testbed):
    status, body = _infer(testbed, "always-500")
    assert status == 500 and "model exploded" in body["error"]


def test_auto_against_a_model_that_always_fails_stops_at_once_quoting_the_error(testbed, tmp_path):
    run = seldon_load(["run", "--host", testbed.rest_url, "--model", "always-500", *AUTO, "--max-rps", "200"],
                      tmp_path, timeout_s=120)
    res = run.results
    assert run.code == 1, run.stdout[-2000:] + run.stderr[-2000:]
    assert_accounting(res)
    assert len(res["stages"]) == 1, [s["target_rps"] for s in res["stages"]]  # no descent to near-zero rates
    stage = res["stages"][0]
    assert stage["fault"]["kind"] == "http_500" and "model exploded" in stage["fault"]["example"]
    assert res["passed"] is False and "every request failed" in res["reason"] and "HTTP 500" in res["reason"]
    sat = res["saturation"]
    assert sat["max_sustainable_rps"] is None and sat["capacity_estimate_rps"] is None
    assert any("every request failed at 10 rps" in n and "model exploded" in n for n in res["notes"]), res["notes"]
    assert "TARGET FAULT" in run.stdout and "HTTP 500: model exploded" in run.stdout
    assert "Capacity estimate" not in run.stdout and "GENERATOR" not in run.stdout
    assert res["generator"]["healthy"] is True


def test_auto_confirms_a_stage_that_failed_while_the_model_warmed_up(testbed, tmp_path):
    """warmup-503 (10 ms, 100 rps) answers 503 for 6 s after its first request: the first stage
    fails on errors, is run again once the target is ready, and the search goes on to the truth."""
    run = seldon_load(["run", "--host", testbed.rest_url, "--model", "warmup-503", *AUTO, "--max-rps", "400",
                       "--auto-start-rps", "25", "--auto-precision", "0.08", "--auto-budget", "200s"],
                      tmp_path, timeout_s=300)
    res = run.results
    assert run.code == 0, run.stdout[-3000:] + run.stderr[-2000:]
    first, again = res["stages"][0], res["stages"][1]
    assert first["failures_by_kind"].get("http_503", 0) > 0 and first["sustained"] is False
    assert first["rerun_as"] == 1 and again["rerun_of"] == 0 and again["target_rps"] == first["target_rps"]
    assert again["sustained"] is True and again["failures"] == 0
    sat = res["saturation"]
    assert sat["inconclusive_reason"] is None, sat
    assert sat["max_sustainable_rps"] == pytest.approx(100, rel=0.10)
    assert res["passed"] is True


@pytest.mark.parametrize("model", ["always-500", "synth-1ms"])
def test_very_low_rates_never_read_as_a_saturated_generator(testbed, tmp_path, model):
    run = seldon_load(["run", "--host", testbed.rest_url, "--model", model, "--stages",
                       "0.5:0s:6s,0.7:0s:5s,1.3:0s:5s,2:0s:5s", "--settle", "1s"], tmp_path, timeout_s=120)
    res = run.results
    assert all(s["generator_healthy"] for s in res["stages"]), [s["reasons"] for s in res["stages"]]
    assert res["generator"]["healthy"] is True and "GENERATOR" not in run.stdout
    if model == "always-500":
        assert run.code == 1 and res["passed"] is False and "TARGET FAULT" in run.stdout
    else:
        assert run.code == 0 and res["passed"] is True
        assert all(s["sustained"] for s in res["stages"]) and res["saturation"]["saturated"] is False


def test_auto_against_a_target_down_from_the_start_exits_2_before_any_load(tmp_path):
    run = seldon_load(["run", "--host", f"http://127.0.0.1:{free_port()}", "--model", "m", *AUTO], tmp_path,
                      timeout_s=60)
    assert run.code == 2 and "error" in run.stderr.lower()
    assert not (tmp_path / "results.json").exists()
