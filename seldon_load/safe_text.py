"""Text that is safe and short in messages and on the console.

Values typed on the command line or read from files and servers reach error messages and the
console. They are never formatted whole when they may be huge (``shown`` builds a bounded repr,
it does not cut a full one), and control characters never reach the terminal raw (a newline
would forge a line, an ANSI escape rewrite the screen). Imports nothing of seldon_load.
"""

from __future__ import annotations

import itertools

MAX_SHOWN_CHARS = 120  # a user value inside a message
MAX_MESSAGE_CHARS = 2000  # a whole message: the net under every SeldonLoadError


def printable(text: object) -> str:
    """``text`` with every control character escaped (``\\n``, ``\\x1b``, ...): one line, no terminal tricks.

    Printable characters (non-ASCII letters included) are kept as they are; only C0/C1 controls,
    DEL and the Unicode line and paragraph separators are written as escapes.
    """
    s = str(text)
    if s.isprintable():
        return s
    return "".join(c if c.isprintable() or c == " " else _escape(c) for c in s)


def _escape(c: str) -> str:
    code = ord(c)
    named = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
    if c in named:
        return named[c]
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def clip(text: object, limit: int = MAX_SHOWN_CHARS) -> str:
    """``text`` as one printable line of at most about ``limit`` characters, with a marker if cut."""
    s = str(text)
    if len(s) > limit:
        s = f"{s[:limit]}... ({len(s) - limit} more characters)"
    return printable(s)


_ITEMS = 6  # items shown per list or mapping
_LEVELS = 3  # levels of nesting shown
_STRING = 40  # characters shown of a string inside a structure


def shown(value: object, limit: int = MAX_SHOWN_CHARS) -> str:
    """A bounded repr of ``value`` for a message: work and length bounded however big or nested it is.

    ``repr(value)[:n]`` would first build the whole repr (an alias bomb's is gigabytes), and
    ``reprlib`` falls back to the full ``repr`` for subclasses of dict and list.
    """
    return clip(_emit(value, 0, limit), limit)


def _emit(v: object, level: int, chars: int) -> str:
    if isinstance(v, (str, bytes)):
        return repr(v[:chars]) + ("..." if len(v) > chars else "")
    if isinstance(v, bool) or v is None or isinstance(v, float):
        return repr(v)
    if isinstance(v, int):
        return repr(v) if v.bit_length() < 200 else f"<int of {v.bit_length()} bits>"
    if isinstance(v, (list, tuple, dict)):
        if level >= _LEVELS:
            return "[...]" if not isinstance(v, dict) else "{...}"
        items = list(itertools.islice(v.items() if isinstance(v, dict) else v, _ITEMS))
        if isinstance(v, dict):
            parts = [f"{_emit(k, level + 1, _STRING)}: {_emit(x, level + 1, _STRING)}" for k, x in items]
        else:
            parts = [_emit(x, level + 1, _STRING) for x in items]
        if len(v) > _ITEMS:
            parts.append(f"... ({len(v) - _ITEMS} more)")
        return ("{%s}" if isinstance(v, dict) else "[%s]") % ", ".join(parts)
    return f"<{type(v).__name__}>"
