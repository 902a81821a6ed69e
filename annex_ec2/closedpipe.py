"""A reader that stops reading is not an error: ``condor_annex -help | head -1``.

coreutils programs die of SIGPIPE when their output is closed early, silently, and the shell
sees status 141; a Python program instead raises :class:`BrokenPipeError` and prints a
traceback.  :func:`quiet_when_output_closes` wraps a program's ``main`` so that it ends the
way coreutils do.  Only a closed *standard output* is treated so: a broken pipe anywhere else
(the daemon's socket, say) is still an error for the program to report.

It lives in the instance-side package, beside :mod:`annex_ec2.backoff`, because
``condor_annex_ec2`` may import nothing of the daemon's packages and every program uses it.
Standard library only, Python 3.9 or newer.
"""
from __future__ import annotations

import functools
import os
import select
import signal
import sys
from typing import Callable, TypeVar

Main = TypeVar("Main", bound=Callable[..., "int | None"])


def _stdout_has_no_reader() -> bool:
    """Whether the reading end of standard output is gone (poll reports an error on it)."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        return False
    poller = select.poll()
    poller.register(fd, 0)
    return any(events & (select.POLLERR | select.POLLHUP) for _, events in poller.poll(0))


def _die_of_sigpipe() -> None:
    """End as a coreutils program does: by SIGPIPE, with nothing said."""
    devnull = os.open(os.devnull, os.O_WRONLY)  # the interpreter's last flush must not fail
    os.dup2(devnull, sys.stdout.fileno())
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGPIPE)


def _flush_or_die() -> None:
    """Flush standard output, the last of it, while a failure can still be told apart."""
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        if not _stdout_has_no_reader():
            raise
        _die_of_sigpipe()


def quiet_when_output_closes(main: Main) -> Main:
    """``main``, ending by SIGPIPE, silently, when its standard output is closed early
    (also when ``main`` exits through :class:`SystemExit`, as argparse's ``-help`` does)."""
    @functools.wraps(main)
    def run(*args, **kwargs):
        try:
            status = main(*args, **kwargs)
        except SystemExit:
            _flush_or_die()
            raise
        except BrokenPipeError:
            if not _stdout_has_no_reader():
                raise
            _die_of_sigpipe()
        _flush_or_die()
        return status
    return run  # type: ignore[return-value]
