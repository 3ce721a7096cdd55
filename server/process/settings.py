"""Where each setting comes from: the command line, then the environment, then the default.

Every option of the parser is also a ``ZEROCOPY_<OPTION>`` environment variable, its name
derived from the option's long name (``--access-log-format`` -> ``ZEROCOPY_ACCESS_LOG_FORMAT``)
and its value converted and checked by the option's own ``type`` and ``choices``. There is
no second list of names: adding an option to the parser adds its variable.

- A flag (an option that takes no value, e.g. ``--autoindex``) takes one of ``1 true yes
  on`` or ``0 false no off`` (any case).
- A repeatable option (``--mirror``, ``--cache-control``) takes several values split as a
  POSIX shell would: on whitespace, with quotes keeping a value that has spaces whole.
- An empty variable counts as unset.
- A bad value is a usage error (exit 2) that names the variable.
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import sys
from collections.abc import Iterator, Mapping, Sequence
from importlib import metadata
from typing import Any

ENV_PREFIX = "ZEROCOPY_"
PACKAGE = "zerocopy-server"

# Sources of a value, as --check-config prints them.
COMMAND_LINE = "command line"
ENVIRONMENT = "environment"
DEFAULT = "default"

# Options that are commands, not settings: no environment variable (ZEROCOPY_HELP=1 making
# a container print its help instead of serving would be a trap).
COMMANDS = frozenset({"help", "version", "check_config"})

# A positional argument that sets the same thing as an option: given, it counts as the
# option given on the command line (``zerocopy-server 9000`` beats ZEROCOPY_PORT).
POSITIONAL_ALIASES = {"port": "port_arg"}

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


class _Unset:
    """What a destination holds until the command line sets it."""

    def __repr__(self) -> str:
        return "<unset>"


_UNSET: Any = _Unset()


def long_name(action: argparse.Action) -> str | None:
    """``--access-log-format`` for that option; None for positionals."""
    longs = [s for s in action.option_strings if s.startswith("--")]
    return longs[0] if longs else None


def env_name(action: argparse.Action) -> str | None:
    """The environment variable of an option, or None for a command or a positional."""
    name = long_name(action)
    if name is None or action.dest in COMMANDS:
        return None
    return ENV_PREFIX + name[2:].upper().replace("-", "_")


def settings(parser: argparse.ArgumentParser) -> Iterator[tuple[argparse.Action, str]]:
    """Every option that is a setting, with its environment variable, in parser order."""
    for action in parser._actions:
        name = env_name(action)
        if name is not None:
            yield action, name


def is_flag(action: argparse.Action) -> bool:
    """An option that takes no value (``store_true``)."""
    return action.nargs == 0 and action.const is True


def is_repeatable(action: argparse.Action) -> bool:
    return isinstance(action, argparse._AppendAction)


def parse_bool(text: str) -> bool:
    word = text.strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise argparse.ArgumentTypeError("expected 1/0, true/false, yes/no or on/off")


def _convert(action: argparse.Action, text: str) -> Any:
    """``text`` through the option's type and choices, as argparse would."""
    try:
        value = action.type(text) if callable(action.type) else text
    except argparse.ArgumentTypeError:
        raise
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"invalid value {text!r}") from None
    if action.choices is not None and value not in action.choices:
        choices = ", ".join(map(str, action.choices))
        raise argparse.ArgumentTypeError(f"invalid choice {text!r} (choose from {choices})")
    return value


def from_environment(action: argparse.Action, text: str) -> Any:
    """The value of an option given as an environment variable's text."""
    if is_flag(action):
        return parse_bool(text)
    if is_repeatable(action):
        try:
            words = shlex.split(text)
        except ValueError as exc:  # an unclosed quote
            raise argparse.ArgumentTypeError(str(exc)) from None
        return [_convert(action, word) for word in words]
    return _convert(action, text)


def parse(
    parser: argparse.ArgumentParser,
    argv: Sequence[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> tuple[argparse.Namespace, dict[str, str]]:
    """The arguments, command line over environment over default, and the source of each
    setting (by ``dest``). A bad value exits 2 through ``parser.error``, naming the option
    or the variable."""
    environ = os.environ if environ is None else environ
    # The namespace starts with every setting unset, so argparse fills in no default and
    # what is set afterwards came from the command line. (Repeatable options start as None:
    # argparse appends to what is there.)
    start = argparse.Namespace()
    for action, _ in settings(parser):
        setattr(start, action.dest, None if is_repeatable(action) else _UNSET)
    args = parser.parse_args(argv, start)
    sources: dict[str, str] = {}
    for action, variable in settings(parser):
        value = getattr(args, action.dest)
        alias = POSITIONAL_ALIASES.get(action.dest)
        given = value is not (None if is_repeatable(action) else _UNSET)
        if given or (alias is not None and getattr(args, alias, None) is not None):
            sources[action.dest] = COMMAND_LINE
            if not given:
                setattr(args, action.dest, action.default)
            continue
        text = environ.get(variable, "")
        if text.strip():
            try:
                setattr(args, action.dest, from_environment(action, text))
            except argparse.ArgumentTypeError as exc:
                parser.error(f"environment variable {variable}={text!r}: {exc}")
            sources[action.dest] = ENVIRONMENT
        else:
            setattr(args, action.dest, _default(parser, action))
            sources[action.dest] = DEFAULT
    return args, sources


def _default(parser: argparse.ArgumentParser, action: argparse.Action) -> Any:
    """The default as argparse would have set it: a string default goes through the type."""
    if isinstance(action.default, str) and callable(action.type):
        return parser._get_value(action, action.default)
    return action.default


def unknown_variables(
    parser: argparse.ArgumentParser, environ: Mapping[str, str] | None = None
) -> list[str]:
    """``ZEROCOPY_*`` variables that name no setting (typos, most likely)."""
    environ = os.environ if environ is None else environ
    known = {name for _, name in settings(parser)}
    return sorted(n for n in environ if n.startswith(ENV_PREFIX) and n not in known)


def _shown(action: argparse.Action, value: Any) -> str:
    if is_flag(action):
        return "on" if value else "off"
    if value is None or value == "" or value == ():
        return "-"
    if isinstance(value, list):
        return " ".join(shlex.quote(str(v)) for v in value)
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    if isinstance(value, float):
        return f"{value:g}"
    if action.metavar == "OCTAL" and isinstance(value, int):
        return f"{value:04o}"
    return str(value)


def describe(
    parser: argparse.ArgumentParser,
    args: argparse.Namespace,
    sources: Mapping[str, str],
    effective: Mapping[str, Any] | None = None,
) -> list[str]:
    """The effective configuration: one line per setting, its value and where it came
    from. ``effective`` overrides what is shown for some settings (e.g. the port that
    the positional PORT or the default decided)."""
    effective = effective or {}
    rows = []
    for action, variable in settings(parser):
        value = effective.get(action.dest, getattr(args, action.dest))
        source = sources[action.dest]
        if source == ENVIRONMENT:
            source = f"{ENVIRONMENT} ({variable})"
        rows.append((long_name(action) or action.dest, _shown(action, value), source))
    width = max(len(name) for name, _, _ in rows)
    value_width = min(40, max(len(value) for _, value, _ in rows))
    return [f"{name:<{width}}  {value:<{value_width}}  {source}" for name, value, source in rows]


def _version_of(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "not installed"


def version_text() -> str:
    """The package's version from its metadata, and those of what it runs on."""
    return (
        f"{PACKAGE} {_version_of(PACKAGE)}\n"
        f"uvloop {_version_of('uvloop')}\n"
        f"httptools {_version_of('httptools')}\n"
        f"{platform.python_implementation()} {platform.python_version()} on {sys.platform}"
    )


class VersionAction(argparse.Action):
    """``--version``: the versions, looked up only when asked for."""

    def __init__(self, option_strings: Sequence[str], dest: str, help: str | None = None):
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, help=help)

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        print(version_text())
        parser.exit()
