"""The life of one create request, as one enum and one table of allowed transitions.

::

    creating -----------------> active ---------------------> ended
    creating -----------------> refused                (off, lease backstop)
    creating <-- park/resume --> interrupted ------------------> ended
    creating, interrupted -----> rolling-back                  (a step failed; lease over)
    rolling-back <-- park/resume --> rollback-interrupted -----> ended
    rolling-back --------------> rolled-back
    rolling-back --------------> rollback-incomplete ----------> ended
                                 (lease kept, expiring now)

*Parked* states (``interrupted``, ``rollback-interrupted``) are requests no thread is driving:
a crash or a shutdown left them, and they resume in the direction they were going -- a parked
rollback is never resumed as a create.  *Live* rows are those for which AWS may hold
something of the annex; a live row owns its (region, name): no second live row may take it,
and only its owner (or an admin) may see or steer it.  *Final* rows are history only: they
never grant access to anything and never hide a live annex.

The journal checks every state change against :data:`TRANSITIONS`; anything else is a bug and
raises :class:`IllegalTransition` instead of being written.
"""
from __future__ import annotations

import enum


class RequestState(str, enum.Enum):
    CREATING = "creating"                          # a thread drives it forward
    INTERRUPTED = "interrupted"                    # parked on its way forward
    ROLLING_BACK = "rolling-back"                  # a thread undoes it
    ROLLBACK_INTERRUPTED = "rollback-interrupted"  # parked on its way back
    ACTIVE = "active"                              # complete: the annex runs under its lease
    ROLLBACK_INCOMPLETE = "rollback-incomplete"    # something may be left: its lease ends it
    ROLLED_BACK = "rolled-back"                    # final: nothing of it is left
    REFUSED = "refused"                            # final: the name was taken; nothing made
    ENDED = "ended"                                # final: turned off, or its lease ended

    def __str__(self) -> str:
        return self.value


S = RequestState

#: Every allowed state change.  Nothing else is ever written.
TRANSITIONS: dict[RequestState, frozenset[RequestState]] = {
    S.CREATING: frozenset({S.ACTIVE, S.INTERRUPTED, S.ROLLING_BACK, S.REFUSED}),
    S.INTERRUPTED: frozenset({S.CREATING, S.ROLLING_BACK, S.ENDED}),
    S.ROLLING_BACK: frozenset({S.ROLLED_BACK, S.ROLLBACK_INCOMPLETE, S.ROLLBACK_INTERRUPTED}),
    S.ROLLBACK_INTERRUPTED: frozenset({S.ROLLING_BACK, S.ENDED}),
    S.ACTIVE: frozenset({S.ENDED}),
    S.ROLLBACK_INCOMPLETE: frozenset({S.ENDED}),
    S.ROLLED_BACK: frozenset(),
    S.REFUSED: frozenset(),
    S.ENDED: frozenset(),
}

#: A crash or a shutdown parks a request in the direction it was going ...
PARK = {S.CREATING: S.INTERRUPTED, S.ROLLING_BACK: S.ROLLBACK_INTERRUPTED}
#: ... and resuming drives it on in that same direction.
RESUME = {parked: driving for driving, parked in PARK.items()}

DRIVEN = frozenset(PARK)                 # a thread of this daemon process is working on it
PARKED = frozenset(RESUME)               # nobody is working on it
UNFINISHED = DRIVEN | PARKED             # recovery looks at these at start-up
FINAL = frozenset(state for state, onward in TRANSITIONS.items() if not onward)
LIVE = frozenset(RequestState) - FINAL   # AWS may hold something; the row owns its name
#: Live and steerable by its owner: status, lease changes and off act on these.
SETTLED = frozenset({S.ACTIVE, S.ROLLBACK_INCOMPLETE}) | PARKED


class IllegalTransition(RuntimeError):
    """A state change the lifecycle does not allow: a bug, never written to the journal."""


def check(current: RequestState | str, new: RequestState | str) -> RequestState:
    """Return ``new`` as a state if ``current -> new`` is allowed, else raise."""
    before, after = RequestState(current), RequestState(new)
    if after not in TRANSITIONS[before]:
        raise IllegalTransition(f"request state {before} -> {after} is not allowed")
    return after
