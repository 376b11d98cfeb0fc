"""Ctrl-C during a sweep: the running variant stops and writes its results, no further variant
starts, the sweep records what ran and exits 130, and no process it started is left."""

from __future__ import annotations

import os
import signal

import orjson
import psutil
import pytest

from tests.faults.conftest import wait_until

pytestmark = pytest.mark.faults


def test_ctrl_c_stops_the_running_variant_and_the_sweep(testbed, background, tmp_path):
    out = tmp_path / "sweep"
    bg = background(["sweep", "--host", testbed.rest_url, "--model", "synth-5ms", "--stages", "20:1s:60s",
                     "--vary", "batch-size=1,2"], out)
    wait_until(lambda: bg.children("locust"), 60, "the first variant's Locust process")
    started = [p for p in psutil.Process(bg.proc.pid).children(recursive=True)]
    # the test itself has started (not only the process): its results must then be written
    wait_until(lambda: "engine starting" in (out / "batch1" / "run.log").read_text(errors="replace"), 60,
               "the first variant to start its test")
    os.kill(bg.proc.pid, signal.SIGINT)
    run = bg.finish(timeout_s=90)
    assert run.code == 130, run.stdout[-2000:] + run.stderr[-2000:]
    assert (out / "batch1" / "results.json").is_file()
    assert not (out / "batch2").exists()
    record = orjson.loads((out / "sweep.json").read_bytes())["variants"]
    assert [(r["name"], r["exit_code"], r["status"]) for r in record] == [("batch1", 130, "ok")]
    assert "interrupted" in record[0]["reason"]
    gone, alive = psutil.wait_procs(started, timeout=15)
    assert not alive, [p.cmdline() for p in alive]
