"""The benchmark harness keeps working: a seconds-long smoke run of benchmarks/run_all.py
against a tiny local target (plumbing only: nothing here asserts on speed)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

import harness  # noqa: E402
import run_all  # noqa: E402


def test_quick_run_measures_a_real_open_loop_run(tmp_path: Path) -> None:
    out = tmp_path / "perf.json"
    p = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "run_all.py"), "--quick", "--out", str(out)],
                       capture_output=True, text=True, timeout=240, cwd=ROOT)
    assert p.returncode == 0, p.stderr[-2000:]
    res = json.loads(out.read_text())
    smoke = res["smoke_run"]
    assert smoke["exit"] == 0, smoke["stderr"]
    assert smoke["achieved_rps"] == pytest.approx(50, rel=0.1)  # the seldon-load run really ran
    assert smoke["window"]["gen_cpu_s"] > 0  # CPU of the generator's process tree was sampled
    assert res["smoke_held_rps"] in (None, 50)
    assert res["recording"]["record_ns"] > 0
    assert res["machine"]["cpus"] >= 1 and res["machine"]["python"]
    assert "| record one latency (ns) |" in p.stdout  # the summary table is printed


def test_held_rate_needs_rate_lag_and_no_losses() -> None:
    stage = {"achieved_rps": 995.0, "send_lag_ms": {"p99": 1.0}, "failures": 0, "dropped": 0}
    results = {"stages": [stage, {**stage, "achieved_rps": 1990.0, "send_lag_ms": {"p99": 6.0}},
                          {**stage, "achieved_rps": 2900.0}]}
    best, rows = run_all._held(results, (1000, 2000, 3000))
    assert best == 1000  # 2000 lagged over 5 ms, 3000 fell short of 99 %
    assert [r["held"] for r in rows] == [True, False, False]


def test_payload_files_for_both_generators(tmp_path: Path) -> None:
    rest, grpc = run_all.write_payloads(tmp_path, "synth-1ms")
    body = json.loads(rest.read_text())
    assert body["inputs"][0]["shape"] == [1, 4] and len(body["inputs"][0]["data"]) == 4
    msg = json.loads(grpc.read_text())
    assert msg["model_name"] == "synth-1ms" and len(msg["raw_input_contents"]) == 1


def test_mlserver_counter_parsing() -> None:
    text = (
        "# HELP model_infer_request_success_total x\n"
        'model_infer_request_success_total{model="synth-1ms",version="None"} 12.0\n'
        'model_infer_request_success_total{model="synth-10ms",version="None"} 99.0\n'
    )
    assert harness.count_in(text, "synth-1ms") == 12.0
    assert harness.count_in(text, "synth-5ms") == 0.0


def _pcap(tmp_path: Path, packets: list[tuple[float, int, int, int]]) -> Path:
    """A nanosecond pcap of IPv4/TCP packets on Ethernet framing (what tcpdump writes for lo)."""
    import struct

    out = bytearray(struct.pack("<IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, 65535, 1))
    for ts, sport, dport, payload in packets:
        tcp = struct.pack("!HHIIBBHHH", sport, dport, 0, 0, 5 << 4, 0x18, 65535, 0, 0)
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp) + payload, 0, 0, 64, 6, 0,
                         bytes([127, 0, 0, 1]), bytes([127, 0, 0, 1]))
        frame = bytes(14) + ip + tcp  # captured without the payload (a short snaplen)
        sec = int(ts)
        out += struct.pack("<IIII", sec, round((ts - sec) * 1e9), len(frame), len(frame) + payload) + frame
    path = tmp_path / "lo.pcap"
    path.write_bytes(bytes(out))
    return path


def test_the_wire_judge_times_each_keep_alive_exchange(tmp_path: Path) -> None:
    import wire

    server, a, b = 8080, 40001, 40002
    path = _pcap(tmp_path, [
        (10.000, a, server, 300), (10.0001, server, a, 0),  # request, bare ack
        (10.001, b, server, 300),
        (10.002, server, a, 100), (10.003, server, a, 50),  # a's answer in two segments: 3 ms
        (10.004, server, b, 120),  # b: 3 ms
        (10.010, a, server, 200), (10.011, a, server, 100),  # a's next request in two segments
        (10.0125, server, a, 90),  # 2.5 ms from its first segment
    ])
    got = wire.timed_exchanges(path, server)  # (request start, exchange time) per client port
    assert got[a] == [pytest.approx((10.000, 3.0), abs=1e-6), pytest.approx((10.010, 2.5), abs=1e-6)]
    assert got[b] == [pytest.approx((10.001, 3.0), abs=1e-6)]
    assert wire.percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.0
    assert wire.percentile([float(i) for i in range(1, 101)], 99) == 99.0


def _pcap_with_payloads(tmp_path: Path, packets: list[tuple[float, int, int, int, bytes]]) -> Path:
    """A nanosecond pcap of IPv4/TCP packets with their payloads (what tcpdump -s 262144 writes)."""
    import struct

    out = bytearray(struct.pack("<IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, 262144, 1))
    for ts, sport, dport, seq, payload in packets:
        tcp = struct.pack("!HHIIBBHHH", sport, dport, seq, 0, 5 << 4, 0x18, 65535, 0, 0)
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp) + len(payload), 0, 0, 64, 6, 0,
                         bytes([127, 0, 0, 1]), bytes([127, 0, 0, 1]))
        frame = bytes(14) + ip + tcp + payload
        sec = int(ts)
        out += struct.pack("<IIII", sec, round((ts - sec) * 1e9), len(frame), len(frame)) + frame
    path = tmp_path / "h2.pcap"
    path.write_bytes(bytes(out))
    return path


def _frame(ftype: int, flags: int, stream: int, body: bytes = b"") -> bytes:
    return len(body).to_bytes(3, "big") + bytes([ftype, flags]) + stream.to_bytes(4, "big") + body


def test_the_wire_judge_times_each_grpc_call_from_its_http2_frames(tmp_path: Path) -> None:
    import wire

    server, a = 8081, 40003
    preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
    call1 = _frame(1, 4, 1, b"hdr") + _frame(0, 1, 1, b"msg")  # HEADERS, DATA with END_STREAM
    call3 = _frame(1, 4, 3, b"hdr") + _frame(0, 1, 3, b"msg")
    answer1 = _frame(1, 4, 1, b"h") + _frame(0, 0, 1, b"reply") + _frame(1, 5, 1, b"trailers")
    path = _pcap_with_payloads(tmp_path, [
        (1.000, a, server, 1000, preface + _frame(4, 0, 0)),  # preface and SETTINGS
        (1.0005, server, a, 5000, _frame(4, 0, 0) + _frame(4, 1, 0)),
        (1.001, a, server, 1000 + 33, call1),
        (1.002, a, server, 1000 + 33 + len(call1), call3[:5]),  # call 3's HEADERS in two segments
        (1.0025, a, server, 1000 + 33 + len(call1) + 5, call3[5:]),
        (1.002, a, server, 1000 + 33, call1),  # a retransmit: read once
        (1.003, server, a, 5018, answer1[:20]),  # call 1's answer, its trailers in the next segment
        (1.004, server, a, 5018 + 20, answer1[20:]),
        (1.007, server, a, 5018 + len(answer1), _frame(3, 0, 3, bytes(4))),  # RST_STREAM ends call 3
    ])
    got = wire.timed_calls(path, server)
    assert [(round(t0, 4), round(ms, 3)) for t0, ms in got[a]] == [(1.001, 3.0), (1.002, 5.0)]
