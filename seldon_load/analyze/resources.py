"""What the server spent per stage: CPU, memory (and GPU), read from a Prometheus server.

Each stage's measured window is read once the test is over, by instant queries evaluated at
the window's end over the window's length, so Prometheus's own ``increase()`` (counters,
resets included) and ``*_over_time`` subqueries (gauges) do the arithmetic. Which exporter
provides the series is found once (``--resource-source auto``): cAdvisor (Kubernetes),
process-exporter or node-exporter (VM, bare metal, the testbed); the DCGM exporter's GPU
series are read beside them when the selector matches some. A window shorter than three
scrape intervals, or with series missing for part of it, gets a note instead of a number.

Failures (Prometheus unreachable, a refused query, no matching series) never stop a run:
every stage's ``server`` then carries ``note`` saying why its numbers are empty.
"""

from __future__ import annotations

import json
import re
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass

from seldon_load.analyze.metrics import _fetch, check_url, display_url
from seldon_load.errors import ConfigError, TargetError


@dataclass(frozen=True)
class Source:
    """One exporter's series: CPU seconds counter, memory gauge, and the per-instance label."""

    name: str
    cpu: str
    cpu_matchers: str
    memory: str  # PromQL over the selector, with {SEL} for the selector
    per: str


SOURCES: dict[str, Source] = {
    "cadvisor": Source("cadvisor", "container_cpu_usage_seconds_total", 'container!="",container!="POD"',
                       'sum(container_memory_working_set_bytes{SEL,container!="",container!="POD"})', "pod"),
    "process": Source("process-exporter", "namedprocess_namegroup_cpu_seconds_total", "",
                      'sum(namedprocess_namegroup_memory_bytes{SEL,memtype="resident"})', "groupname"),
    "node": Source("node-exporter", "node_cpu_seconds_total", 'mode!="idle"',
                   "sum(node_memory_MemTotal_bytes{SEL}) - sum(node_memory_MemAvailable_bytes{SEL})", "instance"),
}
GPU_UTIL, GPU_MEM_MIB = "DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_FB_USED"
MIN_SAMPLES_PER_WINDOW = 3  # a window must hold this many scrape intervals
MIN_PRESENT_FRACTION = 0.6  # of the samples expected in a window, else "missing for part of it"

_MATCHER = re.compile(r'\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\\n]|\\.)*)"\s*')
EMPTY = {"source": None, "series": 0, "cpu_cores": None, "cpu_seconds": None, "cpu_ms_per_request": None,
         "cpu_ms_per_inference": None, "requests_per_core": None, "memory_bytes_max": None,
         "memory_bytes_mean": None, "gpu_util_percent": None, "gpu_memory_bytes_max": None, "gpus": None,
         "cost_per_million_inferences": None, "per_pod": {}, "scrape_interval_s": None, "note": None}


def parse_selector(text: str) -> str:
    """Check a PromQL label selector (``a="x",b=~"y.*"``, braces optional); ConfigError if invalid."""
    body = (text or "").strip()
    if body.startswith("{") and body.endswith("}"):
        body = body[1:-1].strip()
    if not body:
        raise ConfigError("--resource-selector is empty: give label matchers, e.g. 'namespace=\"seldon-mesh\","
                          "pod=~\"mlserver-.*\"'")
    pos, out = 0, []
    while pos < len(body):
        m = _MATCHER.match(body, pos)
        if m is None:
            raise ConfigError(f"invalid --resource-selector {text!r} at character {pos + 1}: expected "
                              "label=\"value\" (or !=, =~, !~), separated by commas")
        name, op, value = m.groups()
        if "~" in op:
            try:
                re.compile(value.encode().decode("unicode_escape"))
            except (re.error, UnicodeDecodeError) as exc:
                raise ConfigError(f"invalid --resource-selector {text!r}: bad regular expression "
                                  f"{value!r} for {name}: {exc}") from None
        out.append(f'{name}{op}"{value}"')
        pos = m.end()
        if pos < len(body):
            if body[pos] != ",":
                raise ConfigError(f"invalid --resource-selector {text!r} at character {pos + 1}: expected a comma")
            pos += 1
    return ",".join(out)


def queries(source: Source, sel: str, window_s: float, step_s: float, gpu: bool) -> dict[str, str]:
    """The PromQL of one window, evaluated at its end (documented in docs/guides/seldon-core-2.md)."""
    w = f"{max(1, round(window_s * 1000))}ms"
    step = f"{max(1, round(step_s * 1000))}ms"
    cpu_sel = ",".join(x for x in (sel, source.cpu_matchers) if x)
    mem = source.memory.replace("SEL", sel)
    q = {
        "cpu_seconds": f"sum by ({source.per}) (increase({source.cpu}{{{cpu_sel}}}[{w}]))",
        "samples": f"count_over_time({source.cpu}{{{cpu_sel}}}[{w}])",
        "memory_max": f"max_over_time(({mem})[{w}:{step}])",
        "memory_mean": f"avg_over_time(({mem})[{w}:{step}])",
    }
    if gpu:
        q["gpu_util"] = f"avg_over_time({GPU_UTIL}{{{sel}}}[{w}])"
        q["gpu_memory_max"] = f"max_over_time((sum({GPU_MEM_MIB}{{{sel}}}))[{w}:{step}])"
    return q


class Prometheus:
    """Instant queries against one Prometheus server's HTTP API; counts what it asked."""

    def __init__(self, url: str, timeout_s: float = 5.0, headers: dict[str, str] | None = None) -> None:
        self.url = check_url(url).rstrip("/")
        self.where = display_url(self.url)
        self.timeout_s, self.headers = timeout_s, headers
        self.queries = 0
        self.query_s = 0.0  # time spent waiting for answers

    def get(self, path: str, params: dict[str, str]) -> dict:
        self.queries += 1
        url = f"{self.url}{path}?{urllib.parse.urlencode(params)}"
        started = time.perf_counter()
        try:
            body = _fetch(url, self.timeout_s, self.headers, accept="application/json", allow_error_json=True)
        finally:
            self.query_s += time.perf_counter() - started
        try:
            answer = json.loads(body)
        except ValueError:
            raise TargetError(f"Prometheus at {self.where} did not answer JSON") from None
        if not isinstance(answer, dict) or answer.get("status") != "success":
            err = answer.get("error", answer) if isinstance(answer, dict) else answer
            raise TargetError(f"Prometheus at {self.where} refused the query: {' '.join(str(err).split())}")
        return answer.get("data") or {}

    def vector(self, query: str, at_s: float) -> list[tuple[dict[str, str], float]]:
        data = self.get("/api/v1/query", {"query": query, "time": f"{at_s:.3f}"})
        try:
            if data.get("resultType") == "scalar":
                return [({}, float(data["result"][1]))]
            return [(dict(r["metric"]), float(r["value"][1])) for r in data["result"]]
        except (KeyError, TypeError, ValueError, IndexError):
            raise TargetError(f"Prometheus at {self.where} gave an unexpected answer to {query!r}") from None

    def scrape_interval_s(self, jobs: set[tuple[str, str]]) -> float | None:
        """The longest scrape interval of the targets (job, instance) the series come from."""
        try:
            targets = self.get("/api/v1/targets", {"state": "active"}).get("activeTargets", [])
        except TargetError:
            return None
        found = [_duration_s(t.get("scrapeInterval", "")) for t in targets
                 if (t.get("labels", {}).get("job", ""), t.get("labels", {}).get("instance", "")) in jobs]
        found = [f for f in found if f]
        return max(found) if found else None


def detect(prom: Prometheus, sel: str, wanted: str, at_s: float) -> tuple[Source, bool, set[tuple[str, str]]]:
    """Which source has series for the selector (and whether DCGM's do); TargetError if none."""
    candidates = list(SOURCES.values()) if wanted == "auto" else [SOURCES[wanted]]
    names = "|".join([s.cpu for s in candidates] + [GPU_UTIL])
    rows = prom.vector(f'count by (__name__, job, instance) ({{__name__=~"{names}",{sel}}})', at_s)
    present = {r["__name__"] for r, _ in rows}
    for source in candidates:
        if source.cpu in present:
            jobs = {(r.get("job", ""), r.get("instance", "")) for r, _ in rows if r["__name__"] == source.cpu}
            return source, GPU_UTIL in present, jobs
    tried = ", ".join(s.cpu for s in candidates)
    raise TargetError(f"no series match the selector {{{sel}}} at Prometheus {prom.where} ({tried})")


def read_windows(prom: Prometheus, sel: str, windows: list[tuple[int, float, float]], wanted: str = "auto",
                 sleep: Callable[[float], None] = time.sleep, now: Callable[[], float] = time.time) -> dict[int, dict]:
    """Per stage index: what the server spent in its window (``windows``: index, start, end in unix s)."""
    out = {i: dict(EMPTY) for i, _, _ in windows}
    if not windows:
        return out
    last_end = max(e for _, _, e in windows)
    try:
        source, gpu, jobs = detect(prom, sel, wanted, min(now(), last_end))
        interval = prom.scrape_interval_s(jobs)
        # the scrape after the last window's end must be in before that window is read
        wait = last_end + (interval or 1.0) * 1.5 + 0.25 - now()
        if wait > 0:
            sleep(min(wait, 60.0))
    except TargetError as exc:
        for row in out.values():
            row["note"] = str(exc)
        return out
    gone: str | None = None  # once Prometheus stops answering, the other windows are not tried
    for index, start, end in windows:
        row = out[index]
        row.update(source=source.name, scrape_interval_s=interval)
        if gone is not None:
            row["note"] = gone
            continue
        try:
            _read_window(prom, row, source, sel, end - start, end, interval, gpu)
        except TargetError as exc:
            row["note"] = str(exc)
            if "unreachable" in row["note"]:
                gone = row["note"]
    return out


def _read_window(prom: Prometheus, row: dict, source: Source, sel: str, window_s: float, end_s: float,
                 interval: float | None, gpu: bool) -> None:
    if window_s <= 0:
        row["note"] = "the stage has no measured window"
        return
    if interval is not None and window_s < MIN_SAMPLES_PER_WINDOW * interval:
        row["note"] = (f"scrape interval {interval:g} s is too long for this {window_s:.1f} s window (it needs "
                       f"{MIN_SAMPLES_PER_WINDOW} scrapes): hold longer or scrape more often")
        return
    q = queries(source, sel, window_s, interval or 1.0, gpu)
    samples = prom.vector(q["samples"], end_s)
    row["series"] = len(samples)
    if not samples:
        row["note"] = f"no {source.cpu} series match {{{sel}}} in this window"
        return
    fewest = min(v for _, v in samples)
    expected = window_s / interval if interval else None
    if expected and fewest < MIN_PRESENT_FRACTION * expected:
        row["note"] = (f"{source.cpu} series missing for part of this window ({fewest:.0f} of about "
                       f"{expected:.0f} samples)")
        return
    by = prom.vector(q["cpu_seconds"], end_s)
    cpu_s = sum(v for _, v in by)
    row["cpu_seconds"] = round(cpu_s, 4)
    row["cpu_cores"] = round(cpu_s / window_s, 4)
    row["per_pod"] = {r.get(source.per, "") or "-": round(v / window_s, 4) for r, v in by}
    mem_max, mem_mean = prom.vector(q["memory_max"], end_s), prom.vector(q["memory_mean"], end_s)
    row["memory_bytes_max"] = int(mem_max[0][1]) if mem_max else None
    row["memory_bytes_mean"] = int(mem_mean[0][1]) if mem_mean else None
    if gpu:
        util = prom.vector(q["gpu_util"], end_s)
        fb = prom.vector(q["gpu_memory_max"], end_s)
        row["gpus"] = len(util) or None
        row["gpu_util_percent"] = round(sum(v for _, v in util) / len(util), 2) if util else None
        row["gpu_memory_bytes_max"] = int(fb[0][1] * 2**20) if fb else None


def derive(server: dict, stage: dict, batch_size: int, core_hour_cost: float | None,
           gpu_hour_cost: float | None) -> dict:
    """Per-request figures of one stage from its CPU and its measured requests."""
    out = dict(server)
    cores, cpu_s = out.get("cpu_cores"), out.get("cpu_seconds")
    requests, rps = stage.get("requests") or 0, stage.get("achieved_rps") or 0.0
    if cpu_s is not None and requests:
        out["cpu_ms_per_request"] = round(cpu_s * 1000.0 / requests, 4)
        out["cpu_ms_per_inference"] = round(cpu_s * 1000.0 / (requests * batch_size), 4)
    if cores and rps:
        out["requests_per_core"] = round(rps / cores, 3)
    out["cost_per_million_inferences"] = cost_per_million(cores, out.get("gpus"), rps * batch_size,
                                                          core_hour_cost, gpu_hour_cost)
    return out


def cost_per_million(cores: float | None, gpus: int | None, inferences_per_s: float,
                     core_hour_cost: float | None, gpu_hour_cost: float | None) -> float | None:
    """(cores x core-hour price + GPUs x GPU-hour price) per hour, over a million inferences."""
    if not inferences_per_s or (core_hour_cost is None and gpu_hour_cost is None):
        return None
    per_hour = 0.0
    if core_hour_cost is not None:
        if cores is None:
            return None
        per_hour += cores * core_hour_cost
    if gpu_hour_cost is not None and gpus:
        per_hour += gpus * gpu_hour_cost
    return round(per_hour / (inferences_per_s * 3600.0) * 1e6, 6)


def summary(rows: list[dict], sat: dict, batch_size: int, core_hour_cost: float | None,
            gpu_hour_cost: float | None) -> dict:
    """Cores and cost at the saturation point and (scaled linearly) at the recommended rate."""
    out: dict = {"at_saturation": None, "at_recommended": None}
    best = sat.get("max_sustainable_rps")
    at = [r for r in rows if r.get("sustained") and r.get("target_rps") == best and (r.get("server") or {}).get("cpu_cores")]
    if best is None or not at:
        return out
    row = at[-1]
    srv = row["server"]
    out["at_saturation"] = {"stage": row["index"], "rps": best, "cpu_cores": srv["cpu_cores"],
                            "cpu_ms_per_request": srv.get("cpu_ms_per_request"),
                            "memory_bytes_max": srv.get("memory_bytes_max"),
                            "cost_per_million_inferences": srv.get("cost_per_million_inferences")}
    rec, per_req = sat.get("recommended_rps"), srv.get("cpu_ms_per_request")
    if rec and per_req:
        cores = round(rec * per_req / 1000.0, 4)
        out["at_recommended"] = {
            "rps": rec, "cpu_cores": cores, "headroom_cores": round(srv["cpu_cores"] - cores, 4),
            "cost_per_million_inferences": cost_per_million(cores, srv.get("gpus"), rec * batch_size,
                                                            core_hour_cost, gpu_hour_cost),
            "estimate": "CPU per request of the saturation stage times the recommended rate"}
    return out


def attach(results: dict, servers: dict[int, dict] | None, batch_size: int, core_hour_cost: float | None,
           gpu_hour_cost: float | None, meta: dict | None = None) -> dict:
    """``stages[i].server`` (null without --resource-selector) and the ``resources`` summary."""
    for row in results.get("stages", []):
        if servers is None:
            row["server"] = None
            continue
        srv = servers.get(row["index"]) or {**EMPTY, "note": "the stage has no measured window"}
        row["server"] = derive(srv, row, batch_size, core_hour_cost, gpu_hour_cost)
    if servers is not None:
        results["resources"] = {**(meta or {}), "core_hour_cost": core_hour_cost, "gpu_hour_cost": gpu_hour_cost,
                                **summary(results.get("stages", []), results.get("saturation") or {}, batch_size,
                                          core_hour_cost, gpu_hour_cost)}
    return results


def _duration_s(text: str) -> float | None:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h)", str(text).strip())
    if not m:
        return None
    return float(m.group(1)) * {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}[m.group(2)]
