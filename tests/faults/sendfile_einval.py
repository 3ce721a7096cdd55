"""Run the real server with os.sendfile failing as on a file system without sendfile.

No local file system refuses sendfile for regular files, so the fault is injected at the
one call that would see it; everything else (sockets, files, the CLI) is real.
"""

import errno
import os
import sys

from server.process.cli import main


def _sendfile_unsupported(*args: object, **kwargs: object) -> int:
    raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))


os.sendfile = _sendfile_unsupported  # type: ignore[assignment]
sys.exit(main())
