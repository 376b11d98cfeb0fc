"""HTTP/1.1 response heads and chunked bodies, parsed from bytes: no sockets, no clock.

``parse_head(buf, have)`` reads the status line and the headers the client needs (framing,
``Connection`` and the OIP header length) and rejects what RFC 9112 calls invalid framing,
because a client that guesses there reads the next answer from the middle of this one
(the response-splitting class of bug):

* differing ``Content-Length`` values (several fields, or a list in one), or a value that is
  not plain digits;
* ``Transfer-Encoding`` together with ``Content-Length``; any transfer coding but a single
  ``chunked`` (we decode no other, and a list must end in ``chunked``);
* obs-fold (a header line starting with a space or tab), whitespace between a framing
  header's name and its colon, and heads larger than ``MAX_HEAD_BYTES``.

It is written for the hot path: a handful of ``bytes`` searches instead of a callback per
header line, and one ``Head`` per answer, which the client completes with the body and
uses as the answer itself. Interim 1xx answers are skipped. ``NEED_MORE`` (one constant,
nothing allocated) says the head is not complete yet; malformed input raises
``HTTPProtocolError`` and nothing else.
"""

from __future__ import annotations

import re

MAX_HEAD_BYTES = 64 * 1024
CHUNKED = -1  # Head.length: the body is chunked
TO_CLOSE = -2  # Head.length: no framing, the body ends with the connection
# After an error answer a server may close the connection at once without saying so (uvicorn's
# 500 for a request body it did not read ends in a reset): reusing it would turn the next
# request into a reset the server never saw. Load-shedding answers (429, 503) keep their
# connection, so an overloaded server is not also sent new connections.
_KEEP_AFTER = frozenset((429, 503))
_END = b"\r\n\r\n"
_CONTENT_LENGTH = b"\r\ncontent-length"
_TRANSFER_ENCODING = b"\r\ntransfer-encoding"
_CONNECTION = b"\r\nconnection:"
_HEADER_LENGTH = b"\r\ninference-header-content-length:"
_MAX_LENGTH_DIGITS = 18
_FOLD = re.compile(rb"\r\n[ \t]").search  # obs-fold: a line that continues the one before


class HTTPProtocolError(Exception):
    """The server's answer is not HTTP/1.x we can read (the message says why)."""


class NeedMore:
    """The type of ``NEED_MORE``: the head is not complete in the bytes given."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "NEED_MORE"


NEED_MORE = NeedMore()


class Head:
    """One final response head: the status, how its body is framed, and what the client needs.

    ``start`` is the offset of the body in the parsed buffer; ``length`` the body size, or
    ``CHUNKED`` / ``TO_CLOSE``. The client fills in ``body`` and ``received_at``."""

    __slots__ = ("status", "head", "header_length", "keep_alive", "length", "start", "body", "received_at")

    def __init__(self, status: int, head: bytes, header_length: str | None, keep_alive: bool,
                 length: int, start: int) -> None:
        self.status = status
        self.head = head  # the status line and headers, undecoded (bytes or bytearray)
        self.header_length = header_length
        self.keep_alive = keep_alive
        self.length = length
        self.start = start
        self.body = b""
        self.received_at: float | None = None  # the kernel's receive time of the answer's last bytes

    @property
    def reason(self) -> str:
        head = self.head
        line_end = head.find(b"\r\n")
        return head[13 : line_end if line_end >= 0 else len(head)].decode("latin-1")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Head) and all(getattr(self, k) == getattr(other, k) for k in self.__slots__)

    def __repr__(self) -> str:
        return f"Head(status={self.status}, length={self.length}, start={self.start}, keep_alive={self.keep_alive})"


def parse_head(buf: bytes | bytearray, have: int | None = None) -> Head | NeedMore:
    """The final response head at the start of ``buf[:have]``, or ``NEED_MORE``.
    (Kept flat: it runs once per answer; the rare cases are in helpers.)"""
    if have is None:
        have = len(buf)
    pos = 0
    while True:
        end = buf.find(_END, pos, have)
        if end < 0:
            if have - pos > MAX_HEAD_BYTES:
                raise HTTPProtocolError(f"response head larger than {MAX_HEAD_BYTES} bytes")
            return NEED_MORE
        if end - pos > MAX_HEAD_BYTES:
            raise HTTPProtocolError(f"response head larger than {MAX_HEAD_BYTES} bytes")
        head = buf[pos:end]  # one copy (bytes or bytearray: both read the same below)
        if head[:7] != b"HTTP/1." or head[8:9] != b" " or head[12:13] not in (b" ", b"\r", b""):
            raise HTTPProtocolError(f"not an HTTP/1.x response: {head[:40]!r}")
        try:
            status = int(head[9:12])
        except ValueError:
            status = 0
        if not 100 <= status <= 999 or head[9] == 43:  # 43: b"+" (int() takes a sign)
            raise HTTPProtocolError(f"invalid status line: {head[:40]!r}")
        pos = end + 4
        if status >= 200:
            break
        # an interim answer (e.g. 100 Continue): the real one follows
    # (find and one regex search: cheaper here than ``in``, which these heads run slowly)
    if _FOLD(head) is not None:
        raise HTTPProtocolError("obsolete line folding in the response head")
    low = head.lower()
    header_length = _value(low, head, _HEADER_LENGTH) if low.find(b"inference-") >= 0 else None
    keep_alive = head[7] == 49 and (status < 400 or status in _KEEP_AFTER)  # 49: b"1"
    if low.find(_CONNECTION) >= 0:
        connection = _value(low, head, _CONNECTION)
        keep_alive = keep_alive and not (connection is not None and "close" in connection.lower())
    length: int | None = None
    i = low.find(_CONTENT_LENGTH)
    if i >= 0:
        i += 16
        j = low.find(b"\r\n", i)
        text = head[i + 1 : j if j >= 0 else len(head)].strip(b" \t")
        if (low[i : i + 1] == b":" and text.isdigit() and len(text) <= _MAX_LENGTH_DIGITS
                and low.find(_CONTENT_LENGTH, i) < 0):
            length = int(text)  # the common case: one plain value
        else:
            length = _content_length(low, head)
    if low.find(_TRANSFER_ENCODING) >= 0 and _chunked(low, head):
        if length is not None:
            raise HTTPProtocolError("both Transfer-Encoding and Content-Length in the answer")
        length = CHUNKED
    elif status == 204 or status == 304:
        length = 0
    elif length is None:
        length = TO_CLOSE
        keep_alive = False
    return Head(status, head, header_length, keep_alive, length, pos)


def _value(low: bytes | bytearray, head: bytes | bytearray, key: bytes) -> str | None:
    """Value of the header ``key`` (b"\\r\\nname:") in a head whose lower-cased copy is ``low``."""
    i = low.find(key)
    if i < 0:
        return None
    start = i + len(key)
    end = low.find(b"\r\n", start)
    return head[start : end if end >= 0 else len(head)].strip().decode("latin-1")


def _fields(low: bytes, head: bytes, name: bytes) -> list[bytes]:
    """Every value of the framing header ``name`` (b"\\r\\nname"), colon checked."""
    values = []
    i = low.find(name)
    while i >= 0:
        colon = i + len(name)
        after = low[colon : colon + 1]
        if after == b":":
            end = low.find(b"\r\n", colon)
            values.append(head[colon + 1 : end if end >= 0 else len(head)].strip(b" \t"))
        elif after in (b" ", b"\t"):
            rest = low[colon : colon + 64].lstrip(b" \t")
            if rest.startswith(b":"):
                raise HTTPProtocolError(f"whitespace before the colon of {name[2:].decode()}")
        i = low.find(name, colon)
    return values


def _content_length(low: bytes, head: bytes) -> int | None:
    """Content-Length from several fields or a list (equal values allowed), or None."""
    values = _fields(low, head, _CONTENT_LENGTH)
    if not values:
        return None
    parts = [p.strip(b" \t") for v in values for p in v.split(b",")]
    for p in parts:
        if not p.isdigit() or len(p) > _MAX_LENGTH_DIGITS:
            raise HTTPProtocolError(f"invalid Content-Length {p[:20].decode('latin-1')!r}")
    lengths = {int(p) for p in parts}
    if len(lengths) > 1:
        shown = ", ".join(str(n) for n in sorted(lengths)[:4])
        raise HTTPProtocolError(f"conflicting Content-Length values ({shown})")
    return lengths.pop()


def _chunked(low: bytes, head: bytes) -> bool:
    """True for a ``Transfer-Encoding: chunked`` field, False when there is no such field
    (only a longer name starting the same); any other coding or list is an error."""
    values = _fields(low, head, _TRANSFER_ENCODING)
    if not values:
        return False
    codings = [c.strip(b" \t").lower() for v in values for c in v.split(b",")]
    codings = [c for c in codings if c]
    if not codings:
        raise HTTPProtocolError("empty Transfer-Encoding")
    if codings[-1] != b"chunked":
        raise HTTPProtocolError(
            f"Transfer-Encoding {b', '.join(codings)[:60].decode('latin-1')!r} does not end in chunked")
    if len(codings) > 1:
        other = next((c for c in codings[:-1] if c != b"chunked"), b"chunked")
        if other == b"chunked":
            raise HTTPProtocolError("chunked applied more than once in Transfer-Encoding")
        raise HTTPProtocolError(f"unsupported transfer coding {other[:30].decode('latin-1')!r}")
    return True


class ChunkedReader:
    """Decodes a chunked body fed in pieces; no sockets. ``feed`` returns True once the last
    chunk and the trailers are in. ``limit`` bounds the decoded body (and what is buffered)."""

    __slots__ = ("limit", "parts", "size", "_pending")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.parts: list[bytes] = []
        self.size = 0  # decoded bytes so far
        self._pending = bytearray()  # bytes received and not decoded yet

    def body(self) -> bytes:
        return b"".join(self.parts)

    def feed(self, data: bytes | bytearray | memoryview) -> bool:
        pending = self._pending
        pending += data
        pos = 0
        try:
            while True:
                nl = pending.find(b"\r\n", pos)
                if nl < 0:
                    if len(pending) - pos > 4096:
                        raise HTTPProtocolError("chunk size line too long")
                    return False
                size_text = bytes(pending[pos:nl]).split(b";", 1)[0].strip(b" \t")
                if not size_text or len(size_text) > 16 or size_text.strip(b"0123456789abcdefABCDEF"):
                    raise HTTPProtocolError(f"invalid chunk size {size_text[:20]!r}")
                size = int(size_text, 16)
                if size == 0:
                    if pending[nl + 2 : nl + 4] == b"\r\n" or pending.find(b"\r\n\r\n", nl) >= 0:
                        return True  # no trailers, or trailers and the empty line after them
                    if len(pending) - nl > MAX_HEAD_BYTES:
                        raise HTTPProtocolError(f"trailers larger than {MAX_HEAD_BYTES} bytes")
                    return False
                if self.size + size > self.limit:
                    raise TooLarge(self.limit)
                if len(pending) < nl + 2 + size + 2:
                    return False
                if pending[nl + 2 + size : nl + 4 + size] != b"\r\n":
                    raise HTTPProtocolError("chunk not followed by CRLF")
                self.parts.append(bytes(pending[nl + 2 : nl + 2 + size]))
                self.size += size
                pos = nl + 4 + size
        finally:
            if pos:
                del pending[:pos]


class TooLarge(HTTPProtocolError):
    """The answer is larger than the client accepts (``--max-response-bytes``)."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"answer larger than {limit} bytes")
        self.limit = limit
