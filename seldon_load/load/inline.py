"""The contract between the open-loop engine and a transport that sends from the engine's greenlet.

At a few hundred requests a second each wake-up of the generator costs more CPU than a
request's Python work, so the engine sends a request itself, without a greenlet
(``InlineSender.start``), and the answer is read at one of its next wake-ups instead of
waking the process for it (``load.batcher.ReadBatcher``, an ``AnswerReader`` here).
Who calls whom:

* engine -> sender: ``start(token) -> bool`` (False: nothing was sent, use a greenlet);
* engine -> reader: ``collect()`` when it wakes, ``tick(next_wake)`` before it sleeps,
  ``start()`` / ``stop()`` / ``release()`` around its run, ``inline`` (requests out);
* reader -> engine: ``on_done(token, outcome, now)`` for an answer read at a wake-up,
  ``on_handoff(token, fn, *args)`` for a request that must finish in a greenlet (the
  engine runs ``fn(*args) -> Outcome`` there and records it under the same token);
* reader -> client (``InlineClient``, the REST client): ``poll`` a readable connection,
  ``timed_out`` past its deadline, ``finish`` in a greenlet, ``stale`` for an idle one the
  server closed. The client calls the reader back through ``transport.h1conn.AnswerParking``.

The token carries the request's intended and actual send times, so the transport can hold
the request's deadline (``sent + timeout``) and the engine can record it exactly once.
"""

from __future__ import annotations

from collections.abc import Callable, Sized
from functools import partial
from typing import Any, NamedTuple, Protocol

from seldon_load.transport.outcome import Outcome


class InlineToken(NamedTuple):
    """One request sent inline: when it was due (the plan) and when it left (perf_counter)."""

    due: float
    sent: float


# a token without the Python-level NamedTuple.__new__ call: the engine makes one per request
make_token: Callable[[tuple[float, float]], InlineToken] = partial(tuple.__new__, InlineToken)


class InlineSender(Protocol):
    """What the engine calls to send one request from its own greenlet."""

    def __call__(self, token: InlineToken) -> bool: ...


class AnswerReader(Protocol):
    """What the engine needs from the reader of inline answers (``ReadBatcher``)."""

    on_done: Callable[[InlineToken, Outcome, float], None] | None
    on_handoff: Callable[..., None] | None

    @property
    def inline(self) -> Sized: ...

    @property
    def idle_waiters(self) -> bool: ...

    def collect(self) -> None: ...

    def tick(self, next_wake: float) -> None: ...

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def release(self) -> None: ...


class InlineClient(Protocol):
    """What the reader calls on the client that sent an inline request (``conn`` is the
    client's own connection object, opaque here)."""

    def poll(self, conn: Any) -> Outcome | None: ...

    def timed_out(self, conn: Any) -> Outcome: ...

    def finish(self, conn: Any) -> Outcome: ...

    def stale(self, fd: int) -> None: ...
