"""Run the real `seldon-load` command (or Locust) as a subprocess and read what it wrote."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import orjson


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str
    results_dir: Path

    @property
    def results(self) -> dict:
        return orjson.loads((self.results_dir / "results.json").read_bytes())


class OutputLines:
    """A child's merged output, read by a thread, so a test can wait for a line without blocking."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.lines: list[str] = []
        self._thread = threading.Thread(target=lambda: self.lines.extend(iter(proc.stdout.readline, "")), daemon=True)
        self._thread.start()

    def wait_for(self, needle: str, timeout_s: float) -> bool:
        deadline = time.time() + timeout_s
        while time.time() < deadline:
            if any(needle in line for line in list(self.lines)):
                return True
            time.sleep(0.2)
        return False

    def text(self) -> str:
        self._thread.join(timeout=10)
        return "".join(self.lines)


def seldon_load(args: list[str], results_dir: Path | None = None, timeout_s: float = 240) -> Run:
    cmd = [sys.executable, "-m", "seldon_load.cli", *args]
    if results_dir is not None:
        cmd += ["--results", str(results_dir)]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    return Run(p.returncode, p.stdout, p.stderr, results_dir or Path("."))


def assert_accounting(results: dict) -> None:
    """Every scheduled arrival ended as exactly one of ok, failed, dropped."""
    for st in results["stages"]:
        assert st["scheduled"] == st["ok"] + st["failures"] + st["dropped"], st
        assert st["requests"] == st["ok"] + st["failures"], st
        assert st["failures"] == sum(st["failures_by_kind"].values()), st
    for row in results["timeline"]:
        assert row["offered_rps"] == row["ok"] + row["failures"] + row["dropped"], row
