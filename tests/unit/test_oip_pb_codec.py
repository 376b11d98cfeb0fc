"""gRPC codec: typed and raw contents, wire compatibility with MLServer, strict response checks."""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mlserver.codecs import NumpyCodec
from mlserver.grpc import converters as ml_converters
from mlserver.grpc import dataplane_pb2 as ml_pb
from mlserver.types import InferenceResponse as MLInferenceResponse

from seldon_load.errors import ConfigError, OIPError
from seldon_load.oip import datatypes, pb_codec
from seldon_load.oip._generated import grpc_predict_v2_pb2 as pb
from seldon_load.oip.types import InferRequest, Tensor

ALL_TYPES = list(datatypes.DATATYPES)
TYPED = [t for t in ALL_TYPES if t in pb_codec.CONTENTS_FIELD]


def sample(datatype: str, shape: list[int]) -> np.ndarray:
    count = datatypes.element_count(shape)
    if datatype == "BYTES":
        return datatypes.bytes_array([bytes([65 + i]) * (i % 3) for i in range(count)]).reshape(shape)
    if datatype == "BOOL":
        return (np.arange(count) % 3 == 0).reshape(shape)
    dtype = datatypes.numpy_dtype(datatype)
    values = np.arange(count) + (0.25 if dtype.kind == "f" else 0)
    if dtype.kind == "i":
        values = values - count // 2
    return values.astype(dtype).reshape(shape)


def one(datatype: str, shape: list[int] | None = None) -> InferRequest:
    shape = shape or [2, 3]
    return InferRequest(inputs=[Tensor("in", datatype, shape, sample(datatype, shape))])


def test_typed_contents_use_the_datatypes_field() -> None:
    msg = pb_codec.encode_request(one("INT16"), "m", raw=False)
    assert list(msg.inputs[0].contents.int_contents) == sample("INT16", [2, 3]).ravel().tolist()
    assert not msg.raw_input_contents
    msg = pb_codec.encode_request(one("UINT64"), "m", raw=False)
    assert list(msg.inputs[0].contents.uint64_contents) == list(range(6))


def test_raw_contents_are_little_endian() -> None:
    x = np.array([[1.0, -2.0]], dtype=">f4")
    msg = pb_codec.encode_request(InferRequest([Tensor("x", "FP32", [1, 2], x)]), "m", raw=True)
    assert list(msg.raw_input_contents) == [struct.pack("<ff", 1.0, -2.0)]
    assert not msg.inputs[0].HasField("contents")


def test_fp16_forces_raw_for_every_input() -> None:
    req = InferRequest(
        [
            Tensor("a", "FP32", [1], np.ones(1, np.float32)),
            Tensor("h", "FP16", [2], np.array([1, 2], np.float16)),
        ]
    )
    msg = pb_codec.encode_request(req, "m", raw=False)
    assert len(msg.raw_input_contents) == 2
    assert msg.raw_input_contents[1] == struct.pack("<ee", 1, 2)


def test_request_header_fields_and_parameters() -> None:
    req = one("FP32")
    req.outputs = ["o1", "o2"]
    req.id = "r1"
    req.parameters = {"b": True, "i": -3, "u": 2**64 - 1, "f": 0.5, "s": "x"}
    msg = pb.ModelInferRequest.FromString(pb_codec.serialize_request(req, "mypipe"))
    assert (msg.model_name, msg.id) == ("mypipe", "r1")
    assert [o.name for o in msg.outputs] == ["o1", "o2"]
    assert pb_codec.get_parameters(msg.parameters) == req.parameters


def test_unsupported_parameter_value_is_a_config_error() -> None:
    req = one("FP32")
    req.parameters = {"nested": {"a": 1}}
    with pytest.raises(ConfigError, match="parameter 'nested'.*bool, int, float or str"):
        pb_codec.encode_request(req, "m")


@pytest.mark.parametrize("raw", [True, False])
@pytest.mark.parametrize("datatype", ALL_TYPES)
def test_mlserver_reads_our_requests(datatype: str, raw: bool) -> None:
    """Wire compatibility: MLServer's own stubs and codecs decode what we send."""
    data = sample(datatype, [2, 3])
    req = InferRequest([Tensor("in", datatype, [2, 3], data, {"content_type": "np"})], outputs=["out"])
    ml_msg = ml_pb.ModelInferRequest.FromString(pb_codec.serialize_request(req, "synth", raw=raw))
    ml_req = ml_converters.ModelInferRequestConverter.to_types(ml_msg)
    assert ml_msg.model_name == "synth" and ml_req.outputs[0].name == "out"
    if datatype == "BYTES":  # MLServer's NumpyCodec needs equal-length elements: compare its unpacked list
        ml_data = ml_req.inputs[0].data
        assert list(getattr(ml_data, "root", ml_data)) == data.ravel().tolist()
        return
    decoded = NumpyCodec.decode_input(ml_req.inputs[0])
    assert decoded.dtype == data.dtype
    assert decoded.tolist() == data.tolist()


@pytest.mark.parametrize("use_raw", [True, False])
@pytest.mark.parametrize("datatype", TYPED)
def test_we_read_mlserver_responses(datatype: str, use_raw: bool) -> None:
    data = sample(datatype, [3, 2])
    output = NumpyCodec.encode_output("out", data)
    ml_resp = MLInferenceResponse(model_name="synth", id="x", outputs=[output])
    wire = ml_converters.ModelInferResponseConverter.from_types(ml_resp, use_raw=use_raw).SerializeToString()
    pb_codec.check_response(wire)
    resp = pb_codec.decode_response(wire)
    out = resp.output("out")
    assert (resp.model_name, resp.id, out.datatype, out.shape) == ("synth", "x", datatype, [3, 2])
    assert out.data.tolist() == data.tolist()


def response(datatype: str, shape: list[int], raw: bytes | None = None, **contents: Any) -> bytes:
    msg = pb.ModelInferResponse(model_name="m")
    out = msg.outputs.add(name="y", datatype=datatype, shape=shape)
    for field, values in contents.items():
        getattr(out.contents, field).extend(values)
    if raw is not None:
        msg.raw_output_contents.append(raw)
    return msg.SerializeToString()


def test_decode_raw_fp16_bool_and_bytes() -> None:
    assert pb_codec.decode_response(response("FP16", [2], struct.pack("<ee", 0.5, 4))).outputs[
        0
    ].data.tolist() == [0.5, 4]
    assert pb_codec.decode_response(response("BOOL", [2], b"\x00\x01")).outputs[0].data.tolist() == [
        False,
        True,
    ]
    raw = b"\x02\x00\x00\x00hi\x00\x00\x00\x00"
    assert pb_codec.decode_response(response("BYTES", [2], raw)).outputs[0].data.tolist() == [b"hi", b""]


BAD = [
    (b"\xff\xff\xff", "not a ModelInferResponse"),
    (response("FP32", [3], fp32_contents=[1, 2]), "2 elements in fp32_contents, shape \\[3\\] needs 3"),
    (response("FP32", [2], int_contents=[1, 2]), "0 elements in fp32_contents"),
    (response("FP16", [1]), "FP16 has no typed contents"),
    (response("FP32", [2], raw=b"\x00" * 7), "7 raw bytes, shape \\[2\\] of FP32 needs 8"),
    (response("BYTES", [2], raw=b"\x01\x00\x00\x00a"), "1 BYTES elements, shape needs 2"),
    (response("FP8", [1]), "unknown datatype 'FP8'"),
    (response("FP32", [-1], fp32_contents=[1]), "shape must be"),
]


@pytest.mark.parametrize(("wire", "message"), BAD)
@pytest.mark.parametrize("decoder", [pb_codec.check_response, pb_codec.decode_response])
def test_bad_responses_are_oip_errors(decoder: Any, wire: bytes, message: str) -> None:
    with pytest.raises(OIPError, match=message):
        decoder(wire)


def test_raw_count_must_match_outputs() -> None:
    msg = pb.ModelInferResponse()
    msg.outputs.add(name="a", datatype="INT8", shape=[1])
    msg.outputs.add(name="b", datatype="INT8", shape=[1])
    msg.raw_output_contents.append(b"\x01")
    with pytest.raises(OIPError, match="1 raw_output_contents for 2 outputs"):
        pb_codec.check_response(msg.SerializeToString())


def test_typed_value_out_of_range_is_caught_by_full_decode() -> None:
    wire = response("INT8", [1], int_contents=[300])
    pb_codec.check_response(wire)
    with pytest.raises(OIPError, match="out of range for INT8"):
        pb_codec.decode_response(wire)


def test_metadata_to_dict_matches_the_rest_form() -> None:
    msg = pb.ModelMetadataResponse(name="iris", platform="sklearn", versions=["1"])
    msg.inputs.add(name="input-0", datatype="FP32", shape=[-1, 4])
    msg.outputs.add(name="predict", datatype="INT64", shape=[-1, 1]).parameters[
        "content_type"
    ].string_param = "np"
    assert pb_codec.metadata_to_dict(msg) == {
        "name": "iris",
        "versions": ["1"],
        "platform": "sklearn",
        "inputs": [{"name": "input-0", "datatype": "FP32", "shape": [-1, 4]}],
        "outputs": [
            {"name": "predict", "datatype": "INT64", "shape": [-1, 1], "parameters": {"content_type": "np"}}
        ],
    }


def _safe(call: Any) -> bool:
    try:
        call()
    except OIPError:
        return False
    return True


@settings(max_examples=400, deadline=None, database=None)
@given(data=st.binary(max_size=300))
def test_random_bytes_never_crash_the_decoders(data: bytes) -> None:
    full_ok = _safe(lambda: pb_codec.decode_response(data))
    light_ok = _safe(lambda: pb_codec.check_response(data))
    assert light_ok or not full_ok


outputs = st.lists(
    st.tuples(
        st.text(max_size=3),
        st.sampled_from([*ALL_TYPES, "", "X"]),
        st.lists(st.integers(-2, 4), max_size=3),
        st.lists(st.integers(-(2**31), 2**31 - 1), max_size=6),
        st.lists(st.floats(width=32), max_size=6),
        st.lists(st.binary(max_size=5), max_size=4),
    ),
    max_size=3,
)


@settings(max_examples=300, deadline=None, database=None)
@given(outs=outputs, raws=st.lists(st.binary(max_size=24), max_size=3), cut=st.integers(0, 5))
def test_random_and_truncated_messages_never_crash_the_decoders(
    outs: list[Any], raws: list[bytes], cut: int
) -> None:
    msg = pb.ModelInferResponse(model_name="m")
    for name, datatype, shape, ints, floats, blobs in outs:
        out = msg.outputs.add(name=name, datatype=datatype, shape=shape)
        out.contents.int_contents.extend(ints)
        out.contents.fp32_contents.extend(floats)
        out.contents.bytes_contents.extend(blobs)
    msg.raw_output_contents.extend(raws)
    wire = msg.SerializeToString()
    for data in (wire, wire[: max(0, len(wire) - cut)]):
        full_ok = _safe(lambda d=data: pb_codec.decode_response(d))
        light_ok = _safe(lambda d=data: pb_codec.check_response(d))
        assert light_ok or not full_ok
