"""Fast OIP targets that cost the machine next to nothing per request, so a benchmark
measures the generator and not the server.

``NginxTarget`` (the reference fast target): Debian's nginx answering every OIP call with a
static reply, on loopback, with its own config in a temp dir, started in the foreground
and stopped by PID. REST over HTTP/1.1 keep-alive (``return 200 '<json>'``) and gRPC over
cleartext HTTP/2 (a static length-prefixed protobuf file with ``grpc-status: 0`` as a
trailer). ``PyTarget`` is a tiny gevent HTTP/1.1 server for smoke runs where nginx is not
installed.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from harness import free_port

MODEL = "fast"
INPUTS = [{"name": "INPUT0", "datatype": "FP32", "shape": [-1, 4]}]
OUTPUTS = [{"name": "OUTPUT0", "datatype": "FP32", "shape": [-1, 4]}]
METADATA = {"name": MODEL, "versions": [], "platform": "static", "inputs": INPUTS, "outputs": OUTPUTS}
INFER_REPLY = {
    "model_name": MODEL,
    "model_version": "v1",
    "id": "static",
    "parameters": {},
    "outputs": [{"name": "OUTPUT0", "shape": [1, 4], "datatype": "FP32", "data": [1.0, 2.0, 3.0, 4.0]}],
}


def _grpc_frame(message: Any) -> bytes:
    body = message.SerializeToString()
    return struct.pack(">BI", 0, len(body)) + body


def grpc_replies() -> dict[str, bytes]:
    """Length-prefixed protobuf replies for the gRPC methods a run calls."""
    from seldon_load.oip._generated import grpc_predict_v2_pb2 as pb

    infer = pb.ModelInferResponse(model_name=MODEL, model_version="v1", id="static")
    out = infer.outputs.add(name="OUTPUT0", datatype="FP32", shape=[1, 4])
    out.contents.fp32_contents.extend([1.0, 2.0, 3.0, 4.0])
    meta = pb.ModelMetadataResponse(name=MODEL, platform="static")
    for t, field in ((INPUTS[0], meta.inputs), (OUTPUTS[0], meta.outputs)):
        field.add(name=t["name"], datatype=t["datatype"], shape=t["shape"])
    return {
        "ModelInfer": _grpc_frame(infer),
        "ModelMetadata": _grpc_frame(meta),
        "ModelReady": _grpc_frame(pb.ModelReadyResponse(ready=True)),
        "ServerLive": _grpc_frame(pb.ServerLiveResponse(live=True)),
        "ServerReady": _grpc_frame(pb.ServerReadyResponse(ready=True)),
    }


def nginx_binary() -> str | None:
    for candidate in (shutil.which("nginx"), "/usr/sbin/nginx"):
        if candidate and os.path.isfile(candidate):
            return candidate
    return None


def _nginx_conf(tmp: Path, http_port: int, grpc_port: int, workers: int = 1) -> str:
    reuse = " reuseport" if workers > 1 else ""  # the kernel spreads connections over the workers
    affinity = " worker_cpu_affinity auto;" if workers > 1 else ""  # worker i on CPU i
    reply = json.dumps(INFER_REPLY, separators=(",", ":"))
    meta = json.dumps(METADATA, separators=(",", ":"))
    temp = "\n".join(f"  {d}_temp_path {tmp / d};" for d in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    grpc_locations = "\n".join(
        f"""    location = /inference.GRPCInferenceService/{method} {{
      error_page 405 =200 /grpc-static/{method}.bin;
      return 405;
    }}"""
        for method in grpc_replies()
    )
    return f"""
worker_processes {workers};{affinity}
pid {tmp / "nginx.pid"};
error_log {tmp / "error.log"} warn;
events {{ worker_connections 8192; }}
http {{
  access_log off;
{temp}
  keepalive_requests 100000000;
  keepalive_timeout 300s;
  server {{
    listen 127.0.0.1:{http_port} backlog=4096{reuse};
    location ~ ^/v2/models/[^/]+/infer$ {{ default_type application/json; return 200 '{reply}'; }}
    location ~ ^/v2/models/[^/]+/ready$ {{ return 200; }}
    location = /v2/health/ready {{ return 200; }}
    location = /v2/health/live {{ return 200; }}
    location ~ ^/v2/models/[^/]+$ {{ default_type application/json; return 200 '{meta}'; }}
    location = /nginx_status {{ stub_status; }}
  }}
  server {{
    listen 127.0.0.1:{grpc_port} http2 backlog=4096{reuse};
    http2_max_concurrent_streams 1024;
{grpc_locations}
    location /grpc-static/ {{
      internal;
      alias {tmp / "grpc"}/;
      default_type application/grpc;
      add_header grpc-accept-encoding identity;
      add_trailer grpc-status 0;
      add_trailer grpc-message "";
    }}
  }}
}}
"""


class NginxTarget:
    """nginx on two free loopback ports (REST, gRPC), ``workers`` worker processes (more than
    one: one per core, connections spread by the kernel); ``pid`` is the first worker's (the
    process that serves, for pinning), ``pids`` all of them (for CPU accounting)."""

    def __init__(self, workers: int = 1) -> None:
        self.workers = workers
        exe = nginx_binary()
        if exe is None:
            raise RuntimeError("nginx not installed (Debian: apt-get install -y nginx-light)")
        self.exe = exe
        self.http_port, self.grpc_port = free_port(), free_port()
        self._tmp = tempfile.TemporaryDirectory(prefix="seldon-load-nginx-")
        self.dir = Path(self._tmp.name)
        self.proc: subprocess.Popen | None = None

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def requests(self) -> float:
        """Requests nginx has handled so far (stub_status), the ruler for throughput."""
        import urllib.request

        with urllib.request.urlopen(f"{self.rest_url}/nginx_status", timeout=2) as r:
            lines = r.read().decode().splitlines()
        return float(lines[2].split()[2])

    @property
    def pids(self) -> list[int]:
        import psutil

        if self.proc is None:
            return []
        kids = psutil.Process(self.proc.pid).children()
        return [k.pid for k in kids] if kids else [self.proc.pid]

    @property
    def pid(self) -> int | None:
        return (self.pids or [None])[0]

    def __enter__(self) -> NginxTarget:
        self.dir.chmod(0o755)  # nginx's worker runs as an unprivileged user and reads the replies
        (self.dir / "grpc").mkdir(mode=0o755)
        for method, data in grpc_replies().items():
            (self.dir / "grpc" / f"{method}.bin").write_bytes(data)
        conf = self.dir / "nginx.conf"
        conf.write_text(_nginx_conf(self.dir, self.http_port, self.grpc_port, self.workers))
        self.proc = subprocess.Popen([self.exe, "-p", str(self.dir), "-c", str(conf), "-g", "daemon off;"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
        deadline = time.monotonic() + 10
        while not all(_open(p) for p in (self.http_port, self.grpc_port)):
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
                raise RuntimeError(f"nginx exited with {self.proc.returncode}: {err.strip()[-300:]}")
            if time.monotonic() > deadline:
                self.__exit__()
                raise RuntimeError("nginx did not start listening within 10 s")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGQUIT)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
        self._tmp.cleanup()


def _open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


# ------------------------------------------------------------------------------ python target
_PY_TARGET = r'''
import sys
from gevent.server import StreamServer
body = sys.argv[2].encode()
meta = sys.argv[3].encode()
def resp(b, ctype=b"application/json"):
    return b"HTTP/1.1 200 OK\r\nContent-Type: " + ctype + b"\r\nContent-Length: %d\r\n\r\n" % len(b) + b
INFER, META, EMPTY = resp(body), resp(meta), resp(b"")
def handle(sock, _):
    buf = b""
    try:
        while True:
            while b"\r\n\r\n" not in buf:
                chunk = sock.recv(65536)
                if not chunk:
                    return
                buf += chunk
            head, buf = buf.split(b"\r\n\r\n", 1)
            n = 0
            low = head.lower()
            i = low.find(b"content-length:")
            if i >= 0:
                n = int(low[i + 15:].split(b"\r\n", 1)[0])
            while len(buf) < n:
                buf += sock.recv(65536)
            buf = buf[n:]
            path = head.split(b" ", 2)[1]
            sock.sendall(INFER if path.endswith(b"/infer") else EMPTY if path.endswith(b"/ready") else META)
    except OSError:
        return
StreamServer(("127.0.0.1", int(sys.argv[1])), handle).serve_forever()
'''


class PyTarget:
    """A tiny gevent HTTP/1.1 OIP server in its own process (smoke runs only)."""

    def __init__(self) -> None:
        self.http_port = free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def __enter__(self) -> PyTarget:
        import sys

        self.proc = subprocess.Popen(
            [sys.executable, "-c", _PY_TARGET, str(self.http_port), json.dumps(INFER_REPLY), json.dumps(METADATA)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 15
        while not _open(self.http_port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.__exit__()
                raise RuntimeError("python smoke target did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
