"""The pipeline section of results.json from spec + Prometheus snapshots + stage rows."""

from __future__ import annotations

import pathlib
import subprocess
import sys
from typing import Any

import orjson
import pytest

from seldon_load.analyze.metrics import Snapshot, parse_exposition
from seldon_load.analyze.pipeline_results import (
    apply_isolated,
    measured_capacity,
    pipeline_section,
    stage_windows,
)
from seldon_load.pipelines import read_pipelines
from seldon_load.report.html import render_html

PIPELINES_DIR = pathlib.Path(__file__).parents[2] / "seldon_load" / "testbed" / "pipelines"
LINEAR = read_pipelines(PIPELINES_DIR / "linear.yaml")[0]
BRANCHING = read_pipelines(PIPELINES_DIR / "branching.yaml")[0]
BRANCH_PATH = ["synth-1ms", "synth-8ms", "join-1ms"]


def mlserver_text(counters: dict[str, tuple[float, float]]) -> str:
    """MLServer exposition: model -> (cumulative count, cumulative sum in seconds)."""
    lines = ["# HELP model_infer_request_duration Model infer request duration",
             "# TYPE model_infer_request_duration summary"]
    for model, (count, sum_s) in counters.items():
        lines.append(f'model_infer_request_duration_count{{model="{model}",version="v1"}} {count}')
        lines.append(f'model_infer_request_duration_sum{{model="{model}",version="v1"}} {sum_s}')
    return "\n".join(lines) + "\n"


class Server:
    """Cumulative per-model counters that stages add calls to; snapshots them as text."""

    def __init__(self, text=mlserver_text) -> None:
        self.counters: dict[str, tuple[float, float]] = {}
        self.text = text

    def serve(self, calls: int, means_ms: dict[str, float]) -> None:
        for model, mean in means_ms.items():
            count, total = self.counters.get(model, (0.0, 0.0))
            self.counters[model] = (count + calls, total + calls * mean / 1000.0)

    def snap(self) -> Snapshot:
        return parse_exposition(self.text(self.counters), endpoint="http://127.0.0.1:8082/metrics")


def run(stages: list[tuple[int, dict[str, float]]], noise_calls: int = 7) -> list[tuple[int, str, Snapshot]]:
    """Snapshots at each stage's window edges; calls outside windows (ramps) must not count."""
    server, snaps = Server(), []
    for index, (calls, means) in enumerate(stages):
        server.serve(noise_calls, {m: 100.0 for m in means})  # a ramp: slow calls, outside the window
        snaps.append((index, "start", server.snap()))
        server.serve(calls, means)
        snaps.append((index, "end", server.snap()))
    return snaps


def row(index: int, rps: float, e2e_ms: float | None, sustained: bool | None = True, **kw: Any) -> dict[str, Any]:
    r = {"index": index, "target_rps": rps, "achieved_rps": rps if sustained else rps * 0.8, "scheduled": 100,
         "requests": 100, "generator_healthy": True, "sustained": sustained,
         "latency_ms": {"mean": e2e_ms, "p50": e2e_ms, "p99": None if e2e_ms is None else e2e_ms * 2}}
    r.update(kw)
    return r


LOW = {"synth-1ms": 1.0, "synth-2ms": 2.0, "synth-8ms": 8.0, "join-1ms": 1.0, "branching": 17.0}
HIGH = {"synth-1ms": 1.5, "synth-2ms": 14.0, "synth-8ms": 9.0, "join-1ms": 1.5, "branching": 40.0}


def test_branching_critical_path_overhead_and_per_stage() -> None:
    snaps = run([(80, LOW), (160, HIGH)])
    p = pipeline_section(BRANCHING, snaps, [row(0, 20.0, 20.0), row(1, 40.0, 45.0)])
    assert p["name"] == "branching"
    assert p["latency_stage"] == 0
    assert p["critical_path"] == BRANCH_PATH
    assert p["critical_path_latency_ms"] == pytest.approx(10.0)
    assert p["end_to_end_latency_ms"] == pytest.approx(20.0)
    assert p["overhead_ms"] == pytest.approx(10.0)
    assert p["hops"] == 4 and p["overhead_per_stage_ms"] == pytest.approx(2.5)
    assert p["server_pipeline_latency_ms"] == pytest.approx(17.0)
    steps = {s["name"]: s for s in p["steps"]}
    assert list(steps) == ["synth-1ms", "synth-2ms", "synth-8ms", "join-1ms"]  # the pipeline model is no step
    assert steps["synth-8ms"]["latency_ms"]["mean"] == pytest.approx(8.0)
    assert steps["synth-8ms"]["latency_ms"]["mean_all_stages"] == pytest.approx((80 * 8 + 160 * 9) / 240, abs=1e-3)
    assert steps["synth-8ms"]["calls"] == 240  # the ramps' 7 slow calls per stage are not in any window
    assert [s["on_critical_path"] for s in steps.values()] == [True, False, True, True]
    assert steps["join-1ms"]["depends_on"] == ["synth-2ms", "synth-8ms"] and steps["synth-1ms"]["depends_on"] == []
    assert all(s["capacity_rps"] is None for s in steps.values())
    # per stage: the loaded stage has its own path (the 2 ms branch queued to 14 ms)
    first, second = p["per_stage"]
    assert first["stage"] == 0 and first["steps"]["synth-2ms"] == {"calls": 80, "mean_ms": 2.0}
    assert second["critical_path"] == ["synth-1ms", "synth-2ms", "join-1ms"]
    assert second["critical_path_latency_ms"] == pytest.approx(17.0)
    assert second["overhead_ms"] == pytest.approx(28.0) and second["overhead_per_stage_ms"] == pytest.approx(7.0)
    assert second["server_pipeline_latency_ms"] == pytest.approx(40.0)
    assert "MLServer" in p["source"] and "stage 0" in p["source"]
    assert p["bottleneck"] is None and p["predicted_capacity_rps"] is None
    assert p["measured_capacity_rps"] is None and p["measured_capacity_basis"].startswith("not saturated")


def test_latency_comes_from_the_lowest_load_sustained_stage() -> None:
    # an auto search: 100 ok, 200 overloaded, then 141 ok; the honest latency is at 100 rps
    means = [{"synth-2ms": 2.0 + k, "synth-5ms": 5.0 + 10 * k, "synth-3ms": 3.0 + k} for k in (0, 5, 1)]
    snaps = run([(400, means[0]), (800, means[1]), (560, means[2])])
    rows = [row(0, 100.0, 20.0), row(1, 200.0, 300.0, sustained=False), row(2, 141.0, 35.0)]
    p = pipeline_section(LINEAR, snaps, rows)
    assert p["latency_stage"] == 0
    assert p["critical_path"] == ["synth-2ms", "synth-5ms", "synth-3ms"]
    assert p["critical_path_latency_ms"] == pytest.approx(10.0) and p["overhead_ms"] == pytest.approx(10.0)
    assert p["measured_capacity_rps"] == 141.0 and p["measured_capacity_basis"] == "max_sustainable_rps"
    # reversed order of rows in time does not matter: the lowest sustained *rate* wins
    rows = [row(0, 141.0, 35.0), row(1, 200.0, 300.0, sustained=False), row(2, 100.0, 20.0)]
    p = pipeline_section(LINEAR, run([(560, means[2]), (800, means[1]), (400, means[0])]), rows)
    assert p["latency_stage"] == 2 and p["critical_path_latency_ms"] == pytest.approx(10.0)


def test_no_sustained_stage_falls_back_to_the_lightest_and_says_so() -> None:
    snaps = run([(80, LOW), (160, HIGH)])
    rows = [row(0, 20.0, 20.0, sustained=False), row(1, 40.0, 45.0, sustained=False)]
    p = pipeline_section(BRANCHING, snaps, rows)
    assert p["latency_stage"] == 0 and p["critical_path"] == BRANCH_PATH
    assert any("no sustained stage" in n for n in p["notes"])
    assert p["measured_capacity_rps"] == pytest.approx(32.0)  # best achieved while overloaded
    assert p["measured_capacity_basis"] == "capacity_estimate_rps"


def test_isolated_capacities_name_the_bottleneck_and_predict_capacity() -> None:
    snaps = run([(400, {"synth-2ms": 2.0, "synth-5ms": 5.0, "synth-3ms": 3.0})])
    rows = [row(0, 100.0, 25.0), row(1, 200.0, 60.0), row(2, 250.0, 900.0, sustained=False)]
    isolated = {"synth-2ms": {"capacity_rps": 500.0, "saturated": True, "results_dir": "steps/synth-2ms"},
                "synth-5ms": {"capacity_rps": 200.0, "saturated": True, "results_dir": "steps/synth-5ms"},
                "synth-3ms": {"capacity_rps": 333.0, "saturated": True, "results_dir": "steps/synth-3ms"}}
    p = pipeline_section(LINEAR, snaps, rows, isolated)
    assert p["bottleneck"] == "synth-5ms" and p["predicted_capacity_rps"] == 200.0
    assert p["predicted_capacity_is_lower_bound"] is False
    assert p["measured_capacity_rps"] == 200.0
    assert {s["name"]: s["capacity_rps"] for s in p["steps"]} == {"synth-2ms": 500.0, "synth-5ms": 200.0,
                                                                  "synth-3ms": 333.0}
    assert p["isolated"] == isolated
    assert p["steps"][1]["latency_ms"]["mean"] == pytest.approx(5.0)  # server-side numbers stay


def test_steps_that_never_saturated_give_only_a_lower_bound() -> None:
    not_saturated = {m: {"capacity_rps": 250.0, "saturated": False} for m in ("synth-2ms", "synth-3ms")}
    p = pipeline_section(LINEAR, [], [], {**not_saturated, "synth-5ms": {"capacity_rps": 190.0, "saturated": True}})
    assert p["bottleneck"] == "synth-5ms" and p["predicted_capacity_rps"] == 190.0  # 190 < every lower bound
    p = pipeline_section(LINEAR, [], [], {**not_saturated, "synth-5ms": {"capacity_rps": 250.0, "saturated": False}})
    assert p["bottleneck"] is None and p["predicted_capacity_rps"] == 250.0
    assert p["predicted_capacity_is_lower_bound"] is True
    assert any("at least" in n for n in p["notes"])
    p = pipeline_section(LINEAR, [], [], {"synth-5ms": {"capacity_rps": 190.0, "saturated": True}})
    assert p["bottleneck"] == "synth-5ms"
    assert any("no isolated capacity for step(s) synth-2ms, synth-3ms" in n for n in p["notes"])


def test_apply_isolated_keeps_the_measured_section() -> None:
    section = pipeline_section(BRANCHING, run([(80, LOW)]), [row(0, 20.0, 20.0)])
    before = orjson.loads(orjson.dumps(section))
    caps = {"synth-1ms": 1000.0, "synth-2ms": 500.0, "synth-8ms": 125.0, "join-1ms": 1000.0}
    after = apply_isolated(section, {m: {"capacity_rps": c, "saturated": True} for m, c in caps.items()})
    assert after["bottleneck"] == "synth-8ms" and after["predicted_capacity_rps"] == 125.0
    for key in ("critical_path", "critical_path_latency_ms", "overhead_ms", "per_stage", "end_to_end_latency_ms"):
        assert after[key] == before[key]
    assert [s["latency_ms"] for s in after["steps"]] == [s["latency_ms"] for s in before["steps"]]


def test_spec_only_gives_the_dag_without_latencies() -> None:
    p = pipeline_section(BRANCHING, [], [row(0, 20.0, 20.0)])
    assert [s["name"] for s in p["steps"]] == ["synth-1ms", "synth-2ms", "synth-8ms", "join-1ms"]
    assert all(s["calls"] is None and s["latency_ms"]["mean"] is None for s in p["steps"])
    assert p["critical_path"] is None and p["overhead_ms"] is None and p["per_stage"] == []
    assert p["latency_stage"] is None and "no server metrics" in p["source"]
    assert "server_pipeline_latency_ms" not in p


def test_snapshots_only_list_the_models_seen() -> None:
    snaps = run([(50, {"iris": 3.0, "idle": 0.0})])
    p = pipeline_section(None, snaps, [row(0, 10.0, 4.0)])
    assert p["name"] is None
    assert [s["name"] for s in p["steps"]] == ["iris", "idle"]
    assert p["steps"][0]["latency_ms"]["mean"] == pytest.approx(3.0) and p["steps"][0]["depends_on"] == []
    assert p["critical_path"] is None and p["overhead_ms"] is None
    assert p["per_stage"][0]["end_to_end_latency_ms"] == pytest.approx(4.0)


def test_core2_counters_and_versioned_mlserver_names() -> None:
    def core2(counters: dict[str, tuple[float, float]]) -> str:
        out = []
        for name, (count, sum_s) in counters.items():
            if name == "branching":
                out.append(f'seldon_pipeline_infer_total{{pipeline="{name}",code="200"}} {count}')
                out.append(f'seldon_pipeline_infer_seconds_total{{pipeline="{name}",code="200"}} {sum_s}')
            elif name == "synth-8ms":  # only MLServer's own summary, under Core 2's internal name
                out.append(f'model_infer_request_duration_count{{model="{name}_3",version="1"}} {count}')
                out.append(f'model_infer_request_duration_sum{{model="{name}_3",version="1"}} {sum_s}')
            else:
                out.append(f'seldon_model_infer_total{{model="{name}",server_replica="0"}} {count}')
                out.append(f'seldon_model_infer_seconds_total{{model="{name}",server_replica="0"}} {sum_s}')
        return "\n".join(out) + "\n"

    server, snaps = Server(core2), []
    snaps.append((0, "start", server.snap()))
    server.serve(100, {**LOW, "branching": 16.0})
    snaps.append((0, "end", server.snap()))
    p = pipeline_section(BRANCHING, snaps, [row(0, 20.0, 20.0)])
    assert p["critical_path"] == BRANCH_PATH
    assert {s["name"]: s["calls"] for s in p["steps"]}["synth-8ms"] == 100
    assert p["server_pipeline_latency_ms"] == pytest.approx(16.0)
    assert "Core 2" in p["source"] and "MLServer" in p["source"]


def test_incomplete_windows_and_idle_steps() -> None:
    snaps = run([(80, LOW), (160, HIGH)])
    snaps = [s for s in snaps if not (s[0] == 1 and s[1] == "end")]  # stage 1's end scrape failed
    assert [w.stage for w in stage_windows(snaps)] == [0]
    idle = {k: v for k, v in LOW.items() if k != "synth-2ms"}
    p = pipeline_section(BRANCHING, run([(80, idle)]), [row(0, 20.0, 20.0)])
    assert p["critical_path"] == BRANCH_PATH  # the idle branch counts as 0 ms
    assert p["per_stage"][0]["steps"]["synth-2ms"] == {"calls": 0, "mean_ms": None}
    assert any("synth-2ms" in n and "0 ms" in n for n in p["notes"])
    p = pipeline_section(BRANCHING, snaps[:1], [row(0, 20.0, 20.0)])  # a start without an end
    assert p["per_stage"] == [] and "no stage had both" in p["source"]


def test_measured_capacity_kinds() -> None:
    assert measured_capacity([]) == (None, None)
    rows = [row(0, 50.0, 5.0), row(1, 100.0, 5.0)]
    assert measured_capacity(rows) == (None, "not saturated: sustained up to 100 rps")
    rows = [row(0, 50.0, 5.0), row(1, 100.0, 400.0, sustained=False)]
    assert measured_capacity(rows) == (50.0, "max_sustainable_rps")
    rows = [row(0, 50.0, 5.0), row(1, 100.0, 400.0, sustained=False, generator_healthy=False)]
    value, basis = measured_capacity(rows)
    assert value is None and "generator" in basis


def test_section_is_json_and_the_report_draws_it() -> None:
    snaps = run([(80, LOW)])
    caps = {"synth-1ms": 1000.0, "synth-2ms": 500.0, "synth-8ms": 125.0, "join-1ms": 1000.0}
    p = pipeline_section(BRANCHING, snaps, [row(0, 20.0, 20.0)],
                         {m: {"capacity_rps": c, "saturated": True} for m, c in caps.items()})
    p = orjson.loads(orjson.dumps(p))
    html = render_html({"schema": "seldon-load/results/v1", "target": {"kind": "pipeline", "name": "branching"},
                        "stages": [], "pipeline": p})
    assert "synth-1ms → synth-8ms → join-1ms" in html
    assert 'class="node hot alert"' in html  # synth-8ms: on the path and the bottleneck
    assert html.count('class="edge hot"') == 2


def test_module_needs_neither_locust_nor_gevent() -> None:
    code = ("import sys, seldon_load.analyze.pipeline_results; "
            "bad = [m for m in ('locust', 'gevent') if m in sys.modules]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)
