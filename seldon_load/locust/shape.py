"""The Locust load shape every seldon-load test runs: it asks the controller each tick."""

from __future__ import annotations

import logging
from time import perf_counter

import gevent
from locust import LoadTestShape

from seldon_load.errors import SeldonLoadError
from seldon_load.locust import patches
from seldon_load.locust.session import Session
from seldon_load.settings import check_results_dir
from seldon_load.users import OIPUser, OpenLoopUser, ProcessState

log = logging.getLogger("seldon_load")

FINALS_WAIT_S = 0.9  # the shape's own short-step wait for the final reports (Locust ticks every 1 s)


class SeldonLoadShape(LoadTestShape):
    """Drives every seldon-load test: open-loop stages/auto search, or closed-loop users."""

    _run: object = None  # the Locust shape greenlet of the current test

    def tick(self):
        session: Session = self.runner.environment.seldon_load
        run = gevent.getcurrent()
        if run is not self._run:
            # Locust runs each test's shape in a greenlet of its own (a second test from the web
            # UI, New then Start, is a new one): the new test gets a new controller built from the
            # options as they are now (the form's values)
            self._run = run
            session.controller = None
            session.start_error = None
        if session.controller is None or session.controller.done:
            if session.controller is not None and session.controller.done:
                return None
            try:
                if session.environment.web_ui is not None:
                    web_ui_preflight(session)
                session.new_controller()
            except SeldonLoadError as exc:
                session.start_error = str(exc)
                log.error("%s", exc)
                if session.environment.web_ui is not None:
                    patches.mark_unstarted_test_stopped(self.runner)
                return None
        controller = session.controller
        answer = controller.tick()
        if answer is not None and controller.finishing_since is not None:
            # the workers' final reports come within milliseconds of the flush the tick asked
            # for, and Locust ticks once a second: wait for them here instead
            deadline = perf_counter() + FINALS_WAIT_S
            while not controller.all_final and perf_counter() < deadline:
                gevent.sleep(0.02)
            answer = controller.tick()
        if answer is None:
            return None
        count, rate = answer
        cls = OpenLoopUser if session.settings.open_loop else OIPUser
        return count, rate, [cls]


def web_ui_preflight(session: Session) -> None:
    """A test started from the web UI gets the checks a headless run does before any load:
    the form's settings, the target reachable, the model ready and known, the payload built.
    Raises SeldonLoadError (the shape then ends the test before it sends anything)."""
    settings = session.load_settings()
    check_results_dir(settings.results_dir)
    session.pipeline_spec()
    log.info("preflight: checking %s before the test", settings.target.safe_host)
    probe = ProcessState(session.environment, settings, "preflight")
    try:
        probe.preflight()
    finally:
        probe.close()
