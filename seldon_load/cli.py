"""The ``seldon-load`` command: run, report, testbed, demo.

``run`` starts a Locust master and ``--workers N`` local worker processes (or one
in-process runner with 0) on the packaged locustfile, waits, and stops every process it
started, also on Ctrl-C and on errors. Options not its own go to Locust after ``--``.
Exit codes: 0 ran and every threshold held, 1 a threshold failed, 2 bad input.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from seldon_load.errors import ConfigError, SeldonLoadError
from seldon_load.safe_text import MAX_MESSAGE_CHARS, clip, printable

LOCUSTFILE = str(Path(__file__).with_name("locustfile.py"))

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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _PluginOptions:
    """Takes the plugin's Locust option definitions onto `seldon-load run`'s parser.

    One definition (settings.add_arguments) serves both, so the two can never drift apart;
    defaults are left to the plugin, so only what the user gave is passed on.
    """

    def __init__(self, parser: argparse.ArgumentParser) -> None:
        self.parser = parser
        self.options: list[tuple[str, str, str | None]] = []  # (flag, dest, action)

    def add_argument(self, *flags, **kw):
        for key in ("include_in_web_ui", "is_secret", "is_required", "is_multiple", "env_var"):
            kw.pop(key, None)
        action = kw.get("action")
        default = kw.get("default")
        if default not in (None, "", [], False):
            kw["help"] = f"{kw.get('help', '')} (default {default})".replace("%", "%%").replace("%%%%", "%%")
        if action not in ("store_true", "append"):
            kw["default"] = None
        arg = self.parser.add_argument(*flags, **kw)
        self.options.append((flags[0], arg.dest, action))
        return arg


def _add_run_options(p: argparse.ArgumentParser) -> _PluginOptions:
    from seldon_load.settings import add_arguments

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
    plugin = _PluginOptions(p)
    add_arguments(plugin)
    return plugin


def locust_args(a: argparse.Namespace, plugin: _PluginOptions | None = None) -> list[str]:
    """Translate `seldon-load run` options into the plugin's Locust options."""
    if plugin is None:
        plugin = _add_run_options(argparse.ArgumentParser(add_help=False))
    out = ["-f", LOCUSTFILE, "--host", a.host]
    for flag, dest, action in plugin.options:
        v = getattr(a, dest, None)
        if action == "store_true":
            if v:
                out.append(flag)
        elif action == "append":
            for item in v or []:
                out += [flag, str(item)]
        elif v is not None and v != "":
            out += [flag, str(v)]
    if a.users:
        out += ["-u", str(a.users), "-r", str(max(1, a.users)), "-t", a.run_time]
    return out


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
    if a.web_ui and a.web_login and not os.environ.get(WEB_PASSWORD_ENV):
        raise ConfigError(f"--web-login needs the password in the environment variable {WEB_PASSWORD_ENV}")


def validate(args: list[str]) -> None:
    """Parse the options exactly as the Locust processes will, so bad input fails here first."""
    from locust.argument_parser import get_parser

    from seldon_load.settings import Settings, add_arguments, check_results_dir

    parser = get_parser(default_config_files=[])
    if not any("--stages" in action.option_strings for action in parser._actions):
        add_arguments(parser)  # unless the plugin, once imported in this process, added them already
    opts = parser.parse_args(args)  # Locust's parser already turns --run-time into seconds
    settings = Settings.from_options(opts)
    check_results_dir(settings.results_dir)
    if settings.pipeline_spec:  # bounded (size, nodes, depth): cheap to read twice, clearer here
        from seldon_load.pipelines import read_pipelines

        read_pipelines(settings.pipeline_spec)


_WILDCARDS = ("", "*", "0.0.0.0", "::")


def master_bind(extra: list[str]) -> tuple[str | None, int | None]:
    """``--master-bind-host``/``--master-bind-port`` given after ``--`` (None for each not given).

    Parsed by Locust's own parser (abbreviations, ``=`` forms and LOCUST_* variables alike), so
    `run` honours what the master will see instead of replacing it; a port out of range is bad input.
    """
    import argparse as _argparse

    from locust.argument_parser import get_parser

    parser = get_parser(default_config_files=[])
    parser.exit_on_error = False
    parser.set_defaults(master_bind_host=None, master_bind_port=None)
    try:
        opts, _ = parser.parse_known_args(["-f", LOCUSTFILE, *extra])
    except _argparse.ArgumentError as exc:
        raise ConfigError(f"after --: {exc}") from None
    port = opts.master_bind_port
    if port is not None and not 1 <= port <= 65535:
        raise ConfigError(f"--master-bind-port after -- must be between 1 and 65535 (got {port})")
    return opts.master_bind_host, port


class Processes:
    """Children started by `run`; all of them are ended on the way out, whatever happens."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen] = []

    def start(self, cmd: list[str], stop_with_parent: bool = False, **kw) -> subprocess.Popen:
        p = subprocess.Popen(cmd, start_new_session=True,
                             preexec_fn=_stop_with_parent if stop_with_parent else _default_sigint, **kw)
        self.procs.append(p)
        return p

    def stop_all(self, grace_s: float = 10.0) -> None:
        """SIGTERM, ``grace_s`` to end, then SIGKILL; another Ctrl-C meanwhile cuts the grace short
        (it never leaves a child running: the kill phase ignores SIGINT)."""
        try:
            for p in self.procs:
                if p.poll() is None:
                    _signal(p, signal.SIGTERM)
            deadline = time.time() + grace_s
            for p in self.procs:
                try:
                    p.wait(timeout=max(0.1, deadline - time.time()))
                except subprocess.TimeoutExpired:
                    pass
        except KeyboardInterrupt:
            pass
        finally:
            self._kill_the_rest()

    def _kill_the_rest(self) -> None:
        main = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if main else None
        try:
            for p in self.procs:
                if p.poll() is None:
                    _signal(p, signal.SIGKILL)
            for p in self.procs:
                try:
                    p.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    pass
        finally:
            if main and previous is not None:
                signal.signal(signal.SIGINT, previous)


def _default_sigint() -> None:
    """In the child, before exec: Ctrl-C works even where `seldon-load` itself was started with SIGINT
    ignored (a background job of a script), which Python would pass on to Locust."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _stop_with_parent() -> None:
    """In the master, before exec: Linux sends it SIGINT if `seldon-load` dies, even by SIGKILL; the
    master then stops the test, writes its results and tells the workers to quit, as on Ctrl-C."""
    _default_sigint()
    if sys.platform != "linux":
        return
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGINT, 0, 0, 0)


class _Terminated:
    """Set by SIGTERM/SIGHUP; `run` then ends like Ctrl-C (Python's default would exit at once and
    orphan the master and the workers). A flag, not an exception raised inside gevent's hub;
    raised only while `_wait_for` blocks in the main greenlet."""

    signal: int | None = None
    blocking = False

    @classmethod
    def handler(cls, signum, frame) -> None:
        cls.signal = signum
        if cls.blocking:
            raise KeyboardInterrupt


def _wait_for(master: subprocess.Popen) -> int:
    """The master's exit code; KeyboardInterrupt on Ctrl-C, SIGTERM or SIGHUP.

    Blocks in waitid (the child is left for ``wait`` to reap) instead of waking to poll:
    a polling wait cost 2 ms of CPU a second, charged to the generator in every benchmark."""
    if not hasattr(os, "waitid"):
        while True:
            try:
                return master.wait(timeout=0.2)
            except subprocess.TimeoutExpired:
                if _Terminated.signal is not None:
                    raise KeyboardInterrupt from None
    _Terminated.blocking = True
    try:
        if _Terminated.signal is not None:
            raise KeyboardInterrupt
        try:
            os.waitid(os.P_PID, master.pid, os.WEXITED | os.WNOWAIT)
        except ChildProcessError:
            pass  # already reaped
    finally:
        _Terminated.blocking = False
    return master.wait()


def _signal(p: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(p.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def run_locust(largs: list[str], workers: int, results_dir: str, web_ui: bool = False,
               web_host: str = "127.0.0.1", web_port: int = 8089, web_login: bool = False,
               extra: list[str] | None = None, quiet_workers: bool = True) -> int:
    """Start master (+ workers), wait for the master, stop everything; the master's exit code."""
    py = [sys.executable, "-m", "locust"]
    extra = list(extra or [])
    mode = (["--web-host", web_host, "--web-port", str(web_port)] + (["--web-login"] if web_login else [])
            if web_ui else ["--headless", "--only-summary"])
    procs = Processes()
    Path(results_dir).mkdir(parents=True, exist_ok=True)
    logs = []
    try:
        if workers <= 0:
            master = procs.start(py + largs + mode + extra, stop_with_parent=True)
        else:
            bind_host, bind_port = master_bind(extra)  # given after --: honoured, not replaced
            port = bind_port or _free_port()
            own = (["--master-bind-host", "127.0.0.1"] if bind_host is None else []) + \
                  (["--master-bind-port", str(port)] if bind_port is None else [])
            master = procs.start(py + largs + mode + extra + ["--master", *own, "--expect-workers", str(workers),
                                                                "--expect-workers-max-wait", "60"],
                                 stop_with_parent=True)
            connect = "127.0.0.1" if bind_host is None or bind_host in _WILDCARDS else bind_host
            for i in range(workers):
                log_path = Path(results_dir) / f"worker-{i}.log"
                fh = open(log_path, "w")  # noqa: SIM115 (closed below)
                logs.append(fh)
                procs.start(py + ["-f", LOCUSTFILE, "--worker", "--master-host", connect,
                                  "--master-port", str(port)],
                            stdout=fh if quiet_workers else None, stderr=subprocess.STDOUT if quiet_workers else None)
        try:
            return _wait_for(master)
        except KeyboardInterrupt:
            # Ctrl-C is the one stop a headless Locust master always handles gracefully (results
            # written, workers told to quit); its SIGINT is not ignored (see _default_sigint)
            _signal(master, signal.SIGINT)
            try:
                master.wait(timeout=30)
            except (subprocess.TimeoutExpired, KeyboardInterrupt):
                pass
            return 130
    finally:
        procs.stop_all()
        for fh in logs:
            fh.close()


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
                               stop_with_parent=bool(a.foreground)))
    if a.action == "up":
        tb.up()
        print(f"testbed up: REST {tb.rest_url}  gRPC {tb.grpc_target}  metrics {tb.metrics_url}", flush=True)
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

    return run_demo(a.results, workers=a.workers)


def build_parser() -> argparse.ArgumentParser:
    p = _OneLineParser(prog="seldon-load", description=__doc__.split("\n")[0],
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run one load test", epilog=EPILOG_RUN,
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    run.set_defaults(_plugin=_add_run_options(run))
    rep = sub.add_parser("report", help="rebuild report.html and stages.csv from DIR/results.json",
                         epilog="example:\n  seldon-load report results/demo/rest",
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    rep.add_argument("dir")
    tb = sub.add_parser("testbed", help="local MLServer target on 127.0.0.1",
                        epilog="examples:\n  seldon-load testbed up\n  seldon-load testbed status\n"
                               "  seldon-load testbed down", formatter_class=argparse.RawDescriptionHelpFormatter)
    tb.add_argument("action", choices=["up", "down", "status"])
    tb.add_argument("--http-port", type=int, default=8080)
    tb.add_argument("--grpc-port", type=int, default=8081)
    tb.add_argument("--metrics-port", type=int, default=8082)
    tb.add_argument("--state-dir", default=".testbed", help="where the model repository, pid and log live")
    tb.add_argument("--bind-host", default="127.0.0.1",
                    help="address MLServer listens on (default 127.0.0.1; 0.0.0.0 inside a container)")
    tb.add_argument("--foreground", action="store_true",
                    help="with up: keep running until SIGTERM/Ctrl-C, then stop the server (containers)")
    demo = sub.add_parser("demo", help="testbed + saturation tests over REST, gRPC and a pipeline (~3 min)")
    demo.add_argument("--results", default="results/demo")
    demo.add_argument("--workers", type=int, default=2)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1:]
    args = build_parser().parse_args(argv)
    try:
        if args.command == "run":
            _Terminated.signal = None
            previous = {sig: signal.signal(sig, _Terminated.handler) for sig in (signal.SIGTERM, signal.SIGHUP)}
            # Ctrl-C (or kill -INT) stops the run also where SIGINT came ignored (a background job
            # of a script): Python would leave it ignored, and the master and workers running
            previous[signal.SIGINT] = signal.signal(signal.SIGINT, signal.default_int_handler)
            try:
                return cmd_run(args, extra)
            finally:
                for sig, handler in previous.items():
                    if handler is not None:  # None: set outside Python, nothing to restore
                        signal.signal(sig, handler)
        if args.command == "report":
            return cmd_report(args)
        if args.command == "testbed":
            return cmd_testbed(args)
        return cmd_demo(args)
    except SeldonLoadError as exc:
        sys.stderr.write(f"seldon-load: error: {exc}\n")
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
