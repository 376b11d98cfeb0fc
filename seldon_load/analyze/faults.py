"""Which failures say something about load, and which say the target is broken.

A server at its limit times out, sheds load (429, 503, RESOURCE_EXHAUSTED) or builds a queue:
those failures belong to the saturation verdict. A refused connection, a reset with no answer,
DNS or TLS trouble, a 4xx or an invalid answer say the target is down or misconfigured,
whatever the rate: a stage dominated by them is a *target fault*, never "unsustained by load".
Other 5xx (and gRPC UNAVAILABLE/INTERNAL/UNKNOWN) can be either: they count as a fault when
they also occur at the lowest load of the run, as load otherwise.
"""

from __future__ import annotations

import re

LOAD = "load"
FAULT = "fault"
AMBIGUOUS = "ambiguous"

_LOAD_KINDS = frozenset((
    "timeout", "http_429", "http_503", "grpc_RESOURCE_EXHAUSTED", "grpc_DEADLINE_EXCEEDED", "dropped", "cancelled",
))
_FAULT_KINDS = frozenset((
    "connection_refused", "connection_reset", "connection_error", "tls_error", "invalid_response", "oip_error",
))
_GRPC_FAULTS = frozenset((
    "INVALID_ARGUMENT", "NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED", "FAILED_PRECONDITION", "OUT_OF_RANGE",
    "UNIMPLEMENTED", "UNAUTHENTICATED", "DATA_LOSS",
))
# what a transport says when the connection itself failed (gRPC reports it as UNAVAILABLE)
_UNREACHABLE = re.compile(r"refused|reset by peer|name or service|resolv|no route|unreachable|certificate|ssl",
                          re.IGNORECASE)
EXAMPLE_CHARS = 200


def kind_class(kind: str, examples: list[str] | None = None) -> str:
    """LOAD, FAULT or AMBIGUOUS for one error kind (examples: messages seen for it)."""
    if kind in _LOAD_KINDS:
        return LOAD
    if kind in _FAULT_KINDS:
        return FAULT
    if kind.startswith("http_"):
        code = kind[5:]
        return FAULT if code.startswith("4") else AMBIGUOUS
    if kind.startswith("grpc_"):
        if kind[5:] in _GRPC_FAULTS:
            return FAULT
        if examples and any(_UNREACHABLE.search(m) for m in examples):
            return FAULT
        return AMBIGUOUS
    return AMBIGUOUS


def _lowest(rows: list[dict]) -> dict | None:
    """The measured stage with the lowest load (target rate, else users, else the first); a stage
    run again to confirm it gives way to its re-run."""
    measured = [r for r in rows if r.get("scheduled") and r.get("rerun_as") is None]
    if not measured:
        return None
    return min(measured, key=lambda r: (r.get("target_rps") or r.get("users") or 0, r.get("index", 0)))


def fault_kinds(rows: list[dict], examples: dict[int, dict[str, list[str]]], max_error_ratio: float) -> set[str]:
    """Error kinds that are target faults in this run: the fault classes, plus ambiguous kinds
    that failed more than ``max_error_ratio`` of the lowest-load stage."""
    low = _lowest(rows)
    kinds: set[str] = set()
    for r in rows:
        for kind in r.get("failures_by_kind") or {}:
            cls = kind_class(kind, examples.get(r["index"], {}).get(kind))
            if cls == FAULT:
                kinds.add(kind)
            elif cls == AMBIGUOUS and low is not None:
                n = (low.get("failures_by_kind") or {}).get(kind, 0)
                if n and n / low["scheduled"] > max_error_ratio:
                    kinds.add(kind)
    return kinds


def stage_fault(row: dict, faults: set[str], examples: dict[str, list[str]], max_error_ratio: float) -> dict | None:
    """``{kind, count, example}`` when the stage's failures are dominated by target faults (more
    than the error limit, and at least as many as the load-related failures and drops)."""
    scheduled = row.get("scheduled") or 0
    by_kind = {k: n for k, n in (row.get("failures_by_kind") or {}).items() if k in faults and n}
    total = sum(by_kind.values())
    if not scheduled or not total or total / scheduled <= max_error_ratio:
        return None
    load = (row.get("failures") or 0) + (row.get("dropped") or 0) - total
    if total < load:
        return None
    kind = max(by_kind, key=lambda k: (by_kind[k], k))
    example = (examples.get(kind) or [""])[0]
    return {"kind": kind, "count": by_kind[kind], "failures": total, "example": example[:EXAMPLE_CHARS]}


def describe(fault: dict) -> str:
    """One line: ``connection_refused x 40: [Errno 111] Connection refused``."""
    text = f"{fault.get('kind')} x {fault.get('count')}"
    return f"{text}: {fault['example']}" if fault.get("example") else text
