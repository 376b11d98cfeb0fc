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
