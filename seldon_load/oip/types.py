"""The protocol's data, free of any wire format: tensors, requests, responses, encoded requests."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

Parameters = dict[str, Any]


@dataclass(slots=True)
class Tensor:
    """A named OIP tensor; ``data`` has ``shape`` and the numpy dtype of ``datatype``
    (an object array of ``bytes`` for BYTES)."""

    name: str
    datatype: str
    shape: list[int]
    data: np.ndarray
    parameters: Parameters = field(default_factory=dict)


@dataclass(slots=True)
class InferRequest:
    """An inference request; ``outputs`` are the names of the requested outputs (empty: all)."""

    inputs: list[Tensor]
    outputs: list[str] = field(default_factory=list)
    parameters: Parameters = field(default_factory=dict)
    id: str | None = None


@dataclass(slots=True)
class InferResponse:
    model_name: str
    model_version: str | None
    id: str | None
    outputs: list[Tensor]
    parameters: Parameters = field(default_factory=dict)

    def output(self, name: str) -> Tensor:
        for tensor in self.outputs:
            if tensor.name == name:
                return tensor
        raise KeyError(name)


@dataclass(frozen=True, slots=True)
class EncodedRequest:
    """A REST request body encoded once, with the headers it needs (e.g. Content-Type)."""

    body: bytes
    headers: tuple[tuple[str, str], ...] = ()
