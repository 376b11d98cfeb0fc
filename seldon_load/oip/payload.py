"""Where request payloads come from, and the pool of pre-encoded variants the load loop sends.

A payload is encoded once, before any load, for the target's protocol: REST gets an
``EncodedRequest`` (body + headers), gRPC a serialized ``ModelInferRequest``. The pool holds
a few distinct variants (same shapes, different random values) so servers and caches do
not see one identical request over and over; ``next()`` hands them out round-robin without
allocating.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from seldon_load.errors import ConfigError, OIPError, TargetError
from seldon_load.limits import MAX_PAYLOAD_BYTES, read_capped
from seldon_load.oip import datatypes, json_codec, pb_codec
from seldon_load.oip.target import Target
from seldon_load.oip.types import EncodedRequest, InferRequest, Tensor
from seldon_load.safe_text import clip

DEFAULT_POOL_SIZE = 8
_INT_HIGH = 100  # random integers in [0, 100): valid for every integer datatype, and as class ids


def load_request_file(path: str | Path) -> InferRequest:
    """An OIP JSON inference request from a file; ConfigError naming the file and the problem.

    Read with a cap (MAX_PAYLOAD_BYTES): a huge file, a FIFO or a device is refused unread.
    """
    body = read_capped(path, MAX_PAYLOAD_BYTES, "payload file")
    try:
        return json_codec.decode_request(body)
    except OIPError as exc:
        raise ConfigError(f"payload file {clip(path)}: {exc}") from None


def random_array(datatype: str, shape: Sequence[int], rng: np.random.Generator) -> np.ndarray:
    """Random values that fit ``datatype``: normal floats, small non-negative ints, 8-letter strings."""
    dt = datatypes.get(datatype)
    shape = tuple(shape)
    if datatype == "BYTES":
        count = datatypes.element_count(shape)
        letters = rng.integers(ord("a"), ord("z") + 1, size=(count, 8), dtype=np.uint8)
        return datatypes.bytes_array([row.tobytes() for row in letters]).reshape(shape)
    if datatype == "BOOL":
        return rng.random(shape) < 0.5
    if dt.dtype.kind in "iu":
        return rng.integers(0, _INT_HIGH, size=shape, dtype=dt.dtype)
    return rng.standard_normal(shape).astype(dt.dtype)


def _concrete_shape(shape: Any, batch_size: int, what: str) -> list[int]:
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) for d in shape):
        raise TargetError(f"{what}: metadata shape must be a list of integers, got {shape!r}")
    out = []
    for i, dim in enumerate(shape):
        if dim == -1:
            out.append(batch_size if i == 0 else 1)
        elif dim < 0:
            raise TargetError(f"{what}: invalid dimension {dim} in metadata shape {shape}")
        else:
            out.append(dim)
    return out


def synthesize_request(
    metadata: Mapping[str, Any], batch_size: int, rng: np.random.Generator
) -> InferRequest:
    """A request with random values from OIP model metadata; -1 dims become ``batch_size``
    (first dimension) or 1 (any other)."""
    name = metadata.get("name", "?") if isinstance(metadata, Mapping) else "?"
    inputs = metadata.get("inputs") if isinstance(metadata, Mapping) else None
    if not inputs or not isinstance(inputs, list):
        raise TargetError(
            f"model {name!r} declares no inputs in its metadata; give a payload file (an OIP JSON request)"
        )
    tensors = []
    for i, entry in enumerate(inputs):
        if not isinstance(entry, Mapping) or not isinstance(entry.get("name"), str):
            raise TargetError(f"model {name!r}: metadata input {i} has no name")
        what = f"model {name!r} input {entry['name']!r}"
        datatype = entry.get("datatype")
        if not datatypes.is_valid(datatype):
            raise TargetError(f"{what}: unknown datatype {datatype!r} in metadata; give a payload file")
        shape = _concrete_shape(entry.get("shape"), batch_size, what)
        tensors.append(Tensor(entry["name"], datatype, shape, random_array(datatype, shape, rng)))
    return InferRequest(inputs=tensors)


def randomize_like(req: InferRequest, rng: np.random.Generator) -> InferRequest:
    """The same request (names, shapes, datatypes, parameters) with fresh random values."""
    inputs = [
        Tensor(t.name, t.datatype, list(t.shape), random_array(t.datatype, t.shape, rng), dict(t.parameters))
        for t in req.inputs
    ]
    return InferRequest(inputs=inputs, outputs=list(req.outputs), parameters=dict(req.parameters), id=req.id)


def inferences_per_request(payload_file: str | None, batch_size: int) -> int:
    """Inferences one request carries: the batch size times the payload file's batch dimension
    (first input's first dim, repeated by ``repeat_batch``); a synthesised payload has batch_size."""
    if not payload_file:
        return batch_size
    try:
        first = load_request_file(payload_file).inputs[0]
    except (ConfigError, IndexError):
        return batch_size
    return batch_size * (int(first.shape[0]) if first.shape else 1)


def repeat_batch(req: InferRequest, batch_size: int) -> InferRequest:
    """The request with every input repeated ``batch_size`` times along its first dimension."""
    if batch_size == 1:
        return req
    inputs = []
    for t in req.inputs:
        if not t.shape:
            raise ConfigError(f"input {t.name!r} is a scalar and cannot be batched; use batch size 1")
        data = np.concatenate([t.data] * batch_size, axis=0)
        inputs.append(
            Tensor(t.name, t.datatype, [t.shape[0] * batch_size, *t.shape[1:]], data, dict(t.parameters))
        )
    return InferRequest(inputs=inputs, outputs=list(req.outputs), parameters=dict(req.parameters), id=req.id)


class PayloadPool:
    """Pre-encoded request variants handed out round-robin by ``next()`` (no per-call allocation)."""

    __slots__ = ("items", "requests", "next")

    def __init__(
        self, items: Sequence[EncodedRequest | bytes], requests: Sequence[InferRequest] = ()
    ) -> None:
        if not items:
            raise ValueError("a payload pool needs at least one item")
        self.items: tuple[EncodedRequest | bytes, ...] = tuple(items)
        self.requests: tuple[InferRequest, ...] = tuple(requests)  # decoded form, for checks
        self.next: Callable[[], EncodedRequest | bytes] = itertools.cycle(self.items).__next__

    def __len__(self) -> int:
        return len(self.items)


def encode_for(
    target: Target, req: InferRequest, binary: bool = False, raw_grpc: bool = True
) -> EncodedRequest | bytes:
    """Encode once for the target's protocol (gRPC ``model_name`` is the target name)."""
    if target.protocol == "rest":
        return json_codec.encode_request(req, binary=binary)
    return pb_codec.serialize_request(req, target.name, raw=raw_grpc)


def build_payload_pool(
    target: Target,
    metadata: Mapping[str, Any] | None,
    payload_file: str | Path | None = None,
    batch_size: int = 1,
    pool_size: int = DEFAULT_POOL_SIZE,
    seed: int = 0,
    binary: bool = False,
    raw_grpc: bool = True,
    file_variants: bool = False,
) -> PayloadPool:
    """The pool for a run: ``pool_size`` synthesized variants, or the payload file as-is
    (plus random variants of it when ``file_variants``)."""
    if batch_size < 1:
        raise ConfigError(f"batch size must be at least 1, got {batch_size}")
    if pool_size < 1:
        raise ConfigError(f"payload variants must be at least 1, got {pool_size}")
    rng = np.random.default_rng(seed)
    if payload_file is not None:
        base = repeat_batch(load_request_file(payload_file), batch_size)
        extra = pool_size - 1 if file_variants else 0
        requests = [base] + [randomize_like(base, rng) for _ in range(extra)]
    else:
        if metadata is None:
            raise ConfigError("no payload: give a payload file or a target that serves model metadata")
        requests = [synthesize_request(metadata, batch_size, rng) for _ in range(pool_size)]
    items = [encode_for(target, r, binary=binary, raw_grpc=raw_grpc) for r in requests]
    return PayloadPool(items, requests)
