"""Open-loop sender: requests leave on the plan's schedule whatever the replies do.

Every request carries three times (guidellm's targeted vs actual start): *intended* (from
the plan), *sent* (when its greenlet really started) and *done*. Latency is measured from
the intended time, so a slow server or a late generator shows up in the numbers instead of
silently stretching the schedule (coordinated omission). An arrival that finds the
in-flight cap full is not sent and is recorded as dropped; one still in flight when the
drain time ends is recorded as cancelled: every arrival ends as exactly one outcome.
"""

from __future__ import annotations

import logging
from bisect import bisect_left
from collections.abc import Callable
from time import perf_counter

import gevent
from gevent.event import Event
from gevent.hub import get_hub
from gevent.monkey import get_original
from greenlet import getcurrent, greenlet

from seldon_load.load.arrivals import UNIFORM, Arrivals
from seldon_load.load.inline import AnswerReader, InlineSender, InlineToken, make_token
from seldon_load.load.plan import RatePlan
from seldon_load.load.timer import TimerFd, precise_sleeper
from seldon_load.transport.outcome import CANCELLED, Outcome

log = logging.getLogger(__name__)

_POLL_S = 0.05
_YIELD_EVERY = 16
_KILL_WAIT_S = 5.0
HUB_EVERY_S = 0.100  # the hub runs a full loop pass at least this often while the engine sleeps without it
# (Locust beats once a second and reports every 3 s; each pass costs ~0.2 ms of cold-cache CPU)
BLOCK_MAX_S = 0.010  # longer sleeps go through the hub
_block = get_original("time", "sleep")  # a plain clock_nanosleep, not gevent's
COALESCE_S = 0.001  # arrivals closer than this share one wake-up (bounds send lag, saves CPU)


class WorkerSchedule:
    """This process's view of the plan: the plan itself, its share and the clock origin."""

    def __init__(self, arrival_mode: str = UNIFORM, seed: int | None = None) -> None:
        self.plan: RatePlan | None = None
        self.t0: float | None = None
        self.arrivals = Arrivals(1.0, 1.0, arrival_mode, seed)
        self.share = 1.0
        self.phase = 1.0
        self.version = 0
        self.share_from_count = 0.0  # the plan's N(t) when this process's share last changed
        self.finished = False

    def update(self, plan: RatePlan, elapsed_s: float, share: float, phase: float,
               from_s: float | None = None) -> None:
        """Adopt a plan sent by the controller; ``elapsed_s`` is its test time when sent,
        ``from_s`` the test time its shares took effect: a copy sent again (Locust drops a
        message that reaches a worker before its handlers exist) still starts the share
        there, so the arrivals due in between are sent late, not lost."""
        if self.t0 is None:
            self.t0 = perf_counter() - elapsed_s
        self.plan = plan
        if share != self.share or phase != self.phase:
            self.share, self.phase = share, phase
            self.share_from_count = plan.count_at(elapsed_s if from_s is None else from_s)
            self.version += 1

    def elapsed(self) -> float:
        return perf_counter() - self.t0 if self.t0 is not None else 0.0


class PlanClock:
    """``plan.time_of(n)`` for (mostly) increasing ``n`` in amortised O(1): the arrival loop
    asks once per request, and the plan's own binary search plus its running total would be
    a good part of the per-request work. Results are bit-identical to ``RatePlan.time_of``
    (same float operations); a plan that grew or was replaced is picked up by ``sync``."""

    __slots__ = ("plan", "_n_segments", "_starts", "_ends", "_total", "_i", "_flat")

    def __init__(self, plan: RatePlan) -> None:
        self.plan = plan
        self._n_segments = -1
        self._i = 0
        self.sync(plan)

    def sync(self, plan: RatePlan) -> None:
        if plan is self.plan and len(plan.segments) == self._n_segments:
            return
        self.plan = plan
        starts, ends, flat, cum = [], [], [], 0.0
        for seg in plan.segments:
            starts.append(cum)
            cum = cum + seg.count(seg.end_s)
            ends.append(cum)
            slope = (seg.rate_to - seg.rate_from) / seg.duration_s if seg.duration_s > 0 else 0.0
            # (start, rate, end) of a constant-rate segment: its time_of is start + n / rate
            flat.append((seg.start_s, seg.rate_from, seg.end_s) if slope == 0.0 else None)
        self._starts, self._ends, self._flat = starts, ends, flat
        self._total = ends[-1] if ends else 0.0
        self._n_segments = len(plan.segments)
        self._i = 0

    def time_of(self, n: float) -> float | None:
        if n <= 0 or not self._ends or n > self._total + 1e-9:
            return None
        i = self._i
        starts, ends = self._starts, self._ends
        if n <= starts[i]:
            i = min(bisect_left(ends, n), len(ends) - 1)  # went back (a resync): first segment reaching n
        else:
            while ends[i] < n and i + 1 < len(ends):
                i += 1
        self._i = i
        flat = self._flat[i]
        if flat is not None:
            t = flat[0] + (n - starts[i]) / flat[1]
            return t if t < flat[2] else flat[2]
        seg = self.plan.segments[i]
        return min(seg.time_of(n - starts[i]), seg.end_s)


class OpenLoopEngine:
    """Runs one worker's share of the schedule; ``run`` returns once the plan is done.

    Requests run on a pool of long-lived raw greenlets: a new greenlet per request would
    cost a fresh Python frame stack (on 3.11 an mmap, page faults and an munmap per request)
    and gevent's Greenlet/Group bookkeeping. An idle worker parks in the hub and is handed
    its next intended time by one loop callback. ``cancel`` ends the requests still out.
    With a ``batcher`` and ``start`` a request is sent from the engine's own greenlet and its
    answer read at a later wake-up (the contract: ``load.inline``)."""

    def __init__(
        self,
        *,
        send: Callable[[], Outcome],
        name: str,
        recorder,
        schedule: WorkerSchedule,
        max_in_flight: int = 1000,
        drain_timeout_s: float = 10.0,
        on_result: Callable[[float, float, float, Outcome], None] | None = None,
        batcher: AnswerReader | None = None,
        start: InlineSender | None = None,
    ) -> None:
        self.send = send
        self.name = name
        self.recorder = recorder
        self.schedule = schedule
        self.max_in_flight = max_in_flight
        self.drain_timeout_s = drain_timeout_s
        self.on_result = on_result
        self.batcher = batcher
        self.start = start if batcher is not None else None
        if batcher is not None:
            batcher.on_done = self._inline_done
            batcher.on_handoff = self._adopt
        self.in_flight = 0
        self.max_seen_in_flight = 0
        self.sent = 0
        self.dropped = 0
        self._out: dict[greenlet, float] = {}  # busy worker greenlet -> intended time
        self._workers: list[greenlet] = []  # idle workers, parked in the hub
        self._hub = get_hub()
        self._idle = Event()
        self._idle.set()
        self._stop = False
        self._version = -1

    @property
    def outstanding(self) -> int:
        """Requests sent and not yet answered (nor cancelled)."""
        return len(self._out) + (len(self.batcher.inline) if self.batcher is not None else 0)

    def stop(self) -> None:
        """No new arrivals; requests in flight still complete and are recorded."""
        self._stop = True
        self.retire_workers()

    def run(self) -> None:
        sched = self.schedule
        while sched.plan is None and not self._stop:
            gevent.sleep(_POLL_S)
        if self._stop:
            return
        hub = self._hub
        run_callback = hub.loop.run_callback
        clock = PlanClock(sched.plan)
        timer = precise_sleeper(hub)
        if self.batcher is not None:
            self.batcher.start()
        try:
            self._loop(sched, clock, timer, run_callback)
        finally:
            if timer is not None:
                timer.close()
            if self.batcher is not None:
                self.batcher.stop()
        if self._stop:
            return  # stopped from outside (user moved to another worker): answers still land
        self.drain()
        self.retire_workers()

    def _loop(self, sched: WorkerSchedule, clock: PlanClock, timer: TimerFd | None, run_callback) -> None:
        next_count: float | None = None
        last_count: float | None = None
        since_yield = 0
        last_wake = last_hub = 0.0
        record_drop = self.recorder.dropped
        tick = self.batcher.tick if self.batcher is not None else None
        collect = self.batcher.collect if self.batcher is not None else None
        send_inline = self.start
        hub = self._hub
        worker, out, idle = self._worker, self._out, self._workers
        # A yield to the hub that is a full loop pass: I/O polled, timers run (Locust's heartbeats
        # and reports, the master's messages, request greenlets' sockets). gevent.sleep(0) runs
        # queued callbacks only, and the hub then polls once in 50 of them. A timer already
        # due makes the hub poll.
        hub_pass = (lambda: timer.sleep_until(perf_counter())) if timer is not None else (lambda: gevent.sleep(0))
        while not self._stop:
            plan = sched.plan
            clock.sync(plan)
            if self._version != sched.version:
                self._version = sched.version
                # continue right after the last arrival this process scheduled (none lost when
                # the share changes while it is behind); a new engine starts where its share began
                start = last_count if last_count is not None else sched.share_from_count
                sched.arrivals.resync(sched.share, sched.phase, start)
                next_count = None
            if next_count is None:
                next_count = sched.arrivals.next_count()
            t_rel = clock.time_of(next_count)
            if t_rel is None:
                if plan.final:
                    break
                if tick is not None:
                    collect()
                    tick(perf_counter() + _POLL_S)
                gevent.sleep(_POLL_S)
                continue
            before, last_count, next_count = last_count, next_count, None
            due = sched.t0 + t_rel
            wait = due - perf_counter()
            if wait > 0:
                if timer is not None:
                    # dense arrivals share a wake-up: at most one per COALESCE_S, so each is
                    # late by less than that; sparse ones are woken for on time
                    wake = due if due - last_wake >= COALESCE_S else last_wake + COALESCE_S
                    if tick is not None:
                        tick(wake)  # answers that came in since the last wake-up are read in this one
                    if tick is not None and not out and wait <= BLOCK_MAX_S and self.batcher.idle_waiters:
                        # every request out is inline (read from ticks, nothing waits on the hub):
                        # sleep without the hub's loop iteration, timerfd and libev wake-up; the
                        # hub still runs at least every HUB_EVERY_S for Locust's greenlets
                        if wake - last_hub >= HUB_EVERY_S:
                            last_hub = wake
                            hub_pass()
                        rest = wake - perf_counter()
                        if rest > 0:
                            _block(rest)
                    else:
                        timer.sleep_until(wake)
                        last_hub = wake
                    last_wake = wake
                    if tick is not None:
                        collect()
                else:
                    gevent.sleep(wait)
                since_yield = 0
                if self._version != sched.version:
                    # share changed while sleeping: the new share goes on from the last arrival
                    # sent, so the one slept for is not lost (it may now be another worker's)
                    last_count = before
                    continue
            if self.in_flight >= self.max_in_flight:
                self.dropped += 1
                record_drop(self.name, due)
            else:
                self.in_flight += 1
                if self.in_flight > self.max_seen_in_flight:
                    self.max_seen_in_flight = self.in_flight
                self.sent += 1
                self._idle.clear()
                if send_inline is None or not send_inline(make_token((due, perf_counter()))):
                    g = idle.pop() if idle else greenlet(worker, hub)
                    out[g] = due
                    run_callback(g.switch, due)
            since_yield += 1
            if since_yield >= _YIELD_EVERY:
                since_yield = 0
                if tick is not None:
                    collect()
                    tick(perf_counter())
                now = perf_counter()
                if now - last_hub >= HUB_EVERY_S:  # behind schedule, no sleep for a while
                    last_hub = now
                    hub_pass()
                else:
                    gevent.sleep(0)  # request greenlets' callbacks; the hub polled recently

    def drain(self) -> None:
        """Wait for answers up to the drain timeout; what is still out is cancelled."""
        if self._out:
            self._idle.wait(timeout=self.drain_timeout_s)
        if self._out:
            log.warning("%d requests still in flight after %.0fs drain: counted as cancelled",
                        len(self._out), self.drain_timeout_s)
            self.cancel(block=True)
        self.schedule.finished = True

    def cancel(self, block: bool = True) -> None:
        """End every request still out; each is recorded as cancelled (once)."""
        if self.batcher is not None:
            self.batcher.release()  # inline requests move to greenlets, which can be cancelled
        pending = list(self._out)
        run_callback = get_hub().loop.run_callback
        for g in pending:
            if not g.dead:
                run_callback(g.throw, gevent.GreenletExit)
        if not block:
            return
        self._idle.wait(timeout=_KILL_WAIT_S)
        now = perf_counter()
        for g in list(self._out):  # never started or would not die: account for them here
            due = self._out.pop(g)
            self.in_flight -= 1
            self.recorder.record(self.name, due, due, now, CANCELLED, "still in flight when the test ended")
        self._idle.set()

    def retire_workers(self) -> None:
        """Let the idle workers end (a busy one ends when its request is done)."""
        self._stop = True
        run_callback = self._hub.loop.run_callback
        idle, self._workers = self._workers, []
        for g in idle:
            run_callback(g.switch, None)

    def _worker(self, job: float | tuple) -> None:
        """A request greenlet that, once done, parks in the hub until handed the next job:
        an intended time (send a request) or ``(intended, sent, fn, args)`` (finish one that
        was started inline)."""
        idle = self._workers
        switch_out = self._hub.switch
        one = self._one
        me = getcurrent()
        while True:
            if job.__class__ is float:
                one(job)
            else:
                one(job[0], *job[1:])
            if self._stop:
                return  # no more arrivals will come
            idle.append(me)
            job = switch_out()
            while job.__class__ is not float and job.__class__ is not tuple:  # None: retire
                if job is None:
                    return
                job = switch_out()

    def _adopt(self, token: InlineToken, fn: Callable[..., Outcome], *args) -> None:
        """An inline request goes on in a request greenlet (its count moves with it)."""
        due, sent = token
        g = self._workers.pop() if self._workers else greenlet(self._worker, self._hub)
        self._out[g] = due
        self._hub.loop.run_callback(g.switch, (due, sent, fn, args))

    def _inline_done(self, token: InlineToken, out: Outcome, done: float) -> None:
        due, sent = token
        received = out.received_at
        if received is not None and sent <= received < done:
            done = received
        self.in_flight -= 1
        if not self._out and not self.batcher.inline:
            self._idle.set()
        self.recorder.record(self.name, due, sent, done, out.error_kind, out.message)
        if self.on_result is not None:
            self.on_result(due, sent, done, out)

    def _finished(self) -> bool:
        """Take this greenlet off the books; False if ``cancel`` already accounted for it."""
        out = self._out
        if out.pop(getcurrent(), None) is None:
            return False
        self.in_flight -= 1
        if not out and not (self.batcher is not None and self.batcher.inline):
            self._idle.set()
        return True

    def _one(self, due: float, sent: float | None = None, fn: Callable[..., Outcome] | None = None,
             args: tuple = ()) -> None:
        if sent is None:
            sent = perf_counter()
        try:
            out = self.send() if fn is None else fn(*args)
        except gevent.GreenletExit:
            if self._finished():
                self.recorder.record(self.name, due, sent, perf_counter(), CANCELLED,
                                     "still in flight when the test ended")
            return
        except Exception as exc:  # a transport bug must not kill the schedule
            out = Outcome(False, "client_error", f"{type(exc).__name__}: {exc}"[:200])
        done = perf_counter()
        received = out.received_at
        if received is not None and sent <= received < done:
            done = received  # when the answer arrived, not when this greenlet got round to it
        if not self._finished():
            return
        self.recorder.record(self.name, due, sent, done, out.error_kind, out.message)
        if self.on_result is not None:
            self.on_result(due, sent, done, out)
