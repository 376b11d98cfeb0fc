"""compare: interpolation at common rates, the noise-respecting verdict, inferences/s, refusals,
and comparison.html (self-contained, escaped)."""

from __future__ import annotations

import orjson
import pytest

from seldon_load.errors import ConfigError
from seldon_load.experiment.compare import NO_DIFFERENCE, Run, at_rate, compare, curve, load_run, verdict
from seldon_load.experiment.summary import load_dirs
from seldon_load.report.comparison_html import render_comparison


def results(stages: list[tuple[float, float, float, bool]], batch: int = 1, name: str = "m",
            best: float | None = None, timeline: list[dict] | None = None) -> dict:
    """(offered, p50, p99, sustained) per stage."""
    rows = [{"index": i, "target_rps": r, "achieved_rps": r if ok else r * 0.6, "requests": 100, "failures": 0,
             "dropped": 0, "sustained": ok,
             "latency_ms": {"p50": p50, "p95": 0.8 * p99, "p99": p99, "max": 2 * p99}}
            for i, (r, p50, p99, ok) in enumerate(stages)]
    ok_rates = [r for r, *_, ok in stages if ok]
    best = best if best is not None else (max(ok_rates) if ok_rates else None)
    return {"schema": "seldon-load/results/v1", "mode": "stages",
            "target": {"host": "http://h:1", "protocol": "rest", "kind": "model", "name": name, "batch_size": batch},
            "stages": rows, "timeline": timeline or [],
            "saturation": {"saturated": True, "max_sustainable_rps": best,
                           "recommended_rps": None if best is None else best * 0.8},
            "generator": {"healthy": True}, "pipeline": None}


def test_at_rate_measured_interpolated_and_outside() -> None:
    c = curve(results([(10, 2, 4, True), (20, 4, 8, True), (40, 50, 900, False)]))
    assert at_rate(c, 10) == {"p50_ms": 2, "p99_ms": 4, "interpolated": False}
    assert at_rate(c, 15) == {"p50_ms": 3.0, "p99_ms": 6.0, "interpolated": True}
    assert at_rate(c, 30) is None  # above what was sustained: never read off an overloaded stage
    assert at_rate(c, 5) is None


def test_verdict_respects_noise_and_tolerance() -> None:
    assert verdict(100, 104, 0, True)["verdict"] == NO_DIFFERENCE  # within 5 %
    assert verdict(100, 130, 40, True)["verdict"] == NO_DIFFERENCE  # within the runs' spread
    assert verdict(100, 130, 10, True)["verdict"] == "better"
    assert verdict(10, 13, 1, False)["verdict"] == "worse"  # latency: higher is worse
    d = verdict(10, 7, 0.5, False)
    assert d["verdict"] == "better" and d["delta"] == -3 and d["delta_pct"] == -30
    assert verdict(None, 3, 0, True)["verdict"] == "unknown"


def test_compare_counts_inferences_and_finds_common_rates() -> None:
    a = Run("batch1", "d1", results([(10, 2, 4, True), (30, 2, 5, True), (60, 9, 900, False)], batch=1))
    b = Run("batch4", "d4", results([(10, 3, 6, True), (20, 3, 7, True), (25, 9, 900, False)], batch=4))
    c = compare([a, b])
    rows = {v["name"]: v for v in c["variants"]}
    assert rows["batch4"]["saturation"]["max_sustainable_ips"] == 80
    assert rows["batch1"]["saturation"]["max_sustainable_ips"] == 30
    assert rows["batch4"]["at_recommended"]["rate_rps"] == 16
    assert rows["batch4"]["at_recommended"]["interpolated"] is True
    rates = {r["offered_rps"]: r["variants"] for r in c["common_rates"]}
    assert set(rates) == {10, 20}  # 30 only batch1 sustained; 20 is interpolated for batch1
    assert rates[20]["batch1"]["interpolated"] is True and rates[20]["batch4"]["interpolated"] is False
    caps = [d for d in c["deltas"] if d["metric"] == "max_sustainable_ips"]
    assert caps[0]["verdict"] == "better" and caps[0]["unit"] == "inferences/s"
    assert caps[0]["noise"] == 30  # batch1 located its point to within 30..60 req/s (x1)


def test_a_run_compared_with_itself_shows_no_measurable_difference() -> None:
    tl = [{"stage": 0, "phase": "hold", "p50_ms": x, "p99_ms": 2 * x} for x in (2, 3, 2.5)]
    r = results([(10, 2, 4, True), (20, 3, 6, True), (40, 50, 900, False)], timeline=tl)
    c = compare([Run("a", "d", r), Run("b", "d", r)])
    assert c["deltas"] and {d["verdict"] for d in c["deltas"]} == {NO_DIFFERENCE}


def test_saturation_within_the_stage_step_is_no_difference() -> None:
    # 100 vs 120: both located only to within the 50 rps step between their stages
    a = Run("a", "d", results([(100, 2, 4, True), (150, 50, 900, False)]))
    b = Run("b", "d", results([(120, 2, 4, True), (170, 50, 900, False)]))
    d = next(x for x in compare([a, b])["deltas"] if x["metric"] == "max_sustainable_ips")
    assert d["verdict"] == NO_DIFFERENCE and d["noise"] == 50


def test_refusals(tmp_path) -> None:
    with pytest.raises(ConfigError, match="no results.json"):
        load_run(str(tmp_path))
    (tmp_path / "results.json").write_bytes(orjson.dumps({"schema": "seldon-load/results/v0"}))
    with pytest.raises(ConfigError, match="schema"):
        load_run(str(tmp_path))
    x, y = Run("x", "d", results([(10, 1, 2, True)], name="m1")), Run("y", "d", results([(10, 1, 2, True)], name="m2"))
    with pytest.raises(ConfigError, match="different targets"):
        compare([x, y])
    assert len(compare([x, y], allow_different_targets=True)["variants"]) == 2
    with pytest.raises(ConfigError, match="baseline"):
        compare([x, y], baseline="z", allow_different_targets=True)
    with pytest.raises(ConfigError, match="two or more"):
        compare([x])


def test_same_directory_twice_gets_two_names(tmp_path) -> None:
    (tmp_path / "results.json").write_bytes(orjson.dumps(results([(10, 1, 2, True)])))
    runs = load_dirs([str(tmp_path), str(tmp_path)])
    assert [r.name for r in runs] == [tmp_path.name, f"{tmp_path.name}-2"]


def test_failed_variant_is_a_row_and_html_is_self_contained_and_escaped() -> None:
    evil = "<script>alert(1)</script>"
    ok = Run(evil, "d", results([(10, 1, 2, True), (20, 2, 3, True)]))
    ok2 = Run("b", "d", results([(10, 1, 2, True), (20, 2, 3, True)]))
    bad = Run("down", "d", None, f"target down {evil}", 2)
    c = compare([ok, ok2, bad])
    assert c["variants"][2] == {"name": "down", "directory": "d", "status": "failed",
                                "reason": f"target down {evil}", "exit_code": 2}
    html = render_comparison(c)
    assert "<script" not in html and "&lt;script&gt;" in html
    assert "http://" not in html.replace("http://www.w3.org/2000/svg", "").replace("http://h:1", "")
    assert html.count("<svg") == 2
    assert render_comparison({}).startswith("<!DOCTYPE html>")  # any missing field is fine


def test_an_unsaturated_run_gives_only_a_lower_bound() -> None:
    saturated = results([(10, 1, 2, True), (20, 50, 900, False)])
    unsaturated = results([(10, 1, 2, True), (40, 1, 2, True)])
    unsaturated["saturation"]["saturated"] = False
    up = next(d for d in compare([Run("a", "d", saturated), Run("b", "d", unsaturated)])["deltas"]
              if d["metric"] == "max_sustainable_ips")
    assert up["verdict"] == "better" and up["lower_bound"] == {"baseline": False, "value": True}
    down = next(d for d in compare([Run("b", "d", unsaturated), Run("a", "d", saturated)])["deltas"]
                if d["metric"] == "max_sustainable_ips")
    assert down["verdict"] == "worse"  # 10..20 is below 40, whatever lies above 40
    low = results([(10, 1, 2, True)])
    low["saturation"]["saturated"] = False
    high = results([(40, 1, 2, True), (60, 50, 900, False)])
    unsure = next(d for d in compare([Run("low", "d", low), Run("high", "d", high)])["deltas"]
                  if d["metric"] == "max_sustainable_ips")
    assert unsure["verdict"] == "unknown"  # the baseline was never pushed to its limit


def test_a_p99_of_few_requests_is_noise() -> None:
    from seldon_load.experiment.compare import sampling_noise_ms

    lat = {"p50": 5, "p90": 8, "p95": 9, "p99": 12, "p999": 20, "max": 30}
    few, many = {"requests": 40, "latency_ms": lat}, {"requests": 100_000, "latency_ms": lat}
    some = {"requests": 2000, "latency_ms": lat}
    assert sampling_noise_ms(few, "p99_ms") == float("inf")  # the p99 of 40 is their maximum
    assert sampling_noise_ms(some, "p99_ms") == pytest.approx(8 * 0.00436 / 0.009, rel=0.01)  # p99..p999
    assert sampling_noise_ms(many, "p99_ms") < 0.6
    a = results([(10, 5, 12, True)])
    b = results([(10, 5, 16, True)])  # +33 % p99, each from 100 requests: chance
    d = next(x for x in compare([Run("a", "d", a), Run("b", "d", b)])["deltas"] if x["metric"] == "p99_at_10_rps")
    assert d["verdict"] == NO_DIFFERENCE and d["noise"] is None and "too few" in d["reason"]
    p50 = next(x for x in compare([Run("a", "d", a), Run("b", "d", b)])["deltas"] if x["metric"] == "p50_at_10_rps")
    assert "reason" not in p50
    for r in (a, b):
        r["stages"][0]["requests"] = 100_000
    d = next(x for x in compare([Run("a", "d", a), Run("b", "d", b)])["deltas"] if x["metric"] == "p99_at_10_rps")
    assert d["verdict"] == "worse"


def test_pipeline_steps_side_by_side() -> None:
    def with_steps(means: dict[str, float]) -> dict:
        r = results([(10, 1, 2, True)], name="pipe")
        r["target"]["kind"] = "pipeline"
        r["pipeline"] = {"steps": [{"name": n, "latency_ms": {"mean": m, "p50": m, "p99": 2 * m},
                                    "on_critical_path": n == "b"} for n, m in means.items()]}
        return r

    c = compare([Run("x", "d", with_steps({"a": 1, "b": 5})), Run("y", "d", with_steps({"a": 1, "b": 2, "c": 3}))])
    p = c["pipeline_steps"]
    assert p["steps"] == ["a", "b", "c"]
    assert p["variants"]["y"]["b"] == {"mean_ms": 2, "p50_ms": 2, "p99_ms": 4, "on_critical_path": True}
    assert "c" not in p["variants"]["x"]
    html = render_comparison(c)
    assert "Pipeline steps" in html and "y p99 ms" in html


def test_closed_loop_runs_compare_their_peaks() -> None:
    def closed(users: int, rate: float, p99: float, n: int) -> dict:
        r = results([(0, 1, p99, True)])
        r["mode"] = "closed"
        r["stages"][0].update({"target_rps": None, "users": users, "achieved_rps": rate, "requests": n})
        r["saturation"] = {"saturated": False, "max_sustainable_rps": None}
        return r

    c = compare([Run("u1", "d", closed(1, 150, 7, 50_000)), Run("u4", "d", closed(4, 200, 21, 50_000))])
    assert c["variants"][1]["peak"]["users"] == 4 and c["variants"][1]["peak"]["achieved_ips"] == 200
    got = {d["metric"]: d["verdict"] for d in c["deltas"]}
    assert got == {"peak_achieved_ips": "better", "p50_at_peak": NO_DIFFERENCE, "p99_at_peak": "worse"}


def test_compare_command_refuses_with_one_line_and_exit_2(tmp_path, capsys) -> None:
    from seldon_load.cli import main

    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    for d, name in ((a, "m"), (b, "m"), (c, "other")):
        d.mkdir()
        (d / "results.json").write_bytes(orjson.dumps(results([(10, 1, 2, True)], name=name)))
    (tmp_path / "file").write_text("x")
    out = tmp_path / "out"
    for args, needle in [([str(a), str(c)], "different targets"),
                         ([str(a), str(tmp_path / "none")], "no results.json"),
                         ([str(a), str(b), "--baseline", "zz"], "--baseline zz"),
                         ([str(a), str(b), "--output", str(tmp_path / "file" / "x")], "not a writable directory")]:
        code = main(["compare", *args] + ([] if "--output" in args else ["--output", str(out)]))
        err = capsys.readouterr().err
        assert code == 2 and needle in err and len(err.strip().splitlines()) == 1, (args, err)
        assert not out.exists()
    assert main(["compare", str(a), str(c), "--allow-different-targets", "--output", str(out)]) == 0
    assert (out / "comparison.json").is_file() and (out / "comparison.html").is_file()


def test_a_batched_run_states_inferences_in_its_report() -> None:
    from seldon_load.analyze.results import add_inferences
    from seldon_load.report.console import summary_text
    from seldon_load.report.html import render_html

    r = results([(10, 1, 2, True), (20, 50, 900, False)], batch=8)
    add_inferences(r["stages"], r["saturation"], 8)
    assert r["stages"][1]["achieved_ips"] == 96 and r["saturation"]["max_sustainable_ips"] == 80
    assert r["saturation"]["recommended_ips"] == 64
    assert "10 rps = 80 inferences/s at batch 8" in summary_text(r)
    html = render_html(r)
    assert "achieved inferences/s" in html and "80 inferences/s at batch 8" in html
    r["target"]["batch_size"] = 1
    assert "inferences/s" not in summary_text(r) and "achieved inferences/s" not in render_html(r)


def test_server_resources_at_the_saturation_point_are_shown() -> None:
    r = results([(10, 1, 2, True), (20, 50, 900, False)])
    r["stages"][0]["server"] = {"cpu_cores": 1.5, "cpu_ms_per_inference": 12.5, "memory_bytes_max": 3 * 2**20}
    c = compare([Run("a", "d", r), Run("b", "d", results([(10, 1, 2, True)]))])
    assert c["variants"][0]["server"]["cpu_cores"] == 1.5 and c["variants"][1]["server"] is None
    html = render_comparison(c)
    assert "<td>1.50</td>" in html or "<td>1.5</td>" in html
    assert "12.5" in html and "server memory max MiB" in html
