"""Processes that die: the server (fake and the real MLServer testbed), a worker, the master,
`seldon-load` itself, and a results directory that cannot be written at the end.

Each test starts its own processes in their own sessions and stops them by process group.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import psutil
import pytest

from seldon_load.locust.patches import MASTER_HEARTBEAT_TIMEOUT_S
from seldon_load.testbed.server import Testbed
from tests.faults.conftest import (
    ROOT,
    check_run,
    error_kinds,
    free_ports,
    json_from_stdout,
    stop_group,
    totals,
    wait_until,
)
from tests.helpers.run import assert_accounting

pytestmark = pytest.mark.faults

FAST = ["--request-timeout", "1", "--drain-timeout", "2s", "--settle", "1s"]
LOCUSTFILE = str(ROOT / "seldon_load" / "locustfile.py")


def _rows_after(res: dict, t_s: float) -> list[dict]:
    return [row for row in res["timeline"] if row["t_s"] >= t_s and row["phase"] != "cooldown"]


@pytest.mark.parametrize(("protocol", "workers"), [("rest", 2), ("grpc", 0)])
def test_server_killed_mid_stage_comes_back(bad_server, background, tmp_path, protocol, workers):
    server = bad_server("--mode", "ok")
    stages = "20:0s:10s"
    run = background(["run", "--host", server.host(protocol), "--model", "m", "--stages", stages, *FAST,
                      "--workers", str(workers)], tmp_path)
    wait_until(lambda: server.infer_count() >= 30, 60, "load to flow")
    served_before = server.infer_count()
    server.kill()
    time.sleep(2.0)
    server.start()
    res = check_run(run.finish(), stages)
    kinds = error_kinds(res)
    down_kind = {"rest": {"connection_refused", "connection_reset"}, "grpc": {"grpc_UNAVAILABLE"}}[protocol]
    assert set(kinds) - {"cancelled"} <= down_kind and kinds, kinds
    # each ok is an answer served; one may be served between the count and the kill (20 rps:
    # 50 ms apart, the kill comes within a few ms), and the killed server's count of it is lost
    assert 0 <= totals(res)["ok"] - (served_before + server.infer_count()) <= 1
    last = res["timeline"][-3:-1]  # the server is back: the last full seconds are all ok again
    assert all(row["ok"] == row["offered_rps"] == 20 for row in last), last


def test_real_mlserver_killed_and_restarted(background, tmp_path):
    """The real testbed (MLServer) is SIGKILLed mid-stage and started again on the same ports."""
    bed = Testbed.for_tests(tmp_path / "bed")
    bed.up(timeout_s=90)
    try:
        stages = "20:0s:22s"
        run = background(["run", "--host", bed.rest_url, "--model", "synth-5ms", "--stages", stages, *FAST],
                         tmp_path / "r")
        wait_until(lambda: (tmp_path / "r").exists() and time.monotonic() - run.started > 6, 60, "the stage")
        pid = bed.pid
        assert pid is not None
        os.killpg(pid, signal.SIGKILL)
        bed.down()  # reaps what is left
        bed.up(timeout_s=60)
        res = check_run(run.finish(timeout_s=120), stages)
    finally:
        bed.down()
    kinds = error_kinds(res)
    # refused while down; reset, timed out or 503/404 while it comes up again
    server_down = {"connection_refused", "connection_reset", "connection_error", "timeout", "cancelled"}
    assert kinds and all(k in server_down or k.startswith("http_") for k in kinds), kinds
    assert kinds.get("connection_refused", 0) > 0
    last = res["timeline"][-4:-1]  # MLServer is back: the client recovered by itself
    assert sum(row["ok"] for row in last) >= 0.9 * sum(row["offered_rps"] for row in last) > 0, (last, kinds)


@pytest.fixture(scope="module")
def worker_killed_run(tmp_path_factory):
    """One run with two workers, one of them SIGKILLed mid-stage; shared by the tests below."""
    from tests.faults.conftest import BadServer

    base = tmp_path_factory.mktemp("worker_killed")
    server = BadServer(*free_ports(2), ["--mode", "ok"]).start()
    cmd = [sys.executable, "-m", "seldon_load.cli", "run", "--host", server.rest_url, "--model", "m",
           "--stages", "40:0s:12s", *FAST, "--workers", "2", "--results", str(base)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, cwd=ROOT)
    try:
        wait_until(lambda: server.infer_count() >= 60, 60, "load to flow")
        workers = [p for p in psutil.Process(proc.pid).children(recursive=True) if "--worker" in p.cmdline()]
        assert len(workers) == 2
        workers[0].kill()
        out, err = proc.communicate(timeout=120)
    finally:
        stop_group(proc, signal.SIGKILL)
        server.stop()
    from tests.helpers.run import Run

    return Run(proc.returncode, out, err, base)


def test_worker_killed_mid_run(worker_killed_run):
    run = worker_killed_run
    res = check_run(run)  # the lost worker's last unreported second is missing: no plan total here
    assert [w["workers"] for w in res["workers_timeline"]] == [2, 1]
    assert any("workers 2 -> 1" in note for note in res["notes"]), res["notes"]
    lost_at = res["workers_timeline"][1]["t_s"]
    after = [row for row in res["timeline"] if lost_at + 1 <= row["t_s"] < 12]
    assert after and all(row["offered_rps"] == 40 for row in after), after  # the survivor took it all
    assert error_kinds(res) == {}  # nothing failed: the server was fine all along


def test_worker_loss_is_not_blamed_on_the_server(worker_killed_run):
    res = worker_killed_run.results
    stage = res["stages"][0]
    assert stage["offered_rps"] < 0.95 * stage["target_rps"]  # the lost share was never offered
    assert any(r.startswith("generator") and "offered" in r for r in stage["reasons"]), stage["reasons"]
    assert res["saturation"]["saturated"] is False, res["saturation"]


def test_notes_are_shown_when_the_generator_was_the_limit():
    from seldon_load.report.html import render_html

    stage = {"index": 0, "target_rps": 40.0, "offered_rps": 31.0, "achieved_rps": 31.0, "sustained": False,
             "generator_healthy": False, "reasons": ["generator: send lag p99 91.6 ms > 10 ms"],
             "latency_ms": {}, "send_lag_ms": {"p99": 91.6}}
    results = {"schema": "seldon-load/results/v1", "target": {"kind": "model", "name": "m"}, "mode": "stages",
               "stages": [stage], "timeline": [], "errors": [], "notes": ["workers 2 -> 1 at t=6s"],
               "saturation": {"saturated": False, "first_unsustained_stage": 0,
                              "inconclusive_reason": "the load generator could not keep up"},
               "generator": {"healthy": False, "warnings": ["stage 0: generator: send lag"]}}
    assert "workers 2 -&gt; 1 at t=6s" in render_html(results)


def _locust(args: list[str], log: Path) -> subprocess.Popen:
    fh = open(log, "w")  # noqa: SIM115 -- handed to the child, closed with the test's tmp dir
    return subprocess.Popen([sys.executable, "-m", "locust", "-f", LOCUSTFILE, *args], stdout=fh,
                            stderr=subprocess.STDOUT, start_new_session=True, cwd=ROOT)


def test_master_killed_workers_stop_by_themselves(bad_server, tmp_path):
    """Master and workers as separate machines would run them (no `seldon-load run` to clean up)."""
    server = bad_server("--mode", "ok")
    port = free_ports(1)[0]
    master = _locust(["--headless", "--host", server.rest_url, "--model", "m", "--stages", "20:0s:120s",
                      "--master", "--master-bind-host", "127.0.0.1", "--master-bind-port", str(port),
                      "--expect-workers", "2", "--results", str(tmp_path / "r")], tmp_path / "master.log")
    workers = [_locust(["--worker", "--master-host", "127.0.0.1", "--master-port", str(port)],
                       tmp_path / f"worker-{i}.log") for i in range(2)]
    try:
        wait_until(lambda: server.infer_count() >= 30, 60, "load to flow")
        stop_group(master, signal.SIGKILL)
        killed = time.monotonic()
        for w in workers:
            w.wait(timeout=MASTER_HEARTBEAT_TIMEOUT_S + 20)
        stopped_after_s = time.monotonic() - killed
        sent_then = server.infer_count()
        time.sleep(1.5)
        assert server.infer_count() == sent_then  # nobody sends load on behalf of a dead master
    finally:
        for p in (master, *workers):
            stop_group(p, signal.SIGKILL)
    assert stopped_after_s < MASTER_HEARTBEAT_TIMEOUT_S + 10
    assert any("heartbeat from master" in (tmp_path / f"worker-{i}.log").read_text() for i in range(2))


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_seldon_load_killed_leaves_no_process(bad_server, background, tmp_path, sig):
    """SIGTERM ends `seldon-load run` like Ctrl-C (results written, every child stopped); after a
    SIGKILL, the master and workers get SIGTERM from the kernel and stop too."""
    server = bad_server("--mode", "ok")
    run = background(["run", "--host", server.rest_url, "--model", "m", "--stages", "20:0s:60s", *FAST,
                      "--workers", "1"], tmp_path)
    wait_until(lambda: server.infer_count() >= 30 and len(run.children("locust")) >= 2, 60, "load to flow")
    children = run.children("locust")
    os.kill(run.proc.pid, sig)
    run.proc.wait(timeout=60)
    gone, alive = psutil.wait_procs(children, timeout=30)
    assert alive == [], [p.cmdline() for p in alive]
    res = orjson.loads((tmp_path / "results.json").read_bytes())  # the master wrote what it measured
    assert_accounting(res)
    assert any(n.startswith("interrupted") for n in res["notes"]), res["notes"]
    t = totals(res)  # the worker drained and reported before the master wrote the results
    assert t["ok"] <= server.infer_count() <= t["ok"] + error_kinds(res).get("cancelled", 0)


def test_results_dir_unwritable_at_the_end(bad_server, background, tmp_path):
    server = bad_server("--mode", "mix")
    out = tmp_path / "results"
    stages = "20:0s:4s"
    run = background(["run", "--host", server.rest_url, "--model", "m", "--stages", stages, *FAST], out)
    wait_until(lambda: server.infer_count() >= 20, 60, "load to flow")
    shutil.rmtree(out)
    out.write_text("a file where the results directory was\n")
    done = run.finish()
    assert done.code in (0, 1), done.stderr[-2000:]
    errors = [line for line in done.stderr.splitlines() if line.startswith("seldon-load: error:")]
    assert len(errors) == 1 and "cannot write results" in errors[0] and "stdout" in errors[0], done.stderr
    res = json_from_stdout(done.stdout)  # nothing measured was lost
    assert res["schema"] == "seldon-load/results/v1"
    assert_accounting(res)
    t = totals(res)
    assert t["offered_rps"] == 80 and t["ok"] == server.stats()["rest:ok"]


def test_headless_locust_sigterm_writes_the_results(bad_server, tmp_path):
    """`docker stop` / Kubernetes: SIGTERM to a headless master (here without workers) is Ctrl-C."""
    server = bad_server("--mode", "ok")
    proc = _locust(["--headless", "--host", server.rest_url, "--model", "m", "--stages", "20:0s:60s", *FAST,
                    "--results", str(tmp_path / "r")], tmp_path / "locust.log")
    try:
        wait_until(lambda: server.infer_count() >= 30, 60, "load to flow")
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    finally:
        stop_group(proc, signal.SIGKILL)
    res = orjson.loads((tmp_path / "r" / "results.json").read_bytes())
    assert_accounting(res)
    assert any(n.startswith("interrupted") for n in res["notes"]), res["notes"]
    t = totals(res)  # every answer sent was counted: ok, or cancelled if it was still out at the stop
    assert t["ok"] <= server.infer_count() <= t["ok"] + error_kinds(res).get("cancelled", 0)
