"""Where a generator's CPU goes: per process (launcher, master, worker), per request, A/B.

Runs ``seldon-load run`` at 400 RPS (REST by default) against ``synth-1ms`` once per variant,
the variants alternating, and reads each process's on-CPU time from the kernel's own run-time
count (``/proc/PID/task/*/schedstat``, nanoseconds, unlike psutil's 10 ms ticks) over a 10 s
window, divided by the requests the target counted in it. A variant is ``NAME=ARGS`` (extra
options for ``seldon-load run``) or ``NAME@DIR=ARGS`` (run the code of another checkout, e.g.
a ``git worktree`` of an older commit)::

    python benchmarks/cpu_breakdown.py --variant base= --variant nostats=--no-locust-stats
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness as hx  # noqa: E402
import run_all as ra  # noqa: E402


def on_cpu_s(pid: int) -> float:
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/schedstat") as fh:
            total += int(fh.read().split()[0])
    return total / 1e9


def role(p: psutil.Process, launcher: int) -> str:
    cmd = p.cmdline()
    return "launcher" if p.pid == launcher else "master" if "--master" in cmd else "worker"


def one_run(cmd: list[str], cwd: Path, count, window_s: float) -> dict[str, float]:
    p = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         preexec_fn=ra._pin_self_for_children())
    try:
        base, deadline = count(), time.monotonic() + 60
        while count() - base < 2:
            if p.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"no load from {' '.join(cmd)}")
            time.sleep(0.05)
        time.sleep(2.0)
        procs = [psutil.Process(p.pid), *psutil.Process(p.pid).children(recursive=True)]
        a, ca = [on_cpu_s(q.pid) for q in procs], count()
        time.sleep(window_s)
        b, cb = [on_cpu_s(q.pid) for q in procs], count()
        per: dict[str, float] = {}
        for q, x, y in zip(procs, a, b, strict=True):
            name = role(q, p.pid)
            per[name] = per.get(name, 0.0) + (y - x) / (cb - ca) * 1e6
        per["total"] = sum(per.values())
        return per
    finally:
        p.wait(timeout=120)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variant", action="append", required=True, help="NAME=ARGS or NAME@DIR=ARGS")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--protocol", choices=("rest", "grpc"), default="rest")
    ap.add_argument("--rate", type=int, default=ra.RATE_RPS)
    ap.add_argument("--window", type=float, default=10.0)
    args = ap.parse_args(argv)
    variants = []
    for v in args.variant:
        head, _, extra = v.partition("=")
        name, _, tree = head.partition("@")
        variants.append((name, Path(tree).resolve() if tree else hx.ROOT, shlex.split(extra)))
    results: dict[str, list[dict[str, float]]] = {name: [] for name, _, _ in variants}
    hold = int(args.window + 5)
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        payload, _ = ra.write_payloads(tmp, "synth-1ms")
        with hx.MLServerTestbed(tmp / "testbed") as tb:
            ra.pin(tb.pid, ra.TARGET_CPU)
            host = tb.rest_url if args.protocol == "rest" else tb.grpc_target
            count = tb.counter("synth-1ms")
            for i in range(args.runs):
                for name, tree, extra in variants:
                    cmd = hx.seldon_load_cmd(host, "synth-1ms", args.protocol, f"{args.rate}:0s:{hold}s", 1,
                                             tmp / f"{name}-{i}", ["--payload", str(payload), *extra])
                    per = one_run(cmd, tree, count, args.window)
                    results[name].append(per)
                    print(f"{name} run {i + 1}: " + ", ".join(f"{k} {v:.1f}" for k, v in per.items()) + " us/request",
                          flush=True)
    for name, runs in results.items():
        keys = runs[0].keys()
        print(f"{name} median: " + ", ".join(f"{k} {statistics.median(r.get(k, 0.0) for r in runs):.1f}"
                                             for k in keys) + " us/request")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
