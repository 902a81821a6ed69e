"""``condor_annexd``: the annex daemon's entry point.

Runs in the foreground by default, as ``condor_master`` expects of the daemons it starts;
``-daemonize`` detaches (python-daemon) for running without a master.  Logs through HTCondor's
own logging (``ANNEXD_LOG``, ``ANNEXD_DEBUG``).  Start-up order matters: bind the socket (so
clients queue instead of failing), recover unfinished requests from the journal, tell the
master we are ready, then serve.

Signals: SIGTERM/SIGINT stop accepting, let each request in flight finish the step it is in
and persist, then exit 0; SIGQUIT exits 0 at once (the journal makes that safe); SIGHUP
re-reads the configuration.  Exit status: 0 after a requested stop, 99 for a configuration
error a restart cannot fix (the master then leaves the daemon off), 44 when the log cannot
be written.
"""
from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from types import SimpleNamespace
from typing import Any

import htcondor2

from condor_annex.manual import help_text
from condor_annex.options import UsageError, parse

from . import about
from . import identity as daemon_identity
from . import knobs, memory
from .about import EXIT_LOG_ERROR, EXIT_NO_RESTART, EXIT_OK
from .journal import Journal
from .master import MasterLink
from .server import AnnexServer, SocketSetupError
from .service import AnnexService
from .version import version_text

log = logging.getLogger("annexd")


class DprintfHandler(logging.Handler):
    """Send Python log records to HTCondor's dprintf (the ANNEXD_LOG file)."""

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.WARNING:
            level = htcondor2.LogLevel.Error
        elif record.levelno <= logging.DEBUG:
            level = htcondor2.LogLevel.FullDebug
        else:
            level = htcondor2.LogLevel.Always
        try:
            htcondor2.log(level, self.format(record))
        except Exception:
            self.handleError(record)


class Fatal(Exception):
    """Start-up cannot continue; carries the exit status."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def _parse_args(argv: list[str] | None) -> SimpleNamespace:
    """The command line, parsed with the flag table condor_annexd(8) and -help are made of."""
    values, positionals = parse(sys.argv[1:] if argv is None else argv, about.OPTIONS)
    if positionals:
        raise UsageError(f"unexpected argument {positionals[0]!r}")
    unset = {False: None, True: False}  # a flag with a value: None; a switch: False
    return SimpleNamespace(**{option.dest: values.get(option.dest, unset[option.metavar is None])
                              for option in about.OPTIONS})


def _check_log() -> None:
    """ANNEXD_LOG, by default $(LOG)/AnnexdLog, must be writable."""
    try:
        log_path = knobs.path("ANNEXD_LOG")
    except knobs.KnobError as error:
        raise Fatal(EXIT_LOG_ERROR, str(error)) from None
    if knobs.raw("ANNEXD_LOG") is None:  # HTCondor's logging reads the knob itself
        knobs.set_value("ANNEXD_LOG", log_path)
    directory = os.path.dirname(os.path.abspath(log_path))
    if not os.access(directory, os.W_OK):
        raise Fatal(EXIT_LOG_ERROR, f"cannot write the log in {directory}")


def _enable_logging(to_terminal: bool) -> None:
    """Start HTCondor logging; only after daemonizing (DaemonContext closes every fd)."""
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


class Lifecycle:
    """Signal handling for one run: flags and hand-offs only, never work in the handler."""

    def __init__(self) -> None:
        self.server: AnnexServer | None = None
        self.service: AnnexService | None = None
        self.stop = threading.Event()

    def terminate(self, signum: int, _frame: Any = None) -> None:
        log.info("got %s: finishing the step each request is in, then exiting",
                 signal.Signals(signum).name)
        self.stop.set()
        if self.service is not None:
            self.service.stopping.set()
        if self.server is not None:
            threading.Thread(target=self.server.shutdown, daemon=True).start()

    def quit_fast(self, _signum: int, _frame: Any = None) -> None:
        log.info("got SIGQUIT: exiting now; the journal lets the next start resume")
        os._exit(EXIT_OK)

    def reconfig(self, _signum: int, _frame: Any = None) -> None:
        """Re-read the configuration on a thread of its own (it may ask STS who we are)."""
        threading.Thread(target=self._reconfig, name="reconfig", daemon=True).start()

    def _reconfig(self) -> None:
        try:
            knobs.reload()
            if self.service is not None:
                settings = knobs.DaemonSettings.load()
                found = daemon_identity.resolve(settings, self.service.account_of)
                self.service.reconfigure(settings, found)
                log.info("condor_annexd's own AWS identity: %s", found.describe())
            log.info("configuration re-read")
        except knobs.KnobError as error:
            log.error("configuration error, keeping the old settings: %s", error)

    def signal_map(self) -> dict[int, Any]:
        return {signal.SIGTERM: self.terminate, signal.SIGINT: self.terminate,
                signal.SIGQUIT: self.quit_fast, signal.SIGHUP: self.reconfig}

    def install(self) -> None:
        for signum, handler in self.signal_map().items():
            signal.signal(signum, handler)


def _load_settings() -> knobs.DaemonSettings:
    """The settings; unsafe daemon key files are a configuration error too."""
    try:
        settings = knobs.DaemonSettings.load()
        if settings.identity_files is not None:
            daemon_identity.from_key_files(settings.identity_files)
        return settings
    except knobs.KnobError as error:
        raise Fatal(EXIT_NO_RESTART, f"configuration error: {error}") from None


def _resolve_identity(service: AnnexService, settings: knobs.DaemonSettings) -> None:
    try:
        found = daemon_identity.resolve(settings, service.account_of)
    except knobs.KnobError as error:
        raise Fatal(EXIT_NO_RESTART, f"configuration error: {error}") from None
    service.reconfigure(settings, found)
    log.info("condor_annexd's own AWS identity: %s", found.describe())


def _daemonize(pidfile: str | None, lifecycle: Lifecycle) -> None:
    """Detach with python-daemon; refuses to start twice, clears a dead daemon's pid file."""
    import daemon
    import daemon.pidfile
    import lockfile

    path = pidfile or knobs.path("ANNEXD_PIDFILE")
    _clear_stale_pidfile(path)
    context = daemon.DaemonContext(
        detach_process=True, umask=0o022, working_directory="/",
        pidfile=daemon.pidfile.TimeoutPIDLockFile(path, acquire_timeout=0),
        signal_map=lifecycle.signal_map(),
        # Keep HTCondor's environment-derived config; no stdio once detached.
        stdin=None, stdout=None, stderr=None)
    try:
        context.open()
    except (lockfile.AlreadyLocked, lockfile.LockTimeout):
        raise Fatal(EXIT_NO_RESTART, f"another condor_annexd holds {path}") from None


def _clear_stale_pidfile(path: str) -> None:
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
            raise Fatal(EXIT_NO_RESTART, f"{path}: process {pid} is alive") from None
        else:
            raise Fatal(EXIT_NO_RESTART, f"another condor_annexd (pid {pid}) is running") \
                from None
    if os.path.exists(path):
        os.unlink(path)


def _start_lease_backstop(service: AnnexService, stop: threading.Event) -> None:
    """Every ANNEXD_LEASE_CHECK_INTERVAL seconds, end annexes whose lease is over."""
    def loop() -> None:
        while not stop.wait(service.settings.lease_check_interval):
            service.enforce_leases()
    threading.Thread(target=loop, name="lease-backstop", daemon=True).start()


def _serve(lifecycle: Lifecycle) -> int:
    memory.limit_arenas()  # before any thread: see annexd.memory
    settings = _load_settings()
    try:
        journal = Journal(settings.journal_path)
        service = AnnexService(settings, journal)
        server = AnnexServer(settings.socket_path, service, group=settings.socket_group,
                             max_clients=settings.max_clients,
                             client_timeout=settings.client_timeout_seconds,
                             max_clients_per_user=settings.max_clients_per_user)
    except (SocketSetupError, OSError) as error:
        raise Fatal(EXIT_NO_RESTART, f"cannot start: {error}") from None
    lifecycle.service, lifecycle.server = service, server
    if lifecycle.stop.is_set():
        service.stopping.set()
    master = MasterLink()
    try:
        log.info("condor_annexd starting (region %s, journal %s)", settings.region,
                 settings.journal_path)
        _resolve_identity(service, settings)
        log.info("recovering unfinished requests")
        service.recover()
        master.ready()
        master.keep_alive(lifecycle.stop)
        _start_lease_backstop(service, lifecycle.stop)
        log.info("condor_annexd ready")
        server.serve_forever(poll_interval=0.1)  # a stop request is noticed within 0.1 s
    finally:
        lifecycle.stop.set()
        server.server_close()
        journal.close()
    log.info("condor_annexd exiting with status 0")
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    try:
        args = _parse_args(argv)
    except UsageError as error:  # under a master: ANNEXD_ARGS is configuration, don't retry
        print(f"condor_annexd: error: {error}\nRun 'condor_annexd -help' for usage.",
              file=sys.stderr)
        return EXIT_NO_RESTART
    if args.help or args.version:
        print(help_text(about.PAGE) if args.help else version_text("condor_annexd"))
        return EXIT_OK
    htcondor2.set_subsystem("ANNEXD", htcondor2.SubsystemType.Daemon)
    lifecycle = Lifecycle()
    try:
        _check_log()
        if args.daemonize:
            _load_settings()  # report configuration errors before detaching
            _daemonize(args.pidfile, lifecycle)
        else:
            lifecycle.install()
        _enable_logging(args.t and not args.daemonize)
        return _serve(lifecycle)
    except Fatal as fatal:
        if logging.getLogger().handlers:
            log.error("%s", fatal)
        print(f"condor_annexd: {fatal}", file=sys.stderr)
        return fatal.status


if __name__ == "__main__":
    sys.exit(main())
