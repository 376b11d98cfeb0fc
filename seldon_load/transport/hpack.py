"""HPACK (RFC 7541), just what a gRPC client needs: a full decoder (static and dynamic
table, Huffman strings) and literal encoding for request header blocks.

Why here and not a dependency: the gRPC hot path (``transport.h2``) decodes a response
header block with one dict lookup (``Decoder.decode`` caches blocks whose meaning cannot
change: those that neither touch nor refer to the dynamic table, which is every block
once the server honours our ``SETTINGS_HEADER_TABLE_SIZE`` of 0); the decoder proper only
runs for new blocks. The encoder never indexes, so it keeps no state.
"""

from __future__ import annotations

from collections import deque

from seldon_load.errors import OIPError

STATIC_TABLE: tuple[tuple[str, str], ...] = (
    (":authority", ""), (":method", "GET"), (":method", "POST"), (":path", "/"),
    (":path", "/index.html"), (":scheme", "http"), (":scheme", "https"), (":status", "200"),
    (":status", "204"), (":status", "206"), (":status", "304"), (":status", "400"),
    (":status", "404"), (":status", "500"), ("accept-charset", ""), ("accept-encoding", "gzip, deflate"),
    ("accept-language", ""), ("accept-ranges", ""), ("accept", ""), ("access-control-allow-origin", ""),
    ("age", ""), ("allow", ""), ("authorization", ""), ("cache-control", ""),
    ("content-disposition", ""), ("content-encoding", ""), ("content-language", ""), ("content-length", ""),
    ("content-location", ""), ("content-range", ""), ("content-type", ""), ("cookie", ""),
    ("date", ""), ("etag", ""), ("expect", ""), ("expires", ""),
    ("from", ""), ("host", ""), ("if-match", ""), ("if-modified-since", ""),
    ("if-none-match", ""), ("if-range", ""), ("if-unmodified-since", ""), ("last-modified", ""),
    ("link", ""), ("location", ""), ("max-forwards", ""), ("proxy-authenticate", ""),
    ("proxy-authorization", ""), ("range", ""), ("referer", ""), ("refresh", ""),
    ("retry-after", ""), ("server", ""), ("set-cookie", ""), ("strict-transport-security", ""),
    ("transfer-encoding", ""), ("user-agent", ""), ("vary", ""), ("via", ""),
    ("www-authenticate", ""),
)
STATIC_INDEX = {name: i + 1 for i, (name, _) in reversed(list(enumerate(STATIC_TABLE)))}

# Code lengths of the canonical Huffman code of RFC 7541 Appendix B, symbols 0..256 (EOS):
# the codes themselves follow from the lengths (canonical order: by length, then symbol).
_HUFFMAN_LENGTHS = bytes.fromhex(
    "0d171c1c1c1c1c1c1c181e1c1c1e1c1c1c1c1c1c1c1c1e1c1c1c1c1c1c1c1c1c060a0a0c0d06080b0a0a080b08"
    "0606060505050606060606060607080f060c0a0d0607070707070707070707070707070707070707070707080708"
    "0d130d0e060f05060506050606060507070606060506070605050607070707070f0b0e0d1c141614141616161716"
    "171717171718171818161718171717171516171617171816151416161717151716161815161717151516151716"
    "171714161616171616171a1a1413161716191a1a1a1b1b1a181913151a1b1b1a1b1815151a1a1c1b1b1b141814"
    "15161515171616191918181a171a1b1a1a1b1b1b1b1b1c1b1b1b1b1b1a1e"
)
_EOS = 256
_MAX_CACHE = 256


def _canonical() -> tuple[list[int], list[int], list[int]]:
    """Per code length: the first code, the number of codes, and the offset of their
    symbols in the symbol list sorted canonically (by length, then symbol)."""
    order = sorted(range(257), key=lambda s: (_HUFFMAN_LENGTHS[s], s))
    first, count, offset = [0] * 31, [0] * 31, [0] * 31
    code, prev = 0, _HUFFMAN_LENGTHS[order[0]]
    for i, sym in enumerate(order):
        length = _HUFFMAN_LENGTHS[sym]
        if i:
            code = (code + 1) << (length - prev)
        if count[length] == 0:
            first[length], offset[length] = code, i
        count[length] += 1
        prev = length
    return first, count, order


_FIRST, _COUNT, _SYMBOLS = _canonical()
_OFFSET = [0] * 31
for _length in range(1, 31):
    _OFFSET[_length] = _OFFSET[_length - 1] + _COUNT[_length - 1]


class HPACKError(OIPError):
    """A header block that does not decode (a protocol error: the connection is unusable)."""


def huffman_decode(data: bytes) -> bytes:
    """Canonical decoding, one bit at a time (used on new strings only: results are cached)."""
    out = bytearray()
    code = 0
    length = 0
    first, count, offset, symbols = _FIRST, _COUNT, _OFFSET, _SYMBOLS
    for byte in data:
        for shift in range(7, -1, -1):
            code = (code << 1) | ((byte >> shift) & 1)
            length += 1
            index = code - first[length]
            if 0 <= index < count[length]:
                sym = symbols[offset[length] + index]
                if sym == _EOS:
                    raise HPACKError("HPACK: EOS symbol inside a Huffman string")
                out.append(sym)
                code = length = 0
            elif length >= 30:
                raise HPACKError("HPACK: invalid Huffman code")
    if length > 7 or code != (1 << length) - 1:  # padding: at most 7 bits, all ones (EOS prefix)
        raise HPACKError("HPACK: invalid Huffman padding")
    return bytes(out)


def _integer(data: bytes, pos: int, prefix_bits: int) -> tuple[int, int]:
    mask = (1 << prefix_bits) - 1
    value = data[pos] & mask
    pos += 1
    if value < mask:
        return value, pos
    shift = 0
    while True:
        if pos >= len(data):
            raise HPACKError("HPACK: truncated integer")
        byte = data[pos]
        pos += 1
        value += (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos
        if shift > 35:
            raise HPACKError("HPACK: integer too large")


def _string(data: bytes, pos: int) -> tuple[str, int]:
    if pos >= len(data):
        raise HPACKError("HPACK: truncated string")
    huffman = data[pos] & 0x80
    length, pos = _integer(data, pos, 7)
    end = pos + length
    if end > len(data):
        raise HPACKError("HPACK: truncated string")
    raw = data[pos:end]
    if not huffman:
        return raw.decode("latin-1"), end
    text = _HUFFMAN_CACHE.get(raw)
    if text is None:
        if len(_HUFFMAN_CACHE) >= 4096:
            _HUFFMAN_CACHE.clear()
        text = _HUFFMAN_CACHE[raw] = huffman_decode(raw).decode("latin-1")
    return text, end


_HUFFMAN_CACHE: dict[bytes, str] = {}  # the same values come back in every answer


class Decoder:
    """Decodes header blocks of one connection (the dynamic table is per connection)."""

    def __init__(self, max_table_size: int = 4096) -> None:
        self.max_table_size = max_table_size  # what we advertised: the limit for size updates
        self.table_size_limit = max_table_size
        self._table: deque[tuple[str, str]] = deque()
        self._size = 0
        self._cache: dict[bytes, tuple[tuple[str, str], ...]] = {}

    def decode(self, block: bytes) -> tuple[tuple[str, str], ...]:
        """The (name, value) pairs of one complete header block."""
        hit = self._cache.get(block)
        if hit is not None:
            return hit
        headers, pure = self._decode(block)
        if pure:
            if len(self._cache) >= _MAX_CACHE:
                self._cache.clear()
            self._cache[block] = headers
        return headers

    def _entry(self, index: int) -> tuple[str, str]:
        if 1 <= index <= len(STATIC_TABLE):
            return STATIC_TABLE[index - 1]
        dyn = index - len(STATIC_TABLE) - 1
        if 0 <= dyn < len(self._table):
            return self._table[dyn]
        raise HPACKError(f"HPACK: index {index} out of range")

    def _add(self, name: str, value: str) -> None:
        size = len(name) + len(value) + 32
        self._table.appendleft((name, value))
        self._size += size
        self._evict()

    def _evict(self) -> None:
        while self._size > self.table_size_limit and self._table:
            name, value = self._table.pop()
            self._size -= len(name) + len(value) + 32

    def _decode(self, data: bytes) -> tuple[tuple[tuple[str, str], ...], bool]:
        """Headers, and whether the result depends on the bytes alone (cacheable)."""
        out: list[tuple[str, str]] = []
        pure = True
        pos = 0
        n_static = len(STATIC_TABLE)
        while pos < len(data):
            byte = data[pos]
            if byte & 0x80:  # indexed field
                index, pos = _integer(data, pos, 7)
                if index == 0:
                    raise HPACKError("HPACK: index 0")
                pure = pure and index <= n_static
                out.append(self._entry(index))
                continue
            if byte & 0xC0 == 0x40:  # literal with incremental indexing
                index, pos = _integer(data, pos, 6)
                indexing = True
            elif byte & 0xE0 == 0x20:  # dynamic table size update
                size, pos = _integer(data, pos, 5)
                if size > self.max_table_size:
                    raise HPACKError(f"HPACK: table size {size} above the advertised {self.max_table_size}")
                self.table_size_limit = size
                self._evict()
                pure = False
                continue
            else:  # literal without indexing (0000) or never indexed (0001)
                index, pos = _integer(data, pos, 4)
                indexing = False
            if index:
                pure = pure and index <= n_static
                name = self._entry(index)[0]
            else:
                name, pos = _string(data, pos)
            value, pos = _string(data, pos)
            if indexing:
                self._add(name, value)
                pure = False
            out.append((name, value))
        return tuple(out), pure


# ---------------------------------------------------------------------------------- encode
def encode_integer(value: int, prefix_bits: int, first: int) -> bytes:
    mask = (1 << prefix_bits) - 1
    if value < mask:
        return bytes((first | value,))
    out = bytearray((first | mask,))
    value -= mask
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def encode_string(value: bytes) -> bytes:
    return encode_integer(len(value), 7, 0) + value


def encode_literal(name: str, value: str | bytes, never_index: bool = False) -> bytes:
    """A literal field that is not added to the peer's table (name indexed when static)."""
    raw = value.encode("latin-1") if isinstance(value, str) else value
    first = 0x10 if never_index else 0x00
    index = STATIC_INDEX.get(name)
    if index is not None:
        return encode_integer(index, 4, first) + encode_string(raw)
    return bytes((first,)) + encode_string(name.encode("latin-1")) + encode_string(raw)


def encode_indexed(index: int) -> bytes:
    return encode_integer(index, 7, 0x80)
