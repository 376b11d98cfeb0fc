"""Workers that join late: the total offered rate stays as configured and is re-split."""

import subprocess
import sys
import time

import orjson
import pytest

from seldon_load.testbed.server import free_port

pytestmark = pytest.mark.e2e

LOCUSTFILE = "seldon_load/locustfile.py"


@pytest.mark.xfail(strict=False, reason="known gap (docs/reliability.md, Known gaps): a worker that joins during "
                                        "a test sometimes runs no share; this test fails about 1 run in 4")
def test_late_worker_takes_a_share_without_changing_the_total(testbed, tmp_path):
    port = free_port()
    master = subprocess.Popen(
        [sys.executable, "-m", "locust", "-f", LOCUSTFILE, "--headless", "--only-summary", "--master",
         "--master-bind-host", "127.0.0.1", "--master-bind-port", str(port), "--expect-workers", "1",
         "--host", testbed.rest_url, "--model", "synth-5ms", "--stages", "60:0s:14s", "--settle", "0s",
         "--results", str(tmp_path)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    worker_cmd = [sys.executable, "-m", "locust", "-f", LOCUSTFILE, "--worker", "--master-host", "127.0.0.1",
                  "--master-port", str(port)]
    workers = [subprocess.Popen(worker_cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        time.sleep(7)
        workers.append(subprocess.Popen(worker_cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        out, _ = master.communicate(timeout=90)
        assert master.returncode == 0, out[-3000:]
    finally:
        for p in [master, *workers]:
            if p.poll() is None:
                p.terminate()
                p.wait(timeout=20)
    res = orjson.loads((tmp_path / "results.json").read_bytes())
    assert [w["workers"] for w in res["workers_timeline"]] == [1, 2]
    assert res["workers"] == 2
    # every second of the hold offered the configured 60 rps, before and after the join; in the
    # second Locust moves the user to the new worker a fraction of a second of one share may be lost
    hold = [t for t in res["timeline"] if t["phase"] == "hold" and 1 <= t["t_s"] <= 12]
    assert len(hold) >= 10
    assert sum(1 for t in hold if t["offered_rps"] == pytest.approx(60, abs=2)) >= len(hold) - 1, hold
    assert min(t["offered_rps"] for t in hold) >= 45, hold
    st = res["stages"][0]
    assert st["scheduled"] == st["ok"] + st["failures"] + st["dropped"]
    assert st["offered_rps"] == pytest.approx(60, rel=0.03)
