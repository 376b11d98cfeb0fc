"""Server-side per-model latency from MLServer and Seldon Core 2 Prometheus counters."""

from __future__ import annotations

import pathlib
import socket
import subprocess
import sys
import textwrap
import threading
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from prometheus_client import CollectorRegistry, Counter, Summary, generate_latest

from seldon_load.analyze.metrics import (
    InferCounter,
    Snapshot,
    StepStats,
    check_url,
    delta,
    parse_exposition,
    query_prometheus,
    scrape,
    scrape_all,
)
from seldon_load.errors import ConfigError, TargetError


def mlserver_text(observations: dict[str, list[float]], failures: dict[str, int] | None = None) -> str:
    """Exposition text from the same metric definitions as MLServer 1.7.1's DataPlane."""
    registry = CollectorRegistry()
    duration = Summary("model_infer_request_duration", "Model infer request duration", ["model", "version"],
                       registry=registry)
    success = Counter("model_infer_request_success", "Model infer request success count", ["model", "version"],
                      registry=registry)
    failure = Counter("model_infer_request_failure", "Model infer request failure count", ["model", "version"],
                      registry=registry)
    for model, values in observations.items():
        for value in values:
            duration.labels(model=model, version=None).observe(value)
            success.labels(model=model, version=None).inc()
    for model, count in (failures or {}).items():
        failure.labels(model=model, version=None).inc(count)
    return generate_latest(registry).decode()


CORE2_AGENT = """\
# HELP seldon_model_infer_total A count of server inference calls
# TYPE seldon_model_infer_total counter
seldon_model_infer_total{code="200",method_type="rest",model="iris",model_internal="iris_1",server="mlserver",server_replica="0"} 10
seldon_model_infer_total{code="200",method_type="rest",model="iris",model_internal="iris_1",server="mlserver",server_replica="1"} 30
seldon_model_infer_total{code="OK",method_type="grpc",model="tfsimple1",model_internal="tfsimple1_1",server="triton",server_replica="0"} 4
# HELP seldon_model_infer_seconds_total A sum of server inference call latencies
# TYPE seldon_model_infer_seconds_total counter
seldon_model_infer_seconds_total{code="200",method_type="rest",model="iris",model_internal="iris_1",server="mlserver",server_replica="0"} 0.05
seldon_model_infer_seconds_total{code="200",method_type="rest",model="iris",model_internal="iris_1",server="mlserver",server_replica="1"} 0.15
seldon_model_infer_seconds_total{code="OK",method_type="grpc",model="tfsimple1",model_internal="tfsimple1_1",server="triton",server_replica="0"} 0.008
# HELP seldon_model_aggregate_infer_total A count of server inference calls (aggregate)
# TYPE seldon_model_aggregate_infer_total counter
seldon_model_aggregate_infer_total{method_type="rest",server="mlserver",server_replica="0"} 10
# HELP seldon_model_infer_api_seconds A histogram of latencies for inference server
# TYPE seldon_model_infer_api_seconds histogram
seldon_model_infer_api_seconds_bucket{code="200",method="rest",server="mlserver",server_replica="0",le="0.005"} 10
seldon_model_infer_api_seconds_bucket{code="200",method="rest",server="mlserver",server_replica="0",le="+Inf"} 10
seldon_model_infer_api_seconds_sum{code="200",method="rest",server="mlserver",server_replica="0"} 0.05
seldon_model_infer_api_seconds_count{code="200",method="rest",server="mlserver",server_replica="0"} 10
"""

CORE2_GATEWAY = """\
# HELP seldon_pipeline_infer_total A count of pipeline gateway calls
# TYPE seldon_pipeline_infer_total counter
seldon_pipeline_infer_total{code="200",method_type="rest",pipeline="branching",server="pipeline-gateway"} 8
# HELP seldon_pipeline_infer_seconds_total A sum of pipeline gateway call latencies
# TYPE seldon_pipeline_infer_seconds_total counter
seldon_pipeline_infer_seconds_total{code="200",method_type="rest",pipeline="branching",server="pipeline-gateway"} 0.16
"""


def test_parse_mlserver_summary():
    text = mlserver_text({"synth-2ms": [0.002, 0.004], "synth-8ms": [0.008]}, failures={"synth-2ms": 1})
    assert "model_infer_request_duration_created" in text  # ignored, not a latency
    snap = parse_exposition(text, endpoint="http://127.0.0.1:8082/metrics")
    assert snap.models == {
        "synth-2ms": InferCounter(2.0, pytest.approx(0.006)),
        "synth-8ms": InferCounter(1.0, pytest.approx(0.008)),
    }
    assert snap.pipelines == {}


MLSERVER_PROBE = textwrap.dedent("""
    import asyncio
    from prometheus_client import REGISTRY, generate_latest
    from mlserver import MLModel
    from mlserver.handlers.dataplane import DataPlane
    from mlserver.registry import MultiModelRegistry
    from mlserver.settings import ModelSettings, Settings
    from mlserver.types import InferenceRequest, InferenceResponse, ResponseOutput

    class Sleepy(MLModel):
        async def predict(self, payload):
            await asyncio.sleep(0.003)
            out = ResponseOutput(name="OUTPUT0", shape=[1], datatype="FP32", data=[1.0])
            return InferenceResponse(model_name=self.name, outputs=[out])

    async def main():
        models = MultiModelRegistry()
        await models.load(ModelSettings(name="sleepy-3ms", implementation=Sleepy))
        plane = DataPlane(Settings(), models)
        request = InferenceRequest(inputs=[{"name": "x", "shape": [1], "datatype": "FP32", "data": [1.0]}])
        for _ in range(5):
            await plane.infer(request, "sleepy-3ms")
        print(generate_latest(REGISTRY).decode())

    asyncio.run(main())
""")


def test_parse_what_mlserver_really_records():
    """Five calls through MLServer's own DataPlane (the code that records its metrics)."""
    text = subprocess.run([sys.executable, "-c", MLSERVER_PROBE], check=True, capture_output=True, text=True,
                          timeout=120).stdout
    counter = parse_exposition(text).models["sleepy-3ms"]
    assert counter.count == 5.0
    assert counter.sum_s >= 5 * 0.003  # each call slept 3 ms inside the timed block


def test_analyze_imports_neither_locust_nor_gevent():
    code = ("import sys; import seldon_load.analyze.metrics, seldon_load.analyze.dag, seldon_load.pipelines; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('locust', 'gevent')))")
    repo = pathlib.Path(__file__).parents[2]
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, timeout=60,
                         cwd=repo).stdout
    assert out.strip() == "[]"


def test_parse_histogram_variant_with_model_name_label():
    text = """\
# TYPE model_infer_request_duration histogram
model_infer_request_duration_bucket{model_name="m",model_version="",le="+Inf"} 3
model_infer_request_duration_count{model_name="m",model_version=""} 3
model_infer_request_duration_sum{model_name="m",model_version=""} 0.3
"""
    assert parse_exposition(text).models == {"m": InferCounter(3.0, pytest.approx(0.3))}


def test_parse_core2_sums_replicas_and_reads_pipelines():
    snap = parse_exposition(CORE2_AGENT + CORE2_GATEWAY)
    assert snap.models == {"iris": InferCounter(40.0, pytest.approx(0.2)), "tfsimple1": InferCounter(4.0, 0.008)}
    assert snap.pipelines == {"branching": InferCounter(8.0, pytest.approx(0.16))}


def test_parse_core2_without_type_lines_and_with_a_namespace_prefix():
    text = "\n".join(
        line.replace("seldon_model_infer", "seldon_mesh_seldon_model_infer")
        for line in CORE2_AGENT.splitlines()
        if not line.startswith("#")
    ) + "\n"
    assert parse_exposition(text).models["iris"] == InferCounter(40.0, pytest.approx(0.2))


def test_core2_counters_win_over_mlserver_for_the_same_model():
    # Core 2's agent reports "iris"; the MLServer behind it knows the versioned "iris_1"
    snap = parse_exposition(CORE2_AGENT, "agent") + parse_exposition(
        mlserver_text({"iris_1": [0.01] * 40, "other": [0.001]}), "mlserver"
    )
    assert snap.models["iris"] == InferCounter(40.0, pytest.approx(0.2))
    assert "iris_1" not in snap.models and snap.models["other"].count == 1.0


def test_not_prometheus_text_is_a_target_error():
    with pytest.raises(TargetError, match="from http://x/metrics are not Prometheus text format"):
        parse_exposition('metric{label="unterminated 1\n', endpoint="http://x/metrics")


def snap(**series: tuple[float, float]) -> Snapshot:
    """A snapshot from 'model__replica' -> (count, sum_s)."""
    text = "".join(
        f'seldon_model_infer_total{{model="{k.split("__")[0]}",server_replica="{k.split("__")[1]}"}} {c}\n'
        f'seldon_model_infer_seconds_total{{model="{k.split("__")[0]}",server_replica="{k.split("__")[1]}"}} {s}\n'
        for k, (c, s) in series.items()
    )
    return parse_exposition(text, "ep")


def test_delta_mean_latency_from_counter_increase():
    before = snap(a__0=(100, 1.0), b__0=(5, 0.5))
    after = snap(a__0=(300, 3.0), b__0=(5, 0.5), c__0=(10, 0.03))
    stats = delta(before, after)
    assert stats["a"] == StepStats(calls=200, mean_latency_ms=pytest.approx(10.0))
    assert stats["b"] == StepStats(calls=0, mean_latency_ms=None)
    assert stats["c"] == StepStats(calls=10, mean_latency_ms=pytest.approx(3.0))  # new series counts in full


def test_delta_handles_a_reset_per_replica():
    before = snap(a__0=(1000, 10.0), a__1=(1000, 10.0))
    # replica 1 restarted and has served 50 calls since; replica 0 served 100 more
    after = snap(a__0=(1100, 11.0), a__1=(50, 1.0))
    stats = delta(before, after)
    assert stats["a"].calls == 150
    assert stats["a"].mean_latency_ms == pytest.approx((1.0 + 1.0) / 150 * 1000)


def test_delta_of_pipelines():
    before = parse_exposition(CORE2_GATEWAY)
    after = parse_exposition(CORE2_GATEWAY.replace("} 8", "} 18").replace("} 0.16", "} 0.36"))
    assert delta(before, after, kind="pipeline") == {"branching": StepStats(10, pytest.approx(20.0))}
    assert delta(before, after) == {}


# --- HTTP: a real server on 127.0.0.1 --------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    routes: dict[str, tuple[int, str, str]] = {}
    seen: list[tuple[str, dict[str, str]]] = []

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        path = urllib.parse.urlsplit(self.path).path
        self.seen.append((self.path, dict(self.headers)))
        status, content_type, body = self.routes.get(path, (404, "text/plain", "not found"))
        if callable(body):
            status, body = body(self.path)
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[tuple[str, type[_Handler]]]:
    handler = type("Handler", (_Handler,), {"routes": {}, "seen": []})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", handler
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def test_scrape_reads_an_endpoint_and_sends_headers(server):
    base, handler = server
    handler.routes["/metrics"] = (200, "text/plain; version=0.0.4", mlserver_text({"synth-5ms": [0.005] * 4}))
    snapshot = scrape(base + "/metrics", timeout_s=5, headers={"Authorization": "Bearer s3cret"})
    assert snapshot.models == {"synth-5ms": InferCounter(4.0, pytest.approx(0.02))}
    assert snapshot.taken_at_s > 0
    assert handler.seen[-1][1]["Authorization"] == "Bearer s3cret"


def test_scrape_all_sums_endpoints(server):
    base, handler = server
    handler.routes["/a"] = (200, "text/plain", CORE2_AGENT)
    handler.routes["/b"] = (200, "text/plain", CORE2_AGENT.replace('server_replica="', 'server_replica="9'))
    total = scrape_all([base + "/a", base + "/b"])
    assert total.models["iris"].count == 80.0


def test_scrape_same_series_from_two_snapshots_gives_a_delta(server):
    base, handler = server
    handler.routes["/metrics"] = (200, "text/plain", mlserver_text({"m": [0.001] * 10}))
    before = scrape(base + "/metrics")
    handler.routes["/metrics"] = (200, "text/plain", mlserver_text({"m": [0.001] * 10 + [0.004] * 5}))
    after = scrape(base + "/metrics")
    assert delta(before, after) == {"m": StepStats(5, pytest.approx(4.0))}


def test_scrape_credentials_in_url_become_basic_auth_and_stay_out_of_messages(server):
    base, handler = server
    handler.routes["/metrics"] = (500, "text/plain", "boom")
    url = base.replace("http://", "http://user:pa55@") + "/metrics?token=xyz"
    with pytest.raises(TargetError, match=r"answered HTTP 500") as info:
        scrape(url)
    assert "pa55" not in str(info.value) and "xyz" not in str(info.value)
    assert handler.seen[-1][1]["Authorization"].startswith("Basic ")


def test_scrape_errors(server):
    base, handler = server
    handler.routes["/html"] = (200, "text/html", "<html><body>not metrics{</body></html>")
    with pytest.raises(TargetError, match="not Prometheus text format"):
        scrape(base + "/html")
    with pytest.raises(TargetError, match=r"/missing answered HTTP 404"):
        scrape(base + "/missing")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        free_port = sock.getsockname()[1]
    with pytest.raises(TargetError, match=rf"metrics endpoint http://127.0.0.1:{free_port}/metrics unreachable"):
        scrape(f"http://127.0.0.1:{free_port}/metrics", timeout_s=2)


@pytest.mark.parametrize("url", ["", "ftp://host/metrics", "127.0.0.1:8082/metrics", "http://", "http://h:99999/",
                                 "http://h:port/", "not a url"])
def test_bad_urls_are_config_errors(url):
    with pytest.raises(ConfigError):
        check_url(url)
    with pytest.raises(ConfigError):
        scrape(url)
    with pytest.raises(ConfigError):
        query_prometheus(url, at_time=0)
