"""Test-only crash points: die like ``kill -9`` right before or after a chosen AWS call.

Set ``ANNEXD_TEST_CRASH_AT="<operation>:<before|after>"`` in the daemon's environment, e.g.
``EC2 RequestSpotFleet:after``; the operation names are the ones AnnexAws uses in its error
messages.  ``<operation>:<before|after>:<N>`` dies at the N-th such call of the process only
(``EC2 RequestSpotFleet:before:2``: a second launch, the first one made).  Unset (as in
production), this costs one dictionary lookup per AWS call.  The crash-recovery tests use it
to prove exactly-once behaviour at every point of the sequence.
"""
from __future__ import annotations

import os
import signal
import threading

ENV = "ANNEXD_TEST_CRASH_AT"
_SEEN: dict[str, int] = {}
_LOCK = threading.Lock()


def crash_point(operation: str, when: str) -> None:
    wanted = os.environ.get(ENV)
    if not wanted:
        return
    point = f"{operation}:{when}"
    if wanted == point:
        os.kill(os.getpid(), signal.SIGKILL)
    named, _, nth = wanted.rpartition(":")
    if named == point and nth.isdigit():
        with _LOCK:
            _SEEN[point] = _SEEN.get(point, 0) + 1
            if _SEEN[point] == int(nth):
                os.kill(os.getpid(), signal.SIGKILL)
