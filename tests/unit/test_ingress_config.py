"""The testbed ingress's Envoy configuration: what routes where, read without starting Envoy.

Envoy itself judges the configuration in tests/integration/test_ingress.py; these tests pin the
routing rules the docs promise (header + path per model, NAME.pipeline, own addresses only).
"""

from __future__ import annotations

import re
from typing import Any

from seldon_load.testbed.ingress import GRPC_CLUSTER, REST_CLUSTER, IngressPorts, envoy_config

PORTS = IngressPorts("127.0.0.1", 9000, 9443, 8080, 8081)


def virtual_host(config: dict[str, Any], listener: int = 0) -> dict[str, Any]:
    chain = config["static_resources"]["listeners"][listener]["filter_chains"][0]
    return chain["filters"][0]["typed_config"]["route_config"]["virtual_hosts"][0]


def route_for(config: dict[str, Any], header: str | None, path: str, grpc: bool) -> dict[str, Any] | None:
    """What Envoy would pick: the first route whose header, gRPC and path conditions all hold."""
    for route in virtual_host(config)["routes"]:
        match = route["match"]
        if any(h["string_match"]["exact"] != header for h in match.get("headers", [])):
            continue
        if "grpc" in match and not grpc:
            continue
        if "safe_regex" in match and not re.fullmatch(match["safe_regex"]["regex"], path):
            continue
        if "prefix" in match and not path.startswith(match["prefix"]):
            continue
        return route["route"]
    return None


def test_models_route_on_header_and_their_own_path() -> None:
    config = envoy_config(PORTS, ["synth-5ms", "iris"], ["branching"], "c.pem", "k.pem")
    assert route_for(config, "synth-5ms", "/v2/models/synth-5ms/infer", grpc=False)["cluster"] == REST_CLUSTER
    assert route_for(config, "synth-5ms", "/v2/models/synth-5ms", grpc=False)["cluster"] == REST_CLUSTER
    assert route_for(config, "synth-5ms", "/v2/health/ready", grpc=False)["cluster"] == REST_CLUSTER
    infer = "/inference.GRPCInferenceService/ModelInfer"
    assert route_for(config, "synth-5ms", infer, grpc=True)["cluster"] == GRPC_CLUSTER
    # a header for another model, no header, an unknown name, a pipeline name without .pipeline: 404
    assert route_for(config, "iris", "/v2/models/synth-5ms/infer", grpc=False) is None
    assert route_for(config, None, "/v2/models/synth-5ms/infer", grpc=False) is None
    assert route_for(config, "nope", infer, grpc=True) is None
    assert route_for(config, "branching", "/v2/models/branching/infer", grpc=False) is None
    assert route_for(config, "synth-5ms", "/v2/models/synth-5msX/infer", grpc=False) is None


def test_pipelines_route_on_name_dot_pipeline_and_take_the_pipeline_path() -> None:
    config = envoy_config(PORTS, ["synth-5ms"], ["branching"], "c.pem", "k.pem")
    rest = route_for(config, "branching.pipeline", "/v2/pipelines/branching/infer", grpc=False)
    assert rest["cluster"] == REST_CLUSTER
    assert rest["regex_rewrite"]["substitution"] == "/v2/models/"
    assert route_for(config, "branching.pipeline", "/v2/models/branching/infer", grpc=False) == rest
    grpc = route_for(config, "branching.pipeline", "/inference.GRPCInferenceService/ModelInfer", grpc=True)
    assert grpc["cluster"] == GRPC_CLUSTER and "regex_rewrite" not in grpc


def test_only_the_testbeds_own_addresses_unless_it_listens_everywhere() -> None:
    config = envoy_config(PORTS, ["m"], [], "c.pem", "k.pem")
    domains = virtual_host(config)["domains"]
    assert "127.0.0.1:9000" in domains and "localhost:9443" in domains and "127.0.0.1" in domains
    assert "*" not in domains
    assert virtual_host(config, 1) == virtual_host(config)  # the TLS listener routes the same way
    wide = envoy_config(IngressPorts("0.0.0.0", 9000, 9443, 8080, 8081), ["m"], [], "c.pem", "k.pem")
    assert virtual_host(wide)["domains"] == ["*"]
    upstream = wide["static_resources"]["clusters"][0]["load_assignment"]["endpoints"][0]["lb_endpoints"][0]
    assert upstream["endpoint"]["address"]["socket_address"] == {"address": "127.0.0.1", "port_value": 8080}


def test_tls_listener_offers_h2_and_http1_with_the_made_certificate() -> None:
    config = envoy_config(PORTS, ["m"], [], "/x/server.pem", "/x/server-key.pem")
    plain, tls = config["static_resources"]["listeners"]
    assert "transport_socket" not in plain["filter_chains"][0]
    assert plain["address"]["socket_address"]["port_value"] == 9000
    assert tls["address"]["socket_address"]["port_value"] == 9443
    context = tls["filter_chains"][0]["transport_socket"]["typed_config"]["common_tls_context"]
    assert context["alpn_protocols"] == ["h2", "http/1.1"]
    assert context["tls_certificates"][0]["certificate_chain"]["filename"] == "/x/server.pem"
    rest_cluster, grpc_cluster = config["static_resources"]["clusters"]
    options = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
    assert grpc_cluster["name"] == GRPC_CLUSTER
    assert "http2_protocol_options" in grpc_cluster["typed_extension_protocol_options"][options]["explicit_http_config"]
    assert "http_protocol_options" in rest_cluster["typed_extension_protocol_options"][options]["explicit_http_config"]
