"""Run the real server with reads of files named '*eio*' failing with EIO mid-body.

A failing disk cannot be had on demand, so the fault is injected at the two calls that
read file data (sendfile and preadv/pread): the first 1 MiB of such a file reads fine,
then every read fails as a dying disk's would.
"""

import errno
import os
import sys

from server.process.cli import main

GOOD_BYTES = 1024 * 1024


def _is_faulty(fd: int) -> bool:
    try:
        return "eio" in os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return False


def _fail_after(offset: int, fd: int) -> None:
    if offset >= GOOD_BYTES and _is_faulty(fd):
        raise OSError(errno.EIO, os.strerror(errno.EIO))


_sendfile, _preadv, _pread = os.sendfile, os.preadv, os.pread


def sendfile(out_fd, in_fd, offset, count, *args, **kwargs):  # type: ignore[no-untyped-def]
    _fail_after(offset or 0, in_fd)
    if _is_faulty(in_fd):
        count = min(count, GOOD_BYTES - (offset or 0))  # the good part ends at GOOD_BYTES
    return _sendfile(out_fd, in_fd, offset, count, *args, **kwargs)


def preadv(fd, buffers, offset, *args):  # type: ignore[no-untyped-def]
    _fail_after(offset, fd)
    return _preadv(fd, buffers, offset, *args)


def pread(fd, length, offset):  # type: ignore[no-untyped-def]
    _fail_after(offset, fd)
    return _pread(fd, length, offset)


os.sendfile, os.preadv, os.pread = sendfile, preadv, pread  # type: ignore[assignment]
sys.exit(main())
