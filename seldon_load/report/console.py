"""Plain-ASCII summary for the end of a headless run, and the verdict shared with the HTML report.

The verdict lives here so the terminal and the report never disagree. One rule matters most:
a run in which the load generator fell behind says so first and is never presented as a
saturated server.
"""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass, field
from typing import Any

from seldon_load.report.resources import console_lines as console_resource_lines
from seldon_load.report.svg import as_float, fmt_num


def section(r: Any, key: str) -> dict[str, Any]:
    """A dict-valued field of results, or {} when absent, None or malformed."""
    v = r.get(key) if isinstance(r, dict) else None
    return v if isinstance(v, dict) else {}


def items(r: Any, key: str) -> list[dict[str, Any]]:
    """A list-of-dicts field of results (stages, timeline, errors ...), skipping malformed entries."""
    v = r.get(key) if isinstance(r, dict) else None
    return [x for x in v if isinstance(x, dict)] if isinstance(v, list) else []


def as_int(v: object) -> int | None:
    x = as_float(v)
    return int(x) if x is not None and x.is_integer() else None


def offered(stage: dict[str, Any]) -> float | None:
    """The rate a stage asked for: measured offered rate, else its target."""
    x = as_float(stage.get("offered_rps"))
    return x if x is not None else as_float(stage.get("target_rps"))


def reasons(stage: dict[str, Any]) -> list[str]:
    v = stage.get("reasons")
    return [str(x) for x in v] if isinstance(v, list) else ([str(v)] if v else [])


def target_label(r: dict[str, Any]) -> str:
    t = section(r, "target")
    kind = t.get("kind") or "model"
    return f"{kind} {t.get('name') or '?'}"


@dataclass
class Verdict:
    level: str  # "fault" | "generator" | "warn" | "saturated" | "ok" | "info"
    headline: str
    details: list[str] = field(default_factory=list)


def _generator_limited(r: dict[str, Any], first: int | None, saturated: bool) -> list[str] | None:
    """Stages where the generator fell behind, or None when that did not spoil the verdict.

    It does not when the server already failed a lower rate with a healthy generator (the
    analyzer's rule); without per-stage health, an unhealthy generator spoils everything.
    """
    stages = items(r, "stages")
    bad = [s for s in stages if s.get("generator_healthy") is False]
    names = [fmt_num(s.get("index"), "?") for s in bad]
    fs = next((s for s in stages if first is not None and as_int(s.get("index")) == first), None)
    if saturated and fs is not None and any("generator_healthy" in s for s in stages):
        lim = offered(fs)

        def at_or_below(s: dict[str, Any]) -> bool:
            x = offered(s)
            return x <= lim if x is not None and lim is not None else (as_int(s.get("index")) or 0) <= (first or 0)

        return names if any(at_or_below(s) for s in bad) else None
    if bad or section(r, "generator").get("healthy") is False:
        return names
    return None


def _ips(r: dict[str, Any], rps: float | None) -> str:
    """' = N inferences/s at batch B' after a rate in requests/s, when a request carries a batch."""
    batch = as_int(section(r, "target").get("batch_size"))
    if rps is None or batch is None or batch <= 1:
        return ""
    return f" = {fmt_num(rps * batch)} inferences/s at batch {batch}"


def verdict(r: dict[str, Any]) -> Verdict:
    sat, gen, stages = section(r, "saturation"), section(r, "generator"), items(r, "stages")
    first, saturated = as_int(sat.get("first_unsustained_stage")), sat.get("saturated") is True
    max_ok = as_float(sat.get("max_sustainable_rps"))
    warnings = [str(w) for w in gen.get("warnings") or [] if w] if isinstance(gen.get("warnings"), list) else []
    fault = _target_fault(r, sat)
    if fault is not None:
        return fault
    bad = _generator_limited(r, first, saturated)
    if bad is not None:
        v = Verdict("generator", "LOAD GENERATOR SATURATED: results are limited by the load generator, "
                                 "not the server")
        if bad:
            v.details.append("Generator overloaded in stage(s) " + ", ".join(bad)
                             + "; the server's saturation point is not known from this run.")
        ok = [as_float(s.get("achieved_rps")) for s in stages
              if s.get("sustained") is True and s.get("generator_healthy") is not False]
        best = max([x for x in ok if x is not None], default=None)
        if best is not None:
            v.details.append(f"The server sustained at least {fmt_num(best)} rps.")
        if gen.get("cpu_percent_max") is not None or gen.get("send_lag_p99_ms_max") is not None:
            v.details.append(f"Generator CPU max {fmt_num(gen.get('cpu_percent_max'))} %, send lag p99 max "
                             f"{fmt_num(gen.get('send_lag_p99_ms_max'))} ms.")
        v.details.append("Add generator capacity (--workers N, more machines) and run again.")
        v.details += warnings
        v.details += _notes(r)
        return v
    if sat.get("inconclusive_reason"):
        v = Verdict("warn", f"Inconclusive: {sat['inconclusive_reason']}")
        if max_ok is not None:
            v.details.append(f"Highest sustained rate: {fmt_num(max_ok)} rps.")
    elif saturated:
        v = Verdict("saturated", f"Saturation point: {fmt_num(max_ok)} rps" + _ips(r, max_ok) if max_ok is not None
                    else "Saturated at the first stage: no stage was sustained")
        frac = as_float(section(sat, "criteria").get("recommended_fraction"))
        pct = f" ({fmt_num(frac * 100)} % of the saturation point)" if frac is not None else ""
        if sat.get("recommended_rps") is not None:
            v.details.append(f"Recommended rate per replica: {fmt_num(sat.get('recommended_rps'))} rps"
                             f"{_ips(r, as_float(sat.get('recommended_rps')))}{pct}.")
        if sat.get("capacity_estimate_rps") is not None:
            v.details.append(f"Capacity estimate: {fmt_num(sat.get('capacity_estimate_rps'))} rps.")
        fs = next((s for s in stages if as_int(s.get("index")) == first), None)
        if first is not None:
            why = "; ".join(reasons(fs)) if fs else ""
            at = f" at {fmt_num(offered(fs))} rps" if fs and offered(fs) is not None else ""
            v.details.append(f"First unsustained stage: {first}{at}" + (f": {why}" if why else "."))
    elif stages and sat:
        top = as_float(sat.get("max_tested_rps"))
        top = top if top is not None else max([x for x in map(offered, stages) if x is not None], default=None)
        v = Verdict("ok", f"Not saturated up to {fmt_num(top)} rps" if top is not None else "Not saturated")
        v.details.append("Every stage was sustained; raise --max-rps or add stages to find the saturation point.")
    elif stages:
        rates = [(as_float(s.get("achieved_rps")), s) for s in stages]
        best = max((x for x, _ in rates if x is not None), default=None)
        v = Verdict("info", "No saturation analysis in these results")
        if best is not None:
            v.details.append(f"Highest achieved throughput: {fmt_num(best)} rps.")
    else:
        v = Verdict("info", "No stage results")
    v.details += [f"Generator warning: {w}" for w in warnings]
    v.details += _notes(r)
    return v


def _target_fault(r: dict[str, Any], sat: dict[str, Any]) -> Verdict | None:
    """The target failed for reasons other than load and no stage was sustained (or every
    request failed): that is the verdict, not a saturation point or a generator alarm."""
    reason = r.get("reason") if r.get("passed") is False else None
    tf = section(sat, "target_fault")
    if not tf or not (reason or not any(s.get("sustained") is True for s in items(r, "stages"))):
        return None
    why = str(sat.get("inconclusive_reason") or reason or tf.get("kind"))
    v = Verdict("fault", f"TARGET FAULT: {why.removeprefix('target fault: ')}")
    v.details.append("The target failed for reasons other than load (down, refusing, misconfigured, or an error "
                     "at every rate): this run measured no capacity. Fix the target and run again.")
    v.details += _notes(r)
    return v


def _notes(r: dict[str, Any]) -> list[str]:
    notes = r.get("notes")
    return [f"Note: {n}" for n in notes if n] if isinstance(notes, list) else []


def _ascii(s: str) -> str:
    """Terminal-safe: no control characters (ANSI escapes from a hostile name), ASCII only."""
    s = s.replace("–", "-").replace("…", "...")
    return re.sub(r"[\x00-\x1f\x7f]", " ", s).encode("ascii", "replace").decode("ascii")


def _fit(line: str, width: int) -> str:
    line = _ascii(line).rstrip()
    return line if len(line) <= width else line[: max(width - 3, 1)] + "..."


def _stage_rows(stages: list[dict[str, Any]], width: int) -> list[str]:
    users = any(s.get("users") is not None for s in stages)
    cols = [("stage", 5), *([("users", 6)] if users else []), ("target/s", 8), ("achieved/s", 10),
            ("p50 ms", 8), ("p99 ms", 8), ("failures", 8), ("dropped", 7), ("sustained", 9)]
    rows = ["  ".join(name.rjust(w) for name, w in cols)]
    for s in stages:
        sus = ("FAULT" if s.get("fault") else "yes" if s.get("sustained") is True
               else "NO" if s.get("sustained") is False else "-")
        lat = section(s, "latency_ms")
        vals = [s.get("index"), *([s.get("users")] if users else []), s.get("target_rps"), s.get("achieved_rps"),
                lat.get("p50"), lat.get("p99"), s.get("failures"), s.get("dropped")]
        cells = [fmt_num(v, "-").rjust(w) for v, (_, w) in zip(vals, cols, strict=False)] + [sus.rjust(9)]
        row = "  ".join(cells)
        why = _ascii("; ".join(reasons(s))) if s.get("sustained") is False else ""
        room = width - len(row) - 2
        if why and room >= 12:  # the reasons are cut, never the columns
            row += "  " + (why if len(why) <= room else why[: room - 3] + "...")
        rows.append(row)
    return rows


def _pipeline_lines(p: dict[str, Any]) -> list[str]:
    path = p.get("critical_path") if isinstance(p.get("critical_path"), list) else []
    return [f"Pipeline {p.get('name') or ''}".rstrip() + ": critical path " + (" -> ".join(map(str, path)) or "-"),
            f"  latency: critical path {fmt_num(p.get('critical_path_latency_ms'), '-')} ms, end-to-end "
            f"{fmt_num(p.get('end_to_end_latency_ms'), '-')} ms, overhead {fmt_num(p.get('overhead_ms'), '-')} ms",
            f"  bottleneck {p.get('bottleneck') or '-'}; capacity predicted "
            f"{fmt_num(p.get('predicted_capacity_rps'), '-')} rps, measured "
            f"{fmt_num(p.get('measured_capacity_rps'), '-')} rps"]


def _threshold_lines(r: dict[str, Any]) -> list[str]:
    ths = items(r, "thresholds")
    failed = [t for t in ths if t.get("passed") is False]
    if not ths:
        return []
    if not failed:
        return [f"Thresholds: all {len(ths)} passed"]
    return [f"Threshold FAILED: {t.get('name')} = {fmt_num(t.get('value'), '-')} "
            f"(limit {fmt_num(t.get('limit'), '-')})" for t in failed]


def summary_text(results: dict[str, Any], width: int = 100) -> str:
    """Stage table and verdict lines, ASCII, each line at most ``width`` characters."""
    r = results if isinstance(results, dict) else {}
    t = section(r, "target")
    head = (f"seldon-load: {target_label(r)} at {t.get('host') or '?'} ({t.get('protocol') or '?'}), "
            f"mode {r.get('mode') or '?'}, workers {fmt_num(r.get('workers'), '-')}")
    lines = [head]
    stages = items(r, "stages")
    if stages:
        lines += _stage_rows(stages, width)
    v = verdict(r)
    head = ("!! " if v.level in ("generator", "fault") else "") + v.headline
    lines += textwrap.wrap(_ascii(head), max(width, 20), subsequent_indent="    ")  # the verdict is never cut
    for d in v.details:  # wrapped, not cut: these lines are the point of the summary
        lines += textwrap.wrap(_ascii(d), max(width, 20), initial_indent="  ", subsequent_indent="    ")
    p = section(r, "pipeline")
    if p:
        lines += _pipeline_lines(p)
    lines += console_resource_lines(r)
    lines += _threshold_lines(r)
    if r.get("passed") is False and r.get("reason") and not r["reason"].startswith("threshold"):
        lines.append(f"FAILED: {r['reason']}")
    return "\n".join(_fit(x, width) for x in lines) + "\n"
