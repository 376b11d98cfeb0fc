"""How many workers can one seldon-load master take? A real master, N simulated workers.

For each N (default 10, 50, 100, 200, 500) this starts a real headless Locust master with
seldon-load's plugin (``locust -f seldon_load/locustfile.py --master --auto``) and N
simulated workers (``sim_workers.py``: zmq clients speaking Locust's worker protocol, each
shipping a realistic report every second: Locust's statistics entry plus a ReportMessage with
its exact share of the schedule, three histograms per window over a log-normal latency
spread, one failure in a thousand). The auto search runs three rising stages (100, 200, 400
requests a second per worker) and judges each; nothing is sent to a server.

Measured per N:
* the master's CPU (user + sys of its process, psutil) per second, as a share of one core:
  the mean over the hold of the busiest stage and the highest one-second value;
* the lag of its verdicts: when the plan a verdict produced reached the last worker, after
  the moment the verdict was due (stage end + the master's verdict delay). The shape ticks
  once a second, so up to ~1 s is the design, not load;
* heartbeat round trips (the master answers each worker's heartbeat from the same loop that
  merges reports: its queueing delay), and workers the master lost;
* checked, not just timed: every second of ``results.json``'s timeline holds exactly the
  requests, ok answers and failures the workers reported (the accounting identity), and its
  p99 is within the histogram's 2**-7 bound of the exact p99 of the raw latencies reported
  (every third second). Every verdict must say sustained (the search rises to its ceiling):
  a verdict taken before the reports were merged would not.

A master "handles" N with 50 % headroom when all checks hold, its CPU over the busiest hold
is at most 50 % of one core, its verdicts lag at most 1.5 s and no worker went missing.

    .venv/bin/python benchmarks/master_scale.py                  # ~5 minutes
    .venv/bin/python benchmarks/master_scale.py --workers 10,50 --out /tmp/scale.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fast_target import MODEL, PyTarget  # noqa: E402
from harness import ROOT, free_port  # noqa: E402
from sim_workers import Simulation  # noqa: E402

from seldon_load.measure.histogram import MAX_RELATIVE_ERROR  # noqa: E402
from seldon_load.oip.target import parse_target  # noqa: E402

VERDICT_DELAY_S = 2.5  # the plugin's verdict delay on a master (plugin.Session.new_controller)
PER_WORKER_RPS = (100, 400)  # the auto search's first stage and ceiling, per worker
HOLD_S = 6
HEADROOM_CPU = 0.5
MAX_VERDICT_LAG_S = 1.5


class CpuSampler(threading.Thread):
    """(perf_counter, CPU seconds) of one process, every ``every_s``."""

    def __init__(self, pid: int, every_s: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.proc = psutil.Process(pid)
        self.every_s = every_s
        self.samples: list[tuple[float, float]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                t = self.proc.cpu_times()
            except psutil.Error:
                return
            self.samples.append((time.perf_counter(), t.user + t.system))
            self.stop.wait(self.every_s)

    def span(self, t_from: float, t_to: float) -> tuple[float, float, float] | None:
        """(first, last sample time, CPU seconds between them) within [t_from, t_to]."""
        inside = [s for s in self.samples if t_from <= s[0] <= t_to]
        if len(inside) < 2:
            return None
        (a, ca), (b, cb) = inside[0], inside[-1]
        return a, b, cb - ca

    def share(self, t_from: float, t_to: float) -> float | None:
        """CPU seconds per second between the samples nearest to the two times."""
        span = self.span(t_from, t_to)
        return None if span is None else span[2] / (span[1] - span[0])

    def max_1s(self, t_from: float, t_to: float) -> float | None:
        inside = [s for s in self.samples if t_from <= s[0] <= t_to]
        rates = [(inside[k + 2][1] - inside[k][1]) / (inside[k + 2][0] - inside[k][0]) for k in range(len(inside) - 2)]
        return max(rates) if rates else None


def master_argv(n: int, port: int, host: str, results: Path) -> list[str]:
    lo, hi = (r * n for r in PER_WORKER_RPS)
    return [str(Path(sys.executable).parent / "locust"), "-f", str(ROOT / "seldon_load" / "locustfile.py"),
            "--master", "--headless", "--expect-workers", str(n), "--expect-workers-max-wait", "120",
            "--master-bind-host", "127.0.0.1", "--master-bind-port", str(port), "--host", host, "--model", MODEL,
            "--auto", "--auto-start-rps", str(lo), "--max-rps", str(hi), "--auto-hold", f"{HOLD_S}s",
            "--results", str(results)]


def check(sim: Simulation, results: dict[str, Any]) -> dict[str, Any]:
    """The accounting identity per second and the p99 bound; raises AssertionError on a miss."""
    rows = {r["t_s"]: r for r in results["timeline"]}
    for sec, (scheduled, ok, failed) in sorted(sim.sent.items()):
        r = rows.get(sec)
        assert r is not None, f"second {sec}: reported by the workers, missing at the master"
        got = (r["offered_rps"], r["ok"], r["failures"], r["dropped"])
        assert got == (scheduled, ok, failed, 0), f"second {sec}: master {got} != workers {(scheduled, ok, failed, 0)}"
    extra = sum(r["offered_rps"] for s, r in rows.items() if s not in sim.sent)
    assert extra == 0, f"{extra} requests at the master that no worker reported"
    worst = 0.0
    for sec, parts in sim.tracked.items():
        values = np.sort(np.concatenate(parts))
        exact = float(values[max(1, int(np.ceil(0.99 * values.size))) - 1]) / 1000.0
        got = rows[sec]["p99_ms"]
        err = abs(got - exact)
        assert err <= exact * MAX_RELATIVE_ERROR + 0.001, f"second {sec}: p99 {got} ms vs exact {exact} ms"
        worst = max(worst, err / exact)
    return {"seconds_checked": len(sim.sent), "requests": sum(v[0] for v in sim.sent.values()),
            "p99_seconds_checked": len(sim.tracked), "p99_worst_relative_error": worst}


def measure(n: int, host: str, request_name: str, workdir: Path) -> dict[str, Any]:
    port = free_port()
    results_dir = workdir / f"n{n}"
    log = open(workdir / f"master-{n}.log", "wb")  # noqa: SIM115 (the child owns it)
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOCUST_")}
    master = subprocess.Popen(master_argv(n, port, host, results_dir), stdout=log, stderr=subprocess.STDOUT,
                              stdin=subprocess.DEVNULL, env=env, cwd=workdir, start_new_session=True)
    log.close()
    if len(os.sched_getaffinity(0)) >= 2:  # master and simulated workers on a core each
        psutil.Process(master.pid).cpu_affinity([0])
        os.sched_setaffinity(0, {1})
    sampler = CpuSampler(master.pid)
    sampler.start()
    sim = Simulation(n, port, request_name, VERDICT_DELAY_S)
    me = psutil.Process()
    cpu0, wall0 = sum(me.cpu_times()[:2]), time.perf_counter()
    try:
        sim.run(deadline_s=180.0)
        code = master.wait(timeout=60)
    finally:
        if master.poll() is None:
            master.kill()
            master.wait(timeout=10)
        sampler.stop.set()
        sim.close()
    sim_cpu = (sum(me.cpu_times()[:2]) - cpu0) / (time.perf_counter() - wall0)
    out: dict[str, Any] = {"workers": n, "exit": code}
    results_file = results_dir / "results.json"
    if code != 0 or not results_file.is_file():
        out["error"] = (workdir / f"master-{n}.log").read_text(errors="replace")[-3000:]
        return out
    results = json.loads(results_file.read_text())
    stages = results["stages"]
    t0 = min(w.t0 for w in sim.workers if w.t0 is not None)
    busiest = stages[-1]
    hold = (t0 + busiest["start_s"], t0 + busiest["end_s"])
    rtts = [rtt for at, rtt in sim.heartbeat_rtt_s if at >= t0]
    run = sampler.span(t0, t0 + busiest["end_s"])
    reports_in_run = sum(1 for t in sim.report_times if run and run[0] <= t <= run[1])
    out.update({
        "targets_rps": [s["target_rps"] for s in stages],
        "all_sustained": all(s["sustained"] for s in stages)
        and [s["target_rps"] for s in stages] == sorted({s["target_rps"] for s in stages}),
        "workers_min": min(w["workers"] for w in results["workers_timeline"]),
        "master_cpu_busiest_hold": sampler.share(*hold),
        "master_cpu_max_1s": sampler.max_1s(t0, t0 + stages[-1]["end_s"] + 3),
        "master_cpu_us_per_report": 1e6 * run[2] / reports_in_run if run and reports_in_run else None,
        "master_cpu_run": run[2] / (run[1] - run[0]) if run else None,
        "verdict_lag_s": [round(sim.verdict_lag_s[k], 3) for k in sorted(sim.verdict_lag_s)],
        "heartbeat_rtt_ms": {"p50": 1000 * float(np.percentile(rtts, 50)), "p99": 1000 * float(np.percentile(rtts, 99)),
                             "max": 1000 * max(rtts)} if rtts else None,
        "reports_per_s": sim.reports / max(1e-9, time.perf_counter() - wall0),
        "report_bytes_mean": sim.report_bytes / max(1, sim.reports),
        "simulator_cpu": sim_cpu,
    })
    out["checks"] = check(sim, results)
    lags = out["verdict_lag_s"]
    out["handled_with_headroom"] = bool(
        out["all_sustained"] and out["workers_min"] == n and lags and max(lags) <= MAX_VERDICT_LAG_S
        and out["master_cpu_busiest_hold"] is not None and out["master_cpu_busiest_hold"] <= HEADROOM_CPU)
    return out


def _median(rows: list[dict[str, Any]], key: str) -> float | None:
    vals = [r[key] for r in rows if r.get(key) is not None]
    return float(np.median(vals)) if vals else None


def combine(n: int, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over the runs of one N; it is handled only if every run's checks held."""
    ok = [r for r in runs if "error" not in r]
    row: dict[str, Any] = {"workers": n, "runs": runs}
    if len(ok) < len(runs):
        row["error"] = "a run failed"
        return row
    for key in ("master_cpu_busiest_hold", "master_cpu_max_1s", "master_cpu_run", "master_cpu_us_per_report",
                "simulator_cpu",
                "report_bytes_mean"):
        row[key] = _median(ok, key)
    row["verdict_lag_max_s"] = max(max(r["verdict_lag_s"]) for r in ok)
    row["heartbeat_rtt_p99_ms"] = _median([{"v": r["heartbeat_rtt_ms"]["p99"]} for r in ok], "v")
    row["workers_lost"] = max(n - r["workers_min"] for r in ok)
    row["handled_with_headroom"] = bool(
        all(r["all_sustained"] for r in ok) and row["workers_lost"] == 0
        and row["verdict_lag_max_s"] <= MAX_VERDICT_LAG_S and row["master_cpu_busiest_hold"] is not None
        and row["master_cpu_busiest_hold"] <= HEADROOM_CPU)
    return row


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--workers", default="10,50,100,200,500", help="comma-separated worker counts")
    p.add_argument("--runs", type=int, default=3, help="runs per worker count (medians are reported)")
    p.add_argument("--out", help="add the figures to this JSON file under the key master_scale")
    a = p.parse_args(argv)
    counts = [int(x) for x in a.workers.split(",")]
    rows = []
    with PyTarget() as target, tempfile.TemporaryDirectory(prefix="master-scale-") as tmp:
        request_name = f"rest infer {parse_target(target.rest_url, MODEL, None).display_name}"
        for n in counts:
            runs = []
            for _ in range(a.runs):
                run = measure(n, target.rest_url, request_name, Path(tmp))
                print(json.dumps(run), file=sys.stderr, flush=True)
                runs.append(run)
                if "error" in run:
                    break
            rows.append(combine(n, runs))
            if "error" in rows[-1]:
                break
    handled = [r["workers"] for r in rows if r.get("handled_with_headroom")]
    fit = [(r["workers"], r["master_cpu_busiest_hold"]) for r in rows if r.get("master_cpu_busiest_hold") is not None]
    projected = None
    if len(fit) >= 2:  # the master's CPU as fixed + per-worker cost, least squares: where it reaches half a core
        per_worker, fixed = np.polyfit([f[0] for f in fit], [f[1] for f in fit], 1)
        projected = int((HEADROOM_CPU - fixed) / per_worker) if per_worker > 0 else None
    summary = {"machine": {"cpus": psutil.cpu_count(), "python": sys.version.split()[0]},
               "per_worker_rps": PER_WORKER_RPS, "hold_s": HOLD_S, "runs": a.runs, "rows": rows,
               "largest_handled_with_headroom": max(handled) if handled else None,
               "workers_at_half_core_projected": projected}
    if a.out:
        out = Path(a.out)
        doc = json.loads(out.read_text()) if out.is_file() else {}
        doc["master_scale"] = summary
        out.write_text(json.dumps(doc, indent=1))  # the layout of docs/performance-data.json
    print("| workers | master CPU, busiest hold (cores) | max 1 s | CPU per report (µs) | verdict lag max (s) "
          "| heartbeat p99 (ms) | workers lost | 50 % headroom |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        if "error" in r:
            print(f"| {r['workers']} | failed | | | | | | |")
            continue
        print(f"| {r['workers']} | {r['master_cpu_busiest_hold']:.2f} | {r['master_cpu_max_1s']:.2f} | "
              f"{r['master_cpu_us_per_report']:.0f} | {r['verdict_lag_max_s']:.2f} | {r['heartbeat_rtt_p99_ms']:.0f} | "
              f"{r['workers_lost']} | {'yes' if r['handled_with_headroom'] else 'no'} |")
    print(f"largest N with 50 % headroom: {summary['largest_handled_with_headroom']}; "
          f"projected (linear fit of the busiest holds' CPU): {summary['workers_at_half_core_projected']}")
    return 0 if rows and all("error" not in r for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
