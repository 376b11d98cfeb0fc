"""Opening a connection for either transport: TCP with a connect timeout, TCP_NODELAY, TLS.

A cleartext connection comes back as a raw, non-blocking OS socket (``_socket.socket``): both
transports drive it with their own libev watchers, which costs no allocation per wait. A TLS
connection stays a gevent ``SSLSocket`` (cooperative, with its own timeout).
"""

from __future__ import annotations

import _socket
from typing import Any

from gevent import socket

from seldon_load.oip.json_codec import shorten
from seldon_load.transport import outcome as oc
from seldon_load.transport.h1conn import ConnectionClosed


class ConnectTimeout(TimeoutError):
    """Connecting (TCP and TLS handshake) took longer than ``connect_timeout_s``."""


def open_socket(host: str, port: int, connect_timeout_s: float, ssl_context: Any | None = None,
                io_timeout_s: float | None = None) -> tuple[Any, bool]:
    """``(socket, plain)``: a raw non-blocking socket (``plain`` True), or a TLS socket whose
    blocking calls time out after ``io_timeout_s``. Raises ``ConnectTimeout``,
    ``socket.gaierror`` and the ``OSError`` of a refused or failed connect or handshake."""
    try:
        sock = socket.create_connection((host, port), timeout=connect_timeout_s)
    except socket.gaierror:
        raise
    except TimeoutError:
        raise ConnectTimeout(f"connect timed out after {connect_timeout_s:g} s") from None
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if ssl_context is not None:
            try:
                sock = ssl_context.wrap_socket(sock, server_hostname=host)
            except TimeoutError:
                raise ConnectTimeout(f"TLS handshake timed out after {connect_timeout_s:g} s") from None
            sock.settimeout(io_timeout_s)
            return sock, False
        raw = _socket.socket(sock.family, sock.type, sock.proto, sock.detach())
        raw.setblocking(False)
        return raw, True
    except BaseException:
        sock.close()
        raise


def reason(exc: BaseException, timeout_s: float | None = None) -> str:
    """A short human reason for a transport exception (no secrets: only the exception text)."""
    kind = oc.kind_of_exception(exc)
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve host name ({exc.strerror or exc})"
    if isinstance(exc, ConnectTimeout):
        return str(exc)
    if kind == oc.TIMEOUT:
        return f"timed out after {timeout_s:g} s" if timeout_s else "timed out"
    if kind == oc.CONNECTION_REFUSED:
        return "connection refused"
    if isinstance(exc, ConnectionClosed):
        return "connection closed by the server"
    text = str(exc) or type(exc).__name__
    if isinstance(exc, OSError) and exc.strerror:
        text = exc.strerror
    return shorten(f"{kind.replace('_', ' ')}: {text}", 160)
