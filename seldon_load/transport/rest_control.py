"""The REST client's control-plane calls (pre-flight: readiness, metadata, one decoded infer).

Off the hot path, so plain and raising: a server that cannot be reached, or answers with
something that is not HTTP, is a ``TargetError`` with one line; ``--request-timeout`` and
``--max-response-bytes`` bound these calls as they bound inference (a metadata answer
that never ends is a timeout, not a hang).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

from seldon_load.errors import OIPError, TargetError
from seldon_load.oip import json_codec
from seldon_load.oip.json_codec import OIPServerError, shorten
from seldon_load.oip.types import EncodedRequest, InferResponse
from seldon_load.transport.connect import ConnectTimeout, reason
from seldon_load.transport.head import Head, HTTPProtocolError, TooLarge
from seldon_load.transport.pool import PoolClosed

if TYPE_CHECKING:
    from seldon_load.transport.rest import RestClient


class ControlCalls:
    """``infer_decoded``, readiness, metadata and ``check_target`` of ``RestClient``."""

    def _call(
        self: RestClient, method: str, path: str, body: bytes = b"", headers: tuple[tuple[str, str], ...] = ()
    ) -> tuple[Head, bytes]:
        """A non-hot-path request; transport failures raise TargetError with one line."""
        if self._closed:
            raise TargetError(f"the client for {self.target.safe_host} is closed")
        head = b"%s%x\r\n%s" % (self._start(method, path), self._counter(), self._extra_headers(headers))
        if method != "GET":
            head += b"Content-Length: %d\r\n" % len(body)
        try:
            answer = self._exchange(head + b"\r\n" + body, None)
        except (OSError, HTTPProtocolError, PoolClosed) as exc:
            if isinstance(exc, TooLarge):
                raise TargetError(f"{self.target.safe_host} sent an {exc} (--max-response-bytes)") from None
            if isinstance(exc, HTTPProtocolError):
                raise TargetError(f"{self.target.safe_host} did not answer with valid HTTP: {exc}") from None
            if isinstance(exc, TimeoutError) and not isinstance(exc, ConnectTimeout):
                raise TargetError(
                    f"no complete answer from {self.target.safe_host}: {reason(exc, self.timeout_s)}"
                ) from None
            raise TargetError(
                f"cannot connect to {self.target.safe_host}: {reason(exc, self.timeout_s)}"
            ) from None
        return answer, answer.body

    def infer_decoded(self: RestClient, req: EncodedRequest) -> InferResponse:
        """One inference call, decoded; raises OIPError for a bad or failed answer, TargetError
        when the server cannot be reached."""
        answer, data = self._call("POST", self.target.infer_path, req.body, req.headers)
        if not 200 <= answer.status < 300:
            raise OIPServerError(status_message(answer, data))
        return json_codec.decode_response(data, header_length(answer))

    def server_live(self: RestClient) -> bool:
        return self._call("GET", self.target.live_path)[0].status == 200

    def server_ready(self: RestClient) -> bool:
        return self._call("GET", self.target.server_ready_path)[0].status == 200

    def model_ready(self: RestClient) -> bool:
        return self._call("GET", self.target.ready_path)[0].status == 200

    def model_metadata(self: RestClient) -> dict[str, Any]:
        answer, data = self._call("GET", self.target.metadata_path)
        what = f"{self.target.kind} {self.target.name!r} on {self.target.safe_host}"
        if answer.status != 200:
            raise TargetError(f"cannot get the metadata of {what}: {status_message(answer, data)}")
        try:
            doc = orjson.loads(data)
        except orjson.JSONDecodeError:
            doc = None
        if not isinstance(doc, dict):
            raise TargetError(f"the metadata of {what} is not a JSON object")
        return doc

    def check_target(self: RestClient) -> None:
        """Raise TargetError with one clear line unless the target is reachable and ready."""
        t = self.target
        answer, data = self._call("GET", t.ready_path)
        if answer.status == 200:
            return
        where = f"{t.kind} {t.name!r} on {t.safe_host}"
        if answer.status == 404:
            raise TargetError(f"unknown {where} ({status_message(answer, data)})")
        raise TargetError(f"{where} is not ready ({status_message(answer, data)})")


def header_length(answer: Head) -> int | None:
    value = answer.header_length
    if value is None:
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise OIPError(f"invalid {json_codec.HEADER_LENGTH} header {value!r}") from None


def status_message(answer: Head, data: bytes) -> str:
    """``HTTP 404: <OIP error message>`` or ``HTTP 503 Service Unavailable: <body preview>``."""
    status = answer.status
    message = json_codec.error_message(data)
    if message is None:
        reason_phrase = (answer.reason or "").strip()
        text = data[:120].decode("utf-8", "replace").strip()
        message = reason_phrase if text in ("", reason_phrase) else f"{reason_phrase}: {text}".lstrip(": ")
    return shorten(f"HTTP {status}: {message}" if message else f"HTTP {status}")
