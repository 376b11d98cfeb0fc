"""The wire: gevent-cooperative OIP clients over REST (HTTP/1.1 keep-alive) and gRPC."""

from __future__ import annotations

from typing import Any

from seldon_load.oip.target import Target

GRPC_CALLS_PER_CHANNEL = 16  # one HTTP/2 connection carries many concurrent calls


def make_client(target: Target, **kwargs: Any) -> Any:
    """A RestClient or GrpcClient for the target's protocol.

    ``pool_size`` means keep-alive connections for REST; for gRPC it becomes
    ``pool_size // 16`` channels (1 to 8) unless ``channels`` is given.
    """
    if target.protocol == "rest":
        from seldon_load.transport.rest import RestClient

        kwargs.pop("channels", None)
        kwargs.pop("max_message_bytes", None)
        return RestClient(target, **kwargs)
    from seldon_load.transport.grpc import GrpcClient

    pool_size = kwargs.pop("pool_size", None)
    if "channels" not in kwargs and pool_size is not None:
        kwargs["channels"] = max(1, min(8, pool_size // GRPC_CALLS_PER_CHANNEL))
    return GrpcClient(target, **kwargs)
