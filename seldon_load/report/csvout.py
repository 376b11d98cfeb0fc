"""Flat CSV views of results (one row per stage; one row per timeline bucket) for spreadsheets.

Columns are fixed so scripts can rely on them; a missing value is an empty cell.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

PERCENTILES = ("mean", "p50", "p90", "p95", "p99", "p999", "max")
STAGE_COLUMNS = [
    "index", "target_rps", "users", "ramp_start_s", "start_s", "end_s", "offered_rps", "achieved_rps",
    "scheduled", "requests", "ok", "failures", "dropped",
    *(f"latency_ms_{p}" for p in PERCENTILES),
    "service_ms_p50", "service_ms_p99", "send_lag_ms_p50", "send_lag_ms_p99", "send_lag_ms_max",
    "cpu_percent_max", "steal_percent_max", "generator_healthy", "latency_trend",
    "latency_trend_delta_ms", "sustained", "reasons", "failures_by_kind", "fault_kind", "fault_count",
    "fault_example", "achieved_ips",
]
# stages[i].server (--resource-selector): what the server spent in the window
SERVER_KEYS = ("cpu_cores", "cpu_ms_per_request", "cpu_ms_per_inference", "requests_per_core", "memory_bytes_max",
               "memory_bytes_mean", "gpu_util_percent", "cost_per_million_inferences", "note")
STAGE_COLUMNS += [f"server_{k}" for k in SERVER_KEYS]
TIMELINE_COLUMNS = ["t_s", "stage", "phase", "offered_rps", "achieved_rps", "ok", "failures", "dropped",
                    "p50_ms", "p99_ms", "lag_p99_ms"]


def _cell(v: Any) -> str | int | float:
    if v is None or isinstance(v, (dict, list)):
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and math.isnan(v):
        return ""
    return v if isinstance(v, (int, float)) else str(v)


def _sub(d: dict[str, Any], key: str) -> dict[str, Any]:
    v = d.get(key)
    return v if isinstance(v, dict) else {}


def stage_row(s: dict[str, Any]) -> dict[str, Any]:
    """One stage as flat CSV cells."""
    row = {k: _cell(s.get(k)) for k in STAGE_COLUMNS}
    for group, keys in (("latency_ms", PERCENTILES), ("service_ms", ("p50", "p99")),
                        ("send_lag_ms", ("p50", "p99", "max"))):
        sub = _sub(s, group)
        row.update({f"{group}_{k}": _cell(sub.get(k)) for k in keys})
    row.update({f"server_{k}": _cell(v) for k, v in _sub(s, "server").items() if k in SERVER_KEYS})
    why = s.get("reasons")
    row["reasons"] = "; ".join(map(str, why)) if isinstance(why, list) else _cell(why)
    kinds = _sub(s, "failures_by_kind")
    row["failures_by_kind"] = ";".join(f"{k}={_cell(n)}" for k, n in kinds.items())
    fault = _sub(s, "fault")
    row.update(fault_kind=_cell(fault.get("kind")), fault_count=_cell(fault.get("count")),
               fault_example=_cell(fault.get("example")))
    return row


def _rows(results: Any, key: str) -> list[dict[str, Any]]:
    v = results.get(key) if isinstance(results, dict) else None
    return [x for x in v if isinstance(x, dict)] if isinstance(v, list) else []


def write_stages_csv(results: dict[str, Any], path: str | Path) -> Path:
    path = Path(path)
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=STAGE_COLUMNS)
        w.writeheader()
        w.writerows(stage_row(s) for s in _rows(results, "stages"))
    return path


def write_timeline_csv(results: dict[str, Any], path: str | Path) -> Path:
    """Known columns first, then any scalar extension fields found in the buckets."""
    path = Path(path)
    rows = _rows(results, "timeline")
    extra = sorted({k for row in rows for k, v in row.items()
                    if k not in TIMELINE_COLUMNS and not isinstance(v, (dict, list))})
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=TIMELINE_COLUMNS + extra, extrasaction="ignore")
        w.writeheader()
        w.writerows({k: _cell(row.get(k)) for k in TIMELINE_COLUMNS + extra} for row in rows)
    return path
