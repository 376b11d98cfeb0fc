"""Verdicts while a test runs: the auto search's judge and the live tab's headline.

Both use the same stage table as the final results (``stage_table``: target faults marked
with the whole run so far in view, the generator judged on what was sent, in-flight
included), so what the search and the web UI say agrees with results.json.
"""

from __future__ import annotations

from seldon_load.analyze.faults import describe
from seldon_load.analyze.saturation import saturation
from seldon_load.analyze.stages import Criteria, fell_behind, sending_limits, stage_table
from seldon_load.load.control import Verdict
from seldon_load.load.plan import StageWindow


def _message(row: dict) -> str | None:
    """The stage's dominant failure in one line (kind, count, first example)."""
    if row.get("fault"):
        return describe(row["fault"])
    kinds = row.get("failures_by_kind") or {}
    if not kinds:
        return None
    kind = max(kinds, key=lambda k: (kinds[k], k))
    return f"{kind} x {kinds[kind]}"


def auto_verdict(agg, stages: list[StageWindow], names, criteria: Criteria,
                 workers_timeline: list[dict] | None = None) -> Verdict:
    """The verdict on the last of ``stages`` for the auto search.

    Its capacity estimate: completions a second (by completion time; by send time an
    overloaded stage counts its offered rate) less the share that failed. Not if the generator
    lagged or ran out of CPU (its own limit then)."""
    row = stage_table(agg, stages, names, criteria, True, workers_timeline=workers_timeline)[-1]
    answered, good = row["requests"], None
    if answered and not sending_limits(row["send_lag_ms"]["p99"], row["cpu_percent_max"], criteria):
        good = row["achieved_rps"] * row["ok"] / answered
    bad = (row["failures"] + row["dropped"]) / row["scheduled"] if row["scheduled"] else 0.0
    message = _message(row)
    if message and not row.get("fault"):
        kind = message.split(" x ", 1)[0]
        examples = agg.summarize(row["start_s"], row["end_s"], names).error_examples.get(kind)
        if examples:
            message = f"{message}: {examples[0]}"
    return Verdict(ready=True, sustained=bool(row["sustained"]), throughput_rps=good,
                   fell_behind=fell_behind(row, criteria), errors=bad > criteria.max_error_ratio,
                   fault=row.get("fault") is not None, all_failed=bool(answered) and row["ok"] == 0,
                   message=message)


def live_headline(rows: list[dict], criteria: Criteria, open_loop: bool) -> str:
    """The live tab's verdict line, from the same analysis as the final results."""
    sat = saturation(rows, criteria)
    if sat.get("target_fault") and not any(r.get("sustained") for r in rows):
        return f"TARGET FAULT: {sat['inconclusive_reason']}"
    if sat.get("inconclusive_reason") and open_loop:
        return f"INCONCLUSIVE: {sat['inconclusive_reason']}"
    if sat.get("saturated"):
        if sat.get("max_sustainable_rps"):
            return f"saturation point {sat['max_sustainable_rps']} rps; recommended {sat['recommended_rps']} rps"
        return "saturated at the first stage"
    return "not saturated so far"
