"""What each step of a pipeline really receives, for ``--isolate-steps``: one walk through the DAG.

Many step models declare no inputs in their metadata, and a step's request is not the
pipeline's anyway (a join takes two tensors, renamed by ``tensorMap``). So before any load the
pipeline's own request (``--payload``, or synthesised from the pipeline's metadata) is walked
through the DAG once: each step, in dependency order, is called alone with the real outputs of
the steps it reads (output and input selectors and ``tensorMap`` honoured, as Core 2 joins
them), and what it received becomes its payload file. ``--step-payload MODEL=FILE`` replaces
one model's file (the walk still calls that step to feed the steps after it).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from seldon_load.errors import ConfigError, OIPError, TargetError
from seldon_load.oip import json_codec
from seldon_load.oip.payload import load_request_file, repeat_batch, synthesize_request
from seldon_load.oip.types import InferRequest, InferResponse, Tensor
from seldon_load.pipelines import PIPELINE, Pipeline, TensorRef

PAYLOAD_FILE = "payload.json"
WALK = "pipeline walk"
OVERRIDE = "--step-payload"
Tensors = dict[str, Tensor]
CallStep = Callable[[str, InferRequest], InferResponse]
"""(model, request) -> response: one inference of one step model."""


def walk(pipeline: Pipeline, request: InferRequest, call: CallStep) -> dict[str, InferRequest]:
    """step name -> the request that step received when ``request`` went through the pipeline."""
    pipeline_inputs: Tensors = {t.name: t for t in request.inputs}
    step_inputs: dict[str, Tensors] = {}
    step_outputs: dict[str, Tensors] = {}
    received: dict[str, InferRequest] = {}
    for name in pipeline.topological_order():
        step = pipeline.steps[name]
        given: Tensors = {}
        for ref in step.inputs:
            for tensor_name, tensor in _resolve(pipeline, ref, pipeline_inputs, step_inputs, step_outputs):
                new_name = step.tensor_map.get(f"{ref.step}.{ref.kind}.{tensor_name}", tensor_name)
                given[new_name] = _renamed(tensor, new_name)
        step_inputs[name] = given
        received[name] = InferRequest(inputs=list(given.values()))
        try:
            reply = call(step.model, received[name])
        except (OIPError, TargetError) as exc:
            raise TargetError(f"--isolate-steps: step {name!r} (model {step.model!r}) failed on what the "
                              f"pipeline sends it: {exc}") from None
        step_outputs[name] = {t.name: t for t in reply.outputs}
    return received


def _resolve(pipeline: Pipeline, ref: TensorRef, pipeline_inputs: Tensors, step_inputs: dict[str, Tensors],
             step_outputs: dict[str, Tensors]) -> list[tuple[str, Tensor]]:
    """The (name, tensor) pairs a reference points at, in the order they were produced."""
    if ref.step == PIPELINE:
        source = pipeline_inputs
    else:
        source = (step_inputs if ref.kind == "inputs" else step_outputs)[ref.step]
    if ref.tensor is None:
        return list(source.items())
    if ref.tensor not in source:
        raise TargetError(f"--isolate-steps: pipeline {pipeline.name!r}: {ref} not found in what the walk "
                          f"produced (have: {', '.join(source) or 'none'})")
    return [(ref.tensor, source[ref.tensor])]


def _renamed(tensor: Tensor, name: str) -> Tensor:
    return tensor if tensor.name == name else dataclasses.replace(tensor, name=name)


def walk_target(settings: Any, pipeline: Pipeline) -> dict[str, InferRequest]:
    """``walk`` against the test's target: the same host, protocol, headers and TLS as the
    pipeline's test (``settings``: its validated Settings), one request per step."""
    from seldon_load.oip.payload import encode_for
    from seldon_load.oip.target import Target
    from seldon_load.transport.clients import make_client
    from seldon_load.transport.tls import TlsConfig

    tls = TlsConfig(**settings.tls) if settings.tls else None
    clients: dict[tuple[str, str], Any] = {}

    def client_for(target: Target) -> Any:
        key = (target.kind, target.name)
        if key not in clients:
            clients[key] = make_client(target, headers=settings.headers, timeout_s=settings.timeout_s, tls=tls,
                                       pool_size=1)
        return clients[key]

    def call(model: str, request: InferRequest) -> InferResponse:
        target = dataclasses.replace(settings.target, kind="model", name=model, pipeline_path=False)
        return client_for(target).infer_decoded(encode_for(target, request))

    try:
        request = pipeline_request(lambda: client_for(settings.target).model_metadata(),
                                   settings.payload or None, settings.batch_size)
        return walk(pipeline, request, call)
    finally:
        for client in clients.values():
            client.close()


def pipeline_request(metadata: Callable[[], dict[str, Any]], payload_file: str | None,
                     batch_size: int, seed: int = 0) -> InferRequest:
    """The pipeline's request, as its test sends it: the payload file, or synthesised from metadata."""
    if payload_file:
        return repeat_batch(load_request_file(payload_file), batch_size)
    return synthesize_request(metadata(), batch_size, np.random.default_rng(seed))


def check_overrides(pipeline: Pipeline, overrides: dict[str, str]) -> None:
    """Every override names a step model of the pipeline and is a readable OIP request."""
    models = {step.model for step in pipeline.steps.values()}
    for model, path in overrides.items():
        if model not in models:
            raise ConfigError(f"--step-payload {model}={path}: {model!r} is not a step model of pipeline "
                              f"{pipeline.name!r} (steps run {', '.join(sorted(models))})")
        load_request_file(path)


def write_payloads(pipeline: Pipeline, received: dict[str, InferRequest], overrides: dict[str, str],
                   dir_of: Callable[[str], Path], base: Path) -> dict[str, dict[str, Any]]:
    """One payload per distinct step model (the first step that runs it): written to
    ``dir_of(model)/payload.json`` (shown relative to ``base``) unless overridden. Returns
    model -> what its results say:
    ``{"source", "file", "step", "inputs": [{"name", "datatype", "shape"}]}``."""
    out: dict[str, dict[str, Any]] = {}
    for name in pipeline.topological_order():
        model = pipeline.steps[name].model
        if model in out:
            continue
        if model in overrides:
            shown, source = overrides[model], OVERRIDE  # as the user gave it
            request = load_request_file(shown)
        else:
            request = received[name]
            path, source = dir_of(model) / PAYLOAD_FILE, WALK
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(json_codec.encode_request(request).body)
            shown = str(path.relative_to(base)) if path.is_relative_to(base) else str(path)
        out[model] = {"source": source, "file": shown, "step": name,
                      "inputs": [{"name": t.name, "datatype": t.datatype, "shape": list(t.shape)}
                                 for t in request.inputs]}
    return out


def describe(payload: dict[str, Any]) -> str:
    """``pipeline walk: X FP32 [1, 3]`` for the console."""
    tensors = ", ".join(f"{t['name']} {t['datatype']} {t['shape']}" for t in payload.get("inputs") or [])
    return f"{payload.get('source')}: {tensors or 'no inputs'}"
