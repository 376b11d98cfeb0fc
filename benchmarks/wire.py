"""A wire-level judge of REST and gRPC latency: what the loopback interface saw, per generator.

When two generators disagree on a percentile, neither is the ruler. A packet capture is:
the kernel stamps each packet as it crosses ``lo``. On one kept-alive HTTP/1.1 connection
(neither generator pipelines) an exchange runs from the first client payload segment after
an answer to the last server payload segment before the next request. Connections are
told apart by their client port, and each port is mapped to the process that owns it
while the run is on (``psutil.net_connections``), so one capture judges both generators of
a side-by-side run. gRPC (HTTP/2, many streams on a connection) needs the payloads: each
direction of a connection is read as a stream of HTTP/2 frames, and a call runs from the
segment that carries its first HEADERS frame to the one that ends its last server frame
(trailers with END_STREAM, or RST_STREAM). tcpdump must be installed and allowed to capture
(root, or CAP_NET_RAW).
"""

from __future__ import annotations

import shutil
import signal
import struct
import subprocess
import tempfile
import threading
from pathlib import Path

import numpy as np
import psutil

SNAPLEN = 128  # HTTP/1.1: headers are enough, payload sizes come from the IP header
SNAPLEN_H2 = 262144  # HTTP/2: frames are read from the payloads (lo's MTU is 65 536)
_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def tcpdump_binary() -> str | None:
    return shutil.which("tcpdump") or next((p for p in ("/usr/bin/tcpdump", "/usr/sbin/tcpdump")
                                            if Path(p).is_file()), None)


class Capture:
    """tcpdump on ``lo`` for one server port, plus the owners of the client ports seen."""

    def __init__(self, server_port: int, http2: bool = False) -> None:
        self.port = server_port
        self.http2 = http2
        self._dir = tempfile.TemporaryDirectory(prefix="seldon-load-wire-")
        self.file = Path(self._dir.name) / "lo.pcap"
        self.owners: dict[int, str] = {}  # client port -> label of its process (see label_of)
        self._labels: dict[int, str] = {}
        self._parsed: dict[int, list[tuple[float, float]]] | None = None
        self._proc: subprocess.Popen | None = None
        self._stop = threading.Event()
        self._sampler = threading.Thread(target=self._sample_owners, daemon=True)

    def __enter__(self) -> Capture:
        exe = tcpdump_binary()
        if exe is None:
            raise RuntimeError("tcpdump not installed (Debian: apt-get install -y tcpdump)")
        self._proc = subprocess.Popen(
            [exe, "-i", "lo", "-n", "-U", "-s", str(SNAPLEN_H2 if self.http2 else SNAPLEN), "--time-stamp-precision=nano", "-w", str(self.file),
             f"tcp port {self.port}"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
        assert self._proc.stderr is not None
        # its first line is "listening on lo, ..." once it captures (or an error, and it exits)
        line = self._proc.stderr.readline().decode(errors="replace")
        if "listening" not in line:
            self.__exit__()
            raise RuntimeError(f"tcpdump did not start: {line.strip()}")
        self._sampler.start()
        return self

    def _sample_owners(self) -> None:
        while not self._stop.wait(0.5):
            try:
                conns = psutil.net_connections(kind="tcp4")
            except psutil.Error:
                continue
            for c in conns:
                if c.pid and c.raddr and c.raddr.port == self.port and c.laddr.ip == "127.0.0.1":
                    if c.pid not in self._labels:
                        self._labels[c.pid] = label_of(c.pid)
                    self.owners.setdefault(c.laddr.port, self._labels[c.pid])

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._sampler.is_alive():
            self._sampler.join(timeout=5)
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGINT)  # flushes the file
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout=5)

    def timed(self, label: str) -> list[tuple[float, float]]:
        """(request start s, exchange time ms) on the connections of the processes labelled ``label``."""
        ports = {port for port, owner in self.owners.items() if owner == label}
        if self._parsed is None:  # read once the capture has ended
            self._parsed = (timed_calls if self.http2 else timed_exchanges)(self.file, self.port)
        return [x for port, xs in self._parsed.items() if port in ports for x in xs]

    def latencies_ms(self, label: str, within: tuple[float, float] | None = None) -> list[float]:
        """Exchange times (ms) of ``label``'s requests, those that started ``within`` (s, s) if given."""
        return [ms for ts, ms in self.timed(label) if within is None or within[0] <= ts <= within[1]]

    def span(self, label: str) -> tuple[float, float] | None:
        """When ``label``'s first and last requests started on the wire."""
        starts = [ts for ts, _ in self.timed(label)]
        return (min(starts), max(starts)) if starts else None

    def close(self) -> None:
        self._dir.cleanup()


def label_of(pid: int) -> str:
    """"k6", "worker" (a seldon-load/Locust worker) or "other" (a master's preflight, a scraper)."""
    try:
        proc = psutil.Process(pid)
        if proc.name().startswith("k6"):
            return "k6"
        return "worker" if "--worker" in proc.cmdline() else "other"
    except psutil.Error:
        return "other"


def _packets(path: Path, payloads: bool = False):
    """(timestamp s, src port, dst port, TCP payload size) of each IPv4 TCP packet; with
    ``payloads`` also its sequence number and the captured payload bytes."""
    data = path.read_bytes()
    magic = struct.unpack_from("<I", data, 0)[0]
    order = "<" if magic in (0xA1B2C3D4, 0xA1B23C4D) else ">"
    magic = struct.unpack_from(order + "I", data, 0)[0]
    frac = 1e-9 if magic == 0xA1B23C4D else 1e-6
    link = struct.unpack_from(order + "I", data, 20)[0]
    offset = {1: 14, 113: 16, 276: 20, 0: 4}.get(link)
    if offset is None:
        raise RuntimeError(f"unsupported pcap link type {link}")
    pos = 24
    while pos + 16 <= len(data):
        sec, sub, incl, _orig = struct.unpack_from(order + "IIII", data, pos)
        pkt = data[pos + 16: pos + 16 + incl]
        pos += 16 + incl
        ip = pkt[offset:]
        if len(ip) < 20 or ip[0] >> 4 != 4 or ip[9] != 6:
            continue
        ihl = (ip[0] & 15) * 4
        total = struct.unpack_from("!H", ip, 2)[0]
        tcp = ip[ihl:]
        if len(tcp) < 13:
            continue
        sport, dport, seq = struct.unpack_from("!HHI", tcp, 0)
        doff = (tcp[12] >> 4) * 4
        payload = total - ihl - doff
        if payloads:
            body = tcp[doff:doff + payload]
            if len(body) < payload:
                raise RuntimeError("HTTP/2 judge: payloads cut short (capture with a larger snaplen)")
            yield sec + sub * frac, sport, dport, seq, body
        else:
            yield sec + sub * frac, sport, dport, payload


def timed_exchanges(path: Path, server_port: int) -> dict[int, list[tuple[float, float]]]:
    """Per client port, (request start s, request-to-answer ms) of each exchange on the wire."""
    out: dict[int, list[tuple[float, float]]] = {}
    state: dict[int, list[float | None]] = {}  # port -> [request start, last answer segment]
    for ts, sport, dport, payload in _packets(path):
        if payload <= 0:
            continue
        if dport == server_port:
            st = state.setdefault(sport, [None, None])
            if st[0] is None or st[1] is not None:
                if st[0] is not None and st[1] is not None:
                    out.setdefault(sport, []).append((st[0], (st[1] - st[0]) * 1e3))
                st[0], st[1] = ts, None
        elif sport == server_port and dport in state:
            state[dport][1] = ts
    for port, (start, end) in state.items():
        if start is not None and end is not None:
            out.setdefault(port, []).append((start, (end - start) * 1e3))
    return out


class _FrameReader:
    """One direction of an HTTP/2 connection: bytes in (in TCP order), frames out."""

    def __init__(self, from_client: bool) -> None:
        self.buf = b""
        self.next_seq: int | None = None
        self.preface_checked = not from_client  # a client opens with the preface, then frames
        self.head_ts = 0.0  # when the first byte of ``buf`` came

    def feed(self, ts: float, seq: int, data: bytes):
        """(type, flags, stream id, when its first byte came) of each frame this segment completes."""
        if self.next_seq is None:
            self.next_seq = seq
        seen = (self.next_seq - seq) & 0xFFFFFFFF  # bytes of this segment already read (a retransmit)
        if seen >= 1 << 31:
            raise RuntimeError("HTTP/2 judge: a segment is missing from the capture")
        data = data[seen:]
        self.next_seq = (self.next_seq + len(data)) & 0xFFFFFFFF
        if not self.buf:
            self.head_ts = ts
        self.buf += data
        if not self.preface_checked and len(self.buf) >= len(_PREFACE):
            self.preface_checked = True
            if self.buf.startswith(_PREFACE):
                self.buf = self.buf[len(_PREFACE):]
        if not self.preface_checked:
            return
        while len(self.buf) >= 9:
            length = int.from_bytes(self.buf[:3], "big")
            if len(self.buf) < 9 + length:
                return
            ftype, flags = self.buf[3], self.buf[4]
            stream = int.from_bytes(self.buf[5:9], "big") & 0x7FFFFFFF
            self.buf = self.buf[9 + length:]
            yield ftype, flags, stream, self.head_ts
            self.head_ts = ts  # what is left came in this segment


_HEADERS, _RST_STREAM, _END_STREAM = 1, 3, 1


def timed_calls(path: Path, server_port: int) -> dict[int, list[tuple[float, float]]]:
    """Per client port, (call start s, call time ms) of each gRPC call (HTTP/2 stream) on the wire."""
    out: dict[int, list[tuple[float, float]]] = {}
    readers: dict[tuple[int, bool], _FrameReader] = {}
    started: dict[tuple[int, int], float] = {}
    for ts, sport, dport, seq, data in _packets(path, payloads=True):
        if not data:
            continue
        to_server = dport == server_port
        port = sport if to_server else dport
        reader = readers.get((port, to_server)) or readers.setdefault((port, to_server), _FrameReader(to_server))
        for ftype, flags, stream, first_byte in reader.feed(ts, seq, data):
            if stream == 0:
                continue
            if to_server:
                if ftype == _HEADERS:
                    started.setdefault((port, stream), first_byte)
            elif (ftype == _HEADERS and flags & _END_STREAM) or ftype == _RST_STREAM:
                t0 = started.pop((port, stream), None)
                if t0 is not None:
                    out.setdefault(port, []).append((t0, (ts - t0) * 1e3))
    return out


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100), None for no values."""
    return float(np.percentile(values, q, method="inverted_cdf")) if values else None
