"""The Kubernetes manifests' own commands and environment, run as local processes (no cluster).

``seldon-load k8s render --variant headless-job`` gives the master Job, the worker Deployment
and the options ConfigMap. Each container becomes a process with the command of its manifest
and the environment Kubernetes would give it (``envFrom`` the ConfigMap, then ``env``), after
one explicit translation of cluster names, ports and paths to this machine (the Service name
and Seldon's ``seldon-mesh`` to 127.0.0.1, the image's /app to this checkout, the results
volume to a temporary directory). A master and two workers then run a short headless test
against the testbed, as they would in the cluster, so the manifests cannot rot unnoticed.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from seldon_load.cli import main
from tests.e2e.test_compose import BIN, ROOT, Procs, Translation, free_ports

pytestmark = pytest.mark.e2e

WORKERS = 2
RENDER = ["k8s", "render", "--variant", "headless-job", "--workers", str(WORKERS), "--model", "synth-5ms",
          "--stages", "20:1s:5s", "--set", "expect-workers-max-wait=60"]
RENDER_WEB_UI = ["k8s", "render", "--variant", "web-ui", "--workers", str(WORKERS), "--model", "synth-5ms"]
_SCRUB = ("LOCUST_", "TESTBED_", "MLSERVER_")


def rendered(capsys: pytest.CaptureFixture[str], argv: list[str] = RENDER) -> dict[tuple[str, str], dict]:
    assert main(argv) == 0
    return {(o["kind"], o["metadata"]["name"]): o for o in yaml.safe_load_all(capsys.readouterr().out)}


def container_env(container: dict, objects: dict[tuple[str, str], dict]) -> dict[str, str]:
    """What the kubelet sets: every key of each envFrom ConfigMap, then ``env`` (which wins)."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        env.update(objects[("ConfigMap", source["configMapRef"]["name"])]["data"])
    for item in container.get("env", []):
        assert set(item) == {"name", "value"}, f"env form not handled here: {item}"
        env[item["name"]] = item["value"]
    return env


def check_translated(tokens: list[str]) -> None:
    for t in tokens:
        assert not re.search(r"seldon-load-master|seldon-mesh|(?<![\w.])0\.0\.0\.0", t), f"untranslated name in {t!r}"
        assert not re.match(r"/(app|results)(/|\Z)", t), f"untranslated container path {t!r}"


@pytest.mark.timeout(240)
def test_rendered_headless_job_runs_a_distributed_test(testbed, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    objects = rendered(capsys)
    master_spec = objects[("Job", "seldon-load-master")]["spec"]["template"]["spec"]
    worker_deploy = objects[("Deployment", "seldon-load-worker")]
    assert worker_deploy["spec"]["replicas"] == WORKERS
    [master_c] = master_spec["containers"]
    [worker_c] = worker_deploy["spec"]["template"]["spec"]["containers"]
    [mount] = master_c["volumeMounts"]
    service_ports = [p["port"] for p in objects[("Service", "seldon-load-master")]["spec"]["ports"]]
    local = free_ports(len(service_ports))
    tr = Translation(
        ports={**dict(zip(service_ports, local, strict=True)), 80: testbed.config.http_port},
        paths={"/app/": f"{ROOT}/", mount["mountPath"]: str(tmp_path / "results")},
        hosts=("seldon-load-master", "seldon-mesh.seldon-mesh", "0.0.0.0"),
    )
    base = {k: v for k, v in os.environ.items() if not k.startswith(_SCRUB)}
    base["PATH"] = f"{BIN}{os.pathsep}{base.get('PATH', '')}"

    def plan(name: str, container: dict) -> tuple[list[str], dict[str, str]]:
        argv = tr.argv([str(c) for c in container["command"] + container.get("args", [])])
        env = tr.env(name, container_env(container, objects))
        check_translated(argv + list(env.values()))
        return argv, {**base, **env}

    procs = Procs(tmp_path)
    try:
        argv, env = plan("master", master_c)
        assert env["LOCUST_HOST"] == testbed.rest_url and env["LOCUST_HEADLESS"] == "true"
        master = procs.start("master", argv, env)
        argv, env = plan("worker", worker_c)
        workers = [procs.start(f"worker-{i}", argv, env) for i in range(WORKERS)]
        try:
            code = master.wait(timeout=90)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"master still running after 90 s\n{procs.logs()}") from None
        assert code == 0, f"master exit code {code}\n{procs.logs()}"  # the Job's success
        for w in workers:
            assert w.wait(timeout=30) == 0, procs.logs()
        results_file = tmp_path / "results" / "latest" / "results.json"
        assert results_file.is_file(), f"no {results_file}\n{procs.logs()}"
        results = json.loads(results_file.read_text())
        assert results["workers"] == WORKERS, results["workers_timeline"]
        assert results["target"]["name"] == "synth-5ms"
        [stage] = results["stages"]
        assert stage["target_rps"] == 20 and stage["requests"] > 0
        assert stage["scheduled"] == stage["requests"] + stage["dropped"]
        assert (tmp_path / "results" / "latest" / "report.html").is_file()
    finally:
        procs.stop_all()


@pytest.mark.timeout(180)
def test_rendered_web_ui_master_serves_the_ui_and_takes_its_workers(testbed, tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """The web-ui variant: its master Deployment's command serves the UI on the port the Service and the
    readiness probe name, and the worker Deployment's pods connect to it through the Service's name."""
    objects = rendered(capsys, RENDER_WEB_UI)
    master_spec = objects[("Deployment", "seldon-load-master")]["spec"]["template"]["spec"]
    [master_c] = master_spec["containers"]
    [worker_c] = objects[("Deployment", "seldon-load-worker")]["spec"]["template"]["spec"]["containers"]
    service = objects[("Service", "seldon-load-master")]["spec"]["ports"]
    web_port = {p["name"]: p["port"] for p in service}["web-ui"]
    assert master_c["readinessProbe"]["tcpSocket"]["port"] == web_port
    local = dict(zip([p["port"] for p in service], free_ports(len(service)), strict=True))
    tr = Translation(ports={**local, 80: testbed.config.http_port}, paths={"/app/": f"{ROOT}/", "/results": str(tmp_path)},
                     hosts=("seldon-load-master", "seldon-mesh.seldon-mesh", "0.0.0.0"))
    # Locust serves its UI on 8089 by default; here on the free port that stands for it
    tr.extra_env["master"] = {**tr.extra_env["master"], "LOCUST_WEB_PORT": str(local[web_port])}
    base = {k: v for k, v in os.environ.items() if not k.startswith(_SCRUB)}
    base["PATH"] = f"{BIN}{os.pathsep}{base.get('PATH', '')}"
    procs = Procs(tmp_path)
    try:
        for name, container, copies in (("master", master_c, 1), ("worker", worker_c, WORKERS)):
            argv = tr.argv([str(c) for c in container["command"]])
            env = tr.env(name, container_env(container, objects))
            check_translated(argv + list(env.values()))
            assert name != "master" or env["LOCUST_HEADLESS"] == "false"
            for i in range(copies):
                procs.start(f"{name}-{i}", argv, {**base, **env})
        url = f"http://127.0.0.1:{local[web_port]}/worker-count"
        deadline, count = time.monotonic() + 90, None
        while time.monotonic() < deadline and count != WORKERS:
            try:
                with urllib.request.urlopen(url, timeout=2) as r:
                    count = json.loads(r.read())["worker_count"]
            except OSError:
                pass
            for name, p in procs.started:
                assert p.poll() is None, f"{name} exited with {p.returncode}\n{procs.logs()}"
            time.sleep(0.5)
        assert count == WORKERS, f"web UI says {count} workers\n{procs.logs()}"
    finally:
        procs.stop_all()
