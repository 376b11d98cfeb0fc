"""The load saturation point: the highest offered rate the target sustained.

The lowest unsustained rate bounds it from above; the highest sustained rate below that is
the saturation point. Only stages that failed *for load* count: a stage where the generator
could not keep up makes the verdict inconclusive, and so does a stage dominated by target
faults (``fault``: the target was down or broken, which says nothing about its capacity)
when it lies where the saturation point would be. A stage re-run to confirm its verdict
(``rerun_as``) gives way to the re-run. A sustained stage above an unsustained one is an
inconsistency: the verdict is then inconclusive, never a number. The throughput of good
answers the server delivered while overloaded is a second, independent capacity estimate.
"""

from __future__ import annotations

from seldon_load.analyze.faults import describe
from seldon_load.analyze.stages import Criteria


def _empty(criteria: Criteria) -> dict:
    return {
        "saturated": False,
        "max_sustainable_rps": None,
        "first_unsustained_stage": None,
        "recommended_rps": None,
        "capacity_estimate_rps": None,
        "max_tested_rps": None,
        "inconclusive_reason": None,
        "target_fault": None,
        "criteria": criteria.to_dict(),
    }


def all_failed(rows: list[dict]) -> dict | None:
    """The first failure when every answered request of the run failed, else None."""
    answered = [r for r in rows if r.get("requests")]
    if not answered or any(r.get("ok") != 0 or r.get("failures") != r["requests"] for r in answered):
        return None
    for r in answered:
        if r.get("fault"):
            return dict(r["fault"], stage=r["index"])
    kinds = answered[0].get("failures_by_kind") or {}
    kind = max(kinds, key=kinds.get) if kinds else "failure"
    return {"kind": kind, "count": kinds.get(kind, 0), "example": "", "stage": answered[0]["index"]}


def _good_rps(r: dict) -> float | None:
    """Good answers a second: completions less the share that failed."""
    if not r.get("achieved_rps") or not r.get("requests"):
        return None
    ok = r["ok"] if r.get("ok") is not None else r["requests"] - (r.get("failures") or 0)
    return r["achieved_rps"] * ok / r["requests"]


def saturation(rows: list[dict], criteria: Criteria) -> dict:
    out = _empty(criteria)
    open_rows = [r for r in rows if r.get("target_rps")]
    if not open_rows:
        out["inconclusive_reason"] = "closed-loop test: no offered rate to judge"
        return out
    out["max_tested_rps"] = max(r["target_rps"] for r in open_rows)
    empty = [r for r in open_rows if not r.get("scheduled") and not r.get("partial")]  # live: none back yet
    open_rows = [r for r in open_rows if r.get("scheduled") and r.get("rerun_as") is None]
    if not open_rows:
        out["inconclusive_reason"] = "no requests were measured in any stage"
        return out
    every = all_failed(open_rows)
    if every is not None:
        out["target_fault"] = every
        out["inconclusive_reason"] = f"target fault: every request failed ({describe(every)})"
        return out
    faulty = [r for r in open_rows if r.get("fault")]
    judged = [r for r in open_rows if not r.get("fault")]
    generator_bad = [r for r in judged if not r.get("generator_healthy", True)]
    server_bad = [r for r in judged if r.get("sustained") is False and r.get("generator_healthy", True)]
    hi = min((r["target_rps"] for r in server_bad), default=None)
    sustained = [r for r in judged if r.get("sustained")]
    below = [r for r in sustained if hi is None or r["target_rps"] < hi]
    if hi is not None:
        first = min(server_bad, key=lambda r: (r["target_rps"], r["index"]))
        out["saturated"] = True
        out["first_unsustained_stage"] = first["index"]
        good = [x for x in map(_good_rps, server_bad) if x]
        out["capacity_estimate_rps"] = round(max(good), 3) if good else None
    if below:
        best = max(r["target_rps"] for r in below)
        out["max_sustainable_rps"] = best
        out["recommended_rps"] = round(best * criteria.recommended_fraction, 3)
    if empty:
        out["inconclusive_reason"] = f"stage(s) {', '.join(str(r['index']) for r in empty)} had no measured requests"
    _judge_faults(out, faulty, sustained, hi)
    above = [r for r in sustained if hi is not None and r["target_rps"] > hi]
    if above:
        top = max(above, key=lambda r: r["target_rps"])
        first = next(r for r in server_bad if r["index"] == out["first_unsustained_stage"])
        out["inconclusive_reason"] = (
            f"inconsistent: stage {top['index']} sustained {top['target_rps']:g} rps, above stage {first['index']} "
            f"at {hi:g} rps, which was not ({'; '.join(first.get('reasons') or [])})")
        out.update(saturated=False, max_sustainable_rps=None, recommended_rps=None)
    gen_low = min((r["target_rps"] for r in generator_bad), default=None)
    if gen_low is not None and (hi is None or gen_low <= hi):
        out["inconclusive_reason"] = (
            f"the load generator could not keep up at {gen_low:g} rps (send lag or CPU): "
            "add workers; this is not a server limit"
        )
        if hi is None or gen_low < hi:
            out["saturated"] = False
            out["first_unsustained_stage"] = None
    return out


def _judge_faults(out: dict, faulty: list[dict], sustained: list[dict], hi: float | None) -> None:
    """Target faults spoil the verdict when no stage was sustained, or when they hit a rate
    between the saturation point and the first stage unsustained by load (or above the
    highest sustained rate, when none was)."""
    if not faulty:
        return
    lo = out["max_sustainable_rps"]
    spoiling = [r for r in faulty if not sustained or ((lo is None or r["target_rps"] > lo)
                                                       and (hi is None or r["target_rps"] < hi))]
    if not spoiling:
        return
    first = min(spoiling, key=lambda r: r["index"])
    out["target_fault"] = dict(first["fault"], stage=first["index"])
    where = f"stage {first['index']} at {first['target_rps']:g} rps"
    if not sustained:
        out["inconclusive_reason"] = f"target fault in {where}: {describe(first['fault'])}; no stage was sustained"
        out.update(saturated=False, first_unsustained_stage=None)
    else:
        out["inconclusive_reason"] = (f"target fault in {where} ({describe(first['fault'])}): the target failed "
                                      "for reasons other than load, so its capacity there is unknown")
