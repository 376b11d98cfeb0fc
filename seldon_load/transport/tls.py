"""TLS settings shared by the REST and gRPC transports, checked before any connection."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from seldon_load.errors import ConfigError


@dataclass(frozen=True)
class TlsConfig:
    """CA bundle to trust, optional client certificate and key (mTLS), or no verification."""

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    insecure_skip_verify: bool = False

    def __post_init__(self) -> None:
        if (self.cert_file is None) != (self.key_file is None):
            raise ConfigError("a TLS client certificate needs both a certificate file and a key file")
        for label, path in (
            ("CA file", self.ca_file),
            ("client certificate", self.cert_file),
            ("client key", self.key_file),
        ):
            if path is not None:
                _check_readable(label, path)

    def ssl_context(self, gevent_ssl: bool = True):  # -> ssl.SSLContext
        """A client SSLContext: gevent's class (cooperative sockets even without monkey-patching)
        unless ``gevent_ssl`` is False."""
        if gevent_ssl:
            import gevent.ssl as ssl_mod
        else:
            import ssl as ssl_mod
        ctx = ssl_mod.SSLContext(ssl_mod.PROTOCOL_TLS_CLIENT)
        try:
            if self.ca_file is not None:
                ctx.load_verify_locations(cafile=self.ca_file)
            else:
                _load_default_roots(ctx)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot load TLS CA file {self.ca_file}: {exc}") from None
        if self.insecure_skip_verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl_mod.CERT_NONE
        if self.cert_file is not None:
            try:
                ctx.load_cert_chain(self.cert_file, self.key_file)
            except (OSError, ValueError) as exc:
                raise ConfigError(f"cannot load TLS client certificate {self.cert_file}: {exc}") from None
        return ctx

    def grpc_credentials(self):  # -> grpc.ChannelCredentials
        import grpc

        if self.insecure_skip_verify:
            raise ConfigError(
                "skipping TLS verification is not supported for gRPC: give the server's CA file"
            )
        root = _read(self.ca_file) if self.ca_file else None
        key = _read(self.key_file) if self.key_file else None
        cert = _read(self.cert_file) if self.cert_file else None
        return grpc.ssl_channel_credentials(root_certificates=root, private_key=key, certificate_chain=cert)


def _check_readable(label: str, path: str) -> None:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"TLS {label} {path} does not exist or is not a file")
    if not os.access(p, os.R_OK):
        raise ConfigError(f"TLS {label} {path} is not readable")


def _read(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read TLS file {path}: {exc.strerror}") from None


def _load_default_roots(ctx) -> None:
    """The system trust store, or certifi's bundle where the system has none."""
    ctx.load_default_certs()
    if not ctx.cert_store_stats().get("x509_ca"):
        try:
            import certifi
        except ImportError:
            return
        ctx.load_verify_locations(cafile=certifi.where())
