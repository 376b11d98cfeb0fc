"""CPU the testbed's MLServer process spends on a pipeline, per offered rate.

The testbed runs its pipeline runtime inside MLServer's one process, each step a gRPC call
back into it, so at some rate that process's core, not the pipeline's slowest model, is the
limit. This measures where: for each rate, one in-process seldon-load run, and the process's
CPU (user + sys, psutil) over the 5 s after the first 4.

Usage:  python benchmarks/testbed_cpu.py [--pipeline branching] [--rates 48,100,130]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import time
from pathlib import Path

import harness as hx


def measure(tb, pipeline: str, rate: float, out: Path) -> dict:
    cmd = hx.seldon_load_cmd(tb.rest_url, "", "rest", f"{rate:g}:0s:10s", 0, out, ["--settle", "2s"])
    cmd[cmd.index("--model"):cmd.index("--model") + 2] = ["--pipeline", pipeline]
    proc = subprocess.Popen(cmd, cwd=hx.ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        time.sleep(4.0)
        a, t_a = hx.pid_cpu_seconds(tb.pid), time.monotonic()
        time.sleep(5.0)
        cores = (hx.pid_cpu_seconds(tb.pid) - a) / (time.monotonic() - t_a)
        proc.wait(timeout=60)
    finally:
        hx.stop(proc)
    achieved = json.loads((out / "results.json").read_text())["stages"][0]["achieved_rps"]
    return {"pipeline": pipeline, "rate_rps": rate, "achieved_rps": achieved, "process_cores": round(cores, 2),
            "cpu_ms_per_request": round(1000 * cores / achieved, 2) if achieved else None}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pipeline", action="append", help="pipeline(s) (default: branching and slow-branch)")
    ap.add_argument("--rates", default="48,100,130", help="offered rates, comma-separated")
    args = ap.parse_args()
    rates = [float(r) for r in args.rates.split(",")]
    with tempfile.TemporaryDirectory() as tmp, hx.MLServerTestbed(Path(tmp) / "testbed") as tb:
        for pipeline in args.pipeline or ["branching", "slow-branch"]:
            for i, rate in enumerate(rates):
                print(json.dumps(measure(tb, pipeline, rate, Path(tmp) / f"{pipeline}-{i}")), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
