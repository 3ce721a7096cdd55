"""``--cache-control``: which Cache-Control a file's responses carry (RFC 9111 §5.2).

Rules are given in order; the first whose glob matches the file wins:

* ``GLOB=VALUE``: ``*.iso=public, max-age=31536000, immutable``. A glob without ``/``
  matches the file's name; one with ``/`` matches its path under the root (``isos/*``).
  ``*`` crosses ``/`` there, as in ``fnmatch``.
* ``VALUE`` alone: the default, for files no glob matched (``public, max-age=300``).

What reads as a rule: the text before the first ``=`` holds a glob character or a path
character (``* ? [ / .``); otherwise the whole text is a value (``max-age=300`` is one).
A value must be a Cache-Control list: directives (tokens), each optionally ``=`` a token
or a quoted string, separated by commas. Anything else is refused at start.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass

_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_QUOTED = r'"(?:[^"\\\x00-\x08\x0a-\x1f\x7f]|\\[\t\x20-\x7e\x80-\xff])*"'
# Optional whitespace is spaces and tabs only: a CR or LF would end the field line.
_DIRECTIVE = re.compile(rf"[ \t]*{_TOKEN}(?:[ \t]*=[ \t]*(?:{_TOKEN}|{_QUOTED}))?[ \t]*")
_RULE_MARKERS = frozenset("*?[/.")


def valid_value(value: str) -> bool:
    """Whether ``value`` is a Cache-Control directive list (RFC 9111 §5.2)."""
    parts = value.split(",")
    return bool(value.strip()) and all(_DIRECTIVE.fullmatch(p) for p in parts if p.strip())


@dataclass(frozen=True)
class Rule:
    glob: str  # "" for the default
    value: str

    def matches(self, rel_path: str) -> bool:
        if not self.glob:
            return True
        subject = rel_path if "/" in self.glob else rel_path.rsplit("/", 1)[-1]
        return fnmatch.fnmatchcase(subject, self.glob)


def parse_rule(text: str) -> Rule:
    """One ``--cache-control`` argument. Raises ValueError with a message on a bad one."""
    glob, eq, value = text.partition("=")
    if eq and _RULE_MARKERS.intersection(glob):
        glob, value = glob.strip().lstrip("/"), value.strip()
        if not glob:
            raise ValueError(f"empty glob in {text!r}")
    else:
        glob, value = "", text.strip()
    if not valid_value(value):
        raise ValueError(f"not a Cache-Control value: {value!r}")
    return Rule(glob, value)


class CacheControl:
    """The rules, in order: ``value_for`` a file, the first match's value, or None."""

    def __init__(self, rules: tuple[Rule, ...]) -> None:
        self.rules = rules

    def value_for(self, rel_path: str) -> str | None:
        for rule in self.rules:
            if rule.matches(rel_path):
                return rule.value
        return None
