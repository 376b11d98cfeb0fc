"""Write a finished test's outputs and tell the user where they are.

Nothing measured is lost: if the results directory cannot be written, the error is said in
one line and the whole results document goes to standard output as JSON instead.
"""

from __future__ import annotations

import sys

import orjson

from seldon_load.report.console import summary_text
from seldon_load.report.rebuild import write_all


def publish(results: dict, results_dir: str, headless: bool = True, stream=None) -> list[str]:
    try:
        paths = [str(p) for p in write_all(results, results_dir)]
    except OSError as exc:
        sys.stderr.write(f"seldon-load: error: cannot write results to {results_dir!r}: {exc.strerror or exc}; "
                         "printing results.json to stdout instead\n")
        sys.stdout.write(orjson.dumps(results, option=orjson.OPT_INDENT_2).decode() + "\n")
        sys.stdout.flush()
        return []
    stream = stream or sys.stdout
    print(summary_text(results), file=stream, flush=True)
    print(f"[seldon-load] results written to {results_dir}/ (report.html, results.json, stages.csv, timeline.csv)",
          file=stream, flush=True)
    return paths
