"""The typed master <-> worker control messages: round trips, versions checked, malformed ones
rejected whole with one log line, publishing never mutates what the controller built."""

from __future__ import annotations

import copy
import logging
from types import SimpleNamespace

import msgpack
import pytest

from seldon_load.load.plan import RatePlan
from seldon_load.locust.messages import (
    CONTROL_VERSION,
    FinalMessage,
    FlushMessage,
    PlanMessage,
    ReadyMessage,
    receive,
)


def _plan() -> RatePlan:
    plan = RatePlan()
    plan.add_stage(50.0, 2.0, 5.0)
    plan.add_stage(100.0, 2.0, 5.0)
    return plan


def _controller_dict() -> dict:
    return {"v": 1, "plan": _plan().to_wire(), "elapsed_s": 3.5, "share": 0.5, "phase": 1.0, "from_s": 1.25, "pv": 4}


def _msgpack(d: dict) -> dict:
    """What Locust's zmq transport does to a message."""
    return msgpack.unpackb(msgpack.packb(d), raw=False)


def test_plan_round_trip_through_msgpack():
    m = PlanMessage.from_controller(_controller_dict(), "t1")
    back = PlanMessage.from_wire(_msgpack(m.to_wire()))
    assert back.test_id == "t1" and back.plan_version == 4
    assert (back.elapsed_s, back.share, back.phase, back.from_s) == (3.5, 0.5, 1.0, 1.25)
    assert back.plan.to_wire() == _plan().to_wire()
    assert back.to_wire() == m.to_wire()


def test_publishing_never_mutates_the_controllers_dict():
    d = _controller_dict()
    before = copy.deepcopy(d)
    PlanMessage.from_controller(d, "t1").to_wire()
    assert d == before


def test_flush_final_ready_round_trips():
    for m in (FlushMessage("t1"), FlushMessage("t2", stop=True), FlushMessage(None),
              FinalMessage("t1", {"version": 1}), FinalMessage("t1", None), ReadyMessage()):
        assert type(m).from_wire(_msgpack(m.to_wire())) == m


@pytest.mark.parametrize("cls,good", [
    (PlanMessage, PlanMessage.from_controller(_controller_dict(), "t").to_wire()),
    (FlushMessage, FlushMessage("t").to_wire()),
    (FinalMessage, FinalMessage("t", None).to_wire()),
    (ReadyMessage, ReadyMessage().to_wire()),
])
@pytest.mark.parametrize("version", [None, 0, CONTROL_VERSION + 1, "1", 1.0, True])
def test_an_unknown_or_missing_version_is_rejected(cls, good, version):
    bad = dict(good)
    if version is None:
        del bad["version"]
    else:
        bad["version"] = version
    with pytest.raises(ValueError, match="version"):
        cls.from_wire(bad)


@pytest.mark.parametrize("edit", [
    lambda d: d.pop("plan"),
    lambda d: d.update(plan={"segments": "x"}),
    lambda d: d.update(share=0.0),
    lambda d: d.update(share=float("nan")),
    lambda d: d.update(phase=2.0),
    lambda d: d.update(pv=-1),
    lambda d: d.update(pv="3"),
    lambda d: d.update(test_id=5),
    lambda d: d.update(elapsed_s="now"),
])
def test_a_malformed_plan_is_rejected_whole(edit):
    d = PlanMessage.from_controller(_controller_dict(), "t").to_wire()
    edit(d)
    with pytest.raises(ValueError):
        PlanMessage.from_wire(d)


@pytest.mark.parametrize("cls,data", [
    (FlushMessage, {"version": 1, "test_id": "t", "stop": "yes"}),
    (FinalMessage, {"version": 1, "test_id": "t", "report": [1, 2]}),
    (FinalMessage, {"version": 1, "test_id": 3, "report": None}),
    (ReadyMessage, [1]),
    (PlanMessage, None),
])
def test_malformed_small_messages_are_rejected(cls, data):
    with pytest.raises(ValueError):
        cls.from_wire(data)


def test_receive_logs_one_clear_line_and_returns_none(caplog):
    caplog.set_level(logging.ERROR, logger="seldon_load")
    got = receive(FlushMessage, {"version": 99, "test_id": "t"}, "the master")
    assert got is None
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1
    assert "seldon_load:flush" in lines[0] and "version 99" in lines[0] and "the master" in lines[0]


def test_a_rejected_plan_leaves_the_process_untouched():
    from seldon_load.locust.listeners import _on_plan

    seen = []
    session = SimpleNamespace(on_plan=seen.append)
    bad = PlanMessage.from_controller(_controller_dict(), "t").to_wire()
    bad["version"] = 2
    _on_plan(session, SimpleNamespace(data=bad, node_id="master"))
    assert seen == []
    good = PlanMessage.from_controller(_controller_dict(), "t")
    _on_plan(session, SimpleNamespace(data=good.to_wire(), node_id="master"))
    assert [m.test_id for m in seen] == ["t"]
