"""OIP over gRPC (grpcio), gevent-cooperative.

``ensure_gevent_grpc()`` switches grpcio to gevent once per process; it must run before the
first channel is created, which ``GrpcClient`` does. The hot path sends pre-serialized
``ModelInferRequest`` bytes through a generic ``unary_unary`` with no serializers, so there
is no protobuf work per request beyond the optional response check; calls go round-robin
over a few channels (each its own HTTP/2 connection). gRPC failures come back as an
``Outcome`` of kind ``grpc_<CODE>``.
"""

from __future__ import annotations

import itertools
import re
import secrets
from collections.abc import Callable
from typing import Any

import grpc

from seldon_load import __version__
from seldon_load.errors import ConfigError, OIPError, TargetError
from seldon_load.oip import pb_codec
from seldon_load.oip._generated import grpc_predict_v2_pb2 as pb
from seldon_load.oip.json_codec import OIPServerError, shorten
from seldon_load.oip.target import Target
from seldon_load.oip.types import EncodedRequest, InferResponse
from seldon_load.transport import outcome as oc
from seldon_load.transport.outcome import Outcome
from seldon_load.transport.tls import TlsConfig

SERVICE = "/inference.GRPCInferenceService/"
DEFAULT_MAX_MESSAGE_BYTES = 256 * 1024 * 1024
CALLS_PER_CHANNEL = 16
MAX_CHANNELS = 8
_KEY_RE = re.compile(r"\A[0-9a-z_.-]+\Z")
_VALUE_RE = re.compile(r"\A[\x20-\x7e]*\Z")
_RESERVED = frozenset(("x-request-id", "content-type", "te", "user-agent", "grpc-timeout"))
_UNREACHABLE = frozenset((grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED))

_gevent_ready = False


def ensure_gevent_grpc() -> None:
    """Make grpcio cooperate with gevent (once per process, before any channel)."""
    global _gevent_ready
    if not _gevent_ready:
        import grpc.experimental.gevent as grpc_gevent

        grpc_gevent.init_gevent()
        _gevent_ready = True


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


def rpc_failure(exc: grpc.RpcError) -> Outcome:
    code = exc.code() if hasattr(exc, "code") else None
    name = code.name if isinstance(code, grpc.StatusCode) else "UNKNOWN"
    details = exc.details() if hasattr(exc, "details") else None
    return Outcome(False, oc.grpc_kind(name), shorten(details or name))


class GrpcClient:
    """An OIP gRPC client for one target (one model or pipeline) over a few channels."""

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
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    ) -> None:
        """``pool_size`` is the expected concurrency (as for REST); each channel is one HTTP/2
        connection multiplexing many calls, so it becomes ``pool_size // 16`` channels (1 to 8)
        unless ``channels`` is given."""
        if target.protocol != "grpc":
            raise ConfigError(f"GrpcClient needs a gRPC target, got {target.protocol}")
        if channels is None:
            channels = max(1, min(MAX_CHANNELS, pool_size // CALLS_PER_CHANNEL))
        if channels < 1:
            raise ConfigError(f"gRPC channels must be at least 1, got {channels}")
        if not target.tls and tls is not None and (tls.ca_file or tls.cert_file or tls.insecure_skip_verify):
            raise ConfigError(f"TLS options need a grpcs:// host, got {target.safe_host}")
        creds = (tls or TlsConfig()).grpc_credentials() if target.tls else None
        ensure_gevent_grpc()
        self.target = target
        self.validate = validate
        self.timeout_s = timeout_s
        self.connect_timeout_s = connect_timeout_s
        self._closed = False
        self._md = _metadata(target, headers)
        options = [
            ("grpc.max_send_message_length", max_message_bytes),
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.use_local_subchannel_pool", 1),  # one connection per channel, not a shared one
            ("grpc.primary_user_agent", f"seldon-load/{__version__}"),
        ]
        address = target.grpc_address
        self._channels = [
            grpc.secure_channel(address, creds, options)
            if creds is not None
            else grpc.insecure_channel(address, options)
            for _ in range(channels)
        ]
        infer_calls = [ch.unary_unary(SERVICE + "ModelInfer") for ch in self._channels]
        self._next_infer: Callable[[], Any] = itertools.cycle(infer_calls).__next__
        self._rid_prefix = secrets.token_hex(6) + "-"
        self._counter = itertools.count(1).__next__

    def _request_md(self) -> tuple[tuple[str, str], ...]:
        return (*self._md, ("x-request-id", f"{self._rid_prefix}{self._counter():x}"))

    def infer(self, req: bytes | EncodedRequest) -> Outcome:
        """One inference call with pre-serialized request bytes; never raises for server or
        network faults."""
        body = req if type(req) is bytes else req.body  # type: ignore[union-attr]
        try:
            data = self._next_infer()(body, timeout=self.timeout_s, metadata=self._request_md())
        except grpc.RpcError as exc:
            return rpc_failure(exc)
        except ValueError:
            if self._closed:
                return Outcome(False, oc.CANCELLED, "client closed")
            raise
        if self.validate:
            try:
                pb_codec.check_response(data)
            except OIPError as exc:
                return Outcome(False, oc.INVALID_RESPONSE, shorten(str(exc)), len(data))
        return Outcome(True, None, None, len(data))

    # ------------------------------------------------------------------ control plane

    def _unary(self, method: str, request: Any, response_type: Any, timeout_s: float | None = None) -> Any:
        call = self._channels[0].unary_unary(
            SERVICE + method,
            request_serializer=type(request).SerializeToString,
            response_deserializer=response_type.FromString,
        )
        try:
            return call(request, timeout=timeout_s or self.timeout_s, metadata=self._request_md())
        except grpc.RpcError as exc:
            out = rpc_failure(exc)
            if exc.code() in _UNREACHABLE:
                raise TargetError(
                    f"cannot connect to {self.target.safe_host}: {out.error_kind}: {out.message}"
                ) from None
            raise _RpcFailed(out) from None

    def infer_decoded(self, req: bytes | EncodedRequest) -> InferResponse:
        """One inference call, decoded; OIPError for a failed or bad answer, TargetError when
        the server cannot be reached."""
        body = req if isinstance(req, bytes) else req.body
        call = self._channels[0].unary_unary(SERVICE + "ModelInfer")
        try:
            data = call(body, timeout=self.timeout_s, metadata=self._request_md())
        except grpc.RpcError as exc:
            out = rpc_failure(exc)
            if exc.code() in _UNREACHABLE:
                raise TargetError(
                    f"cannot connect to {self.target.safe_host}: {out.error_kind}: {out.message}"
                ) from None
            raise OIPServerError(f"{out.error_kind}: {out.message}") from None
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
        for channel in self._channels:
            channel.close()

    def __enter__(self) -> GrpcClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _RpcFailed(Exception):
    """A control-plane call the server answered with an error status."""

    def __init__(self, outcome: Outcome) -> None:
        super().__init__(f"{outcome.error_kind}: {outcome.message}")
        self.outcome = outcome
