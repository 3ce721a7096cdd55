"""Forwarded / X-Forwarded-* are believed only from trusted proxies (table tests)."""

from __future__ import annotations

import pytest

from server.http.forwarded import TrustedPeers, client_address

LOCAL = TrustedPeers("127.0.0.1")


@pytest.mark.parametrize(
    "peer, trusted, fields, address, scheme, host",
    [
        pytest.param(
            "203.0.113.9",
            LOCAL,
            {"x_forwarded_for": "1.2.3.4"},
            "203.0.113.9",
            "http",
            None,
            id="untrusted-peer-ignored",
        ),
        pytest.param(
            "127.0.0.1",
            LOCAL,
            {"x_forwarded_for": "1.2.3.4"},
            "1.2.3.4",
            "http",
            None,
            id="trusted-peer-believed",
        ),
        pytest.param("127.0.0.1", LOCAL, {}, "127.0.0.1", "http", None, id="no-fields-is-peer"),
        pytest.param(
            "127.0.0.1",
            LOCAL,
            {"x_forwarded_for": "6.6.6.6, 1.2.3.4"},
            "1.2.3.4",
            "http",
            None,
            id="client-cannot-prepend-a-fake",
        ),
        pytest.param(
            "127.0.0.1",
            TrustedPeers("127.0.0.1, 10.0.0.0/8"),
            {"x_forwarded_for": "1.2.3.4, 10.1.2.3"},
            "1.2.3.4",
            "http",
            None,
            id="trusted-hops-skipped",
        ),
        pytest.param(
            "127.0.0.1",
            LOCAL,
            {"x_forwarded_for": "unknown"},
            "127.0.0.1",
            "http",
            None,
            id="unknown-is-no-address",
        ),
        pytest.param(
            "127.0.0.1",
            LOCAL,
            {"x_forwarded_for": "not an ip\r\nX: y"},
            "127.0.0.1",
            "http",
            None,
            id="garbage-never-becomes-the-address",
        ),
        pytest.param(
            "127.0.0.1",
            LOCAL,
            {
                "x_forwarded_for": "1.2.3.4",
                "x_forwarded_proto": "https",
                "x_forwarded_host": "example.com",
            },
            "1.2.3.4",
            "https",
            "example.com",
            id="proto-and-host",
        ),
        pytest.param(
            "127.0.0.1",
            LOCAL,
            {"x_forwarded_proto": "gopher"},
            "127.0.0.1",
            "http",
            None,
            id="unknown-proto-ignored",
        ),
        pytest.param(
            "127.0.0.1",
            LOCAL,
            {"forwarded": 'for=192.0.2.60;proto=https;host=a.example, for="[2001:db8::1]:4711"'},
            "2001:db8::1",
            "http",
            None,
            id="rfc7239-the-clients-element",
        ),
        pytest.param(
            "127.0.0.1",
            LOCAL,
            {"forwarded": "for=192.0.2.60;proto=https;host=a.example"},
            "192.0.2.60",
            "https",
            "a.example",
            id="rfc7239-one-element",
        ),
        pytest.param(
            "127.0.0.1",
            LOCAL,
            {"forwarded": 'for="_hidden", for=192.0.2.43'},
            "192.0.2.43",
            "http",
            None,
            id="rfc7239-obfuscated",
        ),
        pytest.param(
            "127.0.0.1",
            LOCAL,
            {"forwarded": "for=192.0.2.43:8080;proto=https", "x_forwarded_for": "9.9.9.9"},
            "192.0.2.43",
            "https",
            None,
            id="forwarded-wins-over-x-forwarded",
        ),
        pytest.param(
            "unix",
            TrustedPeers("127.0.0.1"),
            {"x_forwarded_for": "1.2.3.4"},
            "1.2.3.4",
            "http",
            None,
            id="unix-peer-trusted-by-default",
        ),
        pytest.param(
            "unix",
            TrustedPeers("127.0.0.1", trust_unix=False),
            {"x_forwarded_for": "1.2.3.4"},
            "unix",
            "http",
            None,
            id="unix-peer-untrusted-when-told",
        ),
        pytest.param(
            "198.51.100.7",
            TrustedPeers("*"),
            {"x_forwarded_for": "1.2.3.4"},
            "1.2.3.4",
            "http",
            None,
            id="star-trusts-all",
        ),
    ],
)
def test_client_address(peer, trusted, fields, address, scheme, host):
    # scheme and host: what proxies say of them is not used (the address is what is logged).
    del scheme, host
    got = client_address(
        peer,
        trusted,
        forwarded=fields.get("forwarded"),
        x_forwarded_for=fields.get("x_forwarded_for"),
    )
    assert got == address


def test_malformed_allow_list_is_an_error():
    with pytest.raises(ValueError):
        TrustedPeers("127.0.0.1, not-an-ip")
