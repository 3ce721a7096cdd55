"""The connection's one deadline: what it guards, when it fires, and what then happens.

A connection is always under exactly one deadline, named by a ``Watch``:

    IDLE    waiting for a request           --keepalive-timeout (--header-timeout at first)
    HEAD    a request head has begun        --header-timeout from its first byte, never
                                            extended by later bytes (slowloris gains nothing)
    SEND    responses owed or bytes queued  --send-timeout without progress
    LINGER  closing after the last response a short drain of the peer, then close

``Deadline`` is the timer: setting one is a float store, and one lazily re-armed loop
timer fires for it (re-arming itself when the deadline moved later meanwhile), so a
deadline per request costs no timer churn. ``expired`` is the decision, a pure function
of what the connection tells it, with one row per case in its table test.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Protocol


class Watch(enum.Enum):
    IDLE = "idle"
    HEAD = "head"
    SEND = "send"
    LINGER = "linger"


class Action(enum.Enum):
    """What an expired deadline asks of the connection."""

    REFUSE_408 = "refuse-408"  # answer 408 and close: the head never came
    ABORT = "abort"  # drop the connection now
    WATCH_SEND = "watch-send"  # watch the send instead (--send-timeout from now)
    WATCH_IDLE = "watch-idle"  # all sent: wait for the next request (--keepalive-timeout)
    CLOSE_IDLE = "close-idle"  # idle for too long: close
    CLOSE = "close"  # done lingering, or done sending after the last response: close


def expired(
    watch: Watch,
    idle: bool,
    sending: bool,
    queued: bool,
    buffered: bool,
    progressed: bool,
) -> Action:
    """What to do when the deadline of ``watch`` has passed.

    ``idle``: no response in progress and the connection is not closing; ``sending``: a
    response is being sent (or planned) by a task; ``queued``: requests are waiting to be
    answered; ``buffered``: the transport still holds bytes for the client; ``progressed``:
    the bytes out, the transport's buffer or the kernel's send queue moved since the last
    look (SEND only).
    """
    if watch is Watch.HEAD:
        # The head did not complete in time: 408 when nothing else is owed, else drop.
        return Action.REFUSE_408 if idle and not queued else Action.ABORT
    if watch is Watch.IDLE and (queued or sending):
        # A request arrived just as the connection's idle time ran out: it is owed.
        return Action.WATCH_SEND
    if watch is Watch.IDLE or watch is Watch.LINGER:
        if buffered:
            # The last response is still queued for a client that reads slowly (or not at
            # all): judge it by progress, like any response in flight.
            return Action.WATCH_SEND
        return Action.CLOSE_IDLE if watch is Watch.IDLE else Action.CLOSE
    # Watch.SEND
    if not buffered and not queued and not sending:
        # Everything was handed over: wait for the next request, or close.
        return Action.WATCH_IDLE if idle else Action.CLOSE
    return Action.WATCH_SEND if progressed else Action.ABORT


class Clock(Protocol):
    """What the timer needs of an event loop (a fake one in tests)."""

    def time(self) -> float: ...

    def call_at(self, when: float, callback: Callable[[], object]) -> _Cancellable: ...


class _Cancellable(Protocol):
    def cancel(self) -> None: ...


class Deadline:
    """One lazily re-armed timer for a moving deadline."""

    __slots__ = ("_at", "_clock", "_on_expiry", "_timer", "_timer_at", "watch")

    def __init__(self, clock: Clock, on_expiry: Callable[[Watch], None]) -> None:
        self._clock = clock
        self._on_expiry = on_expiry
        self.watch = Watch.IDLE
        self._at = 0.0
        self._timer: _Cancellable | None = None
        self._timer_at = 0.0

    def set(self, watch: Watch, seconds: float) -> float:
        """From now on, guard ``watch`` until ``seconds`` from now; that time."""
        self.watch = watch
        self._at = at = self._clock.time() + seconds
        timer = self._timer
        if timer is None or self._timer_at > at:
            if timer is not None:
                timer.cancel()
            self._timer_at = at
            self._timer = self._clock.call_at(at, self._fire)
        return at

    def set_at(self, watch: Watch, at: float) -> None:
        """From now on, guard ``watch`` until the clock reads ``at`` (maybe already past:
        then it fires at the next turn)."""
        self.watch = watch
        self._at = at
        timer = self._timer
        if timer is None or self._timer_at > at:
            if timer is not None:
                timer.cancel()
            self._timer_at = at
            self._timer = self._clock.call_at(at, self._fire)

    def cancel(self) -> None:
        """No deadline any more (the connection is gone)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _fire(self) -> None:
        self._timer = None
        if self._clock.time() < self._at:
            # Moved later since armed: sleep until the new deadline.
            self._timer_at = self._at
            self._timer = self._clock.call_at(self._at, self._fire)
            return
        self._on_expiry(self.watch)
