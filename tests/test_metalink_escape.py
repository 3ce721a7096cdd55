"""metalink.py escapes XML itself (the stdlib's saxutils costs 3.4 MiB of RSS to import):
differentially, it must say exactly what xml.sax.saxutils says."""

from __future__ import annotations

import random
from xml.sax import saxutils

import pytest

from server.http import metalink


@pytest.mark.parametrize(
    "text", ["", "plain", "a&b<c>d", 'say "hi"', "it's", "both ' and \"", "tab\tline\nret\r"]
)
def test_table(text: str) -> None:
    assert metalink.escape(text) == saxutils.escape(text)
    assert metalink.quoteattr(text) == saxutils.quoteattr(text)


def test_random_strings_agree_with_saxutils() -> None:
    rng = random.Random(5)
    alphabet = "ab&<>\"'\n\r\t é/;"
    for _ in range(5000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 16)))
        assert metalink.escape(text) == saxutils.escape(text), text
        assert metalink.quoteattr(text) == saxutils.quoteattr(text), text


def test_serving_does_not_import_saxutils() -> None:
    import subprocess
    import sys

    code = "import sys, server.process.cli; print('xml.sax.saxutils' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
