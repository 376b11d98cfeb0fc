"""OIP datatypes <-> numpy, little-endian raw bytes, BYTES framing."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from seldon_load.errors import ConfigError, OIPError
from seldon_load.oip import datatypes

SIZES = {
    "BOOL": 1,
    "UINT8": 1,
    "UINT16": 2,
    "UINT32": 4,
    "UINT64": 8,
    "INT8": 1,
    "INT16": 2,
    "INT32": 4,
    "INT64": 8,
    "FP16": 2,
    "FP32": 4,
    "FP64": 8,
    "BYTES": 0,
}


def test_every_oip_datatype_is_known_with_its_element_size() -> None:
    assert {name: datatypes.element_size(name) for name in SIZES} == SIZES
    assert set(datatypes.DATATYPES) == set(SIZES)


@pytest.mark.parametrize("name", [n for n in SIZES if n != "BYTES"])
def test_raw_tensors_are_little_endian(name: str) -> None:
    assert datatypes.get(name).raw_dtype.byteorder in ("<", "|")


def test_unknown_datatype_is_an_oip_error() -> None:
    with pytest.raises(OIPError, match="unknown datatype 'FP8'"):
        datatypes.get("FP8")
    assert not datatypes.is_valid(None)


def test_raw_bytes_are_little_endian_whatever_the_array_byte_order() -> None:
    big = np.array([1, 256], dtype=">i4")
    assert datatypes.to_raw(big, "INT32") == struct.pack("<ii", 1, 256)
    assert datatypes.to_raw(np.array([1.5], dtype=">f8"), "FP64") == struct.pack("<d", 1.5)
    back = datatypes.from_raw(struct.pack("<ii", 1, 256), "INT32", [2], "t")
    assert back.tolist() == [1, 256]
    assert back.dtype == np.dtype("i4")  # native order for the caller


def test_fp16_and_bool_raw_layout() -> None:
    raw = datatypes.to_raw(np.array([1.0, -2.0], dtype=np.float16), "FP16")
    assert raw == struct.pack("<ee", 1.0, -2.0)
    assert datatypes.to_raw(np.array([True, False, True]), "BOOL") == b"\x01\x00\x01"
    assert datatypes.from_raw(b"\x00\x01", "BOOL", [2], "t").tolist() == [False, True]


def test_raw_is_row_major_for_non_contiguous_arrays() -> None:
    a = np.arange(6, dtype=np.int16).reshape(2, 3).T  # Fortran-ordered view
    assert datatypes.from_raw(datatypes.to_raw(a, "INT16"), "INT16", [3, 2], "t").tolist() == a.tolist()


def test_raw_size_must_match_shape() -> None:
    with pytest.raises(OIPError, match=r"t: 7 raw bytes, expected 8 for FP32 shape \[2\]"):
        datatypes.from_raw(b"\x00" * 7, "FP32", [2], "t")


def test_bytes_elements_are_length_prefixed_little_endian() -> None:
    arr = datatypes.bytes_array([b"ab", "é", b""])
    raw = datatypes.serialize_bytes(arr)
    assert raw == b"\x02\x00\x00\x00ab" + b"\x02\x00\x00\x00\xc3\xa9" + b"\x00\x00\x00\x00"
    back = datatypes.from_raw(raw, "BYTES", [3], "t")
    assert back.tolist() == [b"ab", "é".encode(), b""]


def test_bytes_array_keeps_variable_length_bytes() -> None:
    arr = datatypes.bytes_array([b"a", b"longer\x00"])
    assert arr.dtype == object and arr[1] == b"longer\x00"


@pytest.mark.parametrize(
    ("raw", "count", "message"),
    [
        (b"\x01\x00", None, "truncated BYTES element length"),
        (b"\x05\x00\x00\x00ab", None, "overruns the buffer"),
        (b"\x01\x00\x00\x00a", 2, "1 BYTES elements, shape needs 2"),
    ],
)
def test_broken_bytes_framing_is_an_oip_error(raw: bytes, count: int | None, message: str) -> None:
    with pytest.raises(OIPError, match=message):
        datatypes.deserialize_bytes(raw, "t", count)


def test_check_shape_rejects_negative_and_non_integer_dims() -> None:
    assert datatypes.check_shape([2, 0, 3], "t") == [2, 0, 3]
    for bad in ([-1], [1.5], [True], "12", None):
        with pytest.raises(OIPError, match="shape must be a list of non-negative integers"):
            datatypes.check_shape(bad, "t")


def test_element_count() -> None:
    assert datatypes.element_count([]) == 1
    assert datatypes.element_count([2, 3, 4]) == 24
    assert datatypes.element_count([5, 0]) == 0


def test_check_input_before_encoding() -> None:
    datatypes.check_input("a", "FP32", [2, 2], np.zeros((2, 2)))
    with pytest.raises(ConfigError, match=r"input 'a': 3 values for shape \[2, 2\] \(4 needed\)"):
        datatypes.check_input("a", "FP32", [2, 2], np.zeros(3))
    with pytest.raises(ConfigError, match="input 'a': unknown datatype 'F32'"):
        datatypes.check_input("a", "F32", [1], np.zeros(1))
