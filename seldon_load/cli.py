"""The ``seldon-load`` command: run, sweep, compare, report, testbed, demo, k8s.

``run`` starts a Locust master and ``--workers N`` local worker processes (or one
in-process runner with 0) on the packaged locustfile, waits, and stops every process it
started, also on Ctrl-C and on errors (all of that in ``launcher``, which ``demo`` and
``isolate`` use too). Options not its own go to Locust after ``--``.
Exit codes: 0 ran and every threshold held, 1 a threshold failed, 2 bad input.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time

from seldon_load.errors import ConfigError, SeldonLoadError
from seldon_load.launcher import (
    LOCUSTFILE,
    PluginOptions,
    Terminated,
    locust_args,
    master_bind,
    run_locust,
    validate,
)
from seldon_load.safe_text import MAX_MESSAGE_CHARS, clip, printable

__all__ = ["LOCUSTFILE", "build_parser", "locust_args", "main", "run_locust", "validate"]

EPILOG_RUN = """examples:
  seldon-load run --host http://127.0.0.1:8080 --model synth-5ms --stages 50:5s:20s,100:5s:20s,200:5s:20s
  seldon-load run --host 127.0.0.1:8081 --model synth-5ms --protocol grpc --auto --max-rps 500 --workers 2
  seldon-load run --host http://127.0.0.1:8080 --pipeline branching \\
      --pipeline-spec seldon_load/testbed/pipelines/branching.yaml --metrics-url http://127.0.0.1:8082/metrics \\
      --stages 20:5s:20s,40:5s:20s --isolate-steps
  seldon-load run --host http://127.0.0.1:8080 --model iris --users 8 --run-time 30s   (closed loop)
  seldon-load run ... -- --csv results/locust --html results/locust.html   (extra Locust options)
"""


WEB_PASSWORD_ENV = "SELDON_LOAD_WEB_PASSWORD"


class _OneLineParser(argparse.ArgumentParser):
    """argparse, but a bad option ends with one line (and exit code 2), not the whole usage."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {clip(message, MAX_MESSAGE_CHARS)} (see {self.prog} --help)\n")


def _add_run_options(p: argparse.ArgumentParser) -> PluginOptions:
    from seldon_load.options import add_arguments

    p.add_argument("--host", required=True,
                   help="http(s)://host:port for REST, grpc(s)://host:port or host:port for gRPC")
    p.add_argument("--users", type=int, help="closed loop: N concurrent users (with --run-time)")
    p.add_argument("--run-time", default="60s", help="closed-loop duration (default 60s)")
    p.add_argument("--workers", type=int, default=0, help="local worker processes (default 0: in-process)")
    p.add_argument("--isolate-steps", action="store_true",
                   help="with --pipeline-spec: test each step model alone first, then the pipeline")
    p.add_argument("--web-ui", action="store_true", help="start Locust's web UI instead of running headless")
    p.add_argument("--web-host", default="127.0.0.1", help="web UI bind address (default 127.0.0.1)")
    p.add_argument("--web-port", type=int, default=8089, help="web UI port (default 8089)")
    p.add_argument("--web-login", action="store_true",
                   help="require a login to the web UI: user $SELDON_LOAD_WEB_USER (default admin), "
                        "password $SELDON_LOAD_WEB_PASSWORD")
    plugin = PluginOptions(p)
    add_arguments(plugin)
    return plugin


def check_run_options(a: argparse.Namespace) -> None:
    """What only `seldon-load run` knows (its own options); the rest is checked by ``validate``."""
    if a.users is not None and a.users < 1:
        raise ConfigError(f"--users must be >= 1 (got {a.users})")
    if a.workers < 0:
        raise ConfigError(f"--workers must be >= 0 (got {a.workers})")
    if not 1 <= a.web_port <= 65535:
        raise ConfigError(f"--web-port must be between 1 and 65535 (got {a.web_port})")
    if not a.web_ui and not (a.users or a.stages or a.auto or a.sweep):
        raise ConfigError("choose how to offer load: --stages RPS:RAMP:HOLD,..., --auto, --users N or --sweep")
    if a.step_payload and not a.isolate_steps:
        raise ConfigError("--step-payload MODEL=FILE goes with --isolate-steps (the payload of one step's own test)")
    if a.web_ui and a.web_login and not os.environ.get(WEB_PASSWORD_ENV):
        raise ConfigError(f"--web-login needs the password in the environment variable {WEB_PASSWORD_ENV}")


def cmd_run(a: argparse.Namespace, extra: list[str]) -> int:
    check_run_options(a)
    largs = locust_args(a, a._plugin)
    validate(largs)
    master_bind(extra)
    if a.isolate_steps:
        from seldon_load.isolate import run_isolated

        return run_isolated(a, largs, extra)
    return run_locust(largs, a.workers, a.results or "results/latest", a.web_ui, a.web_host, a.web_port, a.web_login, extra)


def cmd_report(a: argparse.Namespace) -> int:
    from seldon_load.report.console import summary_text
    from seldon_load.report.rebuild import load_results, rebuild

    paths = rebuild(a.dir)
    print(summary_text(load_results(a.dir)))
    for p in paths:
        print(f"wrote {printable(p)}")
    return 0


def cmd_testbed(a: argparse.Namespace) -> int:
    from seldon_load.testbed.server import Testbed, TestbedConfig

    tb = Testbed(TestbedConfig(host=a.bind_host, http_port=a.http_port, grpc_port=a.grpc_port,
                               metrics_port=a.metrics_port, state_dir=a.state_dir,
                               stop_with_parent=bool(a.foreground), ingress=a.ingress,
                               ingress_port=a.ingress_port, ingress_tls_port=a.ingress_tls_port,
                               prometheus=a.with_prometheus, prometheus_port=a.prometheus_port,
                               exporter_port=a.exporter_port, parallel_workers=a.parallel_workers))
    if a.action == "up":
        tb.up()
        print(f"testbed up: REST {tb.rest_url}  gRPC {tb.grpc_target}  metrics {tb.metrics_url}", flush=True)
        if a.ingress:
            print(f"ingress (Envoy, routes on seldon-model): REST {tb.ingress_url}  gRPC {tb.ingress_grpc_target}"
                  f"  TLS {tb.ingress_tls_url} and {tb.ingress_tls_grpc_target} with --ca-file {tb.ca_file}",
                  flush=True)
        if a.with_prometheus:
            print(f"Prometheus {tb.prometheus.url} (process-exporter {tb.prometheus.exporter_url}): "
                  f"--prometheus-url {tb.prometheus.url} --resource-selector 'groupname=\"mlserver\"'", flush=True)
        if a.foreground:
            return _hold_testbed(tb)
    elif a.action == "down":
        tb.down()
        print("testbed down")
    else:
        import json

        st = tb.status()
        print(json.dumps(st, indent=2))
        return 0 if st.get("running") else 3
    return 0


def _hold_testbed(tb) -> int:
    """Foreground mode (containers): serve until SIGTERM/Ctrl-C, then stop MLServer."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        while tb.pid is not None:
            time.sleep(1)
        sys.stderr.write(f"seldon-load: error: MLServer stopped; see {tb.log_path}\n")
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        tb.down()


def cmd_demo(a: argparse.Namespace) -> int:
    from seldon_load.demo import run_demo

    return run_demo(a.results, workers=a.workers, ingress=not a.no_ingress)


def cmd_sweep(a: argparse.Namespace, base: list[str], extra: list[str]) -> int:
    from seldon_load.experiment.sweep import run_sweep

    return run_sweep(a, base, extra, a._run_parser, check_run_options)


def cmd_compare(a: argparse.Namespace) -> int:
    from seldon_load.experiment.summary import run_compare

    return run_compare(a)


def build_parser() -> argparse.ArgumentParser:
    p = _OneLineParser(prog="seldon-load", description=__doc__.split("\n")[0],
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run one load test", epilog=EPILOG_RUN,
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    run.set_defaults(_plugin=_add_run_options(run))
    from seldon_load.experiment.cli import add_compare_parser, add_sweep_parser

    add_sweep_parser(sub, run)
    add_compare_parser(sub)
    rep = sub.add_parser("report", help="rebuild report.html and stages.csv from DIR/results.json",
                         epilog="example:\n  seldon-load report results/demo/rest",
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    rep.add_argument("dir")
    tb = sub.add_parser("testbed", help="local MLServer target on 127.0.0.1",
                        epilog="examples:\n  seldon-load testbed up\n  seldon-load testbed up --ingress\n"
                               "  seldon-load testbed status\n"
                               "  seldon-load testbed down", formatter_class=argparse.RawDescriptionHelpFormatter)
    tb.add_argument("action", choices=["up", "down", "status"])
    tb.add_argument("--http-port", type=int, default=8080)
    tb.add_argument("--grpc-port", type=int, default=8081)
    tb.add_argument("--metrics-port", type=int, default=8082)
    tb.add_argument("--state-dir", default=".testbed", help="where the model repository, pid and log live")
    tb.add_argument("--bind-host", default="127.0.0.1",
                    help="address MLServer listens on (default 127.0.0.1; 0.0.0.0 inside a container)")
    tb.add_argument("--ingress", action="store_true",
                    help="with up: also run a Core-2-like Envoy ingress that routes on the seldon-model header")
    tb.add_argument("--ingress-port", type=int, default=9000, help="ingress port, REST and gRPC (default 9000)")
    tb.add_argument("--ingress-tls-port", type=int, default=9443,
                    help="ingress TLS port, REST and gRPC (default 9443; CA in STATE_DIR/ingress/ca.pem)")
    tb.add_argument("--with-prometheus", action="store_true",
                    help="with up: also run a real Prometheus and process-exporter (server CPU and memory per stage)")
    tb.add_argument("--prometheus-port", type=int, default=9090, help="Prometheus port (default 9090)")
    tb.add_argument("--exporter-port", type=int, default=9256, help="process-exporter port (default 9256)")
    tb.add_argument("--parallel-workers", type=int, default=0,
                    help="with up: MLServer inference worker processes, each with its own copy of every model "
                         "(default 0: all in the server process)")
    tb.add_argument("--foreground", action="store_true",
                    help="with up: keep running until SIGTERM/Ctrl-C, then stop the server (containers)")
    demo = sub.add_parser("demo", help="testbed + saturation tests over REST, gRPC and a pipeline (~3 min)")
    demo.add_argument("--results", default="results/demo")
    demo.add_argument("--workers", type=int, default=2)
    demo.add_argument("--no-ingress", action="store_true",
                      help="send to MLServer directly instead of through the testbed's Envoy ingress")
    from seldon_load import k8s

    k8s.add_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1:]
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if rest and args.command != "sweep":  # a sweep passes the run options it does not know to each run
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    try:
        if args.command in ("run", "sweep"):
            Terminated.signal = None
            previous = {sig: signal.signal(sig, Terminated.handler) for sig in (signal.SIGTERM, signal.SIGHUP)}
            # Ctrl-C (or kill -INT) stops the run also where SIGINT came ignored (a background job
            # of a script): Python would leave it ignored, and the master and workers running
            previous[signal.SIGINT] = signal.signal(signal.SIGINT, signal.default_int_handler)
            code = None
            try:
                code = cmd_run(args, extra) if args.command == "run" else cmd_sweep(args, rest, extra)
                return code
            finally:
                for sig, handler in previous.items():
                    if handler is not None:  # None: set outside Python, nothing to restore
                        signal.signal(sig, handler)
                if code in (None, 130):
                    # interrupted: an impatient user's further Ctrl-C would only turn the exit
                    # code 130 into a death by SIGINT once everything is already stopped
                    signal.signal(signal.SIGINT, signal.SIG_IGN)
        if args.command == "compare":
            return cmd_compare(args)
        if args.command == "report":
            return cmd_report(args)
        if args.command == "testbed":
            return cmd_testbed(args)
        if args.command == "k8s":
            from seldon_load.k8s import cmd_k8s

            return cmd_k8s(args, argv)
        return cmd_demo(args)
    except SeldonLoadError as exc:
        sys.stderr.write(f"seldon-load: error: {exc}\n")
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
