"""Stage table: one row per stage over its measured window, with the sustained verdict.

Counts and percentiles are over requests whose *intended* send time lies in the stage's
hold after the settle time; achieved RPS counts answers by *completion* time in the same
window (a throughput). A stage is sustained when the server keeps up (achieved >= a ratio
of the target), few requests fail or are dropped, latency does not keep rising through the
hold (no growing queue) and the optional p99 SLO holds. A stage where the generator lagged
or ran out of CPU is flagged: its verdict says nothing about the server. A stage whose
failures are dominated by target faults (refused connections, 4xx ...: see ``faults``) carries
a ``fault`` and is judged neither sustained nor saturated by load.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from seldon_load.analyze.faults import describe, fault_kinds, stage_fault
from seldon_load.load.plan import StageWindow


@dataclass(frozen=True)
class Criteria:
    min_achieved_ratio: float = 0.95
    max_error_ratio: float = 0.01
    max_latency_trend: float = 1.5
    min_trend_delta_ms: float = 10.0  # a real queue grows by (overload x hold): far more than this
    slo_p99_ms: float | None = None
    settle_s: float = 2.0
    recommended_fraction: float = 0.8
    max_send_lag_ms: float = 10.0
    max_cpu_percent: float = 90.0
    note_steal_percent: float = 10.0  # above this, results say the machine's timings were disturbed

    def to_dict(self) -> dict:
        return asdict(self)


GENERATOR = "generator"


def _r(x: float | None, nd: int = 3) -> float | None:
    return None if x is None else round(float(x), nd)


def latency_trend(agg, start: int, end: int, names) -> tuple[float | None, float | None]:
    """Ratio and difference (ms) of median latency in the last vs the first third of a window."""
    span = end - start
    if span < 3:
        return None, None
    third = max(1, span // 3)
    first = agg.summarize(start, start + third, names).latency
    last = agg.summarize(end - third, end, names).latency
    if not first.count or not last.count:
        return None, None
    p_first = first.percentile(50) / 1000.0
    p_last = last.percentile(50) / 1000.0
    if p_first <= 0:
        return None, p_last - p_first
    return p_last / p_first, p_last - p_first


def sending_limits(lag_p99_ms: float | None, cpu_percent_max: float | None, criteria: Criteria) -> list[str]:
    """Reasons the generator itself was the limit while sending (send lag, CPU)."""
    reasons = []
    if lag_p99_ms is not None and lag_p99_ms > criteria.max_send_lag_ms:
        reasons.append(f"generator: send lag p99 {lag_p99_ms:.1f} ms > {criteria.max_send_lag_ms:g} ms")
    if cpu_percent_max is not None and cpu_percent_max > criteria.max_cpu_percent:
        reasons.append(f"generator: CPU {cpu_percent_max:.0f}% > {criteria.max_cpu_percent:g}%")
    return reasons


def fell_behind(row: dict, criteria: Criteria) -> bool:
    """Did the server fall behind the stage's rate (too few answers, or a queue growing)?

    Unlike a stage that kept up but broke the SLO or failed requests, such a stage was at or
    above capacity, so the saturation search may narrow towards its throughput."""
    duration = (row.get("end_s") or 0) - (row.get("start_s") or 0)
    if _short_of_rate(row.get("achieved_rps"), row.get("target_rps"), criteria, duration or None):
        return True
    return _queue_growing(row.get("latency_trend"), row.get("latency_trend_delta_ms"), criteria)


def _short_of_rate(achieved_rps: float | None, target_rps: float | None, criteria: Criteria,
                   duration_s: float | None = None) -> bool:
    """Fewer answers than the ratio asks, by more than one whole arrival in the window (at 0.5 rps
    a 4 s window answers 2 of the 2.5 a rate asks for, which is no shortfall)."""
    slack = 1.0 / duration_s if duration_s else 0.0
    return (bool(target_rps) and achieved_rps is not None
            and achieved_rps < criteria.min_achieved_ratio * target_rps - slack)


def _queue_growing(trend: float | None, delta_ms: float | None, criteria: Criteria) -> bool:
    return trend is not None and trend > criteria.max_latency_trend and (delta_ms or 0) > criteria.min_trend_delta_ms


def schedule_short(scheduled: int, in_flight: int, target_rps: float, duration_s: float, n_workers: int,
                   criteria: Criteria) -> bool:
    """Was less sent (answered, dropped or still in flight) than the schedule made due? A window
    holds whole arrivals, and each worker's share may start or end one arrival early or late:
    at 0.5 rps a 4 s window holds 1 to 3 of the 2 due, which is no shortfall."""
    due = target_rps * duration_s
    return scheduled + in_flight < criteria.min_achieved_ratio * due - (1 + n_workers)


def worker_lost(workers_timeline: list[dict] | None, from_s: float, to_s: float) -> bool:
    """Did the number of connected workers fall between from_s and to_s?"""
    tl = workers_timeline or []
    for before, after in zip(tl, tl[1:], strict=False):
        if after.get("workers", 0) < before.get("workers", 0) and from_s <= after.get("t_s", 0) <= to_s:
            return True
    return False


def _lagging(lag_p99_ms: float | None, cpu_percent_max: float | None, criteria: Criteria) -> bool:
    """Evidence, short of the limits, that the generator struggled (half the lag limit, 80 % CPU)."""
    return ((lag_p99_ms or 0.0) > criteria.max_send_lag_ms / 2
            or (cpu_percent_max or 0.0) > 0.8 * criteria.max_cpu_percent)


def stage_row(agg, win: StageWindow, names, criteria: Criteria, open_loop: bool = True,
              now_s: float | None = None, workers_timeline: list[dict] | None = None) -> dict:
    """One stage (without the run-wide fault marking of ``stage_table``); with ``now_s`` (a live
    view) only the seconds already complete are counted."""
    return _measure(agg, win, names, criteria, open_loop, now_s, workers_timeline)[0]


def _measure(agg, win: StageWindow, names, criteria: Criteria, open_loop: bool, now_s: float | None,
             workers_timeline: list[dict] | None) -> tuple[dict, dict[str, list[str]]]:
    start, end = win.measured(criteria.settle_s)
    partial = now_s is not None and end > int(now_s) - 1
    if partial:
        end = max(start + 1, int(now_s) - 1)
    s = agg.summarize(start, end, names)
    answered = s.ok + s.failures
    lat = s.latency.summary_ms()
    svc = s.service.summary_ms()
    lag = s.lag.summary_ms()
    trend, trend_delta = latency_trend(agg, start, end, names)
    row = {
        "index": win.index,
        "target_rps": _r(win.target_rps) if open_loop else None,
        "users": win.users,
        "ramp_start_s": _r(win.ramp_start_s),
        "start_s": float(start),
        "end_s": float(end),
        "offered_rps": _r(s.offered_rps),
        "achieved_rps": _r(s.achieved_rps),
        "scheduled": s.scheduled,
        "requests": answered,
        "ok": s.ok,
        "failures": s.failures,
        "failures_by_kind": dict(sorted(s.failed.items())),
        "dropped": s.dropped,
        "latency_ms": lat,
        "service_ms": svc,
        "send_lag_ms": {"p50": lag.get("p50"), "p99": lag.get("p99"), "max": lag.get("max")},
        "cpu_percent_max": _r(s.cpu_percent_max, 1),
        "steal_percent_max": _r(s.steal_percent_max, 1),
        "latency_trend": _r(trend),
        "latency_trend_delta_ms": _r(trend_delta),
    }
    if partial:
        row["partial"] = True
    reasons: list[str] = []
    gen_reasons = sending_limits(lag.get("p99"), s.cpu_percent_max, criteria)
    if open_loop and win.target_rps > 0 and s.scheduled:
        n_workers = max(1, len(agg.workers()))
        lost = worker_lost(workers_timeline, win.ramp_start_s, float(end))
        if schedule_short(s.scheduled, (s.in_flight_max or 0) * n_workers, win.target_rps, s.duration_s,
                          n_workers, criteria) and (lost or _lagging(lag.get("p99"), s.cpu_percent_max, criteria)):
            # the schedule itself was not sent (a worker lost, or the generator behind): not the server
            gen_reasons.append(f"generator: offered only {s.offered_rps:.1f} of {win.target_rps:g} rps "
                               f"({'a worker was lost' if lost else 'generator behind'})")
    row["generator_healthy"] = not gen_reasons
    if s.scheduled == 0:
        reasons.append("no requests in the measured window")
    if open_loop and win.target_rps > 0 and s.scheduled:
        if _short_of_rate(s.achieved_rps, win.target_rps, criteria, s.duration_s):
            reasons.append(f"achieved {s.achieved_rps:.1f} rps < {criteria.min_achieved_ratio:.0%} of {win.target_rps:g} rps")
    if s.scheduled:
        bad = (s.failures + s.dropped) / s.scheduled
        if bad > criteria.max_error_ratio:
            reasons.append(f"{bad:.1%} failed or dropped > {criteria.max_error_ratio:.1%}")
    if _queue_growing(trend, trend_delta, criteria):
        reasons.append(f"latency rising through the hold (x{trend:.2f}, +{trend_delta:.1f} ms): queue growing")
    if criteria.slo_p99_ms is not None and lat.get("p99") is not None and lat["p99"] > criteria.slo_p99_ms:
        reasons.append(f"p99 {lat['p99']:.1f} ms > SLO {criteria.slo_p99_ms:g} ms")
    row["sustained"] = not reasons and not gen_reasons if open_loop else None
    row["reasons"] = gen_reasons + reasons
    if partial and s.scheduled == 0:  # live: every request of the window is still out (overload)
        row["sustained"], row["reasons"] = None, ["no answers yet"]
    row["fault"] = None
    return row, s.error_examples


def stage_table(agg, stages: list[StageWindow], names, criteria: Criteria, open_loop: bool = True,
                until_s: float | None = None, live: bool = False,
                workers_timeline: list[dict] | None = None, reruns: dict[int, int] | None = None) -> list[dict]:
    """Rows for the stages whose measured window has started (by ``until_s`` if given), with
    target faults marked (``fault``; see ``analyze.faults``) and the stages the auto search
    re-ran to confirm them (``rerun_as`` on the first run, ``rerun_of`` on the re-run).

    ``live`` counts only seconds already complete (and reported) by ``until_s``.
    """
    rows, examples = [], {}
    for win in stages:
        start, _ = win.measured(criteria.settle_s)
        if until_s is not None and start >= (until_s - 1 if live else until_s):
            continue
        row, ex = _measure(agg, win, names, criteria, open_loop, until_s if live else None, workers_timeline)
        rows.append(row)
        examples[row["index"]] = ex
    by_index = {r["index"]: r for r in rows}
    for first, again in (reruns or {}).items():
        if first in by_index and again in by_index:
            by_index[first]["rerun_as"] = again
            by_index[again]["rerun_of"] = first
    mark_faults(rows, examples, criteria)
    return rows


def mark_faults(rows: list[dict], examples: dict[int, dict[str, list[str]]], criteria: Criteria) -> None:
    """Set ``fault`` on stages dominated by target faults; such a stage is not sustained, and its
    first reason says so."""
    kinds = fault_kinds(rows, examples, criteria.max_error_ratio)
    for row in rows:
        fault = stage_fault(row, kinds, examples.get(row["index"], {}), criteria.max_error_ratio)
        row["fault"] = fault
        if fault is not None:
            row["reasons"] = [f"target fault: {describe(fault)}", *row["reasons"]]
            if row.get("sustained") is not None:
                row["sustained"] = False
