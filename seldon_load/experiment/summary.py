"""`seldon-load compare DIR...` and what sweep and compare print and write.

A DIR is a results directory (results.json) or a sweep's directory (sweep.json: its variants,
failed ones included). Everything is checked before anything is written: no results, another
schema, different targets without --allow-different-targets end with one line and exit 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any, TextIO

import orjson

from seldon_load.errors import ConfigError
from seldon_load.experiment.compare import NO_DIFFERENCE, Run, compare, load_run
from seldon_load.experiment.plan import unique_names
from seldon_load.limits import MAX_SPEC_BYTES, read_capped
from seldon_load.report.comparison_html import write_comparison_html
from seldon_load.report.svg import fmt_num


def write_comparison(comparison: dict[str, Any], directory: str | Path) -> list[Path]:
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    js = d / "comparison.json"
    js.write_bytes(orjson.dumps(comparison, option=orjson.OPT_INDENT_2))
    return [js, write_comparison_html(comparison, d / "comparison.html")]


def summary_lines(c: dict[str, Any]) -> list[str]:
    """A few lines for the console: one per variant, one per delta."""
    out = [f"comparison (baseline {c.get('baseline')}):"]
    for v in c.get("variants") or []:
        if v.get("status") != "ok":
            out.append(f"  {v['name']}: FAILED: {v.get('reason') or 'no results'}")
            continue
        sat, at = v.get("saturation") or {}, v.get("at_recommended") or {}
        best = sat.get("max_sustainable_rps")
        rate = f"{fmt_num(best)} req/s = {fmt_num(sat.get('max_sustainable_ips'))} inferences/s"
        pk = v.get("peak") or {}
        if best is None and v.get("mode") not in ("stages", "auto") and pk:
            users = f" with {pk['users']} users" if pk.get("users") else ""
            head = (f"peak {fmt_num(pk.get('achieved_rps'))} req/s = {fmt_num(pk.get('achieved_ips'))} inferences/s"
                    f"{users}, p50 {fmt_num(pk.get('p50_ms'))} ms p99 {fmt_num(pk.get('p99_ms'))} ms")
        elif best is None:
            head = "no saturation point" + (f" ({sat['inconclusive_reason']})" if sat.get("inconclusive_reason") else "")
        else:
            head = f"saturation {rate}" if sat.get("saturated") else f"not saturated, sustained up to {rate}"
        lat = (f"; at {fmt_num(at.get('rate_rps'))} req/s p50 {fmt_num(at.get('p50_ms'))} ms "
               f"p99 {fmt_num(at.get('p99_ms'))} ms{' (interpolated)' if at.get('interpolated') else ''}"
               if at else "")
        bad = v.get("failures_and_dropped") or 0
        errs = f"; {bad} failed or dropped (ratio {fmt_num(v.get('error_ratio'))})" if bad else ""
        out.append(f"  {v['name']} (batch {v.get('batch_size')}): {head}{lat}{errs}")
    for d in c.get("deltas") or []:
        word = d.get("verdict")
        change = "" if word in (NO_DIFFERENCE, "unknown") else f" ({fmt_num(d.get('delta_pct'))}%)"
        out.append(f"  {d['variant']} vs {c.get('baseline')}: {d['metric']}: {word}{change}")
    out += [f"  note: {n}" for n in c.get("notes") or []]
    return out


def _sweep_runs(directory: str) -> list[Run]:
    path = Path(directory, "sweep.json")
    data = read_capped(path, MAX_SPEC_BYTES, "sweep record")
    try:
        doc = orjson.loads(data)
        records = doc["variants"]
        assert isinstance(records, list)
    except (orjson.JSONDecodeError, KeyError, TypeError, AssertionError):
        raise ConfigError(f"{path}: not a sweep record") from None
    return runs_of_sweep(Path(directory), records)


def runs_of_sweep(root: Path, records: list[dict[str, Any]]) -> list[Run]:
    """The sweep's variants as comparison inputs; failed ones keep their reason."""
    runs = []
    for r in records:
        directory = str(root / r["directory"])
        extra = {"values": r.get("values") or {}}
        if r.get("status") == "ok":
            try:
                run = load_run(directory, r["name"])
                run.exit_code, run.extra = r.get("exit_code"), extra
                runs.append(run)
                continue
            except ConfigError as exc:
                r = {**r, "reason": str(exc)}
        runs.append(Run(r["name"], directory, None, r.get("reason"), r.get("exit_code"), extra))
    return runs


def load_dirs(dirs: list[str]) -> list[Run]:
    runs: list[Run] = []
    for d in dirs:
        if not Path(d, "results.json").is_file() and Path(d, "sweep.json").is_file():
            runs += _sweep_runs(d)
        else:
            runs.append(load_run(d))
    for run, name in zip(runs, unique_names(r.name for r in runs), strict=True):
        run.name = name
    return runs


def check_output(path: str) -> None:
    """ConfigError unless ``path`` is or can become a writable directory (nothing is created)."""
    probe = Path(path)
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        raise ConfigError(f"--output {path}: {probe} is not a writable directory")


def run_compare(a: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    check_output(a.output)
    runs = load_dirs(a.dirs)
    comparison = compare(runs, a.baseline, a.allow_different_targets)
    paths = write_comparison(comparison, a.output)
    for line in summary_lines(comparison):
        print(line, file=out)
    for p in paths:
        print(f"wrote {p}", file=out)
    return 0
