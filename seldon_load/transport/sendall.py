"""The rest of a write the kernel's socket buffer could not take at once.

Both transports try one non-blocking ``send`` first (the common case: the whole request fits);
only when the buffer is full do they come here and wait for the socket to become writable.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def finish_send(sock: Any, data: bytes, sent: int, wait: Callable[[Any], None], writable: Any) -> None:
    """Send ``data[sent:]``, calling ``wait(writable)`` whenever the socket would block."""
    rest = memoryview(data)
    while sent < len(data):
        wait(writable)
        try:
            sent += sock.send(rest[sent:])
        except BlockingIOError:
            pass
