"""Synthetic MLServer runtime with a known capacity, so saturation tests have a right answer.

Model-settings ``parameters.extra``:

- ``service_time_ms`` (float, default 5.0): time one request spends in the model.
- ``mode``: ``"wait"`` serialises requests without using the CPU: one request at a time per
  model, so capacity is exactly ``1000 / service_time_ms`` rps even when the load generator
  shares the machine's cores. ``"busy"`` spins the CPU for the service time (capacity about
  ``workers / service_time``), standing in for a CPU-bound model. ``"cpu"`` spins until the
  serving thread has *used* the service time of CPU (``time.thread_time``), so each request
  costs exactly that much CPU however busy the machine is: the known cost that resource
  measurements (CPU-ms per request) are checked against.
- ``output_width`` (int, default 4): columns of ``OUTPUT0``.
- ``n_inputs`` (int, default 1): declared inputs (``INPUT0``, ``INPUT1``, ...); 2 for joins.
- ``declare_metadata`` (bool, default true): false leaves the metadata's inputs and outputs
  empty, as many real step models do (their callers must know what to send).

Any inputs are accepted (first dim = batch). ``OUTPUT0`` is FP32 ``[batch, output_width]``
whose every column is the sum of all numeric input values of that row, over all inputs, so
tests can check values through pipelines.
"""

from __future__ import annotations

import asyncio
import time

import numpy as np
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.errors import InferenceError
from mlserver.types import InferenceRequest, InferenceResponse, MetadataTensor, RequestInput

WAIT = "wait"
BUSY = "busy"
CPU = "cpu"
OUTPUT_NAME = "OUTPUT0"


def row_sums(inputs: list[RequestInput]) -> np.ndarray:
    """Sum of every numeric value per batch row, over all inputs (BYTES inputs are skipped)."""
    if not inputs:
        raise InferenceError("synth model needs at least one input")
    batch = _batch_of(inputs[0])
    total = np.zeros(batch, dtype=np.float64)
    for request_input in inputs:
        if request_input.datatype == "BYTES":
            continue
        values = np.asarray(NumpyCodec.decode_input(request_input), dtype=np.float64)
        if _batch_of(request_input) != batch:
            raise InferenceError(
                f"input {request_input.name!r} has batch {_batch_of(request_input)}, expected {batch}"
            )
        total += values.reshape(batch, -1).sum(axis=1)
    return total


def _batch_of(request_input: RequestInput) -> int:
    return int(request_input.shape[0]) if request_input.shape else 1


class SynthModel(MLModel):
    """A model whose capacity is set by configuration rather than by the machine."""

    async def load(self) -> bool:
        extra = (self.settings.parameters.extra if self.settings.parameters else None) or {}
        self._service_time_s = float(extra.get("service_time_ms", 5.0)) / 1000.0
        self._mode = str(extra.get("mode", WAIT))
        if self._mode not in (WAIT, BUSY, CPU):
            raise ValueError(f"synth mode must be 'wait' or 'busy' (or 'cpu'), got {self._mode!r}")
        if self._service_time_s < 0:
            raise ValueError("synth service_time_ms must be >= 0")
        self._output_width = int(extra.get("output_width", 4))
        n_inputs = int(extra.get("n_inputs", 1))
        if extra.get("declare_metadata", True) is False:
            self.inputs, self.outputs = [], []
        else:
            if not self.inputs:
                self.inputs = [
                    MetadataTensor(name=f"INPUT{i}", datatype="FP32", shape=[-1, 4]) for i in range(n_inputs)
                ]
            if not self.outputs:
                self.outputs = [MetadataTensor(name=OUTPUT_NAME, datatype="FP32", shape=[-1, self._output_width])]
        # Virtual clock: the loop time at which the model is next free (wait mode).
        self._next_free_s = 0.0
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        sums = row_sums(payload.inputs)
        if self._mode == WAIT:
            await self._wait_turn()
        elif self._mode == BUSY:
            _spin(self._service_time_s)
        else:
            _burn_cpu(self._service_time_s)
        values = np.repeat(sums.astype(np.float32)[:, None], self._output_width, axis=1)
        return InferenceResponse(
            id=payload.id,
            model_name=self.name,
            model_version=self.version,
            outputs=[NumpyCodec.encode_output(OUTPUT_NAME, values)],
        )

    async def _wait_turn(self) -> None:
        """Serialise without a lock: each request books the next free slot on a virtual clock,
        so sleep overshoot delays a reply but never lowers the capacity."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        self._next_free_s = max(now, self._next_free_s) + self._service_time_s
        delay_s = self._next_free_s - now
        if delay_s > 0:
            await asyncio.sleep(delay_s)


def _spin(duration_s: float) -> None:
    """Hold the CPU (and the event loop, like a CPU-bound model would) for duration_s."""
    end = time.perf_counter() + duration_s
    while time.perf_counter() < end:
        pass


def _burn_cpu(cpu_s: float) -> None:
    """Spin until this thread has used cpu_s of CPU time (not wall time: preemption adds none)."""
    end = time.thread_time() + cpu_s
    while time.thread_time() < end:
        pass
