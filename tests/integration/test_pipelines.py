"""Pipelines on the real MLServer testbed: answers, per-step latency, critical path, overhead,
and isolated step tests predicting the pipeline's capacity.

What the numbers should be. Each synth step sleeps its service time (wait mode: one request at
a time, so synth-5ms carries exactly 200 rps) and the testbed's pipeline runtime sleeps
``stage_overhead_ms`` (2 ms) before each step call and before the reply: 4 hops on the
branching pipeline's critical path synth-1ms -> synth-8ms -> join-1ms.

A systematic offset, measured and explained rather than hidden in a wider bound: MLServer's
``model_infer_request_duration`` times its whole infer handler (model lookup, cloud-event
middlewares, the model's decode/encode) and the model's asyncio sleep. Hot, that code costs
~0.06 ms; at 20 rps the server idles between calls and the same code takes ~0.4 ms (cold caches
on a shared VM), and a woken sleep overshoots by ~0.1-0.2 ms. So every step reads about the same
+0.5 ms above its service time: 1 ms steps read ~1.5 ms, 8 ms reads ~8.5 ms (the busy-spinning
synth-busy-2ms reads ~2.4 ms too, so it is the handler, not the sleep alone). The test takes
one common offset (the median over the steps), requires it to be small (< 1 ms) and each step
to be within 20 % of its service time once that offset is removed; calls per step must match
the client's requests in the window.
"""

from __future__ import annotations

import statistics
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from seldon_load.oip.payload import encode_for
from seldon_load.oip.target import parse_target
from seldon_load.oip.types import InferRequest, Tensor
from seldon_load.testbed.server import PIPELINES_DIR, SYNTH_MODELS, Testbed, TestbedConfig
from seldon_load.transport.clients import make_client
from tests.helpers.run import assert_accounting, seldon_load

pytestmark = pytest.mark.integration

SERVICE_MS = {name: cfg[0] for name, cfg in SYNTH_MODELS.items()}
ROWS = np.array([[1.0, 2.0, 3.0, 4.0], [0.5, 0.0, -1.0, 2.0], [-3.0, 1.5, 0.25, 7.0]], dtype=np.float32)
BRANCH_PATH = ["synth-1ms", "synth-8ms", "join-1ms"]
STAGE_OVERHEAD_MS = TestbedConfig().stage_overhead_ms


def synth(*inputs: np.ndarray) -> np.ndarray:
    """One synth step (testbed/synth.py): every output column = the row's sum over all inputs."""
    sums = sum(x.reshape(x.shape[0], -1).sum(axis=1, dtype=np.float64) for x in inputs)
    return np.repeat(np.asarray(sums, dtype=np.float32)[:, None], 4, axis=1)


EXPECTED = {
    "linear": lambda x: synth(synth(synth(x))),  # synth-2ms -> synth-5ms -> synth-3ms
    "branching": lambda x: synth(synth(synth(x)), synth(synth(x))),  # 1ms -> (2ms, 8ms) -> join
}


@pytest.mark.parametrize("protocol", ["rest", "grpc"])
@pytest.mark.parametrize("pipeline", ["linear", "branching"])
def test_pipeline_answers_the_composition_of_its_steps(testbed: Testbed, pipeline: str, protocol: str) -> None:
    host = testbed.rest_url if protocol == "rest" else testbed.grpc_target
    target = parse_target(host, None, pipeline, protocol)
    assert target.routing_value == f"{pipeline}.pipeline"
    request = encode_for(target, InferRequest(inputs=[Tensor("INPUT0", "FP32", list(ROWS.shape), ROWS)]))
    with make_client(target) as client:
        reply = client.infer_decoded(request)
    out = reply.output("OUTPUT0")
    assert out.datatype == "FP32" and list(out.shape) == [3, 4]
    np.testing.assert_allclose(np.asarray(out.data).reshape(3, 4), EXPECTED[pipeline](ROWS), rtol=1e-5)
    assert not np.allclose(EXPECTED["linear"](ROWS), EXPECTED["branching"](ROWS))  # the check tells them apart


def _branching_run(host: str, metrics_url: str, out: Path) -> Any:
    return seldon_load(["run", "--host", host, "--pipeline", "branching",
                        "--pipeline-spec", str(PIPELINES_DIR / "branching.yaml"), "--metrics-url", metrics_url,
                        "--stages", "20:1s:7s", "--workers", "0"], out)


def test_branching_per_step_latency_critical_path_and_overhead(testbed: Testbed, tmp_path: Path) -> None:
    # The same test against a second testbed whose pipeline adds no per-stage overhead, run at
    # the same time (same machine conditions): the difference is what the 2 ms per hop adds.
    bare = Testbed.for_tests(tmp_path / "bare")
    bare.config.stage_overhead_ms = 0.0
    bare.up(timeout_s=90)
    try:
        with ThreadPoolExecutor(2) as pool:
            runs = [pool.submit(_branching_run, bed.rest_url, bed.metrics_url, tmp_path / name)
                    for bed, name in ((testbed, "with-overhead"), (bare, "bare"))]
            run, bare_run = (r.result() for r in runs)
    finally:
        bare.down()
    for r in (run, bare_run):
        assert r.code == 0, r.stderr[-2000:]
        assert_accounting(r.results)
    res = run.results
    p, stage = res["pipeline"], res["stages"][0]
    assert stage["sustained"] is True and p["latency_stage"] == 0
    assert p["name"] == "branching" and p["critical_path"] == BRANCH_PATH
    steps = {s["name"]: s for s in p["steps"]}
    assert [n for n, s in steps.items() if s["on_critical_path"]] == BRANCH_PATH
    assert steps["join-1ms"]["depends_on"] == ["synth-2ms", "synth-8ms"]

    # every step ran once per pipeline request inside the measured window
    window = p["per_stage"][0]["steps"]
    for name, s in window.items():
        assert abs(s["calls"] - stage["requests"]) <= max(3, 0.05 * stage["requests"]), (name, s, stage)

    # per-step latency vs the configured service time (see the module docstring for the offset)
    means = {name: s["latency_ms"]["mean"] for name, s in steps.items()}
    offset = statistics.median(means[n] - SERVICE_MS[n] for n in means)
    assert 0.0 <= offset < 1.0, means
    for name, mean in means.items():
        assert mean >= 0.95 * SERVICE_MS[name], means
        assert abs(mean - offset - SERVICE_MS[name]) <= 0.2 * SERVICE_MS[name], (name, means, offset)

    # critical path latency and overhead add up with the client's end-to-end latency
    assert p["critical_path_latency_ms"] == pytest.approx(sum(means[n] for n in BRANCH_PATH), abs=0.01)
    assert p["end_to_end_latency_ms"] == pytest.approx(stage["latency_ms"]["mean"], abs=0.01)
    assert p["overhead_ms"] == pytest.approx(p["end_to_end_latency_ms"] - p["critical_path_latency_ms"], abs=0.01)
    assert p["hops"] == 4 and p["overhead_per_stage_ms"] == pytest.approx(p["overhead_ms"] / 4, abs=0.01)
    assert p["critical_path_latency_ms"] < p["server_pipeline_latency_ms"] < p["end_to_end_latency_ms"]

    # the overhead holds the configured 2 ms per hop, and that is what it adds over a bare pipeline
    configured_ms = STAGE_OVERHEAD_MS * p["hops"]
    assert p["overhead_ms"] >= 0.9 * configured_ms
    bare_p = bare_run.results["pipeline"]
    assert bare_p["critical_path"] == BRANCH_PATH
    added_ms = p["overhead_ms"] - bare_p["overhead_ms"]
    # each 2 ms sleep also waits for the busy event loop to wake it (~0.3-0.9 ms seen per hop)
    assert 0.9 * configured_ms <= added_ms <= 1.75 * configured_ms, (p["overhead_ms"], bare_p["overhead_ms"])


def test_isolated_steps_predict_the_pipeline_capacity(testbed: Testbed, tmp_path: Path) -> None:
    # slow-branch: synth-20ms carries exactly 50 rps; synth-1ms (1000), synth-2ms (500) and join-1ms
    # (1000) do not saturate below --max-rps 120. The search goes 30 -> 60 -> near 50 to within
    # 10 %. The pipeline runtime shares the testbed's one MLServer process, which spends 0.43 core
    # on a four-step pipeline at 48 rps (benchmarks/testbed_cpu.py): the slow step is the limit,
    # not that process. (With branching's synth-8ms, 125 rps took 0.76-0.97 core: once, on a slow
    # moment of the machine, 80 rps fell behind and the measured capacity was 70 against 125.)
    # Send lag up to 30 ms is tolerated: on a small shared machine an overloaded server starves
    # the in-process generator for a moment, which says nothing about where the server saturates.
    # Holds of 6 s (5 s measured): a 200 ms stall of the shared process at the end of a 3 s window
    # once cost a stage 7 % of its answers.
    steps = ("synth-1ms", "synth-2ms", "synth-20ms", "join-1ms")
    run = seldon_load(["run", "--host", testbed.rest_url, "--pipeline", "slow-branch",
                       "--pipeline-spec", str(PIPELINES_DIR / "slow-branch.yaml"), "--metrics-url", testbed.metrics_url,
                       "--isolate-steps", "--auto", "--auto-start-rps", "30", "--max-rps", "120",
                       "--auto-precision", "0.1", "--auto-hold", "6s", "--auto-narrow-hold", "6s", "--settle", "1s",
                       "--auto-budget", "90s", "--max-send-lag-ms", "30", "--workers", "0"], tmp_path, timeout_s=480)
    assert run.code == 0, run.stdout[-3000:] + run.stderr[-2000:]
    for model in steps:
        step = (tmp_path / "steps" / model / "results.json")
        assert step.is_file(), model
    res = run.results
    assert res["target"]["kind"] == "pipeline" and res["target"]["name"] == "slow-branch"
    p = res["pipeline"]
    iso = p["isolated"]
    assert iso["synth-20ms"]["saturated"] is True
    assert 0.8 * 50 <= iso["synth-20ms"]["capacity_rps"] <= 50 * 1.05
    for model in ("synth-1ms", "synth-2ms", "join-1ms"):
        assert iso[model]["capacity_rps"] > iso["synth-20ms"]["capacity_rps"], iso
    assert p["bottleneck"] == "synth-20ms"
    assert p["predicted_capacity_rps"] == iso["synth-20ms"]["capacity_rps"]
    assert {s["name"]: s["capacity_rps"] for s in p["steps"]}["synth-20ms"] == p["predicted_capacity_rps"]
    measured = res["saturation"]["max_sustainable_rps"]
    assert res["saturation"]["saturated"] is True and measured is not None, res["saturation"]
    assert p["measured_capacity_rps"] == measured
    assert abs(p["predicted_capacity_rps"] - measured) <= 0.15 * measured, (p["predicted_capacity_rps"], measured)
    # the pipeline run's own server-side numbers are still there
    assert p["critical_path"] == ["synth-1ms", "synth-20ms", "join-1ms"] and p["overhead_ms"] > 0
    assert "bottleneck synth-20ms" in run.stdout


def test_isolated_steps_without_step_metadata(testbed: Testbed, tmp_path: Path) -> None:
    # bare-steps: bare-1ms -> bare-20ms (input renamed X) -> bare-join-1ms (A from bare-1ms, B from
    # bare-20ms). None of the three declares inputs, so each step's payload must come from the walk
    # through the pipeline. bare-20ms carries exactly 50 rps: sustained at 20 and 40, not at 70;
    # the 1 ms steps sustain all three stages.
    run = seldon_load(["run", "--host", testbed.rest_url, "--pipeline", "bare-steps",
                       "--pipeline-spec", str(PIPELINES_DIR / "bare-steps.yaml"), "--isolate-steps",
                       "--stages", "20:1s:4s,40:1s:4s,70:1s:4s", "--max-send-lag-ms", "30", "--workers", "0"],
                      tmp_path, timeout_s=300)
    assert run.code == 0, run.stdout[-3000:] + run.stderr[-2000:]
    p = run.results["pipeline"]
    iso = p["isolated"]
    assert p["bottleneck"] == "bare-20ms", iso
    assert iso["bare-20ms"]["saturated"] is True and iso["bare-20ms"]["capacity_rps"] == 40.0
    for model in ("bare-1ms", "bare-join-1ms"):
        assert iso[model]["capacity_rps"] == 70.0 and iso[model]["saturated"] is False, iso[model]
    shapes = {m: [(t["name"], t["shape"]) for t in info["payload"]["inputs"]] for m, info in iso.items()}
    assert shapes == {"bare-1ms": [("INPUT0", [1, 4])], "bare-20ms": [("X", [1, 3])],
                      "bare-join-1ms": [("A", [1, 3]), ("B", [1, 4])]}
    assert all(info["payload"]["source"] == "pipeline walk" for info in iso.values())
    assert iso["bare-join-1ms"]["payload"]["file"] == "steps/bare-join-1ms/payload.json"
    # what the join was tested with is what the pipeline gave it: B = bare-20ms(A) = 4 x (sum of A's row)
    sent = orjson.loads((tmp_path / "steps" / "bare-join-1ms" / "payload.json").read_bytes())["inputs"]
    a_row, b_row = sent[0]["data"], sent[1]["data"]
    assert b_row == pytest.approx([sum(a_row)] * 4, rel=1e-5)
    for model in iso:  # every step test sent its payload and got answers
        stages = orjson.loads((tmp_path / "steps" / model / "results.json").read_bytes())["stages"]
        assert stages[0]["requests"] > 0 and stages[0]["failures"] == 0, (model, stages[0])
    assert "payload pipeline walk: A FP32 [1, 3], B FP32 [1, 4]" in run.stdout
