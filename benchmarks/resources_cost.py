"""What reading server resources costs: Prometheus queries per stage and time added to a run.

The testbed with ``--with-prometheus`` (a real Prometheus scraping process-exporter every
second); the same stepped run on ``synth-cpu-5ms`` (5 ms of CPU per request) with and without
``--resource-selector``, alternated, ``--runs`` times each. Reported: queries per stage, time
the queries took per stage, and the extra wall time of the whole command as a share of the run
(mostly the wait for the scrape after the last window's end, which must be in before that
window is read), plus CPU-ms per request measured against the model's known 5 ms.

Usage:  python benchmarks/resources_cost.py [--runs 3] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from seldon_load.testbed.prometheus import TESTBED_SELECTOR, available  # noqa: E402
from seldon_load.testbed.server import Testbed  # noqa: E402

STAGES = "20:1s:5s,40:1s:5s,80:1s:5s"


def one_run(tb: Testbed, out: Path, resources: bool) -> dict:
    cmd = [sys.executable, "-m", "seldon_load.cli", "run", "--host", tb.rest_url, "--model", "synth-cpu-5ms",
           "--stages", STAGES, "--settle", "1s", "--workers", "0", "--results", str(out)]
    if resources:
        cmd += ["--prometheus-url", tb.prometheus.url, "--resource-selector", TESTBED_SELECTOR]
    started = time.monotonic()
    subprocess.run(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True, timeout=180)
    wall_s = time.monotonic() - started
    r = json.loads((out / "results.json").read_text())
    row = {"wall_s": wall_s, "stages": len(r["stages"])}
    if resources:
        meta = r["resources"]
        row.update(queries=meta["queries"], query_s=meta["query_s"], read_s=meta["read_s"],
                   cpu_ms_per_request=[s["server"]["cpu_ms_per_request"] for s in r["stages"]])
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--out", help="write the numbers as JSON here")
    a = ap.parse_args(argv)
    if not available():
        print("prometheus / prometheus-process-exporter not installed (make test installs them as root)")
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        tb = Testbed.for_tests(tmp, prometheus=True)
        tb.up(timeout_s=120)
        try:
            plain, withres = [], []
            for i in range(a.runs):
                plain.append(one_run(tb, Path(tmp) / f"plain{i}", False))
                withres.append(one_run(tb, Path(tmp) / f"res{i}", True))
        finally:
            tb.down()
    n_stages = withres[0]["stages"]
    wall_plain = statistics.median(r["wall_s"] for r in plain)
    wall_res = statistics.median(r["wall_s"] for r in withres)
    cpu = [v for r in withres for v in r["cpu_ms_per_request"] if v is not None]
    figures = {
        "stages": n_stages,
        "queries_per_stage": statistics.median(r["queries"] for r in withres) / n_stages,
        "query_ms_per_stage": round(statistics.median(r["query_s"] for r in withres) * 1000 / n_stages, 2),
        "read_s": statistics.median(r["read_s"] for r in withres),
        "wall_s_without": round(wall_plain, 2),
        "wall_s_with": round(wall_res, 2),
        "added_wall_ratio": round(wall_res / wall_plain - 1, 3),
        "cpu_ms_per_request_median": statistics.median(cpu),
        "cpu_ms_per_request_over_model_cost": round(statistics.median(cpu) / 5.0, 3),
        "runs": a.runs,
    }
    print(json.dumps(figures, indent=2))
    if a.out:
        Path(a.out).write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
