"""OIP over gRPC, gevent-cooperative, on our own HTTP/2 wire (``transport.h2``).

The hot path sends pre-serialized ``ModelInferRequest`` bytes: the request header block is
HPACK-encoded once per client (per call only ``x-request-id`` is added), so there is no
protobuf work per request beyond the optional response check; calls go round-robin over a
few connections (each one HTTP/2 connection multiplexing many calls). gRPC failures come
back as an ``Outcome`` of kind ``grpc_<CODE>``; control-plane calls raise ``TargetError``
when the server cannot be reached.
"""

from __future__ import annotations

import itertools
import re
import secrets
from typing import Any

from seldon_load import __version__
from seldon_load.errors import ConfigError, OIPError, TargetError
from seldon_load.oip import pb_codec
from seldon_load.oip._generated import grpc_predict_v2_pb2 as pb
from seldon_load.oip.json_codec import OIPServerError, shorten
from seldon_load.oip.target import Target
from seldon_load.oip.types import EncodedRequest, InferResponse
from seldon_load.transport import grpc_status as gs
from seldon_load.transport import h2, hpack
from seldon_load.transport import outcome as oc
from seldon_load.transport.outcome import Outcome
from seldon_load.transport.tls import TlsConfig

SERVICE = "/inference.GRPCInferenceService/"
INFER_PATH = SERVICE + "ModelInfer"
DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024  # as --max-response-bytes
CALLS_PER_CHANNEL = 16
MAX_CHANNELS = 8
_KEY_RE = re.compile(r"\A[0-9a-z_.-]+\Z")
_VALUE_RE = re.compile(r"\A[\x20-\x7e]*\Z")
_RESERVED = frozenset(("x-request-id", "content-type", "te", "user-agent", "grpc-timeout"))
_UNREACHABLE = frozenset((gs.UNAVAILABLE, gs.DEADLINE_EXCEEDED))


def _metadata(target: Target, headers: dict[str, str] | None) -> tuple[tuple[str, str], ...]:
    fields: dict[str, str] = {"seldon-model": target.routing_value}
    auth = target.auth_header()
    if auth is not None:
        fields["authorization"] = auth
    for name, value in (headers or {}).items():
        key = name.lower() if isinstance(name, str) else name
        if not isinstance(key, str) or not _KEY_RE.match(key) or key.endswith("-bin"):
            raise ConfigError(f"invalid gRPC metadata key {name!r}")
        if key in _RESERVED or key.startswith("grpc-"):
            raise ConfigError(f"header {name} is set by gRPC or seldon-load and cannot be given")
        if not isinstance(value, str) or not _VALUE_RE.match(value):
            raise ConfigError(f"invalid value for header {name}: gRPC metadata must be printable ASCII")
        fields[key] = value
    return tuple(fields.items())


def result_outcome(code: int, message: str, size: int = 0) -> Outcome:
    if code == gs.TOO_LARGE:
        return Outcome(False, oc.INVALID_RESPONSE, message, size)
    name = gs.status_name(code)
    return Outcome(False, oc.grpc_kind(name), shorten(message or name), size)


class GrpcClient:
    """An OIP gRPC client for one target (one model or pipeline) over a few connections."""

    def __init__(
        self,
        target: Target,
        headers: dict[str, str] | None = None,
        timeout_s: float = 30.0,
        connect_timeout_s: float = 5.0,
        pool_size: int = 64,
        tls: TlsConfig | None = None,
        validate: bool = True,
        channels: int | None = None,
        max_response_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    ) -> None:
        """``pool_size`` is the expected concurrency (as for REST); each connection multiplexes
        many calls, so it becomes ``pool_size // 16`` connections (1 to 8) unless ``channels``
        is given."""
        if target.protocol != "grpc":
            raise ConfigError(f"GrpcClient needs a gRPC target, got {target.protocol}")
        if channels is None:
            channels = max(1, min(MAX_CHANNELS, pool_size // CALLS_PER_CHANNEL))
        if channels < 1:
            raise ConfigError(f"gRPC channels must be at least 1, got {channels}")
        if not target.tls and tls is not None and (tls.ca_file or tls.cert_file or tls.insecure_skip_verify):
            raise ConfigError(f"TLS options need a grpcs:// host, got {target.safe_host}")
        ssl_context = None
        if target.tls:
            tls = tls or TlsConfig()
            if tls.insecure_skip_verify:
                raise ConfigError("skipping TLS verification is not supported for gRPC: give the server's CA file")
            ssl_context = tls.ssl_context()
            ssl_context.set_alpn_protocols(["h2"])
        self.target = target
        self.validate = validate
        self.timeout_s = timeout_s
        self.connect_timeout_s = connect_timeout_s
        self._closed = False
        self._md = _metadata(target, headers)
        block = b"".join(
            hpack.encode_literal(k, v, never_index=k == "authorization") for k, v in self._md
        )
        self._h2 = h2.H2Client(
            target.hostname, target.port, target.grpc_address, ssl_context, block, timeout_s,
            connect_timeout_s, channels, max_response_bytes, f"seldon-load/{__version__}",
        )
        self._infer_block = self._h2.header_block(INFER_PATH) + hpack.encode_integer(0, 4, 0) + \
            hpack.encode_string(b"x-request-id")
        self._rid_prefix = secrets.token_hex(6) + "-"
        self._counter = itertools.count(1).__next__

    def _request_id(self) -> bytes:
        return hpack.encode_string(f"{self._rid_prefix}{self._counter():x}".encode())

    def infer(self, req: bytes | EncodedRequest) -> Outcome:
        """One inference call with pre-serialized request bytes; never raises for server or
        network faults."""
        body = req if type(req) is bytes else req.body  # type: ignore[union-attr]
        (code, message, data), received = self._h2.call_at(self._infer_block + self._request_id(), body)
        if code:
            if code == gs.CANCELLED and self._closed:
                return Outcome(False, oc.CANCELLED, "client closed")
            out = result_outcome(code, message)
            out.received_at = received
            return out
        if self.validate:
            try:
                pb_codec.check_response(data)
            except OIPError as exc:
                return Outcome(False, oc.INVALID_RESPONSE, shorten(str(exc)), len(data), received)
        return Outcome(True, None, None, len(data), received)

    # ------------------------------------------------------------------ control plane

    def _call(self, method: str, body: bytes, timeout_s: float | None = None) -> bytes:
        if self._closed:
            raise TargetError(f"the client for {self.target.safe_host} is closed")
        block = self._h2.header_block(SERVICE + method) + hpack.encode_literal(
            "x-request-id", f"{self._rid_prefix}{self._counter():x}")
        code, message, data = self._h2.call(block, body, timeout_s)
        if code:
            out = result_outcome(code, message)
            if code in _UNREACHABLE:
                raise TargetError(f"cannot connect to {self.target.safe_host}: {out.error_kind}: {out.message}")
            raise _RpcFailed(out)
        return data

    def _unary(self, method: str, request: Any, response_type: Any, timeout_s: float | None = None) -> Any:
        data = self._call(method, request.SerializeToString(), timeout_s)
        try:
            return response_type.FromString(data)
        except Exception as exc:  # protobuf's DecodeError and friends
            raise TargetError(f"{self.target.safe_host} answered {method} with an invalid message: {exc}") from None

    def infer_decoded(self, req: bytes | EncodedRequest) -> InferResponse:
        """One inference call, decoded; OIPError for a failed or bad answer, TargetError when
        the server cannot be reached."""
        body = req if isinstance(req, bytes) else req.body
        try:
            data = self._call("ModelInfer", body)
        except _RpcFailed as exc:
            raise OIPServerError(str(exc)) from None
        return pb_codec.decode_response(data)

    def server_live(self) -> bool:
        return bool(self._unary("ServerLive", pb.ServerLiveRequest(), pb.ServerLiveResponse).live)

    def server_ready(self) -> bool:
        return bool(self._unary("ServerReady", pb.ServerReadyRequest(), pb.ServerReadyResponse).ready)

    def model_ready(self) -> bool:
        try:
            reply = self._unary(
                "ModelReady", pb.ModelReadyRequest(name=self.target.name), pb.ModelReadyResponse
            )
        except _RpcFailed:
            return False
        return bool(reply.ready)

    def model_metadata(self) -> dict[str, Any]:
        what = f"{self.target.kind} {self.target.name!r} on {self.target.safe_host}"
        try:
            reply = self._unary(
                "ModelMetadata", pb.ModelMetadataRequest(name=self.target.name), pb.ModelMetadataResponse
            )
        except _RpcFailed as exc:
            raise TargetError(f"cannot get the metadata of {what}: {exc}") from None
        return pb_codec.metadata_to_dict(reply)

    def check_target(self) -> None:
        """Raise TargetError with one clear line unless the target is reachable and ready."""
        t = self.target
        where = f"{t.kind} {t.name!r} on {t.safe_host}"
        try:
            self._unary(
                "ServerLive",
                pb.ServerLiveRequest(),
                pb.ServerLiveResponse,
                timeout_s=max(self.connect_timeout_s, 0.1),
            )
        except _RpcFailed:
            pass  # reachable; some gateways do not implement ServerLive
        try:
            reply = self._unary("ModelReady", pb.ModelReadyRequest(name=t.name), pb.ModelReadyResponse)
        except _RpcFailed as exc:
            if exc.outcome.error_kind == oc.grpc_kind("NOT_FOUND") or "not found" in str(exc).lower():
                raise TargetError(f"unknown {where} ({exc})") from None
            raise TargetError(f"{where} is not ready ({exc})") from None
        if not reply.ready:
            raise TargetError(f"{where} is not ready")

    def close(self) -> None:
        self._closed = True
        self._h2.close()

    def __enter__(self) -> GrpcClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _RpcFailed(Exception):
    """A control-plane call the server answered with an error status."""

    def __init__(self, outcome: Outcome) -> None:
        super().__init__(f"{outcome.error_kind}: {outcome.message}")
        self.outcome = outcome
