"""Every seldon-load option, defined once, as a Locust option.

Registered on Locust's parser, so each works alike on the command line, in ``locust.conf``, as a
``LOCUST_*`` environment variable and in the web UI form; `seldon-load run` takes the same
definitions onto its own parser (``launcher.PluginOptions``). ``settings.Settings.from_options``
checks the values.
"""

from __future__ import annotations

from seldon_load.load.arrivals import POISSON, UNIFORM


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
