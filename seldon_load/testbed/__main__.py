"""``python -m seldon_load.testbed up|down|status``: the local target on 127.0.0.1."""

from __future__ import annotations

import argparse
import json
import sys

from seldon_load.errors import SeldonLoadError
from seldon_load.testbed.server import Testbed, TestbedConfig


def build_parser() -> argparse.ArgumentParser:
    defaults = TestbedConfig()
    parser = argparse.ArgumentParser(prog="python -m seldon_load.testbed", description=__doc__)
    parser.add_argument("action", choices=("up", "down", "status"))
    parser.add_argument("--http-port", type=int, help=f"REST port (default {defaults.http_port})")
    parser.add_argument("--grpc-port", type=int, help=f"gRPC port (default {defaults.grpc_port})")
    parser.add_argument("--metrics-port", type=int, help=f"Prometheus port (default {defaults.metrics_port})")
    parser.add_argument("--ingress", action="store_true", help="with up: also start the Envoy ingress (seldon-mesh)")
    parser.add_argument("--ingress-port", type=int, help=f"ingress port, REST and gRPC (default {defaults.ingress_port})")
    parser.add_argument("--ingress-tls-port", type=int,
                        help=f"ingress TLS port (default {defaults.ingress_tls_port})")
    parser.add_argument("--state-dir", default=defaults.state_dir, help="model repository, log and PID file")
    parser.add_argument("--timeout", type=float, default=90.0, help="seconds to wait for 'up' (default 90)")
    return parser


def run(args: argparse.Namespace) -> int:
    """Carry out one action; returns the exit code (status: 0 running, 1 not running)."""
    ports = {"http_port": args.http_port, "grpc_port": args.grpc_port, "metrics_port": args.metrics_port,
             "ingress_port": args.ingress_port, "ingress_tls_port": args.ingress_tls_port}
    if args.action == "up":
        config = TestbedConfig(state_dir=args.state_dir, ingress=args.ingress)
        for name, port in ports.items():
            if port is not None:
                setattr(config, name, port)
        bed = Testbed(config)
        bed.up(timeout_s=args.timeout)
        status = bed.status()
        print(
            f"testbed up (pid {status['pid']}): REST {bed.rest_url}  gRPC {bed.grpc_target}  metrics {bed.metrics_url}"
        )
        if args.ingress:
            print(f"ingress (Envoy): REST {bed.ingress_url}  gRPC {bed.ingress_grpc_target}  TLS {bed.ingress_tls_url}"
                  f" and {bed.ingress_tls_grpc_target} (CA {bed.ca_file})")
        print(f"models: {', '.join(status['models'])}")
        return 0
    bed = Testbed.from_state_dir(args.state_dir, **ports)
    if args.action == "down":
        stopped = bed.down()
        print("testbed stopped" if stopped else f"no testbed running from {bed.state_dir}")
        return 0
    status = bed.status()
    print(json.dumps(status, indent=2))
    return 0 if status["running"] else 1


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except SeldonLoadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
