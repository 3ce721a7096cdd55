"""The response side of a connection, as a state machine: its phases and allowed moves."""

from __future__ import annotations

import enum


class Phase(enum.Enum):
    IDLE = "idle"  # no response in progress; may be reading a request
    SENDING = "sending"  # a response is being planned or sent by a task
    CLOSING = "closing"  # no further requests will be answered
    CLOSED = "closed"


# The complete list of allowed moves; staying in a phase is always allowed.
PHASE_MOVES: dict[Phase, frozenset[Phase]] = {
    Phase.IDLE: frozenset({Phase.SENDING, Phase.CLOSING, Phase.CLOSED}),
    Phase.SENDING: frozenset({Phase.IDLE, Phase.CLOSING, Phase.CLOSED}),
    Phase.CLOSING: frozenset({Phase.CLOSED}),
    Phase.CLOSED: frozenset(),
}


class IllegalPhaseMove(RuntimeError):
    pass


def checked_move(current: Phase, new: Phase) -> Phase:
    """``new``, if the move from ``current`` is allowed; IllegalPhaseMove otherwise."""
    if new is not current and new not in PHASE_MOVES[current]:
        raise IllegalPhaseMove(f"{current.value} -> {new.value}")
    return new
