"""Critical path, bottleneck, capacity, overhead and layout of pipeline DAGs."""

from __future__ import annotations

import pathlib

import pytest

from seldon_load.analyze.dag import (
    CriticalPath,
    bottleneck,
    critical_path,
    depth,
    layout,
    overhead,
    stage_hops,
)
from seldon_load.errors import ConfigError
from seldon_load.pipelines import read_pipelines

PIPELINES_DIR = pathlib.Path(__file__).parents[2] / "seldon_load" / "testbed" / "pipelines"
LINEAR = read_pipelines(PIPELINES_DIR / "linear.yaml")[0]
BRANCHING = read_pipelines(PIPELINES_DIR / "branching.yaml")[0]
SERVICE_MS = {"synth-1ms": 1.0, "synth-2ms": 2.0, "synth-3ms": 3.0, "synth-5ms": 5.0, "synth-8ms": 8.0, "join-1ms": 1.0}


def pipeline(steps: str, output: str):
    text = (
        "apiVersion: mlops.seldon.io/v1alpha1\nkind: Pipeline\nmetadata: {name: p}\n"
        f"spec:\n  steps: {steps}\n  output: {{steps: [{output}]}}\n"
    )
    return read_pipelines(text)[0]


def test_linear_critical_path_is_every_step():
    path = critical_path(LINEAR, SERVICE_MS)
    assert path == CriticalPath(["synth-2ms", "synth-5ms", "synth-3ms"], 10.0)


def test_branching_critical_path_takes_the_slow_branch():
    path = critical_path(BRANCHING, SERVICE_MS)
    assert path.steps == ["synth-1ms", "synth-8ms", "join-1ms"]
    assert path.latency_ms == pytest.approx(10.0)
    faster_slow = {**SERVICE_MS, "synth-8ms": 1.5}
    assert critical_path(BRANCHING, faster_slow).steps == ["synth-1ms", "synth-2ms", "join-1ms"]


def test_stage_overhead_is_charged_per_hop_and_can_change_the_path():
    # n steps -> n + 1 hops (one into each step, one out to the caller)
    path = critical_path(LINEAR, SERVICE_MS, stage_overhead_ms=0.5)
    assert path.latency_ms == pytest.approx(10.0 + 0.5 * stage_hops(path.steps)) == pytest.approx(12.0)
    # a: 4 ms alone; b -> c: 1.5 + 1.5 ms; with 2 ms per hop the two-step branch is slower
    pipe = pipeline("[{name: a}, {name: b}, {name: c, inputs: [b]}, {name: out, inputs: [a, c]}]", "out")
    lat = {"a": 4.0, "b": 1.5, "c": 1.5, "out": 0.0}
    assert critical_path(pipe, lat).steps == ["a", "out"]
    slow = critical_path(pipe, lat, stage_overhead_ms=2.0)
    assert slow.steps == ["b", "c", "out"] and slow.latency_ms == pytest.approx(3.0 + 2.0 * 4)


def test_inputs_reference_waits_for_the_step_inputs_not_its_run():
    # c reads b's *inputs*: it starts when a is done, not after slow b
    pipe = pipeline("[{name: a}, {name: b, inputs: [a]}, {name: c, inputs: [b.inputs]}]", "b, c")
    path = critical_path(pipe, {"a": 1.0, "b": 9.0, "c": 2.0})
    assert path.steps == ["a", "b"] and path.latency_ms == 10.0
    path = critical_path(pipe, {"a": 1.0, "b": 0.5, "c": 2.0})
    assert path.steps == ["a", "c"] and path.latency_ms == 3.0


def test_only_paths_to_output_steps_count():
    # a slow drift detector that does not feed the output is off the critical path
    pipe = pipeline("[{name: m}, {name: drift, inputs: [m.inputs]}]", "m")
    assert critical_path(pipe, {"m": 2.0, "drift": 50.0}).steps == ["m"]


def test_missing_latency_is_a_config_error():
    with pytest.raises(ConfigError, match="no latency for step"):
        critical_path(LINEAR, {"synth-2ms": 1.0})


def test_bottleneck_and_capacity():
    caps = {"synth-1ms": 900.0, "synth-2ms": 450.0, "synth-8ms": 120.0, "join-1ms": 880.0}
    assert bottleneck(caps) == ("synth-8ms", 120.0)
    assert bottleneck({"x": 5.0, "y": 5.0}) == ("x", 5.0)
    with pytest.raises(ConfigError):
        bottleneck({})


def test_overhead_spreads_over_hops():
    path = critical_path(BRANCHING, SERVICE_MS)
    result = overhead(end_to_end_ms=18.0, critical_path_ms=path.latency_ms, hops=stage_hops(path.steps))
    assert result == {"total_ms": pytest.approx(8.0), "per_stage_ms": pytest.approx(2.0)}
    assert overhead(9.0, 10.0, 2)["total_ms"] == pytest.approx(-1.0)  # not clamped: measurements disagree
    with pytest.raises(ConfigError):
        overhead(1.0, 1.0, 0)


def test_depth_and_layout():
    assert depth(LINEAR) == 3 and depth(BRANCHING) == 3
    assert layout(BRANCHING) == {"synth-1ms": (0, 0), "synth-2ms": (1, 0), "synth-8ms": (1, 1), "join-1ms": (2, 0)}
    pipe = pipeline("[{name: a}, {name: b}, {name: c, inputs: [a]}, {name: d, inputs: [c, b]}]", "d")
    assert layout(pipe) == {"a": (0, 0), "b": (0, 1), "c": (1, 0), "d": (2, 0)}
    assert depth(pipe) == 3
