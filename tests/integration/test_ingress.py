"""The testbed's Envoy ingress: models and pipelines over REST and gRPC, plain and TLS, through a
real Envoy that routes on ``seldon-model`` as Seldon Core 2's ``seldon-mesh`` does.

MLServer ignores the routing header and the authority; these tests show that Envoy does not: a
wrong header, a missing one or a wrong ``:authority`` gets a 404 (gRPC: UNIMPLEMENTED) where the
same request straight to MLServer succeeds.
"""

from __future__ import annotations

import http.client
import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import psutil
import pytest
from mlserver.grpc import dataplane_pb2 as pb
from mlserver.grpc import dataplane_pb2_grpc

from seldon_load.errors import TargetError
from seldon_load.oip.payload import encode_for
from seldon_load.oip.target import parse_target
from seldon_load.oip.types import InferRequest, Tensor
from seldon_load.testbed.ingress import Ingress, IngressPorts
from seldon_load.testbed.server import PIPELINES, Testbed
from seldon_load.transport.clients import make_client
from seldon_load.transport.tls import TlsConfig
from tests.helpers.run import seldon_load

pytestmark = pytest.mark.integration

ROWS = np.array([[1.0, 2.0, 3.0, 4.0], [0.5, 0.0, -1.0, 2.0]], dtype=np.float32)
SUMS = ROWS.sum(axis=1)
BODY = json.dumps({"inputs": [{"name": "INPUT0", "datatype": "FP32", "shape": [2, 4],
                               "data": ROWS.ravel().tolist()}]}).encode()


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@pytest.fixture(scope="module")
def mesh(testbed: Testbed, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ingress]:
    """An Envoy ingress in front of the session's testbed (its own MLServer is not restarted)."""
    port, tls_port = free_ports(2)
    ports = IngressPorts("127.0.0.1", port, tls_port, testbed.config.http_port, testbed.config.grpc_port)
    ingress = Ingress(tmp_path_factory.mktemp("ingress"), ports)
    ingress.start([m for m in testbed.models if m not in PIPELINES], list(PIPELINES), stop_with_parent=True)
    try:
        yield ingress
    finally:
        assert ingress.stop() is True


def host(mesh: Ingress, protocol: str, tls: bool) -> str:
    port = mesh.ports.tls_port if tls else mesh.ports.port
    scheme = {("rest", False): "http", ("rest", True): "https", ("grpc", False): "grpc", ("grpc", True): "grpcs"}
    return f"{scheme[protocol, tls]}://127.0.0.1:{port}"


def client_for(mesh: Ingress, protocol: str, tls: bool, model: str | None, pipeline: str | None = None,
               pipeline_path: bool = False) -> tuple[Any, Any]:
    target = parse_target(host(mesh, protocol, tls), model, pipeline, pipeline_path=pipeline_path)
    options = {"tls": TlsConfig(ca_file=str(mesh.ca_file))} if tls else {}
    return target, make_client(target, timeout_s=10.0, **options)


def rows_request() -> InferRequest:
    return InferRequest(inputs=[Tensor("INPUT0", "FP32", list(ROWS.shape), ROWS)])


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
@pytest.mark.parametrize("protocol", ["rest", "grpc"])
@pytest.mark.parametrize(("model", "pipeline"), [("synth-5ms", None), (None, "branching")], ids=["model", "pipeline"])
def test_models_and_pipelines_through_envoy(mesh: Ingress, protocol: str, tls: bool, model: str | None,
                                           pipeline: str | None) -> None:
    target, client = client_for(mesh, protocol, tls, model, pipeline)
    try:
        client.check_target()
        metadata = client.model_metadata()
        reply = client.infer_decoded(encode_for(target, rows_request()))
    finally:
        client.close()
    assert metadata["name"] == (model or pipeline)
    assert reply.model_name == (model or pipeline)
    # synth models answer each row's sum; branching: synth-1ms's sums go through two branches
    # (each summing its 4 columns: 4 * s) and join-1ms adds both (4 * 4 * s + 4 * 4 * s = 32 * s)
    factor = 1.0 if model else 32.0
    np.testing.assert_allclose(reply.output("OUTPUT0").data, np.repeat((factor * SUMS)[:, None], 4, axis=1),
                               rtol=1e-5)


def test_pipeline_path_is_routed_to_the_pipeline(mesh: Ingress) -> None:
    """``--pipeline-path`` sends /v2/pipelines/NAME/infer, which Core 2's gateway takes."""
    target, client = client_for(mesh, "rest", False, None, "linear", pipeline_path=True)
    assert target.infer_path == "/v2/pipelines/linear/infer"
    try:
        client.check_target()
        assert client.infer(encode_for(target, rows_request())).ok
    finally:
        client.close()


@pytest.mark.parametrize("protocol", ["rest", "grpc"])
def test_an_unknown_name_is_not_routed(mesh: Ingress, protocol: str) -> None:
    target, client = client_for(mesh, protocol, False, "no-such-model")
    try:
        with pytest.raises(TargetError) as info:
            client.check_target()
        out = client.infer(encode_for(target, rows_request()))
    finally:
        client.close()
    assert "no-such-model" in str(info.value) and "\n" not in str(info.value)
    assert not out.ok
    assert out.error_kind == ("http_404" if protocol == "rest" else "grpc_UNIMPLEMENTED")


def rest_status(port: int, path: str, headers: dict[str, str]) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("POST", path, body=BODY, headers={"Content-Type": "application/json", **headers})
        return conn.getresponse().status
    finally:
        conn.close()


@pytest.mark.parametrize(("headers", "path"), [
    ({}, "/v2/models/synth-5ms/infer"),  # no routing header
    ({"seldon-model": "synth-2ms"}, "/v2/models/synth-5ms/infer"),  # header for another model
    ({"seldon-model": "branching"}, "/v2/models/branching/infer"),  # a pipeline needs NAME.pipeline
    ({"seldon-model": "synth-5ms.pipeline"}, "/v2/models/synth-5ms/infer"),  # a model is no pipeline
    ({"seldon-model": "synth-5ms", "Host": "wrong.example"}, "/v2/models/synth-5ms/infer"),  # authority
], ids=["no-header", "other-model", "pipeline-without-suffix", "model-as-pipeline", "wrong-host"])
def test_a_wrong_routing_header_or_host_fails_over_rest(mesh: Ingress, testbed: Testbed, headers: dict[str, str],
                                                        path: str) -> None:
    assert rest_status(mesh.ports.port, path, headers) == 404
    direct = {k: v for k, v in headers.items() if k != "Host"}
    assert rest_status(testbed.config.http_port, path, direct) == 200  # MLServer alone does not notice
    assert rest_status(mesh.ports.port, path, {**direct, "seldon-model": path.split("/")[3]
                                               + (".pipeline" if "branching" in path else "")}) == 200


@pytest.mark.parametrize(("metadata", "authority"), [
    ((), None),
    ((("seldon-model", "nope"),), None),
    ((("seldon-model", "synth-5ms.pipeline"),), None),
    ((("seldon-model", "synth-5ms"),), "wrong.example"),
], ids=["no-header", "unknown-name", "model-as-pipeline", "wrong-authority"])
def test_a_wrong_routing_header_or_authority_fails_over_grpc(mesh: Ingress, testbed: Testbed, metadata: Any,
                                                             authority: str | None) -> None:
    """grpcio as an independent client: Envoy answers UNIMPLEMENTED where MLServer would serve.
    (A gRPC call's model name is inside the message, which Envoy does not read: as in Core 2, the
    header alone picks where a call goes, so a header naming another served model is not caught.)"""
    request = pb.ModelInferRequest(model_name="synth-5ms", inputs=[pb.ModelInferRequest.InferInputTensor(
        name="INPUT0", datatype="FP32", shape=[2, 4], contents=pb.InferTensorContents(fp32_contents=ROWS.ravel()))])
    options = [("grpc.default_authority", authority)] if authority else []

    def call(port: int, md: Any) -> Any:
        with grpc.insecure_channel(f"127.0.0.1:{port}", options=options) as channel:
            return dataplane_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, metadata=md, timeout=10)

    with pytest.raises(grpc.RpcError) as info:
        call(mesh.ports.port, metadata)
    assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert call(testbed.config.grpc_port, metadata).model_name == "synth-5ms"  # MLServer alone does not notice
    if authority is None:
        assert call(mesh.ports.port, (("seldon-model", "synth-5ms"),)).model_name == "synth-5ms"


@pytest.mark.parametrize("protocol", ["rest", "grpc"])
def test_tls_is_verified_against_the_testbed_ca(mesh: Ingress, protocol: str) -> None:
    target = parse_target(host(mesh, protocol, True), "synth-5ms", None)
    client = make_client(target, timeout_s=10.0)  # the system's roots do not know the testbed's CA
    try:
        with pytest.raises(TargetError):
            client.check_target()
    finally:
        client.close()


@pytest.mark.parametrize(("protocol", "tls", "kind"), [("rest", False, "--pipeline"), ("grpc", True, "--model")])
def test_seldon_load_run_through_the_ingress(mesh: Ingress, tmp_path: Path, protocol: str, tls: bool,
                                             kind: str) -> None:
    """The command end to end: ``--pipeline`` sets ``seldon-model: NAME.pipeline``, which Envoy routes."""
    name = "branching" if kind == "--pipeline" else "synth-5ms"
    args = ["run", "--host", host(mesh, protocol, tls), kind, name, "--stages", "20:0s:2s", "--settle", "0s"]
    if tls:
        args += ["--ca-file", str(mesh.ca_file)]
    run = seldon_load(args, tmp_path, timeout_s=120)
    assert run.code == 0, run.stdout[-2000:] + run.stderr[-2000:]
    results = run.results
    assert results["target"]["name"] == name and results["target"]["protocol"] == protocol
    stage = results["stages"][0]
    assert stage["requests"] >= 30 and stage["failures"] == 0, stage


def test_testbed_up_with_ingress_from_the_command(tmp_path: Path) -> None:
    """``seldon-load testbed up --ingress``: Envoy and MLServer started, routed, and both stopped by down."""
    http, grpc_port, metrics, port, tls_port = free_ports(5)
    state = str(tmp_path / "state")
    flags = ["--http-port", str(http), "--grpc-port", str(grpc_port), "--metrics-port", str(metrics),
             "--ingress-port", str(port), "--ingress-tls-port", str(tls_port), "--state-dir", state]
    cmd = [sys.executable, "-m", "seldon_load.cli", "testbed"]
    up = subprocess.run([*cmd, "up", "--ingress", *flags], capture_output=True, text=True, timeout=150)
    bed = Testbed.from_state_dir(state)
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        assert f"ingress (Envoy, routes on seldon-model): REST http://127.0.0.1:{port}" in up.stdout
        status = json.loads(subprocess.run([*cmd, "status", *flags], capture_output=True, text=True,
                                           timeout=60).stdout)
        envoy_pid = status["ingress"]["pid"]
        assert status["running"] and envoy_pid and Path(status["ingress"]["ca_file"]).is_file()
        assert rest_status(port, "/v2/models/iris/infer", {"seldon-model": "iris"}) in (200, 400)  # routed
        assert rest_status(port, "/v2/models/iris/infer", {"seldon-model": "nope"}) == 404
    finally:
        down = subprocess.run([*cmd, "down", *flags], capture_output=True, text=True, timeout=60)
        bed.down()  # whatever the command left (nothing, if it works)
    assert down.returncode == 0, down.stdout + down.stderr
    assert not psutil.pid_exists(envoy_pid) or psutil.Process(envoy_pid).status() == psutil.STATUS_ZOMBIE
    assert bed.status()["running"] is False and bed.ingress.pid is None


def test_up_refuses_a_taken_ingress_port_before_starting_anything(tmp_path: Path) -> None:
    bed = Testbed.for_tests(tmp_path, ingress=True)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", bed.config.ingress_tls_port))
        taken.listen()
        with pytest.raises(TargetError, match=f"ingress TLS port 127.0.0.1:{bed.config.ingress_tls_port} is already"):
            bed.up(timeout_s=30)
    assert bed.pid is None and bed.ingress.pid is None
