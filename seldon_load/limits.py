"""Size caps on the files users give us, and the one way to read such a file.

Files other people wrote (payloads, pipeline specs, results of a past run) are never read past
their cap: not a huge file, not a FIFO or device, not a file that grows while it is read.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from seldon_load.errors import ConfigError
from seldon_load.safe_text import clip

MiB = 2**20
MAX_PAYLOAD_BYTES = 64 * MiB
MAX_SPEC_BYTES = 1 * MiB  # Kubernetes keeps a whole object under 1.5 MiB; a spec is a few KiB
MAX_RESULTS_BYTES = 256 * MiB


def size_text(n_bytes: int) -> str:
    """``64 MiB``, ``1 MiB``, ``512 KiB``: limits as people write them."""
    if n_bytes % MiB == 0:
        return f"{n_bytes // MiB} MiB"
    if n_bytes % 1024 == 0:
        return f"{n_bytes // 1024} KiB"
    return f"{n_bytes} bytes"


def read_capped(path: str | Path, limit: int, what: str) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes; ConfigError (one line) otherwise.

    The size is checked before reading (a huge file costs nothing) and again while reading, so a
    file that grows meanwhile (or lies about its size) is still refused at ``limit + 1`` bytes.
    """
    name = clip(path)
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; a regular file reads as usual
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise ConfigError(f"{what} {name} does not exist") from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read {what} {name}: {_why(exc)}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError(f"{what} {name} is not a file ({_kind(st.st_mode)})")
        if st.st_size > limit:
            raise ConfigError(f"{what} {name} is {_amount(st.st_size)}; the limit is {size_text(limit)}")
        with os.fdopen(os.dup(fd), "rb") as fh:
            data = fh.read(limit + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {name}: {_why(exc)}") from None
    finally:
        os.close(fd)
    if len(data) > limit:
        raise ConfigError(f"{what} {name} grew while read; the limit is {size_text(limit)}")
    return data


def _amount(n_bytes: int) -> str:
    return f"{n_bytes / MiB:.1f} MiB" if n_bytes >= MiB else f"{n_bytes} bytes"


def _kind(mode: int) -> str:
    for test, kind in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a device"),
                       (stat.S_ISBLK, "a device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return kind
    return "not a regular file"


def _why(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or type(exc).__name__
