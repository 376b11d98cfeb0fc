"""Answers bounded in time, size and framing (issue 20): whatever a server streams, a run ends
on time with bounded memory, and an ambiguous or oversized answer is one counted failure.

* an endless chunked answer ends at ``--request-timeout`` (the whole exchange, not each read),
  the run within its stages + the timeout + a margin, the worker's memory under a bound;
* the same answer to the pre-flight metadata call: exit 2 within the timeout + a margin;
* conflicting Content-Length, Transfer-Encoding with Content-Length, an unknown transfer
  coding: ``invalid_response`` with the reason (RFC 9112), never ok;
* an answer past ``--max-response-bytes``: ``invalid_response`` "answer larger than N bytes".
"""

from __future__ import annotations

import time

import psutil
import pytest

from tests.faults.conftest import check_run, error_kinds
from tests.helpers.run import seldon_load

pytestmark = pytest.mark.faults

FAST = ["--drain-timeout", "2s", "--settle", "0s"]
MARGIN_S = 20.0  # process start-up, pre-flight, report writing on a busy 2-core machine
RSS_BOUND_BYTES = 256 * 2**20  # measured: 75 MiB (slow stream), 94 MiB (flood, 8 MiB bound)


def examples(res: dict, kind: str) -> list[str]:
    return [m for e in res["errors"] if e["kind"] == kind for m in e.get("examples", [])]


@pytest.mark.parametrize("mode", ["endless_chunked", "flood_chunked"])
def test_an_endless_answer_ends_at_the_timeout_with_bounded_memory(bad_server, background, tmp_path, mode):
    """Chunks keep coming (slowly, or as fast as the socket takes them): each request ends at
    --request-timeout (slow) or at --max-response-bytes (flood); the run ends on time and
    the worker process stays under RSS_BOUND_BYTES."""
    server = bad_server("--mode", mode)
    stages, timeout_s = "10:0s:4s", 1.5
    run = background(["run", "--host", server.rest_url, "--model", "m", "--stages", stages, *FAST,
                      "--request-timeout", str(timeout_s), "--max-response-bytes", str(8 * 2**20),
                      "--workers", "1"], tmp_path)
    peak = 0
    while run.proc.poll() is None and time.monotonic() - run.started < 120:
        for p in run.children("--worker"):
            try:
                peak = max(peak, p.memory_info().rss)
            except psutil.Error:
                pass
        time.sleep(0.2)
    elapsed = time.monotonic() - run.started
    res = check_run(run.finish(), stages)
    print(f"{mode}: run {elapsed:.1f} s, peak worker RSS {peak / 2**20:.0f} MiB")
    assert elapsed < 4 + timeout_s + 2 + MARGIN_S, elapsed  # stages + timeout + drain + margin
    assert 0 < peak < RSS_BOUND_BYTES, peak
    kinds = error_kinds(res)
    want = "timeout" if mode == "endless_chunked" else "invalid_response"
    assert set(kinds) <= {want, "cancelled"} and kinds[want] > 0, kinds
    if mode == "flood_chunked":
        assert any("answer larger than 8388608 bytes" in m for m in examples(res, want)), res["errors"]
    stage = res["stages"][0]
    assert stage["latency_ms"]["max"] < 1000 * (timeout_s + 1.0)


@pytest.mark.parametrize("mode", ["endless", "flood"])
def test_an_endless_metadata_answer_is_exit_2_within_the_timeout(bad_server, tmp_path, mode):
    """The pre-flight metadata call meets an answer that never ends: one error line, exit 2,
    within --request-timeout (slow chunks) or the size bound (a flood), nothing sent."""
    server = bad_server("--mode", "ok", "--metadata-mode", mode)
    started = time.monotonic()
    run = seldon_load(["run", "--host", server.rest_url, "--model", "m", "--stages", "10:0s:2s",
                       "--request-timeout", "2"], tmp_path, timeout_s=90)
    elapsed = time.monotonic() - started
    assert run.code == 2, run.stderr[-2000:]
    errors = [line for line in run.stderr.splitlines() if line.startswith("seldon-load: error:")]
    assert len(errors) == 1, run.stderr[-2000:]
    print(f"{mode}: {elapsed:.1f} s, {errors[0]}")
    assert "timed out after 2 s" in errors[0] or "answer larger than 67108864 bytes" in errors[0], errors
    assert elapsed < 2 + MARGIN_S, elapsed
    assert server.infer_count() == 0


@pytest.mark.parametrize(("mode", "reason"), [
    ("conflicting_length", "conflicting Content-Length"),
    ("te_and_length", "both Transfer-Encoding and Content-Length"),
    ("unknown_coding", "unsupported transfer coding 'gzip'"),
])
def test_ambiguous_framing_is_an_invalid_response_with_the_reason(bad_server, tmp_path, mode, reason):
    server = bad_server("--mode", f"mix:{mode},ok")
    stages = "20:0s:3s"
    run = seldon_load(["run", "--host", server.rest_url, "--model", "m", "--stages", stages, *FAST,
                       "--request-timeout", "2"], tmp_path, timeout_s=90)
    res = check_run(run, stages)
    stats = server.stats()
    kinds = error_kinds(res)
    assert kinds.get("invalid_response") == stats.get(f"rest:{mode}") > 0, (kinds, stats)
    assert set(kinds) == {"invalid_response"}, kinds  # the ok answers after them are read in step
    assert all(reason in m for m in examples(res, "invalid_response")), res["errors"]


@pytest.mark.parametrize("protocol", ["rest", "grpc"])
def test_an_answer_past_max_response_bytes_is_invalid(bad_server, tmp_path, protocol):
    server = bad_server("--mode", "mix:oversized,ok")
    stages = "10:0s:3s"
    common = ["run", "--host", server.host(protocol), "--model", "m", "--stages", stages, *FAST,
              "--request-timeout", "5"]
    run = seldon_load([*common, "--max-response-bytes", str(2**20)], tmp_path / "small", timeout_s=90)
    res = check_run(run, stages)
    kinds = error_kinds(res)
    assert set(kinds) == {"invalid_response"} and kinds["invalid_response"] > 0, kinds
    assert all("answer larger than 1048576 bytes" in m for m in examples(res, "invalid_response"))
    run = seldon_load(common, tmp_path / "default", timeout_s=90)  # 2 MiB is within the 64 MiB default
    assert error_kinds(check_run(run, stages)) == {}
