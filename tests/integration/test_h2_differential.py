"""Our HTTP/2 client against an independent HTTP/2 implementation: the ``h2`` library as a
test-only gRPC-shaped server on 127.0.0.1 (grpcio's server is the other peer, in
test_transport.py and the testbed). Each scenario makes the server frame its answer in a
way grpcio's server never does (padding, CONTINUATION, many small DATA frames, trailers
only, GOAWAY, RST_STREAM, a large answer across flow-control windows) and checks the
outcome our client reports."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Any

import gevent.server
import h2.config
import h2.connection
import h2.events
import pytest

from seldon_load.oip.target import parse_target
from seldon_load.transport import outcome as oc
from seldon_load.transport.grpc import GrpcClient
from tests.faults.badserver import _ok_response

pytestmark = pytest.mark.integration

OK_MESSAGE = _ok_response()


def grpc_message(payload: bytes) -> bytes:
    return struct.pack(">BI", 0, len(payload)) + payload


class H2Server:
    """A gRPC-shaped server on the ``h2`` state machine; the ``x-scenario`` header picks how it
    frames its answer. Counts the requests it received completely."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, int]] = []  # (scenario, request bytes)
        self.server = gevent.server.StreamServer(("127.0.0.1", 0), self._handle)
        self.server.start()
        self.port = self.server.server_port

    def _handle(self, sock: Any, _addr: Any) -> None:
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding="utf-8"))
        conn.initiate_connection()
        sock.sendall(conn.data_to_send())
        heads: dict[int, dict[str, str]] = {}
        bodies: dict[int, bytes] = {}
        try:
            while True:
                data = sock.recv(65536)
                if not data:
                    return
                for event in conn.receive_data(data):
                    if isinstance(event, h2.events.RequestReceived):
                        heads[event.stream_id] = dict(event.headers)
                        bodies[event.stream_id] = b""
                    elif isinstance(event, h2.events.DataReceived):
                        bodies[event.stream_id] += event.data
                        conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                    elif isinstance(event, h2.events.StreamEnded):
                        sid = event.stream_id
                        scenario = heads[sid].get("x-scenario", "ok")
                        self.requests.append((scenario, len(bodies[sid])))
                        self._answer(conn, sid, scenario)
                sock.sendall(conn.data_to_send())
        except OSError:
            return
        finally:
            sock.close()

    def _answer(self, conn: Any, sid: int, scenario: str) -> None:
        head = [(":status", "200"), ("content-type", "application/grpc")]
        trailers = [("grpc-status", "0")]
        body = grpc_message(OK_MESSAGE)
        if scenario == "rst_refused":
            conn.reset_stream(sid, error_code=0x7)
            return
        if scenario == "rst_internal":
            conn.reset_stream(sid, error_code=0x2)
            return
        if scenario == "goaway":
            conn.close_connection(error_code=0, last_stream_id=0)
            return
        if scenario == "trailers_only":
            conn.send_headers(sid, [*head, ("grpc-status", "5"), ("grpc-message", "no%20such%20model")],
                              end_stream=True)
            return
        if scenario == "continuation":  # a header block larger than one frame
            head.append(("x-filler", "a" * 40_000))
            trailers.append(("x-filler", "b" * 40_000))
        conn.send_headers(sid, head)
        if scenario == "padded":
            conn.send_data(sid, body, pad_length=200)
        elif scenario == "small_frames":
            for i in range(0, len(body), 3):
                conn.send_data(sid, body[i : i + 3])
        elif scenario == "large":
            big = grpc_message(OK_MESSAGE[:0] + _padded_message(300_000))
            step = conn.max_outbound_frame_size
            for i in range(0, len(big), step):
                conn.send_data(sid, big[i : i + step])
        else:
            conn.send_data(sid, body)
        conn.send_headers(sid, trailers, end_stream=True)

    def stop(self) -> None:
        self.server.stop(timeout=1)


def _padded_message(size: int) -> bytes:
    """A valid ModelInferResponse of about ``size`` bytes."""
    from seldon_load.oip._generated import grpc_predict_v2_pb2 as pb

    msg = pb.ModelInferResponse.FromString(OK_MESSAGE)
    msg.parameters["pad"].string_param = "x" * size
    return msg.SerializeToString()


@pytest.fixture
def h2_server() -> Iterator[H2Server]:
    server = H2Server()
    yield server
    server.stop()


def call(server: H2Server, scenario: str, body: bytes = b"\x0a\x01m", **kw: Any) -> Any:
    target = parse_target(f"127.0.0.1:{server.port}", "m", None)
    with GrpcClient(target, headers={"x-scenario": scenario}, timeout_s=5, **kw) as client:
        return client.infer(body)


@pytest.mark.parametrize("scenario", ["ok", "padded", "continuation", "small_frames", "large"])
def test_answers_however_framed_are_read(h2_server: H2Server, scenario: str) -> None:
    out = call(h2_server, scenario)
    assert out.ok, out
    assert out.response_bytes == (len(OK_MESSAGE) if scenario != "large" else len(_padded_message(300_000)))


def test_a_large_request_follows_the_servers_windows(h2_server: H2Server) -> None:
    """300 KB against the h2 server's default 64 KiB windows: sent as its WINDOW_UPDATEs allow."""
    out = call(h2_server, "ok", body=b"\x0a\x01m" + b"\x00" * 300_000)
    assert out.ok, out
    assert h2_server.requests == [("ok", 5 + 300_003)]  # the gRPC prefix and the message


@pytest.mark.parametrize(("scenario", "kind"), [
    ("trailers_only", "grpc_NOT_FOUND"),
    ("rst_refused", "grpc_UNAVAILABLE"),
    ("rst_internal", "grpc_INTERNAL"),
    ("goaway", "grpc_UNAVAILABLE"),
])
def test_failures_map_to_their_grpc_codes(h2_server: H2Server, scenario: str, kind: str) -> None:
    out = call(h2_server, scenario)
    assert (out.ok, out.error_kind) == (False, kind), out
    if scenario == "trailers_only":
        assert out.message == "no such model"


def test_after_a_goaway_the_next_call_uses_a_new_connection(h2_server: H2Server) -> None:
    target = parse_target(f"127.0.0.1:{h2_server.port}", "m", None)
    with GrpcClient(target, headers={"x-scenario": "goaway"}, timeout_s=5, channels=1) as bad:
        assert bad.infer(b"").error_kind == "grpc_UNAVAILABLE"
    with GrpcClient(target, timeout_s=5, channels=1) as good:
        assert [good.infer(b"").ok for _ in range(3)] == [True, True, True]


def test_a_message_past_the_bound_is_invalid(h2_server: H2Server) -> None:
    out = call(h2_server, "large", max_response_bytes=100_000)
    assert (out.error_kind, out.message) == (oc.INVALID_RESPONSE, "answer larger than 100000 bytes")
