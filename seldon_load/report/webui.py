"""A "Saturation" tab in Locust's web UI: the live stage table and the current verdict.

Locust's React UI renders extra tabs from ``extended_tabs``/``extended_tables`` template
arguments and fills them from an ``extended_stats`` entry of ``/stats/requests``. React
escapes every text it renders; values are plain strings and numbers here.
"""

from __future__ import annotations

import json

KEY = "seldon-saturation"

COLUMNS = [
    ("stage", "Stage"), ("target_rps", "Target RPS"), ("achieved_rps", "Achieved RPS"),
    ("p50_ms", "p50 ms"), ("p99_ms", "p99 ms"), ("failures", "Failures"), ("dropped", "Dropped"),
    ("verdict", "Verdict"), ("reasons", "Why"),
]


def live_rows(session) -> list[dict]:
    from seldon_load.analyze.judge import live_headline
    from seldon_load.analyze.stages import stage_table
    from seldon_load.settings import scrub

    c = session.controller
    if c is None or c.t0 is None or session.settings is None:
        return []
    rows = stage_table(session.aggregate, c.plan.stages, session.names(), session.settings.criteria,
                       session.settings.open_loop, until_s=c.elapsed(), live=True,
                       workers_timeline=c.workers_timeline, reruns=c.reruns)
    out = []
    for r in rows:
        verdict = {True: "sustained", False: "NOT sustained", None: "-"}[r.get("sustained")]
        if r.get("partial"):
            verdict += " (so far)"
        out.append({
            "stage": str(r["index"]), "target_rps": r["target_rps"] if r["target_rps"] is not None else "-",
            "achieved_rps": _r(r["achieved_rps"]), "p50_ms": _r(r["latency_ms"].get("p50")),
            "p99_ms": _r(r["latency_ms"].get("p99")), "failures": r["failures"], "dropped": r["dropped"],
            "verdict": verdict, "reasons": scrub("; ".join(r["reasons"]), session.settings.secrets),
        })
    text = scrub(live_headline(rows, session.settings.criteria, session.settings.open_loop), session.settings.secrets)
    out.append({"stage": "verdict", "target_rps": "", "achieved_rps": "", "p50_ms": "", "p99_ms": "",
                "failures": "", "dropped": "", "verdict": text, "reasons": ""})
    return out


def _r(x):
    return None if x is None else round(float(x), 2)


def install(environment, session) -> None:
    web_ui = environment.web_ui
    web_ui.template_args["extended_tabs"] = [{"title": "Saturation", "key": KEY}]
    web_ui.template_args["extended_tables"] = [
        {"key": KEY, "structure": [{"key": k, "title": t} for k, t in COLUMNS]}
    ]

    @web_ui.app.after_request
    def _extend(response):
        from flask import request

        if request.path != "/stats/requests" or response.status_code != 200:
            return response
        try:
            body = response.get_json()
            body["extended_stats"] = [{"key": KEY, "data": live_rows(session)}]
            response.set_data(json.dumps(body))
        except Exception:  # the tab is a view; never break Locust's own stats endpoint
            pass
        return response
