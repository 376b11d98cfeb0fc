"""The REST client's keep-alive pool: a LIFO of idle connections, at most ``size`` open.

LIFO keeps the few most recently used connections warm (and lets the rest idle out on the
server). There is no liveness probe on the common path: a connection the server may have
closed while idle is checked with a non-blocking peek only after it has answered before
(``used``), and a request once written is never sent again (the server may have run it).
Callers beyond ``size`` wait for a connection to come back, or for a slot when one is dropped.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from time import perf_counter

import gevent
from gevent.hub import Waiter, get_hub

from seldon_load.transport.h1conn import Conn, PlainConn


class PoolClosed(Exception):
    """The client was closed while a call waited for a connection."""


class Pool:
    """Idle connections and the count of open ones; ``connect`` opens a new one."""

    def __init__(self, size: int, connect: Callable[[], Conn]) -> None:
        self.size = max(1, size)
        self.idle: list[Conn] = []
        self.open = 0
        self.waiters: deque[Waiter] = deque()
        self.closed = False
        self._connect = connect

    def acquire(self) -> Conn | None:
        """An idle connection, a new one while the pool has room, else wait for one.
        None when the pool was closed meanwhile."""
        while True:
            if self.idle:
                conn = self.idle.pop()
                if conn.used and conn.__class__ is PlainConn and conn.closed_by_peer():  # type: ignore[attr-defined]
                    self.drop(conn)  # the server's idle timeout closed it: never write a request to it
                    continue
                return conn
            if self.open < self.size:
                self.open += 1
                try:
                    return self._connect()
                except BaseException:
                    self.open -= 1
                    self._wake_one()
                    raise
            waiter = Waiter()
            self.waiters.append(waiter)
            try:
                conn = waiter.get()
            finally:
                if waiter in self.waiters:
                    self.waiters.remove(waiter)
            if conn is not None or self.closed:
                return conn
            # a slot was freed (a connection dropped): loop and open one

    def release(self, conn: Conn) -> None:
        """A connection that answered and can be reused."""
        if self.closed:
            conn.close()
            self.open -= 1
            return
        conn.used = True
        if conn.__class__ is PlainConn:
            conn.idle_since = perf_counter()  # type: ignore[attr-defined]
        if self.waiters:
            get_hub().loop.run_callback(self.waiters.popleft().switch, conn)
        else:
            self.idle.append(conn)

    def drop(self, conn: Conn) -> None:
        """Close a connection that must not be reused."""
        conn.close()
        self.open -= 1
        self._wake_one()

    def settle(self, conn: Conn, keep_alive: bool) -> None:
        if keep_alive:
            self.release(conn)
        else:
            self.drop(conn)

    def _wake_one(self) -> None:
        if self.waiters:
            get_hub().loop.run_callback(self.waiters.popleft().switch, None)

    def close(self) -> None:
        self.closed = True
        idle = self.idle[:]
        self.idle.clear()
        for conn in idle:
            conn.close()
            self.open -= 1
        while self.waiters:
            waiter = self.waiters.popleft()
            try:
                get_hub().loop.run_callback(waiter.switch, None)
            except gevent.hub.LoopExit:  # pragma: no cover - no loop left to wake anyone
                break
