"""Server-side per-model (per-step) latency from Prometheus counters.

Two exporters are understood, whatever prefix a Go registry namespace adds:

- MLServer 1.7.1 (``mlserver/handlers/dataplane.py``): a *Summary*
  ``model_infer_request_duration`` (samples ``_count`` / ``_sum`` in seconds) labelled
  ``model`` and ``version``, timed around every infer call, failures included. A histogram
  of that name, or the label ``model_name``, are read the same way.
- Seldon Core 2 agent and pipeline gateway: counters ``seldon_model_infer_total`` /
  ``seldon_model_infer_seconds_total`` (label ``model``) and ``seldon_pipeline_infer_total``
  / ``seldon_pipeline_infer_seconds_total`` (label ``pipeline``).

Samples are matched by sample name, so prometheus_client's parser dropping ``_total`` from
counter *family* names does not matter. A snapshot keeps every series (endpoint + labels)
apart, so ``delta`` detects a counter reset per series (one replica restarting) before
summing across replicas and endpoints. When both exporters report a model, Core 2's counters
win and MLServer's series for ``name`` or its versioned internal name ``name_<n>`` are left
out, so one inference is not counted twice.
"""

from __future__ import annotations

import base64
import http.client
import json
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from prometheus_client.parser import text_string_to_metric_families

from seldon_load.errors import ConfigError, TargetError

Kind = Literal["model", "pipeline"]
_MAX_BODY_BYTES = 64 * 1024 * 1024
# sample name -> (source, kind, field)
_SAMPLES: dict[str, tuple[str, Kind, str]] = {
    "seldon_model_infer_total": ("seldon", "model", "count"),
    "seldon_model_infer_seconds_total": ("seldon", "model", "sum"),
    "seldon_pipeline_infer_total": ("seldon", "pipeline", "count"),
    "seldon_pipeline_infer_seconds_total": ("seldon", "pipeline", "sum"),
    "model_infer_request_duration_count": ("mlserver", "model", "count"),
    "model_infer_request_duration_sum": ("mlserver", "model", "sum"),
}
_NAME_LABELS: dict[Kind, tuple[str, ...]] = {"model": ("model", "model_name"), "pipeline": ("pipeline",)}
_PROMQL_NAMES = "(.+_)?(" + "|".join(_SAMPLES) + ")"
_VERSIONED = re.compile(r"^(?P<name>.+)_\d+$")


@dataclass(frozen=True)
class SeriesKey:
    """One counter pair: which exporter, model or pipeline, its name, and the series identity."""

    source: str  # "mlserver" | "seldon"
    kind: Kind
    name: str
    series: str  # endpoint + the other labels (replica, code, ...)


@dataclass(frozen=True)
class InferCounter:
    """Cumulative infer calls and their total latency in seconds."""

    count: float = 0.0
    sum_s: float = 0.0

    def __add__(self, other: InferCounter) -> InferCounter:
        return InferCounter(self.count + other.count, self.sum_s + other.sum_s)


@dataclass
class Snapshot:
    """Counter values at one moment, per series; ``+`` merges endpoints."""

    series: dict[SeriesKey, InferCounter] = field(default_factory=dict)
    taken_at_s: float = 0.0

    def __add__(self, other: Snapshot) -> Snapshot:
        merged = dict(self.series)
        for key, value in other.series.items():
            merged[key] = merged.get(key, InferCounter()) + value
        return Snapshot(merged, max(self.taken_at_s, other.taken_at_s))

    def totals(self, kind: Kind = "model") -> dict[str, InferCounter]:
        """Cumulative counters per model (or pipeline), summed over series."""
        return _combine(self.series, kind)

    @property
    def models(self) -> dict[str, InferCounter]:
        return self.totals("model")

    @property
    def pipelines(self) -> dict[str, InferCounter]:
        return self.totals("pipeline")


@dataclass(frozen=True)
class StepStats:
    """Server-side calls in a window and their mean latency (None without calls)."""

    calls: int
    mean_latency_ms: float | None


def check_url(url: str) -> str:
    """Validate an http(s) URL (ConfigError otherwise); returns it without surrounding spaces."""
    if not isinstance(url, str) or not url.strip():
        raise ConfigError(f"metrics URL must be an http:// or https:// URL, not {url!r}")
    url = url.strip()
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise ConfigError(f"bad metrics URL {display_url(url)!r}: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"metrics URL must be an http:// or https:// URL with a host, not {display_url(url)!r}")
    return url


def display_url(url: str) -> str:
    """The URL without credentials or query, safe for messages and results."""
    try:
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<unparsable URL>"
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}{port}{parts.path}" if parts.scheme else "<unparsable URL>"


def parse_exposition(text: str, endpoint: str = "", taken_at_s: float | None = None) -> Snapshot:
    """Parse Prometheus text exposition into a Snapshot; TargetError if it is not that format."""
    samples = []
    try:
        for family in text_string_to_metric_families(text):
            samples.extend((s.name, s.labels, s.value) for s in family.samples)
    except Exception as exc:  # the parser raises ValueError, IndexError, KeyError, ...
        where = f" from {endpoint}" if endpoint else ""
        raise TargetError(f"metrics{where} are not Prometheus text format: {_one_line(exc)}") from None
    return _snapshot(samples, endpoint, time.time() if taken_at_s is None else taken_at_s)


def scrape(url: str, timeout_s: float = 5.0, headers: dict[str, str] | None = None) -> Snapshot:
    """Fetch and parse one Prometheus text endpoint (e.g. MLServer's :8082/metrics)."""
    url = check_url(url)
    body = _fetch(url, timeout_s, headers, accept="text/plain;version=0.0.4;q=1,*/*;q=0.1")
    return parse_exposition(body, endpoint=display_url(url))


def scrape_all(urls: Iterable[str], timeout_s: float = 5.0, headers: dict[str, str] | None = None) -> Snapshot:
    """Scrape several endpoints (e.g. one per server replica) into one Snapshot."""
    total = Snapshot()
    for url in urls:
        total = total + scrape(url, timeout_s, headers)
    return total


def query_prometheus(
    base_url: str,
    at_time: float | datetime | None = None,
    timeout_s: float = 5.0,
    headers: dict[str, str] | None = None,
    match: str = "",
) -> Snapshot:
    """The same counters from a Prometheus server's HTTP API, as of ``at_time`` (unix s).

    ``match`` adds label matchers, e.g. ``namespace="seldon-mesh"``. Series keep their labels
    (instance, pod, ...) so counter resets are still found per series.
    """
    base_url = check_url(base_url).rstrip("/")
    at_s = time.time() if at_time is None else (at_time.timestamp() if isinstance(at_time, datetime) else float(at_time))
    selector = f'__name__=~"{_PROMQL_NAMES}"' + (f", {match.strip()}" if match.strip() else "")
    query = urllib.parse.urlencode({"query": "{" + selector + "}", "time": f"{at_s:.3f}"})
    url = base_url + "/api/v1/query?" + query
    where = display_url(base_url)
    body = _fetch(url, timeout_s, headers, accept="application/json", allow_error_json=True)
    try:
        answer = json.loads(body)
        if answer.get("status") != "success":
            raise TargetError(f"Prometheus at {where} refused the query: {_one_line(answer.get('error', answer))}")
        data = answer["data"]
        if data.get("resultType") != "vector":
            raise TargetError(f"Prometheus at {where} answered a {data.get('resultType')!r}, not a vector")
        samples = []
        for item in data["result"]:
            labels = dict(item["metric"])
            name = labels.pop("__name__")
            samples.append((name, labels, float(item["value"][1])))
    except (ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:
        raise TargetError(f"Prometheus at {where} gave an unexpected answer: {_one_line(exc)}") from None
    return _snapshot(samples, where, at_s)


def delta(before: Snapshot, after: Snapshot, kind: Kind = "model") -> dict[str, StepStats]:
    """Calls and mean latency per model (or pipeline) between two snapshots.

    Per series: a counter that went down was reset (restart), so its ``after`` value is what
    happened since; a series new in ``after`` counts in full.
    """
    window: dict[SeriesKey, InferCounter] = {}
    for key, now in after.series.items():
        if key.kind != kind:
            continue
        then = before.series.get(key)
        if then is None or now.count < then.count or now.sum_s < then.sum_s:
            window[key] = now
        else:
            window[key] = InferCounter(now.count - then.count, now.sum_s - then.sum_s)
    stats = {}
    for name, counter in _combine(window, kind).items():
        calls = int(round(counter.count))
        mean = counter.sum_s / counter.count * 1000.0 if counter.count > 0 else None
        stats[name] = StepStats(calls=calls, mean_latency_ms=mean)
    return stats


def _snapshot(samples: Iterable[tuple[str, dict[str, str], float]], endpoint: str, taken_at_s: float) -> Snapshot:
    counts: dict[SeriesKey, float] = {}
    sums: dict[SeriesKey, float] = {}
    for sample_name, labels, value in samples:
        known = _classify(sample_name)
        if known is None:
            continue
        source, kind, what = known
        label = next((lab for lab in _NAME_LABELS[kind] if labels.get(lab)), None)
        if label is None:
            continue
        rest = ",".join(f"{k}={v}" for k, v in sorted(labels.items()) if k != label)
        key = SeriesKey(source, kind, labels[label], f"{endpoint}|{rest}")
        target = counts if what == "count" else sums
        target[key] = target.get(key, 0.0) + float(value)
    series = {k: InferCounter(counts.get(k, 0.0), sums.get(k, 0.0)) for k in {**counts, **sums}}
    return Snapshot(series, taken_at_s)


def _classify(sample_name: str) -> tuple[str, Kind, str] | None:
    for name, known in _SAMPLES.items():
        if sample_name == name or sample_name.endswith("_" + name):
            return known
    return None


def _combine(series: dict[SeriesKey, InferCounter], kind: Kind) -> dict[str, InferCounter]:
    """Sum series per name; Core 2's counters win over MLServer's for the same model."""
    by_source: dict[str, dict[str, InferCounter]] = {"seldon": {}, "mlserver": {}}
    for key, value in series.items():
        if key.kind == kind:
            names = by_source.setdefault(key.source, {})
            names[key.name] = names.get(key.name, InferCounter()) + value
    result = dict(by_source["seldon"])
    for name, value in by_source["mlserver"].items():
        versioned = _VERSIONED.match(name)
        if name in result or (versioned and versioned.group("name") in by_source["seldon"]):
            continue
        result[name] = value
    return result


def _fetch(
    url: str, timeout_s: float, headers: dict[str, str] | None, accept: str, allow_error_json: bool = False
) -> str:
    """GET a URL with urllib; every failure becomes a TargetError naming the endpoint."""
    where = display_url(url.split("?", 1)[0])
    parts = urllib.parse.urlsplit(url)
    request_headers = {"Accept": accept, **(headers or {})}
    if parts.username is not None:
        credentials = f"{urllib.parse.unquote(parts.username)}:{urllib.parse.unquote(parts.password or '')}"
        request_headers.setdefault("Authorization", "Basic " + base64.b64encode(credentials.encode()).decode())
        netloc = parts.hostname if ":" not in (parts.hostname or "") else f"[{parts.hostname}]"
        netloc += f":{parts.port}" if parts.port else ""
        url = urllib.parse.urlunsplit(parts._replace(netloc=netloc))
    request = urllib.request.Request(url, headers=request_headers, method="GET")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            raw = response.read(_MAX_BODY_BYTES + 1)
            charset = response.headers.get_content_charset() or "utf-8"
    except urllib.error.HTTPError as exc:
        if allow_error_json and exc.code in (400, 422, 503):
            raw, charset = exc.read(_MAX_BODY_BYTES + 1), "utf-8"
        else:
            raise TargetError(f"metrics endpoint {where} answered HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        raise TargetError(f"metrics endpoint {where} unreachable: {_one_line(exc.reason)}") from None
    except (OSError, http.client.HTTPException, ValueError) as exc:
        raise TargetError(f"metrics endpoint {where} unreachable: {_one_line(exc) or type(exc).__name__}") from None
    if len(raw) > _MAX_BODY_BYTES:
        raise TargetError(f"metrics endpoint {where} sent more than {_MAX_BODY_BYTES} bytes")
    try:
        return raw.decode(charset, errors="strict")
    except (UnicodeDecodeError, LookupError):
        raise TargetError(f"metrics endpoint {where} sent a body that is not {charset} text") from None


def _one_line(value: object) -> str:
    return " ".join(str(value).split())
