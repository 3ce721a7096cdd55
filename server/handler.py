"""From a parsed request to a response plan and the open file it reads, if any.

The one place where a request meets the file system: everything before (parsing) and
after (planning, sending) is pure or pure I/O.
"""

from __future__ import annotations

import logging
import os

from .filecache import CachedFile, FileCache
from .headers import DATE_CLOCK
from .lookup import FileLookup, NeedsSlash, OpenFile
from .mediatypes import content_type
from .paths import (
    TargetError,
    directory_redirect,
    mount_redirect,
    parse_target,
    strip_root_path,
)
from .plan import (
    ALLOW_LINE,
    FileFacts,
    ResponsePlan,
    connection_line,
    plan_error,
    plan_file,
    plan_no_content,
)
from .request import Request
from .send import read_cached_bytes

log = logging.getLogger("zerocopy.handler")


class Handler:
    """Plans responses for files under one root."""

    def __init__(
        self,
        lookup: FileLookup,
        cache: FileCache | None = None,
        body_max: int = 0,
        root_path: str = "",
    ) -> None:
        self.lookup = lookup
        self.cache = cache
        self.body_max = body_max  # bodies up to this size are kept in the cache
        self.root_path = root_path  # "/prefix" a proxy mounts us under, or ""
        self._prefix = root_path.encode("ascii")

    def respond_cached(self, request: Request, close: bool) -> tuple[bytes, int] | None:
        """The whole response (and its body length) from the cache, or None to plan it.

        Only the plain case: GET or HEAD of a cached small file without Range or
        preconditions, which is what a busy small-file server answers most.
        """
        cache = self.cache
        method = request.method
        if (
            cache is None
            or (method != "GET" and method != "HEAD")
            or request.range is not None
            or request.if_none_match is not None
            or request.if_modified_since is not None
            or request.if_match is not None
            or request.if_unmodified_since is not None
        ):
            return None
        entry = cache.get(request.target)
        if entry is None or entry.body is None:
            return None
        date = DATE_CLOCK.line_bytes()
        if close or request.version != "1.1":
            date = connection_line(request, close).encode() + date
        if method == "HEAD":
            return b"".join((entry.head, date, b"\r\n")), 0
        body = entry.body
        return b"".join((entry.head, date, b"\r\n", body)), len(body)

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
        raw_target = request.target
        if self._prefix:
            stripped = strip_root_path(raw_target, self._prefix)
            if stripped is None:
                # The mount point itself, without its slash: on to "prefix/".
                location = mount_redirect(self.root_path, raw_target)
                return plan_no_content(301, request, close, f"Location: {location}\r\n"), None
            raw_target = stripped
        try:
            target = parse_target(raw_target)
        except TargetError as exc:
            log.debug("bad request-target: %s", exc)
            return plan_error(exc.status, request, close), None
        found = self.lookup.open(target)
        if isinstance(found, OpenFile):
            st = found.stat
            facts = FileFacts(st.st_size, st.st_mtime_ns, content_type(found.name))
            if self.cache is not None and st.st_size <= self.body_max:
                body = read_cached_bytes(found.fd, st.st_size)
                if body is not None:
                    self.cache.put(request.target, CachedFile(found.path, st, facts, body))
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
            location = directory_redirect(target, self.root_path)
            return plan_no_content(301, request, close, f"Location: {location}\r\n"), None
        extra = "Retry-After: 1\r\n" if found.status == 503 else ""
        return plan_error(found.status, request, close, extra), None
