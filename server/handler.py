"""From a parsed request to a response plan and the open file it reads, if any.

The one place where a request meets the file system: everything before (parsing) and
after (planning, sending) is pure or pure I/O.
"""

from __future__ import annotations

import logging
import os

from .lookup import FileLookup, NeedsSlash, OpenFile
from .mediatypes import content_type
from .paths import TargetError, directory_redirect, parse_target
from .plan import ALLOW_LINE, FileFacts, ResponsePlan, plan_error, plan_file, plan_no_content
from .request import Request

log = logging.getLogger("zerocopy.handler")


class Handler:
    """Plans responses for files under one root."""

    def __init__(self, lookup: FileLookup) -> None:
        self.lookup = lookup

    def plan(self, request: Request, close: bool) -> tuple[ResponsePlan, int | None]:
        """The plan for ``request`` and the file descriptor its body windows read.

        The descriptor, when not None, belongs to the caller, who must close it.
        """
        method = request.method
        if method != "GET" and method != "HEAD":
            if method == "OPTIONS":
                return plan_no_content(204, request, close, ALLOW_LINE), None
            # RFC 9110 §15.5.6: 405 carries Allow.
            return plan_error(405, request, close, ALLOW_LINE), None
        try:
            target = parse_target(request.target)
        except TargetError as exc:
            log.debug("bad request-target: %s", exc)
            return plan_error(exc.status, request, close), None
        found = self.lookup.open(target)
        if isinstance(found, OpenFile):
            st = found.stat
            facts = FileFacts(st.st_size, st.st_mtime_ns, content_type(found.name))
            try:
                plan = plan_file(request, facts, close)
            except BaseException:
                os.close(found.fd)
                raise
            if not plan.uses_file:
                os.close(found.fd)
                return plan, None
            return plan, found.fd
        if isinstance(found, NeedsSlash):
            location = directory_redirect(target)
            return plan_no_content(301, request, close, f"Location: {location}\r\n"), None
        extra = "Retry-After: 1\r\n" if found.status == 503 else ""
        return plan_error(found.status, request, close, extra), None
