"""Running without a master: ``condor_annexd -daemonize``.

The command an admin (or an init script) runs must say whether the daemon came up: it forks,
the child detaches (python-daemon) and, once it serves -- socket bound, journal recovered --
or once it has failed, says so on a pipe.  The command waits for that word and exits 0, or
99 (don't retry: a configuration error) with the reason on stderr.  A daemon that dies
without a word (a crash) closes the pipe, and the command says where its log is.
"""
from __future__ import annotations

import os
import sys
from typing import Any, Callable

from annexd.config import knobs
from annexd.process.about import EXIT_NO_RESTART, EXIT_OK

_READY = "ready"
_FAILED = "failed "


class StartupReport:
    """The detached daemon's one message to the command that started it (none: no-op)."""

    def __init__(self, fd: int | None = None):
        self._fd = fd

    def ready(self) -> None:
        self._send(_READY)

    def failed(self, reason: str) -> None:
        self._send(_FAILED + reason)

    def _send(self, text: str) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.write(fd, text.encode("utf-8", "replace"))
        except OSError:  # the command was interrupted; the daemon goes on
            pass
        os.close(fd)


class StartFailed(Exception):
    """The daemon could not start (before or while detaching)."""


def daemonize(pidfile: str, signal_map: dict[int, Any],
              on_exit: Callable[[int], None] = sys.exit) -> StartupReport:
    """Detach; in the starting command, wait for the daemon's word and ``on_exit`` with the
    status.  Returns, in the daemon, the report to send once it serves or fails."""
    clear_stale_pidfile(pidfile)
    read_end, write_end = os.pipe()
    if os.fork():
        os.close(write_end)
        on_exit(_wait_for_word(read_end))
    os.close(read_end)
    report = StartupReport(write_end)
    try:
        _detach(pidfile, signal_map, write_end)
    except StartFailed as error:
        report.failed(str(error))
        os._exit(EXIT_NO_RESTART)
    return report


def _detach(pidfile: str, signal_map: dict[int, Any], keep_fd: int) -> None:
    import daemon
    import daemon.pidfile
    import lockfile

    context = daemon.DaemonContext(
        detach_process=True, umask=0o022, working_directory="/",
        pidfile=daemon.pidfile.TimeoutPIDLockFile(pidfile, acquire_timeout=0),
        signal_map=signal_map, files_preserve=[keep_fd],
        # Keep HTCondor's environment-derived config; no stdio once detached.
        stdin=None, stdout=None, stderr=None)
    try:
        context.open()
    except (lockfile.AlreadyLocked, lockfile.LockTimeout):
        raise StartFailed(f"another condor_annexd holds {pidfile}") from None


def _wait_for_word(read_end: int) -> int:
    chunks = []
    while chunk := os.read(read_end, 4096):
        chunks.append(chunk)
    os.close(read_end)
    word = b"".join(chunks).decode("utf-8", "replace")
    if word == _READY:
        return EXIT_OK
    if word.startswith(_FAILED):
        reason = word[len(_FAILED):]
    else:
        try:
            where = knobs.path("ANNEXD_LOG")
        except knobs.KnobError:
            where = "ANNEXD_LOG"
        reason = f"the daemon exited before it was ready; see {where}"
    print(f"condor_annexd: {reason}", file=sys.stderr)
    return EXIT_NO_RESTART


def clear_stale_pidfile(path: str) -> None:
    """Remove a dead daemon's pid file; StartFailed if its process is alive."""
    try:
        with open(path, encoding="ascii") as handle:
            pid = int(handle.read().strip() or 0)
    except (FileNotFoundError, ValueError):
        pid = 0
    if pid > 0:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            pass
        except PermissionError:
            raise StartFailed(f"{path}: process {pid} is alive") from None
        else:
            raise StartFailed(f"another condor_annexd (pid {pid}) is running") from None
    if os.path.exists(path):
        os.unlink(path)
