"""Tiny inline-SVG chart primitives for the self-contained report (no JavaScript, no fonts, no network).

A ``Chart`` collects line series, vertical bands/lines and horizontal lines, then renders one
``<svg>`` string with nice-number ticks; ``dag_svg`` draws a layered graph. Every label is
escaped here, so callers may pass strings taken from results as they are.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass, field
from html import escape

PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#17becf", "#7f7f7f"]
DASH = "6 4"
DOTS = "2 3"


def as_float(v: object) -> float | None:
    """A number (JSON or numpy scalar) as float, else None; bools and strings are not numbers here."""
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        return None
    x = float(v)
    return None if math.isnan(x) else x


def fmt_num(v: object, none: str = "–") -> str:
    """Readable number: integers as is, otherwise 3-4 significant digits; None/NaN -> ``none``."""
    x = as_float(v)
    if x is None:
        return none
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    if x.is_integer() and abs(x) < 1e15:
        return str(int(x))
    ax = abs(x)
    if ax >= 100:
        return f"{x:.0f}"
    if ax >= 10:
        return f"{x:.1f}"
    if ax >= 1:
        return f"{x:.2f}"
    return f"{x:.3g}"


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """About ``count`` round ticks (1, 2, 2.5, 5 x 10^k steps) covering [lo, hi]."""
    if hi <= lo:
        hi = lo + (abs(lo) or 1.0)
    raw = (hi - lo) / max(count, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.floor(lo / step + 1e-9)
    last = math.ceil(hi / step - 1e-9)
    return [round(i * step, 10) for i in range(first, last + 1)]


def log_ticks(lo: float, hi: float) -> list[float]:
    """Decade ticks (with 2 and 5 in between when the range is short) covering [lo, hi] > 0."""
    k0, k1 = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
    mults = (1, 2, 5) if math.log10(hi / lo) <= 3 else (1,)
    ticks = [m * 10.0**k for k in range(k0, k1 + 1) for m in mults]
    below = [t for t in ticks if t <= lo]
    above = [t for t in ticks if t >= hi]
    start, end = (below[-1] if below else ticks[0]), (above[0] if above else ticks[-1])
    return [round(t, 12) for t in ticks if start <= t <= end]


@dataclass
class Series:
    label: str
    points: list[tuple[float, float | None]]
    color: str
    dash: str = ""
    markers: bool = True
    line: bool = True


@dataclass
class Chart:
    """One x/y chart; add series and annotations, then ``render()``."""

    title: str
    x_label: str
    y_label: str
    width: int = 800
    height: int = 300
    y_log: bool = False
    diagonal: bool = False
    series: list[Series] = field(default_factory=list)
    bands: list[tuple[float, float, str]] = field(default_factory=list)
    vlines: list[tuple[float, str, str, str]] = field(default_factory=list)
    hlines: list[tuple[float, str, str, str]] = field(default_factory=list)

    def add(self, label: str, points: list[tuple[float, float | None]], color: str | None = None,
            dash: str = "", markers: bool = True, line: bool = True) -> None:
        color = color or PALETTE[len(self.series) % len(PALETTE)]
        self.series.append(Series(label, points, color, dash, markers, line))

    def band(self, x0: float, x1: float, label: str = "") -> None:
        self.bands.append((x0, x1, label))

    def vline(self, x: float, label: str, color: str = "#d62728", dash: str = DASH) -> None:
        self.vlines.append((x, label, color, dash))

    def hline(self, y: float, label: str, color: str = "#7f7f7f", dash: str = DASH) -> None:
        self.hlines.append((y, label, color, dash))

    def _usable(self, y: float | None) -> bool:
        return y is not None and math.isfinite(y) and (y > 0 or not self.y_log)

    def render(self) -> str:
        left, right, top, bottom = 64, 20, 48, 44
        pw, ph = self.width - left - right, self.height - top - bottom
        pts = [(x, y) for s in self.series for x, y in s.points if math.isfinite(x) and self._usable(y)]
        head = (f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="{self.width}" '
                f'height="{self.height}" viewBox="0 0 {self.width} {self.height}" role="img" '
                f'aria-label="{escape(self.title)}">'
                f'<text x="4" y="16" class="title">{escape(self.title)}</text>')
        if not pts:
            return head + (f'<text x="{self.width / 2}" y="{self.height / 2}" text-anchor="middle" '
                           f'class="muted">no data</text></svg>')
        xs = [x for x, _ in pts] + [x for b in self.bands for x in b[:2]] + [v[0] for v in self.vlines]
        ys = [y for _, y in pts] + [h[0] for h in self.hlines if self._usable(h[0])]
        xt = nice_ticks(min(0.0, min(xs)), max(xs))
        if self.y_log:
            yt = log_ticks(min(ys), max(ys))
        else:
            yt = nice_ticks(min(0.0, min(ys)), max(ys) * 1.05 if max(ys) > 0 else max(ys))
        x0, x1, y0, y1 = xt[0], xt[-1], yt[0], yt[-1]
        tr = (lambda v: math.log10(v)) if self.y_log else (lambda v: v)

        def px(x: float) -> float:
            return left + (x - x0) / ((x1 - x0) or 1) * pw

        def py(y: float) -> float:
            return top + ph - (tr(y) - tr(y0)) / ((tr(y1) - tr(y0)) or 1) * ph

        out = [head]
        for b0, b1, label in self.bands:
            out.append(f'<rect x="{px(b0):.1f}" y="{top}" width="{max(px(b1) - px(b0), 1):.1f}" '
                       f'height="{ph}" class="band"/>')
            if label:
                out.append(f'<text x="{(px(b0) + px(b1)) / 2:.1f}" y="{top + 11}" text-anchor="middle" '
                           f'class="bandlabel">{escape(label)}</text>')
        for t in xt:
            out.append(f'<line x1="{px(t):.1f}" y1="{top}" x2="{px(t):.1f}" y2="{top + ph}" class="grid"/>'
                       f'<text x="{px(t):.1f}" y="{top + ph + 15}" text-anchor="middle">{fmt_num(t)}</text>')
        for t in yt:
            out.append(f'<line x1="{left}" y1="{py(t):.1f}" x2="{left + pw}" y2="{py(t):.1f}" class="grid"/>'
                       f'<text x="{left - 6}" y="{py(t) + 4:.1f}" text-anchor="end">{fmt_num(t)}</text>')
        out.append(f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" class="frame"/>'
                   f'<text x="{left + pw / 2}" y="{self.height - 6}" text-anchor="middle" class="axis">'
                   f'{escape(self.x_label)}</text>'
                   f'<text transform="translate(14 {top + ph / 2}) rotate(-90)" text-anchor="middle" '
                   f'class="axis">{escape(self.y_label)}</text>')
        if self.diagonal:
            d = min(x1, y1)
            out.append(f'<line x1="{px(max(x0, y0)):.1f}" y1="{py(max(x0, y0)):.1f}" x2="{px(d):.1f}" '
                       f'y2="{py(d):.1f}" stroke="#999" stroke-dasharray="{DOTS}"><title>achieved = offered'
                       f'</title></line>')
        for y, label, color, dash in self.hlines:
            if self._usable(y) and y0 <= y <= y1:
                out.append(f'<line x1="{left}" y1="{py(y):.1f}" x2="{left + pw}" y2="{py(y):.1f}" '
                           f'stroke="{color}" stroke-dasharray="{dash}"/><text x="{left + pw - 4}" '
                           f'y="{py(y) - 4:.1f}" text-anchor="end" fill="{color}">{escape(label)}</text>')
        for i, (x, label, color, dash) in enumerate(self.vlines):
            out.append(f'<line x1="{px(x):.1f}" y1="{top}" x2="{px(x):.1f}" y2="{top + ph}" stroke="{color}" '
                       f'stroke-width="1.5" stroke-dasharray="{dash}"/><text x="{px(x) + 4:.1f}" '
                       f'y="{top + 13 + 13 * i}" fill="{color}">{escape(label)}</text>')
        for s in self.series:
            out.extend(self._series(s, px, py))
        out.append(self._legend(left))
        out.append("</svg>")
        return "".join(out)

    def _series(self, s: Series, px: Callable[[float], float], py: Callable[[float], float]) -> list[str]:
        runs: list[list[str]] = [[]]
        usable = []
        for x, y in s.points:  # an unusable y (None, <= 0 on a log axis) breaks the line
            if math.isfinite(x) and y is not None and self._usable(y):
                usable.append((x, y))
                runs[-1].append(f"{px(x):.1f},{py(y):.1f}")
            elif runs[-1]:
                runs.append([])
        dash = f' stroke-dasharray="{s.dash}"' if s.dash else ""
        svg = [f'<polyline points="{" ".join(r)}" fill="none" stroke="{s.color}" stroke-width="2"{dash}/>'
               for r in runs if s.line and len(r) > 1]
        if s.markers:
            svg += [f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="3.5" fill="{s.color}">'
                    f'<title>{escape(s.label)}: {fmt_num(y)} at {fmt_num(x)}</title></circle>'
                    for x, y in usable]
        return svg

    def _legend(self, left: int) -> str:
        x, out = left, []
        for s in self.series:
            dash = f' stroke-dasharray="{s.dash}"' if s.dash else ""
            sym = (f'<line x1="{x}" y1="30" x2="{x + 18}" y2="30" stroke="{s.color}" stroke-width="2"{dash}/>'
                   if s.line else f'<circle cx="{x + 9}" cy="30" r="4" fill="{s.color}"/>')
            out.append(f'{sym}<text x="{x + 22}" y="34">{escape(s.label)}</text>')
            x += 34 + 7 * len(s.label)
        return "".join(out)


def layers(deps: dict[str, list[str]]) -> dict[str, int]:
    """Layer of each node = longest distance from a node without dependencies; cycles are cut."""
    memo: dict[str, int] = {}

    def depth(n: str, seen: frozenset[str]) -> int:
        if n not in memo:
            parents = [d for d in deps.get(n, []) if d in deps and d not in seen]
            memo[n] = 1 + max((depth(d, seen | {n}) for d in parents), default=-1)
        return memo[n]

    return {n: depth(n, frozenset()) for n in deps}


@dataclass
class DagNode:
    name: str
    lines: list[str]
    tooltip: str = ""
    hot: bool = False  # on the critical path
    alert: bool = False  # the bottleneck


def dag_svg(nodes: list[DagNode], deps: dict[str, list[str]], hot_edges: set[tuple[str, str]]) -> str:
    """Boxes in columns by layer, left to right, with arrows from each dependency."""
    w, h, gx, gy, pad = 180, 62, 70, 18, 12
    layer = layers(deps)
    cols: dict[int, list[DagNode]] = {}
    for n in nodes:
        cols.setdefault(layer.get(n.name, 0), []).append(n)
    rows = max((len(c) for c in cols.values()), default=1)
    width = pad * 2 + len(cols) * w + (len(cols) - 1) * gx
    height = pad * 2 + rows * h + (rows - 1) * gy
    pos: dict[str, tuple[float, float]] = {}
    for li, col in sorted(cols.items()):
        off = (height - (len(col) * h + (len(col) - 1) * gy)) / 2
        for i, n in enumerate(col):
            pos[n.name] = (pad + li * (w + gx), off + i * (h + gy))
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="dag" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" role="img" aria-label="pipeline graph"><defs>'
           '<marker id="sl-arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="9" markerHeight="9" '
           'markerUnits="userSpaceOnUse" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#888"/></marker>'
           '<marker id="sl-arrow-hot" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="11" '
           'markerHeight="11" markerUnits="userSpaceOnUse" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#e6550d"/></marker></defs>']
    for n in nodes:
        for d in deps.get(n.name, []):
            if d not in pos:
                continue
            (sx, sy), (tx, ty) = pos[d], pos[n.name]
            x1, y1, x2, y2 = sx + w, sy + h / 2, tx, ty + h / 2
            hot = (d, n.name) in hot_edges
            cls, mk = ("edge hot", "sl-arrow-hot") if hot else ("edge", "sl-arrow")
            out.append(f'<path d="M{x1:.0f},{y1:.0f} C{x1 + gx / 2:.0f},{y1:.0f} {x2 - gx / 2:.0f},{y2:.0f} '
                       f'{x2:.0f},{y2:.0f}" class="{cls}" marker-end="url(#{mk})"/>')
    for n in nodes:
        x, y = pos[n.name]
        cls = "node" + (" hot" if n.hot else "") + (" alert" if n.alert else "")
        out.append(f'<g class="{cls}"><title>{escape(n.tooltip or n.name)}</title>'
                   f'<rect x="{x}" y="{y:.0f}" width="{w}" height="{h}" rx="6"/>')
        for i, line in enumerate(n.lines[:3]):
            text = line if len(line) <= 26 else line[:25] + "…"
            cls = ' class="name"' if i == 0 else ""
            out.append(f'<text x="{x + w / 2}" y="{y + 18 + 16 * i:.0f}" text-anchor="middle"{cls}>'
                       f'{escape(text)}</text>')
        out.append("</g>")
    out.append("</svg>")
    return "".join(out)
