"""MLServer runtime that executes a Seldon Core 2 Pipeline spec, standing in for Core 2.

Each step calls the model of the same name over OIP gRPC on the testbed itself (with the
``seldon-model`` header Core 2's gateway uses), so step models see real traffic and export
their own per-model metrics. Steps start as soon as the steps they read from (or are
triggered by) have finished, so parallel branches overlap and a join waits for all of its
inputs. ``stage_overhead_ms`` is slept before each step call and before the reply, standing
in for Core 2's Kafka hops between stages.

Model-settings ``parameters.extra``: ``spec`` (YAML path), ``pipeline`` (name in the spec;
default: the model name), ``grpc_target`` (host:port), ``stage_overhead_ms`` (default 0),
``step_timeout_s`` (default 30).

A request with the parameter ``testbed_trace: true`` gets back the parameter
``testbed_trace``: a JSON list of ``{"step", "start_ms", "end_ms"}`` (each step call, relative
to the request's arrival), so tests can check that branches overlapped. Core 2 has no such
thing; nothing is added to replies unless asked.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import grpc
from mlserver import MLModel
from mlserver.errors import InferenceError
from mlserver.grpc import dataplane_pb2 as pb
from mlserver.grpc import dataplane_pb2_grpc
from mlserver.grpc.converters import (
    InferTensorContentsConverter,
    ModelInferResponseConverter,
    ParametersConverter,
)
from mlserver.types import (
    Datatype,
    InferenceRequest,
    InferenceResponse,
    Parameters,
    RequestInput,
    ResponseOutput,
)

from seldon_load.pipelines import PIPELINE, Pipeline, TensorRef, read_pipelines

Tensor = pb.ModelInferRequest.InferInputTensor
Tensors = dict[str, Tensor]
"""Tensors by name, in the order they were produced; kept as protobuf between steps, so a
step hop costs a message copy rather than a round of pydantic validation."""
TRACE_PARAMETER = "testbed_trace"


class PipelineModel(MLModel):
    """One Seldon Pipeline, served as a model named after the pipeline."""

    async def load(self) -> bool:
        extra: dict[str, Any] = (self.settings.parameters.extra if self.settings.parameters else None) or {}
        spec_path = extra.get("spec")
        if not spec_path:
            raise ValueError("PipelineModel needs parameters.extra.spec (path to a Pipeline YAML)")
        wanted = str(extra.get("pipeline") or self.name)
        pipelines = {p.name: p for p in read_pipelines(str(spec_path))}
        if wanted not in pipelines:
            raise ValueError(f"pipeline {wanted!r} not in {spec_path} (found {', '.join(pipelines)})")
        self._pipeline: Pipeline = pipelines[wanted]
        self._order = self._pipeline.topological_order()
        self._target = str(extra.get("grpc_target") or "127.0.0.1:8081")
        self._overhead_s = float(extra.get("stage_overhead_ms", 0.0)) / 1000.0
        self._timeout_s = float(extra.get("step_timeout_s", 30.0))
        self._channel: grpc.aio.Channel | None = None
        self._stub: dataplane_pb2_grpc.GRPCInferenceServiceStub | None = None
        self._channel_loop: asyncio.AbstractEventLoop | None = None
        return True

    async def unload(self) -> bool:
        if self._channel is not None:
            await self._channel.close()
            self._channel = None
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        pipe = self._pipeline
        arrival_s = time.perf_counter()
        trace: list[dict[str, Any]] = []
        pipeline_inputs: Tensors = {t.name: _to_pb(t) for t in payload.inputs}
        step_inputs: dict[str, Tensors] = {}
        step_outputs: dict[str, Tensors] = {}
        tasks: dict[str, asyncio.Task[None]] = {}

        async def run(step_name: str) -> None:
            deps = [tasks[d] for d in pipe.dependencies(step_name)]
            if deps:
                await asyncio.gather(*deps)  # inner join: every input must be there
            step = pipe.steps[step_name]
            given: Tensors = {}
            for ref in step.inputs:
                for name, tensor in self._resolve(ref, pipeline_inputs, step_inputs, step_outputs):
                    new_name = step.tensor_map.get(f"{ref.step}.{ref.kind}.{name}", name)
                    given[new_name] = _renamed(tensor, new_name)
            step_inputs[step_name] = given
            await self._stage_overhead()
            start_s = time.perf_counter()
            step_outputs[step_name] = await self._call(step.model, given, payload.id)
            trace.append(_span(step_name, start_s, time.perf_counter(), arrival_s))

        for step_name in self._order:  # dependencies come first, so their tasks exist
            tasks[step_name] = asyncio.ensure_future(run(step_name))
        try:
            await asyncio.gather(*tasks.values())
        finally:
            for task in tasks.values():
                task.cancel()

        outputs: list[ResponseOutput] = []
        for ref in pipe.output_refs:
            for name, tensor in self._resolve(ref, pipeline_inputs, step_inputs, step_outputs):
                new_name = pipe.output_tensor_map.get(f"{ref.step}.{ref.kind}.{name}", name)
                outputs.append(_as_output(tensor, new_name))
        await self._stage_overhead()
        parameters = None
        if payload.parameters is not None and getattr(payload.parameters, TRACE_PARAMETER, False) is True:
            parameters = Parameters(**{TRACE_PARAMETER: json.dumps(trace)})
        return InferenceResponse(
            id=payload.id,
            model_name=self.name,
            model_version=self.version,
            outputs=outputs,
            parameters=parameters,
        )

    def _resolve(
        self,
        ref: TensorRef,
        pipeline_inputs: Tensors,
        step_inputs: dict[str, Tensors],
        step_outputs: dict[str, Tensors],
    ) -> list[tuple[str, Tensor]]:
        """The (name, tensor) pairs a reference points at, in production order."""
        if ref.step == PIPELINE:
            source = pipeline_inputs
        elif ref.kind == "inputs":
            source = step_inputs[ref.step]
        else:
            source = step_outputs[ref.step]
        if ref.tensor is None:
            return list(source.items())
        if ref.tensor not in source:
            raise InferenceError(
                f"pipeline {self._pipeline.name!r}: {ref} not found (have: {', '.join(source) or 'none'})"
            )
        return [(ref.tensor, source[ref.tensor])]

    async def _stage_overhead(self) -> None:
        if self._overhead_s > 0:
            await asyncio.sleep(self._overhead_s)

    def _get_stub(self) -> dataplane_pb2_grpc.GRPCInferenceServiceStub:
        """One channel per event loop (a grpc.aio channel is bound to the loop it was made in)."""
        loop = asyncio.get_running_loop()
        if self._stub is None or self._channel_loop is not loop:
            self._channel = grpc.aio.insecure_channel(self._target)
            self._stub = dataplane_pb2_grpc.GRPCInferenceServiceStub(self._channel)
            self._channel_loop = loop
        return self._stub

    async def _call(self, model: str, inputs: Tensors, request_id: str | None) -> Tensors:
        message = pb.ModelInferRequest(model_name=model, id=request_id or "", inputs=list(inputs.values()))
        try:
            reply = await self._get_stub().ModelInfer(
                message, metadata=(("seldon-model", model),), timeout=self._timeout_s
            )
        except grpc.aio.AioRpcError as exc:
            raise InferenceError(
                f"pipeline {self._pipeline.name!r}: step {model!r} failed: {exc.code().name} {exc.details()}"
            ) from None
        if reply.raw_output_contents:  # not asked for, but decode it if a server sends it
            response = ModelInferResponseConverter.to_types(reply)
            return {out.name: _to_pb(out) for out in response.outputs}
        return {
            out.name: Tensor(
                name=out.name,
                datatype=out.datatype,
                shape=out.shape,
                contents=out.contents,
                parameters=out.parameters,
            )
            for out in reply.outputs
        }


def _span(step: str, start_s: float, end_s: float, origin_s: float) -> dict[str, Any]:
    return {"step": step, "start_ms": (start_s - origin_s) * 1000.0, "end_ms": (end_s - origin_s) * 1000.0}


def _to_pb(tensor: RequestInput | ResponseOutput) -> Tensor:
    """A pydantic tensor (nested or flat data) as a protobuf input tensor with typed contents."""
    data: Any = tensor.data.root if hasattr(tensor.data, "root") else tensor.data
    values = list(_flat(data))
    if tensor.datatype == "BYTES":
        values = [v.encode() if isinstance(v, str) else bytes(v) for v in values]
    datatype = str(tensor.datatype.value if isinstance(tensor.datatype, Datatype) else tensor.datatype)
    message = Tensor(
        name=tensor.name,
        datatype=datatype,
        shape=list(tensor.shape),
        contents=InferTensorContentsConverter.from_types(values, datatype=Datatype(datatype)),  # type: ignore[arg-type]
    )
    if tensor.parameters is not None:
        for key, value in ParametersConverter.from_types(tensor.parameters).items():
            message.parameters[key].CopyFrom(value)
    return message


def _flat(data: Any) -> Any:
    if isinstance(data, (list, tuple)):
        for item in data:
            yield from _flat(item)
    else:
        yield data


def _renamed(tensor: Tensor, name: str) -> Tensor:
    if tensor.name == name:
        return tensor
    copy = Tensor()
    copy.CopyFrom(tensor)
    copy.name = name
    return copy


def _as_output(tensor: Tensor, name: str) -> ResponseOutput:
    return ResponseOutput(
        name=name,
        shape=list(tensor.shape),
        datatype=tensor.datatype,
        data=InferTensorContentsConverter.to_types(tensor.contents),
        parameters=ParametersConverter.to_types(tensor.parameters),
    )
