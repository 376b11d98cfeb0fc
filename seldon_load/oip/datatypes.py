"""OIP tensor datatypes and their numpy counterparts.

Raw tensor bytes (binary data extension, gRPC ``raw_*_contents``) are little-endian by the
protocol whatever the host's byte order, so every raw conversion goes through an explicit
``<`` dtype. BYTES elements are variable-sized: on the wire each is a 4-byte little-endian
length followed by its bytes; in memory they are a numpy ``object`` array of ``bytes``.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from seldon_load.errors import ConfigError, OIPError


@dataclass(frozen=True, slots=True)
class DataType:
    """One OIP datatype: its name, numpy dtype, raw (little-endian) dtype and element size."""

    name: str
    dtype: np.dtype
    raw_dtype: np.dtype
    element_size: int  # bytes per element on the wire; 0 for variable-sized BYTES


def _fixed(name: str, code: str) -> DataType:
    native = np.dtype(code)
    return DataType(name, native, native.newbyteorder("<"), native.itemsize)


DATATYPES: dict[str, DataType] = {
    dt.name: dt
    for dt in (
        _fixed("BOOL", "?"),
        _fixed("UINT8", "u1"),
        _fixed("UINT16", "u2"),
        _fixed("UINT32", "u4"),
        _fixed("UINT64", "u8"),
        _fixed("INT8", "i1"),
        _fixed("INT16", "i2"),
        _fixed("INT32", "i4"),
        _fixed("INT64", "i8"),
        _fixed("FP16", "f2"),
        _fixed("FP32", "f4"),
        _fixed("FP64", "f8"),
        DataType("BYTES", np.dtype(object), np.dtype(object), 0),
    )
}

_U32 = struct.Struct("<I")


def get(datatype: str) -> DataType:
    """The DataType for an OIP name; OIPError for an unknown one."""
    try:
        return DATATYPES[datatype]
    except (KeyError, TypeError):
        raise OIPError(f"unknown datatype {datatype!r} (expected one of {', '.join(DATATYPES)})") from None


def is_valid(datatype: object) -> bool:
    return isinstance(datatype, str) and datatype in DATATYPES


def numpy_dtype(datatype: str) -> np.dtype:
    return get(datatype).dtype


def element_size(datatype: str) -> int:
    """Bytes per element on the wire (0 for BYTES, whose elements vary in size)."""
    return get(datatype).element_size


def element_count(shape: Sequence[int]) -> int:
    count = 1
    for dim in shape:
        count *= dim
    return count


def check_shape(shape: object, what: str) -> list[int]:
    """A shape as a list of non-negative ints; OIPError naming ``what`` otherwise."""
    if not isinstance(shape, (list, tuple)) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
    ):
        raise OIPError(f"{what}: shape must be a list of non-negative integers, got {short_repr(shape)}")
    return list(shape)


def check_input(name: str, datatype: str, shape: Sequence[int], data: np.ndarray) -> None:
    """ConfigError unless an input to encode has a known datatype and as many values as its shape."""
    if not is_valid(datatype):
        raise ConfigError(f"input {name!r}: unknown datatype {datatype!r}")
    count = element_count(shape)
    if np.size(data) != count:
        raise ConfigError(f"input {name!r}: {np.size(data)} values for shape {list(shape)} ({count} needed)")


def to_raw(array: np.ndarray, datatype: str) -> bytes:
    """Row-major little-endian bytes of a tensor (length-prefixed elements for BYTES)."""
    if datatype == "BYTES":
        return serialize_bytes(array)
    dt = get(datatype)
    return np.ascontiguousarray(array, dtype=dt.raw_dtype).tobytes()


def from_raw(raw: bytes | memoryview, datatype: str, shape: Sequence[int], what: str) -> np.ndarray:
    """A tensor from raw little-endian bytes, checked against the shape; OIPError if they disagree."""
    count = element_count(shape)
    if datatype == "BYTES":
        return deserialize_bytes(raw, what, count).reshape(shape)
    dt = get(datatype)
    if len(raw) != count * dt.element_size:
        raise OIPError(
            f"{what}: {len(raw)} raw bytes, expected {count * dt.element_size} "
            f"for {datatype} shape {list(shape)}"
        )
    array = np.frombuffer(raw, dtype=dt.raw_dtype)
    return array.astype(dt.dtype, copy=False).reshape(shape)


def to_bytes_element(value: object) -> bytes:
    """One BYTES element as bytes (str is UTF-8 encoded)."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, (bytearray, memoryview, np.bytes_)):
        return bytes(value)
    raise OIPError(f"BYTES element must be bytes or str, got {type(value).__name__}")


def serialize_bytes(array: np.ndarray | Sequence[object]) -> bytes:
    """BYTES elements as 4-byte little-endian length + bytes, row-major."""
    flat = np.asarray(array, dtype=object).ravel() if isinstance(array, np.ndarray) else array
    parts: list[bytes] = []
    for element in flat:
        data = to_bytes_element(element)
        parts.append(_U32.pack(len(data)))
        parts.append(data)
    return b"".join(parts)


def deserialize_bytes(raw: bytes | memoryview, what: str, count: int | None = None) -> np.ndarray:
    """Split length-prefixed BYTES elements; OIPError if the buffer is truncated or the count is off."""
    view = memoryview(raw)
    elements: list[bytes] = []
    offset, end = 0, len(view)
    while offset < end:
        if end - offset < 4:
            raise OIPError(f"{what}: truncated BYTES element length at offset {offset}")
        (length,) = _U32.unpack_from(view, offset)
        offset += 4
        if length > end - offset:
            raise OIPError(f"{what}: BYTES element of {length} bytes overruns the buffer")
        elements.append(bytes(view[offset : offset + length]))
        offset += length
    if count is not None and len(elements) != count:
        raise OIPError(f"{what}: {len(elements)} BYTES elements, shape needs {count}")
    out = np.empty(len(elements), dtype=object)
    out[:] = elements
    return out


def bytes_array(values: Sequence[object]) -> np.ndarray:
    """A 1-D object array of bytes (np.array would turn a list of bytes into a fixed-width S array)."""
    out = np.empty(len(values), dtype=object)
    out[:] = [to_bytes_element(v) for v in values]
    return out


def short_repr(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
