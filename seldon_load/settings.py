"""The options' values (defined in ``options.py``) checked into one settings object.

``Settings.from_options`` checks everything a user can get wrong and raises ``ConfigError`` with
one clear line, before any load is sent.
"""

from __future__ import annotations

import base64
import math
import os
import re
import ssl
import stat
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from seldon_load.analyze.stages import Criteria
from seldon_load.errors import ConfigError
from seldon_load.limits import MAX_PAYLOAD_BYTES, MAX_SPEC_BYTES, MiB, size_text
from seldon_load.load.arrivals import UNIFORM
from seldon_load.load.auto import AutoConfig
from seldon_load.load.plan import Stage, parse_duration, parse_stages
from seldon_load.oip.target import Target, parse_target
from seldon_load.safe_text import shown

_HEADER_NAME = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+")
MAX_TLS_FILE_BYTES = 16 * MiB
# Header values and URL passwords shorter than this are not scrubbed from server echoes:
# replacing "1" or "true" everywhere would mangle the results, and they are no secret anyway.
MIN_SECRET_CHARS = 6
REDACTED = "***"


def parse_headers(items: list[str]) -> dict[str, str]:
    """``Name: value`` items into a dict; ConfigError saying what is wrong, never echoing any of it.

    Nothing of a bad item is shown: without a colon the whole item may be the secret
    (--header 'Bearer abc'), and a name with spaces may hold one too.
    """
    headers: dict[str, str] = {}
    items = list(items or [])
    for i, item in enumerate(items, 1):
        where = f"invalid --header (number {i} of {len(items)})"
        name, colon, value = item.partition(":")
        name, value = name.strip(" \t"), value.strip(" \t")
        if not colon or not _HEADER_NAME.fullmatch(name):
            raise ConfigError(f"{where}: expected 'Name: value' with a name of letters, digits and "
                              "!#$%&'*+.^_`|~- and a one-line value")
        bad = next((j for j, c in enumerate(value) if c in "\r\n"), None)
        if bad is not None:
            raise ConfigError(f"{where}: the value must be one line (a line break at character {bad + 1})")
        bad = next((j for j, c in enumerate(value) if not c.isascii()), None)
        if bad is not None:
            raise ConfigError(f"{where}: header value must be ASCII (character {bad + 1} is not)")
        bad = next((j for j, c in enumerate(value) if (c < " " and c != "\t") or c == "\x7f"), None)
        if bad is not None:
            raise ConfigError(f"{where}: header value must not contain control characters (character {bad + 1})")
        headers[name.lower()] = value
    return headers


def secrets_of(headers: dict[str, str], target: Target) -> list[str]:
    """Every string that must never be written: header values (and their long words), URL credentials.

    Longest first, so a value is replaced whole before any of its parts.
    """
    found: set[str] = set()
    for value in headers.values():
        if len(value) >= MIN_SECRET_CHARS:
            found.add(value)
        found.update(w for w in value.split() if len(w) >= 8)
    if target.basic_auth is not None:
        user, password = target.basic_auth
        token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
        found.update(x for x in (password, f"{user}:{password}", token) if len(x) >= MIN_SECRET_CHARS)
    return sorted(found, key=len, reverse=True)


def scrub(value, secrets: list[str]):
    """``value`` (str, or dicts/lists of them) with every secret replaced by ``***``."""
    if not secrets:
        return value
    if isinstance(value, str):
        for secret in secrets:
            if secret in value:
                value = value.replace(secret, REDACTED)
            # a message cut short (e.g. "...") may end with the first part of a secret
            tail = value[:-3] if value.endswith("...") else value
            for k in range(len(secret) - 1, 3, -1):
                if tail.endswith(secret[:k]):
                    value = tail[:-k] + REDACTED + value[len(tail):]
                    break
        return value
    if isinstance(value, dict):
        return {scrub(k, secrets): scrub(v, secrets) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [scrub(v, secrets) for v in value]
    return value


def parse_sweep(text: str) -> list[tuple[int, float]]:
    out = []
    for i, part in enumerate(text.split(",")):
        fields = part.strip().split(":")
        users = fields[0].strip()
        # ASCII digits only: str.isdigit() also admits '²', which int() refuses
        if len(fields) != 2 or not (users.isascii() and users.isdigit()) or int(users) < 1:
            raise ConfigError(f"invalid sweep step {i + 1} {shown(part.strip())}: expected USERS:HOLD, e.g. 4:30s")
        out.append((int(users), parse_duration(fields[1], f"hold of sweep step {i + 1}")))
    return out


def _check_url(url: str, what: str) -> str:
    try:
        p = urlparse(url)
        _ = p.port  # raises on a port out of range or not a number
    except ValueError as exc:
        raise ConfigError(f"invalid {what} {shown(_redact_url(url))}: {exc}") from None
    if p.scheme not in ("http", "https") or not p.hostname:
        raise ConfigError(f"invalid {what} {shown(_redact_url(url))}: expected http(s)://host:port/path")
    return url


def _redact_url(url: str) -> str:
    """The URL with any ``user:password@`` replaced, for error messages."""
    return re.sub(r"(://)[^/@]*@", r"\1***@", url)


def _resource_settings(s: Settings, o) -> None:
    from seldon_load.analyze.resources import SOURCES, parse_selector

    selector = getattr(o, "resource_selector", "") or ""
    costs = {"--core-hour-cost": getattr(o, "core_hour_cost", None), "--gpu-hour-cost": getattr(o, "gpu_hour_cost", None)}
    for what, value in costs.items():
        _finite(value, what, 0, low_inclusive=True)
        if value is not None and not selector:
            raise ConfigError(f"{what} needs --resource-selector (and --prometheus-url): the cost is of what the "
                              "server used")
    source = getattr(o, "resource_source", "auto") or "auto"
    if source != "auto" and source not in SOURCES:
        raise ConfigError(f"--resource-source must be auto, {', '.join(SOURCES)} (got {source!r})")
    if selector:
        if not s.prometheus_url:
            raise ConfigError("--resource-selector needs --prometheus-url (the Prometheus server holding the series)")
        s.resource_selector = parse_selector(selector)
    s.resource_source = source
    s.core_hour_cost, s.gpu_hour_cost = costs["--core-hour-cost"], costs["--gpu-hour-cost"]


def _finite(value: float | None, what: str, low: float, high: float = math.inf,
            low_inclusive: bool = False) -> None:
    """ConfigError unless ``value`` is a number in (low, high] (or [low, high])."""
    if value is None:
        return
    ok = math.isfinite(value) and value <= high and (value >= low if low_inclusive else value > low)
    if not ok:
        bound = f">= {low:g}" if low_inclusive else f"> {low:g}"
        upper = "" if high == math.inf else f" and <= {high:g}"
        raise ConfigError(f"{what} must be a number {bound}{upper} (got {value})")


def check_tls_files(tls: dict[str, str]) -> None:
    """Load the CA bundle and client certificate once, so a bad file fails before any load (for
    gRPC too, whose channel would only fail at the first connection, with an obscure message)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if tls.get("ca_file"):
        try:
            ctx.load_verify_locations(cafile=tls["ca_file"])
        except (OSError, ValueError, ssl.SSLError) as exc:
            raise ConfigError(f"--ca-file {shown(tls['ca_file'])}: not a readable PEM CA bundle ({exc})") from None
    if tls.get("cert_file"):
        try:
            ctx.load_cert_chain(tls["cert_file"], tls.get("key_file"))
        except (OSError, ValueError, ssl.SSLError) as exc:
            raise ConfigError(f"--cert-file {shown(tls['cert_file'])} / --key-file {shown(tls.get('key_file'))}: "
                              f"not a matching PEM certificate and key ({exc})") from None


def check_results_dir(path: str) -> None:
    """ConfigError unless the results directory exists writable or can be created, before any load."""
    p = Path(path or ".")
    probe = p
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if not probe.is_dir():
        raise ConfigError(f"--results {shown(path)}: {shown(str(probe))} is not a directory")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ConfigError(f"--results {shown(path)}: {shown(str(probe))} is not writable")


def parse_step_payloads(items: list[str] | None) -> dict[str, str]:
    """``--step-payload MODEL=FILE`` items -> {model: file}, each file checked."""
    out: dict[str, str] = {}
    for item in items or []:
        model, sep, path = str(item).partition("=")
        model, path = model.strip(), path.strip()
        if not sep or not model or not path:
            raise ConfigError(f"invalid --step-payload {shown(item)}: expected MODEL=FILE")
        if model in out:
            raise ConfigError(f"--step-payload given twice for model {shown(model)}")
        out[model] = _check_file(path, f"--step-payload for {shown(model)}:")
    return out


def _check_file(path: str, what: str, limit: int = MAX_PAYLOAD_BYTES) -> str:
    """The path, if it names a readable regular file of at most ``limit`` bytes (checked unread)."""
    if not path:
        return path
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        raise ConfigError(f"{what} {shown(path)}: no such file") from None
    if not stat.S_ISREG(st.st_mode):
        kind = "a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file"
        raise ConfigError(f"{what} {shown(path)}: no such file (it is {kind})")
    if not os.access(path, os.R_OK):
        raise ConfigError(f"{what} {shown(path)}: not readable")
    if st.st_size > limit:
        raise ConfigError(f"{what} {shown(path)}: larger than {size_text(limit)}")
    return path


@dataclass
class Settings:
    target: Target
    headers: dict[str, str]
    mode: str
    stages: list[Stage] = field(default_factory=list)
    auto: AutoConfig | None = None
    sweep: list[tuple[int, float]] = field(default_factory=list)
    users: int = 1
    spawn_rate: float = 10.0
    run_time_s: float | None = None
    payload: str = ""
    batch_size: int = 1
    payload_variants: int = 0  # 0: 8 synthesised variants, or the file as-is
    binary: bool = False
    grpc_raw: bool = True
    timeout_s: float = 30.0
    max_response_bytes: int = 64 * 2**20
    tls: dict = field(default_factory=dict)
    arrival: str = UNIFORM
    max_in_flight: int = 1000
    drain_timeout_s: float = 10.0
    locust_stats: bool = True
    results_dir: str = "results/latest"
    criteria: Criteria = field(default_factory=Criteria)
    max_failure_ratio: float | None = None
    min_saturation_rps: float | None = None
    pipeline_spec: str = ""
    step_payloads: dict[str, str] = field(default_factory=dict)
    metrics_urls: list[str] = field(default_factory=list)
    prometheus_url: str = ""
    resource_selector: str = ""
    resource_source: str = "auto"
    core_hour_cost: float | None = None
    gpu_hour_cost: float | None = None

    @property
    def open_loop(self) -> bool:
        return self.mode in ("stages", "auto")

    @property
    def request_name(self) -> str:
        return f"{self.target.protocol} infer {self.target.display_name}"

    @property
    def secrets(self) -> list[str]:
        """Strings never to be written anywhere (see ``secrets_of``)."""
        return secrets_of(self.headers, self.target)

    @classmethod
    def from_options(cls, o) -> Settings:
        host = getattr(o, "host", "") or ""
        if not host:
            raise ConfigError("no --host given: e.g. --host http://127.0.0.1:8080 or --host 127.0.0.1:8081")
        target = parse_target(host, o.model or None, o.pipeline or None, o.protocol or None,
                              pipeline_path=bool(o.pipeline_path))
        headers = parse_headers(o.header)
        modes = [m for m, on in (("auto", o.auto), ("stages", bool(o.stages)), ("sweep", bool(o.sweep))) if on]
        if len(modes) > 1:
            raise ConfigError(f"choose one of --auto, --stages, --sweep (got {', '.join('--' + m for m in modes)})")
        mode = modes[0] if modes else "closed"
        s = cls(target=target, headers=headers, mode=mode)
        if mode == "stages":
            s.stages = parse_stages(o.stages)
        elif mode == "auto":
            if o.max_rps is None or not math.isfinite(o.max_rps) or o.max_rps <= 0:
                raise ConfigError("--max-rps must be > 0")
            _finite(o.auto_start_rps, "--auto-start-rps", 0)
            s.auto = AutoConfig(start_rps=min(o.auto_start_rps, o.max_rps), max_rps=o.max_rps,
                                precision=o.auto_precision,
                                hold_s=parse_duration(o.auto_hold, "--auto-hold"),
                                narrow_hold_s=parse_duration(o.auto_narrow_hold, "--auto-narrow-hold"),
                                budget_s=parse_duration(o.auto_budget, "--auto-budget")).validate()
        elif mode == "sweep":
            s.sweep = parse_sweep(o.sweep)
        s.users = int(getattr(o, "num_users", None) or 1)
        s.spawn_rate = float(getattr(o, "spawn_rate", None) or 10.0)
        s.run_time_s = float(o.run_time) if getattr(o, "run_time", None) else None
        s.payload = _check_file(o.payload, "--payload", MAX_PAYLOAD_BYTES)
        if o.batch_size < 1 or o.batch_size > 1_000_000:
            raise ConfigError(f"--batch-size must be between 1 and 1000000 (got {o.batch_size})")
        s.batch_size = o.batch_size
        if o.payload_variants < 0 or o.payload_variants > 1024:
            raise ConfigError("--payload-variants must be between 1 and 1024")
        s.payload_variants = o.payload_variants
        s.binary, s.grpc_raw = bool(o.binary), not o.grpc_typed
        if not math.isfinite(o.request_timeout) or o.request_timeout <= 0:
            raise ConfigError("--request-timeout must be > 0")
        s.timeout_s = o.request_timeout
        max_bytes = getattr(o, "max_response_bytes", s.max_response_bytes)
        if not 1024 <= max_bytes <= 2**31:
            raise ConfigError("--max-response-bytes must be between 1024 and 2147483648")
        s.max_response_bytes = max_bytes
        s.tls = {k: _check_file(v, f"--{k.replace('_', '-')}", MAX_TLS_FILE_BYTES) for k, v in
                 (("ca_file", o.ca_file), ("cert_file", o.cert_file), ("key_file", o.key_file)) if v}
        if bool(o.cert_file) != bool(o.key_file):
            raise ConfigError("--cert-file and --key-file go together")
        if s.tls and not target.tls:
            raise ConfigError(f"TLS options need an https:// or grpcs:// host, got {target.safe_host}")
        check_tls_files(s.tls)
        s.arrival = o.arrival
        if o.max_in_flight < 1:
            raise ConfigError("--max-in-flight must be >= 1")
        s.max_in_flight = o.max_in_flight
        s.drain_timeout_s = parse_duration(o.drain_timeout, "--drain-timeout")
        s.locust_stats = not o.no_locust_stats
        s.results_dir = o.results or "results/latest"
        for name in ("min_achieved_ratio", "max_error_ratio", "recommended_fraction"):
            v = getattr(o, name)
            if not (0 <= v <= 1):
                raise ConfigError(f"--{name.replace('_', '-')} must be between 0 and 1 (got {v})")
        if o.slo_p99 is not None and not (math.isfinite(o.slo_p99) and o.slo_p99 > 0):
            raise ConfigError("--slo-p99 must be > 0 (milliseconds)")
        _finite(o.max_failure_ratio, "--max-failure-ratio", 0, 1, low_inclusive=True)
        _finite(o.min_saturation_rps, "--min-saturation-rps", 0, low_inclusive=True)
        _finite(o.max_latency_trend, "--max-latency-trend", 1, low_inclusive=True)
        _finite(o.max_send_lag_ms, "--max-send-lag-ms", 0)
        s.criteria = Criteria(min_achieved_ratio=o.min_achieved_ratio, max_error_ratio=o.max_error_ratio,
                              max_latency_trend=o.max_latency_trend, slo_p99_ms=o.slo_p99,
                              settle_s=parse_duration(o.settle, "--settle"),
                              recommended_fraction=o.recommended_fraction, max_send_lag_ms=o.max_send_lag_ms)
        s.max_failure_ratio = o.max_failure_ratio
        s.min_saturation_rps = o.min_saturation_rps
        s.pipeline_spec = _check_file(o.pipeline_spec, "--pipeline-spec", MAX_SPEC_BYTES)
        s.step_payloads = parse_step_payloads(getattr(o, "step_payload", None))
        s.metrics_urls = [_check_url(u, "--metrics-url") for u in o.metrics_url or []]
        s.prometheus_url = _check_url(o.prometheus_url, "--prometheus-url") if o.prometheus_url else ""
        _resource_settings(s, o)
        return s
