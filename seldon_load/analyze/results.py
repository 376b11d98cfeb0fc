"""Assemble ``results.json`` (schema ``seldon-load/results/v1``) from merged measurements.

Pure: takes the aggregate, the stage windows and facts about the run, returns a dict that
``report/`` renders and that can be re-analysed offline.
"""

from __future__ import annotations

import datetime as _dt

from seldon_load import __version__
from seldon_load.analyze.faults import describe
from seldon_load.analyze.saturation import all_failed, saturation
from seldon_load.analyze.stages import Criteria, stage_table

SCHEMA = "seldon-load/results/v1"


def _phase_of(t: float, stages, settle_s: float) -> tuple[int | None, str]:
    for win in stages:
        if win.ramp_start_s <= t < win.hold_end_s:
            if t < win.hold_start_s:
                return win.index, "ramp"
            start, end = win.measured(settle_s)
            return win.index, "hold" if start <= t < end else "settle"
    return None, "cooldown"


def timeline(agg, stages, names, settle_s: float) -> list[dict]:
    out = []
    for row in agg.timeline(names):
        stage, phase = _phase_of(row["t_s"] + 0.5, stages, settle_s)
        out.append({
            "t_s": row["t_s"], "offered_rps": row["scheduled"], "achieved_rps": row["completed"],
            "ok": row["ok"], "failures": row["failures"], "dropped": row["dropped"],
            "p50_ms": _round(row["p50_ms"]), "p99_ms": _round(row["p99_ms"]),
            "lag_p99_ms": _round(row["lag_p99_ms"]), "stage": stage, "phase": phase,
        })
    return out


def _round(x, nd: int = 3):
    return None if x is None else round(float(x), nd)


def errors(agg, names) -> list[dict]:
    whole = agg.summarize(0, max(agg.seconds(), default=0) + 1, names) if agg.seconds() else None
    if whole is None:
        return []
    rows = [{"kind": k, "count": n, "examples": whole.error_examples.get(k, [])} for k, n in whole.failed.items()]
    if whole.dropped:
        rows.append({"kind": "dropped", "count": whole.dropped,
                     "examples": ["not sent: the in-flight cap (--max-in-flight) was reached"]})
    return sorted(rows, key=lambda r: -r["count"])


def generator_health(rows: list[dict], criteria: Criteria, master_cpu_max: float | None) -> dict:
    warnings = []
    cpu_max = max([r["cpu_percent_max"] for r in rows if r.get("cpu_percent_max") is not None]
                  + ([master_cpu_max] if master_cpu_max is not None else []), default=None)
    lag_max = max([r["send_lag_ms"]["p99"] for r in rows if r["send_lag_ms"].get("p99") is not None], default=None)
    steal_max = max([r["steal_percent_max"] for r in rows if r.get("steal_percent_max") is not None], default=None)
    for r in rows:
        if not r.get("generator_healthy", True):
            warnings.append(f"stage {r['index']}: " + "; ".join(x for x in r["reasons"] if x.startswith("generator")))
    return {"cpu_percent_max": _round(cpu_max, 1), "healthy": not warnings,
            "send_lag_p99_ms_max": _round(lag_max), "steal_percent_max": _round(steal_max, 1), "warnings": warnings}


def steal_notes(rows: list[dict], criteria: Criteria) -> list[str]:
    """Stages during which the hypervisor took much of the machine's CPU time. Not a generator
    fault (send lag says whether the schedule held), but every timing taken then, on this
    machine's side, waited for a CPU as well: worth knowing before trusting a p99."""
    hit = [r for r in rows if (r.get("steal_percent_max") or 0) > criteria.note_steal_percent]
    if not hit:
        return []
    worst = max(r["steal_percent_max"] for r in hit)
    stages = ", ".join(str(r["index"]) for r in hit)
    return [f"CPU steal up to {worst:.0f}% in stage(s) {stages}: the hypervisor gave that share of this "
            f"machine's CPU time to other guests, so latencies measured then may include waits for a CPU"]


def thresholds(rows: list[dict], sat: dict, mode: str, criteria: Criteria,
               max_failure_ratio: float | None, min_saturation_rps: float | None) -> list[dict]:
    out = []
    if criteria.slo_p99_ms is not None:
        if mode == "auto":
            value = sat.get("max_sustainable_rps")
            out.append({"name": "slo_p99_ms", "limit": criteria.slo_p99_ms, "value": value,
                        "passed": value is not None,
                        "detail": "some stage met the p99 SLO" if value is not None else "no stage met the p99 SLO"})
        else:
            p99s = [r["latency_ms"]["p99"] for r in rows if r["latency_ms"].get("p99") is not None]
            worst = max(p99s) if p99s else None
            out.append({"name": "slo_p99_ms", "limit": criteria.slo_p99_ms, "value": worst,
                        "passed": worst is not None and worst <= criteria.slo_p99_ms})
    if max_failure_ratio is not None:
        judged = [r for r in rows if r.get("sustained")] if mode == "auto" else rows
        sched = sum(r["scheduled"] for r in judged)
        bad = sum(r["failures"] + r["dropped"] for r in judged)
        ratio = bad / sched if sched else None
        out.append({"name": "max_failure_ratio", "limit": max_failure_ratio, "value": _round(ratio, 5),
                    "passed": ratio is not None and ratio <= max_failure_ratio})
    if min_saturation_rps is not None:
        value = sat.get("max_sustainable_rps")
        out.append({"name": "min_saturation_rps", "limit": min_saturation_rps, "value": value,
                    "passed": value is not None and value >= min_saturation_rps})
    return out


def add_inferences(rows: list[dict], sat: dict, batch_size: int) -> None:
    """Inferences/s beside requests/s: each request carries ``batch_size`` inferences."""
    for r in rows:
        r["achieved_ips"] = _round(r["achieved_rps"] * batch_size) if r.get("achieved_rps") is not None else None
    for key in ("max_sustainable", "recommended", "capacity_estimate"):
        rps = sat.get(f"{key}_rps")
        sat[f"{key}_ips"] = _round(rps * batch_size) if rps is not None else None


def run_failure(rows: list[dict], sat: dict, open_loop: bool) -> str | None:
    """Why the run failed although no threshold did: every request failed, or no stage was
    sustained because of target faults."""
    every = all_failed(rows)
    if every is not None:
        return f"every request failed: {describe(every)}"
    if open_loop and sat.get("target_fault") and not any(r.get("sustained") for r in rows):
        return f"no stage was sustained: {sat['inconclusive_reason']}"
    return None


def build_results(*, agg, stages, names, criteria: Criteria, target: dict, mode: str, workers: int,
                  workers_timeline: list[dict], master_cpu_max: float | None = None,
                  max_failure_ratio: float | None = None, min_saturation_rps: float | None = None,
                  pipeline: dict | None = None, notes: list[str] | None = None,
                  until_s: float | None = None, reruns: dict[int, int] | None = None) -> dict:
    open_loop = mode in ("stages", "auto")
    rows = stage_table(agg, stages, names, criteria, open_loop, until_s=until_s, workers_timeline=workers_timeline,
                       reruns=reruns)
    sat = saturation(rows, criteria)
    add_inferences(rows, sat, int(target.get("batch_size") or 1))
    gen = generator_health(rows, criteria, master_cpu_max)
    th = thresholds(rows, sat, mode, criteria, max_failure_ratio, min_saturation_rps)
    failed = [t["name"] for t in th if not t["passed"]]
    reason = run_failure(rows, sat, open_loop) or (f"threshold failed: {', '.join(failed)}" if failed else None)
    return {
        "schema": SCHEMA,
        "tool": {"name": "seldon-load", "version": __version__},
        "created": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "target": target,
        "mode": mode,
        "stages": rows,
        "saturation": sat,
        "timeline": timeline(agg, stages, names, criteria.settle_s),
        "errors": errors(agg, names),
        "pipeline": pipeline,
        "workers": workers,
        "workers_timeline": workers_timeline,
        "generator": gen,
        "thresholds": th,
        "passed": reason is None,
        "reason": reason,
        "notes": (notes or []) + steal_notes(rows, criteria),
    }
