"""Locust's statistics fed from the open-loop engine: in bulk they must hold exactly what one
``request`` event per answer gives, and a locustfile's own listener must still see every answer."""

from __future__ import annotations

import random
from types import SimpleNamespace

import pytest
from locust import User
from locust.env import Environment

from seldon_load.transport.outcome import Outcome
from seldon_load.users import REQUEST_TYPE, _StatsFeed

NAME = "rest infer synth"


class _Quiet(User):
    abstract = False


def _env() -> Environment:
    env = Environment(user_classes=[_Quiet])
    env.create_local_runner()
    return env


def _answers(n: int) -> list[tuple[float, float, float, Outcome]]:
    rnd = random.Random(7)
    out = []
    for i in range(n):
        due = 100.0 + i * 0.0025
        latency_s = rnd.choice((0.0004, 0.0012, 0.0031, 0.047, 0.18, 1.7, 12.3)) * rnd.uniform(0.5, 1.5)
        out.append((due, due + 1e-5, due + latency_s, Outcome(True, response_bytes=100 + i % 9)))
    return out


def _feed(env: Environment, answers) -> None:
    st = SimpleNamespace(environment=env, fire=lambda *a: pytest.fail("a success went down the failure path"))
    feed = _StatsFeed(st, NAME)
    for a in answers:
        feed(*a)
    feed.flush()


def _summary(entry) -> dict:
    return {
        "num_requests": entry.num_requests, "num_failures": entry.num_failures,
        "total_response_time": round(entry.total_response_time, 6),
        "min": round(entry.min_response_time, 9), "max": round(entry.max_response_time, 9),
        "content": entry.total_content_length, "buckets": dict(entry.response_times),
        "per_sec_total": sum(entry.num_reqs_per_sec.values()),
        "p50": entry.get_response_time_percentile(0.5), "p99": entry.get_response_time_percentile(0.99),
    }


def test_batched_statistics_equal_one_event_per_answer(monkeypatch):
    from seldon_load.locust import patches

    batches = []
    extend = patches.extend_stats
    monkeypatch.setattr(patches, "extend_stats", lambda *a: (batches.append(len(a[3])), extend(*a)))
    answers = _answers(1000)
    bulk, reference = _env(), _env()
    _feed(bulk, answers)
    assert sum(batches) == 1000 and max(batches) <= _StatsFeed.BATCH_MAX  # the bulk path was taken
    for due, _sent, done, out in answers:
        reference.events.request.fire(request_type=REQUEST_TYPE, name=NAME, response_time=(done - due) * 1000.0,
                                      response_length=out.response_bytes, context={}, exception=None)
    got, want = bulk.stats.get(NAME, REQUEST_TYPE), reference.stats.get(NAME, REQUEST_TYPE)
    assert _summary(got) == _summary(want)
    assert _summary(bulk.stats.total) == _summary(reference.stats.total)
    assert got.num_requests == 1000


def test_a_listener_of_its_own_sees_every_answer():
    env = _env()
    seen = []
    env.events.request.add_listener(lambda **kw: seen.append(kw["response_time"]))
    answers = _answers(100)
    _feed(env, answers)
    assert len(seen) == 100  # one event per answer, in order
    assert seen == pytest.approx([(done - due) * 1000.0 for due, _s, done, _o in answers])
    assert env.stats.get(NAME, REQUEST_TYPE).num_requests == 100


def test_a_replaced_bucketing_is_used(monkeypatch):
    import locust.stats as ls

    monkeypatch.setattr(ls, "bucket_response_time", lambda rt: 7)
    env = _env()
    _feed(env, _answers(50))
    assert dict(env.stats.get(NAME, REQUEST_TYPE).response_times) == {7: 50}
