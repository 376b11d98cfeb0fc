"""One self-contained HTML report (inline CSS and SVG, no scripts, no network) from a results dict.

Works offline on any results.json, old or partial: every field may be absent. Every string taken
from results goes through ``html.escape`` (``_e``) or the SVG helpers, which escape too.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable
from html import escape
from itertools import pairwise
from pathlib import Path
from typing import Any

from seldon_load.report.console import as_int, items, offered, reasons, section, target_label, verdict
from seldon_load.report.resources import html_section as resources_html
from seldon_load.report.svg import DOTS, PALETTE, Chart, DagNode, as_float, dag_svg, fmt_num

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;margin:24px auto;
 max-width:1180px;padding:0 16px;color:#222}
h1{font-size:22px;margin:0 0 6px}h2{font-size:18px;margin:30px 0 10px;border-bottom:1px solid #ddd;padding-bottom:4px}
.meta span{margin-right:18px;color:#555}.meta b{color:#222}
.verdict{border-radius:6px;padding:12px 18px;margin:18px 0;border:2px solid}
.verdict .head{font-size:20px;font-weight:700}.verdict ul{margin:6px 0 0;padding-left:20px}
.v-saturated{background:#fff6e8;border-color:#f0a030}.v-ok{background:#edf8ed;border-color:#4caf50}
.v-warn{background:#fffbe3;border-color:#d4b400}.v-info{background:#eef3fb;border-color:#8aa4d6}
.v-generator{background:#fdecea;border-color:#c62828;border-width:4px;color:#7f0000}
.v-generator .head{font-size:24px}
.v-fault{background:#fdecea;border-color:#c62828;border-width:4px;color:#7f0000}
table{border-collapse:collapse;font-size:12.5px;margin:6px 0}
th,td{border:1px solid #ddd;padding:3px 7px;text-align:right;vertical-align:top}
th{background:#f4f5f7;font-weight:600}th[colspan]{text-align:center}td{white-space:nowrap}.l{text-align:left;white-space:normal}
.note{font-style:italic;color:#7f0000}tr.bad td{background:#fdecea}
.scroll{overflow-x:auto}.muted{color:#888}.pass{color:#2e7d32;font-weight:700}.fail{color:#c62828;font-weight:700}
code{font-size:12px;background:#f6f6f6;padding:1px 4px;word-break:break-all}
figure{margin:8px 0 18px}svg{max-width:100%;height:auto}
svg text{font:11px system-ui,sans-serif;fill:#333}svg .title{font-size:13px;font-weight:600}
svg .axis{font-size:12px}svg .grid{stroke:#eee}svg .frame{fill:none;stroke:#999}
svg .band{fill:#4a90d9;fill-opacity:.09}svg .bandlabel{fill:#4a6fa5;font-size:10px}svg .muted{fill:#999}
.dag .node rect{fill:#f7f9fc;stroke:#8aa4d6;stroke-width:1.5}
.dag .node.hot rect{fill:#fff1e6;stroke:#e6550d;stroke-width:3}
.dag .node.alert rect{fill:#fdecea;stroke:#c62828;stroke-width:3}.dag .node .name{font-weight:700;font-size:12px}
.dag .edge{fill:none;stroke:#888;stroke-width:1.5}.dag .edge.hot{stroke:#e6550d;stroke-width:3}
"""


def _e(v: Any) -> str:
    return escape(str(v))


def _cell(v: Any) -> str:
    """A table value: numbers formatted, bools as yes/NO, strings escaped, None as a dash."""
    if isinstance(v, bool):
        return "yes" if v else '<span class="fail">NO</span>'
    if v is None or isinstance(v, numbers.Real):
        return fmt_num(v)
    return _e(v)


def _head(headers: list[str], left: frozenset[int]) -> str:
    """One header row, or two when headers are "group|sub" (groups span their columns)."""
    def th(i: int, text: str, extra: str = "") -> str:
        cls = ' class="l"' if i in left else ""
        return f"<th{extra}{cls}>{_e(text)}</th>"

    if not any("|" in h for h in headers):
        return "<tr>" + "".join(th(i, h) for i, h in enumerate(headers)) + "</tr>"
    top, sub, i = [], [], 0
    while i < len(headers):
        group = headers[i].split("|")[0] if "|" in headers[i] else None
        if group is None:
            top.append(th(i, headers[i], ' rowspan="2"'))
            i += 1
            continue
        n = next((j for j in range(i, len(headers)) if not headers[j].startswith(group + "|")), len(headers)) - i
        top.append(f'<th colspan="{n}">{_e(group)}</th>')
        sub += [th(j, headers[j].split("|", 1)[1]) for j in range(i, i + n)]
        i += n
    return f"<tr>{''.join(top)}</tr><tr>{''.join(sub)}</tr>"


def _table(headers: list[str], rows: list[list[Any]], left: frozenset[int] = frozenset(),
           bad: list[bool] | None = None, notes: list[str] | None = None) -> str:
    """A table; ``bad`` rows are highlighted, ``notes`` become a full-width line under their row."""
    def tr(j: int, row: list[Any]) -> str:
        cls = ' class="bad"' if bad and bad[j] else ""
        cells = "".join(f'<td class="l">{_cell(v)}</td>' if i in left else f"<td>{_cell(v)}</td>"
                        for i, v in enumerate(row))
        note = notes[j] if notes else ""
        extra = f'<tr{cls}><td class="l note" colspan="{len(row)}">{_e(note)}</td></tr>' if note else ""
        return f"<tr{cls}>{cells}</tr>{extra}"

    body = "".join(tr(j, row) for j, row in enumerate(rows))
    head = f"<thead>{_head(headers, left)}</thead>" if any(headers) else ""
    return f'<div class="scroll"><table>{head}<tbody>{body}</tbody></table></div>'


def _yes_no(v: Any) -> str | None:
    return "yes" if v is True else "no" if v is False else None


def _figure(svg: str) -> str:
    return f"<figure>{svg}</figure>"


def _header(r: dict[str, Any]) -> str:
    t, tool = section(r, "target"), section(r, "tool")
    passed = r.get("passed")
    verdict_th = ("" if passed is None else
                  f'<span>thresholds <b class="{"pass" if passed else "fail"}">{"passed" if passed else "FAILED"}'
                  "</b></span>")
    meta = [("host", t.get("host")), ("protocol", t.get("protocol")), (t.get("kind") or "target", t.get("name")),
            ("mode", r.get("mode")), ("workers", r.get("workers")), ("created", r.get("created"))]
    spans = "".join(f"<span>{_e(k)} <b>{_cell(v)}</b></span>" for k, v in meta)
    ver = f" {tool.get('version')}" if tool.get("version") else ""
    return (f"<h1>seldon-load report: {_e(target_label(r))}</h1>"
            f'<div class="meta">{spans}{verdict_th}<span class="muted">{_e(tool.get("name") or "seldon-load")}'
            f"{_e(ver)}</span></div>")


def _verdict(r: dict[str, Any]) -> str:
    v = verdict(r)
    details = "".join(f"<li>{_e(d)}</li>" for d in v.details)
    return (f'<div class="verdict v-{_e(v.level)}"><div class="head">{_e(v.headline)}</div>'
            + (f"<ul>{details}</ul>" if details else "") + "</div>")


def _x_of(stages: list[dict[str, Any]]) -> tuple[str, Callable[[dict[str, Any]], float | None]] | None:
    """What to put on a per-stage x axis: offered rate, else users, else nothing."""
    if any(offered(s) is not None for s in stages):
        return "offered rate (req/s)", offered
    if any(as_float(s.get("users")) is not None for s in stages):
        return "users (closed loop)", lambda s: as_float(s.get("users"))
    return None


def _log_scale(values: list[float | None]) -> bool:
    pos = [v for v in values if v is not None and v > 0]
    return bool(pos) and max(pos) / min(pos) > 30


def _stage_charts(r: dict[str, Any], level: str) -> str:
    """Per-stage charts; saturation marks only when the verdict is a saturated server."""
    stages, sat = items(r, "stages"), section(r, "saturation")
    xsel = _x_of(stages)
    if not stages or xsel is None:
        return ""
    x_label, xf = xsel
    rows = sorted(((x, s) for s in stages if (x := xf(s)) is not None), key=lambda p: p[0])
    is_rate = x_label.startswith("offered")
    a = Chart("Achieved vs offered rate per stage", x_label, "achieved rate (req/s)", diagonal=is_rate)
    a.add("achieved", [(x, as_float(s.get("achieved_rps"))) for x, s in rows], PALETTE[0])
    bad = [(x, as_float(s.get("achieved_rps"))) for x, s in rows if s.get("sustained") is False]
    if bad:
        a.add("unsustained stage", bad, PALETTE[3], line=False)
    max_ok, rec = as_float(sat.get("max_sustainable_rps")), as_float(sat.get("recommended_rps"))
    server_verdict = level == "saturated"
    if is_rate and server_verdict:
        if max_ok is not None:
            a.vline(max_ok, f"saturation point {fmt_num(max_ok)} rps")
        if rec is not None:
            a.vline(rec, f"recommended {fmt_num(rec)} rps", PALETTE[2], DOTS)
    cap = as_float(sat.get("capacity_estimate_rps"))
    if cap is not None and level != "generator":
        a.hline(cap, f"capacity estimate {fmt_num(cap)} rps")
    lat = {k: [(x, as_float(section(s, "latency_ms").get(k))) for x, s in rows] for k in ("p50", "p90", "p99")}
    b = Chart("Latency (from intended send time) vs offered rate", x_label, "latency (ms)",
              y_log=_log_scale([y for pts in lat.values() for _, y in pts]))
    for k, color in zip(lat, (PALETTE[0], PALETTE[1], PALETTE[3]), strict=True):
        b.add(k, lat[k], color)
    slo = as_float(section(sat, "criteria").get("slo_p99_ms"))
    if slo is not None:
        b.hline(slo, f"SLO p99 {fmt_num(slo)} ms", PALETTE[3])
    if is_rate and server_verdict and max_ok is not None:
        b.vline(max_ok, f"saturation point {fmt_num(max_ok)} rps")
    return _figure(a.render()) + _figure(b.render())


def _bands(r: dict[str, Any]) -> list[tuple[float, float, str]]:
    """Measured windows of stages; else the span of each stage's 'hold' buckets in the timeline."""
    out = []
    for s in items(r, "stages"):
        s0, s1 = as_float(s.get("start_s")), as_float(s.get("end_s"))
        if s0 is not None and s1 is not None:
            out.append((s0, s1, f"S{fmt_num(s.get('index'))}"))
    if out:
        return out
    holds: dict[Any, list[float]] = {}
    for b in items(r, "timeline"):
        t = as_float(b.get("t_s"))
        if b.get("phase") == "hold" and t is not None:
            holds.setdefault(b.get("stage"), []).append(t)
    return [(min(ts), max(ts), f"S{fmt_num(k)}") for k, ts in holds.items()]


def _timeline_charts(r: dict[str, Any]) -> str:
    tl = sorted(((t, b) for b in items(r, "timeline") if (t := as_float(b.get("t_s"))) is not None),
                key=lambda p: p[0])
    if not tl:
        return ""
    gaps = sorted(b - a for (a, _), (b, _) in pairwise(tl) if b > a)
    bucket_s = gaps[len(gaps) // 2] if gaps else 1.0
    bands = _bands(r)

    def pts(key: str, scale: float = 1.0) -> list[tuple[float, float | None]]:
        return [(t, None if (v := as_float(b.get(key))) is None else v * scale) for t, b in tl]

    thr = Chart("Throughput over time (shaded: measured window of each stage)", "time (s)", "req/s")
    thr.add("offered", pts("offered_rps"), "#7f7f7f", dash="6 3", markers=False)
    thr.add("achieved", pts("achieved_rps"), PALETTE[0], markers=False)
    for key, color in (("failures", PALETTE[3]), ("dropped", PALETTE[4])):
        p = pts(key, 1 / bucket_s)
        if any(y for _, y in p):
            thr.add(f"{key}/s", p, color, markers=False)
    series = {k: pts(k) for k in ("p50_ms", "p99_ms", "lag_p99_ms")}
    lat = Chart("Latency over time", "time (s)", "latency (ms)",
                y_log=_log_scale([y for p in series.values() for _, y in p]))
    lat.add("p50", series["p50_ms"], PALETTE[0], markers=False)
    lat.add("p99", series["p99_ms"], PALETTE[3], markers=False)
    if any(y for _, y in series["lag_p99_ms"]):
        lat.add("send lag p99", series["lag_p99_ms"], PALETTE[4], dash=DOTS, markers=False)
    for c in (thr, lat):
        for b0, b1, label in bands:
            c.band(b0, b1, label)
    return _figure(thr.render()) + _figure(lat.render())


def _kinds(s: dict[str, Any]) -> str:
    kinds = section(s, "failures_by_kind")
    return ", ".join(f"{k}: {fmt_num(n)}" for k, n in kinds.items() if n)


def _fault(s: dict[str, Any]) -> str:
    f = section(s, "fault")
    return f"{f.get('kind')} × {fmt_num(f.get('count'))}" if f else ""


def _stage_table(r: dict[str, Any]) -> str:
    stages = items(r, "stages")
    if not stages:
        return "<p class='muted'>No stages in these results.</p>"
    users = any(s.get("users") is not None for s in stages)
    ips = (as_int(section(r, "target").get("batch_size")) or 1) > 1  # a request carries a batch: inferences/s too
    pct = ("mean", "p50", "p90", "p95", "p99", "p999", "max")
    lat_g = "latency ms (from intended send time)"
    headers = ["stage", "target rps", *(["users"] if users else []), "window s", "rate rps|offered",
               "rate rps|achieved", *(["rate rps|achieved inferences/s"] if ips else []), "count|scheduled", "count|requests", "count|ok", "count|failures",
               "count|failures by kind", "count|dropped", *(f"{lat_g}|{p.replace('p999', 'p99.9')}" for p in pct),
               "service ms|p50", "service ms|p99", "send lag ms|p50", "send lag ms|p99", "send lag ms|max",
               "generator|cpu max %", "generator|ok", "latency trend|ratio", "latency trend|Δ ms", "sustained", "target fault"]
    rows, notes = [], []
    for s in stages:
        lat, svc, lag = section(s, "latency_ms"), section(s, "service_ms"), section(s, "send_lag_ms")
        win = f"{fmt_num(s.get('start_s'))}–{fmt_num(s.get('end_s'))}"
        rows.append([s.get("index"), s.get("target_rps"), *([s.get("users")] if users else []), win,
                     s.get("offered_rps"), s.get("achieved_rps"), *([s.get("achieved_ips")] if ips else []),
                     s.get("scheduled"), s.get("requests"),
                     s.get("ok"), s.get("failures"), _kinds(s), s.get("dropped"), *(lat.get(p) for p in pct),
                     svc.get("p50"), svc.get("p99"), lag.get("p50"), lag.get("p99"), lag.get("max"),
                     s.get("cpu_percent_max"), s.get("generator_healthy"), s.get("latency_trend"),
                     s.get("latency_trend_delta_ms"), s.get("sustained"), _fault(s)])
        why = reasons(s)
        notes.append(f"stage {fmt_num(s.get('index'))} reasons: " + "; ".join(why) if why else "")
    return _table(headers, rows, frozenset(), [s.get("sustained") is False for s in stages], notes)


def _errors(r: dict[str, Any]) -> str:
    errs = items(r, "errors")
    if not errs:
        return "<p class='muted'>No errors recorded.</p>"
    rows = []
    for e in errs:
        ex = e.get("examples") if isinstance(e.get("examples"), list) else []
        rows.append([e.get("kind"), e.get("count"), ex])
    body = "".join(f'<tr><td class="l"><code>{_e(k)}</code></td><td>{fmt_num(n)}</td><td class="l">'
                   + "<br>".join(f"<code>{_e(str(x)[:500])}</code>" for x in ex[:5]) + "</td></tr>"
                   for k, n, ex in rows)
    return ('<div class="scroll"><table><thead><tr><th class="l">kind</th><th>count</th>'
            f'<th class="l">examples</th></tr></thead><tbody>{body}</tbody></table></div>')


def _thresholds(r: dict[str, Any]) -> str:
    ths = items(r, "thresholds")
    if not ths:
        return "<p class='muted'>No thresholds set.</p>"
    rows = [[t.get("name"), t.get("limit"), t.get("value"),
             "PASS" if t.get("passed") is True else "FAIL" if t.get("passed") is False else None,
             t.get("detail")] for t in ths]
    return _table(["threshold", "limit", "value", "result", "detail"], rows, frozenset({0, 4}),
                  [t.get("passed") is False for t in ths])


def _generator(r: dict[str, Any]) -> str:
    g = section(r, "generator")
    wt = [(as_float(w.get("t_s")), w.get("workers")) for w in items(r, "workers_timeline")]
    rows = [["workers", r.get("workers")], ["healthy", g.get("healthy")],
            ["CPU max %", g.get("cpu_percent_max")], ["send lag p99 max ms", g.get("send_lag_p99_ms_max")],
            ["CPU steal max % (the hypervisor's)", g.get("steal_percent_max")]]
    if len({n for _, n in wt if isinstance(n, (int, float))}) > 1:
        rows.append(["workers over time", "; ".join(f"t={fmt_num(t)} s: {fmt_num(n)}" for t, n in wt)])
    warns = g.get("warnings") if isinstance(g.get("warnings"), list) else []
    rows += [["warning", w] for w in warns]
    return _table(["", ""], rows, frozenset({0, 1}), [k == "warning" or v is False for k, v in rows])


def _breakdown_svg(p: dict[str, Any], mean_of: dict[str, float | None]) -> str:
    """One stacked bar: critical-path step latencies, then overhead, against end-to-end latency."""
    path = [str(n) for n in p.get("critical_path") or []] if isinstance(p.get("critical_path"), list) else []
    segs = [(n, mean_of.get(n)) for n in path]
    segs = [(n, v) for n, v in segs if v is not None and v > 0]
    over = as_float(p.get("overhead_ms"))
    if over is not None and over > 0:
        segs.append(("overhead", over))
    total = max(sum(v for _, v in segs), as_float(p.get("end_to_end_latency_ms")) or 0.0)
    if not segs or total <= 0:
        return ""
    w, x, out, lx = 780, 10.0, [], 10
    for i, (name, v) in enumerate(segs):
        sw = v / total * w
        color = "#bbbbbb" if name == "overhead" and i == len(segs) - 1 else PALETTE[i % len(PALETTE)]
        label = f"{name} {fmt_num(v)} ms"
        out.append(f'<rect x="{x:.1f}" y="22" width="{sw:.1f}" height="26" fill="{color}"><title>{_e(label)}'
                   f'</title></rect><rect x="{lx}" y="58" width="10" height="10" fill="{color}"/>'
                   f'<text x="{lx + 14}" y="67">{_e(label)}</text>')
        x, lx = x + sw, lx + 30 + int(6.5 * len(label))
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="800" height="76" viewBox="0 0 800 76">'
            f'<text x="10" y="14" class="title">Latency breakdown: critical path steps + overhead = '
            f'{fmt_num(total)} ms end-to-end</text>{"".join(out)}</svg>')


def _pipeline(r: dict[str, Any]) -> str:
    p = section(r, "pipeline")
    if not p:
        return ""
    steps = items(p, "steps")
    path = [str(n) for n in p.get("critical_path") or []] if isinstance(p.get("critical_path"), list) else []
    bott = p.get("bottleneck")
    mean_of = {str(s.get("name")): as_float(section(s, "latency_ms").get("mean")) for s in steps}
    deps = {str(s.get("name")): [str(d) for d in s.get("depends_on") or []]
            if isinstance(s.get("depends_on"), list) else [] for s in steps}
    nodes = []
    for s in steps:
        name = str(s.get("name"))
        cap = as_float(s.get("capacity_rps"))
        lines = [name, f"mean {fmt_num(mean_of.get(name))} ms",
                 f"capacity {fmt_num(cap)} rps" if cap is not None else f"calls {fmt_num(s.get('calls'))}"]
        nodes.append(DagNode(name, lines, f"{name} (model {s.get('model')})",
                             hot=s.get("on_critical_path") is True or name in path, alert=name == bott))
    hot_edges = set(pairwise(path))
    summary = [["critical path", " → ".join(path) or None], ["critical path latency ms",
               p.get("critical_path_latency_ms")], ["end-to-end latency ms", p.get("end_to_end_latency_ms")],
               ["overhead ms", p.get("overhead_ms")], ["overhead per stage ms", p.get("overhead_per_stage_ms")],
               ["bottleneck", bott], ["predicted capacity rps", p.get("predicted_capacity_rps")],
               ["measured capacity rps", p.get("measured_capacity_rps")]]
    step_rows = [[s.get("name"), s.get("model"), ", ".join(map(str, deps[str(s.get("name"))])) or None,
                  s.get("calls"), section(s, "latency_ms").get("mean"), section(s, "latency_ms").get("p99"),
                  s.get("capacity_rps"), _yes_no(s.get("on_critical_path")),
                  "bottleneck" if str(s.get("name")) == bott else None] for s in steps]
    out = [f"<h2>Pipeline {_e(p.get('name') or '')}</h2>",
           _table(["", ""], summary, frozenset({0, 1})), _figure(_breakdown_svg(p, mean_of))]
    if nodes:
        out.append(_figure(dag_svg(nodes, deps, hot_edges))
                   + '<p class="muted">Orange: critical path. Red: bottleneck. Columns: distance from the '
                     "pipeline inputs.</p>")
        out.append(_table(["step", "model", "depends on", "calls", "mean ms", "p99 ms", "capacity rps",
                           "on critical path", ""], step_rows, frozenset({0, 1, 2, 8})))
    out.append(_per_stage(p, [str(s.get("name")) for s in steps]))
    return "".join(out)


def _per_stage(p: dict[str, Any], names: list[str]) -> str:
    ps = items(p, "per_stage")
    if not ps:
        return ""
    for row in ps:
        names += [n for n in section(row, "steps") if n not in names]
    rows = [[row.get("stage"), row.get("end_to_end_latency_ms"), row.get("critical_path_latency_ms"),
             row.get("overhead_ms"), *(section(section(row, "steps"), n).get("mean_ms") for n in names),
             " → ".join(map(str, row.get("critical_path") or [])) if isinstance(row.get("critical_path"), list)
             else None] for row in ps]
    headers = ["stage", "end-to-end ms", "critical path ms", "overhead ms", *(f"{n} ms" for n in names),
               "critical path"]
    return "<h3>Per stage</h3>" + _table(headers, rows, frozenset({len(headers) - 1}))


def render_html(results: dict[str, Any]) -> str:
    """The whole report as one HTML string."""
    r = results if isinstance(results, dict) else {}
    v = verdict(r)
    tool = section(r, "tool")
    parts = [_header(r), _verdict(r), "<h2>Stages</h2>", _stage_charts(r, v.level),
             _timeline_charts(r), _stage_table(r), resources_html(r), _pipeline(r), "<h2>Errors</h2>", _errors(r),
             "<h2>Thresholds</h2>", _thresholds(r), "<h2>Load generator</h2>", _generator(r)]
    foot = (f'<p class="muted">Generated by {_e(tool.get("name") or "seldon-load")} '
            f'{_e(tool.get("version") or "")} from results.json; rebuild with <code>seldon-load report DIR'
            "</code>. Latencies are measured from each request's intended send time.</p>")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>seldon-load report: {_e(target_label(r))}</title><style>{CSS}</style></head><body>"
            + "".join(parts) + foot + "</body></html>\n")


def write_html(results: dict[str, Any], path: str | Path) -> Path:
    path = Path(path)
    path.write_text(render_html(results), encoding="utf-8")
    return path

