"""The life of one annex request, as one enum and one table of allowed transitions.

::

    creating ---------------------> active <--> extending   (a lease change, an added launch)
    creating ---------------------> refused
    creating <-- park/resume --> interrupted
    creating, interrupted ---------> rolling-back       (a step failed; lease over or gone)
    rolling-back <-- park/resume --> rollback-interrupted
    rolling-back ------------------> rolled-back | rollback-incomplete (lease kept, ends now)
    active, interrupted, rollback-interrupted, rollback-incomplete
                 -- claimed by -off or the backstop --> ending -----> ended
    ending <-- park/resume --> ending-interrupted                 (-off again, recovery)

Every operation on an annex *claims* its row first, with one compare-and-set transition, and
only then calls AWS: a resume (``interrupted -> creating``), ``-off`` and the backstop
(``-> ending``), a lease change (``active -> extending``).  So two operations never act on one
annex at once; the loser sees the winner's state and says so.  *Parked* states are requests no
thread is driving (a crash or a shutdown left them); they resume in the direction they were
going.  *Live* rows are those for which AWS may hold something; a live row owns its (region,
name), so a name is free again only once ``ending`` has become ``ended``.  *Final* rows are
history: they never grant access to anything and never hide a live annex.

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
    EXTENDING = "extending"                        # a thread changes its lease end
    ENDING = "ending"                              # a thread tears it down (-off, backstop)
    ENDING_INTERRUPTED = "ending-interrupted"      # parked while being torn down
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
    S.INTERRUPTED: frozenset({S.CREATING, S.ROLLING_BACK, S.ENDING}),
    S.ROLLING_BACK: frozenset({S.ROLLED_BACK, S.ROLLBACK_INCOMPLETE, S.ROLLBACK_INTERRUPTED}),
    S.ROLLBACK_INTERRUPTED: frozenset({S.ROLLING_BACK, S.ENDING}),
    S.ACTIVE: frozenset({S.EXTENDING, S.ENDING}),
    S.EXTENDING: frozenset({S.ACTIVE}),             # done, failed, or released after a crash
    S.ENDING: frozenset({S.ENDED, S.ENDING_INTERRUPTED,
                         S.ACTIVE}),                # the backstop saw AWS's lease moved on
    S.ENDING_INTERRUPTED: frozenset({S.ENDING}),
    S.ROLLBACK_INCOMPLETE: frozenset({S.ENDING}),
    S.ROLLED_BACK: frozenset(),
    S.REFUSED: frozenset(),
    S.ENDED: frozenset(),
}

#: A crash, a shutdown or a failed call parks a request in the direction it was going ...
PARK = {S.CREATING: S.INTERRUPTED, S.ROLLING_BACK: S.ROLLBACK_INTERRUPTED,
        S.ENDING: S.ENDING_INTERRUPTED}
#: ... and resuming drives it on in that same direction.
RESUME = {parked: driving for driving, parked in PARK.items()}
#: What start-up makes of a row a thread of a crashed daemon was driving: a lease change
#: (each of its calls idempotent, the lease in force either way) is simply released.
AFTER_CRASH = {**PARK, S.EXTENDING: S.ACTIVE}

DRIVEN = frozenset(AFTER_CRASH)          # a thread of this daemon process is working on it
PARKED = frozenset(RESUME)               # nobody is working on it
UNFINISHED = DRIVEN | PARKED             # recovery looks at these at start-up
FINAL = frozenset(state for state, onward in TRANSITIONS.items() if not onward)
LIVE = frozenset(RequestState) - FINAL   # AWS may hold something; the row owns its name
#: Parked creates, which the owner's repeat of the create command resumes.
PARKED_CREATES = frozenset({S.INTERRUPTED, S.ROLLBACK_INTERRUPTED})
#: Live rows nobody is working on, which -off (and the backstop, once the lease is over)
#: may claim to end.
ENDABLE = frozenset(state for state in RequestState if S.ENDING in TRANSITIONS[state])


class IllegalTransition(RuntimeError):
    """A state change the lifecycle does not allow: a bug, never written to the journal."""


def check(current: RequestState | str, new: RequestState | str) -> RequestState:
    """Return ``new`` as a state if ``current -> new`` is allowed, else raise."""
    before, after = RequestState(current), RequestState(new)
    if after not in TRANSITIONS[before]:
        raise IllegalTransition(f"request state {before} -> {after} is not allowed")
    return after
