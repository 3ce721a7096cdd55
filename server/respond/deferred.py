"""What planning returns: a plan and the file it reads, or a plan that must wait."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from ..files.lookup import OpenFile
from ..http.plan import ResponsePlan

Planned = tuple[ResponsePlan, "OpenFile | None"]


@dataclass(frozen=True, slots=True)
class Deferred:
    """A plan that needs to wait; ``run()`` returns it (and the file, if any).

    ``file`` is the file ``run`` will use, if it holds one already: whoever drops the
    Deferred without awaiting ``run`` to its end (a cancelled connection) closes it.
    """

    run: Callable[[], Awaitable[Planned]]
    file: OpenFile | None = None
