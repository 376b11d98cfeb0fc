"""`seldon-load sweep`: the same test over a matrix of settings, one `seldon-load run` per variant.

Every variant is checked with run's own parser and checks before any load (bad input: one line,
exit 2). Then each runs as a child `seldon-load run` into RESULTS/<variant>/ (its stderr in
run.log there); a variant that fails (target down, payload the model refuses) is recorded and
the sweep goes on. At the end: sweep.json, comparison.json and comparison.html in RESULTS/.
Exit code: 0 every variant ran and held its thresholds, 1 otherwise, 130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlsplit, urlunsplit

import orjson

from seldon_load.errors import ConfigError
from seldon_load.experiment.compare import compare
from seldon_load.experiment.plan import Plan, Variant, build_plan
from seldon_load.experiment.summary import runs_of_sweep, summary_lines, write_comparison
from seldon_load.launcher import Processes, Terminated, _signal, _wait_for, locust_args, validate

SWEEP_SCHEMA = "seldon-load/sweep/v1"
STARTUP_S = 3.0  # a run's own start and stop (processes, preflight, report) on top of its stages: ~2-4 s measured


@dataclass
class Planned:
    variant: Variant
    directory: Path
    planned_s: float | None


def known_options(run_parser: argparse.ArgumentParser) -> dict[str, bool]:
    """Every long option of `seldon-load run` -> whether it is an on/off flag."""
    out = {}
    for action in run_parser._actions:
        for flag in action.option_strings:
            if flag.startswith("--") and flag != "--help":
                out[flag[2:]] = isinstance(action, argparse._StoreTrueAction)
    return out


def _planned_seconds(settings: Any) -> float | None:
    if getattr(settings, "stages", None):
        return sum(s.ramp_s + s.hold_s for s in settings.stages) + STARTUP_S
    auto = getattr(settings, "auto", None)
    if auto is not None and getattr(auto, "budget_s", None):
        return float(auto.budget_s) + STARTUP_S
    if getattr(settings, "run_time_s", None):
        return float(settings.run_time_s) + STARTUP_S
    return None


def check_variants(plan: Plan, root: Path, run_parser: argparse.ArgumentParser,
                   check: Callable[[argparse.Namespace], None]) -> list[Planned]:
    """Parse and check every variant exactly as `seldon-load run` would, before any load."""
    out = []
    for v in plan.variants:
        directory = root / v.name

        def fail(message: str, name: str = v.name) -> None:
            raise ConfigError(f"variant {name}: {message}")

        previous = run_parser.error
        run_parser.error = fail  # type: ignore[method-assign]
        try:
            ns = run_parser.parse_args([*v.args, "--results", str(directory)])
            check(ns)
            settings = validate(locust_args(ns, ns._plugin))
        except ConfigError as exc:
            msg = str(exc)
            raise ConfigError(msg if msg.startswith("variant ") else f"variant {v.name}: {msg}") from None
        finally:
            run_parser.error = previous  # type: ignore[method-assign]
        out.append(Planned(v, directory, _planned_seconds(settings)))
    return out


def eta_s(planned: list[Planned], done: list[tuple[float | None, float]], next_index: int) -> float | None:
    """Time left: the planned time of the variants still to run, scaled by how long the finished
    ones really took against their plan (the mean duration of finished ones when unplanned)."""
    remaining = planned[next_index:]
    if not remaining:
        return 0.0
    pairs = [(p, a) for p, a in done if p]
    scale = sum(a for _, a in pairs) / sum(p for p, _ in pairs) if pairs else 1.0
    mean_actual = sum(a for _, a in done) / len(done) if done else None
    total = 0.0
    for p in remaining:
        if p.planned_s is not None:
            total += p.planned_s * scale
        elif mean_actual is not None:
            total += mean_actual
        else:
            return None
    return total


def fmt_duration(s: float | None) -> str:
    if s is None:
        return "unknown"
    s = int(round(s))
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


def public_value(option: str, value: str) -> str:
    """What sweep.json may say about a varied value: header values and URL passwords hidden."""
    if option == "header":
        return value.partition(":")[0].strip() + ": ***"
    if "://" in value and "@" in value:
        u = urlsplit(value)
        host = u.hostname or ""
        return urlunsplit((u.scheme, f"{host}:{u.port}" if u.port else host, u.path, u.query, u.fragment))
    return value


def _failure_reason(log: Path, code: int) -> str:
    try:
        lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        lines = []
    errs = [ln for ln in lines if re.search(r"\berror\b", ln, re.I)]
    return errs[-1][:300] if errs else f"exit code {code}, no error line (see {log})"


def _results_reason(directory: Path) -> str:
    """Why a run that wrote its results did not pass (results.json's ``reason``)."""
    try:
        reason = orjson.loads((directory / "results.json").read_bytes()).get("reason")
    except (OSError, orjson.JSONDecodeError, AttributeError):
        reason = None
    return str(reason)[:300] if reason else "a threshold failed"


def _run_variant(p: Planned, extra: list[str]) -> tuple[int, float]:
    p.directory.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "seldon_load.cli", "run", *p.variant.args, "--results", str(p.directory)]
    if extra:
        cmd += ["--", *extra]
    procs = Processes()
    t0 = time.monotonic()
    with open(p.directory / "run.log", "w") as log:
        child = procs.start(cmd, stop_with_parent=True, stderr=log)
        try:
            code = _wait_for(child)
        except KeyboardInterrupt:
            _signal(child, 2)
            try:
                child.wait(timeout=60)
            except Exception:  # noqa: BLE001 (still stopped below)
                pass
            code = 130
        finally:
            procs.stop_all()
    return code, time.monotonic() - t0


def run_sweep(a: argparse.Namespace, base_args: list[str], extra: list[str],
              run_parser: argparse.ArgumentParser, check: Callable[[argparse.Namespace], None],
              out: TextIO | None = None) -> int:
    out = out or sys.stdout
    plan = build_plan(base_args, a.vary or [], a.experiment, known_options(run_parser), a.results, a.baseline)
    root = Path(plan.results or "results/sweep")
    planned = check_variants(plan, root, run_parser, check)
    n = len(planned)
    print(f"sweep: {n} variant(s) into {root}/: {', '.join(p.variant.name for p in planned)}; "
          f"estimated {fmt_duration(eta_s(planned, [], 0))}", file=out, flush=True)
    records: list[dict[str, Any]] = []
    done: list[tuple[float | None, float]] = []
    interrupted = False
    for i, p in enumerate(planned):
        print(f"sweep: variant {i + 1}/{n} {p.variant.name} "
              f"({', '.join(f'{k}={public_value(k, v)}' for k, v in p.variant.values.items())}); "
              f"time left ~{fmt_duration(eta_s(planned, done, i))}", file=out, flush=True)
        if Terminated.signal is not None:
            interrupted = True
            break
        code, took = _run_variant(p, extra)
        has_results = (p.directory / "results.json").is_file()
        if has_results:  # a variant that failed at once says nothing about how long the others take
            done.append((p.planned_s, took))
        if has_results:
            reason = {0: None, 1: _results_reason(p.directory), 130: "interrupted: results cover the run until then"}.get(
                code, f"exit code {code}")
        else:
            reason = _failure_reason(p.directory / "run.log", code)
        records.append({"name": p.variant.name, "directory": p.directory.name,
                        "values": {k: public_value(k, v) for k, v in p.variant.values.items()},
                        "exit_code": code, "status": "ok" if has_results else "failed",
                        "reason": reason, "duration_s": round(took, 1)})
        word = ("ok" if code == 0 else f"ran, {reason}") if has_results else f"FAILED ({reason})"
        print(f"sweep: variant {i + 1}/{n} {p.variant.name}: {word}", file=out, flush=True)
        if code == 130:
            interrupted = True
            break
    root.mkdir(parents=True, exist_ok=True)
    (root / "sweep.json").write_bytes(orjson.dumps({"schema": SWEEP_SCHEMA, "baseline": plan.baseline,
                                                    "variants": records}, option=orjson.OPT_INDENT_2))
    runs = runs_of_sweep(root, records)
    if len(runs) < 2:
        print("sweep: fewer than two variants ran, nothing to compare", file=out)
    else:
        baseline = plan.baseline
        if baseline is not None and not any(r.name == baseline and r.results is not None for r in runs):
            baseline = None  # it failed: the load was sent, so compare the rest rather than stop here
        comparison = compare(runs, baseline, allow_different_targets=True)
        if baseline != plan.baseline:
            comparison["notes"].append(f"baseline {plan.baseline} left no results; compared against "
                                       f"{comparison['baseline']} instead")
        paths = write_comparison(comparison, root)
        for line in summary_lines(comparison):
            print(line, file=out)
        for path in paths:
            print(f"wrote {path}", file=out)
    if interrupted:
        return 130
    return 0 if records and all(r["exit_code"] == 0 for r in records) else 1

