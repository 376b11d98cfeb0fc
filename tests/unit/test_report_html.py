"""The HTML report: well-formed, self-contained, escaped, and robust to partial results."""

from __future__ import annotations

import copy
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from seldon_load.report.html import render_html, write_html
from seldon_load.report.svg import Chart, layers, log_ticks, nice_ticks

SCHEMA = "seldon-load/results/v1"
HOSTILE = "<script>alert(1)</script>"
VOID = {"meta", "br", "img", "input", "hr", "link", "col", "wbr"}


def stage(i: int, rps: float, sustained: bool = True, **kw: Any) -> dict[str, Any]:
    lat = 5.0 + i if sustained else 400.0 + i
    s = {"index": i, "target_rps": rps, "users": None, "ramp_start_s": 40.0 * i, "start_s": 40.0 * i + 12,
         "end_s": 40.0 * i + 40, "achieved_rps": rps * 0.998 if sustained else 193.1, "offered_rps": rps,
         "scheduled": int(rps * 28), "requests": int(rps * 28), "ok": int(rps * 28), "failures": 0,
         "failures_by_kind": {"http_503": 0}, "dropped": 0,
         "latency_ms": {"mean": lat, "p50": lat, "p90": lat * 1.1, "p95": lat * 1.2, "p99": lat * 1.5,
                        "p999": lat * 2, "max": lat * 3},
         "service_ms": {"mean": 5.0, "p50": 5.0, "p99": 6.0}, "send_lag_ms": {"p50": 0.1, "p99": 0.4, "max": 2.0},
         "cpu_percent_max": 12.0, "generator_healthy": True, "latency_trend": 1.02 if sustained else 3.4,
         "sustained": sustained, "reasons": [] if sustained else [f"achieved 193.1 < 95% of {rps:g} rps"]}
    s.update(kw)
    return s


def sample_results(pipeline: bool = True) -> dict[str, Any]:
    stages = [stage(0, 50.0), stage(1, 100.0), stage(2, 190.0),
              stage(3, 250.0, False, failures=12, failures_by_kind={"http_503": 12, "timeout": 0})]
    timeline = [{"t_s": float(t), "offered_rps": 50.0, "achieved_rps": 49.0, "ok": 49, "failures": 0, "dropped": 0,
                 "p50_ms": 5.1, "p99_ms": 6.0, "lag_p99_ms": 0.2, "stage": t // 40,
                 "phase": "hold" if t % 40 >= 12 else "ramp"} for t in range(160)]
    r: dict[str, Any] = {
        "schema": SCHEMA, "tool": {"name": "seldon-load", "version": "0.1.0"}, "created": "2026-11-28T23:10:00Z",
        "target": {"host": "http://127.0.0.1:8080", "protocol": "rest", "kind": "model", "name": "synth-5ms"},
        "mode": "stages", "stages": stages,
        "saturation": {"saturated": True, "max_sustainable_rps": 190.0, "first_unsustained_stage": 3,
                       "recommended_rps": 152.0, "capacity_estimate_rps": 199.1, "inconclusive_reason": None,
                       "criteria": {"min_achieved_ratio": 0.95, "max_error_ratio": 0.01, "max_latency_trend": 1.5,
                                    "slo_p99_ms": 50.0, "settle_s": 2.0, "recommended_fraction": 0.8}},
        "timeline": timeline,
        "errors": [{"kind": "http_503", "count": 12, "examples": ["Service Unavailable: queue full"]}],
        "pipeline": None, "workers": 2, "workers_timeline": [{"t_s": 0, "workers": 2}],
        "generator": {"cpu_percent_max": 35.0, "healthy": True, "send_lag_p99_ms_max": 0.8, "warnings": []},
        "thresholds": [{"name": "slo_p99_ms", "limit": 50, "value": 12.3, "passed": True}], "passed": True,
    }
    if pipeline:
        r["target"].update(kind="pipeline", name="branching")
        r["pipeline"] = {
            "name": "branching",
            "steps": [
                {"name": "synth-1ms", "model": "synth-1ms", "calls": 1000, "latency_ms": {"mean": 1.1},
                 "on_critical_path": True, "capacity_rps": 900.0, "depends_on": []},
                {"name": "synth-8ms", "model": "synth-8ms", "calls": 1000, "latency_ms": {"mean": 8.1},
                 "on_critical_path": True, "capacity_rps": 124.0, "depends_on": ["synth-1ms"]},
                {"name": "synth-3ms", "model": "synth-3ms", "calls": 1000, "latency_ms": {"mean": 3.0},
                 "on_critical_path": False, "capacity_rps": None, "depends_on": ["synth-1ms"]},
                {"name": "join-1ms", "model": "join-1ms", "calls": 1000, "latency_ms": {"mean": 1.1},
                 "on_critical_path": True, "capacity_rps": 880.0, "depends_on": ["synth-8ms", "synth-3ms"]}],
            "critical_path": ["synth-1ms", "synth-8ms", "join-1ms"], "critical_path_latency_ms": 10.3,
            "end_to_end_latency_ms": 16.0, "overhead_ms": 5.7, "overhead_per_stage_ms": 1.4,
            "bottleneck": "synth-8ms", "predicted_capacity_rps": 124.0, "measured_capacity_rps": 118.0,
            "per_stage": [{"stage": 0, "steps": {"synth-8ms": {"calls": 100, "mean_ms": 8.2}},
                           "critical_path": ["synth-1ms", "synth-8ms", "join-1ms"],
                           "critical_path_latency_ms": 10.2, "end_to_end_latency_ms": 15.0, "overhead_ms": 4.8}],
        }
    return r


class _Checker(HTMLParser):
    """Fails on a closing tag that does not match the open one; counts tags."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.counts: dict[str, int] = {}
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.counts[tag] = self.counts.get(tag, 0) + 1
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.counts[tag] = self.counts.get(tag, 0) + 1

    def handle_endtag(self, tag: str) -> None:
        assert self.stack and self.stack[-1] == tag, f"</{tag}> closes {self.stack[-3:]}"
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse(doc: str) -> _Checker:
    p = _Checker()
    p.feed(doc)
    p.close()
    assert p.stack == [], f"unclosed tags: {p.stack}"
    return p


def test_full_report_is_well_formed_and_self_contained() -> None:
    doc = render_html(sample_results())
    p = parse(doc)
    assert doc.startswith("<!DOCTYPE html>")
    assert p.counts["svg"] == 6  # rate, latency, throughput/time, latency/time, breakdown, DAG
    assert p.counts.get("script", 0) == 0 and p.counts.get("link", 0) == 0 and p.counts.get("img", 0) == 0
    assert not re.search(r"(src|href)=|@import|url\(http", doc)
    text = " ".join(p.text)
    assert "Saturation point: 190 rps" in text
    assert "Recommended rate per replica: 152 rps" in text
    assert "First unsustained stage: 3 at 250 rps" in text
    assert doc.count('<tr class="bad">') == 2  # the unsustained stage row and its reasons line
    assert "http_503: 12" in text and "achieved 193.1 &lt; 95%" not in text  # parser unescaped it
    assert "achieved 193.1 < 95% of 250 rps" in text
    assert "saturation point 190 rps" in text  # marked on the charts
    assert text.count("S3") == 2  # stage bands on both timeline charts


def test_hostile_strings_are_escaped_everywhere() -> None:
    r = sample_results()
    img = '<img src=x onerror="alert(2)">'
    r["target"].update(name=HOSTILE, host='http://x/"><script>alert(3)</script>')
    r["mode"] = HOSTILE
    r["errors"] = [{"kind": HOSTILE, "count": 3, "examples": [f"bad gateway {img} <b>boom</b>"]}]
    r["stages"][3]["reasons"] = [HOSTILE]
    r["stages"][3]["failures_by_kind"] = {HOSTILE: 3}
    r["thresholds"][0]["name"] = HOSTILE
    r["generator"]["warnings"] = [HOSTILE]
    r["saturation"]["saturated"] = False
    r["saturation"]["inconclusive_reason"] = img
    p = r["pipeline"]
    p["steps"][1].update(name=HOSTILE, model=img)
    p["steps"][3]["depends_on"] = [HOSTILE, "synth-3ms"]
    p["critical_path"] = ["synth-1ms", HOSTILE, "join-1ms"]
    p["bottleneck"] = HOSTILE
    p["name"] = img
    p["per_stage"][0]["steps"] = {HOSTILE: {"calls": 1, "mean_ms": 2.0}}
    doc = render_html(r)
    parse(doc)
    low = doc.lower()
    assert "<script" not in low and "<img" not in low and "<b>boom" not in low
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in doc
    assert 'class="node hot alert"' in doc  # the hostile-named bottleneck is still drawn as one
    assert doc.count('class="edge hot"') == 2


def test_number_formatting_and_missing_values() -> None:
    r = sample_results(pipeline=False)
    r["stages"][0]["latency_ms"]["p99"] = None
    r["stages"][0]["latency_ms"]["max"] = float("nan")
    r["stages"][1]["latency_ms"] = None
    r["stages"][1]["reasons"] = None
    doc = render_html(r)
    parse(doc)
    assert "–" in doc and "nan" not in doc.lower()
    assert ">49.9<" in doc and ">1400<" in doc and ">5.50<" in doc


@pytest.mark.parametrize("results", [
    {}, {"schema": SCHEMA}, {"schema": SCHEMA, "stages": [], "saturation": None, "pipeline": None},
    {"schema": SCHEMA, "stages": None, "timeline": None, "errors": None, "thresholds": None, "generator": None},
    {"schema": SCHEMA, "stages": ["junk", 3, {"index": 0}], "timeline": [{"t_s": "x"}, {}], "saturation": {}},
    {"schema": SCHEMA, "target": None, "tool": "x", "pipeline": {"steps": None, "critical_path": "abc"}},
])
def test_minimal_and_partial_results_render(results: dict[str, Any]) -> None:
    doc = render_html(results)
    p = parse(doc)
    assert "seldon-load report" in doc and p.counts["h1"] == 1


def test_design_only_fields_render() -> None:
    """Results with only DESIGN.md's fields (no extensions) still give the charts and the verdict."""
    keep = {"index", "target_rps", "start_s", "end_s", "achieved_rps", "requests", "failures", "dropped",
            "latency_ms", "send_lag_ms", "sustained"}
    r = sample_results(pipeline=False)
    r = {k: r[k] for k in ("schema", "target", "stages", "saturation", "pipeline", "workers", "generator")}
    r["stages"] = [{k: v for k, v in s.items() if k in keep} for s in r["stages"]]
    r["saturation"] = {k: r["saturation"][k] for k in ("saturated", "max_sustainable_rps",
                                                       "first_unsustained_stage", "recommended_rps", "criteria")}
    doc = render_html(r)
    p = parse(doc)
    assert p.counts["svg"] == 2 and "Saturation point: 190 rps" in doc


def test_not_saturated_and_inconclusive_verdicts() -> None:
    r = sample_results(pipeline=False)
    r["stages"] = r["stages"][:3]
    r["saturation"].update(saturated=False, max_sustainable_rps=190.0, first_unsustained_stage=None)
    assert "Not saturated up to 190 rps" in render_html(r)
    r["saturation"]["inconclusive_reason"] = "latency too noisy"
    doc = render_html(r)
    assert "Inconclusive: latency too noisy" in doc and "v-warn" in doc


@pytest.mark.parametrize("where", ["global", "stage"])
def test_saturated_generator_is_never_shown_as_a_saturated_server(where: str) -> None:
    r = sample_results(pipeline=False)
    if where == "global":
        r["generator"]["healthy"] = False
        for s in r["stages"]:
            s.pop("generator_healthy")
    else:
        r["stages"][3]["generator_healthy"] = False
    doc = render_html(r)
    parse(doc)
    assert "LOAD GENERATOR SATURATED" in doc and "v-generator" in doc
    assert "Saturation point" not in doc and "saturation point 190" not in doc
    assert "The server sustained at least 190 rps" in doc


def test_generator_falling_behind_after_the_server_saturated_keeps_the_server_verdict() -> None:
    r = sample_results(pipeline=False)
    r["stages"].append(stage(4, 300.0, False, generator_healthy=False))
    r["generator"].update(healthy=False, warnings=["CPU 98% in stage 4"])
    doc = render_html(r)
    assert "Saturation point: 190 rps" in doc and "Generator warning: CPU 98% in stage 4" in doc


def test_pipeline_section_present_and_absent() -> None:
    assert 'class="dag"' not in render_html(sample_results(pipeline=False))
    doc = render_html(sample_results())
    assert 'class="dag"' in doc and "Pipeline branching" in doc
    assert doc.count('class="edge hot"') == 2 and doc.count('class="edge"') == 2
    assert doc.count('class="node hot"') == 2 and doc.count('class="node hot alert"') == 1
    assert "synth-1ms → synth-8ms → join-1ms" in doc
    assert ">124<" in doc and ">118<" in doc and ">5.70<" in doc


def test_closed_loop_stages_use_users_on_the_x_axis() -> None:
    r = sample_results(pipeline=False)
    r["mode"] = "closed"
    r["saturation"] = None
    for i, s in enumerate(r["stages"]):
        s.update(target_rps=None, offered_rps=None, users=10 * (i + 1))
    doc = render_html(r)
    parse(doc)
    assert "users (closed loop)" in doc and "No saturation analysis" in doc
    assert "Highest achieved throughput: 193 rps" in doc


def test_timeline_bands_fall_back_to_hold_phases() -> None:
    r = sample_results(pipeline=False)
    r["stages"] = []
    doc = render_html(r)
    assert doc.count('class="band"') == 8  # 4 holds x 2 timeline charts


def test_write_html(tmp_path: Path) -> None:
    path = write_html(copy.deepcopy(sample_results()), tmp_path / "report.html")
    assert path.read_text(encoding="utf-8") == render_html(sample_results())


def test_nice_ticks_and_log_ticks() -> None:
    assert nice_ticks(0, 237) == [0, 50, 100, 150, 200, 250]
    assert nice_ticks(0, 1.0) == [0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert nice_ticks(5, 5) == [5, 6, 7, 8, 9, 10]
    assert log_ticks(3.2, 1800) == [2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000]


def test_layers_are_longest_distance_and_cycles_end() -> None:
    assert layers({"a": [], "b": ["a"], "c": ["a", "b"], "d": ["c", "unknown"]}) == {"a": 0, "b": 1, "c": 2, "d": 3}
    assert set(layers({"x": ["y"], "y": ["x"]})) == {"x", "y"}


def test_chart_breaks_lines_at_missing_points_and_handles_empty() -> None:
    c = Chart("t", "x", "y")
    c.add("s", [(0, 1.0), (1, 2.0), (2, None), (3, 4.0), (4, 5.0)])
    assert c.render().count("<polyline") == 2
    assert "no data" in Chart("t", "x", "y").render()


def test_verdict_agrees_with_the_saturation_analyzer() -> None:
    from seldon_load.analyze.saturation import saturation
    from seldon_load.analyze.stages import Criteria

    r = sample_results(pipeline=False)
    r["stages"][3]["generator_healthy"] = False  # the generator failed at the rate the server failed
    r["saturation"] = saturation(r["stages"], Criteria())
    assert r["saturation"]["inconclusive_reason"]
    doc = render_html(r)
    assert "LOAD GENERATOR SATURATED" in doc and "Saturation point" not in doc
    r = sample_results(pipeline=False)
    r["stages"].append(stage(4, 300.0, False, generator_healthy=False))
    r["saturation"] = saturation(r["stages"], Criteria())
    assert "Saturation point: 190 rps" in render_html(r)


def test_notes_and_threshold_details_are_shown() -> None:
    r = sample_results(pipeline=False)
    r["notes"] = ["stopped early: every stage done"]
    r["thresholds"][0]["detail"] = "some stage met the p99 SLO"
    doc = render_html(r)
    assert "Note: stopped early: every stage done" in doc and "some stage met the p99 SLO" in doc
