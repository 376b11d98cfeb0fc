"""docker-compose.yml's own commands, run as local processes (no docker engine needed).

The test reads the compose file, interpolates it the way Compose does (from a fixed "shell"
environment below), rewrites container host names, ports, paths and programs through one
explicit translation table, and starts testbed, master and two workers on 127.0.0.1: a
short headless open-loop run. What passes here is what ``docker compose up`` runs, so the
compose file cannot rot unnoticed. Every process is stopped by its process group at the end.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from seldon_load.testbed.server import Testbed

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
BIN = Path(sys.executable).parent
WORKERS = 2

# What a user would set in the shell (or .env) for a short headless run with two workers.
SHELL_ENV = {
    "LOCUST_HEADLESS": "true",
    "LOCUST_EXPECT_WORKERS": str(WORKERS),
    "LOCUST_EXPECT_WORKERS_MAX_WAIT": "60",
    "LOCUST_STAGES": "20:1s:5s",
}
# Our own variables must not leak into the processes: only the compose file sets them.
_SCRUB = ("LOCUST_", "TESTBED_", "MLSERVER_")
_VAR = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?-)([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)")


def interpolate(value, shell: dict[str, str]):
    """Compose variable substitution: ${VAR}, $VAR, ${VAR:-default}, ${VAR-default}, $$."""
    if isinstance(value, dict):
        return {k: interpolate(v, shell) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, shell) for v in value]
    if not isinstance(value, str):
        return value

    def sub(m: re.Match) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group(1) or m.group(4)
        op, default = m.group(2), m.group(3)
        if op == ":-":
            return shell.get(name) or default
        if op == "-":
            return shell[name] if name in shell else default
        return shell.get(name, "")

    return _VAR.sub(sub, value)


def service_env(service: dict, shell: dict[str, str]) -> dict[str, str]:
    """`environment:` as list or mapping; a name without value passes the shell's through (or nothing)."""
    raw = service.get("environment") or {}
    items = raw.items() if isinstance(raw, dict) else [
        tuple(e.split("=", 1)) if "=" in e else (e, None) for e in raw
    ]
    out = {}
    for key, value in items:
        if value is None:
            if key in shell:
                out[key] = shell[key]
        else:
            out[key] = str(value)
    return out


def as_argv(command) -> list[str]:
    return shlex.split(command) if isinstance(command, str) else [str(c) for c in command]


def healthcheck_argv(service: dict) -> list[str]:
    test = service["healthcheck"]["test"]
    if isinstance(test, str):
        return ["sh", "-c", test]
    kind, *rest = test
    assert kind in ("CMD", "CMD-SHELL"), f"healthcheck form {kind!r} not handled here"
    return rest if kind == "CMD" else ["sh", "-c", rest[0]]


def container_ports(compose: dict) -> set[int]:
    """Every container port the compose file publishes ("HOST:CONTAINER")."""
    ports = set()
    for svc in compose["services"].values():
        for p in svc.get("ports", []):
            ports.add(int(str(p).rsplit(":", 1)[-1].split("/")[0]))
    return ports


def free_ports(n: int) -> list[int]:
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


@dataclass
class Translation:
    """Container world -> this machine. Explicit on purpose: a new host name, port or path
    in the compose file fails the test until it is added here."""

    ports: dict[int, int]
    paths: dict[str, str]
    hosts: tuple[str, ...] = ("testbed", "master", "0.0.0.0", "127.0.0.1", "localhost")
    programs: dict[str, str] = field(default_factory=lambda: {
        "python": sys.executable, "locust": str(BIN / "locust"), "seldon-load": str(BIN / "seldon-load")})
    # local-only additions: a container binds all its interfaces, a test only loopback
    extra_env: dict[str, dict[str, str]] = field(default_factory=lambda: {
        "master": {"LOCUST_MASTER_BIND_HOST": "127.0.0.1", "LOCUST_WEB_HOST": "127.0.0.1"}})

    def value(self, text: str) -> str:
        host_port = re.compile(r"(?<![\w.-])(" + "|".join(map(re.escape, self.hosts)) + r"):(\d+)")

        def port_of(m: re.Match) -> str:
            port = int(m.group(2))
            assert port in self.ports, f"port {port} in {text!r} is not in the translation table"
            return f"127.0.0.1:{self.ports[port]}"

        text = host_port.sub(port_of, text)
        if text in self.hosts:
            return "127.0.0.1"
        if text.isdigit() and int(text) in self.ports:
            return str(self.ports[int(text)])
        for prefix, local in self.paths.items():
            if text == prefix.rstrip("/") or text.startswith(prefix):
                return local + text[len(prefix):]
        return text

    def argv(self, argv: list[str]) -> list[str]:
        """A bare host name is an address only as an option's value (`--master-host master`);
        elsewhere it is a word such as the `testbed` subcommand."""
        first = self.programs.get(argv[0], argv[0])
        out = [first]
        for prev, a in zip(argv, argv[1:], strict=False):
            out.append(a if a in self.hosts and not prev.startswith("-") else self.value(a))
        return out

    def env(self, name: str, env: dict[str, str]) -> dict[str, str]:
        out = {k: self.value(v) for k, v in env.items()}
        out.update(self.extra_env.get(name, {}))
        return out


def check_translated(tokens: list[str]) -> None:
    """Nothing container-only may survive the translation."""
    for t in tokens:
        left = re.search(r"(?<![\w.-])(testbed|master):\d|//(testbed|master)\b|(?<![\w.])0\.0\.0\.0", t)
        assert not left, f"untranslated container address in {t!r}"
        assert not re.match(r"/(app|results)(/|\Z)", t), f"untranslated container path {t!r}"


class Procs:
    """Processes this test started, each in its own session; stopped by process group."""

    def __init__(self, logdir: Path) -> None:
        self.logdir = logdir
        self.started: list[tuple[str, subprocess.Popen]] = []

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen:
        log = open(self.logdir / f"{name}.log", "wb")  # noqa: SIM115 (the child owns it)
        try:
            p = subprocess.Popen(argv, env=env, cwd=self.logdir, stdin=subprocess.DEVNULL, stdout=log,
                                 stderr=subprocess.STDOUT, start_new_session=True)
        finally:
            log.close()
        self.started.append((name, p))
        return p

    def log(self, name: str, lines: int = 25) -> str:
        try:
            text = (self.logdir / f"{name}.log").read_text(errors="replace")
        except OSError:
            return ""
        return f"--- {name}.log ---\n" + "\n".join(text.splitlines()[-lines:])

    def logs(self) -> str:
        return "\n".join(self.log(name) for name, _ in self.started)

    def stop_all(self) -> None:
        for sig, grace_s in ((signal.SIGTERM, 20.0), (signal.SIGKILL, 5.0)):
            for _, p in reversed(self.started):
                if p.poll() is None:
                    try:
                        os.killpg(p.pid, sig)
                    except (ProcessLookupError, PermissionError):
                        pass
            deadline = time.monotonic() + grace_s
            for _, p in self.started:
                try:
                    p.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    pass


def wait_healthy(procs: Procs, bed: subprocess.Popen, check: list[str], env: dict[str, str], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert bed.poll() is None, f"testbed exited with {bed.returncode}\n{procs.logs()}"
        if subprocess.run(check, env=env, capture_output=True, timeout=10).returncode == 0:
            return
        time.sleep(1.0)
    raise AssertionError(f"testbed not healthy after {timeout_s:.0f} s\n{procs.logs()}")


@pytest.mark.timeout(240)
def test_compose_services_run_a_distributed_test(tmp_path: Path) -> None:
    compose = interpolate(yaml.safe_load(COMPOSE_FILE.read_text()), SHELL_ENV)
    services = compose["services"]
    assert {"testbed", "master", "worker"} <= set(services)
    wanted = sorted(container_ports(compose) | {5557})
    tr = Translation(
        ports=dict(zip(wanted, free_ports(len(wanted)), strict=True)),
        paths={"/app/": f"{ROOT}/", "/results": str(tmp_path / "results"), "/tmp/testbed": str(tmp_path / "testbed")},
    )
    base = {k: v for k, v in os.environ.items() if not k.startswith(_SCRUB)}
    base["PATH"] = f"{BIN}{os.pathsep}{base.get('PATH', '')}"

    def plan(name: str) -> tuple[list[str], dict[str, str]]:
        svc = services[name]
        argv = tr.argv(as_argv(svc["command"]))
        env = tr.env(name, service_env(svc, SHELL_ENV))
        check_translated(argv + list(env.values()))
        return argv, {**base, **env}

    procs = Procs(tmp_path)
    state_dir = tmp_path / "testbed"
    try:
        argv, env = plan("testbed")
        bed = procs.start("testbed", argv, env)
        check = tr.argv(healthcheck_argv(services["testbed"]))
        check_translated(check)
        wait_healthy(procs, bed, check, env, timeout_s=120)

        argv, env = plan("master")
        master = procs.start("master", argv, env)
        argv, env = plan("worker")
        workers = [procs.start(f"worker-{i}", argv, env) for i in range(WORKERS)]
        try:
            code = master.wait(timeout=90)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"master still running after 90 s\n{procs.logs()}") from None
        assert code == 0, f"master exit code {code}\n{procs.logs()}"
        for w in workers:  # the master tells its workers to quit
            assert w.wait(timeout=30) == 0, procs.logs()

        results_file = tmp_path / "results" / "latest" / "results.json"
        assert results_file.is_file(), f"no {results_file}\n{procs.logs()}"
        results = json.loads(results_file.read_text())
        assert results["workers"] == WORKERS, results["workers_timeline"]
        assert results["target"]["name"] == "synth-5ms"
        [stage] = results["stages"]
        assert stage["target_rps"] == 20
        assert stage["requests"] > 0
        assert stage["scheduled"] == stage["requests"] + stage["dropped"]
    finally:
        procs.stop_all()
        Testbed.from_state_dir(state_dir).down()  # MLServer runs in its own session: by its PID file
