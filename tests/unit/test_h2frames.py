"""The HTTP/2 frame handler of the gRPC transport, driven from bytes (no sockets): padding,
CONTINUATION, flow-control windows, GOAWAY, RST_STREAM, the message size bound."""

from __future__ import annotations

import struct

import pytest

from seldon_load.transport import grpc_status as gs
from seldon_load.transport.h2frames import (
    CONTINUATION,
    DATA,
    END_HEADERS,
    END_STREAM,
    GOAWAY,
    HEADERS,
    PADDED,
    RST_STREAM,
    S_INITIAL_WINDOW_SIZE,
    SETTINGS,
    WINDOW_UPDATE,
    ConnectionFailed,
    FrameHandler,
    frame,
)
from seldon_load.transport.hpack import encode_literal

RESPONSE_HEADERS = encode_literal(":status", "200") + encode_literal("content-type", "application/grpc")
TRAILERS = encode_literal("grpc-status", "0")


class Recorder(FrameHandler):
    """A frame handler whose wire is a list: what it sends, and how streams ended."""

    def __init__(self, max_message_bytes: int = 1 << 20) -> None:
        super().__init__(max_message_bytes)
        self.sent: list[bytes] = []
        self.ended: dict[int, tuple] = {}

    def send(self, data: bytes) -> None:
        self.sent.append(data)

    def _finish(self, sid: int, code: int, message: str, data: bytes = b"") -> None:
        if self.streams.pop(sid, None) is not None:
            self.ended[sid] = (code, message, data)


def message(payload: bytes) -> bytes:
    return struct.pack(">BI", 0, len(payload)) + payload


def answer(sid: int, payload: bytes, pad: int = 0) -> bytes:
    body = message(payload)
    data = frame(DATA, PADDED, sid, bytes([pad]) + body + b"\0" * pad) if pad else frame(DATA, 0, sid, body)
    return (frame(HEADERS, END_HEADERS, sid, RESPONSE_HEADERS) + data
            + frame(HEADERS, END_HEADERS | END_STREAM, sid, TRAILERS))


def test_padded_data_split_at_every_byte() -> None:
    wire = answer(1, b"hello", pad=7)
    for cut in range(len(wire) + 1):
        h = Recorder()
        h.open_stream(None)
        h.feed(wire[:cut])
        h.feed(wire[cut:])
        assert h.ended[1] == (gs.OK, "", b"hello"), cut


def test_header_blocks_continue_in_continuation_frames() -> None:
    h = Recorder()
    h.open_stream(None)
    block = RESPONSE_HEADERS
    h.feed(frame(HEADERS, 0, 1, block[:3]) + frame(CONTINUATION, 0, 1, block[3:7])
           + frame(CONTINUATION, END_HEADERS, 1, block[7:]) + frame(DATA, 0, 1, message(b"x"))
           + frame(HEADERS, END_STREAM, 1, TRAILERS[:2]) + frame(CONTINUATION, END_HEADERS, 1, TRAILERS[2:]))
    assert h.ended[1] == (gs.OK, "", b"x")
    with pytest.raises(ConnectionFailed, match="CONTINUATION"):
        Recorder().feed(frame(CONTINUATION, END_HEADERS, 1, block))


def test_flow_control_windows_follow_settings_and_window_updates() -> None:
    h = Recorder()
    stream = h.open_stream(None)
    assert stream.send_window == h.send_window == 65535
    h.feed(frame(SETTINGS, 0, 0, struct.pack(">HI", S_INITIAL_WINDOW_SIZE, 1000)))
    assert stream.send_window == 1000 and h.peer_initial_window == 1000
    assert h.sent[-1] == frame(SETTINGS, 1, 0)  # acknowledged
    h.feed(frame(WINDOW_UPDATE, 0, 1, struct.pack(">I", 500)) + frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", 7)))
    assert stream.send_window == 1500 and h.send_window == 65542
    assert h.open_stream(None).send_window == 1000  # new streams start at the peer's setting


def test_goaway_ends_the_streams_it_did_not_process() -> None:
    h = Recorder()
    for _ in range(3):
        h.open_stream(None)  # streams 1, 3, 5
    h.feed(frame(GOAWAY, 0, 0, struct.pack(">II", 1, 0)))
    assert not h.usable
    assert set(h.ended) == {3, 5} and h.ended[3][0] == gs.UNAVAILABLE
    h.feed(answer(1, b"done"))  # the one it processed still completes
    assert h.ended[1] == (gs.OK, "", b"done")


def test_rst_stream_maps_its_error_code() -> None:
    h = Recorder()
    h.open_stream(None)
    h.open_stream(None)
    h.feed(frame(RST_STREAM, 0, 1, struct.pack(">I", 0x7)) + frame(RST_STREAM, 0, 3, struct.pack(">I", 0x2)))
    assert h.ended[1][0] == gs.UNAVAILABLE and h.ended[3][0] == gs.INTERNAL


def test_a_message_past_the_bound_ends_the_stream_early() -> None:
    h = Recorder(max_message_bytes=100)
    h.open_stream(None)
    h.feed(frame(HEADERS, END_HEADERS, 1, RESPONSE_HEADERS) + frame(DATA, 0, 1, message(b"a" * 200)))
    assert h.ended[1] == (gs.TOO_LARGE, "answer larger than 100 bytes", b"")
    assert h.sent[-1] == frame(RST_STREAM, 0, 1, struct.pack(">I", 0x8))


def test_padding_longer_than_the_frame_is_a_connection_error() -> None:
    h = Recorder()
    h.open_stream(None)
    with pytest.raises(ConnectionFailed):
        h.feed(frame(HEADERS, END_HEADERS, 1, RESPONSE_HEADERS) + frame(DATA, PADDED, 1, b"\x09abc"))
