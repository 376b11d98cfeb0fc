"""What to load: host, protocol, model or pipeline, and the paths and routing header derived from them.

Host forms: ``http(s)://host:port[/prefix]`` is REST; ``grpc(s)://host:port`` or a bare
``host:port`` is gRPC (a bare ``host:port`` with ``protocol="rest"`` is plain HTTP).
Seldon Core 2 routes on the ``seldon-model`` header: ``NAME`` for a model, ``NAME.pipeline``
for a pipeline. Credentials in the URL (``user:password@``) become a basic-auth header and
never appear in ``safe_host``, ``repr`` or anything derived for logs and results.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass, field
from urllib.parse import quote, unquote, urlsplit

from seldon_load.errors import ConfigError
from seldon_load.safe_text import clip, shown

PROTOCOLS = ("rest", "grpc")
_SCHEMES = {
    "http": ("rest", False),
    "https": ("rest", True),
    "grpc": ("grpc", False),
    "grpcs": ("grpc", True),
}
_DEFAULT_PORTS = {"http": 80, "https": 443, "grpc": 80, "grpcs": 443}
_NAME_RE = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9._-]*\Z")


@dataclass(frozen=True)
class Target:
    protocol: str  # "rest" | "grpc"
    kind: str  # "model" | "pipeline"
    name: str
    scheme: str  # http, https, grpc, grpcs
    hostname: str
    port: int
    tls: bool
    base_path: str  # "" or "/prefix" (REST only)
    pipeline_path: bool = False
    basic_auth: tuple[str, str] | None = field(default=None, repr=False, compare=False)

    @property
    def routing_value(self) -> str:
        """Value of the Seldon Core 2 ``seldon-model`` header."""
        return f"{self.name}.pipeline" if self.kind == "pipeline" else self.name

    @property
    def display_name(self) -> str:
        return self.routing_value

    @property
    def _resource_path(self) -> str:
        collection = "pipelines" if self.kind == "pipeline" and self.pipeline_path else "models"
        return f"{self.base_path}/v2/{collection}/{quote(self.name, safe='')}"

    @property
    def infer_path(self) -> str:
        return f"{self._resource_path}/infer"

    @property
    def metadata_path(self) -> str:
        return self._resource_path

    @property
    def ready_path(self) -> str:
        return f"{self._resource_path}/ready"

    @property
    def live_path(self) -> str:
        return f"{self.base_path}/v2/health/live"

    @property
    def server_ready_path(self) -> str:
        return f"{self.base_path}/v2/health/ready"

    @property
    def netloc(self) -> str:
        """host:port as used in a URL and in the HTTP Host header (IPv6 in brackets)."""
        host = f"[{self.hostname}]" if ":" in self.hostname else self.hostname
        return f"{host}:{self.port}"

    @property
    def safe_host(self) -> str:
        """The host URL without credentials: safe for logs, results and reports."""
        return f"{self.scheme}://{self.netloc}{self.base_path}"

    @property
    def grpc_address(self) -> str:
        return self.netloc

    def auth_header(self) -> str | None:
        """``Basic ...`` from URL credentials, or None."""
        if self.basic_auth is None:
            return None
        token = base64.b64encode(":".join(self.basic_auth).encode()).decode("ascii")
        return f"Basic {token}"


def parse_target(
    host: str,
    model: str | None,
    pipeline: str | None,
    protocol: str | None = None,
    pipeline_path: bool = False,
) -> Target:
    """Parse ``--host`` and ``--model``/``--pipeline``; ConfigError with one line on bad input."""
    if (model is None) == (pipeline is None):
        raise ConfigError("give exactly one of --model NAME or --pipeline NAME")
    kind, name = ("model", model) if model is not None else ("pipeline", pipeline)
    assert name is not None
    if not _NAME_RE.match(name):
        raise ConfigError(f"invalid {kind} name {shown(name)}: use letters, digits and . _ - characters")
    if protocol is not None and protocol not in PROTOCOLS:
        raise ConfigError(f"invalid protocol {shown(protocol)}: use rest or grpc")
    host = (host or "").strip()
    if not host:
        raise ConfigError("--host is empty: give e.g. http://127.0.0.1:8080 or 127.0.0.1:8081")
    _check_ascii_host(host)
    scheme, rest_of = _split_scheme(host, protocol)
    parsed_protocol, tls = _SCHEMES[scheme]
    if protocol is not None and protocol != parsed_protocol:
        raise ConfigError(
            f"--protocol {protocol} does not match host {_redact(host)} ({scheme}:// is {parsed_protocol})"
        )
    try:
        parts = urlsplit(f"{scheme}://{rest_of}")
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"invalid host {_redact(host)}: {exc}") from None
    if not parts.hostname:
        raise ConfigError(f"invalid host {_redact(host)}: no host name")
    if parts.query or parts.fragment:
        raise ConfigError(f"invalid host {_redact(host)}: no query or fragment allowed")
    base_path = parts.path.rstrip("/")
    if base_path and parsed_protocol == "grpc":
        raise ConfigError(f"invalid host {_redact(host)}: a gRPC host takes no path")
    auth = None
    if parts.username is not None:
        auth = (unquote(parts.username), unquote(parts.password or ""))
    return Target(
        protocol=parsed_protocol,
        kind=kind,
        name=name,
        scheme=scheme,
        hostname=parts.hostname,
        port=port if port is not None else _DEFAULT_PORTS[scheme],
        tls=tls,
        base_path=base_path,
        pipeline_path=pipeline_path,
        basic_auth=auth,
    )


def _check_ascii_host(host: str) -> None:
    """Say exactly what is wrong with a port or host name that is not plain ASCII.

    ``int()`` and ``str.isdigit`` accept full-width and other Unicode digits, and a non-ASCII
    name would only fail later, as a header value that cannot be encoded.
    """
    authority = host.split("://", 1)[-1].split("/", 1)[0].rpartition("@")[2]
    name, colon, port = authority.rpartition(":") if not authority.endswith("]") else (authority, "", "")
    if not colon:
        name, port = authority, ""
    if port and not (port.isascii() and port.isdigit()):
        raise ConfigError(f"invalid host {_redact(host)}: the port must be ASCII digits")
    if not name.isascii():
        raise ConfigError(f"invalid host {_redact(host)}: the host name must be ASCII "
                          "(write an internationalised name in its xn-- form)")
    if not name.isprintable() or " " in name:
        raise ConfigError(f"invalid host {_redact(host)}: the host name has spaces or control characters")


def _split_scheme(host: str, protocol: str | None) -> tuple[str, str]:
    if "://" in host:
        scheme, rest_of = host.split("://", 1)
        scheme = scheme.lower()
        if scheme not in _SCHEMES:
            raise ConfigError(f"invalid host {_redact(host)}: scheme must be http, https, grpc or grpcs")
        return scheme, rest_of
    # bare host:port
    try:
        port = urlsplit(f"//{host}").port
    except ValueError:
        port = None
    if port is None or "/" in host:
        raise ConfigError(
            f"invalid host {_redact(host)}: use http(s)://host:port, grpc(s)://host:port or host:port"
        )
    return ("http" if protocol == "rest" else "grpc"), host


def _redact(host: str) -> str:
    """The host as given, with any credentials replaced, for error messages."""
    if "@" not in host:
        return clip(host)
    scheme, sep, rest_of = host.rpartition("://")
    return clip(scheme + sep + re.sub(r"\A[^/]*@", "***@", rest_of))
