"""``condor_annexd``: the annex daemon's entry point.

Runs in the foreground, as ``condor_master`` expects of the daemons it starts.  Logs through
HTCondor's own logging (``ANNEXD_LOG``, ``ANNEXD_DEBUG``).  Exit status follows the master's
conventions: 0 after a requested stop, 99 for a configuration error that a restart cannot fix
(the master then leaves the daemon off), 44 when the log cannot be written.
"""
from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading

import htcondor2

from . import knobs
from .journal import Journal
from .server import AnnexServer, SocketSetupError
from .service import AnnexService

EXIT_OK = 0
EXIT_LOG_ERROR = 44
EXIT_NO_RESTART = 99

log = logging.getLogger("annexd")


class DprintfHandler(logging.Handler):
    """Send Python log records to HTCondor's dprintf (the ANNEXD_LOG file)."""

    LEVELS = {logging.DEBUG: htcondor2.LogLevel.FullDebug}

    def emit(self, record: logging.LogRecord) -> None:
        level = self.LEVELS.get(record.levelno, htcondor2.LogLevel.Always)
        if record.levelno >= logging.WARNING:
            level = htcondor2.LogLevel.Error
        try:
            htcondor2.log(level, self.format(record))
        except Exception:
            self.handleError(record)


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="condor_annexd", prefix_chars="-",
        description="HTCondor annex daemon: creates leased AWS EC2 annexes for local users.")
    parser.add_argument("-f", action="store_true",
                        help="run in the foreground (the default; accepted for condor_master)")
    parser.add_argument("-t", action="store_true", help="also log to the terminal (stderr)")
    return parser.parse_args(argv)


def _setup_logging(to_terminal: bool) -> int | None:
    """Start HTCondor logging; returns an exit status if the log cannot be written."""
    htcondor2.set_subsystem("ANNEXD", htcondor2.SubsystemType.Daemon)
    log_path = knobs.raw("ANNEXD_LOG")
    if log_path is None:
        print("condor_annexd: ANNEXD_LOG is not set", file=sys.stderr)
        return EXIT_LOG_ERROR
    directory = os.path.dirname(os.path.abspath(log_path))
    if not os.access(directory, os.W_OK):
        print(f"condor_annexd: cannot write the log in {directory}", file=sys.stderr)
        return EXIT_LOG_ERROR
    htcondor2.enable_log()
    root = logging.getLogger()
    root.setLevel(logging.DEBUG)
    root.addHandler(DprintfHandler())
    if to_terminal:
        terminal = logging.StreamHandler(sys.stderr)
        terminal.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        root.addHandler(terminal)
    # botocore logs request bodies at DEBUG; keep it quiet so nothing secret-adjacent leaks.
    for noisy in ("botocore", "boto3", "urllib3", "s3transfer"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return None


def _install_signals(server: AnnexServer, service: AnnexService) -> None:
    def stop(signum: int, _frame: object) -> None:
        log.info("got %s: finishing requests in flight, then exiting",
                 signal.Signals(signum).name)
        threading.Thread(target=server.shutdown, daemon=True).start()

    def quit_fast(_signum: int, _frame: object) -> None:
        log.info("got SIGQUIT: exiting now")
        os._exit(EXIT_OK)

    def reconfig(_signum: int, _frame: object) -> None:
        try:
            knobs.reload()
            service.reconfigure(knobs.DaemonSettings.load())
            log.info("configuration re-read")
        except knobs.KnobError as error:
            log.error("configuration error, keeping the old settings: %s", error)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGQUIT, quit_fast)
    signal.signal(signal.SIGHUP, reconfig)


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    status = _setup_logging(args.t)
    if status is not None:
        return status
    try:
        settings = knobs.DaemonSettings.load()
        journal = Journal(settings.journal_path)
        service = AnnexService(settings, journal)
        server = AnnexServer(settings.socket_path, service)
    except (knobs.KnobError, SocketSetupError, OSError) as error:
        log.error("cannot start: %s", error)
        return EXIT_NO_RESTART
    _install_signals(server, service)
    log.info("condor_annexd ready (region %s, journal %s)", settings.region,
             settings.journal_path)
    try:
        server.serve_forever()
    finally:
        server.server_close()
        journal.close()
    log.info("condor_annexd exiting with status 0")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
