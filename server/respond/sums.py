"""Checksum files nobody has to write: ``NAME.sha256`` and a directory's ``SHA256SUMS``.

With ``--digest sha-256``, a request for ``NAME.sha256`` that names no real file gets
``HEX  NAME\\n``, and ``DIR/SHA256SUMS`` one such line per regular file of the directory,
sorted by name: the format ``sha256sum -c`` reads. The digests come from the digest
cache (memory, or kept with each file in an extended attribute); those not known yet are
computed in the hash pool, and the answer waits for them a few seconds at most (then
503 with Retry-After: the computation goes on, a retry gets it).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from ..files.digests import DigestCache
from ..files.lookup import FileLookup, OpenFile
from ..files.pools import io_pool
from ..http.head import serialize
from ..http.paths import RequestPath
from ..http.plan import plan_body, plan_error
from ..http.request import Request
from .deferred import Deferred, Planned

SIDECAR_SUFFIX = ".sha256"
SUMS_NAME = "SHA256SUMS"
SUMS_MAX_FILES = 1000  # a directory with more regular files gets 413
WAIT_SECONDS = 5.0  # how long an answer waits for digests being computed
RETRY_AFTER_SECONDS = 5


def sums_line(digest: bytes, name: str) -> str:
    """One ``sha256sum`` line; a name with a backslash or a newline is escaped as GNU
    coreutils does (a leading backslash marks the line)."""
    if "\\" in name or "\n" in name:
        escaped = name.replace("\\", "\\\\").replace("\n", "\\n")
        return f"\\{digest.hex()}  {escaped}\n"
    return f"{digest.hex()}  {name}\n"


async def digests_of(digests: DigestCache, files: list[OpenFile]) -> list[bytes] | None:
    """The digests of ``files``, computed where not known; None when they are not all
    ready within WAIT_SECONDS (or the hash pool refused a job, or a read failed)."""
    found: list[bytes | None] = []
    jobs: dict[int, asyncio.Future[bytes]] = {}
    for i, f in enumerate(files):
        digest = digests.known(f.fd, f.stat)
        if digest is None:
            job = digests.start(f.fd, f.stat)
            if job is None:
                return None  # the pool's queue is full: come back later
            jobs[i] = job
        found.append(digest)
    if jobs:
        waiting = asyncio.gather(*jobs.values(), return_exceptions=True)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(waiting), WAIT_SECONDS)
        for i, job in jobs.items():
            if not job.done() or job.cancelled() or job.exception() is not None:
                return None
            found[i] = job.result()
    return [d for d in found if d is not None]


# Keeps a made NAME.sha256's response: (the file it sums, the head, the body).
Fill = Callable[[OpenFile, bytes, bytes], None]


def checksum_file(
    lookup: FileLookup,
    digests: DigestCache,
    request: Request,
    close: bool,
    target: RequestPath,
    fill: Fill | None = None,
) -> Planned | Deferred | None:
    """The plan for ``NAME.sha256`` or ``DIR/SHA256SUMS``, or None if ``target`` is
    neither (the caller answers 404). ``fill``, if given, is handed a ``NAME.sha256``'s
    response to keep."""
    name = target.segments[-1]
    if name == SUMS_NAME:
        segments = target.segments[:-1]
        return Deferred(lambda: _sha256sums(lookup, digests, request, close, segments))
    if not name.endswith(SIDECAR_SUFFIX) or name == SIDECAR_SUFFIX:
        return None
    base = name[: -len(SIDECAR_SUFFIX)]
    found = lookup.open(RequestPath((*target.segments[:-1], base), False, b"", True))
    if not isinstance(found, OpenFile):
        return None
    return Deferred(lambda: _checksums(digests, request, close, [found], [base], fill), found)


async def _checksums(
    digests: DigestCache,
    request: Request,
    close: bool,
    files: list[OpenFile],
    names: list[str],
    fill: Fill | None = None,
) -> Planned:
    try:
        found = await digests_of(digests, files)
    finally:
        for f in files:
            f.close()
    if found is None:
        extra = (("Retry-After", str(RETRY_AFTER_SECONDS)),)
        return plan_error(503, request, close, extra), None
    text = "".join(sums_line(d, n) for d, n in zip(found, names, strict=True))
    body = text.encode("utf-8", "surrogateescape")
    fields = (("Content-Type", "text/plain; charset=utf-8"), ("Cache-Control", "no-cache"))
    plan = plan_body(200, request, close, fields, body)
    if fill is not None:
        fill(files[0], serialize(200, plan.fields), body)
    return plan, None


async def _sha256sums(
    lookup: FileLookup,
    digests: DigestCache,
    request: Request,
    close: bool,
    segments: tuple[str, ...],
) -> Planned:
    from ..files import scan  # only servers that list or sum directories load it

    path = lookup.directory(segments)
    if path is None:
        return plan_error(404, request, close), None
    loop = asyncio.get_running_loop()
    try:
        listing = await loop.run_in_executor(io_pool(), scan.scan_directory, path, lookup.root)
    except OSError:
        return plan_error(404, request, close), None
    names = sorted(e.name for e in listing.entries if not e.is_dir)
    if listing.truncated or len(names) > SUMS_MAX_FILES:
        return plan_error(413, request, close), None
    files = []
    for name in names:
        found = lookup.open(RequestPath((*segments, name), False, b"", True))
        if isinstance(found, OpenFile):
            files.append(found)
    return await _checksums(digests, request, close, files, [f.name for f in files])
