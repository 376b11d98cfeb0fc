"""The controller: plan splitting over workers, worker loss, auto search, finishing."""

from seldon_load.load.auto import AutoConfig
from seldon_load.load.control import Controller, ControllerConfig, Verdict
from seldon_load.load.plan import RatePlan, Stage


class FakeChannel:
    def __init__(self, ids):
        self.ids = list(ids)
        self.sent = []
        self.flushed = 0

    def engines(self):
        return list(self.ids)

    def publish(self, eid, msg):
        self.sent.append((eid, msg))

    def request_flush(self):
        self.flushed += 1


class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def test_shares_and_phases_follow_workers():
    ch, clock = FakeChannel(["a", "b"]), Clock()
    c = Controller(ControllerConfig("stages", stages=[Stage(100, 1, 10)]), ch, clock=clock)
    assert c.tick() == (2, 2.0)
    shares = {eid: (m["share"], m["phase"]) for eid, m in ch.sent}
    assert shares == {"a": (0.5, 0.5), "b": (0.5, 1.0)}
    ch.sent.clear()
    ch.ids = ["b"]
    clock.t += 3
    assert c.tick() == (1, 1.0)
    assert ch.sent[-1][0] == "b" and ch.sent[-1][1]["share"] == 1.0
    assert [w["workers"] for w in c.workers_timeline] == [2, 1]
    # the plan on the wire is the whole plan
    assert RatePlan.from_wire(ch.sent[-1][1]["plan"]).total_count() == c.plan.total_count()


def test_a_plan_sent_again_is_the_current_one_at_the_current_time():
    ch, clock = FakeChannel(["a", "b"]), Clock()
    c = Controller(ControllerConfig("stages", stages=[Stage(100, 1, 10)]), ch, clock=clock)
    assert c.publish_to("a") is False  # nothing published yet
    c.tick()
    first = dict(ch.sent)
    assert first["a"]["pv"] == first["b"]["pv"] == c.plan_version == 1
    ch.sent.clear()
    clock.t += 2.5
    assert c.publish_to("b") is True and c.publish_to("stranger") is False
    (eid, msg), = ch.sent
    assert eid == "b" and msg["pv"] == 1 and (msg["share"], msg["phase"]) == (0.5, 1.0)
    # the clock is read now: an old message re-sent would start the worker's schedule 2.5 s late
    assert msg["elapsed_s"] == first["b"]["elapsed_s"] + 2.5
    # ...but its shares still date from the first copy: the arrivals in between are not lost
    assert msg["from_s"] == first["b"]["from_s"] == 0.0
    ch.ids = ["b"]
    clock.t += 1.0
    c.tick()
    assert ch.sent[-1][1]["pv"] == 2 and ch.sent[-1][1]["from_s"] == 3.5  # new shares from now


def test_finishes_after_finals_or_timeout():
    ch, clock = FakeChannel(["a", "b"]), Clock()
    c = Controller(ControllerConfig("stages", stages=[Stage(10, 0, 2)], drain_timeout_s=1, final_wait_s=1), ch,
                   clock=clock)
    c.tick()
    clock.t += 2.5
    assert c.tick() is not None and ch.flushed == 1
    c.on_final("a")
    assert c.tick() is not None
    c.on_final("b")
    assert c.tick() is None and c.done
    # a second controller whose worker never answers ends after the wait
    ch2, clock2 = FakeChannel(["a"]), Clock()
    c2 = Controller(ControllerConfig("stages", stages=[Stage(10, 0, 2)], drain_timeout_s=1, final_wait_s=1), ch2,
                    clock=clock2)
    c2.tick()
    clock2.t += 2.5
    c2.tick()
    clock2.t += 2.5
    assert c2.tick() is None


def test_auto_search_extends_the_plan_until_bracketed():
    ch, clock = FakeChannel(["local"]), Clock()
    capacity = 55.0
    judged = []

    def judge(win):
        judged.append(win.target_rps)
        return Verdict(True, win.target_rps <= capacity)

    cfg = ControllerConfig("auto", auto=AutoConfig(start_rps=10, max_rps=1000, precision=0.1, ramp_s=1, hold_s=3,
                                                   narrow_hold_s=2, cooldown_s=1, budget_s=1000),
                           verdict_delay_s=0.5, drain_timeout_s=0, final_wait_s=0)
    c = Controller(cfg, ch, judge=judge, clock=clock)
    for _ in range(400):
        clock.t += 0.5
        if c.tick() is None:
            break
        c.on_final("local")
    assert c.done and c.plan.final
    assert judged[:3] == [10, 20, 40]
    assert c.search.lo <= capacity < c.search.hi
    assert max(judged) <= 1000
    # stages never overlap and each starts after the previous hold ended
    for a, b in zip(c.plan.stages, c.plan.stages[1:], strict=False):
        assert b.ramp_start_s >= a.hold_end_s


def test_closed_loop_sweep_users():
    ch, clock = FakeChannel(["local"]), Clock()
    c = Controller(ControllerConfig("sweep", sweep=[(1, 5), (4, 5)], spawn_rate=100), ch, clock=clock)
    assert c.tick() == (1, 100)
    clock.t += 6
    assert c.tick() == (4, 100)
