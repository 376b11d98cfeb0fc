"""REST JSON codec: plain JSON and the binary tensor data extension, strict response checks."""

from __future__ import annotations

import json
import struct
from typing import Any

import numpy as np
import orjson
import pytest
import tritonclient.http as triton_http
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from seldon_load.errors import ConfigError, OIPError
from seldon_load.oip import datatypes, json_codec
from seldon_load.oip.json_codec import OIPServerError
from seldon_load.oip.types import InferRequest, Tensor

ALL_TYPES = list(datatypes.DATATYPES)


def sample(datatype: str, shape: list[int]) -> np.ndarray:
    count = datatypes.element_count(shape)
    if datatype == "BYTES":
        return datatypes.bytes_array([f"s{i}" for i in range(count)]).reshape(shape)
    if datatype == "BOOL":
        return (np.arange(count) % 2 == 0).reshape(shape)
    dtype = datatypes.numpy_dtype(datatype)
    values = np.arange(count) + (0.5 if dtype.kind == "f" else 0)
    return values.astype(dtype).reshape(shape)


def request(*tensors: Tensor, **kw: Any) -> InferRequest:
    return InferRequest(inputs=list(tensors), **kw)


def response_json(*outputs: dict[str, Any], **extra: Any) -> bytes:
    return orjson.dumps({"model_name": "m", "outputs": list(outputs), **extra})


# ----------------------------------------------------------------------------- encode


def test_json_request_is_row_major_flat_data_with_parameters_and_outputs() -> None:
    x = np.array([[1.0, 2.5], [3.0, 0.1]], dtype=np.float32)
    req = request(
        Tensor("x", "FP32", [2, 2], x, {"content_type": "np"}), outputs=["y"], parameters={"p": 1}, id="abc"
    )
    enc = json_codec.encode_request(req)
    assert enc.headers == (("Content-Type", "application/json"),)
    doc = orjson.loads(enc.body)
    assert doc == {
        "id": "abc",
        "parameters": {"p": 1},
        "inputs": [
            {
                "name": "x",
                "datatype": "FP32",
                "shape": [2, 2],
                "data": [1.0, 2.5, 3.0, 0.1],
                "parameters": {"content_type": "np"},
            }
        ],
        "outputs": [{"name": "y"}],
    }


def test_json_request_of_transposed_array_is_row_major() -> None:
    a = np.arange(6, dtype=np.int32).reshape(2, 3).T
    doc = orjson.loads(json_codec.encode_request(request(Tensor("a", "INT32", [3, 2], a))).body)
    assert doc["inputs"][0]["data"] == a.ravel().tolist()


def test_json_bool_fp16_bytes_and_uint64_values() -> None:
    req = request(
        Tensor("b", "BOOL", [2], np.array([True, False])),
        Tensor("h", "FP16", [1], np.array([0.5], dtype=np.float16)),
        Tensor("s", "BYTES", [2], datatypes.bytes_array([b"hi", "é"])),
        Tensor("u", "UINT64", [1], np.array([2**64 - 1], dtype=np.uint64)),
    )
    data = [i["data"] for i in orjson.loads(json_codec.encode_request(req).body)["inputs"]]
    assert data == [[True, False], [0.5], ["hi", "é"], [2**64 - 1]]


def test_json_cannot_carry_non_utf8_bytes() -> None:
    req = request(Tensor("s", "BYTES", [1], datatypes.bytes_array([b"\xff\xfe"])))
    with pytest.raises(ConfigError, match="not UTF-8 text.*binary data extension"):
        json_codec.encode_request(req)
    assert json_codec.encode_request(req, binary=True).body.endswith(b"\x02\x00\x00\x00\xff\xfe")


def test_binary_request_layout() -> None:
    x = np.array([[1.0, -2.0]], dtype=np.float32)
    s = datatypes.bytes_array([b"ab", b"c"])
    enc = json_codec.encode_request(
        request(Tensor("x", "FP32", [1, 2], x), Tensor("s", "BYTES", [2], s), outputs=["y"]), binary=True
    )
    headers = dict(enc.headers)
    assert headers["Content-Type"] == "application/octet-stream"
    n = int(headers["Inference-Header-Content-Length"])
    header = orjson.loads(enc.body[:n])
    assert header["inputs"][0]["parameters"] == {"binary_data_size": 8}
    assert header["inputs"][1]["parameters"] == {"binary_data_size": 11}
    assert "data" not in header["inputs"][0]
    assert header["outputs"] == [{"name": "y", "parameters": {"binary_data": True}}]
    assert enc.body[n:] == struct.pack("<ff", 1.0, -2.0) + b"\x02\x00\x00\x00ab\x01\x00\x00\x00c"


def test_binary_request_without_outputs_asks_for_binary_outputs() -> None:
    enc = json_codec.encode_request(request(Tensor("x", "INT8", [1], np.array([1], np.int8))), binary=True)
    n = int(dict(enc.headers)["Inference-Header-Content-Length"])
    assert orjson.loads(enc.body[:n])["parameters"] == {"binary_data_output": True}


@pytest.mark.parametrize("datatype", ALL_TYPES)
def test_binary_request_matches_tritonclient(datatype: str) -> None:
    """tritonclient is the reference implementation of the binary data extension."""
    data = sample(datatype, [2, 3])
    ours = json_codec.encode_request(
        request(Tensor("in", datatype, [2, 3], data), outputs=["out"], id="r"), binary=True
    )
    tin = triton_http.InferInput("in", [2, 3], datatype)
    tin.set_data_from_numpy(data if datatype != "FP16" else data.astype(np.float16), binary_data=True)
    body, header_length = triton_http.InferenceServerClient.generate_request_body(
        [tin], outputs=[triton_http.InferRequestedOutput("out", binary_data=True)], request_id="r"
    )
    n = int(dict(ours.headers)["Inference-Header-Content-Length"])
    assert orjson.loads(ours.body[:n]) == orjson.loads(body[:header_length])
    assert ours.body[n:] == body[header_length:]


@pytest.mark.parametrize("binary", [False, True])
@pytest.mark.parametrize("datatype", ALL_TYPES)
def test_request_round_trip_for_every_datatype(datatype: str, binary: bool) -> None:
    data = sample(datatype, [2, 3])
    req = request(Tensor("in", datatype, [2, 3], data, {"k": "v"}), outputs=["o"], parameters={"a": True})
    enc = json_codec.encode_request(req, binary=binary)
    n = int(dict(enc.headers)["Inference-Header-Content-Length"]) if binary else None
    back = json_codec.decode_request(enc.body, n)
    t = back.inputs[0]
    assert (t.name, t.datatype, t.shape, t.parameters) == ("in", datatype, [2, 3], {"k": "v"})
    assert t.data.dtype == data.dtype
    assert t.data.tolist() == data.tolist()
    assert back.outputs == ["o"] and back.parameters == {"a": True}


# ----------------------------------------------------------------------------- decode


def test_decode_json_response() -> None:
    body = response_json(
        {"name": "y", "datatype": "FP32", "shape": [2, 2], "data": [1, 2.5, 3, 4], "parameters": {"c": "np"}},
        {"name": "s", "datatype": "BYTES", "shape": [1], "data": ["hé"]},
        model_version="1",
        id="i",
        parameters={"p": 2},
    )
    json_codec.check_response(body)
    resp = json_codec.decode_response(body)
    assert (resp.model_name, resp.model_version, resp.id, resp.parameters) == ("m", "1", "i", {"p": 2})
    y = resp.output("y")
    assert (
        y.data.dtype == np.float32 and y.data.tolist() == [[1, 2.5], [3, 4]] and y.parameters == {"c": "np"}
    )
    assert resp.output("s").data.tolist() == ["hé".encode()]


def test_decode_nested_json_data() -> None:
    body = response_json({"name": "y", "datatype": "INT64", "shape": [2, 2], "data": [[1, 2], [3, 4]]})
    json_codec.check_response(body)
    assert json_codec.decode_response(body).outputs[0].data.tolist() == [[1, 2], [3, 4]]


def binary_response(raw_parts: list[tuple[dict[str, Any], bytes]]) -> tuple[bytes, int]:
    outputs = []
    for entry, raw in raw_parts:
        outputs.append({**entry, "parameters": {"binary_data_size": len(raw)}})
    header = orjson.dumps({"model_name": "m", "outputs": outputs})
    return header + b"".join(raw for _, raw in raw_parts), len(header)


def test_decode_binary_response() -> None:
    body, n = binary_response(
        [
            ({"name": "y", "datatype": "FP16", "shape": [2]}, struct.pack("<ee", 1.0, 2.0)),
            ({"name": "b", "datatype": "BOOL", "shape": [3]}, b"\x01\x00\x01"),
            ({"name": "s", "datatype": "BYTES", "shape": [1]}, b"\x01\x00\x00\x00z"),
            ({"name": "u", "datatype": "UINT16", "shape": [1]}, struct.pack("<H", 513)),
        ]
    )
    json_codec.check_response(body, n)
    resp = json_codec.decode_response(body, n)
    assert resp.output("y").data.tolist() == [1.0, 2.0] and resp.output("y").data.dtype == np.float16
    assert resp.output("b").data.tolist() == [True, False, True]
    assert resp.output("s").data.tolist() == [b"z"]
    assert resp.output("u").data.tolist() == [513]
    assert resp.output("y").parameters == {}


def test_decode_binary_response_matches_tritonclient() -> None:
    body, n = binary_response([({"name": "y", "datatype": "INT32", "shape": [2]}, struct.pack("<ii", -1, 7))])
    triton = triton_http.InferResult.from_response_body(body, header_length=n)
    assert json_codec.decode_response(body, n).output("y").data.tolist() == triton.as_numpy("y").tolist()


BAD_RESPONSES = [
    (b"", None, "not valid JSON"),
    (b"<html>oops</html>", None, "not valid JSON"),
    (b"[1, 2]", None, "not a JSON object"),
    (b'{"model_name": "m"}', None, "'outputs' must be a list"),
    (
        response_json({"name": "y", "datatype": "FP32", "shape": [3], "data": [1, 2]}),
        None,
        "2 elements, shape \\[3\\] needs 3",
    ),
    (
        response_json({"name": "y", "datatype": "FP32", "shape": [1], "data": ["x"]}),
        None,
        "str value .x. in a FP32 tensor",
    ),
    (
        response_json({"name": "y", "datatype": "INT32", "shape": [1], "data": [1.5]}),
        None,
        "float value 1.5 in a INT32",
    ),
    (
        response_json({"name": "y", "datatype": "BOOL", "shape": [1], "data": [1]}),
        None,
        "int value 1 in a BOOL",
    ),
    (
        response_json({"name": "y", "datatype": "FP99", "shape": [1], "data": [1]}),
        None,
        "unknown datatype 'FP99'",
    ),
    (response_json({"name": "y", "datatype": "FP32", "shape": [-1], "data": [1]}), None, "shape must be"),
    (response_json({"datatype": "FP32", "shape": [1], "data": [1]}), None, "output 0 has no string 'name'"),
    (response_json({"name": "y", "datatype": "FP32", "shape": [1]}), None, "'data' must be a list"),
    (
        response_json({"name": "y", "datatype": "FP32", "shape": [1], "parameters": {"binary_data_size": 4}}),
        None,
        "overruns the binary part",
    ),
]


@pytest.mark.parametrize(("body", "header_length", "message"), BAD_RESPONSES)
@pytest.mark.parametrize("decoder", [json_codec.check_response, json_codec.decode_response])
def test_bad_responses_are_oip_errors(
    decoder: Any, body: bytes, header_length: int | None, message: str
) -> None:
    with pytest.raises(OIPError, match=message):
        decoder(body, header_length)


def test_value_out_of_range_is_caught_by_full_decode() -> None:
    body = response_json({"name": "y", "datatype": "UINT8", "shape": [1], "data": [300]})
    json_codec.check_response(body)  # the hot-path check looks at structure and types only
    with pytest.raises(OIPError, match="out of range for UINT8"):
        json_codec.decode_response(body)


def test_binary_size_mismatches() -> None:
    short, short_n = binary_response([({"name": "y", "datatype": "FP32", "shape": [2]}, b"\x00" * 4)])
    body, n = binary_response([({"name": "y", "datatype": "FP32", "shape": [2]}, b"\x00" * 8)])
    for decoder in (json_codec.check_response, json_codec.decode_response):
        with pytest.raises(OIPError, match="4 raw bytes"):
            decoder(short, short_n)
        decoder(body, n)
        with pytest.raises(OIPError, match="2 trailing bytes"):
            decoder(body + b"xx", n)
        with pytest.raises(OIPError, match="does not fit a body"):
            decoder(body, len(body) + 1)


def test_error_body_is_an_oip_server_error() -> None:
    with pytest.raises(OIPServerError, match="server error: Model x not found"):
        json_codec.decode_response(b'{"error": "Model x not found"}')
    with pytest.raises(OIPServerError):
        json_codec.check_response(b'{"error": {"code": 3}}')
    assert json_codec.error_message(b'{"error": "boom"}') == "boom"
    assert (
        json_codec.error_message(b'{"detail": [{"msg": "field required"}]}') == '[{"msg":"field required"}]'
    )
    assert json_codec.error_message(b"Internal Server Error") is None


def test_error_messages_are_one_short_line() -> None:
    with pytest.raises(OIPError) as info:
        json_codec.decode_response(b'{"error": "' + b"x\\n" * 500 + b'"}')
    assert len(str(info.value)) <= 200 and "\n" not in str(info.value)


def test_request_file_errors() -> None:
    with pytest.raises(OIPError, match="request is not valid JSON"):
        json_codec.decode_request(b"{")
    with pytest.raises(OIPError, match="'inputs' is empty"):
        json_codec.decode_request(b'{"inputs": []}')
    with pytest.raises(OIPError, match="requested output 0 has no string 'name'"):
        json_codec.decode_request(
            orjson.dumps(
                {"inputs": [{"name": "a", "datatype": "INT8", "shape": [1], "data": [1]}], "outputs": [{}]}
            )
        )


# ----------------------------------------------------------------------------- robustness

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=20,
)
tensor_entries = st.fixed_dictionaries(
    {
        "name": st.text(max_size=3) | st.integers(),
        "datatype": st.sampled_from([*ALL_TYPES, "X"]),
        "shape": st.lists(st.integers(-2, 4), max_size=3),
    },
    optional={
        "data": json_values,
        "parameters": st.dictionaries(
            st.sampled_from(["binary_data_size", "p"]), st.integers(-1, 40) | json_values
        ),
    },
)
documents = st.fixed_dictionaries(
    {},
    optional={
        "model_name": json_values,
        "outputs": st.lists(tensor_entries, max_size=3) | json_values,
        "inputs": st.lists(tensor_entries, max_size=3),
        "error": json_values,
        "parameters": json_values,
        "id": json_values,
        "model_version": json_values,
    },
)


def _safe(call: Any) -> bool:
    """True if the call succeeded, False on OIPError; any other exception fails the test."""
    try:
        call()
    except OIPError:
        return False
    return True


@settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=documents, tail=st.binary(max_size=24), header_length=st.none() | st.integers(-5, 400))
def test_random_documents_never_crash_the_decoders(
    doc: dict[str, Any], tail: bytes, header_length: int | None
) -> None:
    header = json.dumps(doc).encode()  # stdlib: also big integers, as a server may send
    body = header + tail if header_length is not None else header
    for n in (header_length, len(header) if header_length is not None else None):
        full_ok = _safe(lambda n=n: json_codec.decode_response(body, n))
        light_ok = _safe(lambda n=n: json_codec.check_response(body, n))
        _safe(lambda n=n: json_codec.decode_request(body, n))
        assert light_ok or not full_ok  # the hot-path check never rejects a valid answer


@settings(max_examples=300, deadline=None, database=None)
@given(data=st.binary(max_size=200), header_length=st.none() | st.integers(-5, 250))
def test_random_bytes_never_crash_the_decoders(data: bytes, header_length: int | None) -> None:
    _safe(lambda: json_codec.decode_response(data, header_length))
    _safe(lambda: json_codec.check_response(data, header_length))
    _safe(lambda: json_codec.decode_request(data, header_length))
    json_codec.error_message(data)


@settings(max_examples=200, deadline=None, database=None)
@given(position=st.integers(0, 10_000), byte=st.integers(0, 255), cut=st.integers(0, 10_000))
def test_mutated_valid_answers_never_crash_the_decoders(position: int, byte: int, cut: int) -> None:
    body, n = binary_response(
        [
            ({"name": "y", "datatype": "FP32", "shape": [2]}, struct.pack("<ff", 1, 2)),
            ({"name": "s", "datatype": "BYTES", "shape": [2]}, b"\x01\x00\x00\x00a\x00\x00\x00\x00"),
        ]
    )
    mutated = bytearray(body)
    mutated[position % len(mutated)] = byte
    mutated = bytes(mutated[: len(mutated) - cut % 8])
    for header_length in (n, None):
        full_ok = _safe(lambda h=header_length: json_codec.decode_response(mutated, h))
        light_ok = _safe(lambda h=header_length: json_codec.check_response(mutated, h))
        assert light_ok or not full_ok
