"""OIP over HTTP/1.1 keep-alive, gevent-cooperative, on geventhttpclient's pool and parser.

The hot path (``infer``) sends pre-built bytes: the request line and every constant header
are encoded once per client; per request only the ``x-request-id`` (a per-client random
prefix and a counter), the payload's own headers (cached by their tuple) and the
Content-Length are formatted. Responses are parsed by geventhttpclient's C parser.
Server and network faults never raise here: they come back as an ``Outcome`` whose kind
comes from ``outcome.kind_of_exception`` or the HTTP status.

``timeout_s`` bounds every wait on the socket (sending, the response head, each body
read): a server that does not answer within it ends the request as ``timeout``.
"""

from __future__ import annotations

import errno
import itertools
import re
import secrets
import socket
from typing import Any

import orjson
from geventhttpclient.connectionpool import ConnectionPool
from geventhttpclient.response import HTTPConnectionClosed, HTTPParseError, HTTPSocketPoolResponse

from seldon_load import __version__
from seldon_load.errors import ConfigError, OIPError, TargetError
from seldon_load.oip import json_codec
from seldon_load.oip.json_codec import OIPServerError, shorten
from seldon_load.oip.target import Target
from seldon_load.oip.types import EncodedRequest, InferResponse
from seldon_load.transport import outcome as oc
from seldon_load.transport.outcome import Outcome
from seldon_load.transport.tls import TlsConfig

_TOKEN_RE = re.compile(r"\A[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
_VALUE_RE = re.compile(r"\A[\t\x20-\x7e\x80-\xff]*\Z")
_RESERVED = frozenset(("host", "content-length", "transfer-encoding", "connection", "x-request-id"))
_SPLIT_SEND_BYTES = 64 * 1024  # above this the body is sent apart from the head, not copied into it
_BLOCK_SIZE = 64 * 1024
_HEADER_LENGTH_KEY = json_codec.HEADER_LENGTH.lower()
_HEADER_LENGTH_LEN = len(_HEADER_LENGTH_KEY)


class ConnectTimeout(TimeoutError):
    """Connecting (TCP and TLS handshake) took longer than ``connect_timeout_s``."""


class _Pool(ConnectionPool):
    """geventhttpclient's keep-alive pool with TCP_NODELAY and our own TLS context."""

    def __init__(
        self, target: Target, size: int, connect_timeout_s: float, timeout_s: float, ssl_context: Any | None
    ) -> None:
        super().__init__(
            target.hostname,
            target.port,
            target.hostname,
            target.port,
            size=size,
            connection_timeout=connect_timeout_s,
            network_timeout=timeout_s,
        )
        self._ssl_context = ssl_context

    def _connect_socket(self, sock: Any, address: Any) -> Any:
        try:
            sock.connect(address)
            if self._ssl_context is not None:
                sock = self._ssl_context.wrap_socket(sock, server_hostname=self._request_host)
        except TimeoutError:
            raise ConnectTimeout(f"connect timed out after {self.connection_timeout:g} s") from None
        return sock

    def after_connect(self, sock: Any) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _Response(HTTPSocketPoolResponse):
    """geventhttpclient's response (C parser, pooled socket) keeping only the one header OIP
    needs: building a full header index costs more than the rest of a small answer."""

    header_length: str | None = None
    _field = ""
    _value = ""
    _in_value = False

    def _on_header_field(self, string: str) -> None:
        if self._in_value:
            self._flush_header()
        self._field += string  # a name may come split across reads

    def _on_header_value(self, string: str) -> None:
        self._value = self._value + string if self._in_value else string
        self._in_value = True

    def _flush_header(self) -> None:
        if len(self._field) == _HEADER_LENGTH_LEN and self._field.lower() == _HEADER_LENGTH_KEY:
            self.header_length = self._value
        self._field = self._value = ""
        self._in_value = False


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


def reason(exc: BaseException, timeout_s: float | None = None) -> str:
    """A short human reason for a transport exception (no secrets: only the exception text)."""
    kind = oc.kind_of_exception(exc)
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve host name ({exc.strerror or exc})"
    if isinstance(exc, ConnectTimeout):
        return str(exc)
    if kind == oc.TIMEOUT:
        return f"timed out after {timeout_s:g} s" if timeout_s else "timed out"
    if kind == oc.CONNECTION_REFUSED:
        return "connection refused"
    if isinstance(exc, HTTPConnectionClosed):
        return "connection closed by the server"
    text = str(exc) or type(exc).__name__
    if isinstance(exc, OSError) and exc.strerror:
        text = exc.strerror
    return shorten(f"{kind.replace('_', ' ')}: {text}", 160)


class RestClient:
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
    ) -> None:
        if target.protocol != "rest":
            raise ConfigError(f"RestClient needs a REST target, got {target.protocol}")
        if not target.tls and tls is not None and (tls.ca_file or tls.cert_file or tls.insecure_skip_verify):
            raise ConfigError(f"TLS options need an https:// host, got {target.safe_host}")
        ssl_context = (tls or TlsConfig()).ssl_context() if target.tls else None
        self.target = target
        self.validate = validate
        self.timeout_s = timeout_s
        self._closed = False
        self._pool = _Pool(target, pool_size, connect_timeout_s, timeout_s, ssl_context)
        self._headers = _header_lines(target, headers)
        self._rid_prefix = secrets.token_hex(6).encode() + b"-"
        self._counter = itertools.count(1).__next__
        self._infer_start = self._start("POST", target.infer_path)
        self._extra: dict[tuple[tuple[str, str], ...], bytes] = {}

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

    # ------------------------------------------------------------------ wire

    def _exchange(self, head: bytes, body: bytes) -> tuple[_Response, bytes]:
        """Send one request on a pooled connection; retry once when a kept-alive connection
        turns out closed before any answer (the server's idle timeout won the race)."""
        pool = self._pool
        for attempt in (0, 1):
            sock = pool.get_socket()
            try:
                if len(body) <= _SPLIT_SEND_BYTES:
                    sock.sendall(head + body)
                else:
                    sock.sendall(head)
                    sock.sendall(body)
            except OSError as exc:
                pool.release_socket(sock)
                if attempt == 0 and exc.errno in (errno.ECONNRESET, errno.EPIPE):
                    continue
                raise
            except BaseException:
                pool.release_socket(sock)
                raise
            try:
                response = _Response(sock, pool, block_size=_BLOCK_SIZE)
            except HTTPConnectionClosed:
                if attempt == 0:
                    continue
                raise
            return response, response.read()
        raise AssertionError("unreachable")

    def _failure(self, exc: BaseException) -> Outcome:
        if self._closed:
            return Outcome(False, oc.CANCELLED, "client closed")
        if isinstance(exc, HTTPConnectionClosed):
            return Outcome(False, oc.CONNECTION_RESET, "connection closed by the server")
        if isinstance(exc, RuntimeError):  # e.g. "Cannot resolve host"
            return Outcome(False, oc.CONNECTION_ERROR, shorten(str(exc)))
        return Outcome(False, oc.kind_of_exception(exc), reason(exc, self.timeout_s))

    def infer(self, req: EncodedRequest) -> Outcome:
        """One inference call; never raises for server or network faults."""
        if self._closed:  # a closed geventhttpclient pool would leak a slot per call
            return Outcome(False, oc.CANCELLED, "client closed")
        body = req.body
        head = b"%s%x\r\n%sContent-Length: %d\r\n\r\n" % (
            self._infer_start,
            self._counter(),
            self._extra_headers(req.headers),
            len(body),
        )
        try:
            response, data = self._exchange(head, body)
        except (OSError, HTTPParseError, RuntimeError) as exc:
            return self._failure(exc)
        status = response.status_code
        if 200 <= status < 300:
            if not self.validate:
                return Outcome(True, None, None, len(data))
            try:
                json_codec.check_response(data, _header_length(response))
            except OIPServerError as exc:
                return Outcome(False, oc.OIP_ERROR, str(exc), len(data))
            except OIPError as exc:
                return Outcome(False, oc.INVALID_RESPONSE, shorten(str(exc)), len(data))
            return Outcome(True, None, None, len(data))
        return Outcome(False, oc.http_kind(status), _status_message(response, data), len(data))

    # ------------------------------------------------------------------ control plane

    def _call(
        self, method: str, path: str, body: bytes = b"", headers: tuple[tuple[str, str], ...] = ()
    ) -> tuple[_Response, bytes]:
        """A non-hot-path request; transport failures raise TargetError with one line."""
        if self._closed:
            raise TargetError(f"the client for {self.target.safe_host} is closed")
        head = b"%s%x\r\n%s" % (self._start(method, path), self._counter(), self._extra_headers(headers))
        if method != "GET":
            head += b"Content-Length: %d\r\n" % len(body)
        try:
            return self._exchange(head + b"\r\n", body)
        except (OSError, HTTPParseError, RuntimeError) as exc:
            raise TargetError(
                f"cannot connect to {self.target.safe_host}: {reason(exc, self.timeout_s)}"
            ) from None

    def infer_decoded(self, req: EncodedRequest) -> InferResponse:
        """One inference call, decoded; raises OIPError for a bad or failed answer, TargetError
        when the server cannot be reached."""
        response, data = self._call("POST", self.target.infer_path, req.body, req.headers)
        status = response.status_code
        if not 200 <= status < 300:
            raise OIPServerError(_status_message(response, data))
        return json_codec.decode_response(data, _header_length(response))

    def server_live(self) -> bool:
        return self._call("GET", self.target.live_path)[0].status_code == 200

    def server_ready(self) -> bool:
        return self._call("GET", self.target.server_ready_path)[0].status_code == 200

    def model_ready(self) -> bool:
        return self._call("GET", self.target.ready_path)[0].status_code == 200

    def model_metadata(self) -> dict[str, Any]:
        response, data = self._call("GET", self.target.metadata_path)
        what = f"{self.target.kind} {self.target.name!r} on {self.target.safe_host}"
        if response.status_code != 200:
            raise TargetError(f"cannot get the metadata of {what}: {_status_message(response, data)}")
        try:
            doc = orjson.loads(data)
        except orjson.JSONDecodeError:
            doc = None
        if not isinstance(doc, dict):
            raise TargetError(f"the metadata of {what} is not a JSON object")
        return doc

    def check_target(self) -> None:
        """Raise TargetError with one clear line unless the target is reachable and ready."""
        t = self.target
        response, data = self._call("GET", t.ready_path)
        status = response.status_code
        if status == 200:
            return
        where = f"{t.kind} {t.name!r} on {t.safe_host}"
        if status == 404:
            raise TargetError(f"unknown {where} ({_status_message(response, data)})")
        raise TargetError(f"{where} is not ready ({_status_message(response, data)})")

    def close(self) -> None:
        self._closed = True
        self._pool.close()

    def __enter__(self) -> RestClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _header_length(response: _Response) -> int | None:
    value = response.header_length
    if value is None:
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise OIPError(f"invalid {json_codec.HEADER_LENGTH} header {value!r}") from None


def _status_message(response: _Response, data: bytes) -> str:
    """``HTTP 404: <OIP error message>`` or ``HTTP 503 Service Unavailable: <body preview>``."""
    status = response.status_code
    message = json_codec.error_message(data)
    if message is None:
        reason_phrase = (response.status_message or "").strip()
        text = data[:120].decode("utf-8", "replace").strip()
        message = reason_phrase if text in ("", reason_phrase) else f"{reason_phrase}: {text}".lstrip(": ")
    return shorten(f"HTTP {status}: {message}" if message else f"HTTP {status}")
