"""``seldon-load run --isolate-steps``: test each step model of a pipeline alone, then the pipeline.

Seldon's tuning guide starts with each model on its own: its saturation point is what that
step can carry, the lowest of them is what the pipeline should carry (every request passes
every step), and the step that has it is the bottleneck. Each distinct step model gets the same
load as the pipeline (same ``--stages``, ``--auto`` or ``--users``, host and protocol) with
``--model MODEL`` instead of ``--pipeline`` and its own results in ``<results>/steps/<model>/``;
then the pipeline runs into ``<results>/`` and its ``pipeline`` section gains the step
capacities, the bottleneck and the predicted capacity (its server-side step latencies stay).

A step's payload is what that step really receives in the pipeline: before any load, the
pipeline's request is walked through the DAG once (``step_payloads``), each step called with
the real outputs of the steps it reads, and what it got is written to
``<results>/steps/<model>/payload.json``; ``--step-payload MODEL=FILE`` replaces one. Step
models need not declare their inputs, and the results say which payload each step was tested with.
"""

from __future__ import annotations

import argparse
import copy
import re
from pathlib import Path
from typing import Any

from seldon_load import launcher
from seldon_load.errors import ConfigError
from seldon_load.safe_text import printable
from seldon_load.step_payloads import (
    PAYLOAD_FILE,
    check_overrides,
    describe,
    walk_target,
    write_payloads,
)

DEFAULT_RESULTS = "results/latest"
STEPS_DIR = "steps"
_INTERRUPTED = 130


def run_isolated(args: argparse.Namespace, largs: list[str], extra: list[str]) -> int:
    """Step tests, then the pipeline test; returns the worst exit code (2 > 1 > 0)."""
    pipeline = _pipeline_of(args)
    if getattr(args, "web_ui", False):
        raise ConfigError("--isolate-steps runs headless, one test after another; drop --web-ui")
    results_dir = Path(args.results or DEFAULT_RESULTS)
    settings = launcher.validate(largs)
    check_overrides(pipeline, settings.step_payloads)
    print(f"[seldon-load] finding each step's payload: one request through pipeline {pipeline.name}", flush=True)
    received = walk_target(settings, pipeline)
    payloads = write_payloads(pipeline, received, settings.step_payloads, lambda m: _step_dir(results_dir, m),
                              results_dir)
    step_runs: list[tuple[str, list[str], Path]] = []
    for model in payloads:
        out = _step_dir(results_dir, model)
        step_args = _step_args(args, model, out, settings.step_payloads.get(model))
        step_largs = launcher.locust_args(step_args, args._plugin)
        launcher.validate(step_largs)  # bad input for any step fails before any load is sent
        step_runs.append((model, step_largs, out))
    codes: list[int] = []
    isolated: dict[str, dict] = {}
    for i, (model, step_largs, out) in enumerate(step_runs, 1):
        print(f"[seldon-load] isolated step {i}/{len(step_runs)}: model {model} -> {printable(out)}/", flush=True)
        code = launcher.run_locust(step_largs, args.workers, str(out), extra=extra)
        codes.append(code)
        if code in (2, _INTERRUPTED):
            print(f"[seldon-load] isolated test of {model} ended with exit code {code}; stopping", flush=True)
            return code
        isolated[model] = {**step_capacity(out, results_dir, code), "payload": payloads[model]}
    print(f"[seldon-load] pipeline {pipeline.name} -> {printable(results_dir)}/", flush=True)
    code = launcher.run_locust(largs, args.workers, str(results_dir), extra=extra)
    codes.append(code)
    if code in (2, _INTERRUPTED):
        return code
    results = merge_into_results(results_dir, pipeline, isolated)
    for line in summary_lines(results.get("pipeline") or {}, isolated):
        print(line, flush=True)
    return max(codes)


def step_capacity(step_dir: Path, results_dir: Path, exit_code: int) -> dict[str, Any]:
    """One step model's capacity from its results.json, and what kind of number it is."""
    from seldon_load.report.rebuild import load_results

    rel = str(step_dir.relative_to(results_dir)) if step_dir.is_relative_to(results_dir) else str(step_dir)
    info: dict[str, Any] = {"capacity_rps": None, "saturated": False, "basis": None, "results_dir": rel,
                            "exit_code": exit_code}
    try:
        results = load_results(step_dir)
    except ConfigError as exc:
        info["basis"] = f"no results: {exc}"
        return info
    sat = results.get("saturation") or {}
    best, estimate = sat.get("max_sustainable_rps"), sat.get("capacity_estimate_rps")
    info["max_sustainable_rps"], info["capacity_estimate_rps"] = best, estimate
    reason = sat.get("inconclusive_reason")
    if sat.get("saturated") and best is not None:
        info.update(capacity_rps=best, saturated=True, basis="max_sustainable_rps (saturation point)")
    elif sat.get("saturated") and estimate is not None:
        info.update(capacity_rps=estimate, saturated=True,
                    basis="capacity_estimate_rps (no stage was sustained: throughput while overloaded)")
    elif reason and (best is not None or estimate is not None):
        info.update(capacity_rps=best if best is not None else estimate,
                    basis=f"{'max_sustainable_rps' if best is not None else 'capacity_estimate_rps'}, "
                          f"inconclusive: {reason}")
    elif best is not None:
        info.update(capacity_rps=best, basis=f"lower bound: not saturated up to {best:g} rps")
    else:
        achieved = [s.get("achieved_rps") for s in results.get("stages") or [] if s.get("achieved_rps")]
        if achieved:
            info.update(capacity_rps=max(achieved), basis="highest achieved_rps (no saturation analysis)")
        else:
            info["basis"] = reason or "no stage measured"
    return info


def merge_into_results(results_dir: Path, pipeline: Any, isolated: dict[str, dict]) -> dict[str, Any]:
    """Add the isolated capacities to DIR/results.json's pipeline section and rewrite the files."""
    from seldon_load.analyze.pipeline_results import apply_isolated, pipeline_section
    from seldon_load.report.rebuild import load_results, write_all

    results = load_results(results_dir)
    section = results.get("pipeline")
    if not isinstance(section, dict) or not section.get("steps"):
        section = pipeline_section(pipeline, [], results.get("stages") or [])
    results["pipeline"] = apply_isolated(section, isolated)
    note = f"isolated step tests: {', '.join(str(v['results_dir']) for v in isolated.values())}"
    results["notes"] = [*(results.get("notes") or []), note]
    write_all(results, results_dir)
    return results


def summary_lines(section: dict[str, Any], isolated: dict[str, dict]) -> list[str]:
    lines = ["[seldon-load] isolated steps:"]
    for model, info in isolated.items():
        cap = info.get("capacity_rps")
        lines.append(f"  {model:24} capacity {'-' if cap is None else f'{cap:g}'} rps  ({info.get('basis')})")
        if info.get("payload"):
            lines.append(f"  {'':24} payload {describe(info['payload'])}")
    pred, meas = section.get("predicted_capacity_rps"), section.get("measured_capacity_rps")
    lines.append(f"  bottleneck {section.get('bottleneck') or '-'}; pipeline capacity predicted "
                 f"{'-' if pred is None else f'{pred:g}'} rps, measured {'-' if meas is None else f'{meas:g}'} rps"
                 f" ({section.get('measured_capacity_basis') or 'no saturation point'})")
    return lines


def _pipeline_of(args: argparse.Namespace) -> Any:
    from seldon_load.pipelines import read_pipelines

    if not getattr(args, "pipeline_spec", None):
        raise ConfigError("--isolate-steps needs --pipeline-spec FILE (which models are the steps)")
    if not getattr(args, "pipeline", None):
        raise ConfigError("--isolate-steps needs --pipeline NAME (the pipeline to test after its steps)")
    for pipe in read_pipelines(args.pipeline_spec):
        if pipe.name == args.pipeline:
            return pipe
    raise ConfigError(f"--pipeline-spec {args.pipeline_spec!r} has no pipeline named {args.pipeline!r}")


def _step_args(args: argparse.Namespace, model: str, out: Path, override: str | None) -> argparse.Namespace:
    """The pipeline's options aimed at one model: same load, host and protocol, the step's payload
    (a walked payload is already batched; a --step-payload file gets --batch-size as --payload does)."""
    step = copy.copy(args)
    step.model, step.pipeline, step.results = model, None, str(out)
    for dest in ("pipeline_spec", "pipeline_path", "min_saturation_rps", "step_payload"):
        if hasattr(step, dest):
            value = getattr(step, dest)
            setattr(step, dest, False if isinstance(value, bool) else [] if isinstance(value, list) else None)
    step.payload = override or str(out / PAYLOAD_FILE)
    if override is None:
        step.batch_size = None
    return step


def _step_dir(results_dir: Path, model: str) -> Path:
    return results_dir / STEPS_DIR / _safe_dir(model)


def _safe_dir(model: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", model) or "_"
