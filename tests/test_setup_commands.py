"""README's two set-up commands and .ci/run agree: CI runs the very test command a
newcomer runs, inside a virtualenv it creates, never in the machine's global interpreter."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def setup_commands() -> list[str]:
    """The shell commands in README's "Set-up on a fresh machine" section, in order."""
    text = (REPO / "README.md").read_text()
    section = re.search(r"^## Set-up on a fresh machine.*?(?=^## )", text, re.M | re.S)
    assert section, "README has no 'Set-up on a fresh machine' section"
    blocks = re.findall(r"```sh\n(.*?)```", section.group(0), re.S)
    return [line for block in blocks for line in block.splitlines() if line.strip()]


def test_readme_names_exactly_two_setup_commands() -> None:
    serve, test = setup_commands()
    assert serve.startswith("pip install .") and "python -m server" in serve
    assert "127.0.0.1" in serve
    assert test.startswith("pip install -e '.[test]'") and "python -m pytest" in test


def test_ci_runs_the_readme_test_command_verbatim_in_a_fresh_venv() -> None:
    _, test = setup_commands()
    lines = [line.strip() for line in (REPO / ".ci/run").read_text().splitlines()]
    assert test in lines, f".ci/run does not run {test!r} verbatim"
    at = lines.index(test)
    made = [i for i, line in enumerate(lines) if re.match(r"python3 -m venv \"?\S+\"?$", line)]
    activated = [i for i, line in enumerate(lines) if re.match(r"\. \"?\S+/bin/activate\"?$", line)]
    assert made and activated, ".ci/run makes and activates no virtualenv"
    assert made[0] < activated[0] < at, "the venv is made and activated before the tests"
    assert "--system-site-packages" not in (REPO / ".ci/run").read_text()
