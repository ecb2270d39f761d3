"""The HTTP transport's session (actors/exchange/_transport.py): the environment is read once."""

from __future__ import annotations

from requests.adapters import HTTPAdapter

from actors.exchange._transport import _client


def test_the_session_reads_proxies_once_and_never_scans_the_environment_per_request(monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    monkeypatch.setenv("NO_PROXY", "")
    client = _client("key", "secret", "https://api.bybit.com/", HTTPAdapter(), timeout=1.0, recv_window=5000)
    session = client.client
    assert session.trust_env is False  # no proxy, no_proxy or netrc scan on every request
    assert session.proxies["https"] == "http://proxy.internal:3128"  # an operator's proxy still applies


def test_no_proxy_for_the_exchange_means_none_is_set(monkeypatch):
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.internal:3128")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    client = _client("key", "secret", "http://127.0.0.1:8080", HTTPAdapter(), timeout=1.0, recv_window=5000)
    assert client.client.trust_env is False and "http" not in client.client.proxies
