"""What one request ended as, and the one table that maps transport failures to kinds.

Error kinds are short stable strings used as keys in reports:
``http_<status>`` (e.g. ``http_503``), ``grpc_<CODE>`` (e.g. ``grpc_UNAVAILABLE``),
``timeout``, ``connection_refused``, ``connection_reset``, ``connection_error``,
``invalid_response`` (not OIP, wrong shape/datatype, malformed JSON/protobuf),
``oip_error`` (a 2xx with an OIP error body), ``dropped`` (never sent: in-flight cap),
``cancelled`` (still in flight when the test ended).
"""

from __future__ import annotations

import errno
import socket
import ssl
from dataclasses import dataclass

TIMEOUT = "timeout"
CONNECTION_REFUSED = "connection_refused"
CONNECTION_RESET = "connection_reset"
CONNECTION_ERROR = "connection_error"
INVALID_RESPONSE = "invalid_response"
OIP_ERROR = "oip_error"
DROPPED = "dropped"
CANCELLED = "cancelled"
TLS_ERROR = "tls_error"


@dataclass(slots=True)
class Outcome:
    """Result of one inference call; ``ok`` False carries an error kind and a message.
    ``received_at`` is when the answer's last bytes reached this machine (the kernel's
    receive stamp, on ``perf_counter``'s clock) where the transport knows it."""

    ok: bool
    error_kind: str | None = None
    message: str | None = None
    response_bytes: int = 0
    received_at: float | None = None


OK = Outcome(True)


def http_kind(status: int) -> str:
    return f"http_{status}"


def grpc_kind(code_name: str) -> str:
    return f"grpc_{code_name}"


def kind_of_exception(exc: BaseException) -> str:
    """Map a socket-level exception to an error kind (the one table for REST transports)."""
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return TIMEOUT
    if type(exc).__name__ in ("Timeout", "ConnectionTimeout", "NetworkTimeout"):
        return TIMEOUT
    if isinstance(exc, ConnectionRefusedError):
        return CONNECTION_REFUSED
    if isinstance(exc, (ConnectionResetError, BrokenPipeError, ConnectionAbortedError)):
        return CONNECTION_RESET
    if isinstance(exc, ssl.SSLError):
        return TLS_ERROR
    if isinstance(exc, OSError) and exc.errno in (errno.ECONNREFUSED,):
        return CONNECTION_REFUSED
    if isinstance(exc, OSError) and exc.errno in (errno.ECONNRESET, errno.EPIPE):
        return CONNECTION_RESET
    if isinstance(exc, OSError):
        return CONNECTION_ERROR
    return INVALID_RESPONSE


def failure(kind: str, message: str | None = None) -> Outcome:
    return Outcome(False, kind, message)
