"""The ``pipeline`` section of results.json: per-step server-side latency, critical path,
overhead, bottleneck and capacity, overall and per load stage.

Inputs are what a run has anyway: the pipeline spec (the DAG), Prometheus snapshots taken at
the start and end of each stage's measured window (per-model counters, see ``metrics``), the
client's stage rows (end-to-end latency, achieved rate, sustained) and, after
``--isolate-steps``, each step model's own saturation point.

Choices, and why:

- **Which stage gives "the" latency.** Step means come from counter deltas, so they are means
  over a window. Under load they include queueing, which is a property of the load, not of the
  model; the lowest-load sustained stage (``latency_stage``) is the honest per-step latency,
  and the top-level ``latency_ms.mean``, critical path, end-to-end latency and overhead all
  come from that one window, so they add up. Every stage is also reported in ``per_stage``,
  and ``latency_ms.mean_all_stages`` / ``calls`` cover all measured windows together.
- **Critical path** = the output-reaching chain with the largest sum of step means in that
  window (``dag.critical_path`` without hop overhead: overhead is what is left once the path
  is known, and each hop is assumed to cost the same).
- **End-to-end latency** is the client's *mean* in the same stage (counters only give means).
- A step with no server-side calls in a window counts as 0 ms there (it did not run, or its
  server was not scraped); ``notes`` says so.
- A model counter named like the pipeline (the testbed serves the pipeline as a model) is not a
  step: it gives ``server_pipeline_latency_ms`` when Core 2's ``seldon_pipeline_infer_*`` are
  absent. MLServer behind Core 2 names models ``NAME_<version>``; those count for step NAME.

Pure: no Locust, no gevent, no I/O, so results can be re-analysed offline.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from seldon_load.analyze.dag import bottleneck, critical_path, overhead, stage_hops
from seldon_load.analyze.metrics import Kind, Snapshot, delta
from seldon_load.analyze.saturation import saturation
from seldon_load.analyze.stages import Criteria
from seldon_load.pipelines import Pipeline

SnapshotEdge = tuple[int, str, Snapshot]
_SOURCES = {"mlserver": "MLServer model_infer_request_duration (count/sum)",
            "seldon": "Seldon Core 2 seldon_model_infer_total / seldon_model_infer_seconds_total"}


@dataclass
class Window:
    """Server-side totals of one measured window: calls and summed latency per name."""

    stage: int
    calls: dict[str, float] = field(default_factory=dict)
    sum_ms: dict[str, float] = field(default_factory=dict)
    pipeline_calls: dict[str, float] = field(default_factory=dict)
    pipeline_sum_ms: dict[str, float] = field(default_factory=dict)

    def add(self, other: Window) -> None:
        for mine, theirs in ((self.calls, other.calls), (self.sum_ms, other.sum_ms),
                             (self.pipeline_calls, other.pipeline_calls),
                             (self.pipeline_sum_ms, other.pipeline_sum_ms)):
            for name, value in theirs.items():
                mine[name] = mine.get(name, 0.0) + value


def pipeline_section(pipeline: Pipeline | None, snapshots: list[SnapshotEdge], stage_rows: list[dict],
                     isolated: dict[str, dict] | None = None) -> dict[str, Any]:
    """The ``pipeline`` dict of results.json (shape in docs/results.md)."""
    windows = stage_windows(snapshots)
    rows = {r.get("index"): r for r in stage_rows}
    notes: list[str] = []
    names = _step_names(pipeline, windows)
    step_model = {s: pipeline.steps[s].model for s in names} if pipeline else {n: n for n in names}
    ref = _reference_stage(windows, rows, notes)
    per_stage = [_stage_entry(pipeline, w, rows.get(w.stage), step_model, notes) for w in windows]
    overall = Window(stage=-1)
    for w in windows:
        overall.add(w)
    ref_entry = next((e for e in per_stage if e["stage"] == ref), None)
    path = ref_entry.get("critical_path") if ref_entry else None
    steps = _steps(pipeline, step_model, overall if windows else None, ref_entry, path or [])
    section: dict[str, Any] = {
        "name": pipeline.name if pipeline else None,
        "steps": steps,
        "critical_path": path,
        "critical_path_latency_ms": ref_entry.get("critical_path_latency_ms") if ref_entry else None,
        "end_to_end_latency_ms": ref_entry.get("end_to_end_latency_ms") if ref_entry else None,
        "overhead_ms": ref_entry.get("overhead_ms") if ref_entry else None,
        "overhead_per_stage_ms": ref_entry.get("overhead_per_stage_ms") if ref_entry else None,
        "hops": stage_hops(path) if path else None,
        "latency_stage": ref,
        "bottleneck": None,
        "predicted_capacity_rps": None,
        "measured_capacity_rps": None,
        "measured_capacity_basis": None,
        "per_stage": per_stage,
        "source": _source_note(snapshots, windows, ref),
        "notes": notes,
    }
    server = ref_entry.get("server_pipeline_latency_ms") if ref_entry else None
    if server is not None:
        section["server_pipeline_latency_ms"] = server
    section["measured_capacity_rps"], section["measured_capacity_basis"] = measured_capacity(stage_rows)
    if isolated:
        apply_isolated(section, isolated)
    section["notes"] = list(dict.fromkeys(section["notes"]))
    return section


def stage_windows(snapshots: Iterable[SnapshotEdge]) -> list[Window]:
    """One Window per stage that has both a start and an end snapshot, in stage order."""
    edges: dict[int, dict[str, Snapshot]] = {}
    for stage, edge, snap in snapshots:
        edges.setdefault(int(stage), {}).setdefault(edge, snap)  # the first scrape of an edge wins
    out = []
    for stage in sorted(edges):
        start, end = edges[stage].get("start"), edges[stage].get("end")
        if start is None or end is None:
            continue
        w = Window(stage)
        _fill(w.calls, w.sum_ms, start, end, "model")
        _fill(w.pipeline_calls, w.pipeline_sum_ms, start, end, "pipeline")
        out.append(w)
    return out


def measured_capacity(stage_rows: list[dict]) -> tuple[float | None, str | None]:
    """The pipeline's saturation point from its own stages, and what that number is."""
    if not stage_rows:
        return None, None
    sat = saturation(stage_rows, Criteria())
    best, estimate = sat["max_sustainable_rps"], sat["capacity_estimate_rps"]
    if sat["saturated"] and best is not None:
        return best, "max_sustainable_rps"
    if sat["saturated"] and estimate is not None:
        return estimate, "capacity_estimate_rps"
    if sat.get("inconclusive_reason"):
        return None, f"inconclusive: {sat['inconclusive_reason']}"
    if best is not None:
        return None, f"not saturated: sustained up to {best:g} rps"
    return None, None


def apply_isolated(section: dict[str, Any], isolated: dict[str, dict]) -> dict[str, Any]:
    """Put each step model's isolated capacity on its steps; name the bottleneck and predict
    the pipeline's capacity (the lowest step capacity). Changes and returns ``section``."""
    section["isolated"] = isolated
    capacities: dict[str, float] = {}
    lower_bounds: list[str] = []
    for step in section.get("steps") or []:
        info = isolated.get(step.get("model")) or {}
        cap = info.get("capacity_rps")
        step["capacity_rps"] = cap
        step["capacity_saturated"] = info.get("saturated")
        if cap is not None:
            capacities[step["name"]] = float(cap)
            if not info.get("saturated"):
                lower_bounds.append(step["name"])
    notes = section.setdefault("notes", [])
    missing = [s["name"] for s in section.get("steps") or [] if s.get("capacity_rps") is None]
    if missing:
        notes.append(f"no isolated capacity for step(s) {', '.join(missing)}")
    if not capacities:
        section["bottleneck"], section["predicted_capacity_rps"] = None, None
        section["notes"] = list(dict.fromkeys(notes))
        return section
    name, cap = bottleneck(capacities)
    section["bottleneck"], section["predicted_capacity_rps"] = name, _r(cap)
    section["predicted_capacity_is_lower_bound"] = name in lower_bounds
    if name in lower_bounds:
        # a step that never saturated only says "at least this much": no step is known to cap it
        section["bottleneck"] = None
        notes.append(f"no step saturated below {cap:g} rps in its isolated test: the pipeline should carry "
                     "at least that, and the bottleneck is unknown (raise --max-rps or the stages)")
    section["notes"] = list(dict.fromkeys(notes))
    return section


# ---- internals -----------------------------------------------------------------------------

def _steps(pipeline: Pipeline | None, step_model: dict[str, str], overall: Window | None,
           ref_entry: dict[str, Any] | None, path: list[str]) -> list[dict[str, Any]]:
    """steps[]: the reference stage's mean, and calls and mean over all measured windows."""
    steps = []
    for name, model in step_model.items():
        calls, sum_ms = _lookup(overall.calls, overall.sum_ms, model) if overall else (0.0, 0.0)
        steps.append({
            "name": name, "model": model, "calls": int(round(calls)) if overall else None,
            "latency_ms": {"mean": ref_entry["steps"][name]["mean_ms"] if ref_entry else None,
                           "mean_all_stages": _r(sum_ms / calls) if calls else None},
            "on_critical_path": name in path, "capacity_rps": None,
            "depends_on": sorted(pipeline.dependencies(name), key=list(pipeline.steps).index) if pipeline else [],
        })
    return steps


def _fill(calls: dict[str, float], sums: dict[str, float], start: Snapshot, end: Snapshot, kind: Kind) -> None:
    for name, stats in delta(start, end, kind).items():
        calls[name] = float(stats.calls)
        sums[name] = (stats.mean_latency_ms or 0.0) * stats.calls


def _step_names(pipeline: Pipeline | None, windows: list[Window]) -> list[str]:
    if pipeline is not None:
        return list(pipeline.steps)
    seen: dict[str, None] = {}
    for w in windows:
        for name, calls in w.calls.items():
            if calls > 0:
                seen.setdefault(name)
    return list(seen)


def _lookup(calls: dict[str, float], sums: dict[str, float], model: str) -> tuple[float, float]:
    """Calls and summed latency of a model, counting MLServer's versioned ``model_<n>`` names."""
    if model in calls:
        return calls[model], sums.get(model, 0.0)
    pattern = re.compile(re.escape(model) + r"_\d+")
    keys = [k for k in calls if pattern.fullmatch(k)]
    return sum(calls[k] for k in keys), sum(sums.get(k, 0.0) for k in keys)


def _stage_entry(pipeline: Pipeline | None, w: Window, row: dict | None, step_model: dict[str, str],
                 notes: list[str]) -> dict[str, Any]:
    steps: dict[str, dict[str, Any]] = {}
    for name, model in step_model.items():
        calls, sum_ms = _lookup(w.calls, w.sum_ms, model)
        steps[name] = {"calls": int(round(calls)), "mean_ms": _r(sum_ms / calls) if calls else None}
    e2e = _client_mean(row)
    entry: dict[str, Any] = {
        "stage": w.stage,
        "target_rps": row.get("target_rps") if row else None,
        "achieved_rps": row.get("achieved_rps") if row else None,
        "sustained": row.get("sustained") if row else None,
        "steps": steps,
        "critical_path": None, "critical_path_latency_ms": None,
        "end_to_end_latency_ms": _r(e2e), "overhead_ms": None, "overhead_per_stage_ms": None,
        "server_pipeline_latency_ms": _server_pipeline_ms(pipeline, w),
    }
    if pipeline is None or not any(s["calls"] for s in steps.values()):
        return entry
    idle = [n for n, s in steps.items() if not s["calls"]]
    if idle:
        notes.append(f"stage {w.stage}: no server-side calls of step(s) {', '.join(idle)} (counted as 0 ms)")
    path = critical_path(pipeline, {n: s["mean_ms"] or 0.0 for n, s in steps.items()})
    entry["critical_path"] = path.steps
    entry["critical_path_latency_ms"] = _r(path.latency_ms)
    if e2e is not None:
        over = overhead(e2e, path.latency_ms, stage_hops(path.steps))
        entry["overhead_ms"] = _r(over["total_ms"])
        entry["overhead_per_stage_ms"] = _r(over["per_stage_ms"])
    return entry


def _server_pipeline_ms(pipeline: Pipeline | None, w: Window) -> float | None:
    """Server-side mean pipeline latency: Core 2's pipeline counters, else a model named like it."""
    if pipeline is not None:
        candidates = [(w.pipeline_calls, w.pipeline_sum_ms, pipeline.name), (w.calls, w.sum_ms, pipeline.name)]
    elif len(w.pipeline_calls) == 1:
        only = next(iter(w.pipeline_calls))
        candidates = [(w.pipeline_calls, w.pipeline_sum_ms, only)]
    else:
        return None
    for calls, sums, name in candidates:
        n = calls.get(name, 0.0)
        if n > 0:
            return _r(sums.get(name, 0.0) / n)
    return None


def _reference_stage(windows: list[Window], rows: dict[Any, dict], notes: list[str]) -> int | None:
    """The lowest-load sustained stage with server-side data (else the lowest-load one)."""
    if not windows:
        return None

    def load(w: Window) -> tuple[float, int]:
        row = rows.get(w.stage) or {}
        rate = row.get("target_rps") or row.get("achieved_rps") or row.get("users") or 0.0
        return float(rate), w.stage

    with_data = [w for w in windows if any(v > 0 for v in w.calls.values())] or windows
    sustained = [w for w in with_data if (rows.get(w.stage) or {}).get("sustained") is not False]
    if sustained:
        return min(sustained, key=load).stage
    pick = min(with_data, key=load).stage
    notes.append(f"no sustained stage: step latencies are from stage {pick}, which includes queueing")
    return pick


def _client_mean(row: dict | None) -> float | None:
    if not row:
        return None
    lat = row.get("latency_ms") or {}
    value = lat.get("mean") if isinstance(lat, dict) else None
    return None if value is None else float(value)


def _source_note(snapshots: list[SnapshotEdge], windows: list[Window], ref: int | None) -> str:
    if not snapshots:
        return "no server metrics (give --metrics-url or --prometheus-url for per-step latencies)"
    seen = sorted({key.source for _, _, snap in snapshots for key in snap.series})
    exporters = "; ".join(_SOURCES.get(s, s) for s in seen) or "no known inference counters found"
    if not windows:
        return f"server metrics ({exporters}), but no stage had both a start and an end scrape"
    return (f"server-side means from counter deltas ({exporters}) between scrapes at each stage's "
            f"measured window; latency_ms.mean, critical path and overhead are from stage {ref} "
            f"(lowest-load sustained stage), mean_all_stages and calls over all measured windows")


def _r(x: float | None, nd: int = 3) -> float | None:
    return None if x is None else round(float(x), nd)
