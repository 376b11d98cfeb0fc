"""The master-scale benchmark keeps working: a real master with three simulated workers for
one short auto search (plumbing and its checks; nothing here asserts on speed)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

import master_scale  # noqa: E402

pytestmark = pytest.mark.e2e


@pytest.mark.timeout(240)
def test_a_real_master_takes_simulated_workers_and_counts_every_request(tmp_path: Path) -> None:
    out = tmp_path / "perf.json"
    out.write_text(json.dumps({"kept": 1}))
    p = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "master_scale.py"), "--workers", "3", "--runs", "1",
                        "--out", str(out)], capture_output=True, text=True, timeout=220, cwd=ROOT)
    assert p.returncode == 0, (p.stdout + p.stderr)[-3000:]
    doc = json.loads(out.read_text())
    assert doc["kept"] == 1  # other figures in the file stay
    [row] = doc["master_scale"]["rows"]
    [run] = row["runs"]
    assert run["exit"] == 0 and run["workers_min"] == 3
    assert run["all_sustained"] and run["targets_rps"] == [300.0, 600.0, 1200.0]  # every verdict came in time
    assert len(run["verdict_lag_s"]) == 3
    checks = run["checks"]  # the accounting identity held for every second, p99 within its bound
    assert checks["seconds_checked"] > 20 and checks["p99_seconds_checked"] > 5
    assert checks["requests"] > 10_000
    assert run["master_cpu_run"] > 0 and run["report_bytes_mean"] > 500
    assert "| 3 |" in p.stdout


def _results(sec: int, scheduled: int, ok: int, failed: int, p99_ms: float) -> dict:
    return {"timeline": [{"t_s": sec, "offered_rps": scheduled, "ok": ok, "failures": failed, "dropped": 0,
                          "p99_ms": p99_ms}]}


def test_the_checks_catch_a_lost_request_and_a_wrong_percentile() -> None:
    latencies = np.arange(1000, 2000, dtype=np.int64)  # µs; exact p99 is 1989 µs
    sim = SimpleNamespace(sent={3: [1000, 999, 1]}, tracked={3: [latencies]})
    assert master_scale.check(sim, _results(3, 1000, 999, 1, 1.99))["requests"] == 1000
    with pytest.raises(AssertionError, match="second 3"):
        master_scale.check(sim, _results(3, 999, 998, 1, 1.99))  # one request lost on the way
    with pytest.raises(AssertionError, match="missing at the master"):
        master_scale.check(sim, _results(4, 1000, 999, 1, 1.99))
    with pytest.raises(AssertionError, match="p99"):
        master_scale.check(sim, _results(3, 1000, 999, 1, 2.10))  # 5 % off: beyond 2**-7
