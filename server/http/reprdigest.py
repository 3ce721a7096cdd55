"""Repr-Digest (RFC 9530): the field's value, and what the client asked for (pure)."""

from __future__ import annotations

import base64

FIELD = "Repr-Digest"


def field_value(digest: bytes) -> str:
    """``sha-256=:BASE64:`` (RFC 9530 §2, a Structured Field dictionary member)."""
    return f"sha-256=:{base64.b64encode(digest).decode('ascii')}:"


def wants_sha256(want_repr_digest: str | None) -> bool:
    """Whether to send sha-256, honouring ``Want-Repr-Digest`` (RFC 9530 §4).

    Absent: yes (we were configured to). Present: only if it gives sha-256 a non-zero
    weight; a malformed header is ignored (as if absent).
    """
    if want_repr_digest is None:
        return True
    weights: dict[str, int] = {}
    for member in want_repr_digest.split(","):
        name, eq, value = member.strip().partition("=")
        if not eq:
            return True  # not a dictionary of integers: malformed, ignore the header
        value = value.strip()
        if not value.isascii() or not value.isdigit() or int(value) > 10:
            return True
        weights[name.strip().lower()] = int(value)
    return weights.get("sha-256", 0) > 0
