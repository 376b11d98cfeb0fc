"""One HTTP/1.1 keep-alive connection and reading one answer from it.

``read_answer`` takes the response head from ``head.parse_head`` and reads the body as the
head frames it. Per answer that fits the connection's buffer it makes one ``recv_into`` and
one ``bytes`` copy; larger, chunked and close-delimited bodies take slower paths that check
the request's deadline at every read (data that keeps coming never makes a read wait, so a
timer alone would never fire) and stop at the size limit (``--max-response-bytes``).
"""

from __future__ import annotations

import _socket
import errno
from time import perf_counter
from typing import Any, Protocol

from greenlet import getcurrent

from seldon_load.transport.head import (
    CHUNKED,
    NEED_MORE,
    ChunkedReader,
    Head,
    HTTPProtocolError,
    TooLarge,
    parse_head,
)
from seldon_load.transport.rxstamp import ANC_BYTES, enable_rx_stamps, rx_stamp
from seldon_load.transport.sendall import finish_send

BUFFER_BYTES = 64 * 1024  # per connection, reused for every answer that fits


class ConnectionClosed(ConnectionResetError):
    """The server closed the connection before a complete answer."""

    def __init__(self, before_answer: bool) -> None:
        super().__init__(errno.ECONNRESET, "connection closed by the server")
        self.before_answer = before_answer


class NeedMoreData(Exception):
    """An inline answer is not complete yet: read on when the socket is readable again."""


class AnswerParking(Protocol):
    """What the REST client's connections and inline path need from the reader of answers
    at the load loop's wake-ups (``load.batcher.ReadBatcher``; its engine side is
    ``load.inline``)."""

    active: bool  # an engine runs and will tick
    direct: bool  # wake-ups read a few inline sockets without checking the others
    inline: dict[int, tuple[Any, Any, Any]]  # fd -> (client, conn, token) of each inline request

    def watch(self, fd: int, owner: Any = None) -> None: ...

    def forget(self, fd: int) -> None: ...

    def parking(self) -> bool: ...

    def park(self, fd: int) -> bool: ...

    def hand_over(self, token: Any, fn: Any, *args: Any) -> None: ...


class Conn:
    """One kept-alive connection and its receive buffer; I/O through gevent's socket (TLS)."""

    __slots__ = ("sock", "buf", "view", "used", "rx_at", "deadline")

    def __init__(self, sock: Any) -> None:
        self.sock = sock
        self.buf = bytearray(BUFFER_BYTES)
        self.view = memoryview(self.buf)
        self.used = False  # has answered a request before (a stale keep-alive may be retried)
        self.rx_at: float | None = None  # the kernel's receive time of the last bytes read
        self.deadline = 0.0  # perf_counter time the current request must be answered by

    def sendall(self, data: bytes) -> None:
        self.sock.sendall(data)

    def recv_into(self, view: memoryview) -> int:
        return self.sock.recv_into(view)

    def close(self) -> None:
        self.sock.close()


class PlainConn(Conn):
    """A cleartext connection driven directly: a non-blocking OS socket, one read and one
    write watcher made once, so a wait costs no allocation and the first read after a request
    waits for readability instead of failing with EAGAIN. Received data carries the kernel's
    receive time (``rx_at``); with a ``ReadBatcher`` the wait for an answer is parked until
    the load loop's next wake-up (``AnswerParking``)."""

    __slots__ = ("_hub", "_read", "_write", "_timeout", "_sent", "fd", "_batcher", "_stamps",
                 "nowait", "have", "idle_since")

    def __init__(self, sock: Any, hub: Any, timeout_s: float, batcher: AnswerParking | None = None,
                 owner: Any = None) -> None:
        super().__init__(sock)
        loop = hub.loop
        self._hub = hub
        self.fd = fd = sock.fileno()
        self._read = loop.io(fd, 1)
        self._write = loop.io(fd, 2)
        self._timeout = timeout_s
        self._sent = False
        self.nowait = False  # read by the load loop: never wait, raise NeedMoreData instead
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
            finish_send(sock, data, sent, self._wait, self._write)
        self._sent = True

    def recv_into(self, view: memoryview) -> int:
        if self.nowait:
            raise NeedMoreData()
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


def read_answer(conn: Conn, have: int, limit: int) -> Head:
    """One response from ``conn`` (no pipelining: nothing else is in flight on it), whose
    first ``have`` bytes are already in its buffer; the body at most ``limit`` bytes."""
    buf, view = conn.buf, conn.view
    recv_into = conn.recv_into
    while True:
        answer = parse_head(buf, have) if have else NEED_MORE
        if answer is not NEED_MORE:
            break
        if have >= BUFFER_BYTES:
            raise HTTPProtocolError(f"response head larger than {BUFFER_BYTES} bytes")
        n = recv_into(view[have:])
        if n == 0:
            raise ConnectionClosed(before_answer=have == 0)
        have += n
    length = answer.length  # type: ignore[union-attr]
    start = answer.start  # type: ignore[union-attr]
    if length >= 0:
        if length > limit:
            raise TooLarge(limit)
        need = start + length
        if need <= BUFFER_BYTES:
            while have < need:
                n = recv_into(view[have:need])
                if n == 0:
                    raise ConnectionClosed(before_answer=False)
                have += n
            if have > need:
                answer.keep_alive = False  # type: ignore[union-attr]  # bytes after the answer: out of step
            answer.body = bytes(view[start:need])  # type: ignore[union-attr]
            return answer  # type: ignore[return-value]
        answer.body = _read_sized(conn, view[start:have], length)  # type: ignore[union-attr]
    elif length == CHUNKED:
        answer.body = _read_chunked(conn, view[start:have], limit)  # type: ignore[union-attr]
    else:
        answer.body = _read_to_close(conn, view[start:have], limit)  # type: ignore[union-attr]
    return answer  # type: ignore[return-value]


def _check_deadline(conn: Conn) -> None:
    if perf_counter() > conn.deadline:
        raise TimeoutError("timed out")


def _read_sized(conn: Conn, first: memoryview, length: int) -> bytes:
    big = bytearray(length)
    got = min(len(first), length)
    big[:got] = first[:got]
    big_view = memoryview(big)
    while got < length:
        _check_deadline(conn)
        n = conn.recv_into(big_view[got:])
        if n == 0:
            raise ConnectionClosed(before_answer=False)
        got += n
    return bytes(big)


def _read_chunked(conn: Conn, first: memoryview, limit: int) -> bytes:
    reader = ChunkedReader(limit)
    if reader.feed(first):
        return reader.body()
    view = conn.view  # the head is parsed and copied: the buffer is free for what follows
    while True:
        _check_deadline(conn)
        n = conn.recv_into(view)
        if n == 0:
            raise ConnectionClosed(before_answer=False)
        if reader.feed(view[:n]):
            return reader.body()


def _read_to_close(conn: Conn, first: memoryview, limit: int) -> bytes:
    parts = [bytes(first)]
    size = len(first)
    view = conn.view
    while True:
        if size > limit:
            raise TooLarge(limit)
        _check_deadline(conn)
        n = conn.recv_into(view)
        if n == 0:
            return b"".join(parts)
        parts.append(bytes(view[:n]))
        size += n
