"""The versioned schema of what a worker ships to the master.

A ``ReportMessage`` travels inside Locust's msgpack ``worker_report`` data under the key
``WIRE_KEY``; ``to_wire`` produces only dict/list/int/float/str/None. ``from_wire`` checks
everything (types, ranges, and the accounting identities below) and raises ValueError on any
malformed input, so a bad message is rejected whole and never half-applied.

Identities of one ``WindowDelta`` (everything a worker attributed to one 1-second window of
one request name since its previous report):

* ``scheduled == ok + sum(failed.values()) + dropped`` (windows by *intended* send time);
* ``latency.count == service.count == lag.count == ok + sum(failed.values())`` (every
  answered request, ok or failed, has all three durations);
* ``completed`` counts requests that *finished* in this window (throughput by completion
  time), so a delta may carry only completions (``scheduled == 0``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from seldon_load.measure.histogram import Histogram

MESSAGE_VERSION = 1
WIRE_KEY = "seldon_load"
MAX_SECOND = 10**7  # ~115 days since t0: anything larger is a corrupt message, not a test
MAX_EXAMPLES = 3  # distinct example messages kept per (name, error kind)
MAX_EXAMPLE_CHARS = 200

_WINDOW_KEYS = frozenset(
    ("second", "name", "scheduled", "ok", "failed", "dropped", "completed", "latency", "service", "lag")
)
_MESSAGE_KEYS = frozenset(
    ("version", "worker_id", "windows", "errors", "cpu_percent", "steal_percent", "in_flight_max", "interval_s",
     "t_s")
)


@dataclass
class WindowDelta:
    """Counts and histograms for one (second, name) since the worker's previous report."""

    second: int
    name: str
    scheduled: int = 0
    ok: int = 0
    failed: dict[str, int] = field(default_factory=dict)
    dropped: int = 0
    completed: int = 0
    latency: Histogram = field(default_factory=Histogram)  # done - intended, µs
    service: Histogram = field(default_factory=Histogram)  # done - sent, µs
    lag: Histogram = field(default_factory=Histogram)  # sent - intended, µs

    @property
    def failures(self) -> int:
        return sum(self.failed.values())

    def to_wire(self) -> dict[str, Any]:
        return {
            "second": self.second,
            "name": self.name,
            "scheduled": self.scheduled,
            "ok": self.ok,
            "failed": dict(self.failed),
            "dropped": self.dropped,
            "completed": self.completed,
            "latency": self.latency.encode(),
            "service": self.service.encode(),
            "lag": self.lag.encode(),
        }

    @classmethod
    def from_wire(cls, d: Any) -> WindowDelta:
        _check_keys(d, _WINDOW_KEYS, "window")
        second = _count(d["second"], "window.second")
        if second > MAX_SECOND:
            raise ValueError(f"window.second out of range: {second}")
        failed = d["failed"]
        if not isinstance(failed, dict):
            raise ValueError("window.failed must be a dict")
        for kind, n in failed.items():
            _text(kind, "window.failed kind")
            _count(n, "window.failed count")
        w = cls(
            second=second,
            name=_text(d["name"], "window.name"),
            scheduled=_count(d["scheduled"], "window.scheduled"),
            ok=_count(d["ok"], "window.ok"),
            failed=dict(failed),
            dropped=_count(d["dropped"], "window.dropped"),
            completed=_count(d["completed"], "window.completed"),
            latency=Histogram.decode(d["latency"]),
            service=Histogram.decode(d["service"]),
            lag=Histogram.decode(d["lag"]),
        )
        answered = w.ok + w.failures
        if w.scheduled != answered + w.dropped:
            raise ValueError("window: scheduled != ok + failed + dropped")
        if not w.latency.count == w.service.count == w.lag.count == answered:
            raise ValueError("window: histogram counts != ok + failed")
        return w


@dataclass
class ReportMessage:
    """What one worker recorded between two reports.

    ``errors`` holds new example messages, ``{name: {error_kind: [message, ...]}}``.
    ``cpu_percent`` is this process's CPU use (user + sys) over the ``interval_s`` seconds
    that ended ``t_s`` seconds after the worker's t0 (its own clock), so the interval the
    figure describes is ``[t_s - interval_s, t_s]`` on the test's time axis. ``steal_percent``
    is the share of the machine's CPU time its hypervisor gave to other guests over the same
    interval (None where the kernel does not report it): timings taken then are less exact.
    """

    worker_id: str = ""
    windows: list[WindowDelta] = field(default_factory=list)
    errors: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    cpu_percent: float | None = None
    steal_percent: float | None = None
    in_flight_max: int = 0
    interval_s: float = 0.0
    t_s: float = 0.0
    version: int = MESSAGE_VERSION

    def to_wire(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "worker_id": self.worker_id,
            "windows": [w.to_wire() for w in self.windows],
            "errors": {name: {k: list(v) for k, v in kinds.items()} for name, kinds in self.errors.items()},
            "cpu_percent": self.cpu_percent,
            "steal_percent": self.steal_percent,
            "in_flight_max": self.in_flight_max,
            "interval_s": self.interval_s,
            "t_s": self.t_s,
        }

    @classmethod
    def from_wire(cls, d: Any) -> ReportMessage:
        """Parse and validate; every kind of malformed input raises ValueError."""
        try:
            return cls._from_wire(d)
        except ValueError:
            raise
        except (TypeError, KeyError, AttributeError, IndexError, OverflowError) as e:
            raise ValueError(f"malformed report message: {type(e).__name__}: {e}") from e

    @classmethod
    def _from_wire(cls, d: Any) -> ReportMessage:
        if not isinstance(d, dict):
            raise ValueError("report message must be a dict")
        if type(d.get("version")) is not int or d["version"] != MESSAGE_VERSION:
            raise ValueError(f"unsupported report message version: {d.get('version')!r}")
        _check_keys(d, _MESSAGE_KEYS, "report message")
        windows = d["windows"]
        if not isinstance(windows, list):
            raise ValueError("windows must be a list")
        cpu, steal = d["cpu_percent"], d["steal_percent"]
        if cpu is not None:
            cpu = _number(cpu, "cpu_percent")
        if steal is not None:
            steal = _number(steal, "steal_percent")
        return cls(
            worker_id=_text(d["worker_id"], "worker_id"),
            windows=[WindowDelta.from_wire(w) for w in windows],
            errors=_errors(d["errors"]),
            cpu_percent=cpu,
            steal_percent=steal,
            in_flight_max=_count(d["in_flight_max"], "in_flight_max"),
            interval_s=_number(d["interval_s"], "interval_s"),
            t_s=_number(d["t_s"], "t_s", allow_negative=True),
        )


def _check_keys(d: Any, keys: frozenset[str], what: str) -> None:
    if not isinstance(d, dict) or set(d) != keys:
        got = sorted(map(str, d)) if isinstance(d, dict) else type(d).__name__
        raise ValueError(f"{what}: expected keys {sorted(keys)}, got {got}")


def _count(x: Any, what: str) -> int:
    if type(x) is not int or not 0 <= x < 2**63:
        raise ValueError(f"{what} must be a non-negative int, got {x!r}")
    return x


def _number(x: Any, what: str, allow_negative: bool = False) -> float:
    if type(x) not in (int, float) or not math.isfinite(x) or (x < 0 and not allow_negative):
        raise ValueError(f"{what} must be a finite {'' if allow_negative else 'non-negative '}number, got {x!r}")
    return float(x)


def _text(x: Any, what: str) -> str:
    if not isinstance(x, str):
        raise ValueError(f"{what} must be a string, got {type(x).__name__}")
    return x


def _errors(x: Any) -> dict[str, dict[str, list[str]]]:
    if not isinstance(x, dict):
        raise ValueError("errors must be a dict")
    out: dict[str, dict[str, list[str]]] = {}
    for name, kinds in x.items():
        _text(name, "errors name")
        if not isinstance(kinds, dict):
            raise ValueError("errors[name] must be a dict")
        out[name] = {}
        for kind, messages in kinds.items():
            _text(kind, "errors kind")
            if not isinstance(messages, list) or len(messages) > MAX_EXAMPLES:
                raise ValueError(f"errors[name][kind] must be a list of at most {MAX_EXAMPLES} strings")
            out[name][kind] = [_text(m, "error example")[:MAX_EXAMPLE_CHARS] for m in messages]
    return out
