"""Shared fixtures: one real MLServer testbed per test session, on free loopback ports."""

from __future__ import annotations

import os
from collections.abc import Iterator

# Importing locust monkey-patches the whole interpreter (threads become greenlets). Tests import
# parts of it (its option parser), and a patched pytest process can deadlock on its own threads,
# subprocess pipes and the testbed's start-up waits. Import it unpatched here, once; the Locust
# processes the tests start are separate and patch themselves as usual.
os.environ["LOCUST_SKIP_MONKEY_PATCH"] = "1"
try:
    import locust  # noqa: E402,F401
finally:
    del os.environ["LOCUST_SKIP_MONKEY_PATCH"]

import pytest

from seldon_load.testbed.server import Testbed


@pytest.fixture(scope="session")
def testbed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Testbed]:
    """A running testbed (rest_url, grpc_target, metrics_url); stopped by PID at the end.

    ``up()`` stops the server itself when start-up fails, so nothing is left behind then either.
    """
    bed = Testbed.for_tests(tmp_path_factory.mktemp("testbed"))
    bed.up(timeout_s=90)
    try:
        yield bed
    finally:
        bed.down()
