"""Answers picked up at the load loop's next wake-up instead of waking the process for each.

At a few hundred requests a second a generator process sleeps between arrivals, and each
wake-up costs more CPU than the Python work of a request (here 50-60 µs: epoll, the VM's
idle exit, cold caches; docs/performance.md). Waking once for an arrival and once more for
its answer doubles that. An answer read later is still timed exactly: the kernel stamps
every received segment (``SO_TIMESTAMPNS``, see ``transport.rxstamp``) and the request's
*done* time is that stamp, not the moment Python read it. The engine's side of the contract
is ``load.inline`` (``AnswerReader``, ``InlineClient``); the transport's side is
``transport.h1conn.AnswerParking``.

So a reader whose answer is not there yet parks here instead of arming its own read
watcher, and the open-loop engine calls ``tick`` each time it is about to sleep: the parked
readers whose sockets have data (one ``epoll_wait(0)`` on a private, level-triggered epoll
set holding every connection) are resumed in the same wake-up. When no reader is parked and
at most ``DIRECT_MAX`` requests sent inline are out (a few hundred requests a second), the
wake-up reads those sockets directly instead, one system call per wake-up fewer (the
wake-up's check went from 14 to 8 µs of thread CPU at 400 RPS). Its other use, finding idle connections the server closed, is then left to
the client's check before it reuses one (``RestClient.start``), and a client that meets a
close the server did not announce turns direct reads off (``direct``). Parking happens only while
the engine's next wake-up is near (``horizon_s``); otherwise, and when the engine stops, the
readers arm their own watchers. A parked reader keeps its own timeout timer, so the
transport's timeouts hold exactly as before.
"""

from __future__ import annotations

import select
from collections.abc import Callable
from time import perf_counter
from typing import Any

from gevent.monkey import get_original
from greenlet import getcurrent

from seldon_load.load.inline import InlineClient, InlineToken
from seldon_load.transport.outcome import Outcome

_epoll = get_original("select", "epoll")  # gevent's patching hides it; this set is never waited on

HORIZON_S = 0.010  # park only when the engine wakes again within this
DIRECT_MAX = 1  # inline requests out that a wake-up reads directly, without the epoll_wait


class ReadBatcher:
    """Answers of one process read from the engine's wake-ups (see the module doc).

    Two kinds of waiter: a *parked* reader (a greenlet inside a blocking call, resumed with
    True to read on, or False to wait on its own watcher), and an *inline* request that the
    engine sent from its own greenlet (``RestClient.start``); the latter's answer is read
    here and reported to ``on_done(token, outcome, now)``. When inline requests cannot be served
    from ticks any more (the engine stops, its next wake-up is far), each is handed to
    ``on_handoff(token, fn, *args)``, which runs ``fn(*args) -> Outcome`` in a greenlet."""

    def __init__(self, hub: Any, horizon_s: float = HORIZON_S) -> None:
        self._hub = hub
        self._run = hub.loop.run_callback
        self._epoll = _epoll()
        self._owners: dict[int, InlineClient] = {}  # fd -> client, for every open connection
        self._parked: dict[int, Any] = {}  # fd -> greenlet
        # fd -> (client, conn, token) of an inline request; the client stores it when it sends,
        # and the connection's ``deadline`` is the request's
        self.inline: dict[int, tuple[InlineClient, Any, InlineToken]] = {}
        self.horizon_s = horizon_s
        self._next_wake = 0.0
        self._ready: Any = ()  # fds to read at the next tick (readable, or inline when read directly)
        self.active = False
        # read a few inline requests' sockets without the epoll_wait; False once a server closed
        # a kept-alive connection without saying so (the epoll_wait finds those before reuse)
        self.direct = True
        self.on_done: Callable[[InlineToken, Outcome, float], None] | None = None
        self.on_handoff: Callable[..., None] | None = None

    def watch(self, fd: int, owner: InlineClient | None = None) -> None:
        """A new connection: its socket joins the private set for as long as it is open."""
        try:
            self._epoll.register(fd, select.EPOLLIN)
        except (OSError, ValueError):
            return
        self._owners[fd] = owner

    def forget(self, fd: int) -> None:
        """Before the connection's socket is closed."""
        self._parked.pop(fd, None)
        self._owners.pop(fd, None)
        try:
            self._epoll.unregister(fd)
        except (OSError, ValueError):
            pass

    @property
    def idle_waiters(self) -> bool:
        """No reader is parked (nothing but inline requests wait on ticks)."""
        return not self._parked

    def parking(self) -> bool:
        """Whether a reader should park now: the engine runs and wakes again soon."""
        return self.active and self._next_wake - perf_counter() <= self.horizon_s

    def park(self, fd: int) -> bool:
        """Wait for ``fd`` to be readable, resumed by a later ``tick``. Returns True when data
        is there, False when the caller must wait on its own watcher instead (the engine's
        next wake-up became too far away, or the engine stopped)."""
        self._parked[fd] = getcurrent()
        try:
            return self._hub.switch()
        finally:
            self._parked.pop(fd, None)

    def hand_over(self, token: InlineToken, fn: Callable[..., Outcome], *args: Any) -> None:
        """An inline request that must finish in a greenlet of its own."""
        self.on_handoff(token, fn, *args)

    def tick(self, next_wake: float) -> None:
        """The engine is about to sleep until ``next_wake``: read the answers ``collect``
        found at its wake-up, resume the parked readers whose data came; if the next wake-up
        is far, hand the rest to their own watchers."""
        self._next_wake = next_wake
        parked, inline = self._parked, self.inline
        ready, self._ready = self._ready, ()
        if parked or inline:
            for fd in ready:
                entry = inline.get(fd)
                if entry is not None:
                    out = entry[0].poll(entry[1])
                    if out is not None:
                        del inline[fd]
                        self.on_done(entry[2], out, perf_counter())
                    continue
                g = parked.pop(fd, None)
                if g is not None:
                    self._run(g.switch, True)
            now = perf_counter()
            if inline and inline[next(iter(inline))][1].deadline <= now:  # the oldest (dicts keep insertion order)
                self._expire(inline, now)
            if (parked or inline) and next_wake - now > self.horizon_s:
                self.release()

    def collect(self) -> None:
        """The engine woke up: note which sockets are readable (read by the next ``tick``,
        after this wake-up's sends) and drop idle connections the server closed meanwhile,
        before a request is written to one. With only a few inline requests out, note just
        their sockets (read directly; one whose answer is not there yet stays out)."""
        inline, parked = self.inline, self._parked
        if self.direct and not parked and len(inline) <= DIRECT_MAX:
            self._ready = list(inline)
            return
        ready = self._epoll.poll(0)
        self._ready = [fd for fd, _events in ready]
        for fd, _events in ready:
            if fd not in inline and fd not in parked:
                owner = self._owners.get(fd)
                if owner is not None:
                    owner.stale(fd)

    def _expire(self, inline: dict, now: float) -> None:
        while inline:
            fd = next(iter(inline))  # the oldest (dicts keep insertion order)
            client, conn, token = inline[fd]
            if conn.deadline > now:
                return
            del inline[fd]
            self.on_done(token, client.timed_out(conn), now)

    def release(self) -> None:
        """Every parked reader goes back to its own watcher; every inline request is handed
        over to a greenlet of its own."""
        run = self._run
        parked, self._parked = self._parked, {}
        for g in parked.values():
            run(g.switch, False)
        inline, self.inline = self.inline, {}
        for client, conn, token in inline.values():
            self.on_handoff(token, client.finish, conn)

    def start(self) -> None:
        """An engine runs and will tick: readers may park, requests may be sent inline."""
        self.active = True

    def stop(self) -> None:
        """The engine ends: no more ticks will come."""
        self.active = False
        self.release()

    def close(self) -> None:
        self.stop()
        self._epoll.close()
