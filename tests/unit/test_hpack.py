"""HPACK decoding for the gRPC transport: RFC 7541 examples and blocks made by a reference
encoder (the python-hpack package, recorded here as bytes), with the dynamic table."""

from __future__ import annotations

import pytest

from seldon_load.transport import hpack


def test_rfc7541_c4_requests_with_huffman_and_the_dynamic_table() -> None:
    dec = hpack.Decoder()
    first = bytes.fromhex("828684418cf1e3c2e5f23a6ba0ab90f4ff")  # C.4.1
    assert dec.decode(first) == (
        (":method", "GET"), (":scheme", "http"), (":path", "/"), (":authority", "www.example.com"))
    second = bytes.fromhex("828684be5886a8eb10649cbf")  # C.4.2: index 62 is the :authority added above
    assert dec.decode(second) == (
        (":method", "GET"), (":scheme", "http"), (":path", "/"), (":authority", "www.example.com"),
        ("cache-control", "no-cache"))


def test_grpc_answers_from_a_reference_encoder() -> None:
    dec = hpack.Decoder()
    headers = (("content-type", "application/grpc"), ("grpc-accept-encoding", "identity,deflate,gzip"))
    block1 = bytes.fromhex(
        "885f8b1d75d0620d263d4c4d6564408e9acac8b0c842d6958b510f21aa9b903485a9264fafa90b2d03497ea6f66aff")
    block2 = bytes.fromhex("88bfbe")  # the same headers, now from the dynamic table
    trailers = bytes.fromhex(
        "40889acac8b21234da8f816f40899acac8b5254207317f95d0790b42951d645a49d6a4f216852a3a5494f6d527")
    assert dec.decode(block1) == ((":status", "200"), *headers)
    assert dec.decode(block2) == ((":status", "200"), *headers)
    assert dec.decode(trailers) == (("grpc-status", "5"), ("grpc-message", "Model no-such-model not found"))


def test_blocks_that_do_not_touch_the_table_are_cached() -> None:
    dec = hpack.Decoder()
    block = hpack.encode_indexed(8) + hpack.encode_literal("grpc-status", "0")
    first = dec.decode(block)
    assert first == ((":status", "200"), ("grpc-status", "0"))
    assert dec.decode(block) is first  # served from the cache


def test_encoder_round_trip_and_never_indexed() -> None:
    block = (hpack.encode_literal(":path", "/inference.GRPCInferenceService/ModelInfer")
             + hpack.encode_literal("authorization", "Bearer " + "x" * 200, never_index=True)
             + hpack.encode_literal("x-request-id", "abc-1"))
    assert block[0] == 0x04  # literal without indexing, static name :path
    assert hpack.Decoder().decode(block) == (
        (":path", "/inference.GRPCInferenceService/ModelInfer"),
        ("authorization", "Bearer " + "x" * 200),
        ("x-request-id", "abc-1"),
    )


def test_table_size_update_evicts_and_is_bounded() -> None:
    dec = hpack.Decoder(max_table_size=4096)
    dec.decode(bytes.fromhex("828684418cf1e3c2e5f23a6ba0ab90f4ff"))
    assert dec.decode(b"\x20" + hpack.encode_indexed(2)) == ((":method", "GET"),)  # size 0: table emptied
    with pytest.raises(hpack.HPACKError):
        dec.decode(hpack.encode_indexed(62))  # the evicted entry
    with pytest.raises(hpack.HPACKError):
        dec.decode(hpack.encode_integer(8192, 5, 0x20))  # above what we advertised


@pytest.mark.parametrize("bad", [b"\x80", b"\x0f", b"\x00\x85\xff", bytes.fromhex("0085ffffffffff")])
def test_malformed_blocks_are_errors(bad: bytes) -> None:
    with pytest.raises(hpack.HPACKError):
        hpack.Decoder().decode(bad)
