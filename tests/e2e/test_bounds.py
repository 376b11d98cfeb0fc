"""End to end: the `seldon-load run` process tree under signals, options after `--`, hostile paths."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from seldon_load.testbed.server import free_port
from tests.helpers.run import OutputLines

pytestmark = pytest.mark.e2e


def _with_sigint(disposition: int):
    """preexec_fn: the child's SIGINT disposition set explicitly, whatever pytest's was."""
    return lambda: signal.signal(signal.SIGINT, disposition)


def _run_cmd(testbed, tmp_path: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "seldon_load.cli", "run", "--host", testbed.rest_url, "--model", "synth-5ms",
            "--results", str(tmp_path), *args]


@pytest.mark.parametrize("disposition", [signal.SIG_DFL, signal.SIG_IGN], ids=["sigint-default", "sigint-ignored"])
def test_sigint_to_the_web_ui_parent_alone_stops_master_and_workers(testbed, tmp_path, disposition):
    """`kill -INT` of the parent only (the children are in sessions of their own, so they get nothing
    from the terminal): every process ends. With SIGINT ignored, as in a background job of a script,
    the parent used to ignore it and leave all three running."""
    port = free_port()
    cmd = _run_cmd(testbed, tmp_path, "--web-ui", "--web-port", str(port), "--workers", "2")
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         preexec_fn=_with_sigint(disposition))
    out = OutputLines(p)
    children: list[psutil.Process] = []
    try:
        assert out.wait_for("2 workers connected", 90), out.text()[-3000:]
        children = psutil.Process(p.pid).children(recursive=True)
        assert len(children) == 3, children
        os.kill(p.pid, signal.SIGINT)
        p.wait(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
        _, alive = psutil.wait_procs(children, timeout=20)
        for proc in alive:
            proc.kill()
    assert alive == [], [a.cmdline() for a in alive]
    assert p.returncode == 130, out.text()[-3000:]


def test_a_second_ctrl_c_while_stopping_still_leaves_no_process(testbed, tmp_path):
    cmd = _run_cmd(testbed, tmp_path, "--stages", "20:0s:60s", "--workers", "2")
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         preexec_fn=_with_sigint(signal.SIG_DFL))
    out = OutputLines(p)
    children: list[psutil.Process] = []
    try:
        assert out.wait_for("[seldon-load] t=", 90), out.text()[-3000:]
        children = psutil.Process(p.pid).children(recursive=True)
        for _ in range(3):  # an impatient user
            os.kill(p.pid, signal.SIGINT)
            time.sleep(0.3)
        p.wait(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
        _, alive = psutil.wait_procs(children, timeout=20)
        for proc in alive:
            proc.kill()
    assert alive == []
    assert p.returncode == 130


def test_master_bind_port_after_the_double_dash_is_honoured(testbed, tmp_path):
    port = free_port()
    cmd = _run_cmd(testbed, tmp_path, "--stages", "20:0s:4s", "--settle", "1s", "--workers", "1",
                   "--", "--master-bind-port", str(port))
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out = OutputLines(p)
    listening = False
    try:
        deadline = time.time() + 90
        while time.time() < deadline and p.poll() is None and not listening:
            for child in psutil.Process(p.pid).children():
                try:
                    if "--master" in child.cmdline():
                        listening = any(c.status == psutil.CONN_LISTEN and c.laddr.port == port
                                        for c in child.net_connections(kind="tcp"))
                except psutil.NoSuchProcess:
                    pass
            time.sleep(0.2)
        p.wait(timeout=120)
    finally:
        if p.poll() is None:
            p.kill()
    assert listening, f"the master never listened on {port}: {out.text()[-3000:]}"
    assert p.returncode == 0, out.text()[-3000:]
    res = json.loads((tmp_path / "results.json").read_text())
    assert res["workers"] == 1 and res["stages"][0]["ok"] > 0


def test_a_results_path_with_control_characters_is_escaped_on_the_console(testbed, tmp_path):
    forged = "FORGED: every threshold held"
    results = tmp_path / f"out\n{forged}\x1b[2J"
    cmd = [sys.executable, "-m", "seldon_load.cli", "run", "--host", testbed.rest_url, "--model", "synth-5ms",
           "--stages", "10:0s:2s", "--settle", "0s", "--results", str(results)]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-3000:]
    assert (results / "results.json").is_file()
    text = p.stdout + p.stderr
    assert "\x1b" not in text
    assert not any(line.startswith(forged) for line in text.splitlines())
    assert f"\\n{forged}\\x1b[2J/" in text  # the path is shown, escaped


def test_a_yaml_alias_bomb_spec_is_one_line_and_exit_2_at_once(tmp_path):
    """The command as users run it: before the bounded loader this spec held it for minutes and
    gigabytes (every level multiplies the work by 9) while it built an error message."""
    lines = ["l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, 12)]
    spec = tmp_path / "bomb.yaml"
    spec.write_text("\n".join(lines) + "\napiVersion: mlops.seldon.io/v1alpha1\nkind: Pipeline\n"
                    "metadata: {name: p}\nspec:\n  steps:\n  - name: a\n    inputs: *l11\n")
    cmd = [sys.executable, "-m", "seldon_load.cli", "run", "--host", "http://127.0.0.1:9", "--pipeline", "p",
           "--stages", "10:0s:1s", "--pipeline-spec", str(spec), "--results", str(tmp_path / "out")]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert p.returncode == 2, p.stderr[-2000:]
    lines_out = [line for line in p.stderr.splitlines() if line.strip()]
    assert len(lines_out) == 1 and "more than 50000 YAML nodes" in lines_out[0], p.stderr[-2000:]
    assert not (tmp_path / "out").exists()  # refused before Locust started
