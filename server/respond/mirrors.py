"""``--mirror``: the Link and Digest fields of file responses, and ``NAME.meta4``.

See ``http/metalink.py`` for the formats. The document needs the file's SHA-256 and its
piece hashes: computed together in the hash pool (once per file version and piece
length), waited for 5 s at most, then 503 with Retry-After (a retry gets them).
"""

from __future__ import annotations

import asyncio
import contextlib

from ..files.digests import DigestCache, PieceHashes
from ..files.lookup import FileLookup, OpenFile
from ..http import metalink
from ..http.head import Fields
from ..http.paths import RequestPath
from ..http.plan import plan_body, plan_error
from ..http.request import Request
from .deferred import Deferred, Planned

WAIT_SECONDS = 5.0
RETRY_AFTER_SECONDS = 5


def file_fields(
    mirrors: tuple[metalink.Mirror, ...],
    digests: DigestCache,
    request: Request,
    found: OpenFile,
    rel_segments: tuple[str, ...],
    coding: str,
) -> Fields:
    """Link (duplicates, describedby) and, if asked for and known, Digest; none for a
    precompressed variant (``coding``), whose bytes are not the file's."""
    fields = metalink.link_fields(mirrors, rel_segments)
    if not coding and metalink.wants_sha256_digest(request.want_digest):
        digest = digests.known(found.fd, found.stat)
        if digest is not None:
            fields = (*fields, metalink.digest_field(digest))
    return fields


def meta4_file(
    lookup: FileLookup,
    pieces: PieceHashes,
    mirrors: tuple[metalink.Mirror, ...],
    scheme: str,
    root_path: str,
    request: Request,
    close: bool,
    target: RequestPath,
) -> Planned | Deferred | None:
    """The plan for ``NAME.meta4`` (no such real file), or None if ``target`` is none."""
    name = target.segments[-1]
    if not name.endswith(metalink.META4_SUFFIX) or name == metalink.META4_SUFFIX:
        return None
    segments = (*target.segments[:-1], name[: -len(metalink.META4_SUFFIX)])
    found = lookup.open(RequestPath(segments, False, b"", True))
    if not isinstance(found, OpenFile):
        return None
    urls = [(m.base + metalink.url_path(segments), m.priority) for m in mirrors]
    if request.host:
        urls.insert(0, (f"{scheme}://{request.host}{root_path}{metalink.url_path(segments)}", 1))
    return Deferred(lambda: _document(pieces, request, close, found, segments[-1], urls), found)


async def _document(
    pieces: PieceHashes,
    request: Request,
    close: bool,
    found: OpenFile,
    name: str,
    urls: list[tuple[str, int]],
) -> Planned:
    try:
        size = found.stat.st_size
        length = metalink.piece_length(size)
        job = pieces.start(found.fd, found.stat, length)
        result = None
        if job is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                result = await asyncio.wait_for(asyncio.shield(job), WAIT_SECONDS)
    except OSError:
        result = None
    finally:
        found.close()
    if result is None:
        extra = (("Retry-After", str(RETRY_AFTER_SECONDS)),)
        return plan_error(503, request, close, extra), None
    digest, hashes = result
    body = metalink.meta4_document(name, size, digest, length, hashes, urls)
    fields = (("Content-Type", metalink.META4_TYPE), ("Cache-Control", "no-cache"))
    return plan_body(200, request, close, fields, body), None
