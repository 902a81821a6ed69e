"""Living under ``condor_master``: readiness and keep-alive reports.

The master passes ``CONDOR_INHERIT`` (its pid and address) to the daemons it starts.  When it
is present we tell it once that we are ready (after recovery) and then that we are alive,
every ``max(1, T/3 - 30)`` seconds like a DaemonCore daemon, where ``T`` is
``ANNEXD_NOT_RESPONDING_TIMEOUT`` or ``NOT_RESPONDING_TIMEOUT``: a master that hears nothing
for ``T`` seconds kills the daemon as hung.  Standalone, there is no master and nothing is sent.
Both messages go out on a background thread: a slow master must never stall the daemon.
"""
from __future__ import annotations

import logging
import os
import threading

import htcondor2

from annexd.config import knobs

log = logging.getLogger("annexd.process.master")


def not_responding_timeout() -> int:
    return knobs.positive_int("ANNEXD_NOT_RESPONDING_TIMEOUT", default=knobs.positive_int(
        "NOT_RESPONDING_TIMEOUT", default=3600))


def alive_period(timeout: int) -> int:
    """DaemonCore's keep-alive period for a given not-responding timeout."""
    return max(1, timeout // 3 - 30)


class MasterLink:
    def __init__(self) -> None:
        self.enabled = bool(os.environ.get("CONDOR_INHERIT"))

    def _background(self, name: str, work) -> None:
        threading.Thread(target=work, name=name, daemon=True).start()

    def ready(self) -> None:
        if not self.enabled:
            return

        def send() -> None:
            try:
                htcondor2.set_ready_state("Ready")
                log.info("told condor_master we are ready")
            except Exception as error:  # the master may be gone or busy; keep serving
                log.warning("could not send the ready message to condor_master: %s", error)
        self._background("master-ready", send)

    def keep_alive(self, stop: threading.Event) -> None:
        if not self.enabled:
            return

        def loop() -> None:
            while True:
                timeout = not_responding_timeout()
                try:
                    htcondor2.send_alive(timeout=timeout)
                except Exception as error:
                    log.warning("could not send keep-alive to condor_master: %s", error)
                if stop.wait(alive_period(timeout)):
                    return
        self._background("master-alive", loop)
