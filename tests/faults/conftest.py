"""Fixtures of the fault-injection suite: the misbehaving server, background runs, accounting checks.

Every process started here runs in its own session and is stopped by its process group at
the end of the test that started it, whatever happened.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import psutil
import pytest

from seldon_load.load.plan import RatePlan, parse_stages
from tests.helpers.run import Run, assert_accounting

BADSERVER = Path(__file__).with_name("badserver.py")
ROOT = Path(__file__).resolve().parents[2]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "faults: fault injection against a misbehaving or killed server")


def free_ports(n: int) -> list[int]:
    import socket

    socks = []
    try:
        for _ in range(n):  # held together so they differ
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def stop_group(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout_s: float = 10) -> None:
    """Signal the process group of ``proc`` (a session we started) and reap it; SIGKILL if it lingers."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=10)


@dataclass
class BadServer:
    """One misbehaving OIP server process (see badserver.py) on fixed loopback ports."""

    rest_port: int
    grpc_port: int
    args: list[str]
    proc: subprocess.Popen | None = None

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.rest_port}"

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def host(self, protocol: str) -> str:
        return self.rest_url if protocol == "rest" else self.grpc_target

    def start(self, timeout_s: float = 20) -> BadServer:
        cmd = [sys.executable, str(BADSERVER), "--rest-port", str(self.rest_port),
               "--grpc-port", str(self.grpc_port), *self.args]
        deadline = time.monotonic() + timeout_s
        while True:  # the port of a killed server may take a moment to be free again
            self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                         start_new_session=True)
            line = self.proc.stdout.readline()
            if line.strip() == "READY":
                return self
            stop_group(self.proc, signal.SIGKILL)
            if time.monotonic() > deadline:
                raise RuntimeError(f"badserver did not start: {self.proc.stderr.read()[-2000:]}")
            time.sleep(0.3)

    def kill(self) -> None:
        """SIGKILL: connections die with the process (the kernel resets them)."""
        assert self.proc is not None
        stop_group(self.proc, signal.SIGKILL)

    def stop(self) -> None:
        if self.proc is not None:
            stop_group(self.proc)

    def stats(self) -> dict[str, int]:
        """Answers the server completed, by ``protocol:behaviour``."""
        if "--tls-cert" not in self.args:
            with urllib.request.urlopen(f"{self.rest_url}/_stats", timeout=5) as r:
                return json.loads(r.read())
        import ssl

        opt = dict(zip(self.args, self.args[1:], strict=False))
        ctx = ssl.create_default_context(cafile=opt.get("--tls-client-ca"))
        ctx.load_cert_chain(opt["--tls-cert"], opt["--tls-key"])  # doubles as the client certificate
        url = f"https://127.0.0.1:{self.rest_port}/_stats"
        with urllib.request.urlopen(url, timeout=5, context=ctx) as r:
            return json.loads(r.read())

    def infer_count(self, protocol: str | None = None) -> int:
        return sum(n for k, n in self.stats().items() if protocol is None or k.startswith(f"{protocol}:"))


@pytest.fixture
def bad_server() -> Iterator:
    """Factory: ``bad_server("--mode", "mix", ...)`` starts a server on fresh ports; all stopped at the end."""
    servers: list[BadServer] = []

    def start(*args: str) -> BadServer:
        rest_port, grpc_port = free_ports(2)
        server = BadServer(rest_port, grpc_port, list(args)).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@dataclass
class Background:
    """`seldon-load run` started in the background (own session), finished with ``finish``."""

    proc: subprocess.Popen
    results_dir: Path
    started: float = field(default_factory=time.monotonic)

    def children(self, flag: str) -> list[psutil.Process]:
        try:
            return [p for p in psutil.Process(self.proc.pid).children(recursive=True) if flag in p.cmdline()]
        except psutil.Error:
            return []

    def finish(self, timeout_s: float = 120) -> Run:
        try:
            out, err = self.proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            stop_group(self.proc, signal.SIGKILL)
            raise
        return Run(self.proc.returncode, out, err, self.results_dir)


@pytest.fixture
def background() -> Iterator:
    runs: list[Background] = []

    def start(args: list[str], results_dir: Path, env: dict[str, str] | None = None) -> Background:
        cmd = [sys.executable, "-m", "seldon_load.cli", *args, "--results", str(results_dir)]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True, cwd=ROOT, env=env)
        runs.append(Background(proc, results_dir))
        return runs[-1]

    yield start
    for run in runs:
        if run.proc.poll() is None:
            stop_group(run.proc, signal.SIGKILL)


def wait_until(predicate, timeout_s: float, what: str, interval_s: float = 0.1) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:g}s waiting for {what}")
        time.sleep(interval_s)


# ----------------------------------------------------------------------------- checks


def totals(results: dict) -> dict[str, int]:
    """Whole-run counts from the timeline (every second of the run, not only measured windows)."""
    keys = ("offered_rps", "ok", "failures", "dropped")
    return {k: sum(int(row[k]) for row in results["timeline"]) for k in keys}


def plan_total(stages: str) -> int:
    return round(RatePlan.from_stages(parse_stages(stages)).total_count())


def error_kinds(results: dict) -> dict[str, int]:
    return {e["kind"]: e["count"] for e in results["errors"]}


def check_run(run: Run, stages: str | None = None) -> dict:
    """The run finished, wrote every report file, and accounted every scheduled request once."""
    assert run.code in (0, 1), (run.code, run.stderr[-3000:])
    for name in ("results.json", "report.html", "stages.csv", "timeline.csv"):
        assert (run.results_dir / name).is_file(), name
    res = run.results
    assert_accounting(res)
    t = totals(res)
    assert t["offered_rps"] == t["ok"] + t["failures"] + t["dropped"]
    failures = sum(n for kind, n in error_kinds(res).items() if kind != "dropped")
    assert failures == t["failures"], (error_kinds(res), t)  # every failure has a category
    if stages is not None:  # open loop: every arrival of the plan was scheduled, none invented
        assert t["offered_rps"] == plan_total(stages), t
    return res


def json_from_stdout(stdout: str) -> dict:
    """The results document a run printed on stdout when it could not write its directory."""
    start = stdout.index("{\n")
    end = stdout.index("\n}\n", start) + 2
    return orjson.loads(stdout[start:end])
