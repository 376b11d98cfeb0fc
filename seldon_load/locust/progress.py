"""The headless progress line on stderr every few seconds: stage, target vs achieved, p99, failures."""

from __future__ import annotations

import logging
import sys

import gevent

from seldon_load.locust.session import Session

log = logging.getLogger("seldon_load")


def progress_loop(session: Session) -> None:
    while True:
        gevent.sleep(5.0)
        c = session.controller
        if c is None or c.t0 is None or c.done:
            continue
        try:
            print(progress_line(session), file=sys.stderr, flush=True)
        except Exception as exc:  # progress is cosmetic; never let it end the test
            log.debug("progress: %s", exc)


def progress_line(session: Session) -> str:
    """Current stage, target vs achieved rate, p99 and failures over the last 3 seconds."""
    c = session.controller
    el = c.elapsed()
    now = int(el)
    s = session.aggregate.summarize(max(0, now - 4), max(1, now - 1), session.names())
    stage, phase = c.plan.where(el)
    total = len(c.plan.stages)
    target = c.plan.rate_at(el) if session.settings.open_loop else None
    p99 = s.latency.percentile(99) / 1000.0 if s.latency.count else None
    parts = [f"[seldon-load] t={el:5.0f}s stage {stage + 1}/{total}{'+' if not c.plan.final else ''} {phase or 'end':6}"]
    if target is not None:
        parts.append(f"target {target:7.1f} rps")
    else:
        parts.append(f"users {c.users_at(el)}")
    parts.append(f"achieved {s.achieved_rps:7.1f} rps")
    parts.append(f"p99 {p99:8.1f} ms" if p99 is not None else "p99        - ms")
    parts.append(f"failures {s.failures} dropped {s.dropped} workers {len(c.engine_ids)}")
    return "  ".join(parts)
