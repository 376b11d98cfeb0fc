"""Testbed models that fail on purpose, so the verdicts on a misbehaving server can be tested.

Model-settings ``parameters.extra`` (besides the synth model's):

- ``fail_status`` (int, default 500): the HTTP status of a failure (gRPC maps it: 500 is
  INTERNAL, 503 UNAVAILABLE).
- ``fail_for_s`` (float, default: forever): fail every request for this long after a
  *trigger*, then answer like the synth model. The trigger is the first request after the
  model was loaded, or after ``rearm_idle_s`` (default 20) without requests, so every test
  that uses the model after a pause sees the failing start again.
- ``fail_message`` (str): what the failure says.
"""

from __future__ import annotations

import asyncio
from typing import Any

from mlserver.errors import MLServerError
from mlserver.types import InferenceRequest, InferenceResponse

from seldon_load.testbed.synth import SynthModel

# name -> extra parameters; the runtime is FAULTY_RUNTIME
FAULTY_RUNTIME = "seldon_load.testbed.faulty.FaultyModel"
FAULTY_MODELS: dict[str, dict[str, Any]] = {
    "always-500": {"service_time_ms": 1.0, "fail_status": 500, "fail_message": "model exploded (always-500)"},
    "warmup-503": {"service_time_ms": 10.0, "fail_status": 503, "fail_for_s": 6.0,
                   "fail_message": "model warming up (warmup-503)"},
}


def faulty_settings(name: str) -> dict[str, Any]:
    """model-settings.json of one faulty model."""
    return {
        "name": name,
        "implementation": FAULTY_RUNTIME,
        "inputs": [{"name": "INPUT0", "datatype": "FP32", "shape": [-1, 4]}],
        "outputs": [{"name": "OUTPUT0", "datatype": "FP32", "shape": [-1, 4]}],
        "parameters": {"version": "v1", "extra": {"mode": "wait", "output_width": 4, **FAULTY_MODELS[name]}},
    }


class FaultyModel(SynthModel):
    """A synth model that answers errors: always, or for a while after each trigger."""

    async def load(self) -> bool:
        extra = (self.settings.parameters.extra if self.settings.parameters else None) or {}
        self._fail_status = int(extra.get("fail_status", 500))
        fail_for = extra.get("fail_for_s")
        self._fail_for_s = None if fail_for is None else float(fail_for)
        self._rearm_idle_s = float(extra.get("rearm_idle_s", 20.0))
        self._fail_message = str(extra.get("fail_message", "failing on purpose"))
        self._triggered_at: float | None = None
        self._last_request = 0.0
        return await super().load()

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        now = asyncio.get_running_loop().time()
        if self._triggered_at is None or now - self._last_request > self._rearm_idle_s:
            self._triggered_at = now
        self._last_request = now
        if self._fail_for_s is None or now - self._triggered_at < self._fail_for_s:
            raise MLServerError(self._fail_message, status_code=self._fail_status)
        return await super().predict(payload)
