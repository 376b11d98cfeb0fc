"""A process adopts a test's plan only with that test's settings, and each run of Locust's shape
greenlet is a new test (a second one from the web UI gets a controller of its own)."""

from __future__ import annotations

from types import SimpleNamespace

import gevent

from seldon_load.load.plan import RatePlan
from seldon_load.locust.messages import PlanMessage
from seldon_load.locust.session import Session
from seldon_load.locust.shape import SeldonLoadShape


def _plan(test_id: str) -> PlanMessage:
    return PlanMessage(test_id=test_id, plan=RatePlan(), elapsed_s=0.0, share=1.0, phase=1.0, from_s=0.0,
                       plan_version=1)


class _Process:
    def __init__(self) -> None:
        self.plans: list[str | None] = []

    def on_plan(self, plan: PlanMessage) -> None:
        self.plans.append(plan.test_id)


def test_a_plan_waits_for_its_tests_settings():
    session = Session(SimpleNamespace(runner=None))
    session.on_plan(_plan("t1"))  # no process yet
    assert session.pending_plan is not None and session.pending_plan.test_id == "t1"
    proc = _Process()
    session.process = proc
    session.pending_plan = None
    session.settings_current = True
    session.on_plan(_plan("t1"))
    assert proc.plans == ["t1"]
    session.settings_current = False  # the test ended; the next one's settings come with its test_start
    session.on_plan(_plan("t2"))
    assert proc.plans == ["t1"] and session.pending_plan.test_id == "t2"


def test_each_shape_greenlet_is_a_new_test():
    done = SimpleNamespace(done=True)
    session = SimpleNamespace(controller=done, start_error="old", environment=SimpleNamespace(web_ui=None))
    made = []

    def new_controller():
        c = SimpleNamespace(done=False, finishing_since=None, tick=lambda: (1, 1.0))
        made.append(c)
        session.controller = c
        return c

    session.new_controller = new_controller
    session.settings = SimpleNamespace(open_loop=True)
    shape = SeldonLoadShape()
    shape.runner = SimpleNamespace(environment=SimpleNamespace(seldon_load=session))
    first = gevent.spawn(lambda: [shape.tick(), shape.tick()])
    first.join()
    assert len(made) == 1 and session.start_error is None  # one test: one controller for every tick
    made[0].done = True
    assert gevent.spawn(shape.tick).get() is not None and len(made) == 2  # New, Start: a new run, a new test
