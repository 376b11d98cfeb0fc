"""``run --isolate-steps`` orchestration: step runs, capacities, merge into the pipeline results.

Locust is replaced by a fake ``run_locust`` that writes results.json files, and the one call per
step of the payload walk by a function that answers as the testbed's synth models do (the walk
itself is real), so these tests check what is run, in which order, with which options and
payloads, and what ends up in the results. tests/integration/test_pipelines.py does it for real.
"""

from __future__ import annotations

import pathlib
from typing import Any

import numpy as np
import orjson
import pytest

from seldon_load import cli, isolate, launcher, step_payloads
from seldon_load.analyze.pipeline_results import pipeline_section
from seldon_load.oip.types import InferRequest, InferResponse, Tensor
from seldon_load.pipelines import read_pipelines
from seldon_load.report.rebuild import write_all

SPEC = pathlib.Path(__file__).parents[2] / "seldon_load" / "testbed" / "pipelines" / "linear.yaml"
LINEAR = read_pipelines(SPEC)[0]
HOST = "http://127.0.0.1:9"  # nothing is sent in these tests
SCHEMA = "seldon-load/results/v1"


def results_doc(kind: str, name: str, saturation: dict[str, Any], pipeline: dict | None = None) -> dict[str, Any]:
    stages = [{"index": 0, "target_rps": 100.0, "achieved_rps": 100.0, "scheduled": 400, "requests": 400,
               "generator_healthy": True, "sustained": True, "latency_ms": {"mean": 30.0}},
              {"index": 1, "target_rps": 200.0, "achieved_rps": 150.0, "scheduled": 800, "requests": 800,
               "generator_healthy": True, "sustained": False, "latency_ms": {"mean": 900.0}}]
    sat = {"saturated": False, "max_sustainable_rps": None, "capacity_estimate_rps": None,
           "inconclusive_reason": None, **saturation}
    return {"schema": SCHEMA, "target": {"host": HOST, "protocol": "rest", "kind": kind, "name": name},
            "mode": "stages", "stages": stages, "saturation": sat, "pipeline": pipeline, "notes": [],
            "passed": True}


STEP_SATURATION = {
    "synth-2ms": {"saturated": False, "max_sustainable_rps": 250.0},
    "synth-5ms": {"saturated": True, "max_sustainable_rps": 190.0, "capacity_estimate_rps": 200.0},
    "synth-3ms": {"saturated": True, "max_sustainable_rps": None, "capacity_estimate_rps": 330.0},
}


class FakeLocust:
    """Stands in for launcher.run_locust: records each run and writes what a run would write."""

    def __init__(self, codes: dict[str, int] | None = None) -> None:
        self.runs: list[list[str]] = []
        self.codes = codes or {}

    def __call__(self, largs: list[str], workers: int, results_dir: str, **kw: Any) -> int:
        self.runs.append(largs)
        opt = {largs[i]: largs[i + 1] for i in range(len(largs) - 1) if largs[i].startswith("--")}
        assert opt["--results"] == results_dir
        if "--model" in opt:
            doc = results_doc("model", opt["--model"], STEP_SATURATION[opt["--model"]])
            code = self.codes.get(opt["--model"], 0)
        else:
            section = pipeline_section(LINEAR, [], [])
            section["critical_path"] = ["kept"]  # stands for the server-side numbers of the run
            doc = results_doc("pipeline", opt["--pipeline"], {"saturated": True, "max_sustainable_rps": 180.0},
                              section)
            code = self.codes.get("pipeline", 0)
        write_all(doc, results_dir)
        return code


def synth_answer(model: str, request: InferRequest) -> InferResponse:
    """What a synth model answers: OUTPUT0 [batch, 4], every column the row's sum over all inputs."""
    sums = sum(t.data.reshape(t.shape[0], -1).sum(axis=1) for t in request.inputs)
    out = np.repeat(np.asarray(sums, dtype=np.float32)[:, None], 4, axis=1)
    return InferResponse(model, None, None, [Tensor("OUTPUT0", "FP32", list(out.shape), out)])


def walk_without_server(settings: Any, pipeline: Any) -> dict[str, InferRequest]:
    rows = np.arange(8, dtype=np.float32).reshape(2, 4)
    request = InferRequest(inputs=[Tensor("INPUT0", "FP32", [2, 4], rows)])
    return step_payloads.walk(pipeline, request, synth_answer)


def run_cli(args: list[str], fake: FakeLocust, monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setattr(launcher, "run_locust", fake)
    monkeypatch.setattr(isolate, "walk_target", walk_without_server)
    return cli.main(["run", "--host", HOST, *args])


def test_each_step_model_alone_then_the_pipeline(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    fake = FakeLocust()
    code = run_cli(["--pipeline", "linear", "--pipeline-spec", str(SPEC), "--isolate-steps", "--stages",
                    "100:1s:4s,200:1s:4s", "--metrics-url", "http://127.0.0.1:9/metrics", "--payload", str(SPEC),
                    "--results", str(tmp_path)], fake, monkeypatch)
    assert code == 0
    models = [r[r.index("--model") + 1] if "--model" in r else None for r in fake.runs]
    assert models == ["synth-2ms", "synth-5ms", "synth-3ms", None]
    for largs, model in zip(fake.runs[:3], models, strict=False):
        assert "--pipeline" not in largs and "--pipeline-spec" not in largs
        assert largs[largs.index("--payload") + 1] == str(tmp_path / "steps" / model / "payload.json")
        assert largs[largs.index("--stages") + 1] == "100:1s:4s,200:1s:4s"  # the same load
        assert largs[largs.index("--host") + 1] == HOST and "--metrics-url" in largs
        assert largs[largs.index("--results") + 1] == str(tmp_path / "steps" / model)
    last = fake.runs[3]
    assert last[last.index("--pipeline") + 1] == "linear" and "--pipeline-spec" in last
    results = orjson.loads((tmp_path / "results.json").read_bytes())
    p = results["pipeline"]
    assert p["critical_path"] == ["kept"]  # what the pipeline run measured stays
    assert p["bottleneck"] == "synth-5ms" and p["predicted_capacity_rps"] == 190.0
    caps = {s["model"]: s["capacity_rps"] for s in p["steps"]}
    assert caps == {"synth-2ms": 250.0, "synth-5ms": 190.0, "synth-3ms": 330.0}
    assert p["isolated"]["synth-2ms"]["basis"].startswith("lower bound")
    assert p["isolated"]["synth-3ms"]["basis"].startswith("capacity_estimate_rps")
    assert p["isolated"]["synth-5ms"]["results_dir"] == "steps/synth-5ms"
    assert p["isolated"]["synth-5ms"]["payload"] == {
        "source": "pipeline walk", "file": "steps/synth-5ms/payload.json", "step": "synth-5ms",
        "inputs": [{"name": "INPUT0", "datatype": "FP32", "shape": [2, 4]}]}
    # what synth-5ms received in the pipeline: synth-2ms's answer (row sums) renamed to INPUT0
    sent = orjson.loads((tmp_path / "steps" / "synth-5ms" / "payload.json").read_bytes())["inputs"][0]
    assert sent["data"] == [6.0] * 4 + [22.0] * 4
    assert "bottleneck" in (tmp_path / "report.html").read_text()
    out = capsys.readouterr().out
    assert "bottleneck synth-5ms; pipeline capacity predicted 190 rps" in out
    assert "payload pipeline walk: INPUT0 FP32 [2, 4]" in out


def test_worst_exit_code_and_stop_on_bad_input(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    args = ["--pipeline", "linear", "--pipeline-spec", str(SPEC), "--isolate-steps", "--stages", "10:1s:2s"]
    assert run_cli([*args, "--results", str(tmp_path / "a")], FakeLocust({"synth-5ms": 1}), monkeypatch) == 1
    fake = FakeLocust({"synth-5ms": 2})
    assert run_cli([*args, "--results", str(tmp_path / "b")], fake, monkeypatch) == 2
    assert len(fake.runs) == 2  # stopped after the failing step, no pipeline run


@pytest.mark.parametrize(("args", "message"), [
    (["--pipeline", "linear", "--stages", "10:1s:2s"], "needs --pipeline-spec"),
    (["--model", "synth-5ms", "--pipeline-spec", str(SPEC), "--stages", "10:1s:2s"], "needs --pipeline NAME"),
    (["--pipeline", "nope", "--pipeline-spec", str(SPEC), "--stages", "10:1s:2s"], "no pipeline named 'nope'"),
    (["--pipeline", "linear", "--pipeline-spec", str(SPEC), "--stages", "10:1s:2s", "--web-ui"], "headless"),
])
def test_bad_input_fails_before_any_load(args: list[str], message: str, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    fake = FakeLocust()
    assert run_cli([*args, "--isolate-steps"], fake, monkeypatch) == 2
    assert fake.runs == []
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_step_capacity_says_what_kind_of_number_it_is(tmp_path: pathlib.Path) -> None:
    def cap(saturation: dict[str, Any]) -> dict[str, Any]:
        step = tmp_path / "steps" / "m"
        write_all(results_doc("model", "m", saturation), step)
        return isolate.step_capacity(step, tmp_path, 0)

    info = cap({"saturated": True, "max_sustainable_rps": 190.0, "capacity_estimate_rps": 201.0})
    assert (info["capacity_rps"], info["saturated"], info["results_dir"]) == (190.0, True, "steps/m")
    info = cap({"saturated": False, "max_sustainable_rps": 100.0, "capacity_estimate_rps": 120.0,
                "inconclusive_reason": "the load generator could not keep up"})
    assert info["capacity_rps"] == 100.0 and not info["saturated"] and "inconclusive" in info["basis"]
    missing = isolate.step_capacity(tmp_path / "nowhere", tmp_path, 2)
    assert missing["capacity_rps"] is None and missing["basis"].startswith("no results")
