"""The web UI: binds to 127.0.0.1, starts the test from the browser side, shows the Saturation tab."""

import subprocess
import sys
import time
import urllib.parse
import urllib.request

import orjson
import psutil
import pytest

from seldon_load.testbed.server import free_port

pytestmark = pytest.mark.e2e


def _get(url):
    with urllib.request.urlopen(url, timeout=5) as r:
        return r.status, r.read()


def test_web_ui_tab_shows_live_stage_table(testbed, tmp_path):
    port = free_port()
    hostile = "<img src=x onerror=alert(1)>"
    cmd = [sys.executable, "-m", "seldon_load.cli", "run", "--web-ui", "--web-port", str(port),
           "--host", testbed.rest_url, "--model", "synth-5ms", "--stages", "30:0s:4s,60:0s:30s",
           "--settle", "1s", "--results", str(tmp_path), "--header", f"x-note: {hostile}"]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                status, page = _get(base + "/")
                break
            except OSError:
                time.sleep(0.2)
        assert status == 200
        assert b"Saturation" in page and b"seldon-saturation" in page
        # bound to loopback only
        listening = [c for c in psutil.net_connections("tcp") if c.laddr and c.laddr.port == port
                     and c.status == psutil.CONN_LISTEN]
        assert listening and all(c.laddr.ip == "127.0.0.1" for c in listening)
        data = urllib.parse.urlencode({"user_count": 1, "spawn_rate": 1, "host": testbed.rest_url}).encode()
        # a browser on the UI's own page sends its origin; the UI refuses a POST without it
        req = urllib.request.Request(base + "/swarm", data=data, headers={"Origin": base})
        with urllib.request.urlopen(req, timeout=10) as r:
            assert r.status == 200
        rows = []
        for _ in range(60):
            time.sleep(0.5)
            stats = orjson.loads(_get(base + "/stats/requests")[1])
            ext = {e["key"]: e["data"] for e in stats.get("extended_stats", [])}
            rows = ext.get("seldon-saturation", [])
            if any(r["stage"] == "0" and r["achieved_rps"] for r in rows):
                break
        first = next(r for r in rows if r["stage"] == "0")
        assert first["target_rps"] == 30
        assert first["achieved_rps"] == pytest.approx(30, rel=0.1)
        assert rows[-1]["stage"] == "verdict"
        assert hostile not in orjson.dumps(stats).decode()  # header values never reach the UI
    finally:
        p.terminate()
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
