"""The automatic saturation search as a state machine against a known capacity."""

import pytest

from seldon_load.errors import ConfigError
from seldon_load.load.auto import AutoConfig, AutoSearch


def run(capacity, **kw):
    s = AutoSearch(AutoConfig(**kw).validate())
    rate, tried = s.first(), []
    while rate is not None:
        tried.append(rate)
        rate = s.next(rate, rate <= capacity)
    return s, tried


@pytest.mark.parametrize("capacity", [37.0, 100.0, 199.0, 640.0])
def test_brackets_capacity_within_precision(capacity):
    s, tried = run(capacity, start_rps=10, max_rps=5000, precision=0.05)
    assert s.lo <= capacity < s.hi
    assert (s.hi - s.lo) / s.lo <= 0.05
    assert len(tried) < 20


def test_never_exceeds_max_rps():
    s, tried = run(10_000, start_rps=10, max_rps=300)
    assert max(tried) == 300
    assert s.hi is None and "not saturated" in s.done_reason


def test_goes_down_when_first_stage_fails():
    s, tried = run(3.0, start_rps=40, max_rps=100)
    assert tried[1] < tried[0]
    assert s.lo <= 3.0 < s.hi


def test_rejects_bad_config():
    with pytest.raises(ConfigError):
        AutoConfig(start_rps=100, max_rps=10).validate()
    with pytest.raises(ConfigError):
        AutoConfig(precision=0).validate()


def run_open_loop(capacity, delivered=1.0, **kw):
    """A server that, once overloaded, completes ``delivered`` x its capacity a second."""
    s = AutoSearch(AutoConfig(**kw).validate())
    rate, tried = s.first(), []
    while rate is not None:
        tried.append(rate)
        ok = rate <= capacity
        rate = s.next(rate, ok, rate if ok else capacity * delivered)
    return s, tried


@pytest.mark.parametrize("capacity", [37.0, 100.0, 200.0, 299.0, 640.0])
def test_an_overloaded_stages_throughput_closes_the_bracket_in_fewer_stages(capacity):
    s, tried = run_open_loop(capacity, start_rps=10, max_rps=5000, precision=0.05)
    assert s.lo <= capacity < s.hi
    assert (s.hi - s.lo) / s.lo <= 0.05 + 1e-9
    _, bisected = run(capacity, start_rps=10, max_rps=5000, precision=0.05)
    first_failure = [ok for _, ok in s.history].index(False)
    assert len(tried) - first_failure <= 3, tried  # the failing stage and at most two more
    assert len(tried) < len(bisected), (tried, bisected)


def test_the_testbeds_capacity_takes_four_stages_from_100_rps():
    s, tried = run_open_loop(200.0, start_rps=100, max_rps=1000, precision=0.05)
    assert tried == [100, 200, 400, 210]
    assert s.lo == 200


@pytest.mark.parametrize("delivered", [0.5, 0.8])
def test_a_server_that_degrades_under_overload_is_still_bracketed(delivered):
    s, tried = run_open_loop(300.0, delivered, start_rps=10, max_rps=5000, precision=0.05)
    assert s.lo <= 300.0 < s.hi and (s.hi - s.lo) / s.lo <= 0.05 + 1e-9
    assert len(tried) < 20


def test_a_stage_that_kept_up_but_failed_bisects_instead():
    """Failed on latency with throughput equal to its rate: no capacity estimate in it."""
    s = AutoSearch(AutoConfig(start_rps=100, max_rps=1000, precision=0.05).validate())
    assert s.next(100, True, 100) == 200
    assert s.next(200, False, 199) == pytest.approx((100 * 200) ** 0.5)


def test_a_stage_just_above_capacity_probes_just_below_it():
    """At capacity (a queue growing, answers a few percent short) the throughput is no estimate,
    yet the capacity is just below: one probe there closes the bracket where bisection takes four."""
    s = AutoSearch(AutoConfig(start_rps=25, max_rps=400, precision=0.08).validate())
    assert s.next(25, True, 25) == 50
    assert s.next(50, True, 50) == 100
    nxt = s.next(100, False, 97.0, fell_behind=True)
    assert nxt == pytest.approx(100 / 1.08)
    assert s.next(nxt, True, nxt) is None and s.lo == nxt and s.hi == 100
    # not sustained there either: it too fell behind, so again just below it
    s = AutoSearch(AutoConfig(start_rps=25, max_rps=400, precision=0.08).validate())
    s.next(50, True, 50)
    s.next(100, False, 97.0, fell_behind=True)
    assert s.next(100 / 1.08, False, 91.0, fell_behind=True) == pytest.approx(100 / 1.08 ** 2)


def test_first_stage_overloaded_goes_to_its_throughput():
    s = AutoSearch(AutoConfig(start_rps=400, max_rps=1000, precision=0.05).validate())
    assert s.next(400, False, 120) == 120
    assert s.next(120, True, 120) == pytest.approx(126)
