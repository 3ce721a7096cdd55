"""No byte outside the served root, whatever the request-target says (raw sockets: real
clients normalize these paths away before sending them)."""

from __future__ import annotations

import pytest

from .rawhttp import exchange

OUTSIDE_MARKERS = (b"outside the root", b"outside dir file", b"root:x:0:0", b"SECRET=1", b"[core]")

CORPUS = [
    "/../outside/secret.txt",
    "/../../../../../../etc/passwd",
    "/%2e%2e/outside/secret.txt",
    "/%2E%2E%2Foutside%2Fsecret.txt",
    "/..%2foutside%2fsecret.txt",
    "/..%5coutside%5csecret.txt",
    "/..\\outside\\secret.txt",
    "/%252e%252e/outside/secret.txt",
    "/%252e%252e%252foutside%252fsecret.txt",
    "/%c0%ae%c0%ae/outside/secret.txt",
    "/%c0%af../outside/secret.txt",
    "/%00../outside/secret.txt",
    "/hello.txt%00.html",
    "//etc/passwd",
    "/./.././outside/secret.txt",
    "/dir/../../outside/secret.txt",
    "/dir/%2e%2e/%2e%2e/outside/secret.txt",
    "/.%2e/outside/secret.txt",
    "http://x/../outside/secret.txt",
    "http://x/%2e%2e/outside/secret.txt",
    "http://x/..%2f..%2fetc/passwd",
    "/link-outside.txt",
    "/linkdir-outside/file.txt",
    "/linkdir-outside/",
    "/linkdir-outside",
    "/.env",
    "/%2eenv",
    "/.git/config",
    "/%2egit/config",
    "/dir/../.env",
    "/visible/.hidden",
    "/link-to-dotfile",
    "/linkdir-inside/../.env",
    "/" + "../" * 50 + "etc/passwd",
]


@pytest.mark.parametrize("target", CORPUS)
def test_no_byte_outside_the_root(server, tree, target):
    req = f"GET {target} HTTP/1.1\r\nHost: x\r\n\r\n".encode("latin-1")
    responses, _ = exchange(server.port, req, timeout=5)
    assert len(responses) == 1
    resp = responses[0]
    body = bytes(resp.body)
    for marker in OUTSIDE_MARKERS:
        assert marker not in body, target
    assert resp.status in (200, 301, 400, 403, 404)
    if resp.status == 200:
        # Whatever was served is a file inside the root.
        assert body in tree.files.values()


def test_dotfiles_allow_serves_them(tree):
    from .serverproc import ServerProcess

    with ServerProcess(tree.root, ["--dotfiles", "allow"], logdir=tree.base / "logs") as srv:
        responses, _ = exchange(srv.port, b"GET /.env HTTP/1.1\r\nHost: x\r\n\r\n")
        assert responses[0].status == 200 and bytes(responses[0].body) == b"SECRET=1\n"
        # Allowing dotfiles does not allow leaving the root.
        responses, _ = exchange(srv.port, b"GET /link-outside.txt HTTP/1.1\r\nHost: x\r\n\r\n")
        assert responses[0].status == 404
