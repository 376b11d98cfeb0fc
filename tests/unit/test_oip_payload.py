"""Payload sources (file, model metadata, batch) and the pre-encoded payload pool."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from seldon_load.errors import ConfigError, TargetError
from seldon_load.oip import json_codec, payload
from seldon_load.oip._generated import grpc_predict_v2_pb2 as pb
from seldon_load.oip.payload import (
    PayloadPool,
    build_payload_pool,
    load_request_file,
    repeat_batch,
    synthesize_request,
)
from seldon_load.oip.target import parse_target
from seldon_load.oip.types import EncodedRequest

METADATA = {
    "name": "synth",
    "inputs": [
        {"name": "INPUT0", "datatype": "FP32", "shape": [-1, 4]},
        {"name": "mask", "datatype": "BOOL", "shape": [-1, -1]},
        {"name": "ids", "datatype": "INT64", "shape": [3]},
        {"name": "text", "datatype": "BYTES", "shape": [-1]},
        {"name": "half", "datatype": "FP16", "shape": [2, -1]},
        {"name": "small", "datatype": "UINT8", "shape": [-1, 2]},
    ],
    "outputs": [{"name": "OUTPUT0", "datatype": "FP32", "shape": [-1, 4]}],
}
REST = parse_target("http://127.0.0.1:8080", "synth", None)
GRPC = parse_target("127.0.0.1:8081", "synth", None)
PIPE_GRPC = parse_target("127.0.0.1:8081", None, "mypipe")


def write_json(path: Path, doc: Any) -> Path:
    path.write_bytes(orjson.dumps(doc))
    return path


def good_file(tmp_path: Path) -> Path:
    return write_json(
        tmp_path / "req.json",
        {
            "parameters": {"content_type": "np"},
            "inputs": [
                {"name": "INPUT0", "datatype": "FP32", "shape": [2, 4], "data": [[1, 2, 3, 4], [5, 6, 7, 8]]},
                {"name": "s", "datatype": "BYTES", "shape": [2, 1], "data": ["a", "b"]},
            ],
            "outputs": [{"name": "OUTPUT0"}],
        },
    )


# ----------------------------------------------------------------------------- files


def test_load_request_file(tmp_path: Path) -> None:
    req = load_request_file(good_file(tmp_path))
    x, s = req.inputs
    assert (x.name, x.datatype, x.shape) == ("INPUT0", "FP32", [2, 4])
    assert x.data.dtype == np.float32 and x.data[1].tolist() == [5, 6, 7, 8]
    assert s.data.tolist() == [[b"a"], [b"b"]]
    assert req.outputs == ["OUTPUT0"] and req.parameters == {"content_type": "np"}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"{not json", "is not valid JSON"),
        (b"[]", "is not a JSON object"),
        (
            b'{"inputs": [{"name": "a", "datatype": "FLOAT", "shape": [1], "data": [1]}]}',
            "unknown datatype 'FLOAT'",
        ),
        (
            b'{"inputs": [{"name": "a", "datatype": "FP32", "shape": [2, 2], "data": [1, 2, 3]}]}',
            "input 'a': 3 elements, shape \\[2, 2\\] needs 4",
        ),
        (
            b'{"inputs": [{"name": "a", "datatype": "INT8", "shape": [1], "data": [1000]}]}',
            "out of range for INT8",
        ),
        (b'{"inputs": [{"name": "a", "datatype": "FP32", "shape": [1], "data": ["x"]}]}', "str value 'x'"),
        (b'{"outputs": []}', "'inputs' must be a list"),
    ],
)
def test_bad_request_files_are_one_line_config_errors(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "bad.json"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=message) as info:
        load_request_file(path)
    assert str(info.value).startswith(f"payload file {path}: ")
    assert "\n" not in str(info.value)


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_request_file(tmp_path / "nope.json")
    with pytest.raises(ConfigError, match="is not a file"):
        load_request_file(tmp_path)


def test_file_over_64_mib_is_refused_before_reading(tmp_path: Path) -> None:
    path = tmp_path / "huge.json"
    with path.open("wb") as f:
        f.truncate(payload.MAX_PAYLOAD_BYTES + 1)  # sparse: no disk used
    with pytest.raises(ConfigError, match="is 64.0 MiB; the limit is 64 MiB"):
        load_request_file(path)


# ----------------------------------------------------------------------------- metadata


def test_synthesize_fills_dynamic_dims_and_fits_datatypes() -> None:
    req = synthesize_request(METADATA, 3, np.random.default_rng(1))
    by_name = {t.name: t for t in req.inputs}
    assert {n: t.shape for n, t in by_name.items()} == {
        "INPUT0": [3, 4],
        "mask": [3, 1],
        "ids": [3],
        "text": [3],
        "half": [2, 1],
        "small": [3, 2],
    }
    assert by_name["INPUT0"].data.dtype == np.float32 and by_name["INPUT0"].data.shape == (3, 4)
    assert by_name["mask"].data.dtype == np.bool_
    assert by_name["ids"].data.dtype == np.int64 and 0 <= by_name["ids"].data.min()
    assert by_name["half"].data.dtype == np.float16
    assert by_name["small"].data.dtype == np.uint8 and by_name["small"].data.max() < 100
    text = by_name["text"].data
    assert text.dtype == object and all(isinstance(v, bytes) and len(v) == 8 and v.isalpha() for v in text)


@pytest.mark.parametrize(
    ("metadata", "message"),
    [
        ({"name": "m", "inputs": []}, "model 'm' declares no inputs in its metadata; give a payload file"),
        ({"name": "m"}, "declares no inputs"),
        ({"name": "m", "inputs": [{"name": "a", "datatype": "FP8", "shape": [1]}]}, "unknown datatype 'FP8'"),
        ({"name": "m", "inputs": [{"name": "a", "datatype": "FP32"}]}, "metadata shape must be a list"),
        ({"name": "m", "inputs": [{"name": "a", "datatype": "FP32", "shape": [-3]}]}, "invalid dimension -3"),
        ({"name": "m", "inputs": [{"datatype": "FP32", "shape": [1]}]}, "metadata input 0 has no name"),
    ],
)
def test_unusable_metadata_is_a_target_error(metadata: dict, message: str) -> None:
    with pytest.raises(TargetError, match=message):
        synthesize_request(metadata, 1, np.random.default_rng(0))


def test_repeat_batch_along_first_dimension(tmp_path: Path) -> None:
    req = repeat_batch(load_request_file(good_file(tmp_path)), 3)
    assert req.inputs[0].shape == [6, 4] and req.inputs[0].data[4].tolist() == [1, 2, 3, 4]
    assert req.inputs[1].shape == [6, 1]
    assert req.outputs == ["OUTPUT0"]


# ----------------------------------------------------------------------------- pool


def test_pool_is_round_robin_over_the_same_objects() -> None:
    pool = PayloadPool([b"a", b"b", b"c"])
    got = [pool.next() for _ in range(7)]
    assert got == [b"a", b"b", b"c", b"a", b"b", b"c", b"a"]
    assert pool.next() is pool.items[1]
    assert len(pool) == 3
    with pytest.raises(ValueError):
        PayloadPool([])


def test_rest_pool_of_distinct_json_variants() -> None:
    pool = build_payload_pool(REST, METADATA, batch_size=2, pool_size=5, seed=7)
    assert len(pool) == 5 and all(isinstance(i, EncodedRequest) for i in pool.items)
    assert len({i.body for i in pool.items}) == 5
    req = json_codec.decode_request(pool.items[0].body)
    assert req.inputs[0].shape == [2, 4]
    assert np.array_equal(req.inputs[0].data, pool.requests[0].inputs[0].data)
    assert dict(pool.items[0].headers) == {"Content-Type": "application/json"}


def test_pool_is_reproducible_from_the_seed() -> None:
    a = build_payload_pool(REST, METADATA, seed=3, pool_size=2)
    b = build_payload_pool(REST, METADATA, seed=3, pool_size=2)
    c = build_payload_pool(REST, METADATA, seed=4, pool_size=2)
    assert a.items == b.items and a.items != c.items


def test_rest_binary_pool() -> None:
    pool = build_payload_pool(REST, METADATA, binary=True, pool_size=1)
    item = pool.items[0]
    headers = dict(item.headers)
    n = int(headers["Inference-Header-Content-Length"])
    req = json_codec.decode_request(item.body, n)
    assert [t.name for t in req.inputs] == [m["name"] for m in METADATA["inputs"]]


@pytest.mark.parametrize("raw", [True, False])
def test_grpc_pool_is_serialized_requests_for_the_target(raw: bool) -> None:
    md = {"name": "synth", "inputs": [{"name": "INPUT0", "datatype": "FP32", "shape": [-1, 4]}]}
    pool = build_payload_pool(GRPC, md, batch_size=4, pool_size=3, raw_grpc=raw)
    msgs = [pb.ModelInferRequest.FromString(i) for i in pool.items]
    assert all(isinstance(i, bytes) for i in pool.items)
    assert {m.model_name for m in msgs} == {"synth"}
    assert list(msgs[0].inputs[0].shape) == [4, 4]
    assert bool(msgs[0].raw_input_contents) is raw
    pipe = build_payload_pool(PIPE_GRPC, md, pool_size=1)
    assert pb.ModelInferRequest.FromString(pipe.items[0]).model_name == "mypipe"


def test_file_payload_is_used_as_is_unless_variants_are_asked(tmp_path: Path) -> None:
    path = good_file(tmp_path)
    pool = build_payload_pool(REST, None, payload_file=path, pool_size=8)
    assert len(pool) == 1
    assert json_codec.decode_request(pool.items[0].body).inputs[0].data.tolist() == [
        [1, 2, 3, 4],
        [5, 6, 7, 8],
    ]
    pool = build_payload_pool(REST, None, payload_file=path, pool_size=4, file_variants=True)
    assert len(pool) == 4 and len({i.body for i in pool.items}) == 4
    variant = json_codec.decode_request(pool.items[2].body)
    assert [t.shape for t in variant.inputs] == [[2, 4], [2, 1]] and variant.outputs == ["OUTPUT0"]


def test_file_payload_with_batch_size(tmp_path: Path) -> None:
    pool = build_payload_pool(GRPC, None, payload_file=good_file(tmp_path), batch_size=2)
    assert list(pb.ModelInferRequest.FromString(pool.items[0]).inputs[0].shape) == [4, 4]


def test_pool_argument_errors() -> None:
    with pytest.raises(ConfigError, match="batch size must be at least 1"):
        build_payload_pool(REST, METADATA, batch_size=0)
    with pytest.raises(ConfigError, match="payload variants must be at least 1"):
        build_payload_pool(REST, METADATA, pool_size=0)
    with pytest.raises(ConfigError, match="no payload"):
        build_payload_pool(REST, None)
