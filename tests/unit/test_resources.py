"""Server resources without sockets: selector checks, the PromQL sent, derived figures, rendering.

What Prometheus answers is tested against a real one (tests/integration/test_resources.py).
"""

from __future__ import annotations

import csv
import io

import pytest

from seldon_load import cli
from seldon_load.analyze.resources import (
    EMPTY,
    SOURCES,
    attach,
    cost_per_million,
    derive,
    parse_selector,
    queries,
)
from seldon_load.errors import ConfigError
from seldon_load.report.console import summary_text
from seldon_load.report.csvout import stage_row
from seldon_load.report.html import render_html

HOST = "http://127.0.0.1:9"  # nothing may be sent; nothing listens there either
S = ["--model", "m", "--stages", "20:0s:1s"]
PROM = ["--prometheus-url", "http://127.0.0.1:9/"]


@pytest.mark.parametrize(("text", "want"), [
    ('namespace="seldon-mesh",pod=~"mlserver-.*"', 'namespace="seldon-mesh",pod=~"mlserver-.*"'),
    ('{ namespace = "seldon-mesh" , pod !~ "x|y" }', 'namespace="seldon-mesh",pod!~"x|y"'),
    ('groupname="mlserver"', 'groupname="mlserver"'),
    ('pod="x",', 'pod="x"'),  # PromQL allows a trailing comma
    (r'a="quote \" inside",b!="v"', r'a="quote \" inside",b!="v"'),
])
def test_selectors_are_normalised(text: str, want: str) -> None:
    assert parse_selector(text) == want


@pytest.mark.parametrize(("text", "needle"), [
    ("", "empty"),
    ("{}", "empty"),
    ("namespace=seldon", "at character 1"),
    ('namespace="a" pod="b"', "expected a comma"),
    ('pod=~"mlserver-(["', "bad regular expression"),
    ('1pod="x"', "at character 1"),
    ('pod="x"}', "expected a comma"),
])
def test_invalid_selectors_are_config_errors(text: str, needle: str) -> None:
    with pytest.raises(ConfigError, match="resource-selector") as exc:
        parse_selector(text)
    assert needle in str(exc.value)


def test_the_promql_of_a_window() -> None:
    """The exact queries docs/guides/seldon-core-2.md documents."""
    sel = 'namespace="seldon-mesh",pod=~"mlserver-.*"'
    q = queries(SOURCES["cadvisor"], sel, 25.0, 15.0, gpu=True)
    cpu_sel = 'namespace="seldon-mesh",pod=~"mlserver-.*",container!="",container!="POD"'
    assert q["cpu_seconds"] == f"sum by (pod) (increase(container_cpu_usage_seconds_total{{{cpu_sel}}}[25000ms]))"
    assert q["samples"] == f"count_over_time(container_cpu_usage_seconds_total{{{cpu_sel}}}[25000ms])"
    assert q["memory_max"] == f"max_over_time((sum(container_memory_working_set_bytes{{{cpu_sel}}}))[25000ms:15000ms])"
    assert q["memory_mean"].startswith("avg_over_time((sum(container_memory_working_set_bytes{")
    assert q["gpu_util"] == f"avg_over_time(DCGM_FI_DEV_GPU_UTIL{{{sel}}}[25000ms])"
    assert q["gpu_memory_max"] == f"max_over_time((sum(DCGM_FI_DEV_FB_USED{{{sel}}}))[25000ms:15000ms])"
    p = queries(SOURCES["process"], 'groupname="mlserver"', 4.0, 1.0, gpu=False)
    assert p["cpu_seconds"] == 'sum by (groupname) (increase(namedprocess_namegroup_cpu_seconds_total{groupname="mlserver"}[4000ms]))'
    assert p["memory_max"] == ('max_over_time((sum(namedprocess_namegroup_memory_bytes{groupname="mlserver",'
                               'memtype="resident"}))[4000ms:1000ms])')
    assert "gpu_util" not in p
    n = queries(SOURCES["node"], 'instance="vm1:9100"', 10.0, 1.0, gpu=False)
    assert n["cpu_seconds"] == 'sum by (instance) (increase(node_cpu_seconds_total{instance="vm1:9100",mode!="idle"}[10000ms]))'
    assert "node_memory_MemTotal_bytes{instance=\"vm1:9100\"}) - sum(node_memory_MemAvailable_bytes" in n["memory_mean"]


def test_derived_figures_and_cost() -> None:
    srv = {**EMPTY, "source": "cadvisor", "cpu_seconds": 10.0, "cpu_cores": 2.0, "gpus": 1}
    stage = {"requests": 1000, "achieved_rps": 200.0}
    out = derive(srv, stage, batch_size=4, core_hour_cost=0.05, gpu_hour_cost=None)
    assert out["cpu_ms_per_request"] == 10.0 and out["cpu_ms_per_inference"] == 2.5
    assert out["requests_per_core"] == 100.0
    # 2 cores x 0.05 an hour over 800 inferences/s: 0.1 / 2,880,000 per inference
    assert out["cost_per_million_inferences"] == pytest.approx(0.1 / (800 * 3600) * 1e6, rel=1e-4)
    with_gpu = derive(srv, stage, 4, 0.05, 2.0)["cost_per_million_inferences"]
    assert with_gpu == pytest.approx(2.1 / (800 * 3600) * 1e6, rel=1e-4)
    assert cost_per_million(None, None, 100, 0.05, None) is None  # no CPU figure: no cost
    assert cost_per_million(1.0, None, 100, None, None) is None  # no price given
    empty = derive({**EMPTY, "note": "Prometheus unreachable"}, stage, 1, 0.05, None)
    assert empty["cpu_ms_per_request"] is None and empty["cost_per_million_inferences"] is None


def _results(server_rows: list[dict | None], saturated: bool = True) -> dict:
    stages = []
    for i, (rps, srv) in enumerate(zip((50.0, 100.0, 200.0), server_rows, strict=False)):
        stages.append({"index": i, "target_rps": rps, "achieved_rps": rps, "requests": int(rps * 10),
                       "scheduled": int(rps * 10), "ok": int(rps * 10), "failures": 0, "dropped": 0,
                       "sustained": i < 2, "latency_ms": {"p50": 5, "p99": 9}, "send_lag_ms": {}, "reasons": [],
                       "_srv": srv})
    r = {"target": {"host": "h", "protocol": "rest", "kind": "model", "name": "m"}, "mode": "stages",
         "stages": stages, "saturation": {"saturated": saturated, "max_sustainable_rps": 100.0,
                                          "recommended_rps": 80.0}}
    servers = {s["index"]: s.pop("_srv") for s in stages}
    return attach(r, servers if any(v is not None for v in servers.values()) else None, 1, 0.04, None,
                  {"selector": 'pod=~"m.*"', "prometheus": "http://p:9090", "queries": 12})


def _srv(cores: float, rps: float) -> dict:
    return {**EMPTY, "source": "cadvisor", "series": 2, "cpu_cores": cores, "cpu_seconds": cores * 10,
            "memory_bytes_max": 300 * 2**20, "memory_bytes_mean": 290 * 2**20, "per_pod": {"mlserver-0": cores}}


def test_attach_summarises_at_the_saturation_point_and_the_recommended_rate() -> None:
    r = _results([_srv(0.5, 50), _srv(1.0, 100), {**EMPTY, "note": "series missing for part of this window"}])
    sat, rec = r["resources"]["at_saturation"], r["resources"]["at_recommended"]
    assert sat["stage"] == 1 and sat["cpu_cores"] == 1.0 and sat["cpu_ms_per_request"] == 10.0
    assert rec["rps"] == 80.0 and rec["cpu_cores"] == pytest.approx(0.8) and rec["headroom_cores"] == pytest.approx(0.2)
    assert rec["cost_per_million_inferences"] == pytest.approx(0.8 * 0.04 / (80 * 3600) * 1e6, rel=1e-3)
    assert r["stages"][2]["server"]["note"].startswith("series missing")
    partial = attach({"stages": [{"index": 0, "requests": 10, "achieved_rps": 1.0}, {"index": 1}]},
                     {0: _srv(0.5, 1)}, 1, None, None)  # stage 1 never began (the test was stopped)
    assert partial["stages"][0]["server"]["cpu_cores"] == 0.5
    assert partial["stages"][1]["server"]["note"] == "the stage has no measured window"
    none = _results([None, None, None])
    assert all(s["server"] is None for s in none["stages"]) and "resources" not in none


def test_console_csv_and_html_show_the_resources() -> None:
    r = _results([_srv(0.5, 50), _srv(1.0, 100), {**EMPTY, "note": "Prometheus at http://p:9090 unreachable"}])
    text = summary_text(r, width=120)
    assert "Server resources (cadvisor" in text
    assert "stage 1: 1 cores, 10 CPU-ms/request, memory max 300 MiB" in text
    assert "stage 2: no figures: Prometheus at http://p:9090 unreachable" in text
    assert "at the saturation point 100 rps: 1 cores" in text
    assert all(len(line) <= 120 for line in text.splitlines())
    row = stage_row(r["stages"][1])
    assert row["server_cpu_cores"] == 1.0 and row["server_cpu_ms_per_request"] == 10.0
    assert stage_row(r["stages"][2])["server_note"].endswith("unreachable")
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(row))
    w.writerow(row)
    html = render_html(r)
    assert "<h2>Server resources</h2>" in html and "Server CPU per stage" in html and "300 MiB" in html
    assert "Server resources" not in summary_text(_results([None, None, None]))


def _run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    try:
        code = cli.main(["run", "--host", HOST, *S, *args])
    except SystemExit as exc:
        code = exc.code
    return code, " ".join(capsys.readouterr().err.split())


@pytest.fixture
def no_load(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("bad input reached run_locust: Locust was started")

    monkeypatch.setattr(cli, "run_locust", refuse)


@pytest.mark.parametrize(("args", "needle"), [
    ([*PROM, "--resource-selector", "pod=mlserver"], "invalid --resource-selector"),
    ([*PROM, "--resource-selector", 'pod=~"(unclosed"'], "bad regular expression"),
    (["--resource-selector", 'pod="x"'], "--resource-selector needs --prometheus-url"),
    ([*PROM, "--core-hour-cost", "0.05"], "--core-hour-cost needs --resource-selector"),
    ([*PROM, "--resource-selector", 'pod="x"', "--gpu-hour-cost", "-1"], "--gpu-hour-cost must be"),
    ([*PROM, "--resource-selector", 'pod="x"', "--core-hour-cost", "nan"], "--core-hour-cost must be"),
    (["--prometheus-url", "prometheus:9090", "--resource-selector", 'pod="x"'], "--prometheus-url"),
    ([*PROM, "--resource-selector", 'pod="x"', "--resource-source", "k8s"], "--resource-source"),
])
def test_bad_resource_options_exit_2_before_load(no_load, capsys, args: list[str], needle: str) -> None:
    code, err = _run_cli(args, capsys)
    assert code == 2, err
    assert needle in err and err.count("error") == 1, err
