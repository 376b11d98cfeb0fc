"""Unary gRPC calls over HTTP/2 on gevent sockets: the gRPC transport's wire.

Why not grpcio: under gevent, grpcio hands every blocking call to a native thread and back
(hundreds of microseconds of CPU per call on a 2-core machine, and send lags of tens of
milliseconds when its poller and the gevent loop compete). A unary gRPC call is small:
one HEADERS and one DATA frame out, HEADERS + DATA + trailing HEADERS back. This module
speaks exactly that, with what HTTP/2 requires around it (SETTINGS, PING, WINDOW_UPDATE,
GOAWAY, RST_STREAM, CONTINUATION, flow control both ways, the peer's stream limit):

* the request header block is HPACK-encoded once per client; per call only the
  ``x-request-id`` literal is appended; the gRPC message prefix and frame headers are
  packed in one ``bytes`` operation and the whole request leaves in one ``send``;
* one reader greenlet per connection parses frames; response header blocks are decoded
  through a cache (we advertise a zero-size HPACK table, so they repeat byte for byte);
* a finished stream wakes its caller with one loop callback.

Calls never raise for server or network faults: they return ``(code, message, payload)``
with a gRPC status code (``UNAVAILABLE`` when the connection fails, ``DEADLINE_EXCEEDED``
when ``timeout_s`` passes, ``CANCELLED`` when the client is closed).
"""

from __future__ import annotations

import _socket
import struct
from typing import Any
from urllib.parse import unquote

import gevent
from gevent import socket
from gevent.hub import Waiter, get_hub
from gevent.lock import Semaphore
from greenlet import getcurrent

from seldon_load.transport import hpack
from seldon_load.transport.deferred import ANC_BYTES, enable_rx_stamps, rx_stamp

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = range(10)
END_STREAM, ACK, END_HEADERS, PADDED, PRIORITY_FLAG = 0x1, 0x1, 0x4, 0x8, 0x20
S_HEADER_TABLE_SIZE, S_ENABLE_PUSH, S_MAX_CONCURRENT_STREAMS = 0x1, 0x2, 0x3
S_INITIAL_WINDOW_SIZE, S_MAX_FRAME_SIZE = 0x4, 0x5
MAX_WINDOW = 2**31 - 1
DEFAULT_WINDOW = 65535
_FRAME = struct.Struct(">BHBBI")  # 24-bit length as (high byte, low 16 bits), type, flags, stream
_GRPC_PREFIX = struct.Struct(">BI")
_RECV_BYTES = 256 * 1024
_WINDOW_REFILL = 2**30

# gRPC status codes (grpc/status.h)
OK, CANCELLED, UNKNOWN, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, INTERNAL, UNAVAILABLE = 0, 1, 2, 4, 8, 13, 14
STATUS_NAMES = (
    "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND", "ALREADY_EXISTS",
    "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE",
    "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED",
)
# HTTP status -> gRPC code when a server or proxy answers without gRPC (gRPC's http-grpc-status-mapping)
_HTTP_TO_GRPC = {400: INTERNAL, 401: 16, 403: 7, 404: 12, 429: UNAVAILABLE, 502: UNAVAILABLE, 503: UNAVAILABLE,
                 504: UNAVAILABLE}
# RST_STREAM / GOAWAY error codes -> gRPC code
_H2_ERROR_TO_GRPC = {0x7: UNAVAILABLE, 0x8: CANCELLED, 0xB: RESOURCE_EXHAUSTED, 0xC: 7}

Result = tuple[int, str, bytes]  # gRPC status code, message, response message (payload only)


def status_name(code: int) -> str:
    return STATUS_NAMES[code] if 0 <= code < len(STATUS_NAMES) else "UNKNOWN"


def frame(kind: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    n = len(payload)
    return _FRAME.pack(n >> 16, n & 0xFFFF, kind, flags, stream_id) + payload


def grpc_timeout(timeout_s: float) -> str:
    """The ``grpc-timeout`` header value: at most 8 digits and a unit."""
    ms = max(1, int(timeout_s * 1000))
    return f"{ms}m" if ms < 10**8 else f"{min(int(timeout_s), 10**8 - 1)}S"


class _Stream:
    __slots__ = ("id", "waiter", "headers_seen", "http_status", "content_type", "parts", "result", "send_window",
                 "received_at")

    def __init__(self, stream_id: int, waiter: Any, send_window: int) -> None:
        self.id = stream_id
        self.waiter = waiter
        self.headers_seen = False
        self.http_status = 0
        self.content_type = ""
        self.parts: list[bytes] = []
        self.result: Result | None = None
        self.send_window = send_window
        self.received_at: float | None = None  # the kernel's receive time of the read that ended it


class ConnectionFailed(Exception):
    """The connection could not be made or broke (becomes gRPC UNAVAILABLE)."""


class H2Connection:
    """One HTTP/2 connection: many concurrent streams, one reader greenlet."""

    def __init__(self, sock: Any, plain: bool, hub: Any, max_message_bytes: int) -> None:
        self.sock = sock
        self.plain = plain
        self.hub = hub
        self.max_message_bytes = max_message_bytes
        self.streams: dict[int, _Stream] = {}
        self.next_id = 1
        self.send_window = DEFAULT_WINDOW
        self.peer_initial_window = DEFAULT_WINDOW
        self.peer_max_frame = 16384
        self.peer_max_streams = 2**31
        self.recv_unacked = 0
        self.usable = True  # no GOAWAY, not broken
        self.error = ""
        self.decoder = hpack.Decoder(4096)
        self._lock = Semaphore()
        self._window_waiters: list[Any] = []
        self._headers_pending: tuple[int, int, list[bytes]] | None = None
        # cleartext reads carry the kernel's receive stamp: a stream's end is timed when its last
        # bytes arrived, not when this reader's greenlet got round to them (as REST answers are)
        self.stamped = plain and enable_rx_stamps(sock)
        self.rx_at: float | None = None
        if plain:
            sock.setblocking(False)
            self._read = hub.loop.io(sock.fileno(), 1)
            self._write = hub.loop.io(sock.fileno(), 2)
        settings = b"".join(struct.pack(">HI", k, v) for k, v in (
            (S_HEADER_TABLE_SIZE, 0), (S_ENABLE_PUSH, 0), (S_INITIAL_WINDOW_SIZE, MAX_WINDOW)))
        self.send(PREFACE + frame(SETTINGS, 0, 0, settings)
                  + frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", MAX_WINDOW - DEFAULT_WINDOW)))
        self.reader = gevent.spawn(self._read_loop)

    # ---------------------------------------------------------------- sending
    def send(self, data: bytes) -> None:
        with self._lock:
            if not self.plain:
                self.sock.sendall(data)
                return
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

    def _wait(self, watcher: Any) -> None:
        watcher.start(getcurrent().switch)
        try:
            self.hub.switch()
        finally:
            watcher.stop()

    def open_stream(self, waiter: Any) -> _Stream:
        stream_id = self.next_id
        self.next_id += 2
        stream = _Stream(stream_id, waiter, self.peer_initial_window)
        self.streams[stream_id] = stream
        return stream

    def send_request(self, stream: _Stream, header_block: bytes, message: bytes) -> None:
        """HEADERS and the gRPC message in DATA frames, within the peer's flow-control windows."""
        size = len(message) + 5
        sid = stream.id
        if (size <= self.send_window and size <= stream.send_window and size <= self.peer_max_frame
                and len(header_block) <= self.peer_max_frame):
            self.send_window -= size
            stream.send_window -= size
            self.send(_FRAME.pack(len(header_block) >> 16, len(header_block) & 0xFFFF, HEADERS, END_HEADERS, sid)
                      + header_block
                      + _FRAME.pack(size >> 16, size & 0xFFFF, DATA, END_STREAM, sid)
                      + _GRPC_PREFIX.pack(0, len(message)) + message)
            return
        step = self.peer_max_frame
        chunks = [header_block[i : i + step] for i in range(0, len(header_block), step)] or [b""]
        self.send(b"".join(
            frame(HEADERS if i == 0 else CONTINUATION, END_HEADERS if i == len(chunks) - 1 else 0, sid, chunk)
            for i, chunk in enumerate(chunks)))
        body = memoryview(_GRPC_PREFIX.pack(0, len(message)) + message)
        pos = 0
        while pos < len(body):
            while min(self.send_window, stream.send_window) <= 0:
                if not self.usable or stream.result is not None:
                    return
                self._window_waiters.append(getcurrent())
                try:
                    self.hub.switch()
                finally:
                    if getcurrent() in self._window_waiters:
                        self._window_waiters.remove(getcurrent())
            n = min(len(body) - pos, self.send_window, stream.send_window, self.peer_max_frame)
            self.send_window -= n
            stream.send_window -= n
            last = pos + n >= len(body)
            self.send(frame(DATA, END_STREAM if last else 0, sid, bytes(body[pos : pos + n])))
            pos += n

    def cancel_stream(self, stream: _Stream) -> None:
        if self.streams.pop(stream.id, None) is not None and self.usable:
            try:
                self.send(frame(RST_STREAM, 0, stream.id, struct.pack(">I", 0x8)))
            except OSError:
                pass

    # ---------------------------------------------------------------- receiving
    def _recv_into(self, view: memoryview, drained: bool) -> int:
        """Read what is there; when the last read emptied the socket, wait for data first
        (saves a failing read, and its exception, per answer)."""
        if not self.plain:
            return self.sock.recv_into(view)
        if drained:
            self._wait(self._read)
        while True:
            try:
                if not self.stamped:
                    return self.sock.recv_into(view)
                n, anc, _flags, _addr = self.sock.recvmsg_into((view,), ANC_BYTES)
                self.rx_at = rx_stamp(anc) if anc else None
                return n
            except BlockingIOError:
                self._wait(self._read)

    def _read_loop(self) -> None:
        buf = bytearray(_RECV_BYTES)
        view = memoryview(buf)
        pending = b""
        n = 0
        try:
            while True:
                n = self._recv_into(view, 0 < n < _RECV_BYTES)
                if n == 0:
                    raise ConnectionFailed("connection closed by the server")
                data = pending + view[:n] if pending else bytes(view[:n])
                pos = self._frames(data)
                pending = data[pos:]
        except (OSError, ConnectionFailed, hpack.HPACKError, struct.error) as exc:
            self.fail(str(exc) or type(exc).__name__)
        except gevent.GreenletExit:
            self.fail("client closed", CANCELLED)

    def _frames(self, data: bytes) -> int:
        pos = 0
        end = len(data)
        unpack = _FRAME.unpack_from
        while end - pos >= 9:
            hi, lo, kind, flags, sid = unpack(data, pos)
            length = (hi << 16) | lo
            if end - pos - 9 < length:
                break
            payload = data[pos + 9 : pos + 9 + length]
            pos += 9 + length
            sid &= 0x7FFFFFFF
            if kind == DATA:
                self._on_data(sid, flags, payload, length)
            elif kind == HEADERS or kind == CONTINUATION:
                self._on_headers(kind, sid, flags, payload)
            elif kind == SETTINGS:
                self._on_settings(flags, payload)
            elif kind == WINDOW_UPDATE:
                self._on_window_update(sid, payload)
            elif kind == PING:
                if not flags & ACK:
                    self.send(frame(PING, ACK, 0, payload))
            elif kind == RST_STREAM:
                code = struct.unpack(">I", payload)[0]
                self._finish(sid, _H2_ERROR_TO_GRPC.get(code, INTERNAL), f"stream reset by the server (code {code})")
            elif kind == GOAWAY:
                self._on_goaway(payload)
            elif kind == PUSH_PROMISE:
                raise ConnectionFailed("server push was disabled but the server pushed")
        return pos

    def _on_data(self, sid: int, flags: int, payload: bytes, length: int) -> None:
        self.recv_unacked += length
        if self.recv_unacked >= _WINDOW_REFILL:
            self.send(frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", self.recv_unacked)))
            self.recv_unacked = 0
        stream = self.streams.get(sid)
        if stream is None:
            return
        if flags & PADDED:
            payload = payload[1 : len(payload) - payload[0]]
        stream.parts.append(payload)
        if flags & END_STREAM:
            self._finish(sid, INTERNAL, "stream ended without gRPC trailers")

    def _on_headers(self, kind: int, sid: int, flags: int, payload: bytes) -> None:
        if kind == HEADERS:
            if flags & PADDED:
                payload = payload[1 : len(payload) - payload[0]]
            if flags & PRIORITY_FLAG:
                payload = payload[5:]
            if not flags & END_HEADERS:
                self._headers_pending = (sid, flags, [payload])
                return
            block, end_stream = payload, flags & END_STREAM
        else:
            pending = self._headers_pending
            if pending is None or pending[0] != sid:
                raise ConnectionFailed("unexpected CONTINUATION frame")
            pending[2].append(payload)
            if not flags & END_HEADERS:
                return
            self._headers_pending = None
            block, end_stream = b"".join(pending[2]), pending[1] & END_STREAM
        headers = self.decoder.decode(block)  # always, to keep the table in step
        stream = self.streams.get(sid)
        if stream is None:
            return
        if not stream.headers_seen:
            stream.headers_seen = True
            for name, value in headers:
                if name == ":status":
                    stream.http_status = int(value) if value.isascii() and value.isdigit() else 0
                elif name == "content-type":
                    stream.content_type = value
            if stream.http_status != 200:
                code = _HTTP_TO_GRPC.get(stream.http_status, UNKNOWN)
                self._finish(sid, code, f"Received http2 header with status: {stream.http_status}")
                return
            if not end_stream:
                return
        elif not end_stream:
            raise ConnectionFailed("trailers without END_STREAM")
        self._trailers(stream, headers)

    def _trailers(self, stream: _Stream, headers: tuple[tuple[str, str], ...]) -> None:
        code, message = None, ""
        for name, value in headers:
            if name == "grpc-status":
                code = int(value) if value.isascii() and value.isdigit() else UNKNOWN
            elif name == "grpc-message":
                message = unquote(value)
        if code is None:
            self._finish(stream.id, UNKNOWN, "no grpc-status in the answer")
            return
        if code != OK:
            self._finish(stream.id, code, message)
            return
        if not stream.content_type.startswith("application/grpc"):
            self._finish(stream.id, UNKNOWN, f"invalid content-type {stream.content_type[:60]!r}")
            return
        data = stream.parts[0] if len(stream.parts) == 1 else b"".join(stream.parts)
        if len(data) < 5:
            self._finish(stream.id, INTERNAL, "answer without a complete gRPC message")
            return
        compressed, size = _GRPC_PREFIX.unpack_from(data)
        if compressed:
            self._finish(stream.id, INTERNAL, "compressed gRPC messages are not supported")
        elif size > self.max_message_bytes:
            self._finish(stream.id, RESOURCE_EXHAUSTED,
                         f"received message larger than max ({size} vs. {self.max_message_bytes})")
        elif size != len(data) - 5:
            self._finish(stream.id, INTERNAL, "a unary answer must hold exactly one gRPC message")
        else:
            self._finish(stream.id, OK, "", data[5:])

    def _on_settings(self, flags: int, payload: bytes) -> None:
        if flags & ACK:
            return
        for i in range(0, len(payload) - 5, 6):
            key, value = struct.unpack_from(">HI", payload, i)
            if key == S_INITIAL_WINDOW_SIZE:
                delta = value - self.peer_initial_window
                self.peer_initial_window = value
                for stream in self.streams.values():
                    stream.send_window += delta
            elif key == S_MAX_FRAME_SIZE:
                self.peer_max_frame = value
            elif key == S_MAX_CONCURRENT_STREAMS:
                self.peer_max_streams = value
        self.send(frame(SETTINGS, ACK, 0))
        self._wake_window_waiters()

    def _on_window_update(self, sid: int, payload: bytes) -> None:
        increment = struct.unpack(">I", payload)[0] & 0x7FFFFFFF
        if sid == 0:
            self.send_window += increment
        else:
            stream = self.streams.get(sid)
            if stream is None:
                return
            stream.send_window += increment
        self._wake_window_waiters()

    def _wake_window_waiters(self) -> None:
        waiters, self._window_waiters = self._window_waiters, []
        for g in waiters:
            self.hub.loop.run_callback(g.switch)

    def _on_goaway(self, payload: bytes) -> None:
        last_id, code = struct.unpack_from(">II", payload)
        last_id &= 0x7FFFFFFF
        self.usable = False
        self.error = f"server closed the connection (GOAWAY code {code})"
        for sid in [s for s in self.streams if s > last_id]:
            self._finish(sid, UNAVAILABLE, self.error)
        if not self.streams:
            raise ConnectionFailed(self.error)

    def _finish(self, sid: int, code: int, message: str, data: bytes = b"") -> None:
        stream = self.streams.pop(sid, None)
        if stream is None:
            return
        stream.result = (code, message, data)
        stream.received_at = self.rx_at
        self.hub.loop.run_callback(stream.waiter.switch, None)

    def fail(self, reason: str, code: int = UNAVAILABLE) -> None:
        """The connection is gone: every open stream ends with ``code``."""
        self.rx_at = None  # they end now, not when something was last read
        self.usable = False
        self.error = self.error or reason
        for sid in list(self.streams):
            self._finish(sid, code, reason)
        self._wake_window_waiters()
        reader = getattr(self, "reader", None)
        if reader is None or reader.dead or getcurrent() is reader:
            self.close_socket()
        else:
            reader.kill(block=False)  # it closes the socket on its way out

    def close_socket(self) -> None:
        if self.plain:
            self._read.close()
            self._write.close()
        try:
            self.sock.close()
        except OSError:
            pass

    def close(self) -> None:
        self.fail("client closed", CANCELLED)


class H2Client:
    """Unary gRPC calls to one authority over ``channels`` HTTP/2 connections (round robin)."""

    def __init__(self, host: str, port: int, authority: str, ssl_context: Any | None, metadata: bytes,
                 timeout_s: float, connect_timeout_s: float, channels: int, max_message_bytes: int,
                 user_agent: str) -> None:
        self.host, self.port = host, port
        self.ssl_context = ssl_context
        self.timeout_s = timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.max_message_bytes = max_message_bytes
        self.hub = get_hub()
        self._conns: list[H2Connection | None] = [None] * max(1, channels)
        self._timers: list[Any] = []  # deadline timers for reuse (one per concurrent call)
        self._next = 0
        self._connecting = Semaphore()
        self.closed = False
        scheme = b"\x87" if ssl_context is not None else b"\x86"  # :scheme https / http
        self._common = (
            hpack.encode_literal(":authority", authority)
            + b"\x83" + scheme  # :method POST
        )
        self._tail = (
            hpack.encode_literal("content-type", "application/grpc")
            + hpack.encode_literal("te", "trailers")
            + hpack.encode_literal("user-agent", user_agent)
            + hpack.encode_literal("grpc-timeout", grpc_timeout(timeout_s))
            + metadata
        )
        self._blocks: dict[str, bytes] = {}

    def header_block(self, path: str) -> bytes:
        """The constant part of a call's header block (``x-request-id`` goes after it)."""
        block = self._blocks.get(path)
        if block is None:
            block = self._blocks[path] = self._common + hpack.encode_literal(":path", path) + self._tail
        return block

    def _connect(self) -> H2Connection:
        try:
            sock = socket.create_connection((self.host, self.port), timeout=self.connect_timeout_s)
        except TimeoutError:
            raise ConnectionFailed(f"connect timed out after {self.connect_timeout_s:g} s") from None
        except ConnectionRefusedError:
            raise ConnectionFailed("connection refused") from None
        except socket.gaierror as exc:
            raise ConnectionFailed(f"cannot resolve host name ({exc.strerror or exc})") from None
        except OSError as exc:
            raise ConnectionFailed(exc.strerror or str(exc)) from None
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.ssl_context is not None:
                try:
                    sock = self.ssl_context.wrap_socket(sock, server_hostname=self.host)
                except OSError as exc:
                    raise ConnectionFailed(f"TLS handshake failed: {exc}") from None
                if sock.selected_alpn_protocol() != "h2":
                    raise ConnectionFailed("the server does not speak HTTP/2 over TLS (ALPN h2)")
                sock.settimeout(None)
                return H2Connection(sock, False, self.hub, self.max_message_bytes)
            raw = _socket.socket(sock.family, sock.type, sock.proto, sock.detach())
            return H2Connection(raw, True, self.hub, self.max_message_bytes)
        except BaseException:
            sock.close()
            raise

    def _connection(self) -> H2Connection:
        i = self._next
        self._next = (i + 1) % len(self._conns)
        conn = self._conns[i]
        if conn is not None and conn.usable and len(conn.streams) < conn.peer_max_streams:
            return conn
        with self._connecting:  # one connect at a time; others reuse what it made
            conn = self._conns[i]
            if conn is None or not conn.usable:
                if conn is not None:
                    conn.close()
                conn = self._conns[i] = self._connect()
        while len(conn.streams) >= conn.peer_max_streams and conn.usable:
            gevent.sleep(0.001)  # the server's stream limit: wait for a slot
        return conn

    def call(self, header_block: bytes, message: bytes, timeout_s: float | None = None) -> Result:
        """One unary call; ``header_block`` is ``header_block(path)`` plus per-call fields;
        ``timeout_s`` (default the client's) bounds the whole call."""
        return self.call_at(header_block, message, timeout_s)[0]

    def call_at(self, header_block: bytes, message: bytes,
                timeout_s: float | None = None) -> tuple[Result, float | None]:
        """``call``, and when the answer's last bytes arrived (the kernel's receive stamp on
        ``perf_counter``'s clock; None where unknown: TLS, a timeout, no connection)."""
        if self.closed:
            return (CANCELLED, "client closed", b""), None
        try:
            conn = self._connection()
        except ConnectionFailed as exc:
            return (UNAVAILABLE, str(exc), b""), None
        if self.closed:
            return (CANCELLED, "client closed", b""), None
        waiter = Waiter(self.hub)
        stream = conn.open_stream(waiter)
        own = timeout_s is not None and timeout_s != self.timeout_s
        timers = [] if own else self._timers
        if timers:
            timer = timers.pop()
        else:  # repeat = after, armed with again(): see rest._PlainConn (start() re-arms with what was left)
            after = timeout_s if own else self.timeout_s
            timer = self.hub.loop.timer(after, after)
        timer.again(self._expire, conn, stream)
        try:
            try:
                conn.send_request(stream, header_block, message)
            except OSError as exc:
                conn.fail(exc.strerror or str(exc))
            if stream.result is None:
                waiter.get()
        except BaseException:
            conn.cancel_stream(stream)
            raise
        finally:
            timer.stop()
            if own:
                timer.close()
            else:
                timers.append(timer)
        return stream.result, stream.received_at

    def _expire(self, conn: H2Connection, stream: _Stream) -> None:
        if stream.result is None:
            conn.cancel_stream(stream)
            stream.result = (DEADLINE_EXCEEDED, "Deadline Exceeded", b"")
            stream.waiter.switch(None)

    def close(self) -> None:
        self.closed = True
        for conn in self._conns:
            if conn is not None:
                conn.close()
