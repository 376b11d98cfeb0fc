"""Write a finished test's outputs and tell the user where they are.

Nothing measured is lost: if the results directory cannot be written, the error is said in
one line and the whole results document goes to standard output as JSON instead.
"""

from __future__ import annotations

import sys

import orjson

from seldon_load.report.console import summary_text
from seldon_load.report.rebuild import write_all
from seldon_load.safe_text import printable, shown


def publish(results: dict, results_dir: str, headless: bool = True, stream=None) -> list[str]:
    try:
        paths = [str(p) for p in write_all(results, results_dir)]
    except Exception as exc:  # noqa: BLE001 -- whatever failed, the measurements must survive
        why = (exc.strerror or str(exc)) if isinstance(exc, OSError) else f"{type(exc).__name__}: {exc}"
        sys.stderr.write(f"seldon-load: error: cannot write results to {shown(results_dir)}: {printable(why)}; "
                         "printing results.json to stdout instead\n")
        sys.stderr.flush()
        sys.stdout.write(orjson.dumps(results, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY
                                      | orjson.OPT_NON_STR_KEYS).decode() + "\n")
        sys.stdout.flush()
        return []
    stream = stream or sys.stdout
    print(summary_text(results), file=stream, flush=True)
    print(f"[seldon-load] results written to {printable(results_dir)}/ (report.html, results.json, stages.csv, timeline.csv)",
          file=stream, flush=True)
    return paths
