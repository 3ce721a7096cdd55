"""Accept-Encoding negotiation for precompressed variants (table tests, RFC 9110 §12.5.3)."""

from __future__ import annotations

import pytest

from server.http.encodings import negotiate, parse_precompressed

ALL = ("br", "zstd", "gzip")


@pytest.mark.parametrize(
    "header, offered, codings, identity",
    [
        pytest.param(None, ALL, [], True, id="no-header-identity"),
        pytest.param("", ALL, [], True, id="empty-header-identity-only"),
        pytest.param("gzip", ALL, ["gzip"], True, id="one-coding"),
        pytest.param("gzip, deflate, br", ALL, ["br", "gzip"], True, id="server-order-on-ties"),
        pytest.param("gzip;q=1.0, br;q=0.5", ALL, ["gzip", "br"], True, id="q-values-rank"),
        pytest.param("br;q=0, gzip", ALL, ["gzip"], True, id="q0-excludes"),
        pytest.param("*", ALL, ["br", "zstd", "gzip"], True, id="star-accepts-all"),
        pytest.param("*;q=0.5, gzip", ALL, ["gzip", "br", "zstd"], True, id="explicit-beats-star"),
        pytest.param("gzip, identity;q=0", ALL, ["gzip"], False, id="identity-q0"),
        pytest.param("*;q=0", ALL, [], False, id="star-q0-excludes-identity"),
        pytest.param("*;q=0, identity", ALL, [], True, id="identity-named-beats-star"),
        pytest.param("x-gzip", ALL, ["gzip"], True, id="x-gzip-alias"),
        pytest.param("GZIP;Q=0.8", ALL, ["gzip"], True, id="case-insensitive"),
        pytest.param("gzip;q=2", ALL, [], True, id="invalid-qvalue-ignored"),
        pytest.param("gzip;q=abc, br", ALL, ["br"], True, id="garbage-qvalue-ignored"),
        pytest.param("br", ("gzip",), [], True, id="not-offered"),
    ],
)
def test_negotiate(header, offered, codings, identity):
    assert negotiate(header, offered) == (codings, identity)


@pytest.mark.parametrize(
    "spec, result",
    [("off", ()), ("br,zstd,gzip", ALL), ("gzip, br", ("gzip", "br")), ("gzip,gzip", ("gzip",))],
)
def test_parse_precompressed(spec, result):
    assert parse_precompressed(spec) == result


def test_unknown_coding_is_an_error():
    with pytest.raises(ValueError):
        parse_precompressed("br,lzma")
