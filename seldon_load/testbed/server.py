"""Start, watch and stop the local Core-2-like target: one MLServer process on 127.0.0.1.

The model repository is written into ``state_dir`` at each ``up()``; MLServer runs in its own
process group so ``down()`` can stop it and anything it spawned by PID, from any process.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import seldon_load
from seldon_load.errors import ConfigError, TargetError
from seldon_load.testbed.faulty import FAULTY_MODELS, faulty_settings
from seldon_load.testbed.ingress import INGRESS_DIR, Ingress, IngressPorts
from seldon_load.testbed.procs import (
    die_with_parent,
    free_port,
    http_ok,
    is_running,
    log_tail,
    port_in_use,
    stop_group,
    tcp_open,
)
from seldon_load.testbed.prometheus import PROM_DIR, PrometheusStack, PromPorts

__all__ = ["MODEL_NAMES", "PIPELINES", "Testbed", "TestbedConfig", "free_port"]
from seldon_load.testbed.sklearn_model import write_iris_model

PIPELINES_DIR = Path(__file__).resolve().parent / "pipelines"
SYNTH_RUNTIME = "seldon_load.testbed.synth.SynthModel"
PIPELINE_RUNTIME = "seldon_load.testbed.pipeline_runtime.PipelineModel"
STATE_FILE = "testbed.json"
PID_FILE = "mlserver.pid"
LOG_FILE = "mlserver.log"
REPO_DIR = "repository"

# name -> (service_time_ms, mode, n_inputs)
SYNTH_MODELS: dict[str, tuple[float, str, int]] = {
    "synth-1ms": (1.0, "wait", 1),
    "synth-2ms": (2.0, "wait", 1),
    "synth-3ms": (3.0, "wait", 1),
    "synth-5ms": (5.0, "wait", 1),
    "synth-8ms": (8.0, "wait", 1),
    "synth-10ms": (10.0, "wait", 1),
    "synth-20ms": (20.0, "wait", 1),
    "synth-busy-2ms": (2.0, "busy", 1),
    "synth-cpu-5ms": (5.0, "cpu", 1),
    "join-1ms": (1.0, "wait", 2),
}
# Synthetic models whose metadata declares no inputs or outputs, as many real step models:
# name -> (service_time_ms, output_width). Any input names and widths are accepted.
UNDECLARED_MODELS: dict[str, tuple[float, int]] = {
    "bare-1ms": (1.0, 3),
    "bare-20ms": (20.0, 4),
    "bare-join-1ms": (1.0, 4),
}
IRIS_MODEL = "iris"
# pipeline name -> spec file in PIPELINES_DIR
PIPELINES: dict[str, str] = {"linear": "linear.yaml", "branching": "branching.yaml", "slow-branch": "slow-branch.yaml",
                             "bare-steps": "bare-steps.yaml"}
MODEL_NAMES: tuple[str, ...] = (*SYNTH_MODELS, *UNDECLARED_MODELS, *FAULTY_MODELS, IRIS_MODEL, *PIPELINES)


@dataclass
class TestbedConfig:
    """Where the testbed listens and keeps its files."""

    __test__ = False  # not a pytest test class

    host: str = "127.0.0.1"
    http_port: int = 8080
    grpc_port: int = 8081
    metrics_port: int = 8082
    state_dir: str = ".testbed"
    parallel_workers: int = 0
    stage_overhead_ms: float = 2.0
    stop_with_parent: bool = False
    """Linux: MLServer gets SIGTERM if the process that started it dies (tests: no orphans
    even when a run is killed). Off for the CLI, whose ``up`` returns while MLServer runs on."""
    ingress: bool = False
    """Also run the Core-2-like Envoy ingress (testbed/ingress.py) on the two ports below."""
    ingress_port: int = 9000
    ingress_tls_port: int = 9443
    prometheus: bool = False
    """Also run a real Prometheus and process-exporter (testbed/prometheus.py) on the two ports below."""
    prometheus_port: int = 9090
    exporter_port: int = 9256


class Testbed:
    """One MLServer serving synthetic models, an sklearn model and Seldon pipelines."""

    __test__ = False  # not a pytest test class

    def __init__(self, config: TestbedConfig | None = None) -> None:
        self.config = config or TestbedConfig()
        self.state_dir = Path(self.config.state_dir).resolve()
        self._process: subprocess.Popen[bytes] | None = None
        self.models: list[str] = self._saved_models() or list(MODEL_NAMES)
        cfg = self.config
        self.ingress = Ingress(self.state_dir / INGRESS_DIR, IngressPorts(
            cfg.host, cfg.ingress_port, cfg.ingress_tls_port, cfg.http_port, cfg.grpc_port))
        self.prometheus = PrometheusStack(self.state_dir / PROM_DIR, PromPorts(
            cfg.host, cfg.prometheus_port, cfg.exporter_port, cfg.metrics_port), self.state_dir / REPO_DIR)

    @classmethod
    def for_tests(cls, tmpdir: str | os.PathLike[str], ingress: bool = False, prometheus: bool = False) -> Testbed:
        """A testbed on free loopback ports with its state in tmpdir (and the ingress, if asked)."""
        socks = []
        try:
            for _ in range(7):  # hold them all so they differ
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sock.bind(("127.0.0.1", 0))
                socks.append(sock)
            http_port, grpc_port, metrics_port, ingress_port, tls_port, prom_port, exporter_port = (
                int(s.getsockname()[1]) for s in socks)
        finally:
            for sock in socks:
                sock.close()
        return cls(
            TestbedConfig(
                http_port=http_port,
                grpc_port=grpc_port,
                metrics_port=metrics_port,
                state_dir=str(Path(tmpdir) / "testbed"),
                stop_with_parent=True,
                ingress=ingress,
                ingress_port=ingress_port,
                ingress_tls_port=tls_port,
                prometheus=prometheus,
                prometheus_port=prom_port,
                exporter_port=exporter_port,
            )
        )

    @classmethod
    def from_state_dir(cls, state_dir: str | os.PathLike[str], **overrides: Any) -> Testbed:
        """The testbed last started from state_dir (its ports), or the defaults; ``overrides``
        (TestbedConfig fields, None = keep) win. For status/down from another process."""
        fields = {"state_dir": str(state_dir)}
        try:
            saved = json.loads((Path(state_dir) / STATE_FILE).read_text())["config"]
            fields = {**{k: v for k, v in saved.items() if k in TestbedConfig.__dataclass_fields__}, **fields}
        except (OSError, ValueError, KeyError, TypeError):
            pass
        fields.update({k: v for k, v in overrides.items() if v is not None})
        return cls(TestbedConfig(**fields))

    # -- addresses ------------------------------------------------------------------------------

    @property
    def rest_url(self) -> str:
        return f"http://{self.config.host}:{self.config.http_port}"

    @property
    def grpc_target(self) -> str:
        return f"{self.config.host}:{self.config.grpc_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self.config.host}:{self.config.metrics_port}/metrics"

    @property
    def ingress_url(self) -> str:
        """REST through the ingress (seldon-mesh); the same port takes gRPC as ``ingress_grpc_target``."""
        return f"http://{self.config.host}:{self.config.ingress_port}"

    @property
    def ingress_grpc_target(self) -> str:
        return f"{self.config.host}:{self.config.ingress_port}"

    @property
    def ingress_tls_url(self) -> str:
        """REST over TLS through the ingress; verify with ``ca_file``. gRPC: ``grpcs://`` on the same port."""
        return f"https://{self.config.host}:{self.config.ingress_tls_port}"

    @property
    def ingress_tls_grpc_target(self) -> str:
        return f"grpcs://{self.config.host}:{self.config.ingress_tls_port}"

    @property
    def ca_file(self) -> Path:
        """The CA that signed the ingress's TLS certificate (made at each ``up``)."""
        return self.ingress.ca_file

    @property
    def log_path(self) -> Path:
        return self.state_dir / LOG_FILE

    @property
    def pid(self) -> int | None:
        """PID of the running MLServer started from this state_dir, if any."""
        try:
            pid = int((self.state_dir / PID_FILE).read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if is_running(pid, "mlserver") else None

    # -- life cycle -----------------------------------------------------------------------------

    def up(self, timeout_s: float = 90.0) -> None:
        """Write the model repository, start MLServer and wait until every model is ready."""
        running = self.pid or self.ingress.pid or self.prometheus.pid("prometheus")
        if running is not None:
            raise TargetError(
                f"a testbed is already running from {self.state_dir} (pid {running}); stop it first (testbed down)"
            )
        cfg = self.config
        ports = {"http": cfg.http_port, "grpc": cfg.grpc_port, "metrics": cfg.metrics_port}
        if cfg.ingress:
            ports.update({"ingress": cfg.ingress_port, "ingress TLS": cfg.ingress_tls_port})
        if cfg.prometheus:
            ports.update({"Prometheus": cfg.prometheus_port, "process-exporter": cfg.exporter_port})
        if len(set(ports.values())) != len(ports):
            raise ConfigError(f"testbed ports must differ ({', '.join(f'{k} {v}' for k, v in ports.items())})")
        for what, port in ports.items():
            if not 1 <= port <= 65535:
                raise ConfigError(f"testbed {what} port must be between 1 and 65535 (got {port})")
            if port_in_use(cfg.host, port):
                raise TargetError(f"testbed {what} port {cfg.host}:{port} is already in use; pick another")
        repo = self._write_repository()
        # MLSERVER_* variables of the caller's shell must not change the testbed.
        env = {k: v for k, v in os.environ.items() if not k.startswith("MLSERVER_")}
        package_root = str(Path(seldon_load.__file__).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        with open(self.log_path, "wb") as log:
            self._process = subprocess.Popen(
                [*_mlserver_command(), "start", str(repo)],
                cwd=self.state_dir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # own process group: down() signals the whole group
                preexec_fn=die_with_parent if cfg.stop_with_parent and sys.platform == "linux" else None,
            )
        (self.state_dir / PID_FILE).write_text(str(self._process.pid))
        try:
            self._wait_ready(timeout_s)
            if cfg.ingress:
                models = [m for m in self.models if m not in PIPELINES]
                pipelines = [m for m in self.models if m in PIPELINES]
                self.ingress.start(models, pipelines, stop_with_parent=cfg.stop_with_parent)
            if cfg.prometheus:
                self.prometheus.start(stop_with_parent=cfg.stop_with_parent)
        except BaseException:
            self.down()
            raise

    def down(self, timeout_s: float = 15.0) -> bool:
        """Stop the ingress, then MLServer and everything it spawned; True if something was running."""
        ingress_stopped = self.prometheus.stop() | self.ingress.stop()
        pid = self.pid
        if pid is None:
            self._reap()
            (self.state_dir / PID_FILE).unlink(missing_ok=True)
            return ingress_stopped
        try:
            stop_group(pid, timeout_s, self._poll)
        finally:
            self._reap()
        (self.state_dir / PID_FILE).unlink(missing_ok=True)
        return True

    def status(self) -> dict[str, Any]:
        """Running?, PID, URLs and which models report ready."""
        pid = self.pid
        models: dict[str, bool] = {}
        if pid is not None:
            models = {name: self._model_ready(name) for name in self.models}
        return {
            "running": pid is not None,
            "pid": pid,
            "ready": pid is not None and all(models.values()),
            "rest_url": self.rest_url,
            "grpc_target": self.grpc_target,
            "metrics_url": self.metrics_url,
            **self._ingress_status(),
            **({"prometheus": {"url": self.prometheus.url, "pid": self.prometheus.pid("prometheus"),
                               "exporter_pid": self.prometheus.pid("exporter")}}
               if self.config.prometheus or self.prometheus.pid("prometheus") else {}),
            "state_dir": str(self.state_dir),
            "log": str(self.log_path),
            "models": models,
        }

    # -- internals ------------------------------------------------------------------------------

    def _ingress_status(self) -> dict[str, Any]:
        if not self.config.ingress and self.ingress.pid is None:
            return {}
        return {"ingress": {"pid": self.ingress.pid, "url": self.ingress_url, "grpc_target": self.ingress_grpc_target,
                            "tls_url": self.ingress_tls_url, "ca_file": str(self.ca_file),
                            "log": str(self.ingress.log_path)}}

    def _write_repository(self) -> Path:
        cfg = self.config
        self.state_dir.mkdir(parents=True, exist_ok=True)
        repo = self.state_dir / REPO_DIR
        self.models = list(MODEL_NAMES)
        if repo.exists():
            for child in repo.iterdir():  # keep the trained iris model, drop stale settings
                if child.is_dir() and child.name != IRIS_MODEL:
                    shutil.rmtree(child)
        repo.mkdir(exist_ok=True)
        settings = {
            "debug": False,
            "host": cfg.host,
            "http_port": cfg.http_port,
            "grpc_port": cfg.grpc_port,
            "metrics_port": cfg.metrics_port,
            "metrics_endpoint": "/metrics",
            "metrics_dir": str(self.state_dir / "metrics"),
            "environments_dir": str(self.state_dir / "envs"),
            "parallel_workers": cfg.parallel_workers,
            "load_models_at_startup": True,
            "server_name": "seldon-load-testbed",
        }
        _write_json(repo / "settings.json", settings)
        for name, (service_time_ms, mode, n_inputs) in SYNTH_MODELS.items():
            _write_json(
                repo / name / "model-settings.json", _synth_settings(name, service_time_ms, mode, n_inputs)
            )
        for name, (service_time_ms, width) in UNDECLARED_MODELS.items():
            _write_json(repo / name / "model-settings.json", _undeclared_settings(name, service_time_ms, width))
        for name in FAULTY_MODELS:  # models that fail on purpose (testbed/faulty.py)
            _write_json(repo / name / "model-settings.json", faulty_settings(name))
        write_iris_model(repo / IRIS_MODEL)
        for name, spec_file in PIPELINES.items():
            spec_path = PIPELINES_DIR / spec_file
            if spec_path.is_file():
                _write_json(repo / name / "model-settings.json", self._pipeline_settings(name, spec_path))
            else:
                self.models.remove(name)
        state = {"config": asdict(cfg), "models": self.models}
        _write_json(self.state_dir / STATE_FILE, state)
        return repo

    def _pipeline_settings(self, name: str, spec_path: Path) -> dict[str, Any]:
        return {
            "name": name,
            "implementation": PIPELINE_RUNTIME,
            "inputs": [{"name": "INPUT0", "datatype": "FP32", "shape": [-1, 4]}],
            "outputs": [{"name": "OUTPUT0", "datatype": "FP32", "shape": [-1, 4]}],
            "parameters": {
                "version": "v1",
                "extra": {
                    "spec": str(spec_path),
                    "pipeline": name,
                    "grpc_target": self.grpc_target,
                    "stage_overhead_ms": self.config.stage_overhead_ms,
                },
            },
        }

    def _saved_models(self) -> list[str] | None:
        try:
            return list(json.loads((self.state_dir / STATE_FILE).read_text())["models"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _wait_ready(self, timeout_s: float) -> None:
        cfg = self.config
        deadline = time.monotonic() + timeout_s
        pending = list(self.models)
        while True:
            assert self._process is not None
            code = self._process.poll()
            if code is not None:
                raise TargetError(
                    f"testbed MLServer exited with code {code} during start-up: {self._log_tail()}"
                )
            if http_ok(f"{self.rest_url}/v2/health/ready"):
                pending = [name for name in pending if not self._model_ready(name)]
                if not pending and all(tcp_open(cfg.host, p) for p in (cfg.grpc_port, cfg.metrics_port)):
                    return
            if time.monotonic() > deadline:
                raise TargetError(
                    f"testbed not ready after {timeout_s:.0f} s (waiting for {', '.join(pending)}): "
                    f"{self._log_tail()}"
                )
            time.sleep(0.1)

    def _model_ready(self, name: str) -> bool:
        return http_ok(f"{self.rest_url}/v2/models/{name}/ready")

    def _log_tail(self) -> str:
        return log_tail(self.log_path)

    def _poll(self) -> None:
        if self._process is not None:
            self._process.poll()

    def _reap(self) -> None:
        if self._process is not None:
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
            self._process = None


def _synth_settings(name: str, service_time_ms: float, mode: str, n_inputs: int) -> dict[str, Any]:
    return {
        "name": name,
        "implementation": SYNTH_RUNTIME,
        "inputs": [{"name": f"INPUT{i}", "datatype": "FP32", "shape": [-1, 4]} for i in range(n_inputs)],
        "outputs": [{"name": "OUTPUT0", "datatype": "FP32", "shape": [-1, 4]}],
        "parameters": {
            "version": "v1",
            "extra": {
                "service_time_ms": service_time_ms,
                "mode": mode,
                "output_width": 4,
                "n_inputs": n_inputs,
            },
        },
    }


def _undeclared_settings(name: str, service_time_ms: float, output_width: int) -> dict[str, Any]:
    settings = _synth_settings(name, service_time_ms, "wait", 1)
    del settings["inputs"], settings["outputs"]
    settings["parameters"]["extra"].update(output_width=output_width, declare_metadata=False)
    return settings


def _mlserver_command() -> list[str]:
    script = Path(sys.executable).parent / "mlserver"
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-c", "import sys; from mlserver.cli.main import main; sys.exit(main())"]


def _write_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2))
