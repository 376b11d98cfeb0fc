"""The `sweep` and `compare` sub-commands' options (registered by ``seldon_load.cli``)."""

from __future__ import annotations

import argparse

EPILOG_SWEEP = """examples:
  seldon-load sweep --host http://127.0.0.1:8080 --model synth-5ms --stages 50:5s:20s,100:5s:20s \\
      --vary batch-size=1,4 --results results/batch
  seldon-load sweep --model synth-5ms --auto --max-rps 400 \\
      --vary host=http://127.0.0.1:8080,127.0.0.1:8081 --results results/rest-vs-grpc
  seldon-load sweep --experiment plan.yaml
Any `seldon-load run` option not listed here is the base of every variant; --vary OPTION=V1,V2
(repeatable; values split on '|' instead when one holds a comma) makes the matrix.
"""

EPILOG_COMPARE = """examples:
  seldon-load compare results/before results/after
  seldon-load compare results/batch --baseline batch1 --output results/batch
"""


def add_sweep_parser(sub: argparse._SubParsersAction, run_parser: argparse.ArgumentParser) -> None:
    p = sub.add_parser("sweep", help="run the same test over a matrix of settings, then compare",
                       epilog=EPILOG_SWEEP, allow_abbrev=False, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--vary", action="append", metavar="OPTION=V1,V2",
                   help="a run option and its values; repeat for a matrix (their product)")
    p.add_argument("--experiment", metavar="FILE",
                   help="YAML plan: base options, vary (a matrix), variants, overrides (when/set)")
    p.add_argument("--results", help="where each variant's RESULTS/<variant>/ and the comparison go "
                                     "(default results/sweep, or the plan's results)")
    p.add_argument("--baseline", metavar="NAME", help="variant the others are compared to (default the first)")
    p.set_defaults(_run_parser=run_parser)


def add_compare_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compare", help="compare results directories: comparison.json and comparison.html",
                       epilog=EPILOG_COMPARE, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dirs", nargs="+", metavar="DIR", help="results directories (or a sweep's directory)")
    p.add_argument("--baseline", metavar="NAME", help="the variant (directory name) others are compared to "
                                                       "(default the first)")
    p.add_argument("--allow-different-targets", action="store_true",
                   help="compare runs of different models or pipelines")
    p.add_argument("--output", default="results/comparison",
                   help="directory for comparison.json and comparison.html (default results/comparison)")
