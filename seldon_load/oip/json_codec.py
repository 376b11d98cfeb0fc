"""REST (JSON) codec of the Open Inference Protocol, on orjson.

Two body forms: plain JSON with row-major ``data`` lists, and the binary tensor data
extension (a JSON header of ``Inference-Header-Content-Length`` bytes followed by raw
little-endian tensors, each announced by a ``binary_data_size`` parameter).

Decoding has two depths: ``check_response`` is the cheap hot-path check (structure, datatype,
shape against element count, first element's type) and ``decode_response`` builds numpy
tensors. Both raise only ``OIPError`` (``OIPServerError`` for an OIP error body).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import orjson

from seldon_load.errors import ConfigError, OIPError
from seldon_load.oip import datatypes
from seldon_load.oip.types import EncodedRequest, InferRequest, InferResponse, Tensor

HEADER_LENGTH = "Inference-Header-Content-Length"
JSON_CONTENT_TYPE = "application/json"
BINARY_CONTENT_TYPE = "application/octet-stream"
BINARY_SIZE = "binary_data_size"
MESSAGE_LIMIT = 200

_INT_TYPES = frozenset(n for n, dt in datatypes.DATATYPES.items() if dt.dtype.kind in "iu")
_FLOAT_TYPES = frozenset(n for n, dt in datatypes.DATATYPES.items() if dt.dtype.kind == "f")


class OIPServerError(OIPError):
    """The server answered with an OIP error body (``{"error": "..."}``)."""


def shorten(text: str, limit: int = MESSAGE_LIMIT) -> str:
    """One line of at most ``limit`` characters, for outcome messages and error lines."""
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


# ----------------------------------------------------------------------------- encode


def encode_request(req: InferRequest, binary: bool = False) -> EncodedRequest:
    """Encode once: plain JSON, or the binary data extension when ``binary``."""
    inputs: list[dict[str, Any]] = []
    chunks: list[bytes] = []
    for tensor in req.inputs:
        datatypes.check_input(tensor.name, tensor.datatype, tensor.shape, tensor.data)
        entry: dict[str, Any] = {
            "name": tensor.name,
            "datatype": tensor.datatype,
            "shape": list(tensor.shape),
        }
        params = dict(tensor.parameters)
        if binary:
            raw = datatypes.to_raw(tensor.data, tensor.datatype)
            params[BINARY_SIZE] = len(raw)
            chunks.append(raw)
        else:
            entry["data"] = _json_data(tensor)
        if params:
            entry["parameters"] = params
        inputs.append(entry)
    doc: dict[str, Any] = {}
    if req.id is not None:
        doc["id"] = req.id
    params = dict(req.parameters)
    if binary and not req.outputs:
        params["binary_data_output"] = True
    if params:
        doc["parameters"] = params
    doc["inputs"] = inputs
    if req.outputs:
        out_params = {"parameters": {"binary_data": True}} if binary else {}
        doc["outputs"] = [{"name": name, **out_params} for name in req.outputs]
    try:
        header = orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY)
    except orjson.JSONEncodeError as exc:
        raise ConfigError(f"request cannot be encoded as JSON: {exc}") from None
    if not binary:
        return EncodedRequest(header, (("Content-Type", JSON_CONTENT_TYPE),))
    headers = (("Content-Type", BINARY_CONTENT_TYPE), (HEADER_LENGTH, str(len(header))))
    return EncodedRequest(header + b"".join(chunks), headers)


def _json_data(tensor: Tensor) -> Any:
    if tensor.datatype != "BYTES":
        dt = datatypes.get(tensor.datatype)
        return np.ascontiguousarray(tensor.data, dtype=dt.dtype).ravel()
    values = []
    for element in np.asarray(tensor.data, dtype=object).ravel():
        try:
            values.append(datatypes.to_bytes_element(element).decode())
        except UnicodeDecodeError:
            raise ConfigError(
                f"input {tensor.name!r}: BYTES element is not UTF-8 text, which JSON cannot carry; "
                "use the binary data extension"
            ) from None
    return values


# ----------------------------------------------------------------------------- decode


def error_message(body: bytes) -> str | None:
    """The message of an OIP error body (or a FastAPI ``detail``), else None."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if isinstance(doc, dict):
        for key in ("error", "detail"):
            if key in doc:
                value = doc[key]
                return shorten(value if isinstance(value, str) else orjson.dumps(value).decode())
    return None


def _split(
    body: bytes, header_length: int | None, label: str = "response"
) -> tuple[dict[str, Any], memoryview]:
    if header_length is None:
        header, rest = body, memoryview(b"")
    else:
        if not 0 < header_length <= len(body):
            raise OIPError(f"{HEADER_LENGTH} {header_length} does not fit a body of {len(body)} bytes")
        header, rest = body[:header_length], memoryview(body)[header_length:]
    try:
        doc = orjson.loads(header)
    except orjson.JSONDecodeError as exc:
        raise OIPError(f"{label} is not valid JSON ({shorten(str(exc), 80)}): {_preview(header)}") from None
    if not isinstance(doc, dict):
        raise OIPError(f"{label} is not a JSON object: {_preview(header)}")
    if label == "response" and "outputs" not in doc and "error" in doc:
        message = doc["error"] if isinstance(doc["error"], str) else orjson.dumps(doc["error"]).decode()
        raise OIPServerError(shorten(f"server error: {message}"))
    return doc, rest


def _preview(body: bytes, limit: int = 60) -> str:
    text = body[:limit].decode("utf-8", "replace")
    return repr(text + ("..." if len(body) > limit else ""))


def _tensor_list(doc: dict[str, Any], key: str) -> list[Any]:
    value = doc.get(key)
    if not isinstance(value, list):
        raise OIPError(f"'{key}' must be a list, got {type(value).__name__}")
    return value


def _header(entry: Any, kind: str, index: int) -> tuple[str, str, str, list[int], dict[str, Any]]:
    """what (for messages), name, datatype, shape and parameters of one tensor entry, checked."""
    if not isinstance(entry, dict):
        raise OIPError(f"{kind} {index} must be a JSON object, got {type(entry).__name__}")
    name = entry.get("name")
    if not isinstance(name, str):
        raise OIPError(f"{kind} {index} has no string 'name'")
    what = f"{kind} {name!r}"
    datatype = entry.get("datatype")
    if not datatypes.is_valid(datatype):
        raise OIPError(f"{what}: unknown datatype {datatype!r}")
    shape = datatypes.check_shape(entry.get("shape"), what)
    params = entry.get("parameters")
    if params is None:
        params = {}
    elif not isinstance(params, dict):
        raise OIPError(f"{what}: 'parameters' must be an object")
    return what, name, datatype, shape, params


def _binary_size(params: dict[str, Any], what: str) -> int | None:
    size = params.get(BINARY_SIZE)
    if size is None:
        return None
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise OIPError(f"{what}: {BINARY_SIZE} must be a non-negative integer")
    return size


def _take(rest: memoryview, offset: int, size: int, what: str) -> memoryview:
    if offset + size > len(rest):
        raise OIPError(f"{what}: {BINARY_SIZE} {size} overruns the binary part ({len(rest)} bytes)")
    return rest[offset : offset + size]


def _count(data: list[Any]) -> int:
    if not data or not isinstance(data[0], list):
        return len(data)
    return sum(_count(d) if isinstance(d, list) else 1 for d in data)


_FIRST_OK = {"BYTES": (str,), "BOOL": (bool,)}


def _first_type_ok(datatype: str, value: Any) -> bool:
    if datatype in _FIRST_OK:
        return isinstance(value, _FIRST_OK[datatype])
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (datatype in _FLOAT_TYPES and isinstance(value, float))


def check_response(body: bytes, header_length: int | None = None) -> None:
    """Cheap structural check of a response (hot path); OIPError if it is not a valid answer."""
    doc, rest = _split(body, header_length)
    offset = 0
    for i, entry in enumerate(_tensor_list(doc, "outputs")):
        what, _, datatype, shape, params = _header(entry, "output", i)
        count = datatypes.element_count(shape)
        size = _binary_size(params, what)
        if size is not None:
            chunk = _take(rest, offset, size, what)
            offset += size
            if datatype == "BYTES":
                datatypes.deserialize_bytes(chunk, what, count)
            elif size != count * datatypes.element_size(datatype):
                raise OIPError(
                    f"{what}: {size} raw bytes, shape {shape} of {datatype} needs "
                    f"{count * datatypes.element_size(datatype)}"
                )
            continue
        data = entry.get("data")
        if not isinstance(data, list):
            raise OIPError(f"{what}: 'data' must be a list")
        n = _count(data)
        if n != count:
            raise OIPError(f"{what}: {n} elements, shape {shape} needs {count}")
        if n:
            first = next(_flatten(data))
            if not _first_type_ok(datatype, first):
                raise OIPError(
                    f"{what}: {type(first).__name__} value {datatypes.short_repr(first, 30)} "
                    f"in a {datatype} tensor"
                )
    if offset != len(rest):
        raise OIPError(f"{len(rest) - offset} trailing bytes after the binary outputs")


class ResponseChecker:
    """``check_response`` for one stream of answers, with a short cut for answers whose
    outputs have the same names, datatypes and shapes as one already checked in full.

    A model answers every request in the same form, so after the first answer the check
    of a flat output in JSON (not the binary extension) is: same header, as many values as its shape, first
    value of the right JSON type. Anything else (a new form, nested or binary data, an
    error body, malformed JSON) goes through the full check and its error messages. This
    keeps the per-answer work to one function: on a generator that sleeps between
    requests, each extra function runs with cold caches and costs microseconds."""

    _LIMIT = 256

    def __init__(self) -> None:
        self._seen: dict[tuple, frozenset[type]] = {}

    def check(self, body: bytes, header_length: int | None = None) -> None:
        if header_length is None and self._seen:
            try:
                outputs = orjson.loads(body).get("outputs")
            except (orjson.JSONDecodeError, AttributeError):
                outputs = None
            if outputs.__class__ is list and outputs:
                seen = self._seen
                for entry in outputs:
                    if entry.__class__ is not dict:
                        break
                    params = entry.get("parameters")
                    if params is not None and (params.__class__ is not dict or BINARY_SIZE in params):
                        break
                    shape, data = entry.get("shape"), entry.get("data")
                    if shape.__class__ is not list or data.__class__ is not list:
                        break
                    types = seen.get((entry.get("name"), entry.get("datatype"), len(data), *shape))
                    if types is None or (data and data[0].__class__ not in types):
                        break
                else:
                    return  # every output in a form already checked in full
        check_response(body, header_length)
        if header_length is None:
            self._learn(body)

    def _learn(self, body: bytes) -> None:
        """Remember the forms of a fully checked answer's flat outputs."""
        if len(self._seen) >= self._LIMIT:
            self._seen.clear()
        for entry in orjson.loads(body).get("outputs", ()):
            data = entry.get("data")
            if BINARY_SIZE in (entry.get("parameters") or ()) or not isinstance(data, list) or (
                    data and isinstance(data[0], list)):
                continue
            datatype = entry["datatype"]
            types = frozenset(_FIRST_OK.get(datatype, (int, float) if datatype in _FLOAT_TYPES else (int,)))
            self._seen[(entry["name"], datatype, len(data), *entry["shape"])] = types


def decode_response(body: bytes, header_length: int | None = None) -> InferResponse:
    """A full InferResponse with numpy tensors; OIPError if the answer does not follow OIP."""
    doc, rest = _split(body, header_length)
    outputs = _decode_tensors(_tensor_list(doc, "outputs"), rest, "output")
    return InferResponse(
        model_name=_opt_str(doc, "model_name") or "",
        model_version=_opt_str(doc, "model_version"),
        id=_opt_str(doc, "id"),
        outputs=outputs,
        parameters=_params(doc),
    )


def decode_request(body: bytes, header_length: int | None = None) -> InferRequest:
    """An InferRequest from a JSON (or binary extension) body, e.g. a payload file."""
    doc, rest = _split(body, header_length, "request")
    inputs = _decode_tensors(_tensor_list(doc, "inputs"), rest, "input")
    if not inputs:
        raise OIPError("'inputs' is empty")
    outputs: list[str] = []
    for i, entry in enumerate(doc.get("outputs") or []):
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise OIPError(f"requested output {i} has no string 'name'")
        outputs.append(entry["name"])
    params = _params(doc)
    params.pop("binary_data_output", None)
    return InferRequest(inputs=inputs, outputs=outputs, parameters=params, id=_opt_str(doc, "id"))


def _opt_str(doc: dict[str, Any], key: str) -> str | None:
    value = doc.get(key)
    if value is None or isinstance(value, str):
        return value
    raise OIPError(f"'{key}' must be a string, got {type(value).__name__}")


def _params(doc: dict[str, Any]) -> dict[str, Any]:
    params = doc.get("parameters")
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise OIPError("'parameters' must be an object")
    return dict(params)


def _decode_tensors(entries: list[Any], rest: memoryview, kind: str) -> list[Tensor]:
    tensors: list[Tensor] = []
    offset = 0
    for i, entry in enumerate(entries):
        what, name, datatype, shape, params = _header(entry, kind, i)
        size = _binary_size(params, what)
        if size is not None:
            array = datatypes.from_raw(_take(rest, offset, size, what), datatype, shape, what)
            offset += size
            params = {k: v for k, v in params.items() if k != BINARY_SIZE}
        else:
            array = from_json_data(entry.get("data"), datatype, shape, what)
        tensors.append(Tensor(name, datatype, shape, array, dict(params)))
    if offset != len(rest):
        raise OIPError(f"{len(rest) - offset} trailing bytes after the binary {kind}s")
    return tensors


def _flatten(data: list[Any]) -> Iterator[Any]:
    for item in data:
        if isinstance(item, list):
            yield from _flatten(item)
        else:
            yield item


def from_json_data(data: Any, datatype: str, shape: list[int], what: str) -> np.ndarray:
    """A numpy tensor from a JSON ``data`` list (flat or nested, row-major), strictly typed."""
    if not isinstance(data, list):
        raise OIPError(f"{what}: 'data' must be a list")
    flat = list(_flatten(data)) if data and any(isinstance(d, list) for d in data) else data
    count = datatypes.element_count(shape)
    if len(flat) != count:
        raise OIPError(f"{what}: {len(flat)} elements, shape {shape} needs {count}")
    if datatype == "BYTES":
        if not all(isinstance(v, str) for v in flat):
            raise OIPError(f"{what}: BYTES data must be strings")
        return datatypes.bytes_array(flat).reshape(shape)
    if datatype == "BOOL":
        ok = all(type(v) is bool for v in flat)
    elif datatype in _INT_TYPES:
        ok = all(type(v) is int for v in flat)
    else:
        ok = all(type(v) is int or type(v) is float for v in flat)
    if not ok:
        bad = next((v for v in flat if not _first_type_ok(datatype, v)), None)
        raise OIPError(
            f"{what}: {type(bad).__name__} value {datatypes.short_repr(bad, 30)} in a {datatype} tensor"
        )
    try:
        return np.array(flat, dtype=datatypes.numpy_dtype(datatype)).reshape(shape)
    except (OverflowError, ValueError) as exc:
        raise OIPError(f"{what}: value out of range for {datatype} ({shorten(str(exc), 80)})") from None
