"""Process helpers of the testbed: start in a group, find by PID file, stop a whole group.

MLServer and the Envoy ingress run in their own process groups, started by one process and
stopped by another (``testbed up`` returns while they run on), so every stop is by PID from a
file, guarded against a recycled PID by the process's command line.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import psutil

from seldon_load.errors import TargetError


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def log_tail(path: Path, lines: int = 5) -> str:
    """A log's last error lines (or its last lines), on one line, and where the log is."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"(no log at {path})"
    all_lines = [line.strip() for line in text.splitlines() if line.strip()]
    errors = [line for line in all_lines if re.match(r"[\w.]*(Error|Exception)\b|.*\] ?(ERROR|error|critical)\b", line)]
    picked = list(dict.fromkeys(errors))[-3:] if errors else all_lines[-lines:]
    return f"{' | '.join(picked) or '(empty log)'} (log: {path})"


def http_ok(url: str, timeout_s: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return 200 <= int(response.status) < 300
    except (urllib.error.URLError, OSError, ValueError):
        return False


def die_with_parent() -> None:
    """In the child before exec: ask Linux for SIGTERM when the parent dies (PR_SET_PDEATHSIG)."""
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)


def tcp_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def is_running(pid: int, command_word: str) -> bool:
    """True if pid is alive and its command line holds ``command_word`` (guards against a recycled PID)."""
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return command_word in " ".join(proc.cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def stop_group(pid: int, timeout_s: float, poll: Callable[[], object]) -> None:
    """Stop MLServer and every descendant: SIGTERM to MLServer alone first (it shuts its worker
    pool down itself; signalling workers too makes its shutdown race), then SIGTERM and finally
    SIGKILL to the process group and every descendant still alive."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        procs = []
    phases = ((signal.SIGTERM, False, timeout_s), (signal.SIGTERM, True, 3.0), (signal.SIGKILL, True, 5.0))
    for sig, whole_group, wait_s in phases:
        _signal(pid, procs, sig, whole_group)
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            poll()  # reaps our own child once it exits
            if not any(_alive(p) for p in procs) and not _group_alive(pid):
                return
            time.sleep(0.05)
    raise TargetError(f"testbed process group {pid} survived SIGKILL")


def _signal(pgid: int, procs: list[psutil.Process], sig: int, whole_group: bool) -> None:
    if not whole_group:
        try:
            os.kill(pgid, sig)
        except ProcessLookupError:
            pass
        return
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass
    for proc in procs:  # descendants that left the group
        if _alive(proc):
            try:
                proc.send_signal(sig)
            except psutil.Error:
                pass


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _group_alive(pgid: int) -> bool:
    """A member of the group that is not a zombie (killpg(0) also succeeds for zombies)."""
    for proc in psutil.process_iter(["pid", "status"]):
        try:
            if proc.info["status"] != psutil.STATUS_ZOMBIE and os.getpgid(proc.info["pid"]) == pgid:
                return True
        except (ProcessLookupError, PermissionError, psutil.Error):
            continue
    return False
