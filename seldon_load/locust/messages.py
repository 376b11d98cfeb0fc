"""The control messages between master and workers: small, versioned, typed.

Each class is one Locust custom message type (``NAME``); ``to_wire`` gives the msgpack-safe
dict Locust sends, ``from_wire`` checks it (version first) and raises ValueError on anything
malformed, so a bad message is rejected whole and never half-applied. Measurements between
these ride on Locust's ``worker_report`` as ``measure.messages.ReportMessage``.

* ``PlanMessage``  master -> worker: the rate plan, the test clock, this worker's share;
* ``FlushMessage`` master -> worker: the plan is over (or interrupted), send everything;
* ``FinalMessage`` worker -> master: the last measurements of this worker;
* ``ReadyMessage`` worker -> master: settings loaded and no plan yet, send it.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

from seldon_load.load.plan import RatePlan

log = logging.getLogger("seldon_load")

CONTROL_VERSION = 1


def _version(d: Any, what: str) -> None:
    if not isinstance(d, dict):
        raise ValueError(f"{what} message must be a dict, got {type(d).__name__}")
    v = d.get("version")
    if type(v) is not int or v != CONTROL_VERSION:
        raise ValueError(f"{what} message version {v!r} is not supported (this process speaks {CONTROL_VERSION}): "
                         "are master and workers the same seldon-load version?")


def _test_id(x: Any) -> str | None:
    if x is not None and not isinstance(x, str):
        raise ValueError(f"test_id must be a string or None, got {type(x).__name__}")
    return x


def _number(x: Any, what: str) -> float:
    if type(x) not in (int, float) or not math.isfinite(x):
        raise ValueError(f"{what} must be a finite number, got {x!r}")
    return float(x)


@dataclass(frozen=True)
class PlanMessage:
    """The plan one engine runs: its share (1/n) and phase of the arrivals, from ``from_s`` on."""

    NAME = "seldon_load:plan"
    test_id: str | None
    plan: RatePlan
    elapsed_s: float  # the test clock when the master sent it
    share: float
    phase: float
    from_s: float  # test time the shares start
    plan_version: int  # counts the master's publish(): a worker reporting an older one missed a plan

    @classmethod
    def from_controller(cls, d: dict, test_id: str | None) -> PlanMessage:
        """What ``load.control.Controller`` hands its channel (a dict it builds), typed."""
        return cls(test_id=test_id, plan=RatePlan.from_wire(d["plan"]), elapsed_s=float(d["elapsed_s"]),
                   share=float(d["share"]), phase=float(d["phase"]),
                   from_s=float(d.get("from_s", d["elapsed_s"])), plan_version=int(d.get("pv", 0)))

    def to_wire(self) -> dict[str, Any]:
        return {"version": CONTROL_VERSION, "test_id": self.test_id, "plan": self.plan.to_wire(),
                "elapsed_s": self.elapsed_s, "share": self.share, "phase": self.phase, "from_s": self.from_s,
                "pv": self.plan_version}

    @classmethod
    def from_wire(cls, d: Any) -> PlanMessage:
        _version(d, "plan")
        try:
            plan = RatePlan.from_wire(d["plan"])
            share, phase = _number(d["share"], "share"), _number(d["phase"], "phase")
            pv = d["pv"]
            if type(pv) is not int or pv < 0:
                raise ValueError(f"pv must be a non-negative int, got {pv!r}")
            if not 0.0 < share <= 1.0 or not 0.0 <= phase <= 1.0:
                raise ValueError(f"share {share} / phase {phase} out of range")
            return cls(test_id=_test_id(d["test_id"]), plan=plan, elapsed_s=_number(d["elapsed_s"], "elapsed_s"),
                       share=share, phase=phase, from_s=_number(d["from_s"], "from_s"), plan_version=pv)
        except (KeyError, TypeError, IndexError, AttributeError) as e:
            raise ValueError(f"malformed plan message: {type(e).__name__}: {e}") from e


@dataclass(frozen=True)
class FlushMessage:
    """The plan is over: drain and send a final report. ``stop``: interrupted, stop the schedule first."""

    NAME = "seldon_load:flush"
    test_id: str | None
    stop: bool = False

    def to_wire(self) -> dict[str, Any]:
        return {"version": CONTROL_VERSION, "test_id": self.test_id, "stop": self.stop}

    @classmethod
    def from_wire(cls, d: Any) -> FlushMessage:
        _version(d, "flush")
        stop = d.get("stop", False)
        if not isinstance(stop, bool):
            raise ValueError(f"flush stop must be a bool, got {stop!r}")
        return cls(test_id=_test_id(d.get("test_id")), stop=stop)


@dataclass(frozen=True)
class FinalMessage:
    """A worker's last measurements; ``report`` is a ReportMessage's wire form (checked where merged)."""

    NAME = "seldon_load:final"
    test_id: str | None
    report: dict | None

    def to_wire(self) -> dict[str, Any]:
        return {"version": CONTROL_VERSION, "test_id": self.test_id, "report": self.report}

    @classmethod
    def from_wire(cls, d: Any) -> FinalMessage:
        _version(d, "final")
        report = d.get("report")
        if report is not None and not isinstance(report, dict):
            raise ValueError(f"final report must be a dict or None, got {type(report).__name__}")
        return cls(test_id=_test_id(d.get("test_id")), report=report)


@dataclass(frozen=True)
class ReadyMessage:
    """A worker has its settings and no plan yet."""

    NAME = "seldon_load:ready"

    def to_wire(self) -> dict[str, Any]:
        return {"version": CONTROL_VERSION}

    @classmethod
    def from_wire(cls, d: Any) -> ReadyMessage:
        _version(d, "ready")
        return cls()


PLAN, FLUSH, FINAL, READY = PlanMessage.NAME, FlushMessage.NAME, FinalMessage.NAME, ReadyMessage.NAME


def receive(cls, data: Any, sender: str):
    """``cls.from_wire(data)``, or None after one log line saying why the message was ignored."""
    try:
        return cls.from_wire(data)
    except ValueError as e:
        log.error("seldon-load: ignored a %s message from %s: %s", cls.NAME, sender, e)
        return None
