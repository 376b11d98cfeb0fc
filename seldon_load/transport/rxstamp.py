"""The kernel's receive time of data read from a socket (``SO_TIMESTAMPNS``).

An answer read later than it arrived (by a greenlet that got round to it, or at the load
loop's next wake-up: ``load.batcher``) is still timed exactly: the kernel stamps every
received segment, and a request's *done* time is that stamp, not the moment Python read it.
"""

from __future__ import annotations

import socket
import struct
import time
from time import perf_counter
from typing import Any

_SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
_SCM_TIMESTAMPNS = _SO_TIMESTAMPNS
_TIMESPEC = struct.Struct("@qq")
ANC_BYTES = socket.CMSG_SPACE(_TIMESPEC.size) if hasattr(socket, "CMSG_SPACE") else 0


def enable_rx_stamps(sock: Any) -> bool:
    """Ask the kernel to stamp received data on ``sock``; False where it cannot."""
    if not ANC_BYTES:
        return False
    try:
        sock.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
    except OSError:
        return False
    return True


def rx_stamp(ancdata: list) -> float | None:
    """The kernel's receive time of the data just read, on ``perf_counter``'s clock.

    The stamp is wall-clock time (CLOCK_REALTIME); it is moved onto the monotonic clock by
    the offset between the two read now, and never placed after now."""
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == _SCM_TIMESTAMPNS and len(data) >= _TIMESPEC.size:
            sec, nsec = _TIMESPEC.unpack_from(data)
            now = perf_counter()
            stamp = sec + nsec * 1e-9 - (time.time() - now)
            return stamp if stamp < now else now
    return None
