"""Shared fixtures: one real MLServer testbed per test session, on free loopback ports."""

from __future__ import annotations

from collections.abc import Iterator

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
