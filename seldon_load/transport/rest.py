"""OIP over HTTP/1.1 keep-alive on gevent sockets: a lean client for the load loop.

Why not a general HTTP client: on the hot path every Python call and every system call
counts (benchmarks/ and docs/performance.md). Per request this client does one ``send``
of pre-built bytes and, for a small answer, one ``recv_into`` a per-connection buffer:

* the request line, every constant header and the payload's own headers are encoded once
  per payload variant; per request only the ``x-request-id`` counter is formatted into it;
* connections come from a LIFO pool (``transport.pool``); no liveness probe before use;
* the response head is parsed by ``transport.head.parse_head`` (a few ``bytes`` searches,
  strict about framing: conflicting lengths and unknown transfer codings are rejected).

The client is this module (connections, exchange, outcome) plus two mixins by concept: the
inline path the open-loop engine drives (``rest_inline``) and the control-plane calls
(``rest_control``). Server and network faults never raise from ``infer``: they come back
as an ``Outcome`` whose kind comes from ``outcome.kind_of_exception`` or the HTTP status.
``timeout_s`` bounds the whole exchange (sending, the head, the body) and
``max_response_bytes`` the body: past it the answer is an ``invalid_response`` and its
connection is closed.
"""

from __future__ import annotations

import itertools
import re
import secrets
from time import perf_counter

import gevent
from gevent.hub import get_hub

from seldon_load import __version__
from seldon_load.errors import ConfigError, OIPError
from seldon_load.oip import json_codec
from seldon_load.oip.json_codec import OIPServerError, shorten
from seldon_load.oip.target import Target
from seldon_load.oip.types import EncodedRequest
from seldon_load.transport import outcome as oc
from seldon_load.transport.connect import ConnectTimeout, open_socket, reason
from seldon_load.transport.h1conn import AnswerParking, Conn, ConnectionClosed, PlainConn, read_answer
from seldon_load.transport.head import Head, HTTPProtocolError
from seldon_load.transport.outcome import Outcome
from seldon_load.transport.pool import Pool, PoolClosed
from seldon_load.transport.rest_control import ControlCalls, header_length, status_message
from seldon_load.transport.rest_inline import InlineCalls
from seldon_load.transport.tls import TlsConfig

__all__ = ["ConnectTimeout", "HTTPProtocolError", "ConnectionClosed", "RestClient", "reason",
           "DEFAULT_MAX_RESPONSE_BYTES"]

_TOKEN_RE = re.compile(r"\A[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
_VALUE_RE = re.compile(r"\A[\t\x20-\x7e\x80-\xff]*\Z")
_RESERVED = frozenset(("host", "content-length", "transfer-encoding", "connection", "x-request-id"))
_SPLIT_SEND_BYTES = 64 * 1024  # above this the body is sent apart from the head, not copied into it
DEFAULT_MAX_RESPONSE_BYTES = 64 * 1024 * 1024


def _header_lines(target: Target, headers: dict[str, str] | None) -> bytes:
    """The constant header block: Host, User-Agent, seldon-model, auth, user headers."""
    fields: dict[str, tuple[str, str]] = {}

    def put(name: str, value: str) -> None:
        fields[name.lower()] = (name, value)

    put("Host", target.netloc)
    put("User-Agent", f"seldon-load/{__version__}")
    put("seldon-model", target.routing_value)
    auth = target.auth_header()
    if auth is not None:
        put("Authorization", auth)
    for name, value in (headers or {}).items():
        if not isinstance(name, str) or not _TOKEN_RE.match(name):
            raise ConfigError(f"invalid header name {name!r}")
        if name.lower() in _RESERVED:
            raise ConfigError(f"header {name} is set by seldon-load and cannot be given")
        if not isinstance(value, str) or not _VALUE_RE.match(value):
            raise ConfigError(f"invalid value for header {name}: it must be one line of text")
        put(name, value)
    try:
        return "".join(f"{n}: {v}\r\n" for n, v in fields.values()).encode("latin-1")
    except UnicodeEncodeError:
        raise ConfigError("header values must be latin-1 text") from None



class RestClient(InlineCalls, ControlCalls):
    """An OIP REST client for one target (one model or pipeline) with a keep-alive pool."""

    def __init__(
        self,
        target: Target,
        headers: dict[str, str] | None = None,
        timeout_s: float = 30.0,
        connect_timeout_s: float = 5.0,
        pool_size: int = 64,
        tls: TlsConfig | None = None,
        validate: bool = True,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    ) -> None:
        if target.protocol != "rest":
            raise ConfigError(f"RestClient needs a REST target, got {target.protocol}")
        if not target.tls and tls is not None and (tls.ca_file or tls.cert_file or tls.insecure_skip_verify):
            raise ConfigError(f"TLS options need an https:// host, got {target.safe_host}")
        self._ssl_context = (tls or TlsConfig()).ssl_context() if target.tls else None
        self.target = target
        self.validate = validate
        self.timeout_s = timeout_s
        self.connect_timeout_s = connect_timeout_s
        self._closed = False
        self._hub = get_hub()
        self.max_response_bytes = max_response_bytes
        self._pool = pool = Pool(pool_size, self._connect)
        self._idle = pool.idle  # the same list: the inline path takes from it directly
        self._acquire, self._drop = pool.acquire, pool.drop
        self._headers = _header_lines(target, headers)
        self._rid_prefix = secrets.token_hex(6).encode() + b"-"
        self._counter = itertools.count(1).__next__
        self._infer_start = self._start("POST", target.infer_path)
        self._extra: dict[tuple[tuple[str, str], ...], bytes] = {}
        self._prebuilt: dict[int, tuple[EncodedRequest, bytes, bytes | None]] = {}
        self._batcher: AnswerParking | None = None  # once defer_reads is called
        self._checker = json_codec.ResponseChecker()

    def defer_reads(self, batcher: AnswerParking) -> None:
        """Park answer waits on ``batcher`` (a load.batcher.ReadBatcher) from now on."""
        self._batcher = batcher

    def _start(self, method: str, path: str) -> bytes:
        return f"{method} {path} HTTP/1.1\r\n".encode() + self._headers + b"x-request-id: " + self._rid_prefix

    def _extra_headers(self, headers: tuple[tuple[str, str], ...]) -> bytes:
        block = self._extra.get(headers)
        if block is None:
            if len(self._extra) > 64:
                self._extra.clear()
            block = "".join(f"{n}: {v}\r\n" for n, v in headers).encode("latin-1")
            self._extra[headers] = block
        return block

    def _prebuild(self, req: EncodedRequest) -> tuple[EncodedRequest, bytes, bytes | None]:
        """What follows the request id: the rest of the head, and the body (inline when small)."""
        body = req.body
        tail = b"\r\n%sContent-Length: %d\r\n\r\n" % (self._extra_headers(req.headers), len(body))
        entry = (req, tail + body, None) if len(body) <= _SPLIT_SEND_BYTES else (req, tail, body)
        if len(self._prebuilt) > 256:
            self._prebuilt.clear()
        self._prebuilt[id(req)] = entry
        return entry

    # ------------------------------------------------------------------ connections

    def _connect(self) -> Conn:
        t = self.target
        sock, plain = open_socket(t.hostname, t.port, self.connect_timeout_s, self._ssl_context, self.timeout_s)
        if not plain:
            return Conn(sock)
        return PlainConn(sock, self._hub, self.timeout_s, self._batcher, self)

    def _exchange(self, first: bytes, second: bytes | None) -> Head:
        """Send one request on a pooled connection and read its answer. A request is never
        sent twice: once written, a reset or a cut answer is the request's outcome (the
        server may have run the inference). Connections the server closed while idle are
        left out before anything is written (``_acquire``)."""
        conn = self._acquire()
        if conn is None:
            raise PoolClosed()
        conn.deadline = perf_counter() + self.timeout_s  # read loops check it (data that keeps coming)
        if conn.__class__ is PlainConn:
            return self._exchange_on(conn, first, second)
        with gevent.Timeout(self.timeout_s, TimeoutError(f"timed out after {self.timeout_s:g} s")):
            return self._exchange_on(conn, first, second)

    def _exchange_on(self, conn: Conn, first: bytes, second: bytes | None) -> Head:
        try:
            conn.sendall(first)
            if second is not None:
                conn.sendall(second)
            answer = read_answer(conn, 0, self.max_response_bytes)
            answer.received_at = conn.rx_at
        except BaseException:
            self._drop(conn)
            raise
        self._pool.settle(conn, answer.keep_alive)
        return answer

    def _failure(self, exc: BaseException) -> Outcome:
        if self._closed or isinstance(exc, PoolClosed):
            return Outcome(False, oc.CANCELLED, "client closed")
        if isinstance(exc, ConnectionClosed):
            if exc.before_answer:
                return Outcome(False, oc.CONNECTION_RESET, "connection closed by the server")
            return Outcome(False, oc.INVALID_RESPONSE, "answer cut short: connection closed in the middle of it")
        if isinstance(exc, HTTPProtocolError):
            return Outcome(False, oc.INVALID_RESPONSE, shorten(str(exc)))
        return Outcome(False, oc.kind_of_exception(exc), reason(exc, self.timeout_s))

    def infer(self, req: EncodedRequest) -> Outcome:
        """One inference call; never raises for server or network faults."""
        if self._closed:
            return Outcome(False, oc.CANCELLED, "client closed")
        entry = self._prebuilt.get(id(req))
        if entry is None or entry[0] is not req:
            entry = self._prebuild(req)
        try:
            answer = self._exchange(b"%s%x%s" % (self._infer_start, self._counter(), entry[1]), entry[2])
        except (OSError, HTTPProtocolError, PoolClosed) as exc:
            return self._failure(exc)
        return self._outcome(answer)

    def _outcome(self, answer: Head) -> Outcome:
        data = answer.body
        status = answer.status
        if 200 <= status < 300:
            if not self.validate:
                return Outcome(True, None, None, len(data), answer.received_at)
            try:
                self._checker.check(data, None if answer.header_length is None else header_length(answer))
            except OIPServerError as exc:
                return Outcome(False, oc.OIP_ERROR, str(exc), len(data), answer.received_at)
            except OIPError as exc:
                return Outcome(False, oc.INVALID_RESPONSE, shorten(str(exc)), len(data), answer.received_at)
            return Outcome(True, None, None, len(data), answer.received_at)
        return Outcome(False, oc.http_kind(status), status_message(answer, data), len(data), answer.received_at)

    def close(self) -> None:
        self._closed = True
        self._pool.close()

    def __enter__(self) -> RestClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
