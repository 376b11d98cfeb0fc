"""The real testbed stopped and started again while --auto searches: the run ends with the true
capacity (within 10 %) or an inconclusive verdict that names the outage, never a confident
wrong number."""

from __future__ import annotations

import os
import signal
import time

import pytest

from seldon_load.testbed.server import Testbed
from tests.faults.conftest import wait_until
from tests.helpers.run import assert_accounting

pytestmark = pytest.mark.faults

CAPACITY_RPS = 100.0  # synth-10ms


def test_testbed_restarted_during_auto_search(background, tmp_path):
    bed = Testbed.for_tests(tmp_path / "bed")
    bed.up(timeout_s=90)
    try:
        run = background(["run", "--host", bed.rest_url, "--model", "synth-10ms", "--auto", "--max-rps", "400",
                          "--auto-start-rps", "25", "--auto-hold", "5s", "--auto-narrow-hold", "5s",
                          "--auto-precision", "0.08", "--settle", "1s", "--auto-budget", "240s",
                          "--request-timeout", "2", "--drain-timeout", "3s", "--max-send-lag-ms", "30"],
                         tmp_path / "r")
        # the first stage (25 rps) ends at 8 s and is sustained; the outage falls into the second
        wait_until(lambda: time.monotonic() - run.started > 14, 60, "the second stage")
        pid = bed.pid
        assert pid is not None
        os.killpg(pid, signal.SIGKILL)
        bed.down()
        time.sleep(3.0)  # down for a while: a few seconds of refused connections
        bed.up(timeout_s=90)
        result = run.finish(timeout_s=400)
    finally:
        bed.down()
    res = result.results
    assert_accounting(res)
    kinds = {k for s in res["stages"] for k in s["failures_by_kind"]}
    assert kinds & {"connection_refused", "connection_reset"}, kinds  # the outage was seen
    faulty = [s for s in res["stages"] if s.get("fault")]
    assert faulty, [(s["target_rps"], s["failures_by_kind"]) for s in res["stages"]]
    sat = res["saturation"]
    reason = sat["inconclusive_reason"] or ""
    if reason:  # inconclusive: it must name the outage, and give no saturation point beyond a lower bound
        assert "target fault" in reason or any("not ready" in n for n in res["notes"]), (reason, res["notes"])
    else:  # a number: the true one
        assert sat["saturated"] is True
        assert sat["max_sustainable_rps"] == pytest.approx(CAPACITY_RPS, rel=0.10), sat
        # the outage's stage was run again, and the re-run replaced it
        assert all(s.get("rerun_as") is not None for s in faulty), faulty
    assert result.code in (0, 1) and "Traceback" not in result.stderr
