"""Workers that join late: the total offered rate stays as configured and is re-split."""

import subprocess
import sys

import orjson
import pytest

from seldon_load.testbed.server import free_port
from tests.helpers.run import OutputLines

pytestmark = pytest.mark.e2e

LOCUSTFILE = "seldon_load/locustfile.py"


def _master(testbed, tmp_path, stages: str) -> tuple[subprocess.Popen, int]:
    """A headless master that starts once one worker is there; its port."""
    port = free_port()
    master = subprocess.Popen(
        [sys.executable, "-m", "locust", "-f", LOCUSTFILE, "--headless", "--only-summary", "--master",
         "--master-bind-host", "127.0.0.1", "--master-bind-port", str(port), "--expect-workers", "1",
         "--host", testbed.rest_url, "--model", "synth-5ms", "--stages", stages, "--settle", "0s",
         "--results", str(tmp_path)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return master, port


def _worker(port: int, locustfile: str = LOCUSTFILE) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "locust", "-f", locustfile, "--worker", "--master-host",
                             "127.0.0.1", "--master-port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def test_late_worker_takes_a_share_without_changing_the_total(testbed, tmp_path):
    master, port = _master(testbed, tmp_path, "60:0s:14s")
    workers = [_worker(port)]
    lines = OutputLines(master)
    try:
        # the master's first progress line (t=4 s of the test): join a few seconds in, on a busy
        # machine too (a fixed sleep from the master's start raced its start-up)
        assert lines.wait_for("[seldon-load] t=", 60), lines.text()[-3000:]
        workers.append(_worker(port))
        master.wait(timeout=90)
        out = lines.text()
        assert master.returncode == 0, out[-3000:]
    finally:
        for p in [master, *workers]:
            if p.poll() is None:
                p.terminate()
                p.wait(timeout=20)
    res = orjson.loads((tmp_path / "results.json").read_bytes())
    assert [w["workers"] for w in res["workers_timeline"]] == [1, 2]
    assert res["workers"] == 2
    # every second of the hold offers the configured 60 rps, but the second of the join and the
    # one after it (a fraction of a share may be lost while Locust re-balances users)
    join_s = res["workers_timeline"][1]["t_s"]
    before = [t for t in res["timeline"] if t["phase"] == "hold" and 1 <= t["t_s"] <= join_s - 2]
    after = [t for t in res["timeline"] if t["phase"] == "hold" and join_s + 2 <= t["t_s"] <= 12]
    assert len(before) >= 3 and len(after) >= 3, res["timeline"]
    assert all(t["offered_rps"] == pytest.approx(60, abs=2) for t in before + after), before + after
    st = res["stages"][0]
    assert st["scheduled"] == st["ok"] + st["failures"] + st["dropped"]


def test_a_worker_that_missed_its_plan_gets_it_again(testbed, tmp_path):
    master, port = _master(testbed, tmp_path, "40:0s:8s")
    worker = _worker(port, "tests/faults/lossy_locustfile.py")
    try:
        out, _ = master.communicate(timeout=90)
        assert master.returncode == 0, out[-3000:]
    finally:
        for p in (master, worker):
            if p.poll() is None:
                p.terminate()
                p.wait(timeout=20)
    assert "sending it again" in out
    res = orjson.loads((tmp_path / "results.json").read_bytes())
    # the plan is sent again within about two worker reports: from t=3 s on it runs in full
    late = [t for t in res["timeline"] if t["phase"] == "hold" and 3 <= t["t_s"] <= 7]
    assert len(late) >= 4 and all(t["offered_rps"] == pytest.approx(40, abs=2) for t in late), res["timeline"]
    st = res["stages"][0]
    assert st["scheduled"] == st["ok"] + st["failures"] + st["dropped"]
