"""gRPC (protobuf) codec of the Open Inference Protocol.

Requests are encoded once, either with typed ``contents`` or with ``raw_input_contents``
(little-endian bytes; FP16 has no typed field, so a request with an FP16 input is always
raw). ``check_response`` is the cheap hot-path check; ``decode_response`` builds numpy
tensors. Both raise only ``OIPError``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from google.protobuf.message import DecodeError

from seldon_load.errors import ConfigError, OIPError
from seldon_load.oip import datatypes
from seldon_load.oip._generated import grpc_predict_v2_pb2 as pb
from seldon_load.oip.types import InferRequest, InferResponse, Tensor

# datatype -> InferTensorContents field (FP16 has none: raw only)
CONTENTS_FIELD: dict[str, str] = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}
_INT64_MIN, _INT64_MAX, _UINT64_MAX = -(2**63), 2**63 - 1, 2**64 - 1


# ----------------------------------------------------------------------------- encode


def set_parameters(target: Any, params: dict[str, Any], what: str) -> None:
    """Fill a protobuf ``map<string, InferParameter>`` from plain values."""
    for key, value in params.items():
        param = target[key]
        if isinstance(value, bool):
            param.bool_param = value
        elif isinstance(value, int) and _INT64_MIN <= value <= _INT64_MAX:
            param.int64_param = value
        elif isinstance(value, int) and 0 <= value <= _UINT64_MAX:
            param.uint64_param = value
        elif isinstance(value, float):
            param.double_param = value
        elif isinstance(value, str):
            param.string_param = value
        else:
            raise ConfigError(
                f"{what} parameter {key!r}: gRPC parameters must be bool, int, float or str, "
                f"got {type(value).__name__}"
            )


def get_parameters(source: Any) -> dict[str, Any]:
    return {
        key: getattr(param, param.WhichOneof("parameter_choice") or "string_param")
        for key, param in source.items()
    }


def encode_request(
    req: InferRequest, model_name: str, raw: bool = True, model_version: str = ""
) -> pb.ModelInferRequest:
    """A ModelInferRequest; typed ``contents`` unless ``raw`` or an input has no typed field."""
    msg = pb.ModelInferRequest(model_name=model_name, model_version=model_version, id=req.id or "")
    set_parameters(msg.parameters, req.parameters, "request")
    use_raw = raw or any(t.datatype not in CONTENTS_FIELD for t in req.inputs)
    for tensor in req.inputs:
        datatypes.check_input(tensor.name, tensor.datatype, tensor.shape, tensor.data)
        entry = msg.inputs.add(name=tensor.name, datatype=tensor.datatype, shape=list(tensor.shape))
        set_parameters(entry.parameters, tensor.parameters, f"input {tensor.name!r}")
        if use_raw:
            msg.raw_input_contents.append(datatypes.to_raw(tensor.data, tensor.datatype))
        else:
            _set_contents(entry.contents, tensor)
    for name in req.outputs:
        msg.outputs.add(name=name)
    return msg


def serialize_request(req: InferRequest, model_name: str, raw: bool = True) -> bytes:
    return encode_request(req, model_name, raw=raw).SerializeToString()


def _set_contents(contents: Any, tensor: Tensor) -> None:
    field = getattr(contents, CONTENTS_FIELD[tensor.datatype])
    if tensor.datatype == "BYTES":
        field.extend(datatypes.to_bytes_element(v) for v in np.asarray(tensor.data, dtype=object).ravel())
    else:
        flat = np.ascontiguousarray(tensor.data, dtype=datatypes.numpy_dtype(tensor.datatype)).ravel()
        field.extend(flat.tolist())


# ----------------------------------------------------------------------------- decode


def parse_response(data: bytes) -> pb.ModelInferResponse:
    try:
        return pb.ModelInferResponse.FromString(data)
    except (DecodeError, RuntimeError, ValueError) as exc:
        raise OIPError(f"response is not a ModelInferResponse ({str(exc)[:80]})") from None


def _check_output(out: Any, raw: bytes | None) -> tuple[str, list[int]]:
    what = f"output {out.name!r}"
    if not datatypes.is_valid(out.datatype):
        raise OIPError(f"{what}: unknown datatype {out.datatype!r}")
    shape = datatypes.check_shape(list(out.shape), what)
    count = datatypes.element_count(shape)
    if raw is not None:
        if out.datatype != "BYTES" and len(raw) != count * datatypes.element_size(out.datatype):
            raise OIPError(
                f"{what}: {len(raw)} raw bytes, shape {shape} of {out.datatype} needs "
                f"{count * datatypes.element_size(out.datatype)}"
            )
        return what, shape
    field_name = CONTENTS_FIELD.get(out.datatype)
    if field_name is None:
        if count:
            raise OIPError(f"{what}: {out.datatype} has no typed contents; it must come raw")
        return what, shape
    n = len(getattr(out.contents, field_name))
    if n != count:
        raise OIPError(f"{what}: {n} elements in {field_name}, shape {shape} needs {count}")
    return what, shape


def _raw_list(msg: pb.ModelInferResponse) -> list[bytes | None]:
    raws = msg.raw_output_contents
    if not raws:
        return [None] * len(msg.outputs)
    if len(raws) != len(msg.outputs):
        raise OIPError(f"{len(raws)} raw_output_contents for {len(msg.outputs)} outputs")
    return list(raws)


def check_response(data: bytes) -> None:
    """Cheap check of a serialized ModelInferResponse (hot path)."""
    msg = parse_response(data)
    for out, raw in zip(msg.outputs, _raw_list(msg), strict=True):
        what, shape = _check_output(out, raw)
        if raw is not None and out.datatype == "BYTES":
            datatypes.deserialize_bytes(raw, what, datatypes.element_count(shape))


def decode_response(data: bytes | pb.ModelInferResponse) -> InferResponse:
    """A full InferResponse with numpy tensors; OIPError if the answer does not follow OIP."""
    msg = parse_response(data) if isinstance(data, bytes) else data
    outputs = []
    for out, raw in zip(msg.outputs, _raw_list(msg), strict=True):
        what, shape = _check_output(out, raw)
        if raw is not None:
            array = datatypes.from_raw(raw, out.datatype, shape, what)
        else:
            array = _from_contents(out, shape, what)
        outputs.append(Tensor(out.name, out.datatype, shape, array, get_parameters(out.parameters)))
    return InferResponse(
        model_name=msg.model_name,
        model_version=msg.model_version or None,
        id=msg.id or None,
        outputs=outputs,
        parameters=get_parameters(msg.parameters),
    )


def _from_contents(out: Any, shape: list[int], what: str) -> np.ndarray:
    field_name = CONTENTS_FIELD.get(out.datatype)
    if field_name is None:
        return np.zeros(shape, dtype=datatypes.numpy_dtype(out.datatype))
    values = getattr(out.contents, field_name)
    if out.datatype == "BYTES":
        return datatypes.bytes_array(list(values)).reshape(shape)
    try:
        return np.array(list(values), dtype=datatypes.numpy_dtype(out.datatype)).reshape(shape)
    except (OverflowError, ValueError) as exc:
        raise OIPError(f"{what}: value out of range for {out.datatype} ({str(exc)[:80]})") from None


# ----------------------------------------------------------------------------- metadata


def _tensor_meta(meta: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": meta.name, "datatype": meta.datatype, "shape": list(meta.shape)}
    if meta.parameters:
        entry["parameters"] = get_parameters(meta.parameters)
    return entry


def metadata_to_dict(msg: pb.ModelMetadataResponse) -> dict[str, Any]:
    """Model metadata in the REST JSON form (``{name, versions, platform, inputs, outputs}``)."""
    doc: dict[str, Any] = {
        "name": msg.name,
        "versions": list(msg.versions),
        "platform": msg.platform,
        "inputs": [_tensor_meta(m) for m in msg.inputs],
        "outputs": [_tensor_meta(m) for m in msg.outputs],
    }
    if msg.parameters:
        doc["parameters"] = get_parameters(msg.parameters)
    return doc
