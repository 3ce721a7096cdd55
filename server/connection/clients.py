"""--max-connections-per-ip: open connections counted by client, and the cap.

The client is the one the trusted-proxy rules name (``http.forwarded.client_address``):

* a direct connection's client is its peer, known at accept: counted, and refused at once
  when over the cap;
* a connection from a trusted proxy carries its clients' addresses in Forwarded or
  X-Forwarded-For, known only with each request: the connection counts for the client of
  its latest request (a proxy may reuse one upstream connection for several clients);
* a unix-socket peer (a local proxy) is exempt unless forwarded fields name a client.

Over the cap the answer is 429 with Retry-After, and the connection closes.
"""

from __future__ import annotations

from collections import Counter

from ..http.forwarded import UNIX_PEER, TrustedPeers, client_address
from ..http.request import Request


class ClientCounts:
    """Open connections per client, against one cap (0: no cap)."""

    __slots__ = ("cap", "counts", "refused", "trusted")

    def __init__(self, cap: int, trusted: TrustedPeers) -> None:
        self.cap = cap
        self.trusted = trusted
        self.counts: Counter[str] = Counter()
        self.refused = 0  # connections and requests turned away with 429

    def at_accept(self, peer: str) -> str | None:
        """The key a new connection counts under, "" if it is over the cap (refuse it), or
        None if it counts for nobody yet (no cap, a trusted proxy, a unix socket)."""
        if not self.cap or peer == UNIX_PEER or self.trusted.trusts(peer):
            return None
        return self._take(peer)

    def at_request(self, peer: str, current: str | None, request: Request) -> str | None:
        """Re-attribute a proxied connection to its latest request's client: its new key,
        or "" if that client is over the cap (refuse the request)."""
        if request.forwarded is None and request.x_forwarded_for is None:
            return current
        client = client_address(peer, self.trusted, request.forwarded, request.x_forwarded_for)
        if client in (current, peer):
            return current  # the same client, or none named (the peer is no client)
        self.release(current)
        return self._take(client)

    def release(self, key: str | None) -> None:
        if key:
            n = self.counts[key] - 1
            if n > 0:
                self.counts[key] = n
            else:
                del self.counts[key]

    def _take(self, key: str) -> str:
        if self.counts[key] >= self.cap:
            self.refused += 1
            return ""
        self.counts[key] += 1
        return key
