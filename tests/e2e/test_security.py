"""Secrets never written, hostile strings always escaped, the web UI locked down, no code from data.

The target is the misbehaving server of the fault suite, made hostile: it echoes every request
header (the planted secrets) in its error messages and puts markup in them.
"""

from __future__ import annotations

import ast
import http.cookiejar
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import orjson
import psutil
import pytest

from tests.faults.conftest import ROOT, free_ports, stop_group, wait_until
from tests.faults.conftest import bad_server as bad_server  # the fixture, shared with the fault suite
from tests.helpers.run import Run, assert_accounting, seldon_load

pytestmark = pytest.mark.e2e

BEARER = "Tok3n-bearer-9f8e7d6c5b4a"
API_KEY = "K3y-api-0a1b2c3d4e5f"
PASSWORD = "Pa55-url-q1w2e3r4t5"
BASIC = "dXNlcjpQYTU1LXVybC1xMXcyZTNyNHQ1"  # base64("user:" + PASSWORD), what goes on the wire
PLANTED = (BEARER, API_KEY, PASSWORD, BASIC)
MARKUP = "<script>alert(1)</script><img src=x onerror=alert(2)>"
FAST = ["--request-timeout", "1", "--drain-timeout", "2s", "--settle", "1s"]


def _leaks(text: str) -> list[str]:
    """Planted secrets in ``text``, whole or as a prefix of 8+ characters (a message cut short)."""
    return [s for s in PLANTED if s[:8] in text]


def _all_output(run_dir: Path, *texts: str) -> dict[str, str]:
    out = {f"text{i}": t for i, t in enumerate(texts)}
    for path in run_dir.rglob("*"):
        if path.is_file():
            out[str(path.relative_to(run_dir))] = path.read_text(errors="replace")
    return out


@pytest.mark.parametrize(("protocol", "workers"), [("rest", 2), ("grpc", 0)])
def test_planted_secrets_never_written(bad_server, tmp_path, protocol, workers):
    server = bad_server("--mode", "mix", "--echo-headers", "--message", "denied")
    host = (f"http://user:{PASSWORD}@127.0.0.1:{server.rest_port}" if protocol == "rest"
            else f"grpc://user:{PASSWORD}@127.0.0.1:{server.grpc_port}")
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "seldon_load.cli", "run", "--host", host, "--model", "m", "--stages", "20:0s:4s",
           *FAST, "--workers", str(workers), "--header", f"X-Auth-Token: Bearer {BEARER}",
           "--header", f"X-Api-Key: {API_KEY}", "--results", str(out),
           "--", "--csv", str(out / "locust"), "--html", str(out / "locust.html")]  # Locust's own outputs too
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=ROOT)
    run = Run(p.returncode, p.stdout, p.stderr, out)
    assert run.code in (0, 1), run.stderr[-3000:]
    res = run.results
    assert_accounting(res)
    # the server did echo them: the scrubbing had something to do, and did it
    echoed = [x for e in res["errors"] for x in e["examples"] if "got headers" in x]
    assert echoed and all(x.count("***") >= 2 for x in echoed), echoed[:3]  # bearer, api key, basic
    assert all("Basic ***" in x for x in echoed)  # the URL's credentials still reached the server
    files = _all_output(out, run.stdout, run.stderr)
    assert {"results.json", "report.html", "stages.csv", "timeline.csv", "locust_failures.csv"} <= set(files)
    if workers:
        assert "worker-0.log" in files
    leaks = {name: _leaks(text) for name, text in files.items() if _leaks(text)}
    assert leaks == {}
    assert res["target"]["host"] == host.replace(f"user:{PASSWORD}@", "")


def test_hostile_spec_and_server_strings_are_escaped_in_the_report(bad_server, tmp_path):
    """Pipeline step names (from a spec) and error messages (from the server) with markup."""
    server = bad_server("--mode", "mix", "--message", MARKUP)
    spec = tmp_path / "hostile.yaml"
    spec.write_text("apiVersion: mlops.seldon.io/v1alpha1\nkind: Pipeline\nmetadata:\n  name: p\nspec:\n"
                    "  steps:\n  - name: \"<script>alert(3)</script>\"\n  - name: \"b<img/src=x/onerror=alert(4)>\"\n"
                    "    inputs: [\"<script>alert(3)</script>\"]\n  output:\n    steps: [\"b<img/src=x/onerror=alert(4)>\"]\n")
    run = seldon_load(["run", "--host", server.rest_url, "--pipeline", "p", "--pipeline-spec", str(spec),
                       "--stages", "20:0s:3s", *FAST], tmp_path / "out", timeout_s=120)
    assert run.code in (0, 1), run.stderr[-3000:]
    res = run.results
    assert any(s["name"] == "<script>alert(3)</script>" for s in res["pipeline"]["steps"])  # reached the report
    html = (tmp_path / "out" / "report.html").read_text()
    assert not re.search(r"<\s*(script|img|iframe|object)", html, re.I)  # no tag from a string, and no script
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html  # the server's message, escaped
    assert "&lt;script&gt;alert(3)&lt;/script&gt;" in html  # the spec's step name, escaped
    assert "\x1b" not in run.stdout  # no terminal escapes reach the console summary


def _opener() -> urllib.request.OpenerDirector:
    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    return urllib.request.build_opener(NoRedirect, urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))


def _request(opener, url: str, form: dict | None = None) -> tuple[int, str, bytes]:
    data = urllib.parse.urlencode(form).encode() if form is not None else None
    parts = urllib.parse.urlsplit(url)  # a POST from the UI's own page carries its origin
    headers = {"Origin": f"{parts.scheme}://{parts.netloc}"} if data is not None else {}
    try:
        with opener.open(urllib.request.Request(url, data=data, headers=headers), timeout=10) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type", ""), e.read()


def test_web_ui_loopback_login_no_secrets_escaped(bad_server, tmp_path):
    """--web-ui binds to 127.0.0.1; --web-login locks every page and the start button until the
    right password; the host's URL password and header values never reach the UI; server strings
    with markup reach it only as JSON data."""
    server = bad_server("--mode", "mix", "--echo-headers", "--message", MARKUP)
    port = free_ports(1)[0]
    web_password = "w3b-login-pw-7c6b5a"
    env = dict(os.environ, SELDON_LOAD_WEB_PASSWORD=web_password, SELDON_LOAD_WEB_USER="ops")
    host = f"http://user:{PASSWORD}@127.0.0.1:{server.rest_port}"
    cmd = [sys.executable, "-m", "seldon_load.cli", "run", "--web-ui", "--web-login", "--web-port", str(port),
           "--host", host, "--model", "m", "--stages", "20:0s:30s", *FAST,
           "--header", f"Authorization: Bearer {BEARER}", "--results", str(tmp_path / "out")]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                            start_new_session=True, cwd=ROOT)
    base = f"http://127.0.0.1:{port}"
    anonymous, user = _opener(), _opener()
    try:
        wait_until(lambda: _reachable(base), 60, "the web UI")
        listening = [c for c in psutil.net_connections("tcp") if c.laddr and c.laddr.port == port
                     and c.status == psutil.CONN_LISTEN]
        assert listening and all(c.laddr.ip == "127.0.0.1" for c in listening)
        # locked: every page and the start button send an anonymous user to the login page
        for path, form in (("/", None), ("/stats/requests", None), ("/logs", None),
                           ("/swarm", {"user_count": 1, "spawn_rate": 1})):
            status, _, _ = _request(anonymous, base + path, form)
            assert status in (302, 401), (path, status)
        status, _, _ = _request(anonymous, base + "/login_submit", {"username": "ops", "password": "wrong"})
        assert status == 302 and _request(anonymous, base + "/stats/requests")[0] in (302, 401)
        time.sleep(1.0)
        assert server.infer_count() == 0  # no load was started by anyone not logged in
        # logged in: the UI works
        status, _, _ = _request(user, base + "/login_submit", {"username": "ops", "password": web_password})
        assert status == 302
        status, _, page = _request(user, base + "/")
        assert status == 200 and b"seldon-saturation" in page
        status, _, _ = _request(user, base + "/swarm", {"user_count": 1, "spawn_rate": 1})
        assert status == 200
        wait_until(lambda: _failures_shown(user, base), 60, "failures in the UI")
        pages = {path: _request(user, base + path) for path in ("/", "/stats/requests", "/logs")}
    finally:
        stop_group(proc, signal.SIGTERM, timeout_s=60)
    for path, (status, ctype, body) in pages.items():
        text = body.decode(errors="replace")
        assert status == 200 and _leaks(text) == [], (path, _leaks(text))
        if path == "/":
            assert f"127.0.0.1:{server.rest_port}" in text  # the host is shown, its password is not
            assert not re.search(r"<\s*script>alert|<img src=x", text, re.I)
        else:  # server strings come as JSON data, which the UI renders as text
            assert ctype.startswith("application/json"), (path, ctype)
    stats = orjson.loads(pages["/stats/requests"][2])
    assert any(MARKUP[:20] in e.get("error", "") for e in stats.get("errors", []))


def _reachable(base: str) -> bool:
    try:
        urllib.request.urlopen(base + "/login", timeout=2).close()
        return True
    except OSError:
        return False


def _failures_shown(opener, base: str) -> bool:
    status, _, body = _request(opener, base + "/stats/requests")
    return status == 200 and bool(orjson.loads(body).get("errors"))


# ---- no code is ever built from what is read from files or the network


UNTRUSTED_MODULES = {"pickle", "cPickle", "dill", "marshal", "shelve", "jsonpickle"}
CODE_CALLS = {"eval", "exec", "compile", "__import__"}


def _package_sources() -> list[Path]:
    """Everything the load tester runs. The testbed is left out: it writes and loads its own joblib
    model file (MLServer's sklearn runtime), never anything received."""
    pkg = ROOT / "seldon_load"
    return [p for p in [*pkg.rglob("*.py"), *(ROOT / "locustfiles").rglob("*.py")]
            if "_generated" not in p.parts and "testbed" not in p.parts]


def test_no_eval_pickle_or_unsafe_yaml():
    problems = []
    for path in _package_sources():
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = [a.name for a in node.names] + ([node.module] if isinstance(node, ast.ImportFrom) else [])
                bad = {n.split(".")[0] for n in names if n} & UNTRUSTED_MODULES
                if bad:
                    problems.append(f"{path.name}:{node.lineno} imports {bad}")
            if isinstance(node, ast.Call):
                fn = node.func
                name = fn.id if isinstance(fn, ast.Name) else fn.attr if isinstance(fn, ast.Attribute) else ""
                builtin = isinstance(fn, ast.Name) or ast.unparse(fn).startswith("builtins.")
                if name in CODE_CALLS and builtin:
                    problems.append(f"{path.name}:{node.lineno} calls {name}")
                if name in ("load", "load_all", "unsafe_load", "full_load") and _is_yaml(fn):
                    loader = next((k.value for k in node.keywords if k.arg == "Loader"), None)
                    if name in ("unsafe_load", "full_load") or loader is None or "Safe" not in ast.unparse(loader) \
                            and ast.unparse(loader) != "_Loader":
                        problems.append(f"{path.name}:{node.lineno} yaml.{name} without a safe loader")
                if any(k.arg == "shell" and getattr(k.value, "value", False) is True for k in node.keywords):
                    problems.append(f"{path.name}:{node.lineno} runs a shell")
                if name == "system" and isinstance(fn, ast.Attribute) and ast.unparse(fn.value) == "os":
                    problems.append(f"{path.name}:{node.lineno} calls os.system")
    assert len(_package_sources()) > 20
    assert problems == []


def _is_yaml(fn) -> bool:
    return isinstance(fn, ast.Attribute) and ast.unparse(fn.value) == "yaml"


def test_the_yaml_loader_used_for_specs_is_safe():
    import yaml

    from seldon_load import safe_yaml
    from seldon_load.pipelines import spec

    assert issubclass(safe_yaml.BoundedSafeLoader, yaml.SafeLoader)
    assert spec.load_all is safe_yaml.load_all


# ---- TLS: a custom CA and client certificates, for REST and gRPC targets, end to end


@pytest.mark.parametrize("protocol", ["rest", "grpc"])
def test_tls_custom_ca_and_client_certificate(tmp_path, protocol):
    from tests.faults.conftest import BadServer
    from tests.integration.test_transport import TEST_CA_PEM, TEST_CERT_PEM, TEST_KEY_PEM

    pki = {}
    for name, text in (("ca", TEST_CA_PEM), ("cert", TEST_CERT_PEM), ("key", TEST_KEY_PEM)):
        pki[name] = tmp_path / f"{name}.pem"
        pki[name].write_text(text)
    server = BadServer(*free_ports(2), ["--mode", "ok", "--tls-cert", str(pki["cert"]), "--tls-key",
                                        str(pki["key"]), "--tls-client-ca", str(pki["ca"])]).start()
    try:
        host = (f"https://127.0.0.1:{server.rest_port}" if protocol == "rest"
                else f"grpcs://127.0.0.1:{server.grpc_port}")
        base = ["run", "--host", host, "--model", "m", "--stages", "20:0s:3s", *FAST]
        mtls = ["--ca-file", str(pki["ca"]), "--cert-file", str(pki["cert"]), "--key-file", str(pki["key"])]
        run = seldon_load([*base, *mtls], tmp_path / "ok", timeout_s=120)
        assert run.code == 0, run.stderr[-3000:]
        res = run.results
        assert_accounting(res)
        ok = sum(row["ok"] for row in res["timeline"])
        assert ok == sum(row["offered_rps"] for row in res["timeline"]) == server.infer_count() > 0
        # without the client certificate, or without the custom CA: refused before any load
        for missing, args in (("client certificate", ["--ca-file", str(pki["ca"])]), ("CA", mtls[2:])):
            bad = seldon_load([*base, *args], tmp_path / missing.replace(" ", "_"), timeout_s=60)
            assert bad.code == 2, (missing, bad.stderr[-2000:])
            assert len([ln for ln in bad.stderr.splitlines() if ln.startswith("seldon-load: error:")]) == 1
        assert server.infer_count() == ok
    finally:
        server.stop()
