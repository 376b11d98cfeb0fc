"""A self-contained ``comparison.html`` (inline CSS and SVG, no scripts, no network) from a
``comparison.json`` dict. Every text taken from the comparison goes through ``html.escape`` or the
SVG helpers, which escape too; every field may be absent."""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import Any

from seldon_load.report.html import CSS, _cell, _figure, _log_scale, _table
from seldon_load.report.svg import PALETTE, Chart, as_float, fmt_num

EXTRA_CSS = ".better{color:#2e7d32;font-weight:700}.worse{color:#c62828;font-weight:700}.same{color:#555}"


def _e(v: Any) -> str:
    return escape(str(v))


def _d(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


def _l(v: Any) -> list[Any]:
    return v if isinstance(v, list) else []


def _variants_table(c: dict[str, Any]) -> str:
    heads = ["variant", "status", "host", "protocol", "batch", "saturated", "saturation req/s", "saturation inf/s",
             "recommended req/s", "recommended inf/s", "p50 at rec. (ms)", "p99 at rec. (ms)",
             "peak achieved req/s", "errors+dropped", "error ratio", "generator healthy", "server CPU cores",
             "server CPU ms/inference", "server memory max MiB"]
    rows = []
    for v in _l(c.get("variants")):
        v = _d(v)
        sat, at, tgt, srv = _d(v.get("saturation")), _d(v.get("at_recommended")), _d(v.get("target")), _d(v.get("server"))
        mark = " (interpolated)" if at.get("interpolated") else ""
        status = v.get("status") if v.get("status") == "ok" else f"{v.get('status')}: {v.get('reason') or ''}"
        saturated = {True: "yes", False: "no (a lower bound)"}.get(sat.get("saturated"))  # type: ignore[arg-type]
        rows.append([v.get("name"), status, tgt.get("host"), tgt.get("protocol"), v.get("batch_size"), saturated,
                     sat.get("max_sustainable_rps"), sat.get("max_sustainable_ips"), sat.get("recommended_rps"),
                     sat.get("recommended_ips"),
                     None if at.get("p50_ms") is None else f"{fmt_num(at.get('p50_ms'))}{mark}",
                     None if at.get("p99_ms") is None else f"{fmt_num(at.get('p99_ms'))}{mark}",
                     _d(v.get("peak")).get("achieved_rps"),
                     v.get("failures_and_dropped"), v.get("error_ratio"), v.get("generator_healthy"),
                     srv.get("cpu_cores"), srv.get("cpu_ms_per_inference"),
                     None if as_float(srv.get("memory_bytes_max")) is None
                     else (as_float(srv.get("memory_bytes_max")) or 0) / 2**20])
    return _table(heads, rows, frozenset({0, 1, 2, 3}))


def _charts(c: dict[str, Any]) -> str:
    variants = [_d(v) for v in _l(c.get("variants"))]
    # with different batch sizes the inferences tell the variants apart, not the requests
    ips = len({v.get("batch_size") for v in variants if v.get("status") == "ok"}) > 1
    key, unit = ("achieved_ips", "inferences/s") if ips else ("achieved_rps", "req/s")
    a = Chart(f"Achieved ({unit}) vs offered rate, one line per variant", "offered rate (req/s)",
              f"achieved ({unit})", diagonal=not ips)
    curves = [(v, [(x, p) for p in map(_d, _l(v.get("curve"))) if (x := as_float(p.get("offered_rps"))) is not None])
              for v in variants]
    p99s = [as_float(p.get("p99_ms")) for _, pts in curves for _, p in pts]
    b = Chart("p99 latency vs offered rate, one line per variant", "offered rate (req/s)", "p99 (ms)",
              y_log=_log_scale(p99s))
    for i, (v, pts) in enumerate(curves):
        color, name = PALETTE[i % len(PALETTE)], str(v.get("name"))
        a.add(name, [(x, as_float(p.get(key))) for x, p in pts], color)
        b.add(name, [(x, as_float(p.get("p99_ms"))) for x, p in pts], color)
    return _figure(a.render()) + _figure(b.render())


def _common(c: dict[str, Any]) -> str:
    rates = [_d(r) for r in _l(c.get("common_rates"))]
    if not rates:
        return '<p class="muted">No offered rate was sustained by two variants.</p>'
    names = [str(_d(v).get("name")) for v in _l(c.get("variants")) if _d(v).get("status") == "ok"]
    heads = ["offered req/s"] + [f"{n} {k}" for n in names for k in ("p50", "p99")]
    rows = []
    for r in rates:
        row: list[Any] = [r.get("offered_rps")]
        for n in names:
            cell = _d(_d(r.get("variants")).get(n))
            star = "*" if cell.get("interpolated") else ""
            row += [None if cell.get(k) is None else f"{fmt_num(cell.get(k))}{star}" for k in ("p50_ms", "p99_ms")]
        rows.append(row)
    return (_table(heads, rows) + '<p class="muted">Latency in ms from intended send time; * interpolated '
            "linearly between two sustained stages.</p>")


def _deltas(c: dict[str, Any]) -> str:
    rows = [_d(d) for d in _l(c.get("deltas"))]
    if not rows:
        return '<p class="muted">No deltas: a single usable variant.</p>'
    out = ["<table><tr><th>variant</th><th>metric</th><th>baseline</th><th>value</th><th>delta</th>"
           "<th>delta %</th><th>noise / tolerance</th><th>verdict</th></tr>"]
    for d in rows:
        word = str(d.get("verdict"))
        cls = {"better": "better", "worse": "worse"}.get(word, "same")
        metric = f"{d.get('metric')}{' (interpolated)' if d.get('interpolated') else ''}"
        out.append(f'<tr><td class="l">{_e(d.get("variant"))}</td><td class="l">{_e(metric)}</td>'
                   f'<td>{_cell(d.get("baseline"))}</td><td>{_cell(d.get("value"))}</td>'
                   f'<td>{_cell(d.get("delta"))}</td><td>{_cell(d.get("delta_pct"))}</td>'
                   f'<td>{_cell(d.get("noise"))}</td><td class="l {cls}">{_e(word)}'
                   + (f'<br><span class="muted">{_e(d.get("reason"))}</span>' if d.get("reason") else "")
                   + "</td></tr>")
    out.append("</table>")
    return "".join(out)


def _steps(c: dict[str, Any]) -> str:
    p = _d(c.get("pipeline_steps"))
    steps, table = [str(s) for s in _l(p.get("steps"))], _d(p.get("variants"))
    if not steps:
        return ""
    names = list(table)
    rows = [[s] + [_d(_d(table.get(n)).get(s)).get(k) for n in names for k in ("p50_ms", "p99_ms")] for s in steps]
    return ("<h2>Pipeline steps</h2>"
            + _table(["step"] + [f"{n} {k}" for n in names for k in ("p50 ms", "p99 ms")], rows, frozenset({0})))


def render_comparison(comparison: dict[str, Any]) -> str:
    c = _d(comparison)
    tgt = _d(c.get("target"))
    title = f"{tgt.get('kind') or ''} {tgt.get('name') or ''}".strip() or "comparison"
    notes = "".join(f'<p class="note">{_e(n)}</p>' for n in _l(c.get("notes")))
    body = [f"<h1>seldon-load comparison: {_e(title)}</h1>",
            f'<div class="meta"><span>baseline <b>{_e(c.get("baseline"))}</b></span>'
            f'<span>variants <b>{len(_l(c.get("variants")))}</b></span>'
            f'<span>created <b>{_e(c.get("created"))}</b></span></div>', notes,
            "<h2>Variants</h2>", _variants_table(c),
            '<p class="muted">inf/s = inferences per second = requests per second x batch size.</p>',
            "<h2>Against the baseline</h2>", _deltas(c),
            '<p class="muted">A delta within the noise (how finely the stages located a saturation point, '
            "the spread of per-second percentiles the runs show, how far a percentile of that many requests "
            "moves by chance) or within the stage tolerance is reported as no measurable difference.</p>",
            "<h2>Rate and latency by offered rate</h2>", _charts(c),
            "<h2>Latency at the same offered rate</h2>", _common(c), _steps(c)]
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>seldon-load comparison: {_e(title)}</title><style>{CSS}{EXTRA_CSS}</style></head><body>"
            + "".join(body) + "</body></html>\n")


def write_comparison_html(comparison: dict[str, Any], path: str | Path) -> Path:
    path = Path(path)
    path.write_text(render_comparison(comparison), encoding="utf-8")
    return path
