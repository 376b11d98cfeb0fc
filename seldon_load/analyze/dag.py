"""What a pipeline's DAG implies: critical path, bottleneck, capacity, overhead, layout.

Seldon Core 2's tuning guide: pipeline latency = the sum of model latencies on the critical
path + per-stage data-processing overhead; pipeline max throughput = the lowest step capacity.

Hops. A request to a Core 2 pipeline travels gateway -> Kafka -> step 1 -> Kafka -> ... ->
step n -> Kafka -> gateway: a path of n steps moves data n + 1 times (one hop into each
step, plus the output hop back to the caller). ``stage_hops(path)`` returns that count; the
per-stage overhead is spread over it, and ``critical_path(stage_overhead_ms=x)`` charges it.

A step that reads ``a.inputs`` waits for a's inputs, not for a to finish: such an edge
carries the time a's inputs were ready, and a itself is not on the path through it.
"""

from __future__ import annotations

from dataclasses import dataclass

from seldon_load.errors import ConfigError
from seldon_load.pipelines import PIPELINE, Pipeline


@dataclass(frozen=True)
class CriticalPath:
    """The slowest chain of steps from the pipeline's inputs to an output step."""

    steps: list[str]
    latency_ms: float


def stage_hops(path: list[str]) -> int:
    """Data movements along a path of steps: one into each step plus the output hop."""
    return len(path) + 1


def critical_path(
    pipeline: Pipeline, step_latency_ms: dict[str, float], stage_overhead_ms: float = 0.0
) -> CriticalPath:
    """The path to an output step with the largest sum of step latencies (+ hop overhead).

    ``latency_ms`` = sum of the step latencies on the path + ``stage_overhead_ms`` per hop
    (``stage_hops``). Every step needs a latency; a missing one raises ConfigError.
    """
    missing = [s for s in pipeline.steps if s not in step_latency_ms]
    if missing:
        raise ConfigError(f"pipeline {pipeline.name!r}: no latency for step(s) {', '.join(missing)}")
    # ready[s]: when s's inputs are all there; done[s]: when s has finished. Each keeps the path.
    ready: dict[str, tuple[float, list[str]]] = {}
    done: dict[str, tuple[float, list[str]]] = {}
    for name in pipeline.topological_order():
        best: tuple[float, list[str]] = (0.0, [])
        for ref in pipeline.steps[name].refs():
            if ref.step == PIPELINE:
                continue
            cand = done[ref.step] if ref.kind == "outputs" else ready[ref.step]
            if cand[0] > best[0] or not best[1]:
                best = cand
        ready[name] = best
        done[name] = (best[0] + float(step_latency_ms[name]) + stage_overhead_ms, [*best[1], name])
    end = max(pipeline.sinks(), key=lambda s: done[s][0])
    latency_ms, path = done[end]
    return CriticalPath(steps=path, latency_ms=latency_ms + stage_overhead_ms)


def bottleneck(capacities_rps: dict[str, float]) -> tuple[str, float]:
    """The step with the lowest capacity (first in order on ties): it caps the pipeline."""
    if not capacities_rps:
        raise ConfigError("no step capacities to compare")
    step = min(capacities_rps, key=lambda s: capacities_rps[s])
    return step, float(capacities_rps[step])


def depth(pipeline: Pipeline) -> int:
    """Steps on the longest chain (a linear pipeline of n steps has depth n)."""
    return 1 + max(layer for layer, _ in layout(pipeline).values())


def overhead(end_to_end_ms: float, critical_path_ms: float, hops: int) -> dict[str, float]:
    """Time not spent in models: ``total_ms`` = end-to-end - critical path, spread over hops.

    Pass ``hops=stage_hops(path)`` (steps on the critical path + 1 for the output hop).
    ``total_ms`` is not clamped: a negative value means the two measurements disagree.
    """
    if hops < 1:
        raise ConfigError(f"hops must be at least 1, not {hops}")
    total_ms = float(end_to_end_ms) - float(critical_path_ms)
    return {"total_ms": total_ms, "per_stage_ms": total_ms / hops}


def layout(pipeline: Pipeline) -> dict[str, tuple[int, int]]:
    """(layer, position) per step for drawing: layer = longest distance from the inputs,
    position = order within the layer (spec order)."""
    layer: dict[str, int] = {}
    for name in pipeline.topological_order():
        deps = pipeline.dependencies(name)
        layer[name] = 1 + max((layer[d] for d in deps), default=-1)
    positions: dict[int, int] = {}
    placed: dict[str, tuple[int, int]] = {}
    for name in pipeline.steps:
        lay = layer[name]
        placed[name] = (lay, positions.get(lay, 0))
        positions[lay] = positions.get(lay, 0) + 1
    return placed
