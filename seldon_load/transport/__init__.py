"""The wire: gevent-cooperative OIP clients over REST (HTTP/1.1 keep-alive) and gRPC."""

from __future__ import annotations

from typing import Any

from seldon_load.oip.target import Target


def make_client(target: Target, **kwargs: Any) -> Any:
    """A RestClient or GrpcClient for the target's protocol (both take ``headers``,
    ``timeout_s``, ``connect_timeout_s``, ``pool_size``, ``tls``, ``validate`` and
    ``max_response_bytes``); the gRPC-only ``channels`` is ignored for REST."""
    if target.protocol == "rest":
        from seldon_load.transport.rest import RestClient

        kwargs.pop("channels", None)
        return RestClient(target, **kwargs)
    from seldon_load.transport.grpc import GrpcClient

    return GrpcClient(target, **kwargs)
