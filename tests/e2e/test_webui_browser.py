"""The web UI in a real browser (Debian's chromium through Playwright) against the real testbed:
Locust's own form starts a test and the Saturation tab fills; Stop, New and Start run a second
test with the form's values; a target that is down at Start is named in the tab and nothing is
sent; a cross-origin form post and a foreign Host (DNS rebinding) are refused; --web-login."""

from __future__ import annotations

import contextlib
import http.server
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from playwright.sync_api import Page, expect, sync_playwright

from seldon_load.testbed.server import free_port

pytestmark = pytest.mark.e2e

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
REBOUND_NAME = "rebound.test"  # resolved to 127.0.0.1 by the browser, as DNS rebinding would


@pytest.fixture(scope="module")
def browser(tmp_path_factory) -> Iterator:
    with sync_playwright() as pw:
        ctx = pw.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")), executable_path=CHROMIUM, headless=True,
            args=[*CHROMIUM_ARGS, f"--host-resolver-rules=MAP {REBOUND_NAME} 127.0.0.1"])
        ctx.set_default_timeout(20_000)
        try:
            yield ctx
        finally:
            ctx.close()


@pytest.fixture
def page(browser) -> Iterator[Page]:
    p = browser.new_page()
    try:
        yield p
    finally:
        p.close()


@contextlib.contextmanager
def web_ui(host: str, results: Path, *extra: str, env: dict | None = None) -> Iterator[str]:
    """``seldon-load run --web-ui`` on a free port; its base URL. Stopped by PID."""
    port = free_port()
    cmd = [sys.executable, "-m", "seldon_load.cli", "run", "--web-ui", "--web-port", str(port), "--host", host,
           "--model", "synth-5ms", "--stages", "20:0s:3s", "--settle", "1s", "--results", str(results), *extra]
    log = open(results.parent / f"{results.name}-ui.log", "w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(base + "/", timeout=2):
                    break
            except urllib.error.HTTPError:
                break  # the UI answers (e.g. a login redirect)
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise AssertionError(f"web UI did not come up: {Path(log.name).read_text()[-2000:]}") from None
                time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def stats(base: str) -> dict:
    with urllib.request.urlopen(base + "/stats/requests", timeout=5) as r:
        return orjson.loads(r.read())


def tab_rows(base: str) -> list[dict]:
    ext = {e["key"]: e["data"] for e in stats(base).get("extended_stats", [])}
    return ext.get("seldon-saturation", [])


def wait_for(what: str, check, timeout_s: float = 30.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def fill_and_start(page: Page, **fields: str) -> None:
    """Locust's form: seldon-load's options sit under "Custom parameters" (collapsed at first)."""
    for name, value in fields.items():
        field = page.locator(f"input[name={name}]")
        if not field.is_visible():
            page.get_by_role("button", name="Custom parameters").click()
        field.fill(value)
    page.get_by_role("button", name="Start").click()


def open_saturation_tab(page: Page) -> None:
    page.get_by_role("tab", name="Saturation").click()


def results_json(results: Path) -> dict | None:
    f = results / "results.json"
    return orjson.loads(f.read_bytes()) if f.exists() else None


def test_form_start_fills_the_tab_and_new_start_runs_a_second_test(testbed, tmp_path, page):
    results = tmp_path / "res"
    with web_ui(testbed.rest_url, results) as base:
        page.goto(base + "/")
        fill_and_start(page, stages="25:0s:30s")
        open_saturation_tab(page)
        row = page.get_by_role("row").filter(has_text="(so far)").first
        expect(row).to_be_visible(timeout=20_000)
        first = wait_for("stage 0 measured", lambda: next(
            (r for r in tab_rows(base) if r["stage"] == "0" and r["achieved_rps"]), None))
        assert first["target_rps"] == 25
        expect(page.get_by_role("cell", name="25", exact=True).first).to_be_visible()
        page.screenshot(path=str(tmp_path / "saturation-tab.png"), full_page=True)

        page.get_by_role("button", name="Stop").click()
        done = wait_for("results of the stopped test", lambda: results_json(results))
        assert done["stages"][0]["target_rps"] == 25 and done["stages"][0]["requests"] > 0
        (results / "results.json").unlink()

        page.get_by_role("button", name="New").click()
        fill_and_start(page, stages="40:0s:3s")
        second = wait_for("the second test's results", lambda: results_json(results), timeout_s=45)
        stage = second["stages"][0]
        assert stage["target_rps"] == 40
        assert stage["requests"] > 40  # it sent: 3 s at 40 rps, measured after a 1 s settle
        assert stage["failures"] == 0


@pytest.mark.parametrize("workers", [0, 1])
def test_a_target_down_at_start_is_named_in_the_tab_then_the_forms_host_runs(testbed, tmp_path, page, workers):
    dead = f"http://127.0.0.1:{free_port()}"
    results = tmp_path / "res"
    with web_ui(dead, results, "--workers", str(workers)) as base:
        page.goto(base + "/")
        fill_and_start(page, stages="30:0s:2s")
        rows = wait_for("the preflight failure in the tab", lambda: tab_rows(base), timeout_s=20)
        assert rows[0]["stage"] == "preflight" and "NOT STARTED" in rows[0]["verdict"]
        assert dead.split("//")[1] in rows[0]["reasons"] or "refused" in rows[0]["reasons"].lower()
        open_saturation_tab(page)
        expect(page.get_by_text("NOT STARTED: nothing was sent")).to_be_visible()
        page.screenshot(path=str(tmp_path / "preflight-failed.png"), full_page=True)
        assert stats(base)["total_rps"] == 0 and not any(s["num_requests"] for s in stats(base)["stats"])
        assert results_json(results) is None

        page.get_by_role("button", name="New").click()
        fill_and_start(page, host=testbed.rest_url, stages="30:0s:2s")
        got = wait_for("results against the form's host", lambda: results_json(results), timeout_s=45)
        assert got["target"]["host"] == testbed.rest_url
        assert got["stages"][0]["requests"] > 0 and got["stages"][0]["failures"] == 0
        assert got["workers"] == workers


class _CrossSite(http.server.BaseHTTPRequestHandler):
    """Another site on this machine whose page posts a start form to the web UI."""

    target = ""

    def do_GET(self) -> None:  # noqa: N802 -- http.server's naming
        body = (f"<form method=post action='{self.target}/swarm'><input name=user_count value=1>"
                "<input name=spawn_rate value=1></form><script>document.forms[0].submit()</script>").encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


def test_a_cross_origin_post_and_a_foreign_host_are_refused(testbed, tmp_path, page):
    results = tmp_path / "res"
    with web_ui(testbed.rest_url, results) as base:
        _CrossSite.target = base
        site = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _CrossSite)
        threading.Thread(target=site.serve_forever, daemon=True).start()
        try:
            with page.expect_response(lambda r: r.url.endswith("/swarm")) as answer:
                page.goto(f"http://localhost:{site.server_address[1]}/")
            assert answer.value.status == 403
            expect(page.get_by_text("refused")).to_be_visible()
        finally:
            site.shutdown()
            site.server_close()
        # DNS rebinding: the browser reaches the UI under a name it does not listen on
        port = base.rsplit(":", 1)[1]
        response = page.goto(f"http://{REBOUND_NAME}:{port}/stats/requests")
        assert response is not None and response.status == 403
        # the same without a browser: a forged Host, and a POST with no Origin or Referer
        req = urllib.request.Request(base + "/swarm", data=b"user_count=1&spawn_rate=1",
                                     headers={"Host": f"evil.example:{port}", "Origin": f"http://evil.example:{port}"})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(req, timeout=5)
        assert refused.value.code == 403
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(urllib.request.Request(base + "/swarm", data=b"user_count=1"), timeout=5)
        assert refused.value.code == 403
        time.sleep(2)  # a test started by any of these would have sent by now
        now = stats(base)
        assert now["state"] == "ready" and now["user_count"] == 0
        assert not any(s["num_requests"] for s in now["stats"]) and tab_rows(base) == []
        assert results_json(results) is None


def test_locusts_form_works_behind_the_web_login(testbed, tmp_path, page):
    import os

    results = tmp_path / "res"
    env = {**os.environ, "SELDON_LOAD_WEB_PASSWORD": "correct horse battery", "SELDON_LOAD_WEB_USER": "ops"}
    with web_ui(testbed.rest_url, results, "--web-login", env=env) as base:
        page.goto(base + "/")
        page.locator("input[name=username]").fill("ops")
        page.locator("input[name=password]").fill("correct horse battery")
        page.get_by_role("button", name="Login").click()
        fill_and_start(page, stages="20:0s:2s")
        got = wait_for("results of a test started after login", lambda: results_json(results), timeout_s=45)
        assert got["stages"][0]["target_rps"] == 20 and got["stages"][0]["requests"] > 0


def test_a_second_test_on_a_worker_runs_with_the_forms_new_values(testbed, tmp_path, page):
    """The master publishes a test's plan before it spawns (and so before the workers load the
    form's values): a worker that ran the first test must not start the second with the old ones."""
    results = tmp_path / "res"
    with web_ui(testbed.rest_url, results, "--workers", "1") as base:
        page.goto(base + "/")
        fill_and_start(page, model="synth-1ms", stages="20:0s:2s")
        first = wait_for("the first test's results", lambda: results_json(results), timeout_s=45)
        assert first["stages"][0]["latency_ms"]["p50"] < 15
        (results / "results.json").unlink()
        page.get_by_role("button", name="New").click()
        fill_and_start(page, model="synth-20ms", stages="20:0s:2s")
        second = wait_for("the second test's results", lambda: results_json(results), timeout_s=45)
        stage = second["stages"][0]
        assert second["target"]["name"] == "synth-20ms" and stage["requests"] > 0 and stage["failures"] == 0
        assert stage["latency_ms"]["p50"] >= 20  # the worker called synth-20ms, not the first test's model


def test_a_name_given_with_web_allowed_host_serves_the_form(testbed, tmp_path, page):
    results = tmp_path / "res"
    with web_ui(testbed.rest_url, results, "--web-allowed-host", REBOUND_NAME) as base:
        port = base.rsplit(":", 1)[1]
        page.goto(f"http://{REBOUND_NAME}:{port}/")  # the browser's Host and Origin use this name
        fill_and_start(page, stages="20:0s:2s")
        got = wait_for("results of a test started under the allowed name", lambda: results_json(results),
                       timeout_s=45)
        assert got["stages"][0]["requests"] > 0
