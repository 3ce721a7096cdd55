"""From a parsed request to a response plan and the open file it reads, if any.

The one place where a request meets the file system: everything before (parsing) and
after (planning, sending) is pure or pure I/O. Most requests are planned synchronously;
the two that must wait (a directory scan, a digest not computed yet) return a
``Deferred`` whose coroutine does the waiting off the event loop.

Files are owned: an ``OpenFile`` returned with a plan (or held by a ``Deferred``) belongs
to the caller, who closes it (``OpenFile.close`` is idempotent); a file this module does
not hand over, it closes itself.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial

from ..files.digests import Crc32Cache, DigestCache, PieceHashes
from ..files.filecache import CachedFile, FileCache
from ..files.lookup import NOT_FOUND, Directory, FileLookup, NeedsSlash, OpenFile
from ..files.pagecache import read_cached_bytes
from ..files.pools import HashPool, io_pool
from ..files.root import Root
from ..http.cachecontrol import CacheControl
from ..http.cors import CorsPolicy
from ..http.encodings import SUFFIXES, negotiate
from ..http.head import Fields, content_disposition, serialize
from ..http.mediatypes import content_type
from ..http.metalink import Mirror
from ..http.paths import (
    RequestPath,
    TargetError,
    directory_redirect,
    mount_redirect,
    parse_target,
    strip_root_path,
    wants_download,
)
from ..http.plan import (
    ALLOW,
    FileFacts,
    plan_body,
    plan_error,
    plan_file,
    plan_no_content,
    whole_file_fields,
)
from ..http.reprdigest import FIELD as REPR_DIGEST
from ..http.reprdigest import field_value, wants_sha256
from ..http.request import Request
from . import archives as archives_module
from . import mirrors, sums
from .deferred import Deferred, Planned

log = logging.getLogger("zerocopy.handler")

VARY_ACCEPT_ENCODING: Fields = (("Vary", "Accept-Encoding"),)
# How long a whole-file GET may wait for a digest being computed: a file of a few MiB is
# hashed in that time; a bigger one goes out without Repr-Digest, and later ones have it.
DIGEST_WAIT_SECONDS = 0.02
RETRY_AFTER: Fields = (("Retry-After", "1"),)


@dataclass(frozen=True)
class Features:
    """Optional behaviour, all off by default."""

    codings: tuple[str, ...] = ()  # precompressed variants, in order of preference
    attachment: bool = False  # Content-Disposition: attachment on every file
    digest: bool = False  # Repr-Digest: sha-256
    cache_control: CacheControl | None = None  # --cache-control rules
    cors: CorsPolicy | None = None  # --cors
    archives: tuple[str, ...] = ()  # --archives: "tar", "zip"
    mirrors: tuple[Mirror, ...] = ()  # --mirror
    scheme: str = "http"  # how clients reach this server (https with --certfile)
    archive_max_files: int = archives_module.DEFAULT_MAX_FILES
    archive_max_bytes: int = archives_module.DEFAULT_MAX_BYTES


def cache_key(target: bytes) -> bytes:
    """The file cache's key for a request-target: its path, and whether it asks for a
    download, the one thing in a query that changes a file's response. Any other query
    (``?v=123``, random junk) shares the entry, so it cannot multiply entries."""
    path, sep, query = target.partition(b"?")
    if sep and wants_download(query):
        return path + b"?download"
    return path


def _sidecar_fill(cache: FileCache | None, request: Request) -> sums.Fill:
    """Keeps a made ``NAME.sha256``'s response: it holds while the file is the version
    summed and no real ``NAME.sha256`` appears (the lookup would serve that one)."""
    key = cache_key(request.target)
    assert cache is not None  # cacheable() says there is one

    def fill(found: OpenFile, head: bytes, body: bytes) -> None:
        sidecar = found.path + sums.SIDECAR_SUFFIX
        cache.put(key, CachedFile(found.path, found.stat, head, body, absent=sidecar))

    return fill


def _with_digest(facts: FileFacts, value: str) -> FileFacts:
    return replace(facts, representation=(*facts.representation, (REPR_DIGEST, value)))


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
        # Digests are also what mirrors' Digest fields and .meta4 documents need.
        needs_digests = self.features.digest or bool(self.features.mirrors)
        self.digests = DigestCache() if needs_digests else None
        self.pieces = PieceHashes(self.digests) if self.digests is not None else None
        pool = self.digests.pool if self.digests is not None else HashPool()
        self.crcs = Crc32Cache(pool)
        cors = self.features.cors
        self._vary = (VARY_ACCEPT_ENCODING if self.features.codings else ()) + (
            cors.vary if cors is not None else ()
        )

    def cacheable(self, request: Request) -> bool:
        """The one cache rule: a request may be answered from the file cache, and its
        response may fill it, exactly when it asks for the plain 200 of the file.

        That is GET or HEAD without Range, preconditions or Want-Repr-Digest, and without
        Accept-Encoding when precompressed variants are on (what it negotiates varies).
        Everything else in the response (Repr-Digest, Content-Disposition by ``?download``
        or ``--attachment``) follows from the target alone, which is the cache's key.
        """
        method = request.method
        return (
            self.cache is not None
            and (method == "GET" or method == "HEAD")
            and request.range is None
            and request.if_none_match is None
            and request.if_modified_since is None
            and request.if_match is None
            and request.if_unmodified_since is None
            and request.want_repr_digest is None
            and (not self.features.codings or request.accept_encoding is None)
            # CORS fields answer the request's Origin: those are planned.
            and (self.features.cors is None or request.origin is None)
            # Digest answers Want-Digest (--mirror): planned.
            and (not self.features.mirrors or request.want_digest is None)
            # An archive of a directory is no file (and its query would be dropped).
            and (not self.features.archives or b"archive=" not in request.target)
        )

    def respond_cached(self, request: Request) -> CachedFile | None:
        """The cached 200 for ``request``, or None to plan it."""
        cache = self.cache
        if cache is None or not self.cacheable(request):
            return None
        target = request.target
        # cache_key of a target without a query is the target itself: spare the call.
        return cache.get(cache_key(target) if b"?" in target else target)

    def plan(self, request: Request, close: bool) -> Planned | Deferred:
        """The plan for ``request`` and the file its body windows read (the caller's)."""
        method = request.method
        cors = self.features.cors
        if method == "OPTIONS":
            preflight = (
                cors.preflight_fields(request.origin, request.access_control_request_method)
                if cors is not None
                else ()
            )
            return plan_no_content(204, close, (*ALLOW, *preflight)), None
        planned = self._plan(request, close)
        extra = cors.response_fields(request.origin) if cors is not None else ()
        if not extra:
            return planned
        # Every answer to an allowed origin, errors included (a page sees a 404 as a 404,
        # not as a network error), says so.
        if isinstance(planned, Deferred):
            run = planned.run

            async def with_cors() -> Planned:
                plan, file = await run()
                return replace(plan, fields=(*plan.fields, *extra)), file

            return Deferred(with_cors, planned.file)
        plan, file = planned
        return replace(plan, fields=(*plan.fields, *extra)), file

    def _plan(self, request: Request, close: bool) -> Planned | Deferred:
        method = request.method
        if method != "GET" and method != "HEAD":
            # RFC 9110 §15.5.6: 405 carries Allow.
            return plan_error(405, request, close, ALLOW), None
        raw_target = request.target
        if self._prefix:
            stripped = strip_root_path(raw_target, self._prefix)
            if stripped is None:
                # The mount point itself, without its slash: on to "prefix/".
                location = mount_redirect(self.root_path, raw_target)
                return plan_no_content(301, close, (("Location", location),)), None
            raw_target = stripped
        try:
            target = parse_target(raw_target)
        except TargetError as exc:
            log.debug("bad request-target: %s", exc)
            return plan_error(exc.status, request, close), None
        features = self.features
        if features.archives and target.query and (target.trailing_slash or not target.segments):
            kind = archives_module.wanted(target.query, features.archives)
            if kind is not None:
                limits = (features.archive_max_files, features.archive_max_bytes)
                return Deferred(
                    lambda: archives_module.plan_archive(
                        self.lookup, self.crcs, request, close, target.segments, kind, *limits
                    )
                )
        found = self.lookup.open(target)
        if found is NOT_FOUND and self.digests is not None and target.segments:
            made = self._made_file(request, close, target)
            if made is not None:
                return made
        if isinstance(found, OpenFile):
            try:
                return self._file(request, close, target, found)
            except BaseException:
                found.close()
                raise
        if isinstance(found, NeedsSlash):
            location = directory_redirect(target, self.root_path)
            return plan_no_content(301, close, (("Location", location),)), None
        if isinstance(found, Directory):
            if not target.canonical:
                # The page's links are relative to the path the client used: give it the
                # clean one first (a "//" or an encoded "/" would misplace them).
                location = directory_redirect(target, self.root_path)
                return plan_no_content(301, close, (("Location", location),)), None
            return Deferred(lambda: self._listing(request, close, target, found.path))
        extra = RETRY_AFTER if found.status == 503 else ()
        return plan_error(found.status, request, close, extra), None

    # --- files ------------------------------------------------------------------------------

    def _file(
        self, request: Request, close: bool, target: RequestPath, found: OpenFile
    ) -> Planned | Deferred:
        """Negotiate the variant, gather the representation's fields, plan (or defer)."""
        features = self.features
        name = found.name
        ctype = content_type(name)
        caching: Fields = ()
        rel = found.path[len(self.lookup.root.slash) :]  # as requested (symlinks unresolved)
        if features.cache_control is not None:
            value = features.cache_control.value_for(rel)
            if value is not None:
                caching = (("Cache-Control", value),)
        coding = ""
        representation: Fields = ()
        if features.codings:
            codings, identity_ok = negotiate(request.accept_encoding, features.codings)
            for candidate in codings:
                variant = self.lookup.open_variant(found.path + SUFFIXES[candidate], found.stat)
                if variant is not None:
                    found.close()
                    found = variant
                    coding = candidate
                    representation = (("Content-Encoding", coding),)
                    break
            else:
                if not identity_ok:
                    # Every coding we have is refused, and so is identity (RFC 9110 §12.5.3).
                    found.close()
                    return plan_error(406, request, close, self._vary), None
        if features.attachment or wants_download(target.query):
            representation += (content_disposition(name),)
        if features.mirrors and self.digests is not None:
            # The identity file's URL on each mirror; a Digest only of identity bytes.
            representation += mirrors.file_fields(
                features.mirrors, self.digests, request, found, tuple(rel.split("/")), coding
            )
        st = found.stat
        facts = FileFacts(
            st.st_size, st.st_mtime_ns, ctype, coding, representation, self._vary, caching
        )
        body = None
        digests = self.digests
        if digests is not None and features.digest and wants_sha256(request.want_repr_digest):
            value = digests.get(found.fd, st)
            if value is None and st.st_size <= self.body_max:
                # Small: hash the bytes the cache reads anyway, here, in microseconds.
                body = read_cached_bytes(found.fd, st.st_size)
                if body is not None:
                    value = digests.put_bytes(found.fd, st, body)
            if value is not None:
                facts = _with_digest(facts, value)
            elif request.method == "GET" and request.range is None:
                # Only a whole-file GET starts hashing (HEAD and ranges never do), and it
                # waits for the value a moment at most: a later response carries it.
                running = digests.start(found.fd, st)
                if running is not None:
                    file = found
                    return Deferred(
                        lambda: self._file_with_digest(request, close, file, facts, running),
                        file,
                    )
        return self._plan_file(request, close, found, facts, body)

    async def _file_with_digest(
        self,
        request: Request,
        close: bool,
        found: OpenFile,
        facts: FileFacts,
        running: asyncio.Future[bytes],
    ) -> Planned:
        try:
            digest = await asyncio.wait_for(asyncio.shield(running), DIGEST_WAIT_SECONDS)
        except (asyncio.TimeoutError, OSError):
            pass  # not ready (or the read failed): this response goes without it
        else:
            facts = _with_digest(facts, field_value(digest))
        return self._plan_file(request, close, found, facts, None)

    def _plan_file(
        self, request: Request, close: bool, found: OpenFile, facts: FileFacts, body: bytes | None
    ) -> Planned:
        st = found.stat
        cache = self.cache
        if cache is not None and st.st_size <= self.body_max and self.cacheable(request):
            if body is None:
                body = read_cached_bytes(found.fd, st.st_size)
            if body is not None:
                head = serialize(200, whole_file_fields(facts))
                cache.put(cache_key(request.target), CachedFile(found.path, st, head, body))
        plan = plan_file(request, facts, close)
        if not plan.uses_file:
            found.close()
            return plan, None
        return plan, found

    # --- checksum files (--digest) ----------------------------------------------------------

    def _made_file(
        self, request: Request, close: bool, target: RequestPath
    ) -> Planned | Deferred | None:
        """Where no such file exists: ``NAME.sha256`` and ``DIR/SHA256SUMS`` (--digest,
        sums.py), ``NAME.meta4`` (--mirror, mirrors.py)."""
        assert self.digests is not None and self.pieces is not None
        features = self.features
        if features.mirrors:
            meta4 = mirrors.meta4_file(
                self.lookup,
                self.pieces,
                features.mirrors,
                features.scheme,
                self.root_path,
                request,
                close,
                target,
            )
            if meta4 is not None:
                return meta4
        if not features.digest:
            return None
        fill = _sidecar_fill(self.cache, request) if self.cacheable(request) else None
        return sums.checksum_file(self.lookup, self.digests, request, close, target, fill)

    # --- directory listings -----------------------------------------------------------------

    async def _listing(
        self, request: Request, close: bool, target: RequestPath, path: str
    ) -> Planned:
        """Scan and render in the I/O pool: neither a huge directory nor a 4 MB page may
        stall the loop (at the cap, a render takes 0.16-0.19 s of CPU)."""
        loop = asyncio.get_running_loop()
        as_json = request.accept is not None and "application/json" in request.accept.lower()
        root = self.lookup.root
        known = self.digests.peek if self.digests is not None else None
        job = partial(
            _scan_and_render,
            path,
            root,
            target,
            as_json,
            self.root_path,
            known,
            self.features.archives,
        )
        try:
            fields, body = await loop.run_in_executor(io_pool(), job)
        except FileNotFoundError:
            return plan_error(404, request, close), None  # gone, or swapped for a link out
        except PermissionError:
            return plan_error(403, request, close), None
        return plan_body(200, request, close, fields, body), None


def _scan_and_render(
    path: str,
    root: Root,
    target: RequestPath,
    as_json: bool,
    root_path: str,
    known: Callable[[str, os.stat_result], str | None] | None,
    archives: tuple[str, ...] = (),
) -> tuple[Fields, bytes]:
    """Blocking: a directory's listing page (HTML, or JSON when asked) and its fields."""
    # Imported here: only servers with --autoindex load the page templates.
    from ..files import scan
    from ..http import listing

    found = scan.scan_directory(path, root, known=known)
    sort, order, json_query = listing.parse_listing_query(target.query)
    fields: Fields
    if as_json or json_query:
        body = listing.render_json(found, target.segments, sort, order, root_path, archives)
        fields = (("Content-Type", listing.JSON_CONTENT_TYPE),)
    else:
        body = listing.render_html(found, target.segments, sort, order, root_path, archives)
        fields = (
            ("Content-Type", listing.HTML_CONTENT_TYPE),
            # Only the page's own (hashed) style and script may run: a missed escape could
            # still not execute anything.
            ("Content-Security-Policy", listing.CONTENT_SECURITY_POLICY),
        )
    # The listing changes whenever the directory does: no validators, no caching.
    return (
        *fields,
        ("X-Content-Type-Options", "nosniff"),
        ("Cache-Control", "no-cache"),
        ("Vary", "Accept"),
    ), body
