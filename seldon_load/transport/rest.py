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
from time import perf_counter
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
from seldon_load.transport.deferred import ANC_BYTES, enable_rx_stamps, rx_stamp
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
# an inline send first checks a connection idle longer than this for a close by the server (an
# idle timeout); shorter idles are checked by the batcher's epoll_wait unless it reads directly
_PEEK_AFTER_S = 0.05
_KEEP_AFTER = frozenset((429, 503))  # error answers whose connection is reused


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

    __slots__ = ("sock", "buf", "view", "used", "rx_at")

    def __init__(self, sock: Any) -> None:
        self.sock = sock
        self.buf = bytearray(_BUFFER_BYTES)
        self.view = memoryview(self.buf)
        self.used = False  # has answered a request before (a stale keep-alive may be retried)
        self.rx_at: float | None = None  # the kernel's receive time of the last bytes read

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
    first read after a request waits for readability instead of failing with EAGAIN.
    Received data carries the kernel's receive time (``rx_at``); with a ``ReadBatcher`` the
    wait for an answer is parked until the load loop's next wake-up (transport.deferred)."""

    __slots__ = ("_hub", "_read", "_write", "_timeout", "_sent", "fd", "_batcher", "_stamps",
                 "nowait", "have", "idle_since", "deadline")

    def __init__(self, sock: Any, hub: Any, timeout_s: float, batcher: Any = None, owner: Any = None) -> None:
        super().__init__(sock)
        sock.setblocking(False)
        loop = hub.loop
        self._hub = hub
        self.fd = fd = sock.fileno()
        self._read = loop.io(fd, 1)
        self._write = loop.io(fd, 2)
        self._timeout = timeout_s
        self.deadline = 0.0  # perf_counter time the current request must be answered by
        self._sent = False
        self.nowait = False  # read by the load loop: never wait, raise _NeedMore instead
        self.have = 0  # answer bytes already in the buffer (inline requests)
        self.idle_since = 0.0
        self._stamps = enable_rx_stamps(sock)
        self._batcher = batcher
        if batcher is not None:
            batcher.watch(fd, owner)

    def _timer(self) -> Any:
        """A timer for what is left of the request's time (``deadline``): the timeout bounds the
        whole request, not each wait, or an answer dripping in byte by byte would never end.
        Made per wait (the inline path, the common one, has no wait): a reused libev timer
        is re-armed by start() with the time it had left when stopped, not its full time."""
        left = self.deadline - perf_counter()
        if left <= 0:
            raise TimeoutError(f"timed out after {self._timeout:g} s")
        return self._hub.loop.timer(left)

    def _wait(self, watcher: Any) -> None:
        g = getcurrent()
        timer = self._timer()
        watcher.start(g.switch)
        timer.start(self._expired, g)
        try:
            self._hub.switch()
        finally:
            watcher.stop()
            timer.close()

    def _wait_readable(self) -> None:
        batcher = self._batcher
        if batcher is not None and batcher.parking():
            timer = self._timer()
            timer.start(self._expired, getcurrent())
            try:
                ready = batcher.park(self.fd)
            finally:
                timer.close()
            if ready:
                return
        self._wait(self._read)

    def _expired(self, g: Any) -> None:
        g.throw(TimeoutError(f"timed out after {self._timeout:g} s"))

    def sendall(self, data: bytes) -> None:
        sock = self.sock
        self.rx_at = None
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
        if self.nowait:
            raise _NeedMore()
        sock = self.sock
        if self._sent:  # the answer cannot be there yet: wait first
            self._sent = False
            self._wait_readable()
        while True:
            try:
                if not self._stamps:
                    return sock.recv_into(view)
                n, anc, _flags, _addr = sock.recvmsg_into((view,), ANC_BYTES)
                if anc:
                    self.rx_at = rx_stamp(anc)
                return n
            except BlockingIOError:
                self._wait_readable()

    def recv(self, size: int) -> bytes:
        buf = bytearray(size)
        n = self.recv_into(memoryview(buf))
        return bytes(buf[:n])

    def closed_by_peer(self) -> bool:
        """Whether an idle kept-alive connection was closed (or spoken on) by the server: a
        request written to it would be lost or answered by something else."""
        try:
            return self.sock.recv(1, _socket.MSG_PEEK) is not None
        except BlockingIOError:
            return False
        except OSError:
            return True

    def close(self) -> None:
        if self._batcher is not None:
            self._batcher.forget(self.fd)
        self._read.close()
        self._write.close()
        self.sock.close()


class _Answer:
    """Status, the one header OIP needs, and the body of one response."""

    __slots__ = ("status", "head", "header_length", "body", "keep_alive", "received_at")

    def __init__(self, status: int, head: bytes, header_length: str | None, body: bytes, keep_alive: bool) -> None:
        self.status = status
        self.head = head  # the status line and headers, undecoded
        self.header_length = header_length
        self.body = body
        self.keep_alive = keep_alive
        self.received_at: float | None = None  # the kernel's receive time of its last bytes

    @property
    def reason(self) -> str:
        head = self.head
        line_end = head.find(b"\r\n")
        return head[13 : line_end if line_end >= 0 else len(head)].decode("latin-1")

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
        self._batcher: Any = None
        self._checker = json_codec.ResponseChecker()

    def defer_reads(self, batcher: Any) -> None:
        """Park answer waits on ``batcher`` (a transport.deferred.ReadBatcher) from now on."""
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
        return _PlainConn(raw, self._hub, self.timeout_s, self._batcher, self)

    def _acquire(self) -> _Conn | None:
        """An idle connection, a new one while the pool has room, else wait for one.
        None when the client was closed meanwhile."""
        while True:
            if self._idle:
                conn = self._idle.pop()
                if conn.used and conn.__class__ is _PlainConn and conn.closed_by_peer():
                    self._drop(conn)  # the server's idle timeout closed it: never write a request to it
                    continue
                return conn
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
        if isinstance(conn, _PlainConn):
            conn.idle_since = perf_counter()
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

    def _read_answer(self, conn: _Conn, have: int = 0) -> _Answer:
        """One response from ``conn`` (no pipelining: nothing else is in flight on it), whose
        first ``have`` bytes are already in its buffer."""
        buf, view = conn.buf, conn.view
        recv_into = conn.recv_into
        while True:
            end = buf.find(b"\r\n\r\n", 0, have) if have else -1
            if end < 0:
                n = recv_into(view[have:]) if have < _BUFFER_BYTES else 0
                if n == 0:
                    if have >= _BUFFER_BYTES:
                        raise HTTPProtocolError(f"response head larger than {_MAX_HEAD_BYTES} bytes")
                    raise ConnectionClosed(before_answer=have == 0)
                have += n
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
        reason_phrase = head  # the reason phrase is only read for failures (_Answer.reason)
        low = head.lower()
        header_length = _header_value(low, head, _HEADER_LENGTH_KEY) if b"inference-" in low else None
        # After an error answer a server may close the connection at once without saying so
        # (uvicorn's 500 for a request body it did not read ends in a reset): reusing it would
        # turn the next request into a reset the server never saw. Load-shedding answers (429,
        # 503) keep their connection, so an overloaded server is not also sent new connections.
        keep_alive = head[7:8] == b"1" and (status < 400 or status in _KEEP_AFTER)
        if _CONNECTION_KEY in low:
            connection = _header_value(low, head, _CONNECTION_KEY)
            keep_alive = keep_alive and not (connection is not None and "close" in connection.lower())
        transfer = _header_value(low, head, _TRANSFER_ENCODING_KEY) if _TRANSFER_ENCODING_KEY in low else None
        if transfer is not None and "chunked" in transfer.lower():
            body = self._read_chunked(conn, bytes(view[start:have]))
            return _Answer(status, reason_phrase, header_length, body, keep_alive)
        i = low.find(_CONTENT_LENGTH_KEY)
        if i < 0:
            if status in (204, 304):
                return _Answer(status, reason_phrase, header_length, b"", keep_alive)
            body = self._read_to_close(conn, bytes(view[start:have]))  # no length: the body ends with the connection
            return _Answer(status, reason_phrase, header_length, body, False)
        i += len(_CONTENT_LENGTH_KEY)
        j = low.find(b"\r\n", i)
        length_text = head[i : j if j >= 0 else len(head)]
        try:
            length = int(length_text)  # int() takes ASCII digits in bytes, blanks around them too
        except ValueError:
            raise HTTPProtocolError(f"invalid Content-Length {length_text.decode('latin-1')[:20]!r}") from None
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
        """Send one request on a pooled connection and read its answer. A request is never
        sent twice: once written, a reset or a cut answer is the request's outcome (the
        server may have run the inference). Connections the server closed while idle are
        left out before anything is written (``_acquire``)."""
        conn = self._acquire()
        if conn is None:
            raise _Closed()
        if conn.__class__ is _PlainConn:
            conn.deadline = perf_counter() + self.timeout_s
            return self._exchange_on(conn, first, second)
        with gevent.Timeout(self.timeout_s, TimeoutError(f"timed out after {self.timeout_s:g} s")):
            return self._exchange_on(conn, first, second)

    def _exchange_on(self, conn: _Conn, first: bytes, second: bytes | None) -> _Answer:
        try:
            conn.sendall(first)
            if second is not None:
                conn.sendall(second)
            answer = self._read_answer(conn)
            answer.received_at = conn.rx_at
        except BaseException:
            self._drop(conn)
            raise
        self._settle(conn, answer)
        return answer

    def _settle(self, conn: _Conn, answer: _Answer) -> None:
        if answer.keep_alive:
            self._release(conn)
        else:
            self._drop(conn)

    def _failure(self, exc: BaseException) -> Outcome:
        if self._closed or isinstance(exc, _Closed):
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
        except (OSError, HTTPProtocolError, _Closed) as exc:
            return self._failure(exc)
        return self._outcome(answer)

    def _outcome(self, answer: _Answer) -> Outcome:
        data = answer.body
        status = answer.status
        if 200 <= status < 300:
            if not self.validate:
                return Outcome(True, None, None, len(data), answer.received_at)
            try:
                self._checker.check(data, None if answer.header_length is None else _header_length(answer))
            except OIPServerError as exc:
                return Outcome(False, oc.OIP_ERROR, str(exc), len(data), answer.received_at)
            except OIPError as exc:
                return Outcome(False, oc.INVALID_RESPONSE, shorten(str(exc)), len(data), answer.received_at)
            return Outcome(True, None, None, len(data), answer.received_at)
        return Outcome(False, oc.http_kind(status), _status_message(answer, data), len(data), answer.received_at)

    # ------------------------------------------------------------------ inline (load loop)

    def start(self, req: EncodedRequest, token: Any) -> bool:
        """Send ``req`` now from the caller's greenlet (the open-loop engine) on an idle
        kept-alive connection, without waiting: the answer is read by the ReadBatcher's
        ``tick``, which reports ``(token, outcome)`` to its ``on_done``. False when this
        path does not apply (no batcher running, no idle cleartext connection, a large
        body); nothing was sent then and the caller uses ``infer``."""
        batcher, idle = self._batcher, self._idle
        if batcher is None or not batcher.active or not idle or self._closed:
            return False
        conn = idle[-1]
        if conn.__class__ is not _PlainConn:
            return False
        entry = self._prebuilt.get(id(req))
        if entry is None or entry[0] is not req:
            entry = self._prebuild(req)
        if entry[2] is not None:
            return False
        idle.pop()
        if conn.idle_since and perf_counter() - conn.idle_since > _PEEK_AFTER_S and conn.closed_by_peer():
            self._drop(conn)
            return False
        data = b"%s%x%s" % (self._infer_start, self._counter(), entry[1])
        conn.rx_at = None
        conn.have = 0
        conn.deadline = token[1] + self.timeout_s  # a hand-over to a greenlet keeps it
        try:
            n = conn.sock.send(data)
        except BlockingIOError:
            n = 0
        except OSError:
            self._drop(conn)  # nothing was written: the caller sends it on a new connection
            return False
        if n < len(data):  # the socket buffer is full (rare): finish in a greenlet
            conn._sent = n > 0
            batcher.hand_over(token, self._finish_send, conn, data[n:])
            return True
        batcher.inline[conn.fd] = (self, conn, token)
        return True

    def poll(self, conn: _PlainConn) -> Outcome | None:
        """Read on after ``start`` (its socket is readable); the outcome once the answer is
        complete, None while it is not. (Kept flat: it runs once per answer.)"""
        try:
            n, anc, _flags, _addr = conn.sock.recvmsg_into((conn.view[conn.have:],), ANC_BYTES)
        except BlockingIOError:
            return None
        except OSError as exc:
            self._unannounced_close(conn)
            self._drop(conn)
            return self._failure(exc)
        if anc:
            conn.rx_at = rx_stamp(anc)
        if n == 0:
            self._unannounced_close(conn)
            self._drop(conn)
            return self._failure(ConnectionClosed(before_answer=conn.have == 0))
        conn.have += n
        conn.nowait = True
        try:
            answer = self._read_answer(conn, conn.have)
        except _NeedMore:
            return None
        except (OSError, HTTPProtocolError) as exc:
            self._drop(conn)
            return self._failure(exc)
        finally:
            conn.nowait = False
        answer.received_at = received = conn.rx_at
        if answer.keep_alive and not self._waiters and not self._closed:
            conn.used = True
            conn.idle_since = received or perf_counter()
            self._idle.append(conn)
        else:
            self._settle(conn, answer)
        return self._outcome(answer)

    def _unannounced_close(self, conn: _PlainConn) -> None:
        """A reused connection ended before any byte of its answer: the server closed it while
        idle without saying so (no ``Connection: close``), so before each reuse every wake-up
        must look for such closes again (``ReadBatcher.direct``)."""
        if conn.used and conn.have == 0 and self._batcher is not None:
            self._batcher.direct = False

    def finish(self, conn: _PlainConn) -> Outcome:
        """Wait for the rest of an inline request's answer in a greenlet of its own."""
        conn._sent = conn.have == 0
        try:
            answer = self._read_answer(conn, conn.have)
            answer.received_at = conn.rx_at
        except (OSError, HTTPProtocolError) as exc:
            if isinstance(exc, ConnectionResetError) and getattr(exc, "before_answer", conn.have == 0):
                self._unannounced_close(conn)
            self._drop(conn)
            return self._failure(exc)
        except BaseException:
            self._drop(conn)
            raise
        self._settle(conn, answer)
        return self._outcome(answer)

    def _finish_send(self, conn: _PlainConn, rest: bytes) -> Outcome:
        try:
            conn.sendall(rest)
        except OSError as exc:
            self._drop(conn)
            return self._failure(exc)
        except BaseException:
            self._drop(conn)
            raise
        conn.have = 0
        return self.finish(conn)

    def timed_out(self, conn: _PlainConn) -> Outcome:
        """An inline request's answer did not come within ``timeout_s``."""
        self._drop(conn)
        return self._failure(TimeoutError())

    def stale(self, fd: int) -> None:
        """The socket of ``fd`` is readable: if it is an idle pooled connection, the server
        closed it (or spoke out of turn): drop it before a request is written to it."""
        for conn in self._idle:
            if conn.__class__ is _PlainConn and conn.fd == fd:
                self._idle.remove(conn)
                self._drop(conn)
                return

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


class _NeedMore(Exception):
    """An inline answer is not complete yet: read on when the socket is readable again."""


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
