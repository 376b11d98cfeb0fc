"""Wire paths of the lean transports that ordinary small calls do not take: HTTP/2 flow
control for large gRPC requests, the gRPC deadline, cancellation of calls in flight, and
REST answers framed by chunks or by the connection closing."""

from __future__ import annotations

import socket
from typing import Any

import gevent
import gevent.server
import numpy as np
import pytest

from seldon_load.oip.payload import encode_for
from seldon_load.oip.target import parse_target
from seldon_load.oip.types import InferRequest, Tensor
from seldon_load.transport.grpc import GrpcClient
from seldon_load.transport.rest import RestClient

pytestmark = pytest.mark.integration


def rows(n: int) -> InferRequest:
    data = np.arange(n * 4, dtype=np.float32).reshape(n, 4) / 1000
    return InferRequest(inputs=[Tensor("INPUT0", "FP32", [n, 4], data)])


def test_large_grpc_requests_respect_flow_control(testbed: Any) -> None:
    """320 KiB requests: more than the default 64 KiB windows and 16 KiB frames."""
    target = parse_target(testbed.grpc_target, "synth-1ms", None)
    req = rows(20_000)
    with GrpcClient(target, channels=1) as client:
        body = encode_for(target, req)
        outcomes = gevent.joinall([gevent.spawn(client.infer, body) for _ in range(6)], timeout=60)
        reply = client.infer_decoded(body)
    assert all(g.value.ok for g in outcomes), [g.value for g in outcomes]
    expected = req.inputs[0].data.sum(axis=1)
    np.testing.assert_allclose(reply.output("OUTPUT0").data[:, 0], expected, rtol=1e-4)


def test_grpc_deadline_and_the_connection_stays_usable(testbed: Any) -> None:
    target = parse_target(testbed.grpc_target, "synth-10ms", None)
    body = encode_for(target, rows(1))
    with GrpcClient(target, timeout_s=0.002) as client:
        late = [client.infer(body) for _ in range(3)]
    assert {(o.ok, o.error_kind) for o in late} == {(False, "grpc_DEADLINE_EXCEEDED")}
    with GrpcClient(target, timeout_s=5.0) as client:
        assert client.infer(body).ok


def test_closing_the_grpc_client_cancels_calls_in_flight(testbed: Any) -> None:
    target = parse_target(testbed.grpc_target, "synth-10ms", None)
    client = GrpcClient(target)
    body = encode_for(target, rows(1))
    assert client.infer(body).ok
    jobs = [gevent.spawn(client.infer, body) for _ in range(20)]
    gevent.sleep(0.005)
    client.close()
    gevent.joinall(jobs, timeout=10)
    kinds = {(g.value.ok, g.value.error_kind) for g in jobs}
    assert kinds <= {(True, None), (False, "cancelled")} and (False, "cancelled") in kinds


OK_BODY = b'{"model_name":"m","outputs":[{"name":"y","datatype":"FP32","shape":[2],"data":[1.0,2.0]}]}'


def serve(answer: bytes, close_after: bool) -> gevent.server.StreamServer:
    def handle(sock: Any, _addr: Any) -> None:
        buf = b""
        try:
            while True:
                while b"\r\n\r\n" not in buf:
                    chunk = sock.recv(65536)
                    if not chunk:
                        return
                    buf += chunk
                head, buf = buf.split(b"\r\n\r\n", 1)
                length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0]) if b"content-length" in head.lower() else 0
                while len(buf) < length:
                    buf += sock.recv(65536)
                buf = buf[length:]
                sock.sendall(answer)
                if close_after:
                    sock.shutdown(socket.SHUT_WR)
                    return
        except OSError:
            return
        finally:
            sock.close()

    server = gevent.server.StreamServer(("127.0.0.1", 0), handle)
    server.start()
    return server


@pytest.mark.parametrize("framing", ["chunked", "close"])
def test_rest_answers_without_content_length(framing: str) -> None:
    if framing == "chunked":
        pieces = [OK_BODY[:10], OK_BODY[10:50], OK_BODY[50:]]
        body = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\nX-Trailer: 1\r\n\r\n"
        answer = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\n" + body
    else:
        answer = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n" + OK_BODY
    server = serve(answer, close_after=framing == "close")
    try:
        target = parse_target(f"http://127.0.0.1:{server.server_port}", "m", None)
        with RestClient(target) as client:
            outcomes = [client.infer(encode_for(target, rows(1))) for _ in range(3)]
            reply = client.infer_decoded(encode_for(target, rows(1)))
    finally:
        server.stop(timeout=1)
    assert all(o.ok and o.response_bytes == len(OK_BODY) for o in outcomes), outcomes
    assert reply.output("y").data.tolist() == [1.0, 2.0]
