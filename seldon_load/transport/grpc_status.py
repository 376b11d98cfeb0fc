"""gRPC status codes and the tables that map other failures onto them (grpc/status.h,
gRPC's http-grpc-status-mapping.md, RFC 9113 error codes), in one place for the HTTP/2
wire and the gRPC client."""

from __future__ import annotations

OK, CANCELLED, UNKNOWN, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, INTERNAL, UNAVAILABLE = 0, 1, 2, 4, 8, 13, 14
PERMISSION_DENIED, UNIMPLEMENTED, UNAUTHENTICATED = 7, 12, 16
# not a gRPC status: the answer was larger than the client accepts (--max-response-bytes);
# reported as invalid_response, as REST answers past the bound are
TOO_LARGE = -1
STATUS_NAMES = (
    "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND", "ALREADY_EXISTS",
    "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE",
    "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED",
)
# HTTP status -> gRPC code when a server or proxy answers without gRPC
HTTP_TO_GRPC = {400: INTERNAL, 401: UNAUTHENTICATED, 403: PERMISSION_DENIED, 404: UNIMPLEMENTED,
                429: UNAVAILABLE, 502: UNAVAILABLE, 503: UNAVAILABLE, 504: UNAVAILABLE}
# RST_STREAM / GOAWAY error codes -> gRPC code (REFUSED_STREAM, CANCEL, ENHANCE_YOUR_CALM,
# INADEQUATE_SECURITY); any other is INTERNAL
H2_ERROR_TO_GRPC = {0x7: UNAVAILABLE, 0x8: CANCELLED, 0xB: RESOURCE_EXHAUSTED, 0xC: PERMISSION_DENIED}


def status_name(code: int) -> str:
    return STATUS_NAMES[code] if 0 <= code < len(STATUS_NAMES) else "UNKNOWN"
