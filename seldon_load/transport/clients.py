"""One entry to the wire: the client for a target's protocol.

Its own module, not the package's ``__init__``, so that importing one transport module never
imports the others through the package (no import cycle, not even a lazy one).
"""

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
