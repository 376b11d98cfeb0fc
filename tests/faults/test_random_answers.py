"""Random and mutated server answers, through the real REST client: always an outcome, never a crash.

The decoders have their own property tests (tests/unit/test_oip_json_codec.py,
test_oip_pb_codec.py); this one goes through the socket, the HTTP parser and the status and
header handling a user greenlet runs, with answers no server should send.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import gevent
import gevent.server
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from seldon_load.oip import json_codec
from seldon_load.oip.payload import encode_for
from seldon_load.oip.target import parse_target
from seldon_load.oip.types import InferRequest, Tensor
from seldon_load.transport.rest import RestClient

pytestmark = pytest.mark.faults

KIND = re.compile(r"\A(http_\d{3}|timeout|connection_(refused|reset|error)|invalid_response|oip_error|tls_error|"
                  r"cancelled)\Z")
VALID = orjson.dumps({"model_name": "m", "outputs": [
    {"name": "y", "datatype": "FP32", "shape": [1, 2], "data": [0.5, 1.5]}]})


class OneShotServer:
    """Answers every request with ``self.answer`` (raw bytes) and closes the connection."""

    def __init__(self) -> None:
        self.answer = b""
        self.server = gevent.server.StreamServer(("127.0.0.1", 0), self._handle)
        self.server.start()
        self.port = self.server.server_port

    def _handle(self, sock, _addr) -> None:
        try:
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = sock.recv(65536)
                if not chunk:
                    return
                data += chunk
            head, body = data.split(b"\r\n\r\n", 1)
            length = int(re.search(rb"(?i)content-length:\s*(\d+)", head).group(1))
            while len(body) < length:
                body += sock.recv(65536)
            sock.sendall(self.answer)
        except OSError:
            pass
        finally:
            sock.close()


@pytest.fixture(scope="module")
def server() -> Iterator[OneShotServer]:
    s = OneShotServer()
    yield s
    s.server.stop(timeout=1)


@pytest.fixture(scope="module")
def client(server: OneShotServer) -> Iterator[tuple[RestClient, object]]:
    target = parse_target(f"http://127.0.0.1:{server.port}", "m", None)
    request = encode_for(target, InferRequest([Tensor("x", "FP32", [1, 2], [[1.0, 2.0]])]))
    with RestClient(target, timeout_s=0.5, connect_timeout_s=0.5) as c:
        yield c, request


def _mutate(body: bytes, pos: int, byte: int, cut: int) -> bytes:
    pos %= len(body) + 1
    return (body[:pos] + bytes([byte]) + body[pos + 1:])[: len(body) - cut % (len(body) + 1)]


json_values = st.recursive(st.none() | st.booleans() | st.integers(-2**63, 2**64 - 1) | st.floats() | st.text(max_size=8),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
                               st.sampled_from(["outputs", "name", "datatype", "shape", "data", "error",
                                                "parameters", "binary_data_size"]), inner, max_size=5),
                           max_leaves=20)
bodies = st.one_of(
    st.just(VALID),
    st.binary(max_size=200),
    json_values.map(orjson.dumps),
    st.tuples(st.integers(0, 200), st.integers(0, 255), st.integers(0, 200)).map(lambda m: _mutate(VALID, *m)),
)
statuses = st.sampled_from([b"HTTP/1.1 200 OK", b"HTTP/1.1 503 Service Unavailable", b"HTTP/1.1 400 Bad",
                            b"HTTP/1.1 204 No Content", b"HTTP/1.1 999 What", b"HTTP/1.0 200 OK", b"HTTX 200",
                            b"", b"HTTP/1.1 200"])


def test_the_server_and_client_work(server, client):
    """The property below is not vacuous: a valid answer is ok, a 503 is one, garbage is invalid."""
    c, request = client
    for answer, kind in ((VALID, None), (b"{", "invalid_response")):
        server.answer = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(answer), answer)
        assert c.infer(request).error_kind == kind
    server.answer = b"HTTP/1.1 503 Busy\r\nContent-Length: 2\r\n\r\n{}"
    assert c.infer(request).error_kind == "http_503"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(status=statuses, body=bodies, length_delta=st.sampled_from([0, 0, 0, -3, 5, None]),
       header_length=st.none() | st.integers(-5, 300) | st.just("x"))
def test_any_answer_is_an_outcome(server, client, status, body, length_delta, header_length):
    c, request = client
    head = [status, b"Content-Type: application/json"]
    if length_delta is not None:
        head.append(b"Content-Length: %d" % max(0, len(body) + length_delta))
    if header_length is not None:
        head.append(f"Inference-Header-Content-Length: {header_length}".encode())
    server.answer = b"\r\n".join(head) + b"\r\n\r\n" + body
    out = c.infer(request)  # must not raise, whatever came back
    assert out.ok or (out.error_kind is not None and KIND.match(out.error_kind)), out
    assert out.message is None or (len(out.message) <= 200 and "\n" not in out.message)
    if out.ok:  # an ok is always a valid OIP answer
        assert status.startswith(b"HTTP/1.") and b" 2" in status
        hl = header_length if isinstance(header_length, int) else None
        json_codec.check_response(body if length_delta in (0, None) else body[: len(body) + length_delta], hl)
