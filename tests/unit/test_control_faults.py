"""The controller's --auto when the target misbehaves: confirm re-runs behind a readiness probe,
early stops that quote the server, a target that stays down. Pure: injected clock and judge."""

from __future__ import annotations

from seldon_load.load.auto import AutoConfig
from seldon_load.load.control import Controller, ControllerConfig, Verdict
from tests.unit.test_control import Clock, FakeChannel


def controller(judge, probe=None, **auto):
    cfg = ControllerConfig("auto", auto=AutoConfig(**{"start_rps": 10, "max_rps": 1000, "precision": 0.1,
                                                      "ramp_s": 1, "hold_s": 3, "narrow_hold_s": 2,
                                                      "cooldown_s": 1, "budget_s": 1000, **auto}),
                           verdict_delay_s=0.5, drain_timeout_s=0, final_wait_s=0)
    clock = Clock()
    return Controller(cfg, FakeChannel(["local"]), judge=judge, clock=clock, probe=probe), clock


def run(c, clock, steps=600):
    for _ in range(steps):
        clock.t += 0.5
        if c.tick() is None:
            break
        c.on_final("local")
    assert c.done


def test_an_outage_stage_is_rerun_after_the_target_is_ready_and_the_capacity_is_right():
    capacity, outage_stage = 55.0, 2
    probes = []

    def judge(win):
        if win.index == outage_stage:
            return Verdict(True, False, errors=True, fault=True, message="connection_refused x 40")
        return Verdict(True, win.target_rps <= capacity)

    def probe():
        probes.append(clock.t)
        return "connection refused" if len(probes) < 4 else None  # down for 3 more probes

    c, clock = controller(judge, probe)
    run(c, clock)
    rates = [w.target_rps for w in c.plan.stages]
    assert rates[:4] == [10, 20, 40, 40] and c.reruns == {2: 3}
    assert len(probes) == 4 and c.search.lo <= capacity < c.search.hi
    assert [r for r, _ in c.search.history][:3] == [10, 20, 40]  # the outage never reached the search
    # the probe waited for the pause, and the re-run starts after the last probe
    outage = c.plan.stages[2]
    assert probes[0] >= 100 + outage.hold_end_s + 0.5 + 1
    assert c.plan.stages[3].ramp_start_s >= probes[-1] - 100


def test_a_stage_failing_on_load_errors_is_confirmed_once_and_the_rerun_decides():
    judged = []

    def judge(win):
        judged.append(win.target_rps)
        ok = win.target_rps <= 55
        return Verdict(True, ok, throughput_rps=None if ok else 55.0, fell_behind=not ok, errors=not ok,
                       message=None if ok else "timeout x 9")

    c, clock = controller(judge)
    run(c, clock)
    assert judged[:5] == [10, 20, 40, 80, 80] and c.reruns[3] == 4
    rates = [w.target_rps for w in c.plan.stages]
    assert all(rates[a] == rates[b] for a, b in c.reruns.items())  # each failing rate once more, no more
    assert c.search.lo <= 55 < c.search.hi and [r for r, _ in c.search.history].count(80) == 1


def test_a_load_error_stage_that_kept_up_is_confirmed_once():
    seen = []

    def judge(win):
        seen.append(win.target_rps)
        if win.target_rps == 40 and seen.count(40) == 1:
            return Verdict(True, False, errors=True, message="http_503 x 20")  # a blip
        return Verdict(True, win.target_rps <= 55)

    c, clock = controller(judge)
    run(c, clock)
    assert c.reruns == {2: 3} and seen[:4] == [10, 20, 40, 40]
    assert c.search.lo <= 55 < c.search.hi


def test_every_request_failing_at_the_first_stage_stops_at_once_quoting_the_server():
    judged = []

    def judge(win):
        judged.append(win.target_rps)
        return Verdict(True, False, errors=True, fault=True, all_failed=True,
                       message="http_500 x 30: HTTP 500: model exploded")

    c, clock = controller(judge)
    run(c, clock)
    assert judged == [10] and len(c.plan.stages) == 1
    assert c.stop_reason == "every request failed at 10 rps: http_500 x 30: HTTP 500: model exploded"


def test_a_fault_that_repeats_before_any_sustained_stage_stops():
    def judge(win):
        return Verdict(True, False, errors=True, fault=True, message="connection_reset x 5")

    c, clock = controller(judge, probe=lambda: None)
    run(c, clock)
    assert [w.target_rps for w in c.plan.stages] == [10, 10] and c.reruns == {0: 1}
    assert c.stop_reason == "target fault at 10 rps, twice: connection_reset x 5"


def test_a_target_that_stays_down_ends_the_search_with_the_probes_answer():
    def judge(win):
        if win.index == 1:
            return Verdict(True, False, errors=True, fault=True, message="connection_refused x 60")
        return Verdict(True, True)

    c, clock = controller(judge, probe=lambda: "cannot connect: connection refused", probe_timeout_s=5)
    run(c, clock)
    assert len(c.plan.stages) == 2 and c.reruns == {}
    assert c.stop_reason == "target not ready 5s after stage 1 failed: cannot connect: connection refused"
