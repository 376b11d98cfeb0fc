"""The open-loop engine with inline REST requests (sent from its own greenlet, answers read at
its wake-ups) against the real testbed: the rest of the process still gets the hub."""

from __future__ import annotations

from time import perf_counter
from typing import Any

import gevent
import numpy as np
import pytest
from gevent.hub import get_hub

from seldon_load.load.engine import OpenLoopEngine, WorkerSchedule
from seldon_load.load.plan import RatePlan, parse_stages
from seldon_load.measure.recorder import Recorder
from seldon_load.oip.payload import encode_for
from seldon_load.oip.target import parse_target
from seldon_load.oip.types import InferRequest, Tensor
from seldon_load.transport.deferred import ReadBatcher
from seldon_load.transport.rest import RestClient

pytestmark = pytest.mark.integration


def test_timers_and_io_of_other_greenlets_run_while_the_engine_sleeps_inline(testbed: Any) -> None:
    # Locust's heartbeats, reports and the master's messages live on hub timers and sockets:
    # while only inline requests are out the engine sleeps without the hub, and must still
    # hand it a full loop pass often (a callback-only yield let the hub poll twice a second)
    target = parse_target(testbed.rest_url, "synth-1ms", None)
    rows = np.ones((1, 4), dtype=np.float32)
    body = encode_for(target, InferRequest(inputs=[Tensor("INPUT0", "FP32", [1, 4], rows)]))
    client = RestClient(target)
    batcher = ReadBatcher(get_hub())
    client.defer_reads(batcher)
    schedule = WorkerSchedule()
    recorder = Recorder(perf_counter(), "w")
    engine = OpenLoopEngine(send=lambda: client.infer(body), name="x", recorder=recorder, schedule=schedule,
                            batcher=batcher, start=lambda token: client.start(body, token))
    ticks: list[float] = []

    def heartbeat() -> None:
        while True:
            gevent.sleep(0.1)
            ticks.append(perf_counter())

    beat = gevent.spawn(heartbeat)
    schedule.update(RatePlan.from_stages(parse_stages("200:0s:3s")), 0.0, 1.0, 1.0)
    try:
        engine.run()
    finally:
        beat.kill()
        client.close()
        batcher.close()
    summary = recorder.drain()
    assert engine.sent == 600 and engine.dropped == 0, summary
    steady = [t for t in ticks if schedule.t0 + 0.5 <= t <= schedule.t0 + 2.5]
    assert len(steady) >= 15, f"a 0.1 s timer ran {len(steady)} times in 2 s"
    assert max(b - a for a, b in zip(steady, steady[1:], strict=False)) < 0.25
