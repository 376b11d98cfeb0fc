"""Run the real `seldon-load` command (or Locust) as a subprocess and read what it wrote."""

from __future__ import annotations

import subprocess
import sys
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
