"""Property-based tests of what users type: stage strings, durations, sweeps, headers, and the
secret scrubber. Any input ends as a valid value or one ``ConfigError`` line; nothing else escapes.

The OIP JSON/protobuf decoders and the Pipeline spec reader have their own properties in
test_oip_json_codec.py, test_oip_pb_codec.py and test_pipeline_spec.py.
"""

from __future__ import annotations

import math
import string

from hypothesis import example, given, settings
from hypothesis import strategies as st

from seldon_load.errors import ConfigError
from seldon_load.load.plan import RatePlan, Stage, parse_duration, parse_stages
from seldon_load.oip.target import parse_target
from seldon_load.settings import REDACTED, parse_headers, parse_sweep, scrub, secrets_of

UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "": 1.0}
STAGE_ALPHABET = "0123456789.:,smhx -+eEnaif\t"


def _outcome(parse, text: str):
    """The parse result, or the ConfigError line; any other exception fails the test."""
    try:
        return parse(text)
    except ConfigError as exc:
        message = str(exc)
        assert message and "\n" not in message, message
        return exc


durations = st.tuples(st.integers(0, 86400 * 1000), st.sampled_from(["ms", "s", "m", "h", ""])).filter(
    lambda d: d[0] * UNITS[d[1]] <= 86400)
rates = st.one_of(st.integers(1, 1_000_000).map(str),
                  st.floats(0.001, 1e6, allow_nan=False).map(lambda x: f"{x:.3f}").filter(lambda t: float(t) > 0))


def _text(d: tuple[int, str]) -> str:
    return f"{d[0]}{d[1]}"


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet=STAGE_ALPHABET, max_size=40) | st.text(max_size=40))
def test_any_text_is_stages_or_one_config_error(text):
    out = _outcome(parse_stages, text)
    if isinstance(out, ConfigError):
        return
    assert out and all(isinstance(s, Stage) for s in out)
    for s in out:
        assert math.isfinite(s.target_rps) and 0 < s.target_rps <= 1e6
        assert 0 <= s.ramp_s <= 86400 and 0 < s.hold_s <= 86400


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(rates, durations, durations.filter(lambda d: d[0] > 0)), min_size=1, max_size=6),
       st.sampled_from([",", " , ", ",\t"]))
def test_valid_stages_round_trip(parts, sep):
    text = sep.join(f"{rps}:{_text(ramp)}:{_text(hold)}" for rps, ramp, hold in parts)
    stages = parse_stages(text)
    assert len(stages) == len(parts)
    for st_, (rps, ramp, hold) in zip(stages, parts, strict=True):
        assert st_.target_rps == float(rps)
        assert math.isclose(st_.ramp_s, ramp[0] * UNITS[ramp[1]], rel_tol=1e-12)
        assert math.isclose(st_.hold_s, hold[0] * UNITS[hold[1]], rel_tol=1e-12)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 500), st.integers(0, 20), st.integers(1, 20)), min_size=1, max_size=4))
def test_parsed_plans_schedule_every_arrival_once_in_order(parts):
    """The plan a stage string makes: arrivals 1..N have due times inside the plan, in order."""
    stages = parse_stages(",".join(f"{r}:{a}s:{h}s" for r, a, h in parts))
    plan = RatePlan.from_stages(stages)
    total = plan.total_count()
    assert math.isclose(total, plan.count_at(plan.end_s), rel_tol=1e-9)
    n = int(total)
    ks = sorted({1, n, *range(1, n + 1, max(1, n // 50))} - {0})
    times = [plan.time_of(k) for k in ks]
    assert all(t is not None and 0 <= t <= plan.end_s + 1e-9 for t in times)
    assert times == sorted(times)
    assert plan.time_of(total + 1) is None  # nothing beyond the plan is ever scheduled


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_mutated_valid_stage_strings_never_crash(data):
    text = data.draw(st.sampled_from(["50:10s:30s,100:10s:30s", "1:0s:1s", "20.5:500ms:2m,40:1h:1s"]))
    pos = data.draw(st.integers(0, len(text)))
    cut = data.draw(st.integers(0, 4))
    insert = data.draw(st.text(alphabet=STAGE_ALPHABET, max_size=3))
    _outcome(parse_stages, text[:pos] + insert + text[pos + cut:])


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=20))
def test_any_text_is_a_duration_or_one_config_error(text):
    out = _outcome(lambda t: parse_duration(t, "--settle"), text)
    if not isinstance(out, ConfigError):
        assert math.isfinite(out) and out >= 0


@given(durations)
def test_durations_round_trip(d):
    assert math.isclose(parse_duration(_text(d)), d[0] * UNITS[d[1]], rel_tol=1e-12)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=STAGE_ALPHABET + "0123456789", max_size=30) | st.text(max_size=30))
@example("²:")  # isdigit() but not int(): was a ValueError, found by this test
@example("٣:1s")
def test_any_text_is_a_sweep_or_one_config_error(text):
    out = _outcome(parse_sweep, text)
    if not isinstance(out, ConfigError):
        assert out and all(users >= 1 and hold >= 0 for users, hold in out)


secrets = st.text(alphabet=string.ascii_letters + string.digits + "-_.~", min_size=10, max_size=40)
names = st.text(alphabet=string.ascii_letters + string.digits + "-_", min_size=1, max_size=20)


@settings(max_examples=300, deadline=None)
@given(secrets, names, st.sampled_from(["{s}", "Bearer {s}", "{n} {s}", "{n} : {s}\n{s}", "{n}\t{s}",
                                        ": {s}", "{n}:{s}\r\nX: 1", "{s}:"]))
def test_a_bad_header_is_refused_without_echoing_any_of_it(secret, name, template):
    item = template.format(s=secret, n=name)
    out = _outcome(parse_headers, [item]) if not _valid_header(item) else None
    if isinstance(out, ConfigError):
        assert secret not in str(out)
        assert str(out).startswith("invalid --header (number 1 of 1)")


def _valid_header(item: str) -> bool:
    try:
        parse_headers([item])
    except ConfigError:
        return False
    return True


@given(names, st.text(alphabet=string.printable.replace("\n", "").replace("\r", "").replace("\x0b", "")
                      .replace("\x0c", ""), max_size=40))
def test_valid_headers_parse(name, value):
    assert parse_headers([f"{name}: {value}"]) == {name.lower(): value.strip()}


@settings(max_examples=300, deadline=None)
@given(secrets, secrets, st.text(max_size=60), st.integers(0, 120), st.booleans())
def test_scrub_leaves_no_secret_even_in_a_cut_message(header_secret, password, filler, cut, dots):
    """What a server echoes (whole, or cut short by a message limit) never survives ``scrub``."""
    target = parse_target(f"http://user:{password}@127.0.0.1:8080", "m", None)
    found = secrets_of({"authorization": f"Bearer {header_secret}"}, target)
    message = f"{filler} got Bearer {header_secret} from user:{password} {filler}"
    message = message[:cut] + ("..." if dots else "")
    clean = scrub({"errors": [{"examples": [message]}], message: 1}, found)
    text = repr(clean)
    for s in (header_secret, password):
        assert s not in text
        tail = clean["errors"][0]["examples"][0].removesuffix("...")
        assert not any(tail.endswith(s[:k]) for k in range(6, len(s)))  # no long prefix of it at the end
    if cut >= len(filler) + 20:  # the whole header secret was in the message: replaced, not dropped
        assert REDACTED in clean["errors"][0]["examples"][0]


def test_scrub_keeps_numbers_and_short_values():
    target = parse_target("http://127.0.0.1:8080", "m", None)
    found = secrets_of({"x-flag": "1", "x-mode": "true", "authorization": "Bearer abcdefgh12345"}, target)
    assert "1" not in found and "true" not in found
    doc = {"p99_ms": 1.5, "note": "1 of 1 true", "n": [1, 2]}
    assert scrub(doc, found) == doc
