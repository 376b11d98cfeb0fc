"""Compare results of two or more runs: ``comparison.json`` (schema ``seldon-load/comparison/v1``).

Pure over results dicts (no locust, no gevent, no wire), so any results.json, from a sweep or
from another day, can be compared offline. Three views:

- one row per variant: saturation point and recommended rate in requests/s and inferences/s
  (requests x batch size), latency at the recommended rate, errors, generator health, server;
- latency at the same offered rate: every rate two variants both sustained, measured at a
  stage or interpolated linearly between two sustained stages (and marked so);
- deltas against a baseline with a verdict that respects noise: a difference within the
  spread the runs themselves show, or within the stage tolerance, is "no measurable difference".
"""

from __future__ import annotations

import datetime as _dt
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from seldon_load import __version__
from seldon_load.errors import ConfigError
from seldon_load.limits import MAX_RESULTS_BYTES, read_capped

SCHEMA = "seldon-load/comparison/v1"
RESULTS_SCHEMA = "seldon-load/results/v1"
DEFAULT_TOLERANCE = 0.05  # 1 - the stages' min achieved ratio: rates closer than this are one rate
SAME_RATE = 1e-6
MIN_TAIL = 10  # a percentile needs this many answers beyond it before a change in it is judged
NO_DIFFERENCE = "no measurable difference"


@dataclass
class Run:
    """One input to a comparison: a variant's name and directory, its results or why it has none."""

    name: str
    directory: str
    results: dict[str, Any] | None = None
    failure: str | None = None
    exit_code: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def load_run(directory: str, name: str | None = None) -> Run:
    """A results directory; ConfigError when it holds no readable results of our schema."""
    path = Path(directory, "results.json")
    if not path.exists():
        raise ConfigError(f"{directory}: no results.json (not a results directory)")
    data = read_capped(path, MAX_RESULTS_BYTES, "results file")
    try:
        results = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not readable JSON ({exc})") from None
    if not isinstance(results, dict):
        raise ConfigError(f"{path}: not a results object")
    schema = results.get("schema")
    if schema != RESULTS_SCHEMA:
        raise ConfigError(f"{path}: schema {schema!r}, this version compares {RESULTS_SCHEMA!r}")
    return Run(name or Path(directory).resolve().name or "run", directory, results)


def _f(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _r(v: float | None, nd: int = 3) -> float | None:
    return None if v is None else round(v, nd)


def batch_of(results: dict[str, Any]) -> int:
    """Inferences per request (the batch dimension); 1 for results that do not say."""
    b = (results.get("target") or {}).get("batch_size")
    return int(b) if isinstance(b, int) and b >= 1 else 1


def curve(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Open-loop stages by offered rate: achieved rate and latency, sustained or not."""
    out = []
    for s in results.get("stages") or []:
        rate = _f(s.get("target_rps"))
        if not rate:
            continue
        lat = s.get("latency_ms") or {}
        out.append({"offered_rps": rate, "achieved_rps": _f(s.get("achieved_rps")),
                    "p50_ms": _f(lat.get("p50")), "p99_ms": _f(lat.get("p99")),
                    "sustained": s.get("sustained") is True, "index": s.get("index")})
    return sorted(out, key=lambda p: p["offered_rps"])


def at_rate(points: list[dict[str, Any]], rate: float) -> dict[str, Any] | None:
    """p50/p99 at ``rate`` from sustained stages: measured at a stage, else interpolated linearly
    between the two sustained stages around it; None outside what was sustained."""
    ok = [p for p in points if p["sustained"] and p["p99_ms"] is not None and p["p50_ms"] is not None]
    for p in ok:
        if abs(p["offered_rps"] - rate) <= SAME_RATE * max(1.0, rate):
            return {"p50_ms": p["p50_ms"], "p99_ms": p["p99_ms"], "interpolated": False}
    below = [p for p in ok if p["offered_rps"] < rate]
    above = [p for p in ok if p["offered_rps"] > rate]
    if not below or not above:
        return None
    lo, hi = below[-1], above[0]
    w = (rate - lo["offered_rps"]) / (hi["offered_rps"] - lo["offered_rps"])
    return {"p50_ms": _r(lo["p50_ms"] + w * (hi["p50_ms"] - lo["p50_ms"])),
            "p99_ms": _r(lo["p99_ms"] + w * (hi["p99_ms"] - lo["p99_ms"])), "interpolated": True}


def spread_ms(results: dict[str, Any], stage_index: int | None, key: str) -> float:
    """Run-to-run noise a run shows for one stage: half the range of its per-second percentile
    (``p50_ms``/``p99_ms`` of the timeline) over the stage's measured window."""
    vals = [v for row in results.get("timeline") or []
            if row.get("stage") == stage_index and row.get("phase") == "hold" and (v := _f(row.get(key))) is not None]
    return (max(vals) - min(vals)) / 2 if len(vals) >= 2 else 0.0


_QUANTILES = (("p50", 0.5), ("p90", 0.9), ("p95", 0.95), ("p99", 0.99), ("p999", 0.999), ("max", 1.0))


def _latency_at(lat: dict[str, Any], q: float) -> float | None:
    """Latency at quantile q (0.5..1) interpolated between a stage's known percentiles."""
    pts = [(qq, v) for key, qq in _QUANTILES if (v := _f(lat.get(key))) is not None]
    if not pts:
        return None
    if q <= pts[0][0]:
        return pts[0][1]
    for (q0, v0), (q1, v1) in zip(pts, pts[1:], strict=False):
        if q0 <= q <= q1:
            return v0 + (q - q0) / (q1 - q0) * (v1 - v0)
    return pts[-1][1]


def sampling_noise_ms(stage: dict[str, Any] | None, key: str) -> float:
    """How far a percentile of ``requests`` answers may move by chance alone: the latencies at
    the ranks of its 95 % confidence interval (q +- 1.96 sqrt(q(1-q)/n)), read off the stage's
    percentiles. A p99 over 40 requests is the maximum, which chance alone sets: fewer than
    MIN_TAIL answers beyond the percentile make its noise unbounded (inf)."""
    if not stage:
        return 0.0
    q = {"p50_ms": 0.5, "p99_ms": 0.99}[key]
    n = int(stage.get("requests") or 0)
    if 0 < n * (1 - q) < MIN_TAIL:
        return math.inf
    lat = stage.get("latency_ms") or {}
    mid = _latency_at(lat, q)
    if n <= 0 or mid is None:
        return 0.0
    z = 1.96 * math.sqrt(q * (1 - q) / n)
    lo, hi = _latency_at(lat, max(0.5, q - z)), _latency_at(lat, min(1.0, q + z))
    return max(mid - (lo if lo is not None else mid), (hi if hi is not None else mid) - mid)


def latency_noise_ms(b: dict[str, Any], r: dict[str, Any], rate: float, key: str) -> float:
    """Noise of a latency difference at ``rate``: the larger per-second spread of the two runs,
    or the two percentiles' sampling noise combined, whichever is larger."""
    ib, ir = _nearest_stage(curve(b), rate), _nearest_stage(curve(r), rate)
    sb = next((s for s in b.get("stages") or [] if s.get("index") == ib), None)
    sr = next((s for s in r.get("stages") or [] if s.get("index") == ir), None)
    return max(spread_ms(b, ib, key), spread_ms(r, ir, key),
               math.hypot(sampling_noise_ms(sb, key), sampling_noise_ms(sr, key)))


def rate_step(results: dict[str, Any]) -> float:
    """How precisely the run located its saturation point: the gap between the highest
    sustained stage and the lowest unsustained one above it (0 when not bracketed)."""
    sat = results.get("saturation") or {}
    best = _f(sat.get("max_sustainable_rps"))
    if best is None:
        return 0.0
    above = [p["offered_rps"] for p in curve(results) if not p["sustained"] and p["offered_rps"] > best]
    return min(above) - best if above else 0.0


def _nearest_stage(points: list[dict[str, Any]], rate: float) -> int | None:
    ok = [p for p in points if p["sustained"]]
    return min(ok, key=lambda p: abs(p["offered_rps"] - rate))["index"] if ok else None


def verdict(base: float | None, value: float | None, noise: float, higher_is_better: bool,
            tolerance: float = DEFAULT_TOLERANCE) -> dict[str, Any]:
    """A delta and its verdict: within max(noise, tolerance x baseline) is no measurable difference."""
    if base is None or value is None:
        return {"baseline": base, "value": value, "delta": None, "delta_pct": None, "noise": _r(noise),
                "verdict": "unknown"}
    delta = value - base
    margin = max(noise, tolerance * abs(base))
    if math.isinf(margin):
        return {"baseline": _r(base), "value": _r(value), "delta": _r(delta),
                "delta_pct": _r(100.0 * delta / base, 1) if base else None, "noise": None, "verdict": NO_DIFFERENCE}
    if abs(delta) <= margin:
        word = NO_DIFFERENCE
    else:
        word = "better" if (delta > 0) == higher_is_better else "worse"
    return {"baseline": _r(base), "value": _r(value), "delta": _r(delta),
            "delta_pct": _r(100.0 * delta / base, 1) if base else None, "noise": _r(margin), "verdict": word}


def peak(results: dict[str, Any]) -> dict[str, Any] | None:
    """The stage with the highest achieved rate (the figure of a closed-loop run)."""
    stages = [s for s in results.get("stages") or [] if _f(s.get("achieved_rps")) is not None]
    if not stages:
        return None
    s = max(stages, key=lambda x: x["achieved_rps"])
    lat = s.get("latency_ms") or {}
    return {"stage": s.get("index"), "users": s.get("users"), "target_rps": _f(s.get("target_rps")),
            "achieved_rps": _f(s["achieved_rps"]), "achieved_ips": _r(s["achieved_rps"] * batch_of(results)),
            "p50_ms": _f(lat.get("p50")), "p99_ms": _f(lat.get("p99")), "_stage": s}


def _closed_loop(r: dict[str, Any]) -> bool:
    return r.get("mode") not in ("stages", "auto")


def _peak_deltas(name: str, b: dict[str, Any], r: dict[str, Any]) -> list[dict[str, Any]]:
    """Closed-loop runs have no offered rate: compare their peak throughput and its latency."""
    pb, pr = peak(b), peak(r)
    if pb is None or pr is None:
        return []
    out = [{"variant": name, "metric": "peak_achieved_ips", "unit": "inferences/s",
            **verdict(pb["achieved_ips"], pr["achieved_ips"], 0.0, True)}]
    for key in ("p50_ms", "p99_ms"):
        n = math.hypot(sampling_noise_ms(pb["_stage"], key), sampling_noise_ms(pr["_stage"], key))
        d = verdict(pb[key], pr[key], n, False)
        if math.isinf(n):
            d["reason"] = f"fewer than {MIN_TAIL} answers beyond the {key[:3]} in a stage: too few to judge"
        out.append({"variant": name, "metric": f"{key[:3]}_at_peak", "unit": "ms", **d})
    return out


def variant_row(run: Run) -> dict[str, Any]:
    """The comparison's row of one variant (a failed variant: its name, status and reason)."""
    row: dict[str, Any] = {"name": run.name, "directory": run.directory, **run.extra}
    r = run.results
    if r is None:
        return {**row, "status": "failed", "reason": run.failure, "exit_code": run.exit_code}
    target, sat, gen = r.get("target") or {}, r.get("saturation") or {}, r.get("generator") or {}
    batch = batch_of(r)
    points = curve(r)
    best, rec = _f(sat.get("max_sustainable_rps")), _f(sat.get("recommended_rps"))
    stages = r.get("stages") or []
    requests = sum(int(s.get("requests") or 0) for s in stages)
    failed = sum(int(s.get("failures") or 0) + int(s.get("dropped") or 0) for s in stages)
    server = next((s.get("server") for s in stages if best is not None and _f(s.get("target_rps")) == best
                   and s.get("server")), None)
    at_rec = at_rate(points, rec) if rec is not None else None
    return {
        **row, "status": "ok", "reason": run.failure, "exit_code": run.exit_code,
        "target": {k: target.get(k) for k in ("host", "protocol", "kind", "name")},
        "batch_size": batch, "mode": r.get("mode"),
        "saturation": {
            "saturated": sat.get("saturated"), "max_sustainable_rps": best,
            "max_sustainable_ips": _r(best * batch) if best is not None else None,
            "recommended_rps": rec, "recommended_ips": _r(rec * batch) if rec is not None else None,
            "capacity_estimate_rps": _f(sat.get("capacity_estimate_rps")),
            "capacity_estimate_ips": _r(_f(sat.get("capacity_estimate_rps")) * batch)
            if _f(sat.get("capacity_estimate_rps")) is not None else None,
            "inconclusive_reason": sat.get("inconclusive_reason"),
        },
        "at_recommended": None if at_rec is None else {"rate_rps": rec, **at_rec},
        "requests": requests, "failures_and_dropped": failed,
        "error_ratio": _r(failed / (requests + sum(int(s.get("dropped") or 0) for s in stages)), 5)
        if requests else None,
        "generator_healthy": gen.get("healthy"),
        "server": server,
        "resources": r.get("resources"),
        "peak": {k: v for k, v in (peak(r) or {}).items() if not k.startswith("_")} or None,
        "curve": [{k: p[k] for k in ("offered_rps", "achieved_rps", "p50_ms", "p99_ms", "sustained")}
                  | {"achieved_ips": _r(p["achieved_rps"] * batch) if p["achieved_rps"] is not None else None}
                  for p in points],
    }


def common_rates(runs: list[Run]) -> list[dict[str, Any]]:
    """Every offered rate at which two or more variants have a (measured or interpolated) latency."""
    ok = [r for r in runs if r.results is not None]
    curves = {r.name: curve(r.results or {}) for r in ok}
    rates = sorted({round(p["offered_rps"], 6) for c in curves.values() for p in c if p["sustained"]})
    out = []
    for rate in rates:
        cells = {name: v for name, c in curves.items() if (v := at_rate(c, rate)) is not None}
        if len(cells) >= 2:
            out.append({"offered_rps": rate, "variants": cells})
    return out


def deltas(runs: list[Run], baseline: Run, rates: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each variant against the baseline: capacity (inferences/s) and latency at the highest
    offered rate both sustained, each with its noise-respecting verdict."""
    b = baseline.results or {}
    b_sat = b.get("saturation") or {}
    out = []
    for run in runs:
        if run is baseline or run.results is None:
            continue
        r = run.results
        if _closed_loop(b) or _closed_loop(r):
            out += _peak_deltas(run.name, b, r)
            continue
        sat = r.get("saturation") or {}
        noise = max(rate_step(b) * batch_of(b), rate_step(r) * batch_of(r))
        best_b, best_v = _f(b_sat.get("max_sustainable_rps")), _f(sat.get("max_sustainable_rps"))
        cap = verdict(None if best_b is None else best_b * batch_of(b),
                      None if best_v is None else best_v * batch_of(r), noise, True)
        # a run that never saturated only shows a lower bound of its capacity
        b_low, v_low = b_sat.get("saturated") is not True, sat.get("saturated") is not True
        if (cap["verdict"] == "better" and b_low) or (cap["verdict"] == "worse" and v_low):
            cap["verdict"] = "unknown"
        out.append({"variant": run.name, "metric": "max_sustainable_ips", "unit": "inferences/s",
                    "lower_bound": {"baseline": b_low, "value": v_low}, **cap})
        shared = [row for row in rates if baseline.name in row["variants"] and run.name in row["variants"]]
        if not shared:
            continue
        row = shared[-1]
        rate = row["offered_rps"]
        for key in ("p50_ms", "p99_ms"):
            n = latency_noise_ms(b, r, rate, key)
            d = verdict(row["variants"][baseline.name][key], row["variants"][run.name][key], n, False)
            if math.isinf(n):
                d["reason"] = f"fewer than {MIN_TAIL} answers beyond the {key[:3]} in a stage: too few to judge"
            out.append({"variant": run.name, "metric": f"{key[:3]}_at_{rate:g}_rps", "unit": "ms",
                        "offered_rps": rate, "interpolated": row["variants"][baseline.name]["interpolated"]
                        or row["variants"][run.name]["interpolated"], **d})
    return out


def pipeline_steps(runs: list[Run]) -> dict[str, Any] | None:
    """Per-step latencies of pipeline runs side by side (None when no run has steps)."""
    table: dict[str, dict[str, Any]] = {}
    names: list[str] = []
    for run in runs:
        steps = ((run.results or {}).get("pipeline") or {}).get("steps") or []
        for st in steps:
            n = str(st.get("name"))
            if n not in names:
                names.append(n)
            lat = st.get("latency_ms") or {}
            table.setdefault(run.name, {})[n] = {"mean_ms": _f(lat.get("mean")), "p50_ms": _f(lat.get("p50")),
                                                 "p99_ms": _f(lat.get("p99")),
                                                 "on_critical_path": st.get("on_critical_path")}
    return {"steps": names, "variants": table} if table else None


def check_compatible(runs: Sequence[Run], allow_different_targets: bool) -> None:
    """Different models or pipelines are different experiments unless the user says otherwise."""
    targets = {(str((r.results or {}).get("target", {}).get("kind")), str((r.results or {}).get("target", {}).get("name")))
               for r in runs if r.results is not None}
    if len(targets) > 1 and not allow_different_targets:
        shown = ", ".join(f"{k} {n}" for k, n in sorted(targets))
        raise ConfigError(f"the runs test different targets ({shown}); pass --allow-different-targets to compare them")


def compare(runs: list[Run], baseline: str | None = None, allow_different_targets: bool = False) -> dict[str, Any]:
    """The comparison.json dict of ``runs`` (the first is the baseline unless named)."""
    if len(runs) < 2:
        raise ConfigError("compare needs two or more results directories")
    check_compatible(runs, allow_different_targets)
    names = [r.name for r in runs]
    if baseline is None:
        base = next((r for r in runs if r.results is not None), None)
    else:
        base = next((r for r in runs if r.name == baseline), None)
        if base is None:
            raise ConfigError(f"--baseline {baseline}: not one of {', '.join(names)}")
        if base.results is None:
            raise ConfigError(f"--baseline {baseline}: that variant failed and has no results")
    rates = common_rates(runs)
    t = ((base.results or {}).get("target") or {}) if base else {}
    notes = []
    if base is None:
        notes.append("no variant produced results")
    return {
        "schema": SCHEMA,
        "tool": {"name": "seldon-load", "version": __version__},
        "created": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "baseline": base.name if base else None,
        "target": {"kind": t.get("kind"), "name": t.get("name")},
        "tolerance": DEFAULT_TOLERANCE,
        "variants": [variant_row(r) for r in runs],
        "common_rates": rates,
        "deltas": deltas(runs, base, rates) if base else [],
        "pipeline_steps": pipeline_steps(runs),
        "notes": notes,
    }
