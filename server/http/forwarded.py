"""Who the client is behind a reverse proxy: Forwarded (RFC 7239) and X-Forwarded-*.

Security truth: these fields are whatever the peer wrote. They are believed only when the
peer itself is a trusted proxy (``--forwarded-allow-ips``), and then the client is the
nearest address in the chain that is not a trusted proxy: a client can prepend any
address it likes, but cannot forge what the trusted proxies appended after it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

UNIX_PEER = "unix"  # how a unix-socket peer (which has no address) is named

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class TrustedPeers:
    """A set of peer addresses and networks whose forwarding fields are believed.

    ``*`` trusts every peer; ``unix`` trusts unix-socket peers (always trusted by
    default: only local processes allowed by the socket file's mode can connect).
    """

    def __init__(self, spec: str = "127.0.0.1", trust_unix: bool = True) -> None:
        self.any = False
        self.unix = trust_unix
        self.networks: list[Network] = []
        for item in (part.strip() for part in spec.split(",")):
            if not item:
                continue
            if item == "*":
                self.any = True
            elif item == UNIX_PEER:
                self.unix = True
            else:
                # Raises ValueError on a malformed entry: the CLI turns it into a message.
                self.networks.append(ipaddress.ip_network(item, strict=False))

    def trusts(self, peer: str) -> bool:
        if peer == UNIX_PEER:
            return self.unix or self.any
        if self.any:
            return True
        address = _ip(peer)
        return address is not None and any(address in net for net in self.networks)


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _node_address(node: str) -> str | None:
    """The address in a Forwarded ``for=`` node or an X-Forwarded-For entry, or None.

    Accepts ``1.2.3.4``, ``1.2.3.4:80``, ``"[2001:db8::1]:4711"``, ``2001:db8::1``;
    ``unknown`` and obfuscated identifiers (``_hidden``) name no address.
    """
    node = node.strip().strip('"')
    if node.startswith("["):
        end = node.find("]")
        node = node[1:end] if end > 0 else ""
    elif node.count(":") == 1:
        node = node.split(":", 1)[0]
    address = _ip(node)
    return str(address) if address is not None else None


def _forwarded_elements(value: str) -> list[dict[str, str]]:
    """Forwarded elements, left to right, as lower-cased pair dicts (RFC 7239 §4)."""
    elements = []
    for element in _split_outside_quotes(value, ","):
        pairs: dict[str, str] = {}
        for pair in _split_outside_quotes(element, ";"):
            name, eq, val = pair.partition("=")
            if eq:
                pairs[name.strip().lower()] = val.strip().strip('"')
        elements.append(pairs)
    return elements


def _split_outside_quotes(text: str, sep: str) -> Iterable[str]:
    part: list[str] = []
    quoted = False
    for ch in text:
        if ch == '"':
            quoted = not quoted
        if ch == sep and not quoted:
            yield "".join(part)
            part = []
        else:
            part.append(ch)
    yield "".join(part)


def client_address(
    peer: str,
    trusted: TrustedPeers,
    forwarded: str | None = None,
    x_forwarded_for: str | None = None,
) -> str:
    """The client's address as seen through trusted proxies; the bare peer when the peer
    is not trusted. ``Forwarded`` wins over X-Forwarded-For when both are present."""
    if not trusted.trusts(peer):
        return peer
    if forwarded:
        chain = [
            _node_address(e["for"]) if "for" in e else None for e in _forwarded_elements(forwarded)
        ]
    else:
        chain = [_node_address(n) for n in (x_forwarded_for or "").split(",") if n.strip()]
    address = peer
    # Walk from the nearest hop back: skip trusted proxies, stop at the first other one.
    for hop in reversed(chain):
        if hop is None:
            break  # unknown or obfuscated: nothing reliable beyond this point
        address = hop
        if not trusted.trusts(hop):
            break
    return address
