"""The live Saturation tab's verdicts when the server is overloaded or refuses every connection:
the same definitions as the final results, so no generator alarm for requests queued at the
server and no "saturated" for a target that is down."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.parse
import urllib.request

import orjson
import pytest

from seldon_load.testbed.server import free_port

pytestmark = pytest.mark.e2e


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=5) as r:
        return r.read()


def _live_rows(host: str, stages: str, tmp_path, until, timeout_s: float = 60) -> list[list[dict]]:
    """Start a web-UI run, press start, and collect the tab's rows every 0.5 s until ``until(rows)``."""
    # send lag up to 100 ms tolerated: these tests are about what the tab calls a shortfall of
    # answers, not about generator health, which a loaded CI machine can rightly fail
    port = free_port()
    payload = tmp_path / "payload.json"  # a payload of its own: a target that is down has no metadata
    payload.write_bytes(orjson.dumps({"inputs": [{"name": "INPUT0", "datatype": "FP32", "shape": [1, 4],
                                                  "data": [1, 2, 3, 4]}]}))
    cmd = [sys.executable, "-m", "seldon_load.cli", "run", "--web-ui", "--web-port", str(port), "--host", host,
           "--model", "synth-10ms", "--stages", stages, "--settle", "1s", "--request-timeout", "2",
           "--max-send-lag-ms", "100", "--payload", str(payload), "--results", str(tmp_path / "r")]
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    seen: list[list[dict]] = []
    try:
        for _ in range(150):
            try:
                _get(base + "/")
                break
            except OSError:
                time.sleep(0.2)
        data = urllib.parse.urlencode({"user_count": 1, "spawn_rate": 1, "host": host}).encode()
        with urllib.request.urlopen(urllib.request.Request(base + "/swarm", data=data, headers={"Origin": base}), timeout=10) as r:
            assert r.status == 200
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            time.sleep(0.5)
            stats = orjson.loads(_get(base + "/stats/requests"))
            rows = {e["key"]: e["data"] for e in stats.get("extended_stats", [])}.get("seldon-saturation", [])
            if rows:
                seen.append(rows)
                if until(rows):
                    break
    finally:
        p.terminate()
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
    return seen


def _stage(rows: list[dict], index: int) -> dict | None:
    return next((r for r in rows if r["stage"] == str(index)), None)


def test_live_tab_during_an_overloaded_stage_says_saturated_not_generator(testbed, tmp_path):
    # synth-10ms answers 100 rps; the second stage offers 200: its queue grows at the server
    def far_enough(rows):  # the overloaded stage judged on answers (not only on being young)
        over = _stage(rows, 1)
        return over is not None and over["verdict"].startswith("NOT sustained") and (
            "achieved" in over["reasons"] or "queue" in over["reasons"])

    seen = _live_rows(testbed.rest_url, "30:0s:5s,200:0s:20s", tmp_path, far_enough)
    with_over = [rows for rows in seen if _stage(rows, 1) is not None]
    assert with_over and far_enough(with_over[-1]), seen[-1:]
    for rows in with_over:
        text = " ".join(f"{r['verdict']} {r['reasons']}" for r in rows)
        assert "could not keep up" not in text and "generator:" not in text, rows
    final = with_over[-1]
    assert final[-1]["stage"] == "verdict" and final[-1]["verdict"].startswith("saturation point 30"), final[-1]


def test_live_tab_for_a_target_refusing_every_connection_names_it_not_saturation(tmp_path):
    # the web UI's start runs the CLI's pre-flight: a target refusing connections is named at once,
    # nothing is sent, and the tab never calls it saturation
    host = f"http://127.0.0.1:{free_port()}"  # nothing listens there

    def judged(rows):
        return bool(rows) and rows[0]["stage"] == "preflight" and "refused" in rows[0]["reasons"]

    seen = _live_rows(host, "10:0s:8s", tmp_path, judged, timeout_s=40)
    assert seen and judged(seen[-1]), seen[-1:]
    assert seen[-1][0]["verdict"].startswith("NOT STARTED")
    assert all("saturat" not in r["verdict"] for rows in seen for r in rows)
