"""Test-only crash points: die like ``kill -9`` right before or after a chosen AWS call.

Set ``ANNEXD_TEST_CRASH_AT="<operation>:<before|after>"`` in the daemon's environment, e.g.
``EC2 RequestSpotFleet:after``; the operation names are the ones AnnexAws uses in its error
messages.  Unset (as in production), this costs one dictionary lookup per AWS call.  The
crash-recovery tests use it to prove exactly-once behaviour at every point of the sequence.
"""
from __future__ import annotations

import os
import signal

ENV = "ANNEXD_TEST_CRASH_AT"


def crash_point(operation: str, when: str) -> None:
    if os.environ.get(ENV) == f"{operation}:{when}":
        os.kill(os.getpid(), signal.SIGKILL)
