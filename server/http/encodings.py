"""Content negotiation for precompressed variants (RFC 9110 §12.5.3 Accept-Encoding)."""

from __future__ import annotations

# Content coding -> the suffix of its precompressed file (file.ext.br, .zst, .gz).
SUFFIXES = {"br": ".br", "zstd": ".zst", "gzip": ".gz"}
# RFC 9110 §8.4.1.3: recipients SHOULD treat x-gzip as gzip.
_ALIASES = {"x-gzip": "gzip"}


def parse_precompressed(spec: str) -> tuple[str, ...]:
    """``br,zstd,gzip`` (order = preference) or ``off``. Raises ValueError on others."""
    spec = spec.strip().lower()
    if spec in ("off", "none", ""):
        return ()
    codings = tuple(part.strip() for part in spec.split(",") if part.strip())
    unknown = [c for c in codings if c not in SUFFIXES]
    if unknown:
        raise ValueError(f"unknown coding {unknown[0]!r}; choose from {', '.join(SUFFIXES)}")
    return tuple(dict.fromkeys(codings))


def _qvalue(text: str) -> float | None:
    """A qvalue (RFC 9110 §12.4.2: 0 to 1, at most three decimals), or None if invalid."""
    text = text.strip()
    if not text or len(text) > 5 or text[0] not in "01":
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return value if 0.0 <= value <= 1.0 else None


def _weights(accept_encoding: str) -> dict[str, float]:
    weights: dict[str, float] = {}
    for element in accept_encoding.split(","):
        coding, *params = (part.strip() for part in element.split(";"))
        coding = _ALIASES.get(coding.lower(), coding.lower())
        if not coding:
            continue
        q: float | None = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                q = _qvalue(value)
        if q is not None:
            weights[coding] = max(q, weights.get(coding, 0.0)) if coding in weights else q
    return weights


def negotiate(accept_encoding: str | None, offered: tuple[str, ...]) -> tuple[list[str], bool]:
    """The offered codings the client accepts, best first, and whether identity is ok.

    Best = highest qvalue, ties in the server's order of preference. A coding the header
    does not name is acceptable only through ``*``; identity is acceptable unless
    ``identity;q=0`` (or ``*;q=0`` without an identity entry) excludes it. No header:
    no coding is asked for, identity is fine.
    """
    if accept_encoding is None:
        return [], True
    weights = _weights(accept_encoding)
    star = weights.get("*")
    ranked = []
    for index, coding in enumerate(offered):
        q = weights.get(coding, star if star is not None else 0.0)
        if q > 0:
            ranked.append((-q, index, coding))
    ranked.sort()
    identity_q = weights.get("identity", star if star is not None else 1.0)
    return [coding for _, _, coding in ranked], identity_q > 0
