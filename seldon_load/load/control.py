"""The master's side of a test: owns the plan, splits it over workers, runs the auto search.

It knows nothing of Locust: the plugin gives it a ``Channel`` (who the engines are, how to
reach them) and, for ``--auto``, a ``judge`` that says whether a finished stage was
sustained and a ``probe`` that says whether the target is ready. ``tick`` is called about
once a second by the Locust shape and answers how many users of which kind should run, or
None when the test is over.

In ``--auto`` a verdict is confirmed before the bracket moves: a stage that failed on errors
(not on capacity) runs once more at the same rate, after a pause and once the probe says
the target is ready, and only the re-run's verdict counts. A first stage where every request
failed, a target fault that repeats before any stage was sustained, or a target that stays
unready end the search with the server's error quoted.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from time import perf_counter
from typing import Protocol

from seldon_load.load.auto import AutoConfig, AutoSearch
from seldon_load.load.plan import COOLDOWN, RatePlan, Stage, StageWindow

log = logging.getLogger(__name__)

OPEN = "open"
CLOSED = "closed"


class Channel(Protocol):
    def engines(self) -> list[str]: ...
    def publish(self, engine_id: str, message: dict) -> None: ...
    def request_flush(self) -> None: ...


@dataclass
class Verdict:
    ready: bool
    sustained: bool = False
    throughput_rps: float | None = None  # good answers a second; None if the generator fell behind
    fell_behind: bool = False  # too few answers or a growing queue (not just the SLO or errors)
    errors: bool = False  # failed on the error criterion (failures and drops over the limit)
    fault: bool = False  # dominated by target faults (refused, reset, 4xx ...): not load
    all_failed: bool = False  # every answered request failed
    message: str | None = None  # what the server said (the dominant failure, one line)


@dataclass
class ControllerConfig:
    mode: str  # "stages" | "auto" | "closed" | "sweep"
    stages: list[Stage] = field(default_factory=list)
    auto: AutoConfig | None = None
    sweep: list[tuple[int, float]] = field(default_factory=list)  # (users, hold_s)
    users: int = 1
    spawn_rate: float = 10.0
    run_time_s: float | None = None
    verdict_delay_s: float = 1.5
    drain_timeout_s: float = 10.0
    final_wait_s: float = 8.0

    @property
    def loop(self) -> str:
        return OPEN if self.mode in ("stages", "auto") else CLOSED


class Controller:
    def __init__(self, config: ControllerConfig, channel: Channel,
                 judge: Callable[[StageWindow], Verdict] | None = None,
                 clock: Callable[[], float] = perf_counter,
                 probe: Callable[[], str | None] | None = None) -> None:
        self.config = config
        self.channel = channel
        self.judge = judge
        self.probe = probe  # None when the target is ready, else why not (one line)
        self.reruns: dict[int, int] = {}  # stage index -> index of the stage that re-ran it
        self._rerun: StageWindow | None = None  # a stage waiting for its re-run (pause, probe)
        self._probe_from_s = 0.0
        self._probe_until_s = 0.0
        self.clock = clock
        self.t0: float | None = None
        self.plan = RatePlan()
        self.search = AutoSearch(config.auto) if config.auto else None
        self.engine_ids: list[str] = []
        self.plan_version = 0  # counts publish(): an engine that reports an older one missed a plan
        self.published_at = 0.0
        self.shares_from_s = 0.0  # test time the current engines' shares took effect
        self._shares_of: list[str] = []
        self.workers_timeline: list[dict] = []
        self.finishing_since: float | None = None
        self.finals: set[str] = set()
        self.done = False
        self.stop_reason: str | None = None
        self.notes: list[str] = []  # what the results must say about this run (e.g. a lost worker)
        self._build_initial_plan()

    # ---- plan -------------------------------------------------------------------------
    def _build_initial_plan(self) -> None:
        cfg = self.config
        if cfg.mode == "stages":
            for st in cfg.stages:
                self.plan.add_stage(st.target_rps, st.ramp_s, st.hold_s)
            self.plan.final = True
        elif cfg.mode == "auto":
            assert self.search is not None
            self.plan.add_stage(self.search.first(), cfg.auto.ramp_s, cfg.auto.hold_s)
        elif cfg.mode == "sweep":
            for users, hold in cfg.sweep:
                self._closed_stage(users, hold)
            self.plan.final = True
        else:  # closed loop, fixed users for run_time
            self._closed_stage(cfg.users, cfg.run_time_s or 3600.0)
            self.plan.final = True

    def _closed_stage(self, users: int, hold_s: float) -> None:
        start = self.plan.end_s
        self.plan.stages.append(StageWindow(len(self.plan.stages), 0.0, start, start, start + hold_s, users))
        self.plan.add_segment(hold_s, 0.0, "hold")

    def elapsed(self) -> float:
        return self.clock() - self.t0 if self.t0 is not None else 0.0

    def users_at(self, t: float) -> int:
        for win in self.plan.stages:
            if win.ramp_start_s <= t < win.hold_end_s and win.users is not None:
                return win.users
        return self.config.users

    # ---- engines ----------------------------------------------------------------------
    def _sync_engines(self, force: bool = False) -> None:
        ids = sorted(self.channel.engines())
        if ids != self.engine_ids or force:
            if ids != self.engine_ids:
                self.workers_timeline.append({"t_s": round(self.elapsed(), 3), "workers": len(ids)})
                if self.engine_ids and len(ids) < len(self.engine_ids):
                    log.warning("workers: %d -> %d; the remaining ones take over the rate", len(self.engine_ids), len(ids))
                    self.notes.append(
                        f"workers {len(self.engine_ids)} -> {len(ids)} at t={self.elapsed():.0f}s: a lost worker's share "
                        "of the schedule was not offered (and its last unreported measurements are missing) until "
                        "it was noticed; a stage overlapping this says nothing about the server")
            self.engine_ids = ids
            self.publish()

    def publish(self) -> None:
        """Send the plan and each engine's share (1/n) and phase ((i + 1)/n)."""
        if not self.engine_ids:
            return
        self.plan_version += 1
        self.published_at = self.clock()
        if self.engine_ids != self._shares_of:  # the shares start now; a resend keeps this time
            self._shares_of = list(self.engine_ids)
            self.shares_from_s = self.elapsed()
        wire = self.plan.to_wire()
        for eid in self.engine_ids:
            self._send_plan(eid, wire)

    def publish_to(self, engine_id: str) -> bool:
        """Send the current plan again to one engine (it missed it: a message that reached a
        worker before its handlers were installed is dropped by Locust). False if it has no share."""
        if engine_id not in self.engine_ids or self.plan_version == 0:
            return False
        self._send_plan(engine_id, self.plan.to_wire())
        return True

    def _send_plan(self, engine_id: str, wire: dict) -> None:
        n, i = len(self.engine_ids), self.engine_ids.index(engine_id)
        self.channel.publish(engine_id, {"v": 1, "plan": wire, "elapsed_s": self.elapsed(), "share": 1.0 / n,
                                         "phase": (i + 1) / n, "from_s": self.shares_from_s,
                                         "pv": self.plan_version})

    # ---- auto search ------------------------------------------------------------------
    def _auto_step(self, el: float) -> None:
        assert self.search is not None and self.judge is not None
        if self.plan.final:
            return
        if self._rerun is not None:
            self._await_ready(el)
            return
        win = self.plan.stages[-1]
        if el < win.hold_end_s + self.config.verdict_delay_s:
            return
        verdict = self.judge(win)
        if not verdict.ready:
            return
        if verdict.all_failed and self.search.lo is None:
            self._finish(f"every request failed at {win.target_rps:g} rps: {verdict.message or 'no message'}")
        elif self._confirm(win, verdict):
            pause = self.config.auto.cooldown_s
            self._rerun, self._probe_from_s = win, el + pause
            self._probe_until_s = el + pause + self.config.auto.probe_timeout_s
            log.info("auto search: %.1f rps failed on errors (%s); running it again to confirm", win.target_rps,
                     verdict.message or "no message")
            return
        elif verdict.fault and self.search.lo is None and win.index in self.reruns.values():
            self._finish(f"target fault at {win.target_rps:g} rps, twice: {verdict.message or 'no message'}")
        else:
            self._advance(win, verdict, el)
        self.publish()

    def _confirm(self, win: StageWindow, verdict: Verdict) -> bool:
        """Re-run a stage that failed on errors (load-related or not), once: errors from a
        moment of trouble (a restart, a model warming up) must not move the bracket."""
        if verdict.sustained or not (verdict.fault or verdict.errors):
            return False
        return win.index not in self.reruns and win.index not in self.reruns.values()

    def _await_ready(self, el: float) -> None:
        """After the pause, probe the target each tick; re-run the stage once it is ready."""
        win = self._rerun
        assert win is not None and self.search is not None
        if el < self._probe_from_s:
            return
        why = self.probe() if self.probe is not None else None
        if why is not None:
            if el >= self._probe_until_s:
                self._finish(f"target not ready {self.config.auto.probe_timeout_s:g}s after stage {win.index} "
                             f"failed: {why}")
                self.publish()
            return
        auto = self.config.auto
        hold = win.hold_end_s - win.hold_start_s
        if el + 0.5 + auto.ramp_s + hold > auto.budget_s:
            self._finish(f"time budget {auto.budget_s:g}s reached")
        else:
            self.plan.add_segment(0.5 + max(0.0, el - self.plan.end_s), 0.0, COOLDOWN)
            again = self.plan.add_stage(win.target_rps, auto.ramp_s, hold)
            self.reruns[win.index] = again.index
            self._rerun = None
            log.info("auto search: target ready; stage %d runs %.1f rps again", again.index, win.target_rps)
        self.publish()

    def _finish(self, reason: str) -> None:
        assert self.search is not None
        self._rerun = None
        self.search.done_reason = reason
        self.plan.final = True
        self.stop_reason = reason
        log.info("auto search done: %s", reason)

    def _advance(self, win: StageWindow, verdict: Verdict, el: float) -> None:
        assert self.search is not None
        nxt = self.search.next(win.target_rps, verdict.sustained, verdict.throughput_rps, verdict.fell_behind)
        auto = self.config.auto
        if nxt is not None:
            hold = self.search.hold_s()
            needed = auto.cooldown_s + auto.ramp_s + hold
            if el + needed > auto.budget_s:
                self.search.done_reason = f"time budget {auto.budget_s:g}s reached"
                nxt = None
        if nxt is None:
            self._finish(self.search.done_reason or "done")
        else:
            # a pause at zero rate lets a queue built by an overloaded stage drain
            pause = (auto.cooldown_s if not verdict.sustained else 0.5) + max(0.0, el - self.plan.end_s)
            self.plan.add_segment(pause, 0.0, COOLDOWN)
            self.plan.add_stage(nxt, auto.ramp_s, self.search.hold_s())
            done = ("sustained" if verdict.sustained else "not sustained") + (
                f", {verdict.throughput_rps:.1f} rps answered" if verdict.throughput_rps is not None else "")
            log.info("auto search: %.1f rps %s; stage %d at %.1f rps", win.target_rps, done,
                     len(self.plan.stages) - 1, nxt)

    # ---- the tick ---------------------------------------------------------------------
    def start(self) -> None:
        self.t0 = self.clock()
        self.workers_timeline.append({"t_s": 0.0, "workers": len(self.channel.engines())})
        self.engine_ids = sorted(self.channel.engines())
        self.publish()

    def tick(self) -> tuple[int, float] | None:
        """Users to run now (count, spawn rate), or None when the test is over."""
        if self.done:
            return None
        if self.t0 is None:
            self.start()
        self._sync_engines()
        el = self.elapsed()
        if self.search is not None:
            self._auto_step(el)
        if self.config.loop == OPEN:
            count = max(1, len(self.engine_ids))
            rate = float(count)
        else:
            count = self.users_at(el)
            rate = self.config.spawn_rate
        if not self.plan.final or el < self.plan.end_s:
            return count, rate
        if self.finishing_since is None:
            self.finishing_since = self.clock()
            self.channel.request_flush()
        waited = self.clock() - self.finishing_since
        # open loop drains in-flight requests, closed loop lets each user finish its request: both
        # within the drain timeout
        limit = self.config.final_wait_s + self.config.drain_timeout_s
        if self.all_final or waited > limit:
            if waited > limit:
                log.warning("final reports missing from %s after %.0fs", sorted(set(self.engine_ids) - self.finals), waited)
            self.done = True
            return None
        return count, rate

    @property
    def all_final(self) -> bool:
        return set(self.engine_ids) <= self.finals

    def on_final(self, engine_id: str) -> None:
        self.finals.add(engine_id)

