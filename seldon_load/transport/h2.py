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
* one reader greenlet per connection feeds what it reads to the socket-free frame handler
  (``transport.h2frames``: frames, windows, settings, header blocks, trailers);
* a finished stream wakes its caller with one loop callback.

Calls never raise for server or network faults: they return ``(code, message, payload)``
with a gRPC status code (``grpc_status``: ``UNAVAILABLE`` when the connection fails,
``DEADLINE_EXCEEDED`` when ``timeout_s`` passes, ``CANCELLED`` when the client is closed,
``TOO_LARGE`` past ``max_message_bytes``).
"""

from __future__ import annotations

import struct
from typing import Any

import gevent
from gevent import socket
from gevent.hub import Waiter, get_hub
from gevent.lock import Semaphore
from greenlet import getcurrent

from seldon_load.transport import hpack
from seldon_load.transport.connect import ConnectTimeout, open_socket
from seldon_load.transport.grpc_status import CANCELLED, DEADLINE_EXCEEDED, UNAVAILABLE
from seldon_load.transport.h2frames import (
    CONTINUATION,
    DATA,
    DEFAULT_WINDOW,
    END_HEADERS,
    END_STREAM,
    FRAME,
    GRPC_PREFIX,
    HEADERS,
    MAX_WINDOW,
    PREFACE,
    S_ENABLE_PUSH,
    S_HEADER_TABLE_SIZE,
    S_INITIAL_WINDOW_SIZE,
    SETTINGS,
    WINDOW_UPDATE,
    ConnectionFailed,
    FrameHandler,
    Result,
    Stream,
    frame,
)
from seldon_load.transport.rxstamp import ANC_BYTES, enable_rx_stamps, rx_stamp
from seldon_load.transport.sendall import finish_send

_RECV_BYTES = 256 * 1024


def grpc_timeout(timeout_s: float) -> str:
    """The ``grpc-timeout`` header value: at most 8 digits and a unit."""
    ms = max(1, int(timeout_s * 1000))
    return f"{ms}m" if ms < 10**8 else f"{min(int(timeout_s), 10**8 - 1)}S"


class H2Connection(FrameHandler):
    """One HTTP/2 connection: many concurrent streams, one reader greenlet."""

    def __init__(self, sock: Any, plain: bool, hub: Any, max_message_bytes: int) -> None:
        super().__init__(max_message_bytes)
        self.sock = sock
        self.plain = plain
        self.hub = hub
        self._lock = Semaphore()
        self._window_waiters: list[Any] = []
        # cleartext reads carry the kernel's receive stamp: a stream's end is timed when its last
        # bytes arrived, not when this reader's greenlet got round to them (as REST answers are)
        self.stamped = plain and enable_rx_stamps(sock)
        if plain:
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
                finish_send(sock, data, sent, self._wait, self._write)

    def _wait(self, watcher: Any) -> None:
        watcher.start(getcurrent().switch)
        try:
            self.hub.switch()
        finally:
            watcher.stop()

    def send_request(self, stream: Stream, header_block: bytes, message: bytes) -> None:
        """HEADERS and the gRPC message in DATA frames, within the peer's flow-control windows."""
        size = len(message) + 5
        sid = stream.id
        if (size <= self.send_window and size <= stream.send_window and size <= self.peer_max_frame
                and len(header_block) <= self.peer_max_frame):
            self.send_window -= size
            stream.send_window -= size
            self.send(FRAME.pack(len(header_block) >> 16, len(header_block) & 0xFFFF, HEADERS, END_HEADERS, sid)
                      + header_block
                      + FRAME.pack(size >> 16, size & 0xFFFF, DATA, END_STREAM, sid)
                      + GRPC_PREFIX.pack(0, len(message)) + message)
            return
        step = self.peer_max_frame
        chunks = [header_block[i : i + step] for i in range(0, len(header_block), step)] or [b""]
        self.send(b"".join(
            frame(HEADERS if i == 0 else CONTINUATION, END_HEADERS if i == len(chunks) - 1 else 0, sid, chunk)
            for i, chunk in enumerate(chunks)))
        body = memoryview(GRPC_PREFIX.pack(0, len(message)) + message)
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
        n = 0
        try:
            while True:
                n = self._recv_into(view, 0 < n < _RECV_BYTES)
                if n == 0:
                    raise ConnectionFailed("connection closed by the server")
                self.feed(bytes(view[:n]))
        except (OSError, ConnectionFailed, hpack.HPACKError, struct.error) as exc:
            self.fail(str(exc) or type(exc).__name__)
        except gevent.GreenletExit:
            self.fail("client closed", CANCELLED)

    def _wake_window_waiters(self) -> None:
        waiters, self._window_waiters = self._window_waiters, []
        for g in waiters:
            self.hub.loop.run_callback(g.switch)

    def _finish(self, sid: int, code: int, message: str, data: bytes = b"") -> Any:
        stream = super()._finish(sid, code, message, data)
        if stream is not None:
            self.hub.loop.run_callback(stream.waiter.switch, None)
        return stream

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
            sock, plain = open_socket(self.host, self.port, self.connect_timeout_s, self.ssl_context)
        except ConnectTimeout as exc:
            raise ConnectionFailed(str(exc)) from None
        except ConnectionRefusedError:
            raise ConnectionFailed("connection refused") from None
        except socket.gaierror as exc:
            raise ConnectionFailed(f"cannot resolve host name ({exc.strerror or exc})") from None
        except OSError as exc:
            if self.ssl_context is not None:
                raise ConnectionFailed(f"TLS handshake failed: {exc}") from None
            raise ConnectionFailed(exc.strerror or str(exc)) from None
        try:
            if not plain and sock.selected_alpn_protocol() != "h2":
                raise ConnectionFailed("the server does not speak HTTP/2 over TLS (ALPN h2)")
            return H2Connection(sock, plain, self.hub, self.max_message_bytes)
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

    def _expire(self, conn: H2Connection, stream: Stream) -> None:
        if stream.result is None:
            conn.cancel_stream(stream)
            stream.result = (DEADLINE_EXCEEDED, "Deadline Exceeded", b"")
            stream.waiter.switch(None)

    def close(self) -> None:
        self.closed = True
        for conn in self._conns:
            if conn is not None:
                conn.close()
