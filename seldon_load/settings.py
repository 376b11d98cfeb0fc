"""The plugin's options, as Locust options, and their validation into one settings object.

Registered on Locust's parser so they work alike on the command line, in ``locust.conf``,
as ``LOCUST_*`` environment variables and in the web UI form. ``Settings.from_options``
checks everything a user can get wrong and raises ``ConfigError`` with one clear line.
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
from seldon_load.load.arrivals import POISSON, UNIFORM
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


class _WithEnv:
    """Gives every option its ``LOCUST_<NAME>`` environment variable, as Locust's own have."""

    def __init__(self, parser) -> None:
        self.parser = parser

    def add_argument(self, flag: str, **kw):
        kw.setdefault("env_var", "LOCUST_" + flag.lstrip("-").replace("-", "_").upper())
        return self.parser.add_argument(flag, **kw)


def add_arguments(parser) -> None:
    """Register seldon-load's options on Locust's (configargparse) parser."""
    g = _WithEnv(parser)
    g.add_argument("--model", default="", include_in_web_ui=True, help="Model name, e.g. --model synth-5ms")
    g.add_argument("--pipeline", default="", include_in_web_ui=True,
                   help="Seldon Core 2 pipeline name (sends seldon-model: NAME.pipeline)")
    g.add_argument("--protocol", default="", choices=["", "rest", "grpc"], include_in_web_ui=True,
                   help="rest or grpc (default: from --host: http(s):// is REST, grpc(s):// or host:port is gRPC)")
    g.add_argument("--payload", default="", include_in_web_ui=True,
                   help="OIP JSON request file (default: synthesised from the model's metadata)")
    g.add_argument("--batch-size", type=int, default=1, include_in_web_ui=True,
                   help="Fills -1 (batch) dimensions when synthesising a payload, e.g. --batch-size 8")
    g.add_argument("--payload-variants", type=int, default=0, include_in_web_ui=False,
                   help="Distinct random payloads to rotate through, avoiding cache effects "
                        "(default: 8 synthesised; a --payload file is sent as-is unless this is given)")
    g.add_argument("--binary", action="store_true", default=False, include_in_web_ui=False,
                   help="REST: use the binary tensor data extension")
    g.add_argument("--grpc-typed", action="store_true", default=False, include_in_web_ui=False,
                   help="gRPC: send typed contents instead of raw_input_contents")
    g.add_argument("--header", action="append", default=[], include_in_web_ui=False,
                   help="Extra request header, repeatable: --header 'Authorization: Bearer X'. Never logged")
    g.add_argument("--request-timeout", type=float, default=30.0, include_in_web_ui=False,
                   help="Per-request timeout in seconds: bounds the whole exchange (head and body)")
    g.add_argument("--max-response-bytes", type=int, default=64 * 2**20, include_in_web_ui=False,
                   help="Largest answer accepted (body, or gRPC message); larger ones are invalid_response")
    g.add_argument("--pipeline-path", action="store_true", default=False, include_in_web_ui=False,
                   help="REST: call /v2/pipelines/NAME/infer instead of /v2/models/NAME/infer")
    g.add_argument("--ca-file", default="", include_in_web_ui=False, help="TLS: CA bundle for the target")
    g.add_argument("--cert-file", default="", include_in_web_ui=False, help="TLS: client certificate")
    g.add_argument("--key-file", default="", include_in_web_ui=False, help="TLS: client key")

    g = _WithEnv(parser)
    g.add_argument("--stages", default="", include_in_web_ui=True,
                   help="Open-loop RPS stages RPS:RAMP:HOLD,... e.g. 50:10s:30s,100:10s:30s")
    g.add_argument("--auto", action="store_true", default=False, include_in_web_ui=True,
                   help="Find the saturation point automatically (doubling, then narrowing from measured throughput)")
    g.add_argument("--max-rps", type=float, default=2000.0, include_in_web_ui=True,
                   help="Ceiling for --auto; never exceeded")
    g.add_argument("--auto-start-rps", type=float, default=10.0, include_in_web_ui=False,
                   help="First rate of --auto")
    g.add_argument("--auto-precision", type=float, default=0.05, include_in_web_ui=False,
                   help="--auto stops when the bracket is within this fraction (0.05 = 5%%)")
    g.add_argument("--auto-hold", default="15s", include_in_web_ui=False, help="--auto hold per rising stage")
    g.add_argument("--auto-narrow-hold", default="10s", include_in_web_ui=False,
                   help="--auto hold per narrowing stage")
    g.add_argument("--auto-budget", default="10m", include_in_web_ui=False, help="--auto time budget")
    g.add_argument("--sweep", default="", include_in_web_ui=False,
                   help="Closed-loop concurrency sweep USERS:HOLD,... e.g. 1:20s,4:20s,16:20s")
    g.add_argument("--arrival", default=UNIFORM, choices=[UNIFORM, POISSON], include_in_web_ui=False,
                   help="Arrival process of open-loop load")
    g.add_argument("--max-in-flight", type=int, default=1000, include_in_web_ui=False,
                   help="Per worker process: arrivals beyond this many outstanding requests are dropped")
    g.add_argument("--settle", default="2s", include_in_web_ui=False,
                   help="Start of each hold excluded from the stage's numbers")
    g.add_argument("--drain-timeout", default="10s", include_in_web_ui=False,
                   help="How long to wait for answers after the last arrival")
    g.add_argument("--no-locust-stats", action="store_true", default=False, include_in_web_ui=False,
                   help="Do not feed Locust's own request statistics (saves CPU per request)")

    g = _WithEnv(parser)
    g.add_argument("--results", default="results/latest", include_in_web_ui=False,
                   help="Directory for results.json, stages.csv and report.html")
    g.add_argument("--slo-p99", type=float, default=None, include_in_web_ui=True,
                   help="p99 latency SLO in ms: a stage above it is not sustained; also a threshold")
    g.add_argument("--max-failure-ratio", type=float, default=None, include_in_web_ui=False,
                   help="Threshold: fail (exit 1) if more than this fraction of requests failed")
    g.add_argument("--min-saturation-rps", type=float, default=None, include_in_web_ui=False,
                   help="Threshold: fail (exit 1) if the saturation point is below this rate")
    g.add_argument("--min-achieved-ratio", type=float, default=0.95, include_in_web_ui=False,
                   help="Criterion: achieved/target rate a sustained stage needs")
    g.add_argument("--max-error-ratio", type=float, default=0.01, include_in_web_ui=False,
                   help="Criterion: failed+dropped fraction a sustained stage may have")
    g.add_argument("--max-latency-trend", type=float, default=1.5, include_in_web_ui=False,
                   help="Criterion: median latency may grow at most this factor through a hold")
    g.add_argument("--max-send-lag-ms", type=float, default=10.0, include_in_web_ui=False,
                   help="Generator health: p99 send lag above this flags the generator, not the server")
    g.add_argument("--recommended-fraction", type=float, default=0.8, include_in_web_ui=False,
                   help="Recommended operating rate as a fraction of the saturation point")

    g = _WithEnv(parser)
    g.add_argument("--pipeline-spec", default="", include_in_web_ui=False,
                   help="Seldon Pipeline YAML (steps, critical path)")
    g.add_argument("--step-payload", action="append", default=[], include_in_web_ui=False,
                   help="With --isolate-steps: MODEL=FILE, the OIP JSON request to test step model MODEL with "
                        "instead of what it receives in the pipeline, repeatable")
    g.add_argument("--metrics-url", action="append", default=[], include_in_web_ui=False,
                   help="Prometheus endpoint scraped at stage boundaries, repeatable")
    g.add_argument("--prometheus-url", default="", include_in_web_ui=False,
                   help="Prometheus server (query API) instead of scraping endpoints")
    g.add_argument("--resource-selector", default="", include_in_web_ui=False,
                   help="With --prometheus-url: PromQL label matchers of the server's CPU/memory series, e.g. "
                        "'namespace=\"seldon-mesh\",pod=~\"mlserver-.*\"' (per stage: cores, CPU-ms per request)")
    g.add_argument("--resource-source", default="auto", choices=["auto", "cadvisor", "process", "node"],
                   include_in_web_ui=False,
                   help="Whose series --resource-selector picks: cAdvisor, process-exporter, node-exporter "
                        "(default auto: the first with matching series)")
    g.add_argument("--core-hour-cost", type=float, default=None, include_in_web_ui=False,
                   help="Price of one CPU core for an hour: adds the cost per million inferences")
    g.add_argument("--gpu-hour-cost", type=float, default=None, include_in_web_ui=False,
                   help="Price of one GPU for an hour (GPUs counted from DCGM series): adds to that cost")
    g.add_argument("--web-allowed-host", action="append", default=[], include_in_web_ui=False,
                   help="Web UI: a Host name (NAME or NAME:PORT) it also answers to, besides its own "
                        "address; repeatable (a proxy or DNS name in front of it)")


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
