"""A misbehaving Open Inference Protocol server for fault-injection tests (REST and gRPC).

Run as its own process (``python badserver.py --rest-port P --grpc-port G --mode MODE``) so
a test can SIGKILL it mid-stage and start it again on the same ports. Health, readiness and
metadata always answer correctly (so seldon-load's preflight passes); only inference
misbehaves, as chosen by ``--mode``:

* a behaviour name (see ``REST`` and ``GRPC`` below), or ``mix``: every behaviour of the
  protocol in turn, request by request;
* ``--ok-first S`` / ``--ok-after S``: answer correctly for the first S seconds after the first
  inference request / again from S seconds on (the fault happens mid-stage);
* ``silent``: listen on both ports and accept, but never read or answer (a hung server);
* ``--metadata-mode endless|flood``: the REST metadata answer is an endless chunked stream
  (slow, or as fast as the socket takes it).

Behaviours left out of ``mix`` (``WIRE``) are wire faults with tests of their own: answers
that never end, that are larger than the client's bound, or whose framing is ambiguous.

``GET /_stats`` on the REST port returns how many answers of each behaviour were *completed*
(both protocols), so a test can compare what the client counted with what the server sent.
Prints ``READY`` on stdout once both ports listen.
"""

from __future__ import annotations

import argparse
import itertools
import json
import signal
import socket
import struct
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc

from seldon_load.oip._generated import grpc_predict_v2_pb2 as pb

SERVICE = "inference.GRPCInferenceService"
HANG_LIMIT_S = 60.0
DRIP_INTERVAL_S = 0.3
OK_OUTPUT = {"name": "y", "datatype": "FP32", "shape": [1, 2], "data": [0.5, 1.5]}
METADATA_INPUTS = [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}]
METADATA_OUTPUTS = [{"name": "y", "datatype": "FP32", "shape": [-1, 2]}]

# behaviour -> the error kind seldon-load must count it as (None: counted ok)
REST: dict[str, str | None] = {
    "ok": None,
    "http_503": "http_503",  # 503 with an OIP error body
    "http_500": "http_500",  # 500 with a plain-text body
    "http_400": "http_400",  # 400 with an OIP error body
    "oip_error": "oip_error",  # 200 with an OIP error body
    "malformed_json": "invalid_response",
    "truncated_tensor": "invalid_response",  # fewer elements than the shape says
    "wrong_datatype": "invalid_response",  # strings in an FP32 tensor
    "not_oip": "invalid_response",  # valid JSON, no outputs
    "reset": "connection_reset",  # RST after reading the request
    "truncated_body": "invalid_response",  # Content-Length promises more than is sent
    "drip": "timeout",  # the answer trickles in slower than --request-timeout
    "hang": "timeout",  # reads the request, never answers
    # wire faults (not in the mix)
    "endless_chunked": "timeout",  # a chunked answer whose chunks keep coming, slowly
    "flood_chunked": "invalid_response",  # chunks as fast as the socket takes them, never a last one
    "conflicting_length": "invalid_response",  # two differing Content-Length fields
    "te_and_length": "invalid_response",  # Transfer-Encoding: chunked and a Content-Length
    "unknown_coding": "invalid_response",  # Transfer-Encoding: gzip, chunked
    "oversized": None,  # a valid answer of OVERSIZED_BYTES (invalid past --max-response-bytes)
}
WIRE = ("endless_chunked", "flood_chunked", "conflicting_length", "te_and_length", "unknown_coding", "oversized")
OVERSIZED_BYTES = 2 * 2**20
ENDLESS_CHUNK = b"400\r\n" + b" " * 1024 + b"\r\n"  # 1 KiB of JSON white space per chunk
ENDLESS_INTERVAL_S = 0.005
GRPC: dict[str, str | None] = {
    "ok": None,
    "unavailable": "grpc_UNAVAILABLE",
    "deadline_exceeded": "grpc_DEADLINE_EXCEEDED",
    "resource_exhausted": "grpc_RESOURCE_EXHAUSTED",
    "internal": "grpc_INTERNAL",
    "malformed_pb": "invalid_response",
    "truncated_tensor": "invalid_response",  # 4 raw bytes for a [1, 2] FP32 tensor
    "wrong_shape": "invalid_response",  # 3 typed values for shape [1, 2]
    "hang": "grpc_DEADLINE_EXCEEDED",  # never answers: the client's deadline ends it
    "oversized": None,  # a valid answer of OVERSIZED_BYTES (invalid past --max-response-bytes)
}
# what `mix` cycles through, request by request; `mix:a,b,c` cycles through a, b, c instead.
# `hang` (gRPC) is left out: its deadline would slow every mixed run down (it has its own test).
MIX_REST = [b for b in REST if b != "ok" and b not in WIRE] + ["ok"] * 4
MIX_GRPC = [b for b in GRPC if b != "ok" and b != "hang" and b not in WIRE] + ["ok"] * 4


class State:
    """What to do for the next inference request, and what was done so far."""

    def __init__(self, mode: str, ok_first_s: float, ok_after_s: float | None, message: str,
                 echo_headers: bool, metadata_mode: str = "ok") -> None:
        self.mode = mode
        self.metadata_mode = metadata_mode
        self.ok_first_s = ok_first_s
        self.ok_after_s = ok_after_s
        self.message = message
        self.echo_headers = echo_headers
        self.first_infer: float | None = None
        self.counts: Counter[str] = Counter()
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        if mode.startswith("mix:"):
            custom = mode.split(":", 1)[1].split(",")
            self._cycle = {"rest": itertools.cycle(custom), "grpc": itertools.cycle(custom)}
            self.mode = "mix"
        else:
            self._cycle = {"rest": itertools.cycle(MIX_REST), "grpc": itertools.cycle(MIX_GRPC)}

    def behaviour(self, protocol: str) -> str:
        with self._lock:
            now = time.monotonic()
            if self.first_infer is None:
                self.first_infer = now
            t = now - self.first_infer
            if t < self.ok_first_s or (self.ok_after_s is not None and t >= self.ok_after_s):
                return "ok"
            behaviour = next(self._cycle[protocol]) if self.mode == "mix" else self.mode
            return behaviour if behaviour in (REST if protocol == "rest" else GRPC) else "ok"

    def done(self, protocol: str, behaviour: str) -> None:
        with self._lock:
            self.counts[f"{protocol}:{behaviour}"] += 1

    def error_text(self, header_values: list[str]) -> str:
        if self.echo_headers:
            return f"{self.message} (got headers: {', '.join(header_values)})"
        return self.message

    def hang(self, still_wanted) -> None:
        """Hold the request until the client gives up (or the limit): a server that never answers."""
        deadline = time.monotonic() + HANG_LIMIT_S
        while still_wanted() and time.monotonic() < deadline and not self.stopping.is_set():
            time.sleep(0.05)


# ----------------------------------------------------------------------------- REST


def make_rest_handler(state: State) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:  # quiet
            pass

        def setup(self) -> None:
            super().setup()
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def _send(self, status: int, body: bytes, ctype: str = "application/json",
                  length: int | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body) if length is None else length))
            self.end_headers()
            self.wfile.write(body)
            self.wfile.flush()

        def _json(self, status: int, doc: object) -> None:
            self._send(status, json.dumps(doc).encode())

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            path = self.path
            if path == "/_stats":
                self._json(200, dict(state.counts))
            elif path.startswith("/v2/health/") or path.endswith("/ready"):
                self._json(200, {"ready": True})
            elif path.startswith("/v2/models/") and state.metadata_mode != "ok":
                self._b_endless_chunked("", interval_s=0 if state.metadata_mode == "flood" else ENDLESS_INTERVAL_S)
            elif path.startswith("/v2/models/"):
                name = path.split("/")[3]
                self._json(200, {"name": name, "platform": "badserver", "versions": ["1"],
                                 "inputs": METADATA_INPUTS, "outputs": METADATA_OUTPUTS})
            else:
                self._json(404, {"error": f"no route {path}"})

        def do_POST(self) -> None:  # noqa: N802
            length = int(self.headers.get("Content-Length") or 0)
            self.rfile.read(length)
            if not self.path.endswith("/infer"):
                self._json(404, {"error": "no such route"})
                return
            behaviour = state.behaviour("rest")
            message = state.error_text([v for _, v in self.headers.items()])
            getattr(self, f"_b_{behaviour}")(message)
            state.done("rest", behaviour)

        # ---- behaviours
        def _b_ok(self, message: str) -> None:
            self._json(200, {"model_name": "m", "outputs": [OK_OUTPUT]})

        def _b_http_503(self, message: str) -> None:
            self._json(503, {"error": message})

        def _b_http_500(self, message: str) -> None:
            self._send(500, message.encode(), "text/plain")

        def _b_http_400(self, message: str) -> None:
            self._json(400, {"error": message})

        def _b_oip_error(self, message: str) -> None:
            self._json(200, {"error": message})

        def _b_malformed_json(self, message: str) -> None:
            self._send(200, b'{"model_name": "m", "outputs": [{"name": "y", "datatype": "FP3')

        def _b_truncated_tensor(self, message: str) -> None:
            self._json(200, {"outputs": [{**OK_OUTPUT, "data": [0.5]}]})

        def _b_wrong_datatype(self, message: str) -> None:
            self._json(200, {"outputs": [{**OK_OUTPUT, "data": ["a", "b"]}]})

        def _b_not_oip(self, message: str) -> None:
            self._json(200, {"predictions": [1, 2]})

        def _b_reset(self, message: str) -> None:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
            self.connection.close()

        def _b_truncated_body(self, message: str) -> None:
            body = json.dumps({"model_name": "m", "outputs": [OK_OUTPUT]}).encode()
            self._send(200, body[: len(body) // 2], length=len(body))
            self.close_connection = True

        def _b_drip(self, message: str) -> None:
            body = json.dumps({"model_name": "m", "outputs": [OK_OUTPUT]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.flush()
            try:
                for i in range(len(body)):
                    if state.stopping.wait(DRIP_INTERVAL_S):
                        break
                    self.wfile.write(body[i : i + 1])
                    self.wfile.flush()
            except OSError:
                pass
            self.close_connection = True

        def _b_hang(self, message: str) -> None:
            state.hang(lambda: _peer_open(self.connection))
            self.close_connection = True

        def _head(self, *fields: tuple[str, str]) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            for name, value in fields:
                self.send_header(name, value)
            self.end_headers()

        def _b_endless_chunked(self, message: str, interval_s: float = ENDLESS_INTERVAL_S) -> None:
            self._head(("Transfer-Encoding", "chunked"))
            self.wfile.write(b"%x\r\n{\r\n" % 1)
            deadline = time.monotonic() + HANG_LIMIT_S
            try:
                while time.monotonic() < deadline and not state.stopping.is_set():
                    self.wfile.write(ENDLESS_CHUNK)
                    self.wfile.flush()
                    if interval_s:
                        time.sleep(interval_s)
            except OSError:
                pass  # the client gave up and closed: the point
            self.close_connection = True

        def _b_flood_chunked(self, message: str) -> None:
            self._b_endless_chunked(message, interval_s=0)

        def _framed(self, *fields: tuple[str, str]) -> None:
            body = json.dumps({"model_name": "m", "outputs": [OK_OUTPUT]}).encode()
            self._head(*fields)
            self.wfile.write(body)
            self.wfile.flush()
            self.close_connection = True

        def _b_conflicting_length(self, message: str) -> None:
            n = len(json.dumps({"model_name": "m", "outputs": [OK_OUTPUT]}).encode())
            self._framed(("Content-Length", str(n)), ("Content-Length", str(n - 10)))

        def _b_te_and_length(self, message: str) -> None:
            n = len(json.dumps({"model_name": "m", "outputs": [OK_OUTPUT]}).encode())
            self._framed(("Transfer-Encoding", "chunked"), ("Content-Length", str(n)))

        def _b_unknown_coding(self, message: str) -> None:
            self._framed(("Transfer-Encoding", "gzip, chunked"))

        def _b_oversized(self, message: str) -> None:
            self._send(200, _oversized_json())

    return Handler


def _peer_open(sock: socket.socket) -> bool:
    """False once the client closed its side (a zero-byte peek)."""
    try:
        sock.setblocking(False)
        try:
            return sock.recv(1, socket.MSG_PEEK) != b""
        finally:
            sock.setblocking(True)
    except BlockingIOError:
        return True
    except OSError:
        return False


class _RestServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def handle_error(self, request, client_address) -> None:  # resets and hangs are the point here
        pass


# ----------------------------------------------------------------------------- gRPC


def _oversized_json() -> bytes:
    """A valid OIP answer of OVERSIZED_BYTES: the tensor padded with JSON white space."""
    body = json.dumps({"model_name": "m", "outputs": [OK_OUTPUT]}).encode()
    return body[:-1] + b" " * (OVERSIZED_BYTES - len(body)) + b"}"


def _ok_response() -> bytes:
    msg = pb.ModelInferResponse(model_name="m")
    out = msg.outputs.add(name="y", datatype="FP32", shape=[1, 2])
    del out
    msg.raw_output_contents.append(struct.pack("<2f", 0.5, 1.5))
    return msg.SerializeToString()


def _metadata(name: str) -> bytes:
    msg = pb.ModelMetadataResponse(name=name, platform="badserver", versions=["1"])
    for spec, field in ((METADATA_INPUTS, msg.inputs), (METADATA_OUTPUTS, msg.outputs)):
        for t in spec:
            field.add(name=t["name"], datatype=t["datatype"], shape=t["shape"])
    return msg.SerializeToString()


def make_grpc_handler(state: State) -> grpc.GenericRpcHandler:
    abort_codes = {"unavailable": grpc.StatusCode.UNAVAILABLE,
                   "deadline_exceeded": grpc.StatusCode.DEADLINE_EXCEEDED,
                   "resource_exhausted": grpc.StatusCode.RESOURCE_EXHAUSTED,
                   "internal": grpc.StatusCode.INTERNAL}

    def infer(request: bytes, context: grpc.ServicerContext) -> bytes:
        behaviour = state.behaviour("grpc")
        md = [v for _, v in context.invocation_metadata() if isinstance(v, str)]
        try:
            if behaviour in abort_codes:
                context.abort(abort_codes[behaviour], state.error_text(md))
            if behaviour == "malformed_pb":
                return b"\xff\xff\xff\xff not a protobuf"
            if behaviour == "truncated_tensor":
                msg = pb.ModelInferResponse(model_name="m")
                msg.outputs.add(name="y", datatype="FP32", shape=[1, 2])
                msg.raw_output_contents.append(b"\x00\x00\x80\x3f")
                return msg.SerializeToString()
            if behaviour == "wrong_shape":
                msg = pb.ModelInferResponse(model_name="m")
                out = msg.outputs.add(name="y", datatype="FP32", shape=[1, 2])
                out.contents.fp32_contents.extend([1.0, 2.0, 3.0])
                return msg.SerializeToString()
            if behaviour == "hang":
                state.hang(context.is_active)
            if behaviour == "oversized":
                msg = pb.ModelInferResponse.FromString(_ok_response())
                msg.parameters["pad"].string_param = "x" * OVERSIZED_BYTES
                return msg.SerializeToString()
            return _ok_response()
        finally:
            state.done("grpc", behaviour)

    def control(method: str):
        def answer(request: bytes, context: grpc.ServicerContext) -> bytes:
            if method == "ServerLive":
                return pb.ServerLiveResponse(live=True).SerializeToString()
            if method == "ServerReady":
                return pb.ServerReadyResponse(ready=True).SerializeToString()
            if method == "ModelReady":
                return pb.ModelReadyResponse(ready=True).SerializeToString()
            if method == "ModelMetadata":
                return _metadata(pb.ModelMetadataRequest.FromString(request).name)
            context.abort(grpc.StatusCode.UNIMPLEMENTED, method)
            return b""

        return answer

    handlers = {m: grpc.unary_unary_rpc_method_handler(control(m))
                for m in ("ServerLive", "ServerReady", "ModelReady", "ModelMetadata")}
    handlers["ModelInfer"] = grpc.unary_unary_rpc_method_handler(infer)
    return grpc.method_handlers_generic_handler(SERVICE, handlers)


# ----------------------------------------------------------------------------- silent


def _silent(ports: list[int], stop: threading.Event) -> list[socket.socket]:
    """Listen and accept, never read or answer: connections hang until the client gives up."""
    listeners, held = [], []
    for port in ports:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
        s.listen(128)
        listeners.append(s)

    def accept(s: socket.socket) -> None:
        while not stop.is_set():
            try:
                conn, _ = s.accept()
            except OSError:
                return
            held.append(conn)

    for s in listeners:
        threading.Thread(target=accept, args=(s,), daemon=True).start()
    return listeners


def _tls_context(a: argparse.Namespace):
    import ssl

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(a.tls_cert, a.tls_key)
    if a.tls_client_ca:
        ctx.load_verify_locations(a.tls_client_ca)
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--rest-port", type=int, required=True)
    p.add_argument("--grpc-port", type=int, required=True)
    p.add_argument("--mode", default="ok")
    p.add_argument("--ok-first", type=float, default=0.0)
    p.add_argument("--ok-after", type=float, default=None)
    p.add_argument("--message", default="injected fault")
    p.add_argument("--echo-headers", action="store_true")
    p.add_argument("--metadata-mode", choices=("ok", "endless", "flood"), default="ok")
    p.add_argument("--tls-cert", help="serve TLS (REST and gRPC) with this certificate and --tls-key")
    p.add_argument("--tls-key")
    p.add_argument("--tls-client-ca", help="with --tls-cert: require a client certificate signed by this CA")
    a = p.parse_args(argv)
    state = State(a.mode, a.ok_first, a.ok_after, a.message, a.echo_headers, a.metadata_mode)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    if a.mode == "silent":
        _silent([a.rest_port, a.grpc_port], stop)
        print("READY", flush=True)
        stop.wait(600)
        return 0
    modes = a.mode.split(":", 1)[1].split(",") if a.mode.startswith("mix:") else [a.mode]
    unknown = [m for m in modes if m != "mix" and m not in REST and m not in GRPC]
    if unknown:
        p.error(f"unknown mode {unknown}")
    rest = _RestServer(("127.0.0.1", a.rest_port), make_rest_handler(state))
    if a.tls_cert:
        rest.socket = _tls_context(a).wrap_socket(rest.socket, server_side=True)
    threading.Thread(target=rest.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
    server = grpc.server(ThreadPoolExecutor(max_workers=128), handlers=[make_grpc_handler(state)],
                         options=[("grpc.so_reuseport", 1)])
    if a.tls_cert:
        with open(a.tls_key, "rb") as k, open(a.tls_cert, "rb") as c:
            key_cert = (k.read(), c.read())
        client_ca = open(a.tls_client_ca, "rb").read() if a.tls_client_ca else None  # noqa: SIM115
        creds = grpc.ssl_server_credentials([key_cert], root_certificates=client_ca,
                                            require_client_auth=client_ca is not None)
        server.add_secure_port(f"127.0.0.1:{a.grpc_port}", creds)
    else:
        server.add_insecure_port(f"127.0.0.1:{a.grpc_port}")
    server.start()
    print("READY", flush=True)
    stop.wait(600)
    state.stopping.set()
    server.stop(grace=0)
    rest.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
