"""--cache-control: rules parsed and matched (table), and the field on the wire: on 200,
206 and 304 of the files it matches, never on errors, and listings keep no-cache."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from server.http.cachecontrol import CacheControl, Rule, parse_rule, valid_value

from .rawhttp import exchange, get
from .serverproc import REPO, ServerProcess


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        pytest.param("public, max-age=300", Rule("", "public, max-age=300"), id="default"),
        pytest.param("max-age=300", Rule("", "max-age=300"), id="equals-in-a-value-is-no-glob"),
        pytest.param(
            "*.iso=public, max-age=31536000, immutable",
            Rule("*.iso", "public, max-age=31536000, immutable"),
            id="name-glob",
        ),
        pytest.param("/isos/*=no-store", Rule("isos/*", "no-store"), id="path-glob"),
        pytest.param('no-cache="Set-Cookie"', Rule("", 'no-cache="Set-Cookie"'), id="quoted"),
        pytest.param("index.html=no-cache", Rule("index.html", "no-cache"), id="exact-name"),
    ],
)
def test_rules_parse(text: str, rule: Rule) -> None:
    assert parse_rule(text) == rule


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("", id="empty"),
        pytest.param("public max-age=1", id="space-in-a-token"),
        pytest.param("public,\r\nX-Evil: 1", id="line-break-header-injection"),
        pytest.param("max-age=1\nX: y", id="lf"),
        pytest.param("*.iso=", id="glob-without-value"),
        pytest.param("=public", id="empty-glob-is-no-value"),
        pytest.param('no-cache="unterminated', id="open-quote"),
        pytest.param("max-age=(1)", id="parenthesis"),
    ],
)
def test_bad_rules_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_rule(text)


def test_first_matching_rule_wins() -> None:
    cc = CacheControl(
        (
            parse_rule("*.iso=immutable"),
            parse_rule("isos/*=no-store"),
            parse_rule("max-age=60"),
        )
    )
    assert cc.value_for("isos/a.iso") == "immutable"  # the name rule came first
    assert cc.value_for("isos/readme.txt") == "no-store"
    assert cc.value_for("b.iso") == "immutable"
    assert cc.value_for("docs/x.txt") == "max-age=60"
    assert CacheControl((parse_rule("*.iso=x"),)).value_for("a.txt") is None
    assert valid_value("public, max-age=1, s-maxage=2, must-revalidate")


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("cc")
    (base / "a.iso").write_bytes(b"i" * 1000)
    (base / "notes.txt").write_bytes(b"n" * 1000)
    (base / "dir").mkdir()
    (base / "dir" / "x.txt").write_bytes(b"x")
    return base


def test_on_the_wire(root: Path, tmp_path: Path) -> None:
    args = ["--autoindex", "--cache-control", "*.iso=public, max-age=31536000, immutable"]
    args += ["--cache-control", "public, max-age=300"]
    with ServerProcess(root, args, logdir=tmp_path) as srv:
        r, _ = exchange(srv.port, get("/a.iso"))
        iso = "public, max-age=31536000, immutable"
        assert r[0].status == 200 and r[0].header("cache-control") == iso
        etag = r[0].header("etag")
        data = (
            get("/a.iso")  # from the file cache now: the same head
            + get("/a.iso", extra="Range: bytes=0-9\r\n")
            + get("/a.iso", extra="Range: bytes=0-1,5-6\r\n")
            + get("/a.iso", extra=f"If-None-Match: {etag}\r\n")
            + get("/a.iso", extra="Range: bytes=5000-\r\n")
            + get("/notes.txt")
            + get("/missing.txt")
            + get("/dir/")
        )
        r, _ = exchange(srv.port, data, expect=8)
    assert [x.status for x in r] == [200, 206, 206, 304, 416, 200, 404, 200]
    assert [x.header("cache-control") for x in r[:4]] == [iso] * 4
    assert r[4].header("cache-control") is None  # no caching of an error
    assert r[5].header("cache-control") == "public, max-age=300"  # the default rule
    assert r[6].header("cache-control") is None
    assert r[7].header("cache-control") == "no-cache"  # listings keep theirs


@pytest.mark.parametrize("bad", ["public max-age=1", "*.iso=", "a\r\nb"])
def test_an_invalid_rule_is_a_usage_error(bad: str, root: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "server", "-d", str(root), "--cache-control", bad],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert done.returncode == 2 and "--cache-control" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
