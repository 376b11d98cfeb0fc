"""REST and gRPC transports against a real MLServer (the testbed), plus a scripted local HTTP
server for the faults MLServer cannot be asked to produce (timeouts, broken answers, TLS)."""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import gevent
import gevent.server
import gevent.ssl
import numpy as np
import orjson
import pytest

from seldon_load.errors import ConfigError, OIPError, TargetError
from seldon_load.oip.payload import build_payload_pool, encode_for
from seldon_load.oip.target import Target, parse_target
from seldon_load.oip.types import InferRequest, Tensor
from seldon_load.transport.clients import make_client
from seldon_load.transport.grpc import GrpcClient
from seldon_load.transport.rest import RestClient
from seldon_load.transport.tls import TlsConfig

pytestmark = pytest.mark.integration

ROWS = np.array([[1.0, 2.0, 3.0, 4.0], [0.5, 0.0, -1.0, 2.0]], dtype=np.float32)
IRIS_ROWS = np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]], dtype=np.float32)


def synth_expected(rows: np.ndarray) -> np.ndarray:
    """A synth model answers every column with the row's sum."""
    return np.repeat(rows.sum(axis=1, dtype=np.float32)[:, None], 4, axis=1)


def rows_request(name: str = "INPUT0", rows: np.ndarray = ROWS) -> InferRequest:
    return InferRequest(inputs=[Tensor(name, "FP32", list(rows.shape), rows)])


def host_of(testbed: Any, protocol: str) -> str:
    return testbed.rest_url if protocol == "rest" else testbed.grpc_target


def closed_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(params=["rest", "grpc"])
def protocol(request: pytest.FixtureRequest) -> str:
    return request.param


# ----------------------------------------------------------------------------- real MLServer


def test_rest_json_infer(testbed: Any) -> None:
    target = parse_target(testbed.rest_url, "synth-5ms", None)
    with RestClient(target) as client:
        encoded = encode_for(target, rows_request())
        out = client.infer(encoded)
        assert out.ok and out.error_kind is None and out.response_bytes > 50
        reply = client.infer_decoded(encoded)
    assert reply.model_name == "synth-5ms"
    np.testing.assert_allclose(reply.output("OUTPUT0").data, synth_expected(ROWS))


@pytest.mark.parametrize("raw", [True, False], ids=["raw", "typed"])
def test_grpc_infer_raw_and_typed(testbed: Any, raw: bool) -> None:
    target = parse_target(testbed.grpc_target, "synth-5ms", None)
    with GrpcClient(target) as client:
        encoded = encode_for(target, rows_request(), raw_grpc=raw)
        out = client.infer(encoded)
        assert out.ok and out.response_bytes > 20
        reply = client.infer_decoded(encoded)
    np.testing.assert_allclose(reply.output("OUTPUT0").data, synth_expected(ROWS))


def test_an_answer_is_timed_when_it_arrived_not_when_the_process_read_it(testbed: Any, protocol: str) -> None:
    """The whole process stalls (no hub, no reader) while the answer comes in: its
    ``received_at`` is the kernel's receive stamp, tens of ms before the reader woke."""
    from gevent.monkey import get_original

    stall = get_original("time", "sleep")
    target = parse_target(host_of(testbed, protocol), "synth-1ms", None)
    client = make_client(target)
    try:
        encoded = encode_for(target, rows_request())
        for _ in range(16):  # every connection of the client's pool is made and warm
            assert client.infer(encoded).ok
        call = gevent.spawn(client.infer, encoded)
        gevent.sleep(0)  # the request leaves; the caller waits in the hub
        sent = time.perf_counter()
        stall(0.2)  # synth-1ms answers within a few ms of this
        out = call.get(timeout=10)
        woke = time.perf_counter()
    finally:
        client.close()
    assert out.ok, out.message
    assert out.received_at is not None
    assert sent - 0.05 < out.received_at < sent + 0.1, (out.received_at - sent)
    assert woke - out.received_at > 0.1


def test_iris_predictions(testbed: Any, protocol: str) -> None:
    target = parse_target(host_of(testbed, protocol), "iris", None)
    client = make_client(target)
    try:
        reply = client.infer_decoded(encode_for(target, rows_request("input-0", IRIS_ROWS)))
    finally:
        client.close()
    assert reply.output("predict").data.ravel().tolist() == [0, 2]  # setosa, virginica


def test_binary_extension_request(testbed: Any) -> None:
    """MLServer 1.7.1 does not implement the binary tensor data extension: its refusal must come
    back as a clean HTTP failure outcome (and an OIPError when decoding), never an exception."""
    target = parse_target(testbed.rest_url, "synth-5ms", None)
    encoded = encode_for(target, rows_request(), binary=True)
    assert dict(encoded.headers)["Inference-Header-Content-Length"].isdigit()
    with RestClient(target) as client:
        out = client.infer(encoded)
        assert not out.ok and out.error_kind is not None and out.error_kind.startswith("http_")
        assert out.message and len(out.message) <= 200 and out.message.startswith("HTTP ")
        with pytest.raises(OIPError, match="HTTP "):
            client.infer_decoded(encoded)
        assert client.infer(encode_for(target, rows_request())).ok  # the connection pool recovers
        # MLServer's 500 here leaves the connection to be reset (the body is not read): a request
        # sent on it right after was a reset in 49 of 200 tries until error answers closed it
        follow_ups = []
        for _ in range(50):
            assert not client.infer(encoded).ok
            follow_ups.append(client.infer(encode_for(target, rows_request())))
        assert [o.error_kind for o in follow_ups if not o.ok] == []


def test_metadata_is_the_same_over_both_protocols(testbed: Any) -> None:
    docs = []
    for host in (testbed.rest_url, testbed.grpc_target):
        client = make_client(parse_target(host, "synth-5ms", None))
        try:
            docs.append(client.model_metadata())
        finally:
            client.close()
    rest_doc, grpc_doc = docs
    assert rest_doc["name"] == grpc_doc["name"] == "synth-5ms"
    assert (
        rest_doc["inputs"] == grpc_doc["inputs"] == [{"name": "INPUT0", "datatype": "FP32", "shape": [-1, 4]}]
    )
    assert rest_doc["outputs"] == grpc_doc["outputs"]


def test_readiness(testbed: Any, protocol: str) -> None:
    host = host_of(testbed, protocol)
    client = make_client(parse_target(host, "synth-5ms", None))
    unknown = make_client(parse_target(host, "no-such-model", None))
    try:
        assert client.server_live() and client.server_ready() and client.model_ready()
        client.check_target()
        assert unknown.server_live()
        assert not unknown.model_ready()
    finally:
        client.close()
        unknown.close()


def test_unknown_model_is_one_target_error_line(testbed: Any, protocol: str) -> None:
    target = parse_target(host_of(testbed, protocol), "no-such-model", None)
    client = make_client(target)
    try:
        with pytest.raises(TargetError) as info:
            client.check_target()
        with pytest.raises(TargetError, match="cannot get the metadata of model 'no-such-model'"):
            client.model_metadata()
    finally:
        client.close()
    message = str(info.value)
    assert message.startswith(f"unknown model 'no-such-model' on {target.safe_host}")
    assert "\n" not in message and len(message) < 300


def test_unknown_model_infer_is_a_failure_outcome(testbed: Any, protocol: str) -> None:
    target = parse_target(host_of(testbed, protocol), "no-such-model", None)
    client = make_client(target)
    try:
        out = client.infer(encode_for(target, rows_request()))
    finally:
        client.close()
    assert not out.ok
    expected = "http_404" if protocol == "rest" else "grpc_"
    assert out.error_kind is not None and out.error_kind.startswith(expected)
    assert out.message is not None and "not found" in out.message.lower() and len(out.message) <= 200


def test_connection_refused(protocol: str) -> None:
    port = closed_port()
    host = f"http://127.0.0.1:{port}" if protocol == "rest" else f"127.0.0.1:{port}"
    target = parse_target(host, "synth-5ms", None)
    client = make_client(target, timeout_s=5.0)
    try:
        out = client.infer(encode_for(target, rows_request()))
        with pytest.raises(TargetError) as info:
            client.check_target()
    finally:
        client.close()
    assert not out.ok
    assert out.error_kind == ("connection_refused" if protocol == "rest" else "grpc_UNAVAILABLE")
    message = str(info.value)
    assert message.startswith(f"cannot connect to {target.safe_host}")
    assert "\n" not in message
    if protocol == "rest":
        assert message == f"cannot connect to http://127.0.0.1:{port}: connection refused"


@pytest.mark.parametrize("binary_grpc_raw", [True, False])
def test_payload_pool_from_metadata_end_to_end(testbed: Any, protocol: str, binary_grpc_raw: bool) -> None:
    target = parse_target(host_of(testbed, protocol), "synth-5ms", None)
    client = make_client(target)
    try:
        pool = build_payload_pool(
            target, client.model_metadata(), batch_size=3, pool_size=4, raw_grpc=binary_grpc_raw
        )
        outcomes = [client.infer(pool.next()) for _ in range(8)]
        reply = client.infer_decoded(pool.items[1])
    finally:
        client.close()
    assert all(o.ok for o in outcomes), [o for o in outcomes if not o.ok]
    np.testing.assert_allclose(
        reply.output("OUTPUT0").data, synth_expected(pool.requests[1].inputs[0].data), rtol=1e-5
    )


def test_pipeline_target(testbed: Any, protocol: str) -> None:
    """The testbed serves Seldon pipelines as models; the pipeline name becomes the gRPC model_name."""
    target = parse_target(host_of(testbed, protocol), None, "linear")
    assert target.routing_value == "linear.pipeline"
    client = make_client(target)
    try:
        client.check_target()
        out = client.infer(encode_for(target, rows_request()))
    finally:
        client.close()
    assert out.ok, out


def test_concurrent_greenlets_share_the_pool(testbed: Any, protocol: str) -> None:
    target = parse_target(host_of(testbed, protocol), "synth-1ms", None)
    client = make_client(target, pool_size=8)
    payload = encode_for(target, rows_request())
    try:
        jobs = [gevent.spawn(lambda: [client.infer(payload) for _ in range(5)]) for _ in range(20)]
        gevent.joinall(jobs, timeout=60, raise_error=True)
    finally:
        client.close()
    outcomes = [o for job in jobs for o in job.value]
    assert len(outcomes) == 100 and all(o.ok for o in outcomes)


def test_the_timeout_bounds_each_request_not_a_connections_lifetime(testbed: Any, protocol: str) -> None:
    # one kept-alive connection whose waits add up to 3x the timeout: none of them may time out
    # (a reused timer re-armed with the time it had left fired early, mid-test, on long runs)
    target = parse_target(host_of(testbed, protocol), "synth-5ms", None)
    client = make_client(target, timeout_s=0.25, pool_size=1)
    payload = encode_for(target, rows_request())
    try:
        outcomes, t0 = [], gevent.get_hub().loop.now()
        while gevent.get_hub().loop.now() - t0 < 0.75 and len(outcomes) < 1000:
            outcomes.append(client.infer(payload))
    finally:
        client.close()
    assert len(outcomes) > 40
    assert [o.message for o in outcomes if not o.ok] == []


def test_infer_after_close_is_cancelled(testbed: Any, protocol: str) -> None:
    target = parse_target(host_of(testbed, protocol), "synth-1ms", None)
    client = make_client(target)
    payload = encode_for(target, rows_request())
    assert client.infer(payload).ok
    client.close()
    outcomes = [client.infer(payload) for _ in range(100)]  # more than the pool has connections
    assert {(o.ok, o.error_kind) for o in outcomes} == {(False, "cancelled")}


# ----------------------------------------------------------------------------- scripted HTTP server

Responder = Callable[[int, bytes, bytes], bytes | None]


class ScriptedServer:
    """A tiny HTTP/1.1 server on loopback: records every request, answers with ``responder``
    (request index, head, body) -> raw response bytes, None to close without answering, or
    ``(bytes, "close")`` to answer and then close the connection (an idle timeout)."""

    def __init__(self, responder: Responder, ssl_context: Any = None, trickle: bool = False) -> None:
        self.responder = responder
        self.trickle = trickle  # send answers a byte at a time: headers split across reads
        self.requests: list[tuple[bytes, bytes]] = []
        self.connections = 0
        self._ssl_context = ssl_context
        self.server = gevent.server.StreamServer(("127.0.0.1", 0), self._handle)
        self.server.start()
        self.port = self.server.server_port

    def _handle(self, sock: Any, _addr: Any) -> None:
        if self._ssl_context is not None:
            try:
                sock = self._ssl_context.wrap_socket(sock, server_side=True)
            except (OSError, ValueError):
                return
        self.connections += 1
        buffer = b""
        try:
            while True:
                while b"\r\n\r\n" not in buffer:
                    chunk = sock.recv(65536)
                    if not chunk:
                        return
                    buffer += chunk
                head, buffer = buffer.split(b"\r\n\r\n", 1)
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                while len(buffer) < length:
                    buffer += sock.recv(65536)
                body, buffer = buffer[:length], buffer[length:]
                self.requests.append((head, body))
                answer = self.responder(len(self.requests) - 1, head, body)
                if answer is None:
                    return
                if isinstance(answer, tuple):
                    sock.sendall(answer[0])
                    return
                if not self.trickle:
                    sock.sendall(answer)
                    continue
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                for i in range(len(answer)):
                    sock.sendall(answer[i : i + 1])
                    gevent.sleep(0.0005)
        except OSError:
            return
        finally:
            sock.close()

    def headers(self, index: int) -> dict[str, str]:
        lines = self.requests[index][0].decode("latin-1").split("\r\n")[1:]
        return {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}

    def stop(self) -> None:
        self.server.stop(timeout=1)


def http_response(status: str, body: bytes, extra: str = "") -> bytes:
    return (
        f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n{extra}\r\n"
    ).encode() + body


OK_BODY = orjson.dumps(
    {
        "model_name": "m",
        "outputs": [{"name": "OUTPUT0", "datatype": "FP32", "shape": [1, 2], "data": [1.0, 2.0]}],
    }
)


@pytest.fixture
def scripted() -> Iterator[Callable[..., ScriptedServer]]:
    servers: list[ScriptedServer] = []

    def start(responder: Responder, ssl_context: Any = None, trickle: bool = False) -> ScriptedServer:
        server = ScriptedServer(responder, ssl_context, trickle)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def rest_target(
    port: int, scheme: str = "http", host: str = "127.0.0.1", creds: str = "", **kw: Any
) -> Target:
    return parse_target(
        f"{scheme}://{creds}{host}:{port}", kw.pop("model", "m"), kw.pop("pipeline", None), **kw
    )


def test_request_bytes_and_headers(scripted: Callable[..., ScriptedServer]) -> None:
    server = scripted(lambda i, head, body: http_response("200 OK", OK_BODY))
    target = rest_target(server.port, creds="alice:pw@", pipeline="pipe", model=None)
    encoded = encode_for(target, rows_request())
    with RestClient(target, headers={"X-Tenant": "t1"}) as client:
        assert client.infer(encoded).ok
        assert client.infer(encoded).ok
    first, second = server.headers(0), server.headers(1)
    assert server.requests[0][0].startswith(b"POST /v2/models/pipe/infer HTTP/1.1\r\n")
    assert server.requests[0][1] == encoded.body
    assert first["seldon-model"] == "pipe.pipeline"
    assert first["x-tenant"] == "t1"
    assert first["authorization"] == "Basic YWxpY2U6cHc="
    assert first["content-type"] == "application/json"
    assert first["content-length"] == str(len(encoded.body))
    assert first["host"] == f"127.0.0.1:{server.port}"
    assert first["x-request-id"] and first["x-request-id"] != second["x-request-id"]
    assert server.connections == 1  # keep-alive: both requests on one connection


def test_binary_request_headers(scripted: Callable[..., ScriptedServer]) -> None:
    server = scripted(lambda i, head, body: http_response("200 OK", OK_BODY))
    target = rest_target(server.port)
    encoded = encode_for(target, rows_request(), binary=True)
    with RestClient(target) as client:
        assert client.infer(encoded).ok
    headers = server.headers(0)
    assert headers["content-type"] == "application/octet-stream"
    assert (
        headers["inference-header-content-length"] == dict(encoded.headers)["Inference-Header-Content-Length"]
    )
    assert server.requests[0][1] == encoded.body


BINARY_HEADER = orjson.dumps(
    {
        "model_name": "m",
        "outputs": [{"name": "y", "datatype": "FP32", "shape": [2], "parameters": {"binary_data_size": 8}}],
    }
)
BINARY_ANSWER = http_response(
    "200 OK",
    BINARY_HEADER + np.array([1.5, -2.0], dtype="<f4").tobytes(),
    f"X-Other: 1\r\nInference-Header-Content-Length: {len(BINARY_HEADER)}\r\nX-Last: 2\r\n",
)


@pytest.mark.parametrize("trickle", [False, True], ids=["whole", "byte-by-byte"])
def test_binary_response_is_decoded(scripted: Callable[..., ScriptedServer], trickle: bool) -> None:
    server = scripted(lambda i, head, body: BINARY_ANSWER, trickle=trickle)
    target = rest_target(server.port)
    with RestClient(target) as client:
        assert client.infer(encode_for(target, rows_request(), binary=True)).ok
        reply = client.infer_decoded(encode_for(target, rows_request(), binary=True))
    assert reply.output("y").data.tolist() == [1.5, -2.0]


def test_bad_header_length_is_an_invalid_response(scripted: Callable[..., ScriptedServer]) -> None:
    answer = BINARY_ANSWER.replace(f"Content-Length: {len(BINARY_HEADER)}".encode(), b"Content-Length: 1x")
    server = scripted(lambda i, head, body: answer)
    target = rest_target(server.port)
    with RestClient(target) as client:
        out = client.infer(encode_for(target, rows_request()))
    assert (out.ok, out.error_kind) == (False, "invalid_response")
    assert out.message == "invalid Inference-Header-Content-Length header '1x'"


@pytest.mark.parametrize(
    ("answer", "kind", "message"),
    [
        (
            http_response("503 Service Unavailable", b'{"error": "overloaded"}'),
            "http_503",
            "HTTP 503: overloaded",
        ),
        (
            http_response("500 Internal Server Error", b"Internal Server Error"),
            "http_500",
            "HTTP 500: Internal Server Error",
        ),
        (http_response("200 OK", b'{"error": "model crashed"}'), "oip_error", "server error: model crashed"),
        (http_response("200 OK", b"<html>"), "invalid_response", "response is not valid JSON.*"),
        (
            http_response(
                "200 OK",
                orjson.dumps({"outputs": [{"name": "y", "datatype": "FP32", "shape": [3], "data": [1]}]}),
            ),
            "invalid_response",
            "output 'y': 1 elements, shape \\[3\\] needs 3",
        ),
        (b"HTTX/9 nonsense\r\n\r\n", "invalid_response", None),
    ],
)
def test_failures_are_outcomes(
    scripted: Callable[..., ScriptedServer], answer: bytes, kind: str, message: str | None
) -> None:
    server = scripted(lambda i, head, body: answer)
    target = rest_target(server.port)
    with RestClient(target) as client:
        out = client.infer(encode_for(target, rows_request()))
    assert not out.ok and out.error_kind == kind
    assert out.message is not None and len(out.message) <= 200
    if message is not None:
        assert re.fullmatch(message, out.message), out.message


def test_validate_off_skips_the_body_check(scripted: Callable[..., ScriptedServer]) -> None:
    server = scripted(lambda i, head, body: http_response("200 OK", b"not json"))
    target = rest_target(server.port)
    with RestClient(target, validate=False) as client:
        out = client.infer(encode_for(target, rows_request()))
    assert out.ok and out.response_bytes == len(b"not json")


def test_timeout(scripted: Callable[..., ScriptedServer]) -> None:
    def never(i: int, head: bytes, body: bytes) -> bytes | None:
        gevent.sleep(5)
        return None

    server = scripted(never)
    target = rest_target(server.port)
    with RestClient(target, timeout_s=0.2) as client:
        out = client.infer(encode_for(target, rows_request()))
    assert (out.ok, out.error_kind, out.message) == (False, "timeout", "timed out after 0.2 s")


def test_an_answer_dripping_in_times_out_as_a_whole(scripted: Callable[..., ScriptedServer]) -> None:
    # each byte comes 0.5 ms after the last, the whole answer takes ~0.1 s: a 0.04 s timeout
    # bounds the request, not each read
    server = scripted(lambda i, head, body: http_response("200 OK", OK_BODY), trickle=True)
    target = rest_target(server.port)
    with RestClient(target, timeout_s=0.04) as client:
        t0 = time.perf_counter()
        out = client.infer(encode_for(target, rows_request()))
        took = time.perf_counter() - t0
    assert (out.ok, out.error_kind, out.message) == (False, "timeout", "timed out after 0.04 s")
    assert took < 0.5  # (the whole answer would take over 0.1 s)


def test_an_answer_dripping_in_over_tls_times_out_as_a_whole(
    scripted: Callable[..., ScriptedServer], pki: dict[str, str],
) -> None:
    server = scripted(lambda i, head, body: http_response("200 OK", OK_BODY), server_context(pki), trickle=True)
    target = rest_target(server.port, scheme="https", host="localhost")
    with RestClient(target, timeout_s=0.04, tls=TlsConfig(ca_file=pki["ca"])) as client:
        t0 = time.perf_counter()  # connecting and the handshake have their own timeout
        out = client.infer(encode_for(target, rows_request()))
        took = time.perf_counter() - t0
    assert (out.ok, out.error_kind, out.message) == (False, "timeout", "timed out after 0.04 s")
    assert took < 0.5  # (the whole answer would take over 0.1 s)


def test_a_kept_alive_connection_the_server_closed_is_not_reused(
    scripted: Callable[..., ScriptedServer],
) -> None:
    ok = http_response("200 OK", OK_BODY)
    server = scripted(lambda i, head, body: (ok, "close") if i == 0 else ok)
    target = rest_target(server.port)
    with RestClient(target) as client:
        outcomes = []
        for _ in range(3):
            outcomes.append(client.infer(encode_for(target, rows_request())))
            gevent.sleep(0.05)  # the server's close reaches the client while the connection is idle
    assert all(o.ok for o in outcomes), outcomes
    assert len(server.requests) == 3 and server.connections == 2  # each request sent once


def test_a_written_request_is_never_sent_again(scripted: Callable[..., ScriptedServer]) -> None:
    # the server reads the second request and drops the connection: it may have run the
    # inference, so the request is a failure, not something to send a second time
    server = scripted(lambda i, head, body: None if i == 1 else http_response("200 OK", OK_BODY))
    target = rest_target(server.port)
    with RestClient(target) as client:
        outcomes = [client.infer(encode_for(target, rows_request())) for _ in range(3)]
    assert [o.ok for o in outcomes] == [True, False, True], outcomes
    assert outcomes[1].error_kind == "connection_reset"
    assert len(server.requests) == 3 and server.connections == 2


def test_server_closing_without_answer_is_connection_reset(scripted: Callable[..., ScriptedServer]) -> None:
    server = scripted(lambda i, head, body: None)
    target = rest_target(server.port)
    with RestClient(target) as client:
        out = client.infer(encode_for(target, rows_request()))
    assert (out.ok, out.error_kind) == (False, "connection_reset")


def test_invalid_user_headers_are_config_errors() -> None:
    target = rest_target(closed_port())
    with pytest.raises(ConfigError, match="invalid value for header X-A"):
        RestClient(target, headers={"X-A": "1\r\nEvil: yes"})
    with pytest.raises(ConfigError, match="header Content-Length is set by seldon-load"):
        RestClient(target, headers={"Content-Length": "5"})
    with pytest.raises(ConfigError, match="invalid header name"):
        RestClient(target, headers={"bad name": "x"})
    grpc_target = parse_target(f"127.0.0.1:{closed_port()}", "m", None)
    with pytest.raises(ConfigError, match="gRPC metadata must be printable ASCII"):
        GrpcClient(grpc_target, headers={"x-a": "é"})


# ----------------------------------------------------------------------------- TLS

# A throw-away test CA and a localhost/127.0.0.1 certificate signed by it (valid 2000-2100),
# used only by these tests; the server certificate doubles as the client certificate for mTLS.
TEST_CA_PEM = """-----BEGIN CERTIFICATE-----
MIIBbzCCARWgAwIBAgIBATAKBggqhkjOPQQDAjAeMRwwGgYDVQQDDBNzZWxkb24t
bG9hZCB0ZXN0IENBMCAXDTAwMDEwMTAwMDAwMFoYDzIxMDAwMTAxMDAwMDAwWjAe
MRwwGgYDVQQDDBNzZWxkb24tbG9hZCB0ZXN0IENBMFkwEwYHKoZIzj0CAQYIKoZI
zj0DAQcDQgAEKV+HUy5YTcoy1rlAcW/THf92wTXmNsoNKoEdIVp86wrbRjA6847E
i/VbwYGGDwHnEU7LDAU7/SaSSgRYuYjZf6NCMEAwDwYDVR0TAQH/BAUwAwEB/zAO
BgNVHQ8BAf8EBAMCAQYwHQYDVR0OBBYEFI1iaq4IguLJPuk3ULxNuCbU4GokMAoG
CCqGSM49BAMCA0gAMEUCIQDdCI5EgpJ0ZIDT7PeTZlpiMfgTG4VqfOJjOpRpKH9L
gwIgV9y02XRwNE2PT7jItwCPbamqrY6+Ff38Jiv+3vXUz+o=
-----END CERTIFICATE-----
"""
TEST_CERT_PEM = """-----BEGIN CERTIFICATE-----
MIIBujCCAWCgAwIBAgIBAjAKBggqhkjOPQQDAjAeMRwwGgYDVQQDDBNzZWxkb24t
bG9hZCB0ZXN0IENBMCAXDTAwMDEwMTAwMDAwMFoYDzIxMDAwMTAxMDAwMDAwWjAU
MRIwEAYDVQQDDAlsb2NhbGhvc3QwWTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAASw
PRHwdF31BeHTGN44ZEu8VeqR/h0nxEQsONtOzi5ELL5mOg3Ngb4ZTd2Cda9no3AL
CojKDQ+rrnpLFBdYa4EYo4GWMIGTMAkGA1UdEwQCMAAwCwYDVR0PBAQDAgeAMB0G
A1UdJQQWMBQGCCsGAQUFBwMBBggrBgEFBQcDAjAaBgNVHREEEzARgglsb2NhbGhv
c3SHBH8AAAEwHQYDVR0OBBYEFCOnsFedwBj91v7pNI8ViPBfpJLJMB8GA1UdIwQY
MBaAFI1iaq4IguLJPuk3ULxNuCbU4GokMAoGCCqGSM49BAMCA0gAMEUCIDACAsuc
HT4xbPODyXHERau6rAUl5wRyo43ZbgB9AAsjAiEA4GMb/K5WQOwY/7EMCN9eB3Ty
bQF1oo5VlXjTJYy+Jts=
-----END CERTIFICATE-----
"""
TEST_KEY_PEM = """-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg4rbXgxX9qg+L26ys
ZmevTV+vKoRHhLRl1yLfmVPDvLGhRANCAASwPRHwdF31BeHTGN44ZEu8VeqR/h0n
xEQsONtOzi5ELL5mOg3Ngb4ZTd2Cda9no3ALCojKDQ+rrnpLFBdYa4EY
-----END PRIVATE KEY-----
"""


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, str]:
    files = {"ca": TEST_CA_PEM, "cert": TEST_CERT_PEM, "key": TEST_KEY_PEM}
    out = {}
    for name, text in files.items():
        path = tmp_path / f"{name}.pem"
        path.write_text(text)
        out[name] = str(path)
    return out


def server_context(pki: dict[str, str], require_client_cert: bool = False) -> Any:
    ctx = gevent.ssl.SSLContext(gevent.ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(pki["cert"], pki["key"])
    if require_client_cert:
        ctx.load_verify_locations(pki["ca"])
        ctx.verify_mode = gevent.ssl.CERT_REQUIRED
    return ctx


def test_tls_with_custom_ca(scripted: Callable[..., ScriptedServer], pki: dict[str, str]) -> None:
    server = scripted(lambda i, head, body: http_response("200 OK", OK_BODY), server_context(pki))
    target = rest_target(server.port, scheme="https", host="localhost")
    with RestClient(target, tls=TlsConfig(ca_file=pki["ca"])) as client:
        assert client.infer(encode_for(target, rows_request())).ok
    with RestClient(target) as client:  # system trust store: the test CA is unknown
        out = client.infer(encode_for(target, rows_request()))
    assert (out.ok, out.error_kind) == (False, "tls_error")
    with RestClient(target, tls=TlsConfig(insecure_skip_verify=True)) as client:
        assert client.infer(encode_for(target, rows_request())).ok


def test_mutual_tls(scripted: Callable[..., ScriptedServer], pki: dict[str, str]) -> None:
    server = scripted(lambda i, head, body: http_response("200 OK", OK_BODY), server_context(pki, True))
    target = rest_target(server.port, scheme="https", host="127.0.0.1")
    mtls = TlsConfig(ca_file=pki["ca"], cert_file=pki["cert"], key_file=pki["key"])
    with RestClient(target, tls=mtls) as client:
        assert client.infer(encode_for(target, rows_request())).ok
    with RestClient(target, tls=TlsConfig(ca_file=pki["ca"])) as client:
        out = client.infer(encode_for(target, rows_request()))
    assert not out.ok and out.error_kind in ("tls_error", "connection_reset", "connection_error")


def test_tls_config_validation(tmp_path: Path, pki: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match="TLS CA file .*missing.pem does not exist"):
        TlsConfig(ca_file=str(tmp_path / "missing.pem"))
    with pytest.raises(ConfigError, match="needs both a certificate file and a key file"):
        TlsConfig(cert_file=pki["cert"])
    with pytest.raises(ConfigError, match="cannot load TLS client certificate"):
        TlsConfig(cert_file=pki["ca"], key_file=pki["key"]).ssl_context()
    with pytest.raises(ConfigError, match="not supported for gRPC"):
        TlsConfig(insecure_skip_verify=True).grpc_credentials()
    with pytest.raises(ConfigError, match="TLS options need an https:// host"):
        RestClient(rest_target(closed_port()), tls=TlsConfig(ca_file=pki["ca"]))
