"""``GET /dir/?archive=tar|zip`` (``--archives tar,zip``): a directory as one download.

The tree is snapshotted off the loop (``files.scan.walk_tree``: the listing's rules for
dotfiles, containment and symlinks, recursively, sorted), its members turned into
segments (``http.archive``), and the archive planned like a file (``plan_file`` with
the segments as its body): an exact Content-Length, an ETag from the snapshot, Range and
If-Range, so a cut directory download resumes. zip needs each member's CRC-32 first:
known ones come from memory or the files' extended attributes, the rest are computed in
the hash pool, a whole tree in one job; the first zip of a tree waits for them, later
ones start at once.
"""

from __future__ import annotations

import asyncio
import os
import stat
from dataclasses import replace

from ..files import scan
from ..files.digests import Busy, Crc32Cache
from ..files.lookup import FileLookup
from ..files.pools import io_pool
from ..http import archive
from ..http.head import content_disposition
from ..http.multipart import MemberRef
from ..http.plan import FileFacts, ResponsePlan, plan_error, plan_file
from ..http.request import Request
from .deferred import Planned

KINDS = ("tar", "zip")
CONTENT_TYPES = {"tar": "application/x-tar", "zip": "application/zip"}
DEFAULT_MAX_FILES = 10_000
DEFAULT_MAX_BYTES = 256 * 1024**3


def wanted(query: bytes, enabled: tuple[str, ...]) -> str | None:
    """The archive kind a query asks for (``archive=tar``), if that kind is enabled."""
    for part in query.split(b"&"):
        key, _, value = part.partition(b"=")
        if key == b"archive":
            kind = value.decode("latin-1").lower()
            return kind if kind in enabled else None
    return None


async def plan_archive(
    lookup: FileLookup,
    crcs: Crc32Cache,
    request: Request,
    close: bool,
    segments: tuple[str, ...],
    kind: str,
    max_files: int,
    max_bytes: int,
) -> Planned:
    """The plan of an archive of the directory ``segments`` (it reads no one file)."""
    return await _plan(lookup, crcs, request, close, segments, kind, max_files, max_bytes), None


async def _plan(
    lookup: FileLookup,
    crcs: Crc32Cache,
    request: Request,
    close: bool,
    segments: tuple[str, ...],
    kind: str,
    max_files: int,
    max_bytes: int,
) -> ResponsePlan:
    path = lookup.directory(segments)
    if path is None:
        return plan_error(404, request, close)
    loop = asyncio.get_running_loop()
    try:
        tree = await loop.run_in_executor(
            io_pool(), scan.walk_tree, path, lookup.root, max_files, max_bytes
        )
    except scan.TreeTooLarge as exc:
        detail = f"the directory is too large to archive: {exc.what} (--archive-max-*)"
        return plan_error(413, request, close, detail=detail)
    except OSError:
        return plan_error(404, request, close)
    refs: list[MemberRef] = []
    crc_of: dict[int, int] = {}
    if kind == "zip":
        files = [(real, st) for _rel, st, real in tree if stat.S_ISREG(st.st_mode)]
        try:
            values = await crcs.all_of(files)
        except Busy:
            return plan_error(503, request, close, (("Retry-After", "5"),))
        except OSError:
            return plan_error(503, request, close, (("Retry-After", "1"),))  # changed: retry
        crc_of = {i: crc for i, crc in enumerate(values)}
    members = []
    for rel, st, real in tree:
        if stat.S_ISDIR(st.st_mode):
            members.append(archive.Member(rel, True, 0, st.st_mtime_ns, st.st_mode, -1))
            continue
        index = len(refs)
        refs.append(MemberRef(real, st.st_ino, st.st_size, st.st_mtime_ns))
        members.append(
            archive.Member(
                rel, False, st.st_size, st.st_mtime_ns, st.st_mode, index, crc_of.get(index, 0)
            )
        )
    body, total = archive.tar_body(members) if kind == "tar" else archive.zip_body(members)
    name = segments[-1] if segments else os.path.basename(lookup.root.real) or "files"
    newest = max((m.mtime_ns for m in members), default=0)
    facts = FileFacts(
        total,
        newest,
        CONTENT_TYPES[kind],
        representation=(content_disposition(f"{name}.{kind}"),),
        etag=archive.snapshot_etag(kind, members),
    )
    plan = plan_file(request, facts, close, tuple(body))
    return replace(plan, members=tuple(refs)) if plan.uses_file else plan
