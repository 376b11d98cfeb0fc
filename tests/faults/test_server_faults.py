"""A misbehaving server: every fault ends as a counted failure of its own kind, nothing is lost or invented.

The server (badserver.py) answers health, readiness and metadata correctly and misbehaves on
inference only. For every run: it finishes, writes every report file, counts failures by kind,
and the accounting identity holds (scheduled = ok + failed + dropped, per stage and per second);
open loop, the whole run scheduled exactly what the plan asked for; and seldon-load counts as ok
exactly the valid answers the server sent (never one more).
"""

from __future__ import annotations

import pytest

from tests.faults.badserver import GRPC, MIX_GRPC, MIX_REST, REST
from tests.faults.conftest import check_run, error_kinds, totals
from tests.helpers.run import seldon_load

pytestmark = pytest.mark.faults

FAST = ["--request-timeout", "1", "--drain-timeout", "2s", "--settle", "1s"]
STAGES = "20:0s:4s"


def expected_kinds(protocol: str) -> set[str]:
    table, mix = (REST, MIX_REST) if protocol == "rest" else (GRPC, MIX_GRPC)
    return {table[b] for b in mix if table[b] is not None}


@pytest.mark.parametrize(("protocol", "loop", "workers"), [
    ("rest", "open", 0),
    ("rest", "closed", 2),
    ("grpc", "open", 2),
    ("grpc", "closed", 0),
])
def test_every_fault_is_counted_by_kind(bad_server, tmp_path, protocol, loop, workers):
    """5xx, OIP error bodies, malformed JSON/protobuf, truncated and wrong-shape tensors, gRPC
    UNAVAILABLE/DEADLINE_EXCEEDED/RESOURCE_EXHAUSTED/INTERNAL, answers that never come."""
    server = bad_server("--mode", "mix")
    load = ["--stages", STAGES] if loop == "open" else ["--users", "3", "--run-time", "4s"]
    # gRPC: no hang in its mix (see test_grpc_calls_after_a_deadline_still_reach_the_server), so no
    # call should come near a deadline: a generous one keeps a slow moment from tripping that bug
    timeout = ["--request-timeout", "5"] if protocol == "grpc" else []
    run = seldon_load(["run", "--host", server.host(protocol), "--model", "m", *load, *FAST, *timeout,
                       "--workers", str(workers)], tmp_path, timeout_s=120)
    res = check_run(run, STAGES if loop == "open" else None)
    kinds = error_kinds(res)
    assert expected_kinds(protocol) <= set(kinds), kinds
    stats = server.stats()
    # every ok counted is a valid answer the server sent, and every valid answer was counted
    assert totals(res)["ok"] == stats.get(f"{protocol}:ok", 0) > 0, (totals(res), stats)
    # a failure is never counted as ok: invalid answers are each one failure of their kind
    invalid = sum(n for k, n in stats.items() if k.split(":")[1] in
                  ("malformed_json", "truncated_tensor", "wrong_datatype", "not_oip", "malformed_pb",
                   "wrong_shape", "truncated_body"))
    assert kinds["invalid_response"] == invalid
    stage = res["stages"][0]
    assert stage["sustained"] in (False, None)  # a server failing 70% is never "sustained"


@pytest.mark.parametrize(("protocol", "workers", "timeout_kind"), [
    ("rest", 0, "timeout"),
    ("grpc", 2, "grpc_DEADLINE_EXCEEDED"),
])
def test_hung_server_timeouts_cap_and_schedule_keep_working(bad_server, tmp_path, protocol, workers, timeout_kind):
    """The server accepts and reads, then never answers: each request ends at --request-timeout,
    the in-flight cap drops what does not fit, the schedule goes on and the run ends on time."""
    server = bad_server("--mode", "hang", "--ok-first", "1.5")
    stages = "20:0s:5s"
    run = seldon_load(["run", "--host", server.host(protocol), "--model", "m", "--stages", stages, *FAST,
                       "--max-in-flight", "6", "--workers", str(workers)], tmp_path, timeout_s=90)
    res = check_run(run, stages)
    kinds = error_kinds(res)
    assert set(kinds) <= {timeout_kind, "dropped", "cancelled"}, kinds
    assert kinds[timeout_kind] > 0 and kinds["dropped"] > 0
    stage = res["stages"][0]
    assert stage["offered_rps"] == pytest.approx(20, rel=0.05)  # the schedule did not slow down
    assert stage["latency_ms"]["max"] < 1000 * 1.5  # nothing waited much past --request-timeout 1
    # the run ended on time: nothing was measured after the plan (5 s) and the drain (2 s)
    assert max(row["t_s"] for row in res["timeline"]) <= 5 + 2
    assert stage["sustained"] is False


def test_preflight_against_a_silent_server_exits_2_quickly(bad_server, tmp_path):
    """A server that accepts connections and never answers: bad target, exit 2, nothing measured."""
    server = bad_server("--mode", "silent")
    for protocol in ("rest", "grpc"):
        run = seldon_load(["run", "--host", server.host(protocol), "--model", "m", "--stages", STAGES,
                           "--request-timeout", "1"], tmp_path / protocol, timeout_s=60)
        assert run.code == 2, run.stderr[-2000:]
        errors = [line for line in run.stderr.splitlines() if line.startswith("seldon-load: error:")]
        assert len(errors) == 1 and server.host(protocol).split("//")[-1] in errors[0], run.stderr[-2000:]
        assert not (tmp_path / protocol / "results.json").exists()


def test_bad_payload_exits_2_and_sends_nothing(bad_server, tmp_path):
    server = bad_server("--mode", "ok")
    payload = tmp_path / "request.json"
    payload.write_text('{"inputs": [{"name": "x", "datatype": "FP32", "shape": [2, 2], "data": [1, 2, 3]}]}')
    run = seldon_load(["run", "--host", server.rest_url, "--model", "m", "--stages", STAGES,
                       "--payload", str(payload)], tmp_path / "r", timeout_s=60)
    assert run.code == 2
    assert "3 elements, shape [2, 2] needs 4" in run.stderr
    assert server.infer_count() == 0


def test_slow_drip_answer_ends_as_timeout(bad_server, tmp_path):
    """Each byte comes well within --request-timeout, the whole answer never does: a timeout."""
    server = bad_server("--mode", "drip", "--ok-first", "1")
    run = seldon_load(["run", "--host", server.rest_url, "--model", "m", "--stages", STAGES, *FAST],
                      tmp_path, timeout_s=90)
    res = check_run(run, STAGES)
    assert set(error_kinds(res)) == {"timeout"}, error_kinds(res)
    assert res["stages"][0]["latency_ms"]["max"] < 1000 * 1.5


def test_reset_and_cut_answers_are_counted_and_not_resent(bad_server, tmp_path):
    server = bad_server("--mode", "mix:reset,ok,truncated_body,ok")
    run = seldon_load(["run", "--host", server.rest_url, "--model", "m", "--stages", STAGES, *FAST],
                      tmp_path, timeout_s=90)
    res = check_run(run, STAGES)
    t = totals(res)
    stats = server.stats()
    assert server.infer_count("rest") == t["ok"] + t["failures"]  # each request reached the server once
    assert error_kinds(res).get("connection_reset") == stats.get("rest:reset")
    assert error_kinds(res).get("invalid_response") == stats.get("rest:truncated_body")


def test_grpc_calls_after_a_deadline_still_reach_the_server(bad_server, tmp_path):
    server = bad_server("--mode", "mix:hang,ok,ok,ok")
    run = seldon_load(["run", "--host", server.grpc_target, "--model", "m", "--stages", STAGES, *FAST],
                      tmp_path, timeout_s=90)
    res = check_run(run, STAGES)
    stats = server.stats()
    assert totals(res)["ok"] == stats.get("grpc:ok") > 0
    assert error_kinds(res).get("grpc_DEADLINE_EXCEEDED") == stats.get("grpc:hang")
