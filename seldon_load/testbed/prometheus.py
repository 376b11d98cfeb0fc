"""A real Prometheus server and process-exporter beside the testbed (``--with-prometheus``).

Debian's ``prometheus`` and ``prometheus-process-exporter`` binaries, started in their own
process groups, found again by PID file and stopped by PID like MLServer. The exporter
tracks the testbed's MLServer (and its children) by the model repository path on its
command line, under the group name ``mlserver``; Prometheus scrapes it, MLServer's own
metrics and itself every second, so stage windows of a few seconds hold enough samples
for ``rate()``/``increase()``.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from seldon_load.errors import ConfigError, TargetError
from seldon_load.testbed.procs import die_with_parent, http_ok, is_running, log_tail, port_in_use, stop_group

PROM_DIR = "prometheus"
SCRAPE_INTERVAL_S = 1
GROUP_NAME = "mlserver"
# The selector that picks the testbed's MLServer among process-exporter's series.
TESTBED_SELECTOR = f'groupname="{GROUP_NAME}"'
BINARIES = {"prometheus": "prometheus", "exporter": "prometheus-process-exporter"}


def find_binary(name: str) -> str | None:
    """The binary on PATH or in /usr/bin (Debian installs there; PATH may lack it)."""
    return shutil.which(name) or (f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").is_file() else None)


def available() -> bool:
    """True when both binaries are installed (``make test``/``make demo`` install them)."""
    return all(find_binary(b) for b in BINARIES.values())


@dataclass
class PromPorts:
    host: str
    prometheus_port: int
    exporter_port: int
    metrics_port: int  # MLServer's Prometheus endpoint


class PrometheusStack:
    """Start and stop Prometheus + process-exporter for one testbed (state in ``state_dir``)."""

    def __init__(self, state_dir: Path, ports: PromPorts, repository: Path) -> None:
        self.dir = Path(state_dir)
        self.ports = ports
        self.repository = Path(repository)
        self._procs: dict[str, subprocess.Popen[bytes]] = {}  # started by this object (reaped by it)

    @property
    def url(self) -> str:
        return f"http://{self.ports.host}:{self.ports.prometheus_port}"

    @property
    def exporter_url(self) -> str:
        return f"http://{self.ports.host}:{self.ports.exporter_port}/metrics"

    def pid(self, which: str) -> int | None:
        try:
            pid = int((self.dir / f"{which}.pid").read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if is_running(pid, BINARIES[which]) else None

    def start(self, stop_with_parent: bool = False, timeout_s: float = 30.0) -> None:
        """Write both configurations, start both, wait until Prometheus has scraped every target."""
        missing = [b for b in BINARIES.values() if not find_binary(b)]
        if missing:
            raise ConfigError(f"--with-prometheus needs {' and '.join(missing)} (Debian packages of the same "
                              "names; `make test` or `make demo` installs them when run as root)")
        p = self.ports
        for what, port in (("Prometheus", p.prometheus_port), ("process-exporter", p.exporter_port)):
            if port_in_use(p.host, port):
                raise TargetError(f"testbed {what} port {p.host}:{port} is already in use; pick another")
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "process-exporter.yml").write_text(self._exporter_config())
        (self.dir / "prometheus.yml").write_text(self._prometheus_config())
        self._spawn("exporter", [find_binary(BINARIES["exporter"]), "-config.path",
                                 str(self.dir / "process-exporter.yml"), "-threads=false",
                                 "-web.listen-address", f"{p.host}:{p.exporter_port}"], stop_with_parent)
        self._spawn("prometheus", [find_binary(BINARIES["prometheus"]),
                                   f"--config.file={self.dir / 'prometheus.yml'}",
                                   f"--storage.tsdb.path={self.dir / 'data'}",
                                   "--storage.tsdb.retention.time=1d",
                                   f"--web.listen-address={p.host}:{p.prometheus_port}"], stop_with_parent)
        try:
            self._wait_ready(timeout_s)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> bool:
        """Stop Prometheus, then the exporter, by PID; True if either was running."""
        stopped = False
        for which in ("prometheus", "exporter"):
            pid = self.pid(which)
            proc = self._procs.pop(which, None)
            if pid is not None:
                stop_group(pid, 10.0, proc.poll if proc is not None else lambda: None)
                stopped = True
            (self.dir / f"{which}.pid").unlink(missing_ok=True)
        return stopped

    # -- internals ------------------------------------------------------------------------------

    def _exporter_config(self) -> str:
        # process-exporter matches the regexes against the command line's words
        pattern = ".*" + re.escape(str(self.repository)) + ".*"
        return ("process_names:\n"
                f"  - name: {GROUP_NAME}\n"
                "    cmdline:\n"
                f"      - '{pattern}'\n")

    def _prometheus_config(self) -> str:
        p, every = self.ports, f"{SCRAPE_INTERVAL_S}s"
        jobs = (("prometheus", p.prometheus_port, "/metrics"), ("process-exporter", p.exporter_port, "/metrics"),
                ("mlserver", p.metrics_port, "/metrics"))
        lines = ["global:", f"  scrape_interval: {every}", f"  evaluation_interval: {every}", "scrape_configs:"]
        for job, port, path in jobs:
            lines += [f"  - job_name: {job}", f"    metrics_path: {path}",
                      "    static_configs:", f"      - targets: ['{p.host}:{port}']"]
        return "\n".join(lines) + "\n"

    def _spawn(self, which: str, argv: list, stop_with_parent: bool) -> None:
        with open(self.dir / f"{which}.log", "wb") as log:
            proc = subprocess.Popen(
                [str(a) for a in argv], cwd=self.dir, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True,
                preexec_fn=die_with_parent if stop_with_parent and sys.platform == "linux" else None,
            )
        (self.dir / f"{which}.pid").write_text(str(proc.pid))
        self._procs[which] = proc

    def _wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            for which, proc in self._procs.items():
                if proc.poll() is not None:
                    raise TargetError(f"testbed {which} exited with code {proc.returncode} during start-up: "
                                      f"{log_tail(self.dir / f'{which}.log')}")
            if http_ok(self.url + "/-/ready"):
                try:
                    with urllib.request.urlopen(self.url + "/api/v1/targets?state=active", timeout=2) as r:
                        targets = json.loads(r.read())["data"]["activeTargets"]
                    if len(targets) == 3 and all(t.get("health") == "up" for t in targets):
                        return
                except (OSError, ValueError, KeyError):
                    pass
            if time.monotonic() > deadline:
                raise TargetError(f"testbed Prometheus not scraping all targets after {timeout_s:.0f} s: "
                                  f"{log_tail(self.dir / 'prometheus.log')}")
            time.sleep(0.2)
