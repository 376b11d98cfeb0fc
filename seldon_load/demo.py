"""`seldon-load demo`: the main job end to end against the built-in testbed, in ~3 minutes.

Starts the testbed on free loopback ports, runs stepped saturation tests against the
``synth-5ms`` model (capacity exactly 200 rps) over REST and gRPC and one against the
``branching`` pipeline with per-step latencies, each with a master and local workers, then
prints where the reports are and the saturation points, and stops the testbed. The load goes
through the testbed's Envoy ingress, as it would through Seldon Core 2's ``seldon-mesh``: one
port for REST and gRPC, routed on the ``seldon-model`` header (``ingress=False``: to MLServer).
When Prometheus and process-exporter are installed (``make demo`` installs them as root), the
testbed runs them too and the model runs report the server's CPU and memory per stage.
"""

from __future__ import annotations

import socket
import sys
import tempfile
from pathlib import Path

import orjson

from seldon_load.launcher import LOCUSTFILE, run_locust

MODEL_STAGES = "60:2s:8s,120:2s:8s,170:2s:8s,210:2s:8s,260:2s:8s"
PIPELINE_STAGES = "30:2s:8s,60:2s:8s,90:2s:8s,120:2s:8s,150:2s:8s"
SPEC = Path(__file__).parent / "testbed" / "pipelines" / "branching.yaml"


def _free_ports(n: int) -> list[int]:
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


def _preferred_ports(wanted: tuple[int, ...]) -> list[int]:
    """The usual ports if all of them are free, else free ones."""
    for port in wanted:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                return _free_ports(len(wanted))
    return list(wanted)


def _summary(name: str, results_dir: Path) -> str:
    try:
        r = orjson.loads((results_dir / "results.json").read_bytes())
    except (OSError, ValueError):
        return f"  {name:28} no results (see output above)"
    sat = r.get("saturation") or {}
    if sat.get("inconclusive_reason"):
        verdict = f"inconclusive: {sat['inconclusive_reason']}"
    elif sat.get("saturated"):
        verdict = (f"saturation point {sat.get('max_sustainable_rps')} rps, recommended {sat.get('recommended_rps')} rps, "
                   f"capacity estimate {sat.get('capacity_estimate_rps')} rps")
    else:
        verdict = f"not saturated up to {sat.get('max_tested_rps')} rps"
    line = f"  {name:28} {verdict}"
    pipe = r.get("pipeline")
    if pipe and pipe.get("critical_path"):
        line += (f"\n  {'':28} critical path {' -> '.join(pipe['critical_path'])}"
                 f" ({pipe.get('critical_path_latency_ms')} ms of {pipe.get('end_to_end_latency_ms')} ms end to end),"
                 f" bottleneck {pipe.get('bottleneck') or 'not measured (it needs --isolate-steps)'}")
    at = (r.get("resources") or {}).get("at_saturation")
    if at:
        line += (f"\n  {'':28} server: {at.get('cpu_cores')} cores at {at.get('rps')} rps, "
                 f"{at.get('cpu_ms_per_request')} CPU-ms per request")
    return line + f"\n  {'':28} {results_dir / 'report.html'}"


def run_demo(results: str = "results/demo", workers: int = 2, ingress: bool = True) -> int:
    from seldon_load.testbed.prometheus import TESTBED_SELECTOR, available
    from seldon_load.testbed.server import Testbed, TestbedConfig

    out = Path(results)
    out.mkdir(parents=True, exist_ok=True)
    http_port, grpc_port, metrics_port = _preferred_ports((8080, 8081, 8082))
    ingress_port, tls_port = _preferred_ports((9000, 9443)) if ingress else (9000, 9443)
    prometheus = available()
    prom_port, exporter_port = _preferred_ports((9090, 9256)) if prometheus else (9090, 9256)
    state = tempfile.mkdtemp(prefix="seldon-load-demo-")
    tb = Testbed(TestbedConfig(http_port=http_port, grpc_port=grpc_port, metrics_port=metrics_port, state_dir=state,
                               ingress=ingress, ingress_port=ingress_port, ingress_tls_port=tls_port,
                               prometheus=prometheus, prometheus_port=prom_port, exporter_port=exporter_port))
    where = f"127.0.0.1:{http_port}/{grpc_port}/{metrics_port}"
    if ingress:
        where += f", Envoy ingress on 127.0.0.1:{ingress_port} (REST and gRPC)"
    if prometheus:
        where += f", Prometheus on 127.0.0.1:{prom_port}"
    print(f"[demo] starting the testbed (MLServer) on {where} ...", flush=True)
    tb.up()
    rest, grpc = (tb.ingress_url, tb.ingress_grpc_target) if ingress else (tb.rest_url, tb.grpc_target)
    res = ["--prometheus-url", tb.prometheus.url, "--resource-selector", TESTBED_SELECTOR] if prometheus else []
    runs = [
        ("REST  model synth-5ms", out / "rest-synth-5ms",
         ["--host", rest, "--model", "synth-5ms", "--stages", MODEL_STAGES, *res]),
        ("gRPC  model synth-5ms", out / "grpc-synth-5ms",
         ["--host", grpc, "--protocol", "grpc", "--model", "synth-5ms", "--stages", MODEL_STAGES, *res]),
        ("REST  pipeline branching", out / "pipeline-branching",
         ["--host", rest, "--pipeline", "branching", "--stages", PIPELINE_STAGES,
          "--pipeline-spec", str(SPEC), "--metrics-url", tb.metrics_url]),
    ]
    codes = []
    try:
        for title, rdir, args in runs:
            print(f"\n[demo] {title}: stages {args[args.index('--stages') + 1]} with {workers} workers", flush=True)
            codes.append(run_locust(["-f", LOCUSTFILE, *args, "--results", str(rdir)], workers, str(rdir)))
    finally:
        print("\n[demo] stopping the testbed", flush=True)
        tb.down()
    print("\n[demo] results (true capacity of synth-5ms: 200 rps; of the branching pipeline's slowest step synth-8ms:"
          " 125 rps)")
    for title, rdir, _ in runs:
        print(_summary(title, rdir))
    return 0 if all(c in (0, 1) for c in codes) else max(codes)


if __name__ == "__main__":
    sys.exit(run_demo())
