"""The one way the demo and the tests wait for something: poll, and fail loudly.

A wait that runs out raises with what it was waiting for and what it last saw, instead of
falling through to an assertion that no longer says why.  Nobody sleeps a guessed time
"to let something happen".
"""
from __future__ import annotations

import time
from typing import Callable, TypeVar

T = TypeVar("T")


class WaitTimedOut(AssertionError):
    """The condition never held; the message says what was awaited and what was seen."""


def wait_for(probe: Callable[[], T], what: str, *, until: Callable[[T], bool] = bool,
             timeout: float = 30.0, interval: float = 0.05) -> T:
    """Call ``probe`` until ``until(result)``; return that result, or raise WaitTimedOut."""
    deadline = time.monotonic() + timeout
    while True:
        seen = probe()
        if until(seen):
            return seen
        if time.monotonic() >= deadline:
            raise WaitTimedOut(f"waited {timeout:g} s for {what}; last saw {seen!r:.500}")
        time.sleep(interval)


def log_contains(path: str, text: str) -> Callable[[], bool]:
    """A probe: does the file at ``path`` contain ``text`` yet?"""
    def probe() -> bool:
        try:
            with open(path, encoding="utf-8") as handle:
                return text in handle.read()
        except FileNotFoundError:
            return False
    return probe
