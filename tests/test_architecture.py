"""The architecture holds: layers only import downwards, rooms stay small, every
``type: ignore`` says why, and the command line's defaults are Config's."""

from __future__ import annotations

import ast
import dataclasses
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from server.config import Config
from server.process.cli import build_parser, config_from_args

REPO = Path(__file__).resolve().parent.parent
SERVER = REPO / "server"
MAX_CLASS_LINES = 300


def test_import_contracts_are_kept() -> None:
    """pyproject.toml's [tool.importlinter] contracts: the layers import only downwards,
    the pure HTTP rules import no I/O module, and the configuration imports no layer."""
    tool = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    if tool is None:
        pytest.skip("import-linter is not installed (pip install -e '.[test]')")
    done = subprocess.run([tool], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert re.search(r"Contracts: [1-9]\d* kept, 0 broken", done.stdout), done.stdout[-1000:]


def _classes() -> list[tuple[str, str, int]]:
    found = []
    for path in sorted(SERVER.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                assert node.end_lineno is not None
                lines = node.end_lineno - node.lineno + 1
                found.append((str(path.relative_to(REPO)), node.name, lines))
    return found


def test_no_class_is_over_300_lines() -> None:
    classes = _classes()
    assert any(name == "HttpProtocol" for _, name, _ in classes)
    big = [c for c in classes if c[2] > MAX_CLASS_LINES]
    assert big == [], f"classes over {MAX_CLASS_LINES} lines (a room doing several jobs): {big}"


def test_every_type_ignore_says_why() -> None:
    bare = []
    for path in sorted(SERVER.rglob("*.py")):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if "type: ignore" in line and not re.search(r"type: ignore\[[\w-]+\]\s+#\s*\S", line):
                bare.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
    assert bare == []


def test_command_line_defaults_are_configs() -> None:
    """Nothing given on the command line: exactly Config's defaults (the root made
    absolute), so a default written twice cannot drift."""
    got = config_from_args(build_parser().parse_args([]))
    assert got == dataclasses.replace(Config(), root=os.path.abspath(Config().root))
