"""Starting Locust: the master, local workers and the processes around them.

`seldon-load run`, `--isolate-steps` and `demo` all start Locust the same way: translate a run's
options into a Locust command line (``locust_args``), check it as the Locust processes will
(``validate``), then start a master and ``workers`` local worker processes and stop every
process started, also on Ctrl-C, SIGTERM/SIGHUP and errors (``run_locust``). One home for
this keeps ``cli``, ``demo`` and ``isolate`` from importing each other.
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
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from seldon_load.settings import Settings

LOCUSTFILE = str(Path(__file__).with_name("locustfile.py"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PluginOptions:
    """Takes the plugin's Locust option definitions onto `seldon-load run`'s parser.

    One definition (options.add_arguments) serves both, so the two can never drift apart;
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


def locust_args(a: argparse.Namespace, plugin: PluginOptions | None = None) -> list[str]:
    """Translate `seldon-load run` options into the plugin's Locust options."""
    if plugin is None:
        from seldon_load.options import add_arguments

        plugin = PluginOptions(argparse.ArgumentParser(add_help=False))
        add_arguments(plugin)
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


def validate(args: list[str]) -> Settings:
    """Parse the options exactly as the Locust processes will, so bad input fails here first."""
    from locust.argument_parser import get_parser

    from seldon_load.options import add_arguments
    from seldon_load.settings import Settings, check_results_dir

    parser = get_parser(default_config_files=[])
    try:
        add_arguments(parser)
    except argparse.ArgumentError:
        pass  # the plugin, once imported in this process, registered them on Locust's parser already
    opts = parser.parse_args(args)  # Locust's parser already turns --run-time into seconds
    settings = Settings.from_options(opts)
    check_results_dir(settings.results_dir)
    if settings.pipeline_spec:  # bounded (size, nodes, depth): cheap to read twice, clearer here
        from seldon_load.pipelines import read_pipelines

        read_pipelines(settings.pipeline_spec)
    return settings


_WILDCARDS = ("", "*", "0.0.0.0", "::")


def master_bind(extra: list[str]) -> tuple[str | None, int | None]:
    """``--master-bind-host``/``--master-bind-port`` given after ``--`` (None for each not given).

    Parsed by Locust's own parser (abbreviations, ``=`` forms and LOCUST_* variables alike), so
    `run` honours what the master will see instead of replacing it; a port out of range is bad input.
    """
    from locust.argument_parser import get_parser

    from seldon_load.errors import ConfigError

    parser = get_parser(default_config_files=[])
    parser.exit_on_error = False
    parser.set_defaults(master_bind_host=None, master_bind_port=None)
    try:
        opts, _ = parser.parse_known_args(["-f", LOCUSTFILE, *extra])
    except argparse.ArgumentError as exc:
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


class Terminated:
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
                if Terminated.signal is not None:
                    raise KeyboardInterrupt from None
    Terminated.blocking = True
    try:
        if Terminated.signal is not None:
            raise KeyboardInterrupt
        try:
            os.waitid(os.P_PID, master.pid, os.WEXITED | os.WNOWAIT)
        except ChildProcessError:
            pass  # already reaped
    finally:
        Terminated.blocking = False
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
