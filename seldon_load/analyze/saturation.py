"""The load saturation point: the highest offered rate the target sustained.

The lowest unsustained rate bounds it from above; the highest sustained rate below that is
the saturation point. A stage that failed because the *generator* could not keep up never
counts as the server saturating: the verdict is then inconclusive and says so. The
throughput the server delivered while overloaded (achieved RPS of unsustained stages) is a
second, independent estimate of its capacity.
"""

from __future__ import annotations

from seldon_load.analyze.stages import Criteria


def saturation(rows: list[dict], criteria: Criteria) -> dict:
    out = {
        "saturated": False,
        "max_sustainable_rps": None,
        "first_unsustained_stage": None,
        "recommended_rps": None,
        "capacity_estimate_rps": None,
        "max_tested_rps": None,
        "inconclusive_reason": None,
        "criteria": criteria.to_dict(),
    }
    open_rows = [r for r in rows if r.get("target_rps")]
    if not open_rows:
        out["inconclusive_reason"] = "closed-loop test: no offered rate to judge"
        return out
    out["max_tested_rps"] = max(r["target_rps"] for r in open_rows)
    empty = [r for r in open_rows if not r.get("scheduled")]
    open_rows = [r for r in open_rows if r.get("scheduled")]
    if not open_rows:
        out["inconclusive_reason"] = "no requests were measured in any stage"
        return out
    generator_bad = [r for r in open_rows if not r.get("generator_healthy", True)]
    server_bad = [r for r in open_rows if r.get("sustained") is False and r.get("generator_healthy", True)]
    hi = min((r["target_rps"] for r in server_bad), default=None)
    sustained = [r for r in open_rows if r.get("sustained") and (hi is None or r["target_rps"] < hi)]
    if hi is not None:
        first = min(server_bad, key=lambda r: (r["target_rps"], r["index"]))
        out["saturated"] = True
        out["first_unsustained_stage"] = first["index"]
        achieved = [r["achieved_rps"] for r in server_bad if r.get("achieved_rps")]
        out["capacity_estimate_rps"] = round(max(achieved), 3) if achieved else None
    if sustained:
        best = max(r["target_rps"] for r in sustained)
        out["max_sustainable_rps"] = best
        out["recommended_rps"] = round(best * criteria.recommended_fraction, 3)
    if empty:
        out["inconclusive_reason"] = f"stage(s) {', '.join(str(r['index']) for r in empty)} had no measured requests"
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
