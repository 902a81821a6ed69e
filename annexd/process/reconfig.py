"""SIGHUP: what a running daemon applies at once, and what waits for a restart.

Applied at once: the log (ANNEXD_LOG, ANNEXD_DEBUG), every setting requests read (each request
keeps the settings it started with), the daemon's own AWS identity, the socket's access --
ANNEXD_SOCKET_GROUP and with it the socket's mode -- and the client limits.  A new socket path
or journal cannot be swapped under requests in flight; those are logged as waiting for a
restart.
"""
from __future__ import annotations

import logging

from annexd.config import knobs

log = logging.getLogger("annexd.process.reconfig")

#: Knobs that take effect only when the daemon starts, by DaemonSettings field.
RESTART_ONLY = {"ANNEXD_SOCKET": "socket_path", "ANNEXD_JOURNAL": "journal_path"}


def snapshot(settings: knobs.DaemonSettings) -> dict[str, str]:
    """The restart-only values in effect (taken at start, compared on each SIGHUP)."""
    return {knob: getattr(settings, field) for knob, field in RESTART_ONLY.items()}


def log_restart_needed(running: dict[str, str], settings: knobs.DaemonSettings) -> None:
    for knob, value in snapshot(settings).items():
        if value != running[knob]:
            log.warning("%s changed (%s -> %s): takes effect when condor_annexd restarts",
                        knob, running[knob], value)
