"""The connection's deadline, without sockets or real time.

``expired`` is a pure function: one table row per rule. ``Deadline`` is driven by a fake
clock that fires due callbacks in time order, so how many loop timers it arms, when it
re-arms, and what it reports on expiry are pinned exactly.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from typing import Any

import pytest

from server.connection.deadlines import Action, Deadline, Watch, expired

# --- expired(): the decision table ------------------------------------------------------

HEAD, IDLE, SEND, LINGER = Watch.HEAD, Watch.IDLE, Watch.SEND, Watch.LINGER


def case(
    rule: str,
    watch: Watch,
    action: Action,
    *,
    idle: bool = False,
    sending: bool = False,
    queued: bool = False,
    buffered: bool = False,
    progressed: bool = False,
) -> Any:
    """One row: the flags not named are False."""
    return pytest.param(watch, idle, sending, queued, buffered, progressed, action, id=rule)


EXPIRED_TABLE = [
    # HEAD: the head did not complete within --header-timeout.
    case("head-timeout-nothing-owed-answers-408", HEAD, Action.REFUSE_408, idle=True),
    case(
        "head-timeout-idle-with-bytes-buffered-still-answers-408",
        HEAD,
        Action.REFUSE_408,
        idle=True,
        buffered=True,
        progressed=True,
    ),
    case("head-timeout-with-response-owed-aborts", HEAD, Action.ABORT, idle=True, queued=True),
    case("head-timeout-while-sending-aborts", HEAD, Action.ABORT, sending=True, progressed=True),
    case("head-timeout-while-closing-aborts", HEAD, Action.ABORT),
    # IDLE: the keep-alive time ran out.
    case(
        "idle-with-request-just-arrived-watches-send",
        IDLE,
        Action.WATCH_SEND,
        idle=True,
        queued=True,
    ),
    case("idle-while-a-task-sends-watches-send", IDLE, Action.WATCH_SEND, sending=True),
    case(
        "idle-while-sending-with-more-queued-watches-send",
        IDLE,
        Action.WATCH_SEND,
        sending=True,
        queued=True,
        buffered=True,
    ),
    case(
        "idle-with-last-response-still-buffered-watches-send",
        IDLE,
        Action.WATCH_SEND,
        idle=True,
        buffered=True,
    ),
    case("idle-nothing-owed-nothing-buffered-closes-idle", IDLE, Action.CLOSE_IDLE, idle=True),
    case("idle-while-closing-nothing-buffered-closes-idle", IDLE, Action.CLOSE_IDLE),
    case("idle-ignores-progress", IDLE, Action.CLOSE_IDLE, idle=True, progressed=True),
    # LINGER: closing after the last response.
    case("linger-with-bytes-queued-watches-send", LINGER, Action.WATCH_SEND, buffered=True),
    case("linger-done-closes", LINGER, Action.CLOSE),
    case("linger-ignores-queued-requests-and-closes", LINGER, Action.CLOSE, queued=True),
    case("linger-ignores-sending-and-closes", LINGER, Action.CLOSE, sending=True),
    # SEND: --send-timeout passed since the last look at the progress.
    case("send-all-handed-over-idle-waits-for-next-request", SEND, Action.WATCH_IDLE, idle=True),
    case(
        "send-all-handed-over-ignores-progress",
        SEND,
        Action.WATCH_IDLE,
        idle=True,
        progressed=True,
    ),
    case("send-all-handed-over-while-closing-closes", SEND, Action.CLOSE),
    case(
        "send-task-progressed-watches-again", SEND, Action.WATCH_SEND, sending=True, progressed=True
    ),
    case("send-no-progress-aborts", SEND, Action.ABORT, sending=True),
    case(
        "send-queued-progressed-watches-again",
        SEND,
        Action.WATCH_SEND,
        idle=True,
        queued=True,
        progressed=True,
    ),
    case("send-queued-no-progress-aborts", SEND, Action.ABORT, idle=True, queued=True),
    case(
        "send-buffered-progressed-watches-again",
        SEND,
        Action.WATCH_SEND,
        idle=True,
        buffered=True,
        progressed=True,
    ),
    case("send-buffered-no-progress-aborts", SEND, Action.ABORT, idle=True, buffered=True),
    case("send-buffered-while-closing-no-progress-aborts", SEND, Action.ABORT, buffered=True),
]


@pytest.mark.parametrize(
    "watch, idle, sending, queued, buffered, progressed, action", EXPIRED_TABLE
)
def test_expired_decides_by_the_table(
    watch: Watch,
    idle: bool,
    sending: bool,
    queued: bool,
    buffered: bool,
    progressed: bool,
    action: Action,
) -> None:
    assert expired(watch, idle, sending, queued, buffered, progressed) is action


def test_head_timeout_answers_408_only_when_idle_and_nothing_queued() -> None:
    for idle, sending, queued, buffered, progressed in itertools.product((False, True), repeat=5):
        got = expired(Watch.HEAD, idle, sending, queued, buffered, progressed)
        assert got is (Action.REFUSE_408 if idle and not queued else Action.ABORT)


def test_each_action_comes_from_its_own_watch() -> None:
    """WATCH_IDLE, REFUSE_408 and CLOSE_IDLE each answer one watch; every input has an answer."""
    for watch in Watch:
        for flags in itertools.product((False, True), repeat=5):
            action = expired(watch, *flags)
            assert isinstance(action, Action)
            if action is Action.WATCH_IDLE:
                assert watch is Watch.SEND
            if action is Action.REFUSE_408:
                assert watch is Watch.HEAD
            if action is Action.CLOSE_IDLE:
                assert watch is Watch.IDLE


# --- Deadline on a fake clock -----------------------------------------------------------


class FakeHandle:
    def __init__(self, clock: FakeClock, when: float, callback: Callable[[], object]) -> None:
        self.clock = clock
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class FakeClock:
    """``time()`` and ``call_at()`` of an event loop, moved only by ``advance``."""

    def __init__(self, now: float = 100.0) -> None:
        self.now = now
        self.armed: list[FakeHandle] = []  # every timer ever armed, in order
        self._heap: list[tuple[float, int, FakeHandle]] = []
        self._seq = itertools.count()

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, callback: Callable[[], object]) -> FakeHandle:
        handle = FakeHandle(self, when, callback)
        self.armed.append(handle)
        heapq.heappush(self._heap, (when, next(self._seq), handle))
        return handle

    @property
    def pending(self) -> list[FakeHandle]:
        return [h for _, _, h in sorted(self._heap) if not h.cancelled]

    def advance(self, seconds: float) -> None:
        """Move time forward, firing each due callback at its own time, in order."""
        end = self.now + seconds
        while self._heap and self._heap[0][0] <= end:
            when, _, handle = heapq.heappop(self._heap)
            if handle.cancelled:
                continue
            self.now = max(self.now, when)
            handle.callback()
        self.now = end


class Expiries:
    """The ``on_expiry`` callback: what it was told, and when."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.calls: list[tuple[float, Watch]] = []

    def __call__(self, watch: Watch) -> None:
        self.calls.append((self.clock.now, watch))


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def expiries(clock: FakeClock) -> Expiries:
    return Expiries(clock)


@pytest.fixture
def deadline(clock: FakeClock, expiries: Expiries) -> Deadline:
    return Deadline(clock, expiries)


def test_new_deadline_watches_idle_and_arms_nothing(
    clock: FakeClock, deadline: Deadline, expiries: Expiries
) -> None:
    assert deadline.watch is Watch.IDLE
    clock.advance(1000)
    assert clock.armed == [] and expiries.calls == []


def test_deadline_fires_with_its_watch_once_it_passes(
    clock: FakeClock, deadline: Deadline, expiries: Expiries
) -> None:
    deadline.set(Watch.HEAD, 10)
    clock.advance(9.999)
    assert expiries.calls == []
    clock.advance(0.001)
    assert expiries.calls == [(110.0, Watch.HEAD)]
    clock.advance(1000)
    assert len(expiries.calls) == 1  # once: nothing re-arms it but a new set()


def test_moving_the_deadline_later_arms_no_new_timer(
    clock: FakeClock, deadline: Deadline, expiries: Expiries
) -> None:
    deadline.set(Watch.SEND, 10)
    for _ in range(100):
        clock.advance(0.05)
        deadline.set(Watch.SEND, 10)  # progress: the deadline slides
    assert len(clock.armed) == 1
    assert expiries.calls == []


def test_timer_fired_early_rearms_itself_for_the_moved_deadline(
    clock: FakeClock, deadline: Deadline, expiries: Expiries
) -> None:
    deadline.set(Watch.SEND, 10)  # timer at 110
    clock.advance(4)
    deadline.set(Watch.SEND, 10)  # deadline at 114, the timer still at 110
    clock.advance(6)  # 110: the timer fires early and sleeps until 114
    assert expiries.calls == []
    assert len(clock.armed) == 2
    assert clock.pending[0].when == 114.0
    clock.advance(3.9)
    assert expiries.calls == []
    clock.advance(0.1)
    assert expiries.calls == [(114.0, Watch.SEND)]
    assert len(clock.armed) == 2


def test_moving_the_deadline_earlier_cancels_and_rearms(
    clock: FakeClock, deadline: Deadline, expiries: Expiries
) -> None:
    deadline.set(Watch.IDLE, 5)
    first = clock.armed[0]
    deadline.set(Watch.HEAD, 1)
    assert first.cancelled
    assert len(clock.armed) == 2 and clock.armed[1].when == 101.0
    clock.advance(1)
    assert expiries.calls == [(101.0, Watch.HEAD)]
    clock.advance(10)
    assert len(expiries.calls) == 1  # the cancelled timer never fires


def test_cancel_stops_the_deadline(
    clock: FakeClock, deadline: Deadline, expiries: Expiries
) -> None:
    deadline.set(Watch.SEND, 2)
    deadline.cancel()
    assert clock.armed[0].cancelled
    clock.advance(100)
    assert expiries.calls == []
    deadline.cancel()  # twice is fine


def test_set_after_cancel_arms_a_new_timer(
    clock: FakeClock, deadline: Deadline, expiries: Expiries
) -> None:
    deadline.set(Watch.SEND, 2)
    deadline.cancel()
    deadline.set(Watch.IDLE, 3)  # later than the cancelled timer: a new one all the same
    assert len(clock.armed) == 2 and not clock.armed[1].cancelled
    clock.advance(3)
    assert expiries.calls == [(103.0, Watch.IDLE)]


def test_expiry_reports_the_watch_set_last(
    clock: FakeClock, deadline: Deadline, expiries: Expiries
) -> None:
    deadline.set(Watch.HEAD, 5)
    deadline.set(Watch.SEND, 5)
    deadline.set(Watch.LINGER, 5)
    clock.advance(5)
    assert expiries.calls == [(105.0, Watch.LINGER)]
    assert deadline.watch is Watch.LINGER


def test_on_expiry_may_set_the_next_deadline(clock: FakeClock) -> None:
    calls: list[tuple[float, Watch]] = []
    deadline: Deadline

    def on_expiry(watch: Watch) -> None:
        calls.append((clock.now, watch))
        if watch is Watch.SEND:
            deadline.set(Watch.IDLE, 2)

    deadline = Deadline(clock, on_expiry)
    deadline.set(Watch.SEND, 1)
    clock.advance(10)
    assert calls == [(101.0, Watch.SEND), (103.0, Watch.IDLE)]
    assert len(clock.armed) == 2


def test_deadline_set_again_after_firing_fires_again(
    clock: FakeClock, deadline: Deadline, expiries: Expiries
) -> None:
    deadline.set(Watch.SEND, 1)
    clock.advance(1)
    deadline.set(Watch.SEND, 1)
    clock.advance(1)
    assert expiries.calls == [(101.0, Watch.SEND), (102.0, Watch.SEND)]
