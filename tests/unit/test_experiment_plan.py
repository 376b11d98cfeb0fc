"""Plan parsing: --vary, experiment YAML, matrix naming, overrides, refusals."""

from __future__ import annotations

import pytest

from seldon_load.errors import ConfigError
from seldon_load.experiment.plan import build_plan, parse_vary, token, unique_names

KNOWN = {"host": False, "model": False, "protocol": False, "batch-size": False, "stages": False,
         "header": False, "binary": True, "payload": False, "users": False, "results": False, "web-ui": True}


def test_parse_vary_commas_pipes_and_names() -> None:
    assert parse_vary("--batch_size=1,4") == ("batch-size", ["1", "4"])
    assert parse_vary("stages=10:1s:2s,20:1s:2s|30:1s:2s") == ("stages", ["10:1s:2s,20:1s:2s", "30:1s:2s"])
    for bad in ("batch-size", "batch-size=1,,4", "batch-size=1,1", "=1,2"):
        with pytest.raises(ConfigError):
            parse_vary(bad)


def test_matrix_is_the_product_with_readable_unique_names() -> None:
    plan = build_plan(["--host", "http://127.0.0.1:8080", "--model", "m"],
                      ["protocol=rest,grpc", "batch-size=1,8"], None, KNOWN)
    assert [v.name for v in plan.variants] == ["rest-batch1", "rest-batch8", "grpc-batch1", "grpc-batch8"]
    v = plan.variants[3]
    assert v.values == {"protocol": "grpc", "batch-size": "8"}
    assert v.args[-4:] == ["--protocol", "grpc", "--batch-size", "8"]
    assert v.args[:4] == ["--host", "http://127.0.0.1:8080", "--model", "m"]


def test_name_tokens() -> None:
    assert token("host", "http://127.0.0.1:8080") == "http-8080"
    assert token("host", "127.0.0.1:8081") == "grpc-8081"
    assert token("payload", "dir/big payload.json") == "big-payload"
    assert token("users", "16") == "users16"
    assert token("slo-p99", "50") == "slo-p99-50" and token("max-in-flight", "64") == "max-in-flight64"
    assert "secret" not in token("header", "Authorization: secret")
    assert unique_names(["a", "b", "a", "a"]) == ["a", "b", "a-2", "a-3"]


def test_refusals_before_anything_runs() -> None:
    with pytest.raises(ConfigError, match="not an option"):
        build_plan([], ["colour=red,blue"], None, KNOWN)
    with pytest.raises(ConfigError, match="belongs to the sweep"):
        build_plan([], ["results=a,b"], None, KNOWN)
    with pytest.raises(ConfigError, match="--web-ui cannot be used in a sweep"):
        build_plan(["--web-ui"], ["users=1,2"], None, KNOWN)
    with pytest.raises(ConfigError, match="needs variants"):
        build_plan(["--model", "m"], [], None, KNOWN)
    with pytest.raises(ConfigError, match="varied twice"):
        build_plan([], ["users=1,2", "users=3,4"], None, KNOWN)
    with pytest.raises(ConfigError, match="baseline"):
        build_plan([], ["users=1,2"], None, KNOWN, baseline="users9")
    with pytest.raises(ConfigError, match="on/off"):
        build_plan([], ["binary=maybe,true"], None, KNOWN)


def test_experiment_file_base_matrix_overrides_and_explicit_variants(tmp_path) -> None:
    f = tmp_path / "plan.yaml"
    f.write_text("""
results: out
baseline: rest-batch1
base: {host: "http://127.0.0.1:8080", model: synth-5ms, stages: "50:1s:2s", binary: true}
vary:
  protocol: [rest, grpc]
  batch-size: [1, 4]
overrides:
  - when: {protocol: grpc}
    set: {host: "127.0.0.1:8081", binary: false}
variants:
  - name: big
    payload: big.json
""")
    plan = build_plan(["--model", "synth-2ms"], [], str(f), KNOWN)
    assert plan.results == "out" and plan.baseline == "rest-batch1"
    names = [v.name for v in plan.variants]
    assert names == ["rest-batch1", "rest-batch4", "grpc-batch1", "grpc-batch4", "big"]
    rest, grpc = plan.variants[0].args, plan.variants[2].args
    assert "--binary" in rest and "--binary" not in grpc
    assert grpc[grpc.index("--host", 2) + 1] == "127.0.0.1:8081"  # the override comes after the base
    # the command line's base comes after the file's, so it wins (argparse: last one)
    assert rest.index("synth-2ms") > rest.index("synth-5ms")
    assert plan.variants[4].args[-2:] == ["--payload", "big.json"]


@pytest.mark.parametrize("text, message", [
    ("base: &a {model: m}\nvary: {users: [1, 2]}\nvariants: [*a]\n", "anchors"),
    ("[1, 2]\n", "mapping"),
    ("vary: {users: [1, 2]}\nextra: 1\n", "unknown key"),
    ("vary: {users: [[1], 2]}\n", "expected a number"),
    ("vary: {users: [1, 2]\n", "not valid YAML"),
])
def test_bad_experiment_files(tmp_path, text: str, message: str) -> None:
    f = tmp_path / "plan.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError, match=message):
        build_plan([], [], str(f), KNOWN)


def test_experiment_file_size_cap(tmp_path) -> None:
    f = tmp_path / "plan.yaml"
    f.write_bytes(b"#" * ((1 << 20) + 10))
    with pytest.raises(ConfigError, match="the limit is 1 MiB"):
        build_plan([], [], str(f), KNOWN)
    with pytest.raises(ConfigError, match="experiment file"):
        build_plan([], [], str(tmp_path / "missing.yaml"), KNOWN)


def test_time_left_scales_the_plan_by_what_finished_variants_took() -> None:
    from pathlib import Path

    from seldon_load.experiment.plan import Variant
    from seldon_load.experiment.sweep import Planned, eta_s, fmt_duration

    planned = [Planned(Variant(f"v{i}", {}), Path("."), 20.0) for i in range(4)]
    assert eta_s(planned, [], 0) == 80
    assert eta_s(planned, [(20.0, 30.0)], 1) == 90  # the first took 1.5x its plan
    assert eta_s(planned, [(20.0, 30.0)] * 4, 4) == 0
    unplanned = [Planned(Variant("a", {}), Path("."), None), Planned(Variant("b", {}), Path("."), None)]
    assert eta_s(unplanned, [], 0) is None
    assert eta_s(unplanned, [(None, 42.0)], 1) == 42
    assert fmt_duration(None) == "unknown" and fmt_duration(75) == "1m15s" and fmt_duration(9.6) == "10s"
