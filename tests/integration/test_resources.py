"""Server CPU and memory per stage, read from a real Prometheus scraping a real process-exporter.

A testbed of the module's own runs with ``prometheus=True`` (``testbed up --with-prometheus``):
Debian's Prometheus scrapes MLServer's metrics and process-exporter (which tracks the MLServer
process tree) every second. ``synth-cpu-5ms`` spends exactly 5 ms of CPU time per request (it
spins on the thread's CPU clock, so contention adds none), and the server's own per-request
CPU (HTTP, decoding, the handler) is measured once at low load on ``synth-1ms``, which sleeps
instead of computing. MLServer's idle CPU (its event loop, metrics) is in both numbers and
small against a request's cost at these rates.
"""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from seldon_load.analyze.metrics import delta, query_prometheus
from seldon_load.analyze.resources import Prometheus, read_windows
from seldon_load.errors import TargetError
from seldon_load.testbed.prometheus import TESTBED_SELECTOR
from seldon_load.testbed.server import PIPELINES_DIR, Testbed
from tests.helpers.run import assert_accounting, seldon_load

CPU_MS = 5.0
RATES = (20, 40, 80)


@pytest.fixture(scope="module")
def bed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Testbed]:
    tb = Testbed.for_tests(tmp_path_factory.mktemp("prom-testbed"), prometheus=True)
    tb.up(timeout_s=120)
    try:
        yield tb
    finally:
        tb.down()
    assert tb.prometheus.pid("prometheus") is None and tb.prometheus.pid("exporter") is None


def _run(bed: Testbed, model: str, stages: str, out: Path, *extra: str):
    run = seldon_load(["run", "--host", bed.rest_url, "--model", model, "--stages", stages, "--settle", "1s",
                       "--prometheus-url", bed.prometheus.url, "--resource-selector", TESTBED_SELECTOR,
                       "--workers", "0", *extra], out)
    assert run.code == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert_accounting(run.results)
    return run


def test_cpu_per_request_matches_the_model_cost_and_cores_grow_with_the_rate(bed: Testbed, tmp_path: Path) -> None:
    low = _run(bed, "synth-1ms", "20:1s:6s", tmp_path / "overhead").results["stages"][0]["server"]
    assert low["note"] is None and low["source"] == "process-exporter", low
    overhead_ms = low["cpu_ms_per_request"]
    assert 0 < overhead_ms < 20, low

    stages = ",".join(f"{r}:1s:6s" for r in RATES)
    run = _run(bed, "synth-cpu-5ms", stages, tmp_path / "cpu", "--core-hour-cost", "0.036")
    res = run.results
    rows = res["stages"]
    assert [r["target_rps"] for r in rows] == list(RATES)
    expected_ms = CPU_MS + overhead_ms
    for row in rows:
        srv = row["server"]
        assert srv["note"] is None and srv["series"] >= 1 and srv["scrape_interval_s"] == 1.0, srv
        assert abs(srv["cpu_ms_per_request"] - expected_ms) <= 0.2 * expected_ms, (srv, overhead_ms)
        assert srv["cpu_ms_per_inference"] == srv["cpu_ms_per_request"]  # batch size 1
        assert srv["per_pod"] == {"mlserver": srv["cpu_cores"]}
        # memory: the MLServer process tree's resident set, a few hundred MiB, never above the peak
        assert 50 * 2**20 < srv["memory_bytes_mean"] <= srv["memory_bytes_max"] < 8 * 2**30, srv
        # cost of the cores used, per million inferences: cores x price / inferences an hour
        want = srv["cpu_cores"] * 0.036 / (row["achieved_rps"] * 3600) * 1e6
        assert srv["cost_per_million_inferences"] == pytest.approx(want, rel=1e-3)
    # cores grow linearly with the rate: the slope is the CPU per request, and 4x the rate
    # costs about 4x the cores (idle CPU is small against 80 rps x 7 ms)
    cores = [r["server"]["cpu_cores"] for r in rows]
    assert cores[0] < cores[1] < cores[2], cores
    slope_ms = (cores[2] - cores[0]) / (rows[2]["achieved_rps"] - rows[0]["achieved_rps"]) * 1000
    assert abs(slope_ms - expected_ms) <= 0.25 * expected_ms, (cores, slope_ms, expected_ms)
    assert 3.0 <= cores[2] / cores[0] <= 4.8, cores
    # the summary at the highest sustained rate and at the recommended rate
    summary = res["resources"]
    assert summary["queries"] >= 4 * len(RATES) and summary["selector"] == TESTBED_SELECTOR
    assert summary["at_saturation"]["rps"] == 80 and summary["at_saturation"]["cpu_cores"] == cores[2]
    rec = summary["at_recommended"]
    assert rec["rps"] == pytest.approx(64) and 0 < rec["cpu_cores"] < cores[2]
    assert "cores" in run.stdout and "CPU-ms/request" in run.stdout
    csv_head = (tmp_path / "cpu" / "stages.csv").read_text().splitlines()[0].split(",")
    assert "server_cpu_ms_per_request" in csv_head
    assert "Server resources" in (tmp_path / "cpu" / "report.html").read_text()


def test_unreachable_prometheus_leaves_the_run_alone(bed: Testbed, tmp_path: Path) -> None:
    from seldon_load.testbed.procs import free_port

    dead = f"http://127.0.0.1:{free_port()}"
    run = seldon_load(["run", "--host", bed.rest_url, "--model", "synth-1ms", "--stages", "20:1s:3s",
                       "--prometheus-url", dead, "--resource-selector", TESTBED_SELECTOR, "--workers", "0"],
                      tmp_path)
    assert run.code == 0, run.stderr[-2000:]
    stage = run.results["stages"][0]
    assert stage["requests"] > 0 and stage["server"]["cpu_cores"] is None
    assert "unreachable" in stage["server"]["note"], stage["server"]
    assert "no figures" in run.stdout


def test_notes_say_why_figures_are_empty(bed: Testbed) -> None:
    prom = Prometheus(bed.prometheus.url)
    now = time.time() - 2
    # a selector that matches nothing
    out = read_windows(prom, 'groupname="no-such-process"', [(0, now - 5, now)])
    assert out[0]["cpu_cores"] is None and "no series match" in out[0]["note"]
    # a regular expression Prometheus (RE2) refuses: the query is refused, said so
    out = read_windows(prom, 'groupname=~"(?=mlserver)"', [(0, now - 5, now)])
    assert out[0]["cpu_cores"] is None and "refused the query" in out[0]["note"]
    # a window shorter than three scrape intervals
    out = read_windows(prom, TESTBED_SELECTOR, [(0, now - 2, now)])
    assert out[0]["cpu_cores"] is None and "too long for this 2.0 s window" in out[0]["note"]
    # series present for only part of the window (process-exporter started minutes ago at most)
    out = read_windows(prom, TESTBED_SELECTOR, [(0, now - 3000, now)])
    assert out[0]["cpu_cores"] is None and "missing for part of this window" in out[0]["note"]
    # and a window the series cover reads fine, in a handful of queries
    prom.queries = 0
    out = read_windows(prom, TESTBED_SELECTOR, [(0, now - 4, now)])
    assert out[0]["note"] is None and out[0]["cpu_cores"] is not None and prom.queries == 6


def test_prometheus_url_pipeline_steps_through_the_real_prometheus(bed: Testbed, tmp_path: Path) -> None:
    """--prometheus-url reads MLServer's per-model counters from the real server, per step."""
    # the query API itself: counters of a model we call, at two moments
    time.sleep(2.5)  # two scrapes: Prometheus holds every earlier call of the model
    before = query_prometheus(bed.prometheus.url)
    for _ in range(5):
        urllib.request.urlopen(urllib.request.Request(
            f"{bed.rest_url}/v2/models/synth-10ms/infer", method="POST", headers={"Content-Type": "application/json"},
            data=b'{"inputs":[{"name":"INPUT0","datatype":"FP32","shape":[1,4],"data":[1,2,3,4]}]}'), timeout=10).read()
    time.sleep(2.5)  # two scrapes
    after = query_prometheus(bed.prometheus.url, match='job="mlserver"')
    assert delta(before, after)["synth-10ms"].calls == 5
    with pytest.raises(TargetError, match="refused the query"):
        query_prometheus(bed.prometheus.url, match='job=~"(?=x)"')

    run = seldon_load(["run", "--host", bed.rest_url, "--pipeline", "linear",
                       "--pipeline-spec", str(PIPELINES_DIR / "linear.yaml"), "--prometheus-url", bed.prometheus.url,
                       "--stages", "20:1s:7s", "--settle", "1s", "--workers", "0"], tmp_path)
    assert run.code == 0, run.stderr[-2000:]
    res = run.results
    p, stage = res["pipeline"], res["stages"][0]
    window = p["per_stage"][0]["steps"]
    assert set(window) == {s["name"] for s in p["steps"]} and window
    # Prometheus sees the counters up to one scrape (1 s) late at each end of the window:
    # calls per step match the stage's requests within a second's worth of them
    for name, s in window.items():
        assert abs(s["calls"] - stage["requests"]) <= 20 + 0.05 * stage["requests"], (name, s, stage)
    assert all(s["latency_ms"]["mean"] > 0 for s in p["steps"]), p["steps"]


def test_testbed_up_with_prometheus_from_the_command(tmp_path: Path) -> None:
    """``seldon-load testbed up --with-prometheus``: both started, scraping, and stopped by ``down`` by PID."""
    import json
    import subprocess
    import sys

    import psutil

    from seldon_load.testbed.procs import free_port

    ports = {"--http-port": 0, "--grpc-port": 0, "--metrics-port": 0, "--prometheus-port": 0, "--exporter-port": 0}
    while len(set(ports.values())) != len(ports):
        ports = {k: free_port() for k in ports}
    flags = [x for k, v in ports.items() for x in (k, str(v))] + ["--state-dir", str(tmp_path / "state")]
    cmd = [sys.executable, "-m", "seldon_load.cli", "testbed"]
    up = subprocess.run([*cmd, "up", "--with-prometheus", *flags], capture_output=True, text=True, timeout=150)
    bed = Testbed.from_state_dir(tmp_path / "state")
    pids: list[int] = []
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        url = f"http://127.0.0.1:{ports['--prometheus-port']}"
        assert f"--prometheus-url {url} --resource-selector 'groupname=\"mlserver\"'" in up.stdout
        status = json.loads(subprocess.run([*cmd, "status", *flags], capture_output=True, text=True,
                                           timeout=60).stdout)
        prom = status["prometheus"]
        pids = [prom["pid"], prom["exporter_pid"]]
        assert status["running"] and prom["url"] == url and all(pids), status
        # the generated configuration lives in the state dir, and the exporter sees MLServer's process tree
        assert (tmp_path / "state" / "prometheus" / "prometheus.yml").read_text().count("job_name") == 3
        with urllib.request.urlopen(f"http://127.0.0.1:{ports['--exporter-port']}/metrics", timeout=10) as r:
            text = r.read().decode()
        assert 'namedprocess_namegroup_num_procs{groupname="mlserver"}' in text
    finally:
        down = subprocess.run([*cmd, "down", *flags], capture_output=True, text=True, timeout=60)
        bed.down()  # whatever the command left (nothing, if it works)
    assert down.returncode == 0, down.stdout + down.stderr
    for pid in pids:
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_up_refuses_a_taken_prometheus_port_before_starting_anything(tmp_path: Path) -> None:
    import socket

    tb = Testbed.for_tests(tmp_path, prometheus=True)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", tb.config.prometheus_port))
        taken.listen()
        with pytest.raises(TargetError, match=f"Prometheus port 127.0.0.1:{tb.config.prometheus_port} is already"):
            tb.up(timeout_s=30)
    assert tb.pid is None and tb.prometheus.pid("prometheus") is None and tb.prometheus.pid("exporter") is None


def test_a_run_stopped_early_reads_its_windows_up_to_the_stop(bed: Testbed, tmp_path: Path) -> None:
    """Ctrl-C in the second stage: the first window reads in full, the cut one up to the stop, the
    third (never begun) says so; the master does not wait for windows that were to end later."""
    import json
    import signal
    import subprocess
    import sys

    from tests.helpers.run import OutputLines

    cmd = [sys.executable, "-m", "seldon_load.cli", "run", "--host", bed.rest_url, "--model", "synth-cpu-5ms",
           "--stages", "20:1s:5s,40:1s:60s,60:1s:60s", "--settle", "1s", "--workers", "0",
           "--prometheus-url", bed.prometheus.url, "--resource-selector", TESTBED_SELECTOR, "--results", str(tmp_path)]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    out = OutputLines(p)
    try:
        assert out.wait_for("[seldon-load] t=", 60), "the test never started"
        time.sleep(13)  # stage 0 ends at 6 s; stage 1 measures from 8 s
        p.send_signal(signal.SIGINT)
        p.wait(timeout=60)  # far less than the 60 s the cut stage was to hold
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 130, out.text()[-3000:]
    stages = json.loads((tmp_path / "results.json").read_text())["stages"]
    assert stages[0]["server"]["note"] is None and stages[0]["server"]["cpu_ms_per_request"] > CPU_MS
    cut = stages[1]["server"]
    assert cut["note"] is None and cut["cpu_cores"] > 0, cut
    assert stages[2]["server"]["note"] == "the stage has no measured window"
