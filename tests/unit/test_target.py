"""--host / --model / --pipeline / --protocol parsing into a Target."""

from __future__ import annotations

import base64

import pytest

from seldon_load.errors import ConfigError
from seldon_load.oip.target import parse_target


@pytest.mark.parametrize(
    ("host", "protocol", "expected"),
    [
        ("http://127.0.0.1:8080", None, ("rest", "http", "127.0.0.1", 8080, False, "")),
        ("https://example.com", None, ("rest", "https", "example.com", 443, True, "")),
        ("http://h:9000/seldon/ns/", "rest", ("rest", "http", "h", 9000, False, "/seldon/ns")),
        ("grpc://127.0.0.1:8081", None, ("grpc", "grpc", "127.0.0.1", 8081, False, "")),
        ("grpcs://mesh.example.com:443", "grpc", ("grpc", "grpcs", "mesh.example.com", 443, True, "")),
        ("127.0.0.1:8081", None, ("grpc", "grpc", "127.0.0.1", 8081, False, "")),
        ("localhost:8081", "grpc", ("grpc", "grpc", "localhost", 8081, False, "")),
        ("127.0.0.1:8080", "rest", ("rest", "http", "127.0.0.1", 8080, False, "")),
        ("HTTP://H:1", None, ("rest", "http", "h", 1, False, "")),
        ("[::1]:8081", None, ("grpc", "grpc", "::1", 8081, False, "")),
    ],
)
def test_host_forms(host: str, protocol: str | None, expected: tuple) -> None:
    t = parse_target(host, "synth", None, protocol)
    assert (t.protocol, t.scheme, t.hostname, t.port, t.tls, t.base_path) == expected


def test_model_paths_and_routing() -> None:
    t = parse_target("http://h:8080/prefix", "synth-5ms", None)
    assert t.kind == "model" and t.name == "synth-5ms"
    assert t.routing_value == "synth-5ms" == t.display_name
    assert t.infer_path == "/prefix/v2/models/synth-5ms/infer"
    assert t.metadata_path == "/prefix/v2/models/synth-5ms"
    assert t.ready_path == "/prefix/v2/models/synth-5ms/ready"
    assert t.live_path == "/prefix/v2/health/live"


def test_pipeline_routing_and_paths() -> None:
    t = parse_target("http://h:8080", None, "mypipe")
    assert t.kind == "pipeline"
    assert t.routing_value == "mypipe.pipeline" == t.display_name
    assert t.infer_path == "/v2/models/mypipe/infer"  # Core 2: routed by the seldon-model header
    t = parse_target("http://h:8080", None, "mypipe", pipeline_path=True)
    assert t.infer_path == "/v2/pipelines/mypipe/infer"
    assert t.metadata_path == "/v2/pipelines/mypipe"


def test_credentials_become_basic_auth_and_never_show() -> None:
    t = parse_target("https://alice:s3cr%40t@h.example:8443/p", "m", None)
    assert t.safe_host == "https://h.example:8443/p"
    assert t.auth_header() == "Basic " + base64.b64encode(b"alice:s3cr@t").decode()
    for text in (repr(t), str(t), t.safe_host, t.infer_path):
        assert "s3cr" not in text and "alice" not in text
    assert parse_target("http://h:1", "m", None).auth_header() is None


def test_safe_host_of_ipv6_and_grpc() -> None:
    assert parse_target("[::1]:8081", "m", None).safe_host == "grpc://[::1]:8081"
    assert parse_target("[::1]:8081", "m", None).grpc_address == "[::1]:8081"
    assert parse_target("http://[::1]:80", "m", None).netloc == "[::1]:80"


@pytest.mark.parametrize(
    ("host", "model", "pipeline", "protocol", "message"),
    [
        ("http://h:1", None, None, None, "exactly one of --model NAME or --pipeline NAME"),
        ("http://h:1", "a", "b", None, "exactly one of"),
        ("http://h:1", "", None, None, "invalid model name ''"),
        ("http://h:1", "a/b", None, None, "invalid model name 'a/b'"),
        ("http://h:1", None, "p q", None, "invalid pipeline name 'p q'"),
        ("http://h:1", "m", None, "grpc", "--protocol grpc does not match host http://h:1"),
        ("grpc://h:1", "m", None, "rest", "--protocol rest does not match"),
        ("http://h:1", "m", None, "soap", "invalid protocol 'soap'"),
        ("ftp://h:1", "m", None, None, "scheme must be http, https, grpc or grpcs"),
        ("justahost", "m", None, None, "invalid host justahost"),
        ("h:1/path", "m", None, None, "invalid host h:1/path"),
        ("grpc://h:1/path", "m", None, None, "a gRPC host takes no path"),
        ("http://h:99999", "m", None, None, "invalid host http://h:99999"),
        ("http://:80", "m", None, None, "no host name"),
        ("http://h:1/?q=1", "m", None, None, "no query or fragment"),
        ("", "m", None, None, "--host is empty"),
    ],
)
def test_bad_input_is_one_config_error_line(
    host: str, model: str | None, pipeline: str | None, protocol: str | None, message: str
) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        parse_target(host, model, pipeline, protocol)
    assert "\n" not in str(info.value)


def test_error_messages_hide_credentials() -> None:
    with pytest.raises(ConfigError) as info:
        parse_target("ftp://bob:hunter2@h:1", "m", None)
    assert "hunter2" not in str(info.value) and "***@h:1" in str(info.value)
    with pytest.raises(ConfigError) as info:
        parse_target("http://bob:hunter2@h:1", "m", None, "grpc")
    assert "hunter2" not in str(info.value)
