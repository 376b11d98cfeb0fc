"""The REST client's inline path: a request sent from the load loop's own greenlet.

The open-loop engine sends on an idle kept-alive connection without a greenlet of its own
(``start``); the answer is read at the loop's next wake-up by the ReadBatcher (``poll``),
or, when the loop's next wake-up is far, in a request greenlet (``finish``). The contract
with the engine is ``seldon_load.load.inline``; this mixin is part of ``RestClient``
(it uses the client's pool, limits and outcome mapping) and is kept flat on purpose: it
runs once per request.
"""

from __future__ import annotations

from time import perf_counter
from typing import TYPE_CHECKING, Any

from seldon_load.oip.types import EncodedRequest
from seldon_load.transport.h1conn import BUFFER_BYTES, ConnectionClosed, NeedMoreData, PlainConn, read_answer
from seldon_load.transport.head import HTTPProtocolError
from seldon_load.transport.outcome import Outcome
from seldon_load.transport.rxstamp import ANC_BYTES, rx_stamp

if TYPE_CHECKING:
    from seldon_load.transport.rest import RestClient

# an inline send first checks a connection idle longer than this for a close by the server (an
# idle timeout); shorter idles are checked by the batcher's epoll_wait unless it reads directly
PEEK_AFTER_S = 0.05


class InlineCalls:
    """``start`` / ``poll`` / ``finish`` / ``timed_out`` / ``stale`` of ``RestClient``."""

    def start(self: RestClient, req: EncodedRequest, token: Any) -> bool:
        """Send ``req`` now from the caller's greenlet (the open-loop engine) on an idle
        kept-alive connection, without waiting: the answer is read by the ReadBatcher's
        ``tick``, which reports ``(token, outcome)`` to its ``on_done``. False when this
        path does not apply (no batcher running, no idle cleartext connection, a large
        body); nothing was sent then and the caller uses ``infer``."""
        batcher, idle = self._batcher, self._idle
        if batcher is None or not batcher.active or not idle or self._closed:
            return False
        conn = idle[-1]
        if conn.__class__ is not PlainConn:
            return False
        entry = self._prebuilt.get(id(req))
        if entry is None or entry[0] is not req:
            entry = self._prebuild(req)
        if entry[2] is not None:
            return False
        idle.pop()
        if conn.idle_since and perf_counter() - conn.idle_since > PEEK_AFTER_S and conn.closed_by_peer():
            self._drop(conn)
            return False
        data = b"%s%x%s" % (self._infer_start, self._counter(), entry[1])
        conn.rx_at = None
        conn.have = 0
        conn.deadline = token.sent + self.timeout_s  # a hand-over to a greenlet keeps it
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

    def poll(self: RestClient, conn: PlainConn) -> Outcome | None:
        """Read on after ``start`` (its socket is readable); the outcome once the answer is
        complete, None while it is not (an answer larger than the connection's buffer goes
        on in a greenlet: ``finish``)."""
        have = conn.have
        if have >= BUFFER_BYTES:
            return self._hand_over(conn)
        try:
            n, anc, _flags, _addr = conn.sock.recvmsg_into((conn.view[have:],), ANC_BYTES)
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
            return self._failure(ConnectionClosed(before_answer=have == 0))
        conn.have = have = have + n
        conn.nowait = True
        try:
            answer = read_answer(conn, have, self.max_response_bytes)
        except NeedMoreData:
            return self._hand_over(conn) if have >= BUFFER_BYTES else None
        except (OSError, HTTPProtocolError) as exc:
            self._drop(conn)
            return self._failure(exc)
        finally:
            conn.nowait = False
        answer.received_at = received = conn.rx_at
        if answer.keep_alive and not self._pool.waiters and not self._closed:
            conn.used = True
            conn.idle_since = received or perf_counter()
            self._idle.append(conn)
        else:
            self._pool.settle(conn, answer.keep_alive)
        return self._outcome(answer)

    def _hand_over(self: RestClient, conn: PlainConn) -> None:
        """The answer fills the buffer: read the rest in a request greenlet."""
        entry = self._batcher.inline.pop(conn.fd, None)
        if entry is not None:
            self._batcher.hand_over(entry[2], self.finish, conn)
        return None

    def _unannounced_close(self: RestClient, conn: PlainConn) -> None:
        """A reused connection ended before any byte of its answer: the server closed it while
        idle without saying so (no ``Connection: close``), so before each reuse every wake-up
        must look for such closes again (``ReadBatcher.direct``)."""
        if conn.used and conn.have == 0 and self._batcher is not None:
            self._batcher.direct = False

    def finish(self: RestClient, conn: PlainConn) -> Outcome:
        """Wait for the rest of an inline request's answer in a greenlet of its own."""
        conn._sent = conn.have == 0
        try:
            answer = read_answer(conn, conn.have, self.max_response_bytes)
            answer.received_at = conn.rx_at
        except (OSError, HTTPProtocolError) as exc:
            if isinstance(exc, ConnectionResetError) and getattr(exc, "before_answer", conn.have == 0):
                self._unannounced_close(conn)
            self._drop(conn)
            return self._failure(exc)
        except BaseException:
            self._drop(conn)
            raise
        self._pool.settle(conn, answer.keep_alive)
        return self._outcome(answer)

    def _finish_send(self: RestClient, conn: PlainConn, rest: bytes) -> Outcome:
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

    def timed_out(self: RestClient, conn: PlainConn) -> Outcome:
        """An inline request's answer did not come within ``timeout_s``."""
        self._drop(conn)
        return self._failure(TimeoutError())

    def stale(self: RestClient, fd: int) -> None:
        """The socket of ``fd`` is readable: if it is an idle pooled connection, the server
        closed it (or spoke out of turn): drop it before a request is written to it."""
        for conn in self._idle:
            if conn.__class__ is PlainConn and conn.fd == fd:
                self._idle.remove(conn)
                self._drop(conn)
                return
