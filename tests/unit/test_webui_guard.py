"""The web UI's request guard decides from Host, Origin and Referer alone (the browser tests in
tests/e2e/test_webui_browser.py check it against a real Chromium and Locust's own form)."""

from __future__ import annotations

import pytest

from seldon_load.locust.webui import HostPolicy

UI = "127.0.0.1:8089"


@pytest.fixture
def policy() -> HostPolicy:
    return HostPolicy("127.0.0.1", 8089, ["loadtest.example.org", "proxy.internal:8443"])


@pytest.mark.parametrize("host", ["127.0.0.1:8089", "localhost:8089", "LOCALHOST:8089", "loadtest.example.org",
                                  "loadtest.example.org:443", "proxy.internal:8443"])
def test_own_and_allowed_hosts_are_served(policy, host):
    assert policy.refusal("GET", host, None, None) is None


@pytest.mark.parametrize("host", ["evil.example:8089", "127.0.0.1:8090", "127.0.0.1", "localhost", "",
                                  "proxy.internal:8444", "loadtest.example.org.evil.example", "0.0.0.0:8089"])
def test_foreign_hosts_are_refused_whatever_the_method(policy, host):
    for method in ("GET", "POST"):
        why = policy.refusal(method, host, None, None)
        assert why is not None and "Host" in why


def test_web_host_value_is_an_own_address():
    assert HostPolicy("10.1.2.3", 9000, []).refusal("GET", "10.1.2.3:9000", None, None) is None
    assert HostPolicy("::1", 9000, []).refusal("GET", "[::1]:9000", None, None) is None
    any_if = HostPolicy("0.0.0.0", 9000, [])
    assert any_if.refusal("GET", "0.0.0.0:9000", None, None) is not None  # not a name a browser uses
    assert any_if.refusal("GET", "127.0.0.1:9000", None, None) is None


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
def test_state_changing_requests_need_the_uis_own_origin(policy, method):
    assert policy.refusal(method, UI, f"http://{UI}", None) is None
    assert policy.refusal(method, UI, None, f"http://{UI}/?tab=charts") is None
    assert policy.refusal(method, UI, "https://evil.example", None) is not None
    assert policy.refusal(method, UI, "null", None) is not None
    assert policy.refusal(method, UI, None, "https://evil.example/page") is not None
    assert policy.refusal(method, UI, None, None) is not None  # no evidence where it came from
    assert policy.refusal(method, UI, "http://localhost:8089", None) is not None  # another origin


def test_a_foreign_origin_is_refused_on_reads_too(policy):
    # Locust allows every origin by CORS: a page elsewhere must not read the statistics
    assert policy.refusal("GET", UI, "https://evil.example", None) is not None
    assert policy.refusal("OPTIONS", UI, "https://evil.example", None) is not None
    assert policy.refusal("GET", UI, None, "https://evil.example/") is None  # an <img> reads nothing


def test_an_allowed_name_behind_a_tls_proxy_keeps_its_form_working(policy):
    assert policy.refusal("POST", "loadtest.example.org", "https://loadtest.example.org", None) is None
    assert policy.refusal("POST", "loadtest.example.org", "https://other.example.org", None) is not None
