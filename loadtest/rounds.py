"""Interleaved rounds: the order the cells run in, and what a cell's rounds add up to.

All servers run at once (each pinned to the server CPU, idle when not measured); round by
round, scenario by scenario, every server gets its cell in turn (A B C, A B C), so a drift
of the machine (another job, thermal, the page cache) falls on every server alike instead
of on whichever ran last.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

S = TypeVar("S")
T = TypeVar("T")

# Figures that are a count over the whole cell: added up over rounds, not a median.
SUMMED = ("non_2xx_3xx",)
# Numeric fields that are bookkeeping, not figures.
NOT_FIGURES = ("round",)


def schedule(
    rounds: int,
    scenarios: Sequence[S],
    servers: Sequence[T],
    applies: Callable[[S, T], bool] = lambda _sc, _sv: True,
) -> list[tuple[int, S, T]]:
    """The cells in the order they run: (round 1..rounds, scenario, server), round-major,
    then scenario, then server; cells where ``applies(scenario, server)`` is False left out."""
    return [
        (r, sc, sv)
        for r in range(1, rounds + 1)
        for sc in scenarios
        for sv in servers
        if applies(sc, sv)
    ]


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def aggregate(runs: Sequence[dict[str, Any] | None]) -> dict[str, Any]:
    """One cell's rounds in one dict: each figure found in every good round as its median
    (top level, as a single round's dict has it), its [min, max] under "range", the rounds
    themselves under "rounds". A cell whose every round failed is {"error": the first, ...};
    failed rounds of a cell with good ones are listed under "errors"."""
    good = [d for d in runs if isinstance(d, dict) and "error" not in d]
    errors = [d["error"] for d in runs if isinstance(d, dict) and "error" in d]
    out: dict[str, Any] = {"n_rounds": len(good), "rounds": list(runs)}
    if errors:
        out["errors"] = errors
    if not good:
        out["error"] = errors[0] if errors else "no round ran"
        return out
    ranges: dict[str, list[float]] = {}
    for key in good[0]:
        if key in NOT_FIGURES or not all(_number(d.get(key)) for d in good):
            continue
        values = [float(d[key]) for d in good]
        if key in SUMMED:
            out[key] = sum(values)
            continue
        out[key] = statistics.median(values)
        ranges[key] = [min(values), max(values)]
    socket_errors: dict[str, int] = {}
    for d in good:
        for k, v in (d.get("socket_errors") or {}).items():
            socket_errors[k] = socket_errors.get(k, 0) + int(v)
    if socket_errors:
        out["socket_errors"] = socket_errors
    out["range"] = ranges
    return out
