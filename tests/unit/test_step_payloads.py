"""The payload walk of ``--isolate-steps``: what each step receives, and ``--step-payload``.

Each step is "called" by a pure function that answers as the testbed's synth models do (every
column the row's sum over all inputs), so the expected tensors can be worked out by hand.
tests/integration/test_pipelines.py walks a real pipeline on the testbed.
"""

from __future__ import annotations

import pathlib
from typing import Any

import numpy as np
import orjson
import pytest

from seldon_load import cli, isolate, launcher
from seldon_load.errors import OIPError, TargetError
from seldon_load.oip.types import InferRequest, InferResponse, Tensor
from seldon_load.pipelines import read_pipelines
from seldon_load.step_payloads import walk, write_payloads
from tests.unit.test_isolate import HOST, SPEC, FakeLocust, synth_answer, walk_without_server

PIPELINES = pathlib.Path(__file__).parents[2] / "seldon_load" / "testbed" / "pipelines"
ROWS = np.array([[1.0, 2.0, 3.0, 4.0], [0.0, 0.5, -1.0, 2.0]], dtype=np.float32)


def request() -> InferRequest:
    return InferRequest(inputs=[Tensor("INPUT0", "FP32", [2, 4], ROWS)])


def test_branching_steps_receive_renamed_outputs_and_the_join_both() -> None:
    pipe = read_pipelines(PIPELINES / "branching.yaml")[0]
    calls: list[str] = []

    def call(model: str, req: InferRequest) -> InferResponse:
        calls.append(model)
        return synth_answer(model, req)

    got = walk(pipe, request(), call)
    assert calls == ["synth-1ms", "synth-2ms", "synth-8ms", "join-1ms"]  # dependencies first
    sums = ROWS.sum(axis=1)  # synth-1ms's answer: [2, 4] of row sums
    assert [t.name for t in got["synth-1ms"].inputs] == ["INPUT0"]
    np.testing.assert_array_equal(got["synth-1ms"].inputs[0].data, ROWS)
    branch = got["synth-8ms"].inputs
    assert [t.name for t in branch] == ["INPUT0"] and branch[0].shape == [2, 4]
    np.testing.assert_allclose(branch[0].data, np.repeat(sums[:, None], 4, axis=1))
    join = got["join-1ms"].inputs  # tensorMap: synth-2ms -> INPUT0, synth-8ms -> INPUT1
    assert [t.name for t in join] == ["INPUT0", "INPUT1"]
    np.testing.assert_allclose(join[1].data, np.repeat((4 * sums)[:, None], 4, axis=1))


SELECTORS = """apiVersion: mlops.seldon.io/v1alpha1
kind: Pipeline
metadata:
  name: sel
spec:
  steps:
    - name: a
      inputs: [sel.inputs.X]
    - name: b
      inputs: [a.inputs.X, a.outputs.OUTPUT0, sel.inputs.Y]
      tensorMap:
        a.outputs.OUTPUT0: FROM_A
  output:
    steps: [b]
"""


def test_input_selectors_and_another_steps_inputs(tmp_path: pathlib.Path) -> None:
    spec = tmp_path / "sel.yaml"
    spec.write_text(SELECTORS)
    pipe = read_pipelines(spec)[0]
    req = InferRequest(inputs=[Tensor("X", "FP32", [2, 4], ROWS), Tensor("Y", "FP32", [2, 1], ROWS[:, :1])])
    got = walk(pipe, req, synth_answer)
    assert [t.name for t in got["a"].inputs] == ["X"]  # only the selected pipeline input
    assert [t.name for t in got["b"].inputs] == ["X", "FROM_A", "Y"]
    np.testing.assert_array_equal(got["b"].inputs[2].data, ROWS[:, :1])


def test_a_step_that_fails_on_its_input_stops_with_its_name(tmp_path: pathlib.Path) -> None:
    pipe = read_pipelines(PIPELINES / "linear.yaml")[0]

    def call(model: str, req: InferRequest) -> InferResponse:
        if model == "synth-5ms":
            raise OIPError("HTTP 400: bad input")
        return synth_answer(model, req)

    with pytest.raises(TargetError, match=r"step 'synth-5ms' \(model 'synth-5ms'\) failed .*HTTP 400: bad input"):
        walk(pipe, request(), call)


def test_payload_files_say_what_each_step_got(tmp_path: pathlib.Path) -> None:
    pipe = read_pipelines(PIPELINES / "branching.yaml")[0]
    got = walk(pipe, request(), synth_answer)
    own = tmp_path / "own.json"
    own.write_bytes(b'{"inputs": [{"name": "Z", "datatype": "INT64", "shape": [1, 2], "data": [1, 2]}]}')
    out = write_payloads(pipe, got, {"synth-8ms": str(own)}, lambda m: tmp_path / "steps" / m, tmp_path)
    assert list(out) == ["synth-1ms", "synth-2ms", "synth-8ms", "join-1ms"]
    assert out["join-1ms"]["file"] == "steps/join-1ms/payload.json"
    assert out["join-1ms"]["inputs"] == [{"name": "INPUT0", "datatype": "FP32", "shape": [2, 4]},
                                         {"name": "INPUT1", "datatype": "FP32", "shape": [2, 4]}]
    written = orjson.loads((tmp_path / "steps" / "join-1ms" / "payload.json").read_bytes())
    assert [t["name"] for t in written["inputs"]] == ["INPUT0", "INPUT1"]
    assert out["synth-8ms"] == {"source": "--step-payload", "file": str(own), "step": "synth-8ms",
                                "inputs": [{"name": "Z", "datatype": "INT64", "shape": [1, 2]}]}
    assert not (tmp_path / "steps" / "synth-8ms").exists()


def run_cli(args: list[str], monkeypatch: pytest.MonkeyPatch, fake: FakeLocust) -> int:
    monkeypatch.setattr(launcher, "run_locust", fake)
    monkeypatch.setattr(isolate, "walk_target", walk_without_server)
    return cli.main(["run", "--host", HOST, *args])


def test_step_payload_replaces_one_step_and_keeps_the_batch_size(tmp_path: pathlib.Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    own = tmp_path / "own.json"
    own.write_bytes(b'{"inputs": [{"name": "INPUT0", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}]}')
    fake = FakeLocust()
    code = run_cli(["--pipeline", "linear", "--pipeline-spec", str(SPEC), "--isolate-steps", "--stages", "10:1s:2s",
                    "--batch-size", "3", "--step-payload", f"synth-5ms={own}", "--results", str(tmp_path / "r")],
                   monkeypatch, fake)
    assert code == 0
    by_model = {r[r.index("--model") + 1]: r for r in fake.runs if "--model" in r}
    five = by_model["synth-5ms"]
    assert five[five.index("--payload") + 1] == str(own) and five[five.index("--batch-size") + 1] == "3"
    two = by_model["synth-2ms"]  # walked payloads are batched already
    assert two[two.index("--payload") + 1].endswith("payload.json") and "--batch-size" not in two
    assert all("--step-payload" not in r for r in fake.runs[:3])
    results = orjson.loads((tmp_path / "r" / "results.json").read_bytes())
    assert results["pipeline"]["isolated"]["synth-5ms"]["payload"]["source"] == "--step-payload"
    assert results["pipeline"]["isolated"]["synth-3ms"]["payload"]["source"] == "pipeline walk"


@pytest.mark.parametrize(("extra", "message"), [
    (["--step-payload", "synth-5ms"], "expected MODEL=FILE"),
    (["--step-payload", "nope=SPEC"], "'nope' is not a step model of pipeline 'linear'"),
    (["--step-payload", "synth-5ms=/no/such.json"], "no such file"),
    (["--step-payload", "synth-5ms=SPEC", "--step-payload", "synth-5ms=SPEC"], "given twice"),
])
def test_bad_step_payloads_fail_before_any_load(extra: list[str], message: str, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    fake = FakeLocust()
    extra = [e.replace("SPEC", str(SPEC)) for e in extra]
    args = ["--pipeline", "linear", "--pipeline-spec", str(SPEC), "--isolate-steps", "--stages", "10:1s:2s", *extra]
    assert run_cli(args, monkeypatch, fake) == 2
    assert fake.runs == []
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err


def test_step_payload_needs_isolate_steps(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    fake = FakeLocust()
    args = ["--pipeline", "linear", "--stages", "10:1s:2s", "--step-payload", f"synth-5ms={SPEC}"]
    assert run_cli(args, monkeypatch, fake) == 2 and fake.runs == []
    assert "--step-payload MODEL=FILE goes with --isolate-steps" in capsys.readouterr().err


def test_no_load_when_the_walk_fails(monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    def failing_walk(settings: Any, pipeline: Any) -> Any:
        raise TargetError("--isolate-steps: step 'synth-5ms' (model 'synth-5ms') failed on what the pipeline "
                          "sends it: HTTP 500")

    fake = FakeLocust()
    monkeypatch.setattr(launcher, "run_locust", fake)
    monkeypatch.setattr(isolate, "walk_target", failing_walk)
    code = cli.main(["run", "--host", HOST, "--pipeline", "linear", "--pipeline-spec", str(SPEC), "--isolate-steps",
                     "--stages", "10:1s:2s", "--results", str(tmp_path)])
    assert code == 2 and fake.runs == []
    assert "failed on what the pipeline sends it" in capsys.readouterr().err
