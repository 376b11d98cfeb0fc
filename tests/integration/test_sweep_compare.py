"""sweep and compare against the testbed: batch sizes, REST vs gRPC, a failing variant, a run
compared with itself, and bad inputs refused before any load."""

from __future__ import annotations

import orjson
import pytest

from tests.helpers.run import seldon_load

pytestmark = pytest.mark.integration


def _json(path) -> dict:
    return orjson.loads(path.read_bytes())


def test_batch_sweep_multiplies_inference_capacity_not_request_capacity(testbed, tmp_path):
    # synth-20ms handles a whole request (any batch) in 20 ms: 50 req/s whatever the batch
    out = tmp_path / "batch"
    run = seldon_load(["sweep", "--host", testbed.rest_url, "--model", "synth-20ms",
                       "--stages", "30:1s:4s,75:1s:4s", "--settle", "1s", "--vary", "batch-size=1,4"],
                      out, timeout_s=240)
    assert run.code == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "variant 1/2 batch1" in run.stdout and "variant 2/2 batch4" in run.stdout
    assert "time left" in run.stdout
    c = _json(out / "comparison.json")
    assert c["schema"] == "seldon-load/comparison/v1" and c["baseline"] == "batch1"
    rows = {v["name"]: v for v in c["variants"]}
    one, four = rows["batch1"]["saturation"], rows["batch4"]["saturation"]
    assert one["max_sustainable_rps"] == four["max_sustainable_rps"] == 30
    assert four["max_sustainable_ips"] == pytest.approx(4 * one["max_sustainable_ips"])
    # what the server delivered while overloaded: the same ~50 req/s, ~4x the inferences
    assert four["capacity_estimate_ips"] / one["capacity_estimate_ips"] == pytest.approx(4, rel=0.15)
    res4 = _json(out / "batch4" / "results.json")
    assert res4["target"]["batch_size"] == 4
    assert res4["stages"][0]["achieved_ips"] == pytest.approx(4 * res4["stages"][0]["achieved_rps"], abs=0.01)
    assert "achieved_ips" in (out / "batch4" / "stages.csv").read_text().splitlines()[0]
    assert "Saturation point: 30 rps = 120 inferences/s at batch 4" in run.stdout  # the run's headline says which unit
    html = (out / "comparison.html").read_text()
    assert "batch4" in html and "<script" not in html
    # a run compared with itself: no measurable difference, exit 0
    again = seldon_load(["compare", str(out / "batch1"), str(out / "batch1"), "--output", str(tmp_path / "self")])
    assert again.code == 0, again.stderr
    same = _json(tmp_path / "self" / "comparison.json")
    assert same["deltas"] and {d["verdict"] for d in same["deltas"]} == {"no measurable difference"}
    # a sweep's directory compares as its variants
    whole = seldon_load(["compare", str(out), "--output", str(tmp_path / "whole"), "--baseline", "batch4"])
    assert whole.code == 0, whole.stderr
    assert _json(tmp_path / "whole" / "comparison.json")["baseline"] == "batch4"


def test_protocol_sweep_compares_latency_at_common_rates(testbed, tmp_path):
    out = tmp_path / "proto"
    run = seldon_load(["sweep", "--model", "synth-5ms", "--stages", "20:1s:3s,40:1s:3s", "--settle", "1s",
                       "--vary", f"host={testbed.rest_url},{testbed.grpc_target}"], out, timeout_s=240)
    assert run.code == 0, run.stdout[-3000:] + run.stderr[-3000:]
    c = _json(out / "comparison.json")
    names = [v["name"] for v in c["variants"]]
    assert len(names) == 2 and names[0].startswith("http-") and names[1].startswith("grpc-")
    assert [v["target"]["protocol"] for v in c["variants"]] == ["rest", "grpc"]
    rates = {r["offered_rps"]: r["variants"] for r in c["common_rates"]}
    assert set(rates) == {20, 40}
    for cells in rates.values():
        assert set(cells) == set(names)
        assert all(cell["interpolated"] is False and cell["p99_ms"] > 0 for cell in cells.values())
    assert {d["metric"] for d in c["deltas"]} >= {"p50_at_40_rps", "p99_at_40_rps"}


def test_a_failing_variant_is_recorded_and_the_sweep_goes_on(testbed, tmp_path):
    out = tmp_path / "fail"
    run = seldon_load(["sweep", "--host", testbed.rest_url, "--stages", "20:1s:2s", "--settle", "1s",
                       "--vary", "model=no-such-model,synth-5ms"], out, timeout_s=240)
    assert run.code == 1, run.stdout[-3000:]
    assert "variant 2/2 synth-5ms: ok" in run.stdout
    c = _json(out / "comparison.json")
    bad, good = c["variants"]
    assert bad["status"] == "failed" and bad["exit_code"] == 2 and "no-such-model" in bad["reason"]
    assert good["status"] == "ok" and c["baseline"] == "synth-5ms"


def test_bad_inputs_exit_2_before_any_load(testbed, tmp_path):
    out = tmp_path / "bad"
    for args, needle in [
        (["--vary", "batch-size=1,0"], "variant batch0"),
        (["--vary", "colour=red"], "not an option"),
        (["--vary", "results=a,b"], "belongs to the sweep"),
        (["--experiment", str(tmp_path / "missing.yaml")], "experiment file"),
    ]:
        run = seldon_load(["sweep", "--host", testbed.rest_url, "--model", "synth-5ms", "--stages", "20:1s:2s",
                           *args], out)
        assert run.code == 2, (args, run.stderr)
        assert needle in run.stderr and len(run.stderr.strip().splitlines()) == 1, run.stderr
        assert not out.exists()  # no variant was started
    (tmp_path / "empty").mkdir()
    for args, needle in [([str(tmp_path / "empty"), str(tmp_path / "empty")], "no results.json"),
                         ([str(tmp_path / "empty")], "")]:
        run = seldon_load(["compare", *args, "--output", str(out)])
        assert run.code == 2 and needle in run.stderr and len(run.stderr.strip().splitlines()) == 1, run.stderr
        assert not out.exists()
