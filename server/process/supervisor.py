"""Worker processes: N copies of the server on the same listening sockets, supervised.

The parent binds the listening sockets (one set per worker with SO_REUSEPORT for TCP, so
the kernel spreads connections evenly; one shared set for unix and systemd sockets),
forks the workers, and then only waits:

* a worker that dies without being asked to is restarted on its own sockets, so the
  connections queued on them are served by its successor (a crash loop backs off);
* SIGTERM and SIGINT are forwarded for a graceful shutdown, and the parent exits 0 once
  every worker has; workers still running ``KILL_GRACE`` seconds after --shutdown-timeout
  (stopped, or stuck) are killed, and the parent then exits ``EXIT_KILLED_WORKERS``;
* SIGHUP is forwarded: each worker reopens its access log file.

The parent never runs an event loop: forking from inside one is unsafe on both loops.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import socket
import time
from collections.abc import Callable

log = logging.getLogger("zerocopy.supervisor")

# A worker dying this soon after its start counts as a crash loop: wait before the next.
CRASH_WINDOW = 1.0
MAX_BACKOFF = 10.0
# After SIGTERM, workers get --shutdown-timeout plus this long before SIGKILL.
KILL_GRACE = 5.0
EXIT_KILLED_WORKERS = 1
# How often the parent looks for exited workers: waitpid never blocks, since a blocking
# one is retried after every signal (PEP 475) and would never see the kill deadline pass.
POLL_SECONDS = 0.05


PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _exit_with_parent(parent: int) -> None:
    """Have the kernel send SIGTERM (a graceful stop) if the supervisor dies, even by
    SIGKILL: orphaned workers would otherwise keep the port and serve unsupervised."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        return  # not Linux: a dead supervisor leaves its workers running
    if os.getppid() != parent:  # it died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


class Supervisor:
    def __init__(
        self,
        listener_sets: list[list[socket.socket]],
        run_worker: Callable[[int, list[socket.socket]], int],
        shutdown_timeout: float,
    ) -> None:
        self.listener_sets = listener_sets
        self.run_worker = run_worker
        self.shutdown_timeout = shutdown_timeout
        self.pids: dict[int, int] = {}  # pid -> worker index
        self.started: dict[int, float] = {}  # worker index -> start time
        self.backoff: dict[int, float] = {}
        self.stopping = False

    def _spawn(self, index: int) -> None:
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:  # the worker
            code = 1
            try:
                for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD):
                    signal.signal(sig, signal.SIG_DFL)
                _exit_with_parent(parent)
                # Until the worker's loop takes SIGHUP over, a log-reopen request must not
                # kill it (the default action for SIGHUP is to terminate).
                signal.signal(signal.SIGHUP, signal.SIG_IGN)
                for i, sockets in enumerate(self.listener_sets):
                    if i != index:
                        for sock in sockets:
                            sock.close()
                code = self.run_worker(index, self.listener_sets[index])
            except KeyboardInterrupt:
                code = 0
            except BaseException:
                log.exception("worker %d failed", index)
            finally:
                logging.shutdown()
                os._exit(code)
        self.pids[pid] = index
        self.started[index] = time.monotonic()
        log.info("worker %d started (pid %d)", index, pid)

    def _forward(self, signum: int, _frame: object = None) -> None:
        if signum in (signal.SIGTERM, signal.SIGINT):
            self.stopping = True
        for pid in list(self.pids):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    def run(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self._forward)
        for first in range(len(self.listener_sets)):
            self._spawn(first)
        deadline: float | None = None
        killed = False
        while self.pids:
            if self.stopping and deadline is None:
                deadline = time.monotonic() + self.shutdown_timeout + KILL_GRACE
            if deadline is not None and time.monotonic() > deadline and not killed:
                for pid in list(self.pids):
                    log.error("worker pid %d did not stop in time: killing it", pid)
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                killed = True
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                time.sleep(POLL_SECONDS)
                continue
            if pid not in self.pids:
                continue
            index = self.pids.pop(pid)
            if self.stopping:
                log.info("worker %d (pid %d) exited", index, pid)
                continue
            self._restart(index, pid, status)
        return EXIT_KILLED_WORKERS if killed else 0

    def _restart(self, index: int, pid: int, status: int) -> None:
        if os.WIFSIGNALED(status):
            why = f"killed by signal {os.WTERMSIG(status)}"
        else:
            why = f"exited with status {os.WEXITSTATUS(status)}"
        log.error("worker %d (pid %d) %s: restarting it", index, pid, why)
        lived = time.monotonic() - self.started.get(index, 0.0)
        if lived < CRASH_WINDOW:
            delay = min(max(self.backoff.get(index, 0.0) * 2, 0.1), MAX_BACKOFF)
            self.backoff[index] = delay
            time.sleep(delay)  # signals still arrive: the handlers only set flags and kill
            if self.stopping:
                return
        else:
            self.backoff[index] = 0.0
        self._spawn(index)
