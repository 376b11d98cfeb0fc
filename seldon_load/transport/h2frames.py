"""HTTP/2 frames for unary gRPC, read from bytes: the socket-free half of the gRPC wire.

``FrameHandler`` holds what a connection knows (its streams, both flow-control windows, the
HPACK decoder, the peer's settings) and ``feed`` takes received bytes, splits them into
frames and acts on each: DATA (padding removed, the message bounded by
``max_message_bytes``), HEADERS and CONTINUATION (header blocks joined, decoded, a stream's
HTTP status and trailers read), SETTINGS (initial window, frame size, stream limit),
WINDOW_UPDATE, PING, RST_STREAM and GOAWAY. What it must send goes to ``send`` and a stream
that ends goes to ``_finish``; ``transport.h2.H2Connection`` gives both a socket and a
waiting caller, and the tests give them a list.
"""

from __future__ import annotations

import struct
from typing import Any
from urllib.parse import unquote

from seldon_load.transport import hpack
from seldon_load.transport.grpc_status import (
    H2_ERROR_TO_GRPC,
    HTTP_TO_GRPC,
    INTERNAL,
    OK,
    TOO_LARGE,
    UNAVAILABLE,
    UNKNOWN,
)

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = range(10)
END_STREAM, ACK, END_HEADERS, PADDED, PRIORITY_FLAG = 0x1, 0x1, 0x4, 0x8, 0x20
S_HEADER_TABLE_SIZE, S_ENABLE_PUSH, S_MAX_CONCURRENT_STREAMS = 0x1, 0x2, 0x3
S_INITIAL_WINDOW_SIZE, S_MAX_FRAME_SIZE = 0x4, 0x5
MAX_WINDOW = 2**31 - 1
DEFAULT_WINDOW = 65535
FRAME = struct.Struct(">BHBBI")  # 24-bit length as (high byte, low 16 bits), type, flags, stream
GRPC_PREFIX = struct.Struct(">BI")
_WINDOW_REFILL = 2**30

Result = tuple[int, str, bytes]  # gRPC status code, message, response message (payload only)


def frame(kind: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    n = len(payload)
    return FRAME.pack(n >> 16, n & 0xFFFF, kind, flags, stream_id) + payload


class Stream:
    """One call: its waiter, what came back so far, its send window."""

    __slots__ = ("id", "waiter", "headers_seen", "http_status", "content_type", "parts", "result", "send_window",
                 "received_at", "size")

    def __init__(self, stream_id: int, waiter: Any, send_window: int) -> None:
        self.id = stream_id
        self.waiter = waiter
        self.headers_seen = False
        self.http_status = 0
        self.content_type = ""
        self.parts: list[bytes] = []
        self.result: Result | None = None
        self.send_window = send_window
        self.received_at: float | None = None  # the kernel's receive time of the read that ended it
        self.size = 0  # DATA bytes received


class ConnectionFailed(Exception):
    """The connection could not be made or broke (becomes gRPC UNAVAILABLE)."""


class FrameHandler:
    """A connection's HTTP/2 state, driven by ``feed``; ``send`` and ``_finish`` are the
    subclass's (the socket, the waiting caller)."""

    def __init__(self, max_message_bytes: int) -> None:
        self.max_message_bytes = max_message_bytes
        self.streams: dict[int, Stream] = {}
        self.next_id = 1
        self.send_window = DEFAULT_WINDOW
        self.peer_initial_window = DEFAULT_WINDOW
        self.peer_max_frame = 16384
        self.peer_max_streams = 2**31
        self.recv_unacked = 0
        self.usable = True  # no GOAWAY, not broken
        self.error = ""
        self.decoder = hpack.Decoder(4096)
        self._headers_pending: tuple[int, int, list[bytes]] | None = None
        self._pending = b""  # the start of a frame not complete yet
        self.rx_at: float | None = None

    def send(self, data: bytes) -> None:
        raise NotImplementedError

    def _finish(self, sid: int, code: int, message: str, data: bytes = b"") -> Any:
        """Settle a stream's result; the stream, or None if it was no longer open."""
        stream = self.streams.pop(sid, None)
        if stream is None:
            return None
        stream.result = (code, message, data)
        stream.received_at = self.rx_at
        return stream

    def _wake_window_waiters(self) -> None:
        """Senders waiting for window may go on (the subclass wakes them)."""

    def cancel_stream(self, stream: Stream) -> None:
        """Forget a stream and tell the peer (RST_STREAM CANCEL)."""
        if self.streams.pop(stream.id, None) is not None and self.usable:
            try:
                self.send(frame(RST_STREAM, 0, stream.id, struct.pack(">I", 0x8)))
            except OSError:
                pass

    def open_stream(self, waiter: Any) -> Stream:
        stream_id = self.next_id
        self.next_id += 2
        stream = Stream(stream_id, waiter, self.peer_initial_window)
        self.streams[stream_id] = stream
        return stream

    def feed(self, data: bytes) -> None:
        """Received bytes: every complete frame is handled, the rest kept for the next feed.
        Raises ``ConnectionFailed``, ``hpack.HPACKError`` or ``struct.error`` when the
        connection cannot go on."""
        pending = self._pending
        if pending:
            data = pending + data
        pos = self._frames(data)
        self._pending = data[pos:] if pos < len(data) else b""

    def _frames(self, data: bytes) -> int:
        pos = 0
        end = len(data)
        unpack = FRAME.unpack_from
        while end - pos >= 9:
            hi, lo, kind, flags, sid = unpack(data, pos)
            length = (hi << 16) | lo
            if end - pos - 9 < length:
                break
            payload = data[pos + 9 : pos + 9 + length]
            pos += 9 + length
            sid &= 0x7FFFFFFF
            if kind == DATA:
                self._on_data(sid, flags, payload, length)
            elif kind == HEADERS or kind == CONTINUATION:
                self._on_headers(kind, sid, flags, payload)
            elif kind == SETTINGS:
                self._on_settings(flags, payload)
            elif kind == WINDOW_UPDATE:
                self._on_window_update(sid, payload)
            elif kind == PING:
                if not flags & ACK:
                    self.send(frame(PING, ACK, 0, payload))
            elif kind == RST_STREAM:
                code = struct.unpack(">I", payload)[0]
                self._finish(sid, H2_ERROR_TO_GRPC.get(code, INTERNAL), f"stream reset by the server (code {code})")
            elif kind == GOAWAY:
                self._on_goaway(payload)
            elif kind == PUSH_PROMISE:
                raise ConnectionFailed("server push was disabled but the server pushed")
        return pos

    def _on_data(self, sid: int, flags: int, payload: bytes, length: int) -> None:
        self.recv_unacked += length
        if self.recv_unacked >= _WINDOW_REFILL:
            self.send(frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", self.recv_unacked)))
            self.recv_unacked = 0
        stream = self.streams.get(sid)
        if stream is None:
            return
        if flags & PADDED:
            if not payload or payload[0] >= len(payload):
                raise ConnectionFailed("DATA frame padding longer than the frame")
            payload = payload[1 : len(payload) - payload[0]]
        stream.size += len(payload)
        if stream.size > self.max_message_bytes + 5:  # 5: the gRPC message prefix
            self._finish(sid, TOO_LARGE, f"answer larger than {self.max_message_bytes} bytes")
            self.send(frame(RST_STREAM, 0, sid, struct.pack(">I", 0x8)))  # CANCEL: stop sending it
            return
        stream.parts.append(payload)
        if flags & END_STREAM:
            self._finish(sid, INTERNAL, "stream ended without gRPC trailers")

    def _on_headers(self, kind: int, sid: int, flags: int, payload: bytes) -> None:
        if kind == HEADERS:
            if flags & PADDED:
                payload = payload[1 : len(payload) - payload[0]]
            if flags & PRIORITY_FLAG:
                payload = payload[5:]
            if not flags & END_HEADERS:
                self._headers_pending = (sid, flags, [payload])
                return
            block, end_stream = payload, flags & END_STREAM
        else:
            pending = self._headers_pending
            if pending is None or pending[0] != sid:
                raise ConnectionFailed("unexpected CONTINUATION frame")
            pending[2].append(payload)
            if not flags & END_HEADERS:
                return
            self._headers_pending = None
            block, end_stream = b"".join(pending[2]), pending[1] & END_STREAM
        headers = self.decoder.decode(block)  # always, to keep the table in step
        stream = self.streams.get(sid)
        if stream is None:
            return
        if not stream.headers_seen:
            stream.headers_seen = True
            for name, value in headers:
                if name == ":status":
                    stream.http_status = int(value) if value.isascii() and value.isdigit() else 0
                elif name == "content-type":
                    stream.content_type = value
            if stream.http_status != 200:
                code = HTTP_TO_GRPC.get(stream.http_status, UNKNOWN)
                self._finish(sid, code, f"Received http2 header with status: {stream.http_status}")
                return
            if not end_stream:
                return
        elif not end_stream:
            raise ConnectionFailed("trailers without END_STREAM")
        self._trailers(stream, headers)

    def _trailers(self, stream: Stream, headers: tuple[tuple[str, str], ...]) -> None:
        code, message = None, ""
        for name, value in headers:
            if name == "grpc-status":
                code = int(value) if value.isascii() and value.isdigit() else UNKNOWN
            elif name == "grpc-message":
                message = unquote(value)
        if code is None:
            self._finish(stream.id, UNKNOWN, "no grpc-status in the answer")
            return
        if code != OK:
            self._finish(stream.id, code, message)
            return
        if not stream.content_type.startswith("application/grpc"):
            self._finish(stream.id, UNKNOWN, f"invalid content-type {stream.content_type[:60]!r}")
            return
        data = stream.parts[0] if len(stream.parts) == 1 else b"".join(stream.parts)
        if len(data) < 5:
            self._finish(stream.id, INTERNAL, "answer without a complete gRPC message")
            return
        compressed, size = GRPC_PREFIX.unpack_from(data)
        if compressed:
            self._finish(stream.id, INTERNAL, "compressed gRPC messages are not supported")
        elif size > self.max_message_bytes:
            self._finish(stream.id, TOO_LARGE, f"answer larger than {self.max_message_bytes} bytes")
        elif size != len(data) - 5:
            self._finish(stream.id, INTERNAL, "a unary answer must hold exactly one gRPC message")
        else:
            self._finish(stream.id, OK, "", data[5:])

    def _on_settings(self, flags: int, payload: bytes) -> None:
        if flags & ACK:
            return
        for i in range(0, len(payload) - 5, 6):
            key, value = struct.unpack_from(">HI", payload, i)
            if key == S_INITIAL_WINDOW_SIZE:
                delta = value - self.peer_initial_window
                self.peer_initial_window = value
                for stream in self.streams.values():
                    stream.send_window += delta
            elif key == S_MAX_FRAME_SIZE:
                self.peer_max_frame = value
            elif key == S_MAX_CONCURRENT_STREAMS:
                self.peer_max_streams = value
        self.send(frame(SETTINGS, ACK, 0))
        self._wake_window_waiters()

    def _on_window_update(self, sid: int, payload: bytes) -> None:
        increment = struct.unpack(">I", payload)[0] & 0x7FFFFFFF
        if sid == 0:
            self.send_window += increment
        else:
            stream = self.streams.get(sid)
            if stream is None:
                return
            stream.send_window += increment
        self._wake_window_waiters()

    def _on_goaway(self, payload: bytes) -> None:
        last_id, code = struct.unpack_from(">II", payload)
        last_id &= 0x7FFFFFFF
        self.usable = False
        self.error = f"server closed the connection (GOAWAY code {code})"
        for sid in [s for s in self.streams if s > last_id]:
            self._finish(sid, UNAVAILABLE, self.error)
        if not self.streams:
            raise ConnectionFailed(self.error)

