"""Capped exponential backoff with full jitter: the one retry schedule of condor-annexd.

The daemon's create steps, ``condor_annex`` waiting on a busy daemon, and the instance
bootstrap all wait ``uniform(0, min(cap, base * 2**attempt))`` between tries (AWS's "full
jitter"), so that many clients retrying at once spread out instead of arriving together.

It lives here, in the instance-side package, because ``condor_annex_ec2`` runs on an annex
image's own Python with nothing but the standard library and boto3, so nothing under
``annex_ec2`` may import the daemon's packages; the daemon and the client import it from here.
Standard library only, Python 3.9 or newer.
"""
from __future__ import annotations

import random
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    base: float = 1.0
    cap: float = 30.0

    def delay(self, attempt: int) -> float:
        """How long to wait after failed try number ``attempt`` (0 for the first)."""
        return random.uniform(0, min(self.cap, self.base * 2 ** min(attempt, 62)))


class Deadline:
    """A time budget: whether a wait still fits in it."""

    def __init__(self, seconds: float):
        self.at = time.monotonic() + seconds

    def allows(self, delay: float) -> bool:
        return time.monotonic() + delay <= self.at
