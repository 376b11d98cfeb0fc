"""The testbed: a real MLServer with synthetic models, iris and Seldon pipelines."""

from __future__ import annotations

import asyncio
import json
import socket
import time
import urllib.request
from typing import Any

import grpc
import numpy as np
import orjson
import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families

from seldon_load.errors import ConfigError, TargetError
from seldon_load.oip._generated import grpc_predict_v2_pb2 as pb
from seldon_load.oip._generated import grpc_predict_v2_pb2_grpc as pb_grpc
from seldon_load.testbed.faulty import FAULTY_MODELS
from seldon_load.testbed.server import (
    MODEL_NAMES,
    SYNTH_MODELS,
    UNDECLARED_MODELS,
    Testbed,
    TestbedConfig,
    free_port,
)

pytestmark = pytest.mark.integration

ROWS = np.array([[1.0, 2.0, 3.0, 4.0], [0.5, 0.0, -1.0, 2.0]], dtype=np.float32)
OVERHEAD_MS = TestbedConfig().stage_overhead_ms


def rest_infer(bed: Testbed, model: str, inputs: dict[str, np.ndarray], **params: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "inputs": [
            {"name": name, "datatype": "FP32", "shape": list(a.shape), "data": a.ravel().tolist()}
            for name, a in inputs.items()
        ]
    }
    if params:
        body["parameters"] = params
    request = urllib.request.Request(
        f"{bed.rest_url}/v2/models/{model}/infer",
        data=orjson.dumps(body),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return orjson.loads(response.read())


def rest_output(reply: dict[str, Any], name: str = "OUTPUT0") -> np.ndarray:
    out = next(o for o in reply["outputs"] if o["name"] == name)
    return np.asarray(out["data"]).reshape(out["shape"])


def grpc_request(model: str, inputs: dict[str, np.ndarray]) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name=model)
    for name, a in inputs.items():
        tensor = request.inputs.add(name=name, datatype="FP32", shape=list(a.shape))
        tensor.contents.fp32_contents.extend(a.ravel().tolist())
    return request


def synth_expected(*arrays: np.ndarray, width: int = 4) -> np.ndarray:
    """What a synth model answers: every column = the row's sum over all inputs."""
    sums = sum(a.reshape(a.shape[0], -1).sum(axis=1) for a in arrays)
    return np.repeat(np.asarray(sums, dtype=np.float32)[:, None], width, axis=1)


def inputs_for(model: str) -> dict[str, np.ndarray]:
    if model == "iris":
        return {"input-0": np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]], dtype=np.float32)}
    if model in ("join-1ms", "bare-join-1ms"):
        return {"INPUT0": ROWS, "INPUT1": ROWS * 2}
    return {"INPUT0": ROWS}


def expected_for(model: str) -> np.ndarray:
    if model == "iris":
        return np.array([[0], [2]])  # setosa, virginica
    if model == "linear":  # synth-2ms -> synth-5ms -> synth-3ms: each step sums a row of 4
        return synth_expected(synth_expected(synth_expected(ROWS)))
    if model in ("branching", "slow-branch"):  # synth-1ms -> (synth-2ms, synth-8ms or -20ms) -> join-1ms
        first = synth_expected(ROWS)
        return synth_expected(synth_expected(first), synth_expected(first))
    if model == "bare-steps":  # bare-1ms (3 columns) -> bare-20ms -> bare-join-1ms(bare-1ms, bare-20ms)
        first = synth_expected(ROWS, width=3)
        return synth_expected(first, synth_expected(first))
    width = UNDECLARED_MODELS[model][1] if model in UNDECLARED_MODELS else 4
    return synth_expected(*inputs_for(model).values(), width=width)


def declared_inputs(model: str) -> list[str]:
    """What the metadata lists: nothing for the models that declare no metadata."""
    return [] if model in UNDECLARED_MODELS else list(inputs_for(model))


def metric_samples(bed: Testbed) -> dict[tuple[str, str], float]:
    """(sample name, model label) -> value, from the Prometheus endpoint."""
    with urllib.request.urlopen(bed.metrics_url, timeout=10) as response:
        text = response.read().decode()
    samples: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if "model" in sample.labels:
                key = (sample.name, sample.labels["model"])  # summed over other labels (version)
                samples[key] = samples.get(key, 0.0) + sample.value
    return samples


ANSWERING = [m for m in MODEL_NAMES if m not in FAULTY_MODELS]  # the faulty ones: test_target_faults.py


def test_every_model_ready_with_metadata(testbed: Testbed) -> None:
    status = testbed.status()
    assert status["running"] and status["ready"]
    assert set(status["models"]) == set(MODEL_NAMES)
    for model in MODEL_NAMES:
        with urllib.request.urlopen(f"{testbed.rest_url}/v2/models/{model}", timeout=10) as response:
            meta = orjson.loads(response.read())
        names = [t["name"] for t in meta.get("inputs") or []]
        assert names == declared_inputs(model), model
        assert all(t["datatype"] == "FP32" and t["shape"] == [-1, 4] for t in meta.get("inputs") or [])
        assert bool(meta.get("outputs")) is (model not in UNDECLARED_MODELS), model


@pytest.mark.parametrize("model", ANSWERING)
def test_model_answers_over_rest(testbed: Testbed, model: str) -> None:
    reply = rest_infer(testbed, model, inputs_for(model))
    name = "predict" if model == "iris" else "OUTPUT0"
    np.testing.assert_allclose(rest_output(reply, name), expected_for(model), rtol=1e-6)


@pytest.mark.parametrize("model", ANSWERING)
def test_model_answers_over_grpc(testbed: Testbed, model: str) -> None:
    with grpc.insecure_channel(testbed.grpc_target) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        reply = stub.ModelInfer(grpc_request(model, inputs_for(model)), timeout=30)
        meta = stub.ModelMetadata(pb.ModelMetadataRequest(name=model), timeout=10)
    assert [t.name for t in meta.inputs] == declared_inputs(model)
    out = reply.outputs[0]
    if model == "iris":
        assert out.datatype == "INT64"
        values = np.asarray(out.contents.int64_contents or np.frombuffer(reply.raw_output_contents[0], "<i8"))
    else:
        assert (out.name, out.datatype) == ("OUTPUT0", "FP32")
        values = np.asarray(out.contents.fp32_contents or np.frombuffer(reply.raw_output_contents[0], "<f4"))
    np.testing.assert_allclose(values.reshape(list(out.shape)), expected_for(model), rtol=1e-6)


def test_synth_batch_and_width(testbed: Testbed) -> None:
    batch = np.arange(7 * 4, dtype=np.float32).reshape(7, 4)
    out = rest_output(rest_infer(testbed, "synth-1ms", {"anything": batch}))
    assert out.shape == (7, 4)
    np.testing.assert_allclose(out, synth_expected(batch))


async def _concurrent_grpc(target: str, model: str, n: int) -> tuple[float, list[float], list[float]]:
    async with grpc.aio.insecure_channel(target) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        await stub.ModelInfer(grpc_request(model, {"INPUT0": ROWS}), timeout=30)  # warm the channel
        sent: list[float] = []
        done: list[float] = []

        async def one() -> None:
            sent.append(time.perf_counter())
            await stub.ModelInfer(grpc_request(model, {"INPUT0": ROWS}), timeout=30)
            done.append(time.perf_counter())

        start = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(n)))
        return time.perf_counter() - start, sent, done


def test_wait_mode_serialises_requests(testbed: Testbed) -> None:
    n = 20
    service_ms = SYNTH_MODELS["synth-5ms"][0]
    elapsed_s, sent, done = asyncio.run(_concurrent_grpc(testbed.grpc_target, "synth-5ms", n))
    assert max(sent) < min(done), "all requests should have been in flight together"
    # One at a time: n * 5 ms at least; in parallel it would be about 5 ms.
    assert elapsed_s * 1000 >= 0.9 * n * service_ms
    # Completions are spaced by the service time (virtual clock), not bunched.
    assert (max(done) - min(done)) * 1000 >= 0.9 * (n - 1) * service_ms


def test_branching_pipeline_runs_branches_concurrently(testbed: Testbed) -> None:
    reply = rest_infer(testbed, "branching", {"INPUT0": ROWS}, testbed_trace=True)
    spans = {s["step"]: s for s in json.loads(reply["parameters"]["testbed_trace"])}
    assert set(spans) == {"synth-1ms", "synth-2ms", "synth-8ms", "join-1ms"}
    fast, slow, join = spans["synth-2ms"], spans["synth-8ms"], spans["join-1ms"]
    assert (
        fast["start_ms"] >= spans["synth-1ms"]["end_ms"] and slow["start_ms"] >= spans["synth-1ms"]["end_ms"]
    )
    assert fast["start_ms"] < slow["end_ms"] and slow["start_ms"] < fast["end_ms"], "branches should overlap"
    assert join["start_ms"] >= max(fast["end_ms"], slow["end_ms"]) + OVERHEAD_MS * 0.5  # inner join
    # Critical path: 1 + 8 + 1 ms of models plus a stage overhead before each of its 3 steps.
    assert join["end_ms"] >= 0.8 * (10 + 3 * OVERHEAD_MS)


def test_linear_pipeline_is_sequential(testbed: Testbed) -> None:
    reply = rest_infer(testbed, "linear", {"INPUT0": ROWS}, testbed_trace=True)
    spans = json.loads(reply["parameters"]["testbed_trace"])
    assert [s["step"] for s in spans] == ["synth-2ms", "synth-5ms", "synth-3ms"]
    for before, after in zip(spans[:-1], spans[1:], strict=True):
        assert after["start_ms"] >= before["end_ms"] + OVERHEAD_MS * 0.5
    untraced = rest_infer(testbed, "linear", {"INPUT0": ROWS})
    assert "testbed_trace" not in (untraced.get("parameters") or {})  # only when asked


def test_per_model_metrics_after_calls(testbed: Testbed) -> None:
    before = metric_samples(testbed)
    for _ in range(3):
        rest_infer(testbed, "synth-10ms", {"INPUT0": ROWS})
    rest_infer(testbed, "branching", {"INPUT0": ROWS})
    after = metric_samples(testbed)

    def grew(sample: str, model: str) -> float:
        return after.get((sample, model), 0.0) - before.get((sample, model), 0.0)

    assert grew("model_infer_request_duration_count", "synth-10ms") == 3
    assert grew("model_infer_request_duration_sum", "synth-10ms") >= 3 * 0.010 * 0.9
    assert grew("model_infer_request_success_total", "synth-10ms") == 3
    for step in ("synth-1ms", "synth-2ms", "synth-8ms", "join-1ms", "branching"):  # steps called over gRPC
        assert grew("model_infer_request_success_total", step) == 1, step


def test_up_status_down_leaves_no_process(tmp_path: Any) -> None:
    bed = Testbed.for_tests(tmp_path)
    assert bed.status()["running"] is False
    bed.up(timeout_s=90)
    try:
        status = bed.status()
        assert status["running"] and status["ready"] and status["pid"]
        procs = [psutil.Process(status["pid"]), *psutil.Process(status["pid"]).children(recursive=True)]
        # Another process can find and stop it from the state dir alone.
        other = Testbed.from_state_dir(bed.config.state_dir)
        assert other.rest_url == bed.rest_url and other.status()["running"]
        with pytest.raises(TargetError, match="already running"):
            bed.up()
    finally:
        assert bed.down() is True
    for proc in procs:
        assert not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE
    assert bed.status()["running"] is False
    assert bed.down() is False
    for port in (bed.config.http_port, bed.config.grpc_port, bed.config.metrics_port):
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers do (TIME_WAIT)
            sock.bind(("127.0.0.1", port))  # free again


def test_up_fails_clearly_when_a_port_is_taken(tmp_path: Any) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        bed = Testbed(
            TestbedConfig(
                http_port=port,
                grpc_port=free_port(),
                metrics_port=free_port(),
                state_dir=str(tmp_path / "tb"),
            )
        )
        with pytest.raises(TargetError, match=f"127.0.0.1:{port} is already in use"):
            bed.up(timeout_s=30)
    assert bed.pid is None


def test_up_rejects_equal_ports(tmp_path: Any) -> None:
    port = free_port()
    bed = Testbed(
        TestbedConfig(http_port=port, grpc_port=port, metrics_port=free_port(), state_dir=str(tmp_path))
    )
    with pytest.raises(ConfigError, match="ports must differ"):
        bed.up()


class _BrokenModelTestbed(Testbed):
    """A testbed whose synth-1ms has an invalid mode, so MLServer fails while loading it."""

    def _write_repository(self) -> Any:
        repo = super()._write_repository()
        path = repo / "synth-1ms" / "model-settings.json"
        settings = json.loads(path.read_text())
        settings["parameters"]["extra"]["mode"] = "bogus"
        path.write_text(json.dumps(settings))
        return repo


def test_up_fails_clearly_when_a_model_cannot_load(tmp_path: Any) -> None:
    bed = _BrokenModelTestbed(Testbed.for_tests(tmp_path).config)
    with pytest.raises(TargetError, match=r"during start-up: .*synth mode must be 'wait' or 'busy'.*\(log: "):
        bed.up(timeout_s=60)
    assert bed.pid is None and bed.status()["running"] is False
