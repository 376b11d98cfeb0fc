"""The REST and gRPC clients under answers bounded in time, size and framing (issue 20), with
real sockets: an ambiguous answer closes its connection, sizes past ``max_response_bytes``
fail whatever the framing, an endless answer ends at the timeout also over TLS, and the open-
loop engine's inline path reads answers larger than a connection's buffer."""

from __future__ import annotations

from collections.abc import Callable
from time import perf_counter
from typing import Any

import gevent.server
import numpy as np
import pytest
from gevent.hub import get_hub

from seldon_load.load.batcher import ReadBatcher
from seldon_load.load.engine import OpenLoopEngine, WorkerSchedule
from seldon_load.load.plan import RatePlan, parse_stages
from seldon_load.measure.recorder import Recorder
from seldon_load.oip.payload import encode_for
from seldon_load.oip.target import parse_target
from seldon_load.oip.types import EncodedRequest, InferRequest, Tensor
from seldon_load.transport import outcome as oc
from seldon_load.transport.outcome import Outcome
from seldon_load.transport.rest import RestClient
from seldon_load.transport.tls import TlsConfig
from tests.integration import test_transport as scripted_http
from tests.integration.test_transport import (
    OK_BODY,
    ScriptedServer,
    http_response,
    rest_target,
    server_context,
)

pytestmark = pytest.mark.integration

scripted = scripted_http.scripted  # the scripted HTTP/1.1 server and the test PKI, as fixtures here
pki = scripted_http.pki
REQ = EncodedRequest(b'{"inputs": []}', (("Content-Type", "application/json"),))


def chunked(body: bytes, size: int = 1000) -> bytes:
    parts = [b"%x\r\n%s\r\n" % (len(body[i : i + size]), body[i : i + size]) for i in range(0, len(body), size)]
    return b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"".join(parts) + b"0\r\n\r\n"


def big_body(n: int) -> bytes:
    """A valid OIP answer of ``n`` bytes (JSON white space inside)."""
    return OK_BODY[:-1] + b" " * (n - len(OK_BODY)) + b"}"


def test_an_ambiguous_answer_closes_its_connection(scripted: Callable[..., ScriptedServer]) -> None:
    bad = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nContent-Length: 3\r\n\r\n%s" % (len(OK_BODY), OK_BODY)
    server = scripted(lambda i, head, body: bad if i == 0 else http_response("200 OK", OK_BODY))
    with RestClient(rest_target(server.port), timeout_s=5) as client:
        first = client.infer(REQ)
        assert (first.ok, first.error_kind) == (False, oc.INVALID_RESPONSE)
        assert "conflicting Content-Length values (3, " in first.message
        assert client.infer(REQ).ok
    assert server.connections == 2  # the second request did not read the first's leftovers


@pytest.mark.parametrize("framing", ["length", "chunked", "close"])
def test_answers_past_max_response_bytes_fail_whatever_the_framing(
    scripted: Callable[..., ScriptedServer], framing: str
) -> None:
    body = big_body(300_000)
    answer = {"length": http_response("200 OK", body), "chunked": chunked(body),
              "close": (b"HTTP/1.1 200 OK\r\n\r\n" + body, "close")}[framing]
    server = scripted(lambda i, head, b: answer)
    with RestClient(rest_target(server.port), timeout_s=5, max_response_bytes=100_000) as small:
        out = small.infer(REQ)
        assert (out.error_kind, out.message) == (oc.INVALID_RESPONSE, "answer larger than 100000 bytes")
    with RestClient(rest_target(server.port), timeout_s=5) as default:
        assert default.infer(REQ).ok


def _serve_endless(ctx: Any) -> Any:
    """A server whose answer is an endless chunked stream, as fast as the socket takes it."""

    def handle(sock: Any, _addr: Any) -> None:
        try:
            if ctx is not None:
                sock = ctx.wrap_socket(sock, server_side=True)
            data = b""
            while b"\r\n\r\n" not in data:
                data += sock.recv(65536)
            sock.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\n{\r\n")
            chunk = b"400\r\n" + b" " * 1024 + b"\r\n"
            for _ in range(1_000_000):  # bounded: ~1 GB, far more than the client reads in its timeout
                sock.sendall(chunk)
        except (OSError, ValueError):
            pass
        finally:
            sock.close()

    server = gevent.server.StreamServer(("127.0.0.1", 0), handle)
    server.start()
    return server


@pytest.mark.parametrize("tls", [False, True])
def test_an_endless_answer_times_out_as_a_whole(pki: dict[str, str], tls: bool) -> None:
    """Chunks always waiting in the socket never make a read wait: the deadline still holds."""
    server = _serve_endless(server_context(pki) if tls else None)
    try:
        target = rest_target(server.server_port, scheme="https" if tls else "http",
                             host="localhost" if tls else "127.0.0.1")
        tls_config = TlsConfig(ca_file=pki["ca"]) if tls else None
        with RestClient(target, timeout_s=1.0, max_response_bytes=2**31, tls=tls_config) as client:
            started = perf_counter()
            out = client.infer(REQ)
            elapsed = perf_counter() - started
    finally:
        server.stop(timeout=1)
    assert out.error_kind == oc.TIMEOUT, out
    assert elapsed < 1.0 + 2.0, elapsed


@pytest.mark.parametrize("framing", ["length", "chunked"])
def test_the_inline_path_reads_answers_larger_than_a_buffer(scripted: Callable[..., ScriptedServer],
                                                            framing: str) -> None:
    body = big_body(200_000)
    answer = http_response("200 OK", body) if framing == "length" else chunked(body, 30_000)
    server = scripted(lambda i, head, b: answer)
    target = parse_target(f"http://127.0.0.1:{server.port}", "m", None)
    req = encode_for(target, InferRequest(inputs=[Tensor("x", "FP32", [1, 4], np.ones((1, 4), np.float32))]))
    client = RestClient(target)
    batcher = ReadBatcher(get_hub())
    client.defer_reads(batcher)
    schedule = WorkerSchedule()
    outcomes: list[Outcome] = []
    engine = OpenLoopEngine(send=lambda: client.infer(req), name="x", recorder=Recorder(perf_counter(), "w"),
                            schedule=schedule, batcher=batcher, start=lambda token: client.start(req, token),
                            on_result=lambda due, sent, done, out: outcomes.append(out))
    schedule.update(RatePlan.from_stages(parse_stages("100:0s:1s")), 0.0, 1.0, 1.0)
    try:
        engine.run()
    finally:
        client.close()
        batcher.close()
    assert len(outcomes) == engine.sent == 100
    assert [o for o in outcomes if not o.ok] == []
    assert {o.response_bytes for o in outcomes} == {len(body)}
