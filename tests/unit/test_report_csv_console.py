"""CSV views, the console summary, and rebuilding the report files from results.json."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from seldon_load.errors import ConfigError
from seldon_load.report.console import summary_text, verdict
from seldon_load.report.csvout import STAGE_COLUMNS, TIMELINE_COLUMNS, write_stages_csv, write_timeline_csv
from seldon_load.report.rebuild import rebuild, write_all

SCHEMA = "seldon-load/results/v1"


def results() -> dict[str, Any]:
    def stage(i: int, rps: float, ok: bool, **kw: Any) -> dict[str, Any]:
        s = {"index": i, "target_rps": rps, "users": None, "ramp_start_s": 40.0 * i, "start_s": 40.0 * i + 12,
             "end_s": 40.0 * i + 40, "offered_rps": rps, "achieved_rps": 49.9 if ok else 171.3,
             "scheduled": 1400, "requests": 1390, "ok": 1378, "failures": 12,
             "failures_by_kind": {"http_503": 12, "timeout": 0}, "dropped": 10,
             "latency_ms": {"mean": 5.3, "p50": 5.12, "p90": 5.9, "p95": 6.2, "p99": 7.45, "p999": 9.0, "max": 12.0},
             "service_ms": {"mean": 5.0, "p50": 5.01, "p99": 6.1}, "send_lag_ms": {"p50": 0.05, "p99": 0.31, "max": 2.5},
             "cpu_percent_max": 12.0, "generator_healthy": True, "latency_trend": 1.02, "sustained": ok,
             "reasons": [] if ok else ["achieved 171.3 < 95% of 200 rps", "error ratio 0.009 > 0.001"]}
        s.update(kw)
        return s

    return {
        "schema": SCHEMA, "target": {"host": "http://127.0.0.1:8080", "protocol": "grpc", "kind": "pipeline",
                                     "name": "branching"},
        "mode": "auto", "workers": 2,
        "stages": [stage(0, 50.0, True), stage(1, 200.0, False, latency_ms={"p50": 812.5, "p99": 2210.0})],
        "saturation": {"saturated": True, "max_sustainable_rps": 50.0, "first_unsustained_stage": 1,
                       "recommended_rps": 40.0, "capacity_estimate_rps": 171.3, "inconclusive_reason": None,
                       "criteria": {"recommended_fraction": 0.8}},
        "timeline": [{"t_s": 0, "offered_rps": 10, "achieved_rps": 9.5, "ok": 10, "failures": 0, "dropped": 0,
                      "p50_ms": 5.1, "p99_ms": 6.0, "lag_p99_ms": 0.2, "stage": 0, "phase": "ramp", "inflight": 3},
                     {"t_s": 1, "offered_rps": 20, "achieved_rps": 19.0, "ok": 19, "failures": 1, "dropped": 0,
                      "p50_ms": None, "p99_ms": 6.5, "lag_p99_ms": 0.2, "stage": 0, "phase": "hold"}],
        "pipeline": {"name": "branching", "critical_path": ["synth-1ms", "synth-8ms", "join-1ms"],
                     "critical_path_latency_ms": 10.3, "end_to_end_latency_ms": 16.0, "overhead_ms": 5.7,
                     "bottleneck": "synth-8ms", "predicted_capacity_rps": 124.0, "measured_capacity_rps": 118.0},
        "generator": {"cpu_percent_max": 35.0, "healthy": True, "warnings": []},
        "thresholds": [{"name": "slo_p99_ms", "limit": 50, "value": 2210.0, "passed": False},
                       {"name": "max_error_ratio", "limit": 0.05, "value": 0.009, "passed": True}],
        "passed": False,
    }


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_stages_csv_has_flat_columns_and_one_row_per_stage(tmp_path: Path) -> None:
    path = write_stages_csv(results(), tmp_path / "stages.csv")
    with path.open(newline="") as f:
        assert next(csv.reader(f)) == STAGE_COLUMNS
    rows = read_csv(path)
    assert len(rows) == 2
    first, second = rows
    assert first["index"] == "0" and first["target_rps"] == "50.0" and first["users"] == ""
    assert first["latency_ms_p99"] == "7.45" and first["service_ms_p99"] == "6.1"
    assert first["send_lag_ms_max"] == "2.5" and first["scheduled"] == "1400" and first["dropped"] == "10"
    assert first["generator_healthy"] == "true" and first["sustained"] == "true" and first["reasons"] == ""
    assert first["failures_by_kind"] == "http_503=12;timeout=0"
    assert second["sustained"] == "false"
    assert second["reasons"] == "achieved 171.3 < 95% of 200 rps; error ratio 0.009 > 0.001"
    assert second["latency_ms_p50"] == "812.5" and second["latency_ms_mean"] == ""


def test_stages_csv_without_stages_is_a_header(tmp_path: Path) -> None:
    path = write_stages_csv({"schema": SCHEMA, "stages": None}, tmp_path / "s.csv")
    assert path.read_text().strip() == ",".join(STAGE_COLUMNS)


def test_timeline_csv_keeps_extension_columns(tmp_path: Path) -> None:
    rows = read_csv(write_timeline_csv(results(), tmp_path / "timeline.csv"))
    assert list(rows[0]) == [*TIMELINE_COLUMNS, "inflight"]
    assert rows[0]["phase"] == "ramp" and rows[0]["inflight"] == "3" and rows[1]["inflight"] == ""
    assert rows[1]["p50_ms"] == "" and rows[1]["failures"] == "1"


def test_summary_text_has_the_numbers_and_verdict() -> None:
    text = summary_text(results())
    for needle in ("pipeline branching", "grpc", "mode auto", "49.9", "171", "5.12", "7.45", "812", "2210",
                   "Saturation point: 50 rps", "Recommended rate per replica: 40 rps (80 % of the saturation point)",
                   "Capacity estimate: 171 rps", "First unsustained stage: 1 at 200 rps",
                   "critical path synth-1ms -> synth-8ms -> join-1ms", "bottleneck synth-8ms",
                   "predicted 124 rps, measured 118 rps", "Threshold FAILED: slo_p99_ms = 2210 (limit 50)"):
        assert needle in text, needle
    assert "max_error_ratio" not in text  # passed thresholds are not listed one by one
    rows = [ln.split() for ln in text.splitlines() if ln.strip().startswith(("0 ", "1 "))]
    assert rows[0][:8] == ["0", "50", "49.9", "5.12", "7.45", "12", "10", "yes"]
    assert rows[1][7] == "NO"


@pytest.mark.parametrize("width", [60, 80, 100])
def test_summary_text_is_ascii_and_fits_the_width(width: int) -> None:
    r = results()
    r["target"]["name"] = "m\x1b[31mred\u2603" + "x" * 200
    r["saturation"]["inconclusive_reason"] = "noisy " * 40
    text = summary_text(r, width=width)
    assert text.isascii() and "\x1b" not in text
    assert max(len(ln) for ln in text.splitlines()) <= width
    assert "Inconclusive: noisy" in text and "Saturation point" not in text


def test_summary_text_says_when_the_generator_was_the_limit() -> None:
    r = results()
    r["stages"][0]["generator_healthy"] = False
    r["generator"] = {"cpu_percent_max": 99.0, "healthy": False, "warnings": ["worker 1 CPU 99%"]}
    text = summary_text(r)
    assert "!! LOAD GENERATOR SATURATED" in text and "Saturation point" not in text
    assert "worker 1 CPU 99%" in text and "CPU max 99 %" in text
    assert verdict(r).level == "generator"


def test_summary_text_of_empty_and_closed_loop_results() -> None:
    assert "No stage results" in summary_text({})
    r = {"mode": "closed", "stages": [{"index": 0, "users": 8, "achieved_rps": 120.5, "sustained": None}]}
    text = summary_text(r)
    assert "users" in text and "120" in text and "No saturation analysis" in text


def test_write_all_then_rebuild(tmp_path: Path) -> None:
    r = results()
    r["workers"] = np.int64(2)  # live results may carry numpy scalars
    r["stages"][0]["achieved_rps"] = np.float64(49.9)
    out = tmp_path / "run" / "a"
    paths = write_all(r, out)
    assert [p.name for p in paths] == ["results.json", "report.html", "stages.csv", "timeline.csv"]
    assert all(p.is_file() and p.stat().st_size > 0 for p in paths)
    saved = orjson.loads((out / "results.json").read_bytes())
    assert saved["workers"] == 2 and saved["stages"][0]["achieved_rps"] == 49.9
    assert (out / "results.json").read_text().startswith('{\n  "schema"')
    for p in paths[1:]:
        p.unlink()
    rebuilt = rebuild(out)
    assert [p.name for p in rebuilt] == ["report.html", "stages.csv", "timeline.csv"]
    assert "Saturation point: 50 rps" in (out / "report.html").read_text(encoding="utf-8")
    assert len(read_csv(out / "stages.csv")) == 2


def test_rebuild_from_a_plain_json_file(tmp_path: Path) -> None:
    (tmp_path / "results.json").write_text(json.dumps({"schema": SCHEMA, "stages": []}))
    assert len(rebuild(tmp_path)) == 3
    assert "No stage results" in (tmp_path / "report.html").read_text(encoding="utf-8")


@pytest.mark.parametrize(("content", "message"), [
    (None, "no results.json in"),
    ("{not json", "is not valid JSON"),
    ("[1, 2]", "not a seldon-load results object"),
    ('{"schema": "other/v9"}', "has schema 'other/v9', expected 'seldon-load/results/v1'"),
    ("{}", "has schema None"),
])
def test_rebuild_errors_are_one_clear_line(tmp_path: Path, content: str | None, message: str) -> None:
    if content is not None:
        (tmp_path / "results.json").write_text(content)
    with pytest.raises(ConfigError) as info:
        rebuild(tmp_path)
    assert message in str(info.value) and "\n" not in str(info.value)
    assert not (tmp_path / "report.html").exists()


def test_write_all_lets_os_errors_through(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(OSError) as info:
        write_all(results(), blocker / "results")
    assert not isinstance(info.value, ConfigError)


def test_summary_text_lists_notes_and_uses_max_tested_rps() -> None:
    r = results()
    r["stages"] = r["stages"][:1]
    r["saturation"].update(saturated=False, first_unsustained_stage=None, max_tested_rps=400.0)
    r["notes"] = ["stopped by the user"]
    text = summary_text(r)
    assert "Not saturated up to 400 rps" in text and "Note: stopped by the user" in text
