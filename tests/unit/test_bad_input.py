"""Every user-supplied input is checked before any load: one clear line, exit code 2, no process started.

``cli.main`` runs in-process with ``run_locust`` replaced by a stub that fails the test if called:
these inputs must be refused before a Locust process (let alone a request) exists. File contents
that only the Locust process reads (payload, pipeline spec) are checked by the functions it calls;
tests/faults/test_server_faults.py checks end to end that such a run sends nothing.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from seldon_load import cli
from seldon_load.errors import ConfigError
from seldon_load.oip.payload import load_request_file
from seldon_load.pipelines import read_pipelines

HOST = "http://127.0.0.1:9"  # nothing may be sent; nothing listens there either
SECRET = "s3cr3t-T0ken-value"
S = ["--model", "m", "--stages", "20:0s:1s"]


@pytest.fixture
def no_load(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("bad input reached run_locust: Locust was started")

    monkeypatch.setattr(cli, "run_locust", refuse)
    monkeypatch.delenv("SELDON_LOAD_WEB_PASSWORD", raising=False)


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    try:
        code = cli.main(["run", *args])
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    return code, capsys.readouterr().err


def one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


OPTIONS = [
    (["--model", "m"], "choose how to offer load"),
    (["--model", "m", "--users", "0"], "--users must be >= 1"),
    (["--model", "m", "--users", "-3"], "--users must be >= 1"),
    ([*S, "--workers", "-1"], "--workers must be >= 0"),
    ([*S, "--web-ui", "--web-port", "0"], "--web-port"),
    ([*S, "--web-ui", "--web-login"], "SELDON_LOAD_WEB_PASSWORD"),
    ([*S, "--request-timeout", "0"], "--request-timeout"),
    ([*S, "--request-timeout", "nan"], "--request-timeout"),
    ([*S, "--request-timeout", "inf"], "--request-timeout"),
    ([*S, "--request-timeout", "soon"], "--request-timeout"),
    ([*S, "--max-in-flight", "0"], "--max-in-flight"),
    ([*S, "--batch-size", "0"], "--batch-size"),
    ([*S, "--payload-variants", "-1"], "--payload-variants"),
    ([*S, "--slo-p99", "nan"], "--slo-p99"),
    ([*S, "--slo-p99", "-5"], "--slo-p99"),
    ([*S, "--max-failure-ratio", "5"], "--max-failure-ratio"),
    ([*S, "--min-saturation-rps", "-1"], "--min-saturation-rps"),
    ([*S, "--max-latency-trend", "0.5"], "--max-latency-trend"),
    ([*S, "--max-send-lag-ms", "-5"], "--max-send-lag-ms"),
    ([*S, "--max-error-ratio", "nan"], "--max-error-ratio"),
    ([*S, "--min-achieved-ratio", "2"], "--min-achieved-ratio"),
    ([*S, "--drain-timeout", "xyz"], "--drain-timeout"),
    ([*S, "--settle", "-1"], "--settle"),
    ([*S, "--arrival", "weird"], "--arrival"),
    ([*S, "--protocol", "grpc"], "does not match"),
    (["--model", "m", "--auto", "--max-rps", "inf"], "--max-rps"),
    (["--model", "m", "--auto", "--auto-start-rps", "0"], "--auto-start-rps"),
    (["--model", "m", "--auto", "--auto-precision", "0"], "precision"),
    (["--model", "m", "--auto", "--stages", "20:0s:1s"], "choose one of"),
    (["--model", "m", "--sweep", "0:1s"], "sweep step 1"),
    (["--model", "a<b>", "--stages", "20:0s:1s"], "invalid model name"),
    (["--model", "m", "--pipeline", "p", "--stages", "20:0s:1s"], "exactly one of --model"),
]
STAGE_STRINGS = [
    ("20:0s", "expected RPS:RAMP:HOLD"),
    ("abc:1s:2s", "is not a number"),
    ("20:1x:2s", "ramp of stage 1"),
    ("20:1s:0s", "hold must be > 0"),
    (",,", "stage 1"),
    ("nan:1s:1s", "RPS must be > 0"),
    ("inf:1s:1s", "RPS must be > 0"),
    ("1e400:1s:1s", "RPS must be > 0"),
    ("0:1s:1s", "RPS must be > 0"),
    ("20:-1s:1s", "ramp of stage 1"),
    ("20:1s:25h", "<= 24h"),
    ("20:1s:1s,30:1s", "stage 2"),
]
HOSTS = [
    ("http://[::1", "invalid host"),
    ("ftp://127.0.0.1:1", "scheme must be"),
    ("http://127.0.0.1:99999", "Port out of range"),
    ("127.0.0.1", "invalid host"),
    ("", "--host"),
]


@pytest.mark.parametrize(("args", "needle"), OPTIONS, ids=[" ".join(a[2:] or a) for a, _ in OPTIONS])
def test_bad_options(no_load, capsys, args, needle):
    code, err = run_cli(["--host", HOST, *args], capsys)
    assert code == 2
    assert needle in one_line(err)


@pytest.mark.parametrize(("stages", "needle"), STAGE_STRINGS)
def test_bad_stage_strings(no_load, capsys, stages, needle):
    code, err = run_cli(["--host", HOST, "--model", "m", "--stages", stages], capsys)
    assert code == 2
    assert needle in one_line(err)


@pytest.mark.parametrize(("host", "needle"), HOSTS)
def test_bad_hosts(no_load, capsys, host, needle):
    code, err = run_cli(["--host", host, *S], capsys)
    assert code == 2
    assert needle in one_line(err)


def test_bad_files_and_urls(no_load, capsys, tmp_path: Path):
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    huge = tmp_path / "huge.json"
    with huge.open("wb") as f:  # sparse: no disk used
        f.truncate(65 * 2**20)
    a_file = tmp_path / "file"
    a_file.write_text("x")
    cases = [
        ([*S, "--payload", str(tmp_path / "missing.json")], "no such file"),
        ([*S, "--payload", str(tmp_path)], "no such file"),
        ([*S, "--payload", str(huge)], "larger than 64 MiB"),
        ([*S, "--pipeline-spec", str(tmp_path / "missing.yaml")], "no such file"),
        ([*S, "--metrics-url", "ftp://x/metrics"], "--metrics-url"),
        ([*S, "--metrics-url", "http://[::1/metrics"], "--metrics-url"),
        ([*S, "--metrics-url", "http://127.0.0.1:99999/metrics"], "--metrics-url"),
        ([*S, "--metrics-url", "http://user:pw-secret-1@/metrics"], "--metrics-url"),
        ([*S, "--prometheus-url", "http://[x"], "--prometheus-url"),
        ([*S, "--ca-file", str(garbage)], "need an https:// or grpcs:// host"),
        ([*S, "--cert-file", str(garbage)], "go together"),
        ([*S, "--ca-file", str(tmp_path / "missing.pem")], "no such file"),
        ([*S, "--results", str(a_file / "sub")], "is not a directory"),
        ([*S, "--results", str(a_file)], "is not a directory"),
    ]
    for args, needle in cases:
        code, err = run_cli(["--host", HOST, *args], capsys)
        assert code == 2, args
        line = one_line(err)
        assert needle in line, (args, line)
        assert "pw-secret-1" not in line
    for host in ("https://127.0.0.1:9", "grpcs://127.0.0.1:9"):  # gRPC would only fail at connect time
        code, err = run_cli(["--host", host, *S, "--ca-file", str(garbage)], capsys)
        assert code == 2 and "not a readable PEM CA bundle" in one_line(err)
        code, err = run_cli(["--host", host, *S, "--cert-file", str(garbage), "--key-file", str(garbage)], capsys)
        assert code == 2 and "not a matching PEM certificate and key" in one_line(err)


@pytest.mark.parametrize("header", [
    SECRET,  # forgot the name: the whole item is the secret
    f"Authorization Bearer {SECRET}",  # forgot the colon
    f"Bad Name: {SECRET}",
    f"X-Token: {SECRET}\nX-Other: 1",  # two lines in one value
    f": {SECRET}",
])
def test_bad_headers_never_echo_the_value(no_load, capsys, header):
    code, err = run_cli(["--host", HOST, *S, "--header", "X-Ok: 1", "--header", header], capsys)
    assert code == 2
    line = one_line(err)
    assert "--header" in line and "number 2 of 2" in line
    assert SECRET not in err and "Bearer" not in err


def test_results_dir_is_not_created_by_a_refused_run(no_load, capsys, tmp_path: Path):
    out = tmp_path / "not-yet"
    code, _ = run_cli(["--host", HOST, "--model", "m", "--stages", "bad", "--results", str(out)], capsys)
    assert code == 2 and not out.exists()


# ---- contents read by the Locust process (before any load): one ConfigError line naming the file

@pytest.mark.parametrize(("body", "needle"), [
    ("{bad json", "not valid JSON"),
    ("[]", "not a JSON object"),
    ('{"inputs": [{"name": "x", "datatype": "FP99", "shape": [1], "data": [1]}]}', "unknown datatype 'FP99'"),
    ('{"inputs": [{"name": "x", "datatype": "FP32", "shape": [2, 2], "data": [1, 2, 3]}]}', "3 elements"),
    ('{"inputs": [{"name": "x", "datatype": "INT8", "shape": [1], "data": [1000]}]}', "x"),
    ('{"inputs": [{"name": "x", "datatype": "FP32", "shape": [-1], "data": [1]}]}', "shape"),
    ('{"inputs": [{"name": "x", "datatype": "FP32", "shape": "2", "data": [1, 2]}]}', "shape"),
    ('{"inputs": []}', "input"),
    ("", "not valid JSON"),
])
def test_payload_files(tmp_path: Path, body: str, needle: str):
    path = tmp_path / "request.json"
    path.write_text(body)
    with pytest.raises(ConfigError) as info:
        load_request_file(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message and needle in message, message


def test_huge_payload_file_is_refused_without_reading_it(tmp_path: Path):
    path = tmp_path / "huge.json"
    with path.open("wb") as f:
        f.truncate(65 * 2**20)
    with pytest.raises(ConfigError, match="the limit is 64 MiB"):
        load_request_file(path)


SPEC_HEAD = "apiVersion: mlops.seldon.io/v1alpha1\nkind: Pipeline\nmetadata:\n  name: p\nspec:\n  steps:\n"


@pytest.mark.parametrize(("steps", "needle"), [
    ("  - name: a\n    inputs: [b]\n  - name: b\n    inputs: [a]\n  output:\n    steps: [b]\n", "cycle"),
    ("  - name: a\n    inputs: [zzz]\n  output:\n    steps: [a]\n", "unknown step 'zzz'"),
    ("  - name: a\n  - name: a\n  output:\n    steps: [a]\n", "a"),
    ("  - inputs: [a]\n", "name"),
    ("  - name: a\n  output:\n    steps: [nope]\n", "nope"),
    ("  - {name: [1, 2]}\n", "name"),
])
def test_pipeline_specs(tmp_path: Path, steps: str, needle: str):
    path = tmp_path / "spec.yaml"
    path.write_text(SPEC_HEAD + steps)
    with pytest.raises(ConfigError) as info:
        read_pipelines(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message and needle in message, message


def test_pipeline_spec_yaml_is_never_executed(tmp_path: Path):
    """A spec is data: YAML tags that would build Python objects are refused, not run."""
    marker = tmp_path / "pwned"
    path = tmp_path / "spec.yaml"
    path.write_text(f"!!python/object/apply:os.system ['touch {marker}']\n")
    with pytest.raises(ConfigError):
        read_pipelines(path)
    assert not marker.exists()


# ---- say exactly what is wrong (issue: a non-ASCII value was "not one line of text")

@pytest.mark.parametrize(("header", "needle"), [
    (f"X-Token: {SECRET}é", "header value must be ASCII (character 19 is not)"),
    (f"X-Token: {SECRET}€", "header value must be ASCII"),
    (f"X-Token: {SECRET}\x1b[31m", "header value must not contain control characters (character 19)"),
    (f"X-Token: {SECRET}\x00", "must not contain control characters"),
    (f"X-Token: {SECRET}\r\nX-Injected: 1", "the value must be one line (a line break at character 19)"),
])
def test_bad_header_values_say_what_is_wrong(no_load, capsys, header, needle):
    code, err = run_cli(["--host", HOST, *S, "--header", header], capsys)
    assert code == 2
    line = one_line(err)
    assert needle in line and "number 1 of 1" in line
    assert SECRET not in err


@pytest.mark.parametrize(("host", "needle"), [
    ("http://127.0.0.1:８０８０", "the port must be ASCII digits"),
    ("127.0.0.1:８０８１", "the port must be ASCII digits"),
    ("grpc://127.0.0.1:8０81", "the port must be ASCII digits"),
    ("http://１２７.0.0.1:9", "the host name must be ASCII"),
    ("http://bücher.example:9", "xn-- form"),
    ("http://a\x1bb:9", "control characters"),
])
def test_bad_hosts_say_what_is_wrong(no_load, capsys, host, needle):
    code, err = run_cli(["--host", host, *S], capsys)
    assert code == 2
    line = one_line(err)
    assert needle in line and "header" not in line
    assert "\x1b" not in err


def test_control_characters_in_user_text_never_reach_the_console_raw(no_load, capsys, tmp_path: Path):
    forged = "\nseldon-load: all thresholds passed\x1b[2J"
    blocker = tmp_path / "file"
    blocker.write_text("x")
    for args in (["--results", str(blocker / forged)], ["--payload", str(tmp_path / forged)],
                 ["--users", forged], ["--pipeline-spec", str(tmp_path / forged)]):
        code, err = run_cli(["--host", HOST, *S, *args], capsys)
        assert code == 2, args
        line = one_line(err)  # the newline did not start a line of its own
        assert "\x1b" not in err and "\\n" in line, line


def test_master_bind_port_after_the_double_dash(no_load, capsys):
    for extra, needle in ((["--master-bind-port", "0"], "between 1 and 65535 (got 0)"),
                          (["--master-bind-port", "70000"], "between 1 and 65535"),
                          (["--master-bind-port", "x"], "invalid int value")):
        code, err = run_cli(["--host", HOST, *S, "--workers", "2", "--", *extra], capsys)
        assert code == 2
        assert needle in one_line(err)


def test_master_bind_options_after_the_double_dash_are_read_as_locust_reads_them():
    assert cli.master_bind([]) == (None, None)
    assert cli.master_bind(["--csv", "x", "--master-bind-port", "6000"]) == (None, 6000)
    assert cli.master_bind(["--master-bind-port=6001", "--master-bind-host", "0.0.0.0"]) == ("0.0.0.0", 6001)
    assert cli.master_bind(["--master-bind-p", "6002"]) == (None, 6002)  # argparse abbreviations too


def test_huge_or_special_spec_and_tls_files_are_refused_unread(no_load, capsys, tmp_path: Path):
    import os

    huge = tmp_path / "spec.yaml"
    with huge.open("wb") as f:  # sparse: no disk used
        f.truncate(2**20 + 1)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    big_ca = tmp_path / "ca.pem"
    with big_ca.open("wb") as f:
        f.truncate(16 * 2**20 + 1)
    for args, needle in ((["--pipeline-spec", str(huge)], "larger than 1 MiB"),
                         (["--pipeline-spec", str(fifo)], "not a regular file"),
                         (["--payload", str(fifo)], "not a regular file"),
                         (["--payload", "/dev/zero"], "not a regular file")):
        code, err = run_cli(["--host", HOST, *S, *args], capsys)
        assert code == 2 and needle in one_line(err), (args, err)
    code, err = run_cli(["--host", "https://127.0.0.1:9", *S, "--ca-file", str(big_ca)], capsys)
    assert code == 2 and "larger than 16 MiB" in one_line(err)


def test_payload_file_that_is_a_fifo_or_device_is_refused_without_blocking(tmp_path: Path):
    import os

    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError, match=r"is not a file \(a FIFO\)"):
        load_request_file(fifo)  # an open() would wait for a writer for ever
    with pytest.raises(ConfigError, match=r"is not a file \(a device\)"):
        load_request_file("/dev/zero")


def test_every_error_message_is_one_bounded_printable_line():
    err = ConfigError("x" * 10**6 + "\n\x1b[2J")
    text = str(err)
    assert len(text) < 2100 and text.isprintable() and "more characters" in text


def test_a_pipeline_spec_is_read_before_locust_starts(no_load, capsys, tmp_path: Path):
    bomb = tmp_path / "bomb.yaml"
    lines = ["l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, 9)]
    bomb.write_text("\n".join(lines) + f"\n{SPEC_HEAD}  - name: a\n    inputs: *l8\n")
    code, err = run_cli(["--host", HOST, *S, "--pipeline-spec", str(bomb)], capsys)
    assert code == 2
    assert "more than 50000 YAML nodes" in one_line(err)
