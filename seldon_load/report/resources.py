"""What the server spent (``stages[i].server``, ``resources``) in the console and the HTML report."""

from __future__ import annotations

from html import escape
from typing import Any

from seldon_load.report.svg import PALETTE, Chart, as_float, fmt_num

MIB = 2**20


def _servers(r: dict[str, Any]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    stages = r.get("stages") if isinstance(r.get("stages"), list) else []
    return [(s, s["server"]) for s in stages if isinstance(s, dict) and isinstance(s.get("server"), dict)]


def _mib(v: Any) -> str:
    x = as_float(v)
    return "-" if x is None else f"{x / MIB:.0f} MiB"


def console_lines(r: dict[str, Any]) -> list[str]:
    """One line per stage with server figures, the saturation-point line, and why any are empty."""
    rows = _servers(r)
    if not rows:
        return []
    res = r.get("resources") if isinstance(r.get("resources"), dict) else {}
    source = next((srv.get("source") for _, srv in rows if srv.get("source")), None)
    lines = [f"Server resources ({source or 'none'}, {{{res.get('selector') or ''}}}):"]
    for s, srv in rows:
        if srv.get("cpu_cores") is None:
            lines.append(f"  stage {s.get('index')}: no figures: {srv.get('note') or 'no data'}")
            continue
        cost = srv.get("cost_per_million_inferences")
        gpu = (f", GPU {fmt_num(srv.get('gpu_util_percent'), '-')}%" if srv.get("gpu_util_percent") is not None
               else "")
        lines.append(f"  stage {s.get('index')}: {fmt_num(srv['cpu_cores'], '-')} cores, "
                     f"{fmt_num(srv.get('cpu_ms_per_request'), '-')} CPU-ms/request, "
                     f"memory max {_mib(srv.get('memory_bytes_max'))}{gpu}"
                     + (f", {fmt_num(cost, '-')} per million inferences" if cost is not None else ""))
    at, rec = res.get("at_saturation"), res.get("at_recommended")
    if isinstance(at, dict):
        sat = r.get("saturation") if isinstance(r.get("saturation"), dict) else {}
        where = "saturation point" if sat.get("saturated") else "highest sustained rate"
        line = f"  at the {where} {fmt_num(at.get('rps'), '-')} rps: {fmt_num(at.get('cpu_cores'), '-')} cores"
        if isinstance(rec, dict):
            line += (f"; recommended {fmt_num(rec.get('rps'), '-')} rps: ~{fmt_num(rec.get('cpu_cores'), '-')}"
                     f" cores ({fmt_num(rec.get('headroom_cores'), '-')} spare)")
        lines.append(line)
    return lines


def html_section(r: dict[str, Any]) -> str:
    """A 'Server resources' section: cores and CPU-ms per request by stage, and a table."""
    rows = _servers(r)
    if not rows:
        return ""
    res = r.get("resources") if isinstance(r.get("resources"), dict) else {}
    rate = any(as_float(s.get("target_rps")) for s, _ in rows)

    def x_of(s: dict[str, Any]) -> float | None:
        return as_float(s.get("target_rps")) if rate else as_float(s.get("index"))

    pts = sorted(((x, s, srv) for s, srv in rows if (x := x_of(s)) is not None), key=lambda p: p[0])
    x_label = "offered rate (req/s)" if rate else "stage"
    a = Chart("Server CPU per stage", x_label, "CPU cores")
    a.add("cores used", [(x, as_float(srv.get("cpu_cores"))) for x, _, srv in pts], PALETTE[0])
    b = Chart("Server CPU per request", x_label, "CPU-ms per request")
    b.add("CPU-ms per request", [(x, as_float(srv.get("cpu_ms_per_request"))) for x, _, srv in pts], PALETTE[1])
    if any(srv.get("cpu_ms_per_inference") != srv.get("cpu_ms_per_request") for _, _, srv in pts):
        b.add("CPU-ms per inference", [(x, as_float(srv.get("cpu_ms_per_inference"))) for x, _, srv in pts],
              PALETTE[2])
    head = ["stage", "target/s", "cores", "CPU-ms/request", "CPU-ms/inference", "requests/core", "memory max",
            "memory mean", "GPU %", "cost/1M inferences", "note"]
    body = []
    for _, s, srv in pts:
        cells = [fmt_num(s.get("index"), "-"), fmt_num(s.get("target_rps"), "-"), fmt_num(srv.get("cpu_cores"), "-"),
                 fmt_num(srv.get("cpu_ms_per_request"), "-"), fmt_num(srv.get("cpu_ms_per_inference"), "-"),
                 fmt_num(srv.get("requests_per_core"), "-"), _mib(srv.get("memory_bytes_max")),
                 _mib(srv.get("memory_bytes_mean")), fmt_num(srv.get("gpu_util_percent"), "-"),
                 fmt_num(srv.get("cost_per_million_inferences"), "-"), srv.get("note") or ""]
        tds = [f"<td>{escape(str(c))}</td>" for c in cells[:-1]] + [f'<td class="l">{escape(str(cells[-1]))}</td>']
        body.append("<tr>" + "".join(tds) + "</tr>")
    table = ('<div class="scroll"><table><thead><tr>' + "".join(f"<th>{escape(h)}</th>" for h in head)
             + "</tr></thead><tbody>" + "".join(body) + "</tbody></table></div>")
    src = next((srv.get("source") for _, srv in rows if srv.get("source")), None)
    meta = (f'<p class="muted">{escape(str(src or "no source"))} series matching '
            f"<code>{{{escape(str(res.get('selector') or ''))}}}</code> at {escape(str(res.get('prometheus') or '?'))}"
            "</p>")
    return ("<h2>Server resources</h2>" + meta + f"<figure>{a.render()}</figure><figure>{b.render()}</figure>"
            + table)
