"""From a parsed request to a response plan and the open file it reads, if any.

The one place where a request meets the file system: everything before (parsing) and
after (planning, sending) is pure or pure I/O. Most requests are planned synchronously;
the two that must wait (a directory scan, a digest not computed yet) return a
``Deferred`` whose coroutine does the waiting off the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from .digests import DigestCache, wants_sha256
from .encodings import SUFFIXES, negotiate
from .filecache import CachedFile, FileCache
from .headers import DATE_CLOCK, content_disposition
from .lookup import Directory, FileLookup, NeedsSlash, OpenFile
from .mediatypes import content_type
from .paths import (
    RequestPath,
    TargetError,
    directory_redirect,
    mount_redirect,
    parse_target,
    strip_root_path,
    wants_download,
)
from .plan import (
    ALLOW_LINE,
    FileFacts,
    ResponsePlan,
    connection_line,
    plan_body,
    plan_error,
    plan_file,
    plan_no_content,
)
from .request import Request
from .send import read_cached_bytes

log = logging.getLogger("zerocopy.handler")

Planned = tuple[ResponsePlan, "int | None"]
VARY_ACCEPT_ENCODING = "Vary: Accept-Encoding\r\n"


@dataclass(frozen=True, slots=True)
class Deferred:
    """A plan that needs to wait; ``run()`` returns it (and the file, if any)."""

    run: Callable[[], Awaitable[Planned]]


@dataclass(frozen=True)
class Features:
    """Optional behaviour, all off by default."""

    codings: tuple[str, ...] = ()  # precompressed variants, in order of preference
    attachment: bool = False  # Content-Disposition: attachment on every file
    digest: bool = False  # Repr-Digest: sha-256


class Handler:
    """Plans responses for files under one root."""

    def __init__(
        self,
        lookup: FileLookup,
        cache: FileCache | None = None,
        body_max: int = 0,
        root_path: str = "",
        features: Features | None = None,
    ) -> None:
        self.lookup = lookup
        self.cache = cache
        self.body_max = body_max  # bodies up to this size are kept in the cache
        self.root_path = root_path  # "/prefix" a proxy mounts us under, or ""
        self._prefix = root_path.encode("ascii")
        self.features = features or Features()
        self.digests = DigestCache() if self.features.digest else None
        self._vary = VARY_ACCEPT_ENCODING if self.features.codings else ""

    def respond_cached(self, request: Request, close: bool) -> tuple[bytes, int] | None:
        """The whole response (and its body length) from the cache, or None to plan it.

        Only the plain case: GET or HEAD of a cached small file without Range,
        preconditions or negotiation, which is what a busy small-file server answers most.
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
            or request.want_repr_digest is not None
            or (self._vary and request.accept_encoding is not None)
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

    def plan(self, request: Request, close: bool) -> Planned | Deferred:
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
            try:
                return self._file(request, close, target, found)
            except BaseException:
                os.close(found.fd)
                raise
        if isinstance(found, NeedsSlash):
            location = directory_redirect(target, self.root_path)
            return plan_no_content(301, request, close, f"Location: {location}\r\n"), None
        if isinstance(found, Directory):
            if not target.canonical:
                # The page's links are relative to the path the client used: give it the
                # clean one first (a "//" or an encoded "/" would misplace them).
                location = directory_redirect(target, self.root_path)
                return plan_no_content(301, request, close, f"Location: {location}\r\n"), None
            return Deferred(lambda: self._listing(request, close, target, found.path))
        extra = "Retry-After: 1\r\n" if found.status == 503 else ""
        return plan_error(found.status, request, close, extra), None

    # --- files ------------------------------------------------------------------------------

    def _file(
        self, request: Request, close: bool, target: RequestPath, found: OpenFile
    ) -> Planned | Deferred:
        """Negotiate the variant, gather the representation's fields, plan (or defer)."""
        features = self.features
        name = found.name
        ctype = content_type(name)
        extra = ""
        if features.codings:
            codings, identity_ok = negotiate(request.accept_encoding, features.codings)
            for coding in codings:
                variant = self.lookup.open_variant(found.path + SUFFIXES[coding], found.stat)
                if variant is not None:
                    os.close(found.fd)
                    found = variant
                    extra = f"Content-Encoding: {coding}\r\n"
                    break
            else:
                if not identity_ok:
                    # Every coding we have is refused, and so is identity (RFC 9110 §12.5.3).
                    os.close(found.fd)
                    return plan_error(406, request, close, self._vary), None
        coding = extra[len("Content-Encoding: ") : -2] if extra else ""
        if features.attachment or wants_download(target.query):
            extra += content_disposition(name)
        body = None
        digests = self.digests
        if digests is not None and wants_sha256(request.want_repr_digest):
            value = digests.get(found.stat)
            if value is None and found.stat.st_size <= self.body_max:
                # Small: hash the bytes the cache reads anyway, here, in microseconds.
                body = read_cached_bytes(found.fd, found.stat.st_size)
                if body is not None:
                    value = digests.put_bytes(found.stat, body)
            if value is None:
                return Deferred(
                    lambda: self._file_with_digest(request, close, found, ctype, coding, extra)
                )
            extra += f"Repr-Digest: {value}\r\n"
        return self._plan_file(request, close, found, ctype, coding, extra, body)

    async def _file_with_digest(
        self, request: Request, close: bool, found: OpenFile, ctype: str, coding: str, extra: str
    ) -> Planned:
        assert self.digests is not None
        try:
            value = await self.digests.compute(found.fd, found.stat)
        except BaseException:
            os.close(found.fd)
            raise
        extra += f"Repr-Digest: {value}\r\n"
        return self._plan_file(request, close, found, ctype, coding, extra, None)

    def _plan_file(
        self,
        request: Request,
        close: bool,
        found: OpenFile,
        ctype: str,
        coding: str,
        extra: str,
        body: bytes | None,
    ) -> Planned:
        st = found.stat
        facts = FileFacts(st.st_size, st.st_mtime_ns, ctype, coding, extra, self._vary)
        # Cached responses are the identity ones for requests that do not negotiate.
        cache = self.cache
        if (
            cache is not None
            and not coding
            and st.st_size <= self.body_max
            and (not self._vary or request.accept_encoding is None)
        ):
            if body is None:
                body = read_cached_bytes(found.fd, st.st_size)
            if body is not None:
                cache.put(request.target, CachedFile(found.path, st, facts, body))
        plan = plan_file(request, facts, close)
        if not plan.uses_file:
            os.close(found.fd)
            return plan, None
        return plan, found.fd

    # --- directory listings -----------------------------------------------------------------

    async def _listing(
        self, request: Request, close: bool, target: RequestPath, path: str
    ) -> Planned:
        """Scan in a worker thread (a huge directory must not stall the loop), render."""
        from . import autoindex  # only servers with --autoindex load the page templates

        loop = asyncio.get_running_loop()
        try:
            listing = await loop.run_in_executor(
                None, autoindex.scan_directory, path, self.lookup.root, self.lookup.allow_dotfiles
            )
        except FileNotFoundError:
            return plan_error(404, request, close), None  # gone, or swapped for a link out
        except PermissionError:
            return plan_error(403, request, close), None
        sort, order, as_json = autoindex.parse_listing_query(target.query)
        if request.accept is not None and "application/json" in request.accept.lower():
            as_json = True
        if as_json:
            body = autoindex.render_json(listing, target.segments, sort, order, self.root_path)
            fields = f"Content-Type: {autoindex.JSON_CONTENT_TYPE}\r\n"
        else:
            body = autoindex.render_html(listing, target.segments, sort, order, self.root_path)
            fields = (
                f"Content-Type: {autoindex.HTML_CONTENT_TYPE}\r\n"
                # Only the page's own (hashed) style and script may run: a missed escape
                # could still not execute anything.
                f"Content-Security-Policy: {autoindex.CONTENT_SECURITY_POLICY}\r\n"
            )
        # The listing changes whenever the directory does: no validators, no caching.
        fields += "X-Content-Type-Options: nosniff\r\nCache-Control: no-cache\r\nVary: Accept\r\n"
        return plan_body(200, request, close, fields, body), None
