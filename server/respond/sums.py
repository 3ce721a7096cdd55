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

from ..files.digests import DigestCache
from ..files.lookup import OpenFile

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
