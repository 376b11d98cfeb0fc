"""End to end: the `seldon-load` command and plain `locust -f`, as users run them."""

import json
import os
import signal
import subprocess
import sys

import psutil
import pytest

from seldon_load.cli import LOCUSTFILE
from seldon_load.testbed.server import free_port
from tests.helpers.run import OutputLines, assert_accounting, seldon_load

pytestmark = pytest.mark.e2e


def test_closed_loop_users_run(testbed, tmp_path):
    run = seldon_load(["run", "--host", testbed.rest_url, "--model", "iris", "--users", "4", "--run-time", "6s"],
                      tmp_path)
    assert run.code == 0, run.stderr[-2000:]
    res = run.results
    assert res["mode"] == "closed"
    st = res["stages"][0]
    assert st["users"] == 4 and st["target_rps"] is None and st["sustained"] is None
    assert st["ok"] > 50 and st["failures"] == 0
    assert_accounting(res)


def test_plain_locust_closed_loop_and_locust_stats(testbed, tmp_path):
    cmd = [sys.executable, "-m", "locust", "-f", "locustfiles/oip_model.py", "--headless", "-u", "3", "-r", "3",
           "-t", "5s", "--host", testbed.grpc_target, "--model", "synth-5ms", "--results", str(tmp_path), "--json"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    stats = json.loads(p.stdout[p.stdout.index("["):p.stdout.rindex("]") + 1])
    row = next(s for s in stats if s["name"] == "grpc infer synth-5ms")
    assert row["num_requests"] > 100 and row["num_failures"] == 0
    # 3 users on a serialised 5 ms model: ~200 rps, latency ~3 x 5 ms
    res = json.loads((tmp_path / "results.json").read_text())
    assert res["stages"][0]["latency_ms"]["p50"] >= 5.0
    assert res["target"]["protocol"] == "grpc"


def test_plain_locust_open_loop_fills_locusts_statistics(testbed, tmp_path):
    # the open-loop user feeds Locust's statistics in batches (StatsEntry.extend): the web UI,
    # CSV and --json must still count every answer once, with its response time
    cmd = [sys.executable, "-m", "locust", "-f", "locustfiles/saturation.py", "--headless", "--host",
           testbed.rest_url, "--model", "synth-1ms", "--stages", "100:0s:3s", "--settle", "0s",
           "--results", str(tmp_path), "--json"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    stats = json.loads(p.stdout[p.stdout.index("["):p.stdout.rindex("]") + 1])
    row = next(s for s in stats if s["name"] == "rest infer synth-1ms")
    assert row["num_requests"] == 300 and row["num_failures"] == 0, row
    res = json.loads((tmp_path / "results.json").read_text())
    ours_p50_ms = res["stages"][0]["latency_ms"]["p50"]
    locust_mean_ms = row["total_response_time"] / row["num_requests"]
    assert abs(locust_mean_ms - ours_p50_ms) < 0.5 * ours_p50_ms + 1.0, (locust_mean_ms, ours_p50_ms)  # same answers
    assert sum(row["response_times"].values()) == 300


def test_locust_conf_and_env_options(testbed, tmp_path):
    conf = tmp_path / "locust.conf"
    conf.write_text(f"host = {testbed.rest_url}\nmodel = synth-5ms\nstages = 30:0s:3s\nheadless = true\n"
                    f"results = {tmp_path / 'out'}\n")
    env = dict(os.environ, LOCUST_SETTLE="1s")
    p = subprocess.run([sys.executable, "-m", "locust", "-f", "locustfiles/saturation.py", "--config", str(conf)],
                       capture_output=True, text=True, timeout=120, env=env)
    assert p.returncode == 0, p.stderr[-2000:]
    res = json.loads((tmp_path / "out" / "results.json").read_text())
    assert res["stages"][0]["target_rps"] == 30
    assert res["saturation"]["criteria"]["settle_s"] == 1.0


@pytest.mark.parametrize("args,needle", [
    (["--model", "synth-5ms", "--stages", "50:1s"], "expected RPS:RAMP:HOLD"),
    (["--model", "no-such-model", "--stages", "5:0s:2s"], "no-such-model"),
    (["--model", "synth-5ms", "--stages", "5:0s:2s", "--payload", "missing.json"], "missing.json"),
    (["--stages", "5:0s:2s"], "model"),
    (["--model", "synth-5ms", "--auto", "--stages", "5:0s:2s"], "choose one"),
    (["--model", "synth-5ms", "--stages", "5:0s:2s", "--header", "nocolon"], "--header"),
])
def test_bad_input_exits_2_with_one_line(testbed, tmp_path, args, needle):
    run = seldon_load(["run", "--host", testbed.rest_url, *args], tmp_path / "r", timeout_s=60)
    assert run.code == 2, (run.stdout[-1000:], run.stderr[-1000:])
    errors = [ln for ln in run.stderr.splitlines() if "error" in ln.lower()]
    assert len(errors) == 1 and needle in errors[0], run.stderr
    assert not (tmp_path / "r" / "results.json").exists()


def test_unreachable_host_exits_2_before_load(tmp_path):
    port = free_port()
    run = seldon_load(["run", "--host", f"http://127.0.0.1:{port}", "--model", "m", "--stages", "5:0s:2s"],
                      tmp_path / "r", timeout_s=60)
    assert run.code == 2
    assert "cannot connect" in run.stderr or "connect" in run.stderr.lower()
    assert not (tmp_path / "r" / "results.json").exists()


def test_report_rebuilds_from_results_json(testbed, tmp_path):
    run = seldon_load(["run", "--host", testbed.rest_url, "--model", "synth-5ms", "--stages", "20:0s:3s"], tmp_path)
    assert run.code == 0
    for name in ("report.html", "stages.csv"):
        (tmp_path / name).unlink()
    p = subprocess.run([sys.executable, "-m", "seldon_load.cli", "report", str(tmp_path)], capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    html = (tmp_path / "report.html").read_text()
    assert "synth-5ms" in html and "<svg" in html
    assert (tmp_path / "stages.csv").read_text().count("\n") == 2  # header + one stage
    bad = subprocess.run([sys.executable, "-m", "seldon_load.cli", "report", str(tmp_path / "nope")],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "results.json" in bad.stderr


def _mlservers_under(state_dir):
    out = []
    for proc in psutil.process_iter(["cmdline"]):
        cmd = " ".join(proc.info["cmdline"] or [])
        if "mlserver" in cmd and str(state_dir) in cmd:
            out.append(proc)
    return out


def test_testbed_up_status_down_leaves_no_process(tmp_path):
    ports = [str(free_port()) for _ in range(3)]
    while len(set(ports)) < 3:
        ports = [str(free_port()) for _ in range(3)]
    base = [sys.executable, "-m", "seldon_load.cli", "testbed"]
    opts = ["--http-port", ports[0], "--grpc-port", ports[1], "--metrics-port", ports[2], "--state-dir",
            str(tmp_path / "tb")]
    try:
        up = subprocess.run(base + ["up"] + opts, capture_output=True, text=True, timeout=150)
        assert up.returncode == 0, up.stderr[-2000:]
        st = subprocess.run(base + ["status"] + opts, capture_output=True, text=True, timeout=30)
        assert st.returncode == 0 and json.loads(st.stdout)["running"] is True
        assert _mlservers_under(tmp_path / "tb")
    finally:
        down = subprocess.run(base + ["down"] + opts, capture_output=True, text=True, timeout=60)
    assert down.returncode == 0, down.stderr
    st = subprocess.run(base + ["status"] + opts, capture_output=True, text=True, timeout=30)
    assert st.returncode != 0 and json.loads(st.stdout)["running"] is False
    assert _mlservers_under(tmp_path / "tb") == []


def test_ctrl_c_stops_every_process(testbed, tmp_path):
    cmd = [sys.executable, "-m", "seldon_load.cli", "run", "--host", testbed.rest_url, "--model", "synth-5ms",
           "--stages", "20:0s:60s", "--workers", "2", "--results", str(tmp_path)]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out = OutputLines(p)
    try:
        # the master's progress line: the test runs on both workers
        assert out.wait_for("[seldon-load] t=", 90), "the test never started"
        children = psutil.Process(p.pid).children(recursive=True)
        assert len(children) >= 3
        p.send_signal(signal.SIGINT)
        p.wait(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
    gone, alive = psutil.wait_procs(children, timeout=15)
    assert alive == []
    assert p.returncode == 130, out.text()[-3000:]
    # the master still wrote what it measured before the interrupt
    res = json.loads((tmp_path / "results.json").read_text())
    assert res["stages"][0]["ok"] >= 20
    assert any(n.startswith("interrupted at t=") for n in res["notes"])
    assert_accounting(res)


def _waiting_master(testbed, tmp_path, max_wait_s: int) -> list[str]:
    """A headless master that expects a worker nobody starts."""
    return [sys.executable, "-m", "locust", "-f", LOCUSTFILE, "--headless", "--master", "--master-bind-host",
            "127.0.0.1", "--master-bind-port", str(free_port()), "--expect-workers", "1",
            "--expect-workers-max-wait", str(max_wait_s), "--host", testbed.rest_url, "--model", "synth-5ms",
            "--stages", "20:0s:10s", "--results", str(tmp_path)]


def _no_test_ran(tmp_path) -> dict:
    res = json.loads((tmp_path / "results.json").read_text())
    assert res["passed"] is False
    assert any("no test ran" in n and "0 of 1 workers" in n for n in res["notes"]), res["notes"]
    assert sum(st["requests"] for st in res["stages"]) == 0
    return res


def test_ctrl_c_before_the_workers_connect_still_writes_results(testbed, tmp_path):
    p = subprocess.Popen(_waiting_master(testbed, tmp_path, 60), stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
    out = OutputLines(p)
    try:
        # Locust says so once it has waited 5 s for its workers (init, preflight included, is done)
        assert out.wait_for("Waiting for workers to be ready", 60), out.text()[-2000:]
        p.send_signal(signal.SIGINT)
        p.wait(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode != 0
    _no_test_ran(tmp_path)


def test_a_master_that_gives_up_on_its_workers_writes_results(testbed, tmp_path):
    run = subprocess.run(_waiting_master(testbed, tmp_path, 2), capture_output=True, text=True, timeout=60)
    assert run.returncode == 1, run.stderr[-2000:]
    assert "no test ran" in run.stderr
    _no_test_ran(tmp_path)
