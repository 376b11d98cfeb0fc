"""The HTTP/1.1 response-head parser and chunked decoder, without sockets (RFC 9112 framing)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seldon_load.transport.head import (
    CHUNKED,
    NEED_MORE,
    TO_CLOSE,
    ChunkedReader,
    Head,
    HTTPProtocolError,
    TooLarge,
    parse_head,
)

OK = (b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 12\r\n"
      b"inference-header-content-length: 7\r\n\r\n{\"a\": 1234}")
CHUNKED_OK = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;x=y\r\n world\r\n0\r\n\r\n"


def incremental(data: bytes, cuts: list[int]) -> Head:
    """Feed ``data`` in the pieces ``cuts`` makes, as a socket would deliver it."""
    buf = bytearray()
    for piece in _pieces(data, cuts):
        buf += piece
        got = parse_head(buf)
        if got is not NEED_MORE:
            return got
    raise AssertionError("never complete")


def _pieces(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in zip(points, points[1:], strict=False)]


def test_a_typical_answer() -> None:
    head = parse_head(OK)
    assert isinstance(head, Head)
    assert (head.status, head.length, head.keep_alive, head.header_length) == (200, 12, True, "7")
    assert head.start == OK.index(b"\r\n\r\n") + 4


def test_interim_answers_are_skipped_and_framing_read() -> None:
    head = parse_head(b"HTTP/1.1 100 Continue\r\n\r\n" + CHUNKED_OK)
    assert head.status == 200 and head.length == CHUNKED
    close = parse_head(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nbody")
    assert close.length == TO_CLOSE and not close.keep_alive
    assert parse_head(b"HTTP/1.1 204 No Content\r\n\r\n").length == 0
    assert parse_head(b"HTTP/1.1 500 Oops\r\nContent-Length: 0\r\n\r\n").keep_alive is False
    assert parse_head(b"HTTP/1.1 503 Busy\r\nContent-Length: 0\r\n\r\n").keep_alive is True
    same = parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5, 5\r\n\r\n")
    assert same.length == 5  # identical values are one value (RFC 9112 6.3)
    longer = parse_head(b"HTTP/1.1 200 OK\r\nContent-Length-X: 9\r\nTransfer-Encoding-X: gzip\r\n"
                        b"Content-Length: 4\r\n\r\n")
    assert longer.length == 4  # names that only start like the framing headers are other headers
    assert parse_head(b"HTTP/1.1 200 OK\r\ncontent-length\r\n\r\n").length == TO_CLOSE  # a name alone, no value


@settings(max_examples=200, deadline=None)
@given(cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=12),
       answer=st.sampled_from([OK, CHUNKED_OK, b"HTTP/1.1 100 Continue\r\n\r\n" + OK]))
def test_any_split_gives_the_same_head(cuts: list[int], answer: bytes) -> None:
    assert incremental(answer, cuts) == parse_head(answer)


@settings(max_examples=200, deadline=None)
@given(cuts=st.lists(st.integers(min_value=0, max_value=200), max_size=12))
def test_any_split_gives_the_same_chunked_body(cuts: list[int]) -> None:
    head = parse_head(CHUNKED_OK)
    reader = ChunkedReader(1000)
    done = [reader.feed(p) for p in _pieces(CHUNKED_OK[head.start:], cuts)]
    assert done[-1] and not any(done[:-1]) and reader.body() == b"hello world"


BAD = {
    "differing lengths": b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
    "a differing list": b"HTTP/1.1 200 OK\r\nContent-Length: 5, 7\r\n\r\n",
    "a signed length": b"HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\n",
    "a negative length": b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
    "TE with CL": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
    "an unknown coding": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
    "not ending in chunked": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, identity\r\n\r\n",
    "chunked twice": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
    "obs-fold": b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: b\r\n c\r\n\r\n",
    "space before colon": b"HTTP/1.1 200 OK\r\nContent-Length : 5\r\n\r\n",
    "not HTTP": b"SSH-2.0-OpenSSH\r\n\r\n",
    "a bad status": b"HTTP/1.1 2x0 OK\r\n\r\n",
}


@pytest.mark.parametrize("name", list(BAD))
def test_invalid_framing_is_rejected(name: str) -> None:
    with pytest.raises(HTTPProtocolError):
        parse_head(BAD[name])


def test_an_oversized_head_is_rejected_before_its_end() -> None:
    with pytest.raises(HTTPProtocolError, match="larger than"):
        parse_head(b"HTTP/1.1 200 OK\r\nX: " + b"a" * 70_000)
    assert parse_head(b"HTTP/1.1 200 OK\r\nX: " + b"a" * 1000) is NEED_MORE


def test_the_chunked_body_is_bounded() -> None:
    reader = ChunkedReader(10)
    with pytest.raises(TooLarge, match="answer larger than 10 bytes"):
        reader.feed(b"8\r\n12345678\r\n8\r\n")
    with pytest.raises(HTTPProtocolError):
        ChunkedReader(10).feed(b"zz\r\n")


@settings(max_examples=500, deadline=None)
@given(data=st.binary(max_size=300), prefix=st.sampled_from([
    b"", b"HTTP/1.1 200 OK\r\n", b"HTTP/1.1 ", b"HTTP/1.1 200 OK\r\ncontent-length", b"HTTP/1.1 200 OK\r\nTransfer-Encoding"]))
def test_random_bytes_raise_only_the_parsers_error(data: bytes, prefix: bytes) -> None:
    for blob in (prefix + data, prefix + data + b"\r\n\r\n"):
        try:
            parse_head(blob)
        except HTTPProtocolError:
            pass
        try:
            ChunkedReader(100).feed(blob)
        except HTTPProtocolError:
            pass


@settings(max_examples=300, deadline=None)
@given(lines=st.lists(st.sampled_from([b"Content-Length: 5", b"Content-Length: 6", b"Transfer-Encoding: chunked",
                                       b"Transfer-Encoding: gzip", b"X-A: b", b" folded", b"Connection: close"]),
                      max_size=5))
def test_framing_headers_in_any_mix(lines: list[bytes]) -> None:
    """A mix is accepted only when its framing is unambiguous, and then read as written."""
    blob = b"HTTP/1.1 200 OK\r\n" + b"".join(line + b"\r\n" for line in lines) + b"\r\n"
    lengths = {line for line in lines if line.startswith(b"Content-Length")}
    codings = [line for line in lines if line.startswith(b"Transfer-Encoding")]
    ambiguous = (len(lengths) > 1 or (lengths and codings) or b" folded" in lines
                 or (codings and codings != [b"Transfer-Encoding: chunked"]))
    if ambiguous:
        with pytest.raises(HTTPProtocolError):
            parse_head(blob)
        return
    head = parse_head(blob)
    assert head.length == (CHUNKED if codings else int(next(iter(lengths))[-1:]) if lengths else TO_CLOSE)
