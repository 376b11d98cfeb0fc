"""Write every report file from a results dict, or rebuild them offline from DIR/results.json."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from seldon_load.errors import ConfigError
from seldon_load.limits import MAX_RESULTS_BYTES, read_capped
from seldon_load.report.csvout import write_stages_csv, write_timeline_csv
from seldon_load.report.html import write_html
from seldon_load.safe_text import clip, shown

SCHEMA = "seldon-load/results/v1"
RESULTS_JSON = "results.json"


def _write_views(results: dict[str, Any], out: Path) -> list[Path]:
    return [write_html(results, out / "report.html"), write_stages_csv(results, out / "stages.csv"),
            write_timeline_csv(results, out / "timeline.csv")]


def write_all(results: dict[str, Any], results_dir: str | Path) -> list[Path]:
    """results.json first (so the data survives whatever follows), then report.html and the CSVs.

    An OSError (directory not creatable or not writable, disk full) propagates unchanged: the
    caller then prints the results to stdout instead of losing them.
    """
    out = Path(results_dir)
    out.mkdir(parents=True, exist_ok=True)
    data = orjson.dumps(results, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY
                        | orjson.OPT_NON_STR_KEYS | orjson.OPT_APPEND_NEWLINE)
    path = out / RESULTS_JSON
    path.write_bytes(data)
    return [path, *_write_views(results, out)]


def load_results(results_dir: str | Path) -> dict[str, Any]:
    """Read and check DIR/results.json; every problem is one ConfigError line."""
    path = Path(results_dir) / RESULTS_JSON
    if not path.exists():
        raise ConfigError(f"no {RESULTS_JSON} in {clip(results_dir)}: give the --results directory of a run")
    try:
        data = orjson.loads(read_capped(path, MAX_RESULTS_BYTES, "results file"))
    except orjson.JSONDecodeError as e:
        raise ConfigError(f"{path} is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} is not a seldon-load results object (top level is not a JSON object)")
    if data.get("schema") != SCHEMA:
        raise ConfigError(f"{path} has schema {shown(data.get('schema'))}, expected {SCHEMA!r}")
    return data


def rebuild(results_dir: str | Path) -> list[Path]:
    """Rewrite report.html, stages.csv and timeline.csv from DIR/results.json; return their paths."""
    results = load_results(results_dir)
    try:
        return _write_views(results, Path(results_dir))
    except OSError as e:
        raise ConfigError(f"cannot write the report files in {results_dir}: {e.strerror or e}") from None
