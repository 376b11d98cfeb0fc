"""OIP over HTTP/1.1 keep-alive on gevent sockets: a lean client for the load loop.

Why not a general HTTP client: on the hot path every Python call and every system call
counts (benchmarks/ and docs/performance.md). Per request this client does one ``send``
of pre-built bytes and, for a small answer, one ``recv_into`` a per-connection buffer:

* the request line, every constant header and the payload's own headers are encoded once
  per payload variant; per request only the ``x-request-id`` counter is formatted into it;
* connections are kept in a LIFO pool; no liveness probe before use: a kept-alive
  connection that turns out closed before any answer byte is retried once on a new one;
* the response head is parsed with a few ``bytes`` searches (status, Content-Length,
  Transfer-Encoding, Connection and the OIP header length) instead of a callback per header.

Server and network faults never raise from ``infer``: they come back as an ``Outcome``
whose kind comes from ``outcome.kind_of_exception`` or the HTTP status. ``timeout_s``
bounds every wait on the socket (sending, the response head, each body read).
"""

from __future__ import annotations

import _socket
import errno
import itertools
import re
import secrets
from collections import deque
from typing import Any

import gevent
import orjson
from gevent import socket
from gevent.hub import Waiter, get_hub
from greenlet import getcurrent

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
_BUFFER_BYTES = 64 * 1024  # per connection, reused for every answer that fits
_MAX_HEAD_BYTES = 64 * 1024
_HEADER_LENGTH_KEY = b"\r\n" + json_codec.HEADER_LENGTH.lower().encode() + b":"
_CONTENT_LENGTH_KEY = b"\r\ncontent-length:"
_TRANSFER_ENCODING_KEY = b"\r\ntransfer-encoding:"
_CONNECTION_KEY = b"\r\nconnection:"
_RETRYABLE_ERRNO = (errno.ECONNRESET, errno.EPIPE, errno.ECONNABORTED)


class ConnectTimeout(TimeoutError):
    """Connecting (TCP and TLS handshake) took longer than ``connect_timeout_s``."""


class HTTPProtocolError(Exception):
    """The server's answer is not HTTP/1.x we can read."""


class ConnectionClosed(ConnectionResetError):
    """The server closed the connection before a complete answer."""

    def __init__(self, before_answer: bool) -> None:
        super().__init__(errno.ECONNRESET, "connection closed by the server")
        self.before_answer = before_answer


class _Conn:
    """One kept-alive connection and its receive buffer; I/O through gevent's socket (TLS)."""

    __slots__ = ("sock", "buf", "view", "used")

    def __init__(self, sock: Any) -> None:
        self.sock = sock
        self.buf = bytearray(_BUFFER_BYTES)
        self.view = memoryview(self.buf)
        self.used = False  # has answered a request before (a stale keep-alive may be retried)

    def sendall(self, data: bytes) -> None:
        self.sock.sendall(data)

    def recv_into(self, view: memoryview) -> int:
        return self.sock.recv_into(view)

    def recv(self, size: int) -> bytes:
        return self.sock.recv(size)

    def close(self) -> None:
        self.sock.close()


class _PlainConn(_Conn):
    """A cleartext connection driven directly: a non-blocking OS socket, one read and one
    write watcher and one timeout timer made once, so a wait costs no allocation and the
    first read after a request waits for readability instead of failing with EAGAIN."""

    __slots__ = ("_hub", "_read", "_write", "_timer", "_timeout", "_sent")

    def __init__(self, sock: Any, hub: Any, timeout_s: float) -> None:
        super().__init__(sock)
        sock.setblocking(False)
        loop = hub.loop
        self._hub = hub
        self._read = loop.io(sock.fileno(), 1)
        self._write = loop.io(sock.fileno(), 2)
        self._timer = loop.timer(timeout_s)
        self._timeout = timeout_s
        self._sent = False

    def _wait(self, watcher: Any) -> None:
        g = getcurrent()
        timer = self._timer
        watcher.start(g.switch)
        timer.start(self._expired, g)
        try:
            self._hub.switch()
        finally:
            watcher.stop()
            timer.stop()

    def _expired(self, g: Any) -> None:
        g.throw(TimeoutError(f"timed out after {self._timeout:g} s"))

    def sendall(self, data: bytes) -> None:
        sock = self.sock
        try:
            sent = sock.send(data)
        except BlockingIOError:
            sent = 0
        if sent < len(data):
            rest = memoryview(data)
            while sent < len(data):
                self._wait(self._write)
                try:
                    sent += sock.send(rest[sent:])
                except BlockingIOError:
                    pass
        self._sent = True

    def recv_into(self, view: memoryview) -> int:
        sock = self.sock
        if self._sent:  # the answer cannot be there yet: wait first
            self._sent = False
            self._wait(self._read)
        while True:
            try:
                return sock.recv_into(view)
            except BlockingIOError:
                self._wait(self._read)

    def recv(self, size: int) -> bytes:
        buf = bytearray(size)
        n = self.recv_into(memoryview(buf))
        return bytes(buf[:n])

    def close(self) -> None:
        self._read.close()
        self._write.close()
        self._timer.close()
        self.sock.close()


class _Answer:
    """Status, the one header OIP needs, and the body of one response."""

    __slots__ = ("status", "reason", "header_length", "body", "keep_alive")

    def __init__(self, status: int, reason: str, header_length: str | None, body: bytes, keep_alive: bool) -> None:
        self.status = status
        self.reason = reason
        self.header_length = header_length
        self.body = body
        self.keep_alive = keep_alive

    # the names geventhttpclient's response had, for callers of _call
    @property
    def status_code(self) -> int:
        return self.status

    @property
    def status_message(self) -> str:
        return self.reason


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
    if isinstance(exc, ConnectionClosed):
        return "connection closed by the server"
    text = str(exc) or type(exc).__name__
    if isinstance(exc, OSError) and exc.strerror:
        text = exc.strerror
    return shorten(f"{kind.replace('_', ' ')}: {text}", 160)


def _header_value(low_head: bytes, head: bytes, key: bytes) -> str | None:
    """Value of the header ``key`` (b"\\r\\nname:") in a head whose lower-cased copy is ``low_head``."""
    i = low_head.find(key)
    if i < 0:
        return None
    start = i + len(key)
    end = low_head.find(b"\r\n", start)
    return head[start : end if end >= 0 else len(head)].strip().decode("latin-1")


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
        self._ssl_context = (tls or TlsConfig()).ssl_context() if target.tls else None
        self.target = target
        self.validate = validate
        self.timeout_s = timeout_s
        self.connect_timeout_s = connect_timeout_s
        self._closed = False
        self._hub = get_hub()
        self._size = max(1, pool_size)
        self._idle: list[_Conn] = []
        self._open = 0
        self._waiters: deque[Waiter] = deque()
        self._headers = _header_lines(target, headers)
        self._rid_prefix = secrets.token_hex(6).encode() + b"-"
        self._counter = itertools.count(1).__next__
        self._infer_start = self._start("POST", target.infer_path)
        self._extra: dict[tuple[tuple[str, str], ...], bytes] = {}
        self._prebuilt: dict[int, tuple[EncodedRequest, bytes, bytes | None]] = {}

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

    def _connect(self) -> _Conn:
        t = self.target
        try:
            sock = socket.create_connection((t.hostname, t.port), timeout=self.connect_timeout_s)
        except socket.gaierror:
            raise
        except TimeoutError:
            raise ConnectTimeout(f"connect timed out after {self.connect_timeout_s:g} s") from None
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self._ssl_context is not None:
                try:
                    sock = self._ssl_context.wrap_socket(sock, server_hostname=t.hostname)
                except TimeoutError:
                    raise ConnectTimeout(f"TLS handshake timed out after {self.connect_timeout_s:g} s") from None
                sock.settimeout(self.timeout_s)
                return _Conn(sock)
            raw = _socket.socket(sock.family, sock.type, sock.proto, sock.detach())
        except BaseException:
            sock.close()
            raise
        return _PlainConn(raw, self._hub, self.timeout_s)

    def _acquire(self) -> _Conn | None:
        """An idle connection, a new one while the pool has room, else wait for one.
        None when the client was closed meanwhile."""
        while True:
            if self._idle:
                return self._idle.pop()
            if self._open < self._size:
                self._open += 1
                try:
                    return self._connect()
                except BaseException:
                    self._open -= 1
                    self._wake_one()
                    raise
            waiter = Waiter()
            self._waiters.append(waiter)
            try:
                conn = waiter.get()
            finally:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
            if conn is not None or self._closed:
                return conn
            # a slot was freed (a connection dropped): loop and open one

    def _release(self, conn: _Conn) -> None:
        if self._closed:
            conn.close()
            self._open -= 1
            return
        conn.used = True
        if self._waiters:
            get_hub().loop.run_callback(self._waiters.popleft().switch, conn)
        else:
            self._idle.append(conn)

    def _drop(self, conn: _Conn) -> None:
        conn.close()
        self._open -= 1
        self._wake_one()

    def _wake_one(self) -> None:
        if self._waiters:
            get_hub().loop.run_callback(self._waiters.popleft().switch, None)

    # ------------------------------------------------------------------ wire

    def _read_answer(self, conn: _Conn) -> _Answer:
        """One response from ``conn`` (no pipelining: nothing else is in flight on it)."""
        buf, view = conn.buf, conn.view
        recv_into = conn.recv_into
        have = 0
        while True:
            n = recv_into(view[have:]) if have < _BUFFER_BYTES else 0
            if n == 0:
                if have >= _BUFFER_BYTES:
                    raise HTTPProtocolError(f"response head larger than {_MAX_HEAD_BYTES} bytes")
                raise ConnectionClosed(before_answer=have == 0)
            have += n
            end = buf.find(b"\r\n\r\n", 0, have)
            if end < 0:
                continue
            head = bytes(view[:end])
            if not head.startswith(b"HTTP/1.") or len(head) < 12 or head[12:13] not in (b" ", b"\r", b""):
                raise HTTPProtocolError(f"not an HTTP/1.x response: {head[:40]!r}")
            try:
                status = int(head[9:12])
            except ValueError:
                raise HTTPProtocolError(f"invalid status line: {head[:40]!r}") from None
            start = end + 4
            if 100 <= status < 200:  # an interim answer (e.g. 100 Continue): the real one follows
                view[: have - start] = bytes(view[start:have])
                have -= start
                continue
            break
        line_end = head.find(b"\r\n")
        reason_phrase = head[13 : line_end if line_end >= 0 else len(head)].decode("latin-1")
        low = head.lower()
        header_length = _header_value(low, head, _HEADER_LENGTH_KEY) if b"inference-" in low else None
        connection = _header_value(low, head, _CONNECTION_KEY)
        keep_alive = not (connection is not None and "close" in connection.lower()) and head[7:8] == b"1"
        transfer = _header_value(low, head, _TRANSFER_ENCODING_KEY)
        if transfer is not None and "chunked" in transfer.lower():
            body = self._read_chunked(conn, bytes(view[start:have]))
            return _Answer(status, reason_phrase, header_length, body, keep_alive)
        length_text = _header_value(low, head, _CONTENT_LENGTH_KEY)
        if length_text is None:
            if status in (204, 304):
                return _Answer(status, reason_phrase, header_length, b"", keep_alive)
            body = self._read_to_close(conn, bytes(view[start:have]))  # no length: the body ends with the connection
            return _Answer(status, reason_phrase, header_length, body, False)
        try:
            length = int(length_text)
        except ValueError:
            raise HTTPProtocolError(f"invalid Content-Length {length_text[:20]!r}") from None
        if length < 0:
            raise HTTPProtocolError(f"invalid Content-Length {length}")
        need = start + length
        if need <= _BUFFER_BYTES:
            while have < need:
                n = recv_into(view[have:need])
                if n == 0:
                    raise ConnectionClosed(before_answer=False)
                have += n
            if have > need:
                keep_alive = False  # bytes after the answer: the connection is out of step
            return _Answer(status, reason_phrase, header_length, bytes(view[start:need]), keep_alive)
        big = bytearray(length)
        got = min(have - start, length)
        big[:got] = view[start : start + got]
        big_view = memoryview(big)
        while got < length:
            n = recv_into(big_view[got:])
            if n == 0:
                raise ConnectionClosed(before_answer=False)
            got += n
        return _Answer(status, reason_phrase, header_length, bytes(big), keep_alive)

    def _read_chunked(self, conn: _Conn, data: bytes) -> bytes:
        parts: list[bytes] = []
        pos = 0

        def need(upto: int) -> None:
            nonlocal data
            while len(data) < upto:
                more = conn.recv(_BUFFER_BYTES)
                if not more:
                    raise ConnectionClosed(before_answer=False)
                data += more

        while True:
            while (nl := data.find(b"\r\n", pos)) < 0:
                need(len(data) + 1)
            size_text = data[pos:nl].split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise HTTPProtocolError(f"invalid chunk size {size_text[:20]!r}") from None
            pos = nl + 2
            if size == 0:
                while data.find(b"\r\n\r\n", pos - 2) < 0:  # trailers, then an empty line
                    need(len(data) + 1)
                return b"".join(parts)
            need(pos + size + 2)
            parts.append(data[pos : pos + size])
            pos += size + 2

    def _read_to_close(self, conn: _Conn, data: bytes) -> bytes:
        parts = [data]
        while True:
            more = conn.recv(_BUFFER_BYTES)
            if not more:
                return b"".join(parts)
            parts.append(more)

    def _exchange(self, first: bytes, second: bytes | None) -> _Answer:
        """Send one request on a pooled connection and read its answer; retry once when a
        kept-alive connection turns out closed before any answer (the server's idle timeout
        won the race)."""
        for attempt in (0, 1):
            conn = self._acquire()
            if conn is None:
                raise _Closed()
            try:
                conn.sendall(first)
                if second is not None:
                    conn.sendall(second)
                answer = self._read_answer(conn)
            except ConnectionClosed as exc:
                self._drop(conn)
                if attempt == 0 and exc.before_answer and conn.used:
                    continue
                raise
            except OSError as exc:
                self._drop(conn)
                if attempt == 0 and conn.used and exc.errno in _RETRYABLE_ERRNO:
                    continue
                raise
            except BaseException:
                self._drop(conn)
                raise
            if answer.keep_alive:
                self._release(conn)
            else:
                self._drop(conn)
            return answer
        raise AssertionError("unreachable")

    def _failure(self, exc: BaseException) -> Outcome:
        if self._closed or isinstance(exc, _Closed):
            return Outcome(False, oc.CANCELLED, "client closed")
        if isinstance(exc, ConnectionClosed):
            return Outcome(False, oc.CONNECTION_RESET, "connection closed by the server")
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
        except (OSError, HTTPProtocolError, _Closed) as exc:
            return self._failure(exc)
        data = answer.body
        status = answer.status
        if 200 <= status < 300:
            if not self.validate:
                return Outcome(True, None, None, len(data))
            try:
                json_codec.check_response(data, _header_length(answer))
            except OIPServerError as exc:
                return Outcome(False, oc.OIP_ERROR, str(exc), len(data))
            except OIPError as exc:
                return Outcome(False, oc.INVALID_RESPONSE, shorten(str(exc)), len(data))
            return Outcome(True, None, None, len(data))
        return Outcome(False, oc.http_kind(status), _status_message(answer, data), len(data))

    # ------------------------------------------------------------------ control plane

    def _call(
        self, method: str, path: str, body: bytes = b"", headers: tuple[tuple[str, str], ...] = ()
    ) -> tuple[_Answer, bytes]:
        """A non-hot-path request; transport failures raise TargetError with one line."""
        if self._closed:
            raise TargetError(f"the client for {self.target.safe_host} is closed")
        head = b"%s%x\r\n%s" % (self._start(method, path), self._counter(), self._extra_headers(headers))
        if method != "GET":
            head += b"Content-Length: %d\r\n" % len(body)
        try:
            answer = self._exchange(head + b"\r\n" + body, None)
        except (OSError, HTTPProtocolError, _Closed) as exc:
            if isinstance(exc, HTTPProtocolError):
                raise TargetError(f"{self.target.safe_host} did not answer with HTTP: {exc}") from None
            raise TargetError(
                f"cannot connect to {self.target.safe_host}: {reason(exc, self.timeout_s)}"
            ) from None
        return answer, answer.body

    def infer_decoded(self, req: EncodedRequest) -> InferResponse:
        """One inference call, decoded; raises OIPError for a bad or failed answer, TargetError
        when the server cannot be reached."""
        answer, data = self._call("POST", self.target.infer_path, req.body, req.headers)
        if not 200 <= answer.status < 300:
            raise OIPServerError(_status_message(answer, data))
        return json_codec.decode_response(data, _header_length(answer))

    def server_live(self) -> bool:
        return self._call("GET", self.target.live_path)[0].status == 200

    def server_ready(self) -> bool:
        return self._call("GET", self.target.server_ready_path)[0].status == 200

    def model_ready(self) -> bool:
        return self._call("GET", self.target.ready_path)[0].status == 200

    def model_metadata(self) -> dict[str, Any]:
        answer, data = self._call("GET", self.target.metadata_path)
        what = f"{self.target.kind} {self.target.name!r} on {self.target.safe_host}"
        if answer.status != 200:
            raise TargetError(f"cannot get the metadata of {what}: {_status_message(answer, data)}")
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
        answer, data = self._call("GET", t.ready_path)
        if answer.status == 200:
            return
        where = f"{t.kind} {t.name!r} on {t.safe_host}"
        if answer.status == 404:
            raise TargetError(f"unknown {where} ({_status_message(answer, data)})")
        raise TargetError(f"{where} is not ready ({_status_message(answer, data)})")

    def close(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
            self._open -= 1
        while self._waiters:
            waiter = self._waiters.popleft()
            try:
                get_hub().loop.run_callback(waiter.switch, None)
            except gevent.hub.LoopExit:  # pragma: no cover - no loop left to wake anyone
                break

    def __enter__(self) -> RestClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Closed(Exception):
    """The client was closed while a call waited for a connection."""


def _header_length(answer: _Answer) -> int | None:
    value = answer.header_length
    if value is None:
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise OIPError(f"invalid {json_codec.HEADER_LENGTH} header {value!r}") from None


def _status_message(answer: _Answer, data: bytes) -> str:
    """``HTTP 404: <OIP error message>`` or ``HTTP 503 Service Unavailable: <body preview>``."""
    status = answer.status
    message = json_codec.error_message(data)
    if message is None:
        reason_phrase = (answer.reason or "").strip()
        text = data[:120].decode("utf-8", "replace").strip()
        message = reason_phrase if text in ("", reason_phrase) else f"{reason_phrase}: {text}".lstrip(": ")
    return shorten(f"HTTP {status}: {message}" if message else f"HTTP {status}")
