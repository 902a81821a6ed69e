"""``condor_annexd``: the annex daemon's entry point.

Runs in the foreground by default, as ``condor_master`` expects of the daemons it starts;
``-daemonize`` detaches (python-daemon) for running without a master, and returns once the
daemon serves (0) or has failed (99, the reason on stderr).  Logs through HTCondor's
own logging (``ANNEXD_LOG``, ``ANNEXD_DEBUG``).  Start-up order matters: bind the socket (so
clients queue instead of failing), recover unfinished requests from the journal, tell the
master we are ready, then serve.

Signals: SIGTERM/SIGINT stop accepting, let each request in flight finish the step it is in
and persist, then exit 0; SIGQUIT exits 0 at once (the journal makes that safe); SIGHUP
re-reads the configuration and applies what it can (``annexd.process.reconfig``).  Exit status: 0
after a requested stop, 99 for any failure to start, which a restart would only repeat (a
configuration error, a journal that cannot be opened, an unsafe socket; the master then leaves
the daemon off), with one line naming the cause in the log and on stderr; 44 when the log
cannot be written.

The log is the daemon's user's alone (mode 0600): annex names, owners, AWS account IDs and
ARNs, and AWS's error texts are no other local user's business.  HTCondor's logging opens it
(and every file it rotates it into) with mode 0644 less the umask, so the daemon makes the log
private before HTCondor opens it, at start and on every SIGHUP, and from then on runs with
umask 077 (the socket and its directory, which other users must reach, get their modes
explicitly).
"""
from __future__ import annotations

import atexit
import logging
import os
import signal
import sqlite3
import stat
import sys
import threading
from types import SimpleNamespace
from typing import Any, Callable, NoReturn

import htcondor2

from annexd.usage.manpage import help_text
from annexd.usage.options import UsageError, parse

from annexd.commands import renew
from annexd.process import about
from annexd.aws import identity as daemon_identity
from annexd.config import knobs
from annexd.process import memory
from annexd.process import privileges
from annexd.process import reconfig
from annexd.process import standalone
from annexd.process.about import EXIT_LOG_ERROR, EXIT_NO_RESTART, EXIT_OK
from annexd.state.journal import Journal
from annexd.process.master import MasterLink
from annexd.rpc.server import AnnexServer, SocketSetupError
from annexd.rpc.service import AnnexService
from annexd.process.version import version_text
from annex_ec2.closedpipe import quiet_when_output_closes

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


#: The log's mode, and the umask the daemon runs with once it logs, so that the files
#: HTCondor's logging creates on its own (rotation: ``AnnexdLog.old`` and a new log, at any
#: line) are too.  What others must reach is given its mode explicitly (the socket and its
#: directory: annexd.rpc.server).
LOG_MODE = 0o600
PRIVATE_UMASK = 0o077


def _private_log() -> None:
    """Make ANNEXD_LOG, and the ``.old`` file HTCondor rotates it into, readable by the
    daemon's user only: created with mode 0600 if missing, a wider one (an earlier release's
    0644) narrowed.  A log the daemon cannot make private is an error (exit 44 at start)."""
    path = knobs.path("ANNEXD_LOG")
    for name, flags in ((path, os.O_WRONLY | os.O_APPEND | os.O_CREAT),
                        (f"{path}.old", os.O_RDONLY)):
        try:
            fd = os.open(name, flags | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY, LOG_MODE)
        except FileNotFoundError:
            continue
        except OSError as error:
            raise Fatal(EXIT_LOG_ERROR, f"cannot open the log {name}: {error.strerror}") \
                from None
        try:
            mode = os.fstat(fd).st_mode
            if stat.S_ISREG(mode) and stat.S_IMODE(mode) & ~LOG_MODE:
                try:
                    os.fchmod(fd, LOG_MODE)
                except OSError as error:
                    raise Fatal(EXIT_LOG_ERROR, f"the log {name} is readable by others (mode "
                                f"{stat.S_IMODE(mode):04o}) and cannot be made private: "
                                f"{error.strerror}") from None
        finally:
            os.close(fd)


def _enable_logging(to_terminal: bool) -> None:
    """Start HTCondor logging; only after daemonizing (DaemonContext closes every fd)."""
    os.umask(PRIVATE_UMASK)
    _private_log()
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


def _reopen_log() -> None:
    """SIGHUP: let HTCondor's logging re-read ANNEXD_LOG and ANNEXD_DEBUG.  Every record goes
    through DprintfHandler, whose lock is held meanwhile, so no thread logs mid-change."""
    _check_log()  # the default path again (the reload dropped it), and writable
    _private_log()  # a log moved away (logrotate) or a new ANNEXD_LOG: 0600 from the start
    handlers = [h for h in logging.getLogger().handlers if isinstance(h, DprintfHandler)]
    for handler in handlers:
        handler.acquire()
    try:
        htcondor2.enable_log()
    finally:
        for handler in handlers:
            handler.release()


class Lifecycle:
    """Signal handling for one run: flags and hand-offs only, never work in the handler."""

    def __init__(self) -> None:
        self.server: AnnexServer | None = None
        self.service: AnnexService | None = None
        self.stop = threading.Event()
        #: -daemonize: tells the command that started us that we serve, or why not.
        self.report = standalone.StartupReport()
        #: Restart-only knobs as they were at start (see annexd.process.reconfig).
        self.started_with: dict[str, str] = {}
        #: Set once the daemon serves: a failure before that is a failure to start (exit 99).
        self.serving = False

    def terminate(self, signum: int, _frame: Any = None) -> None:
        log.info("got %s: finishing the step each request is in, then exiting",
                 signal.Signals(signum).name)
        self.stop.set()
        if self.service is not None:
            self.service.stopping.set()
        if self.server is not None:
            threading.Thread(target=self.server.stop_serving, daemon=True).start()

    def quit_fast(self, _signum: int, _frame: Any = None) -> None:
        log.info("got SIGQUIT: exiting now; the journal lets the next start resume")
        os._exit(EXIT_OK)

    def reconfig(self, _signum: int, _frame: Any = None) -> None:
        """Re-read the configuration on a thread of its own (it may ask STS who we are)."""
        threading.Thread(target=self._reconfig, name="reconfig", daemon=True).start()

    def _reconfig(self) -> None:
        try:
            knobs.reload()
            _reopen_log()
            if self.service is not None and self.server is not None:
                settings = knobs.DaemonSettings.load()
                with privileges.as_root():  # the socket's group and mode
                    self.server.reconfigure(
                        group=settings.socket_group, max_clients=settings.max_clients,
                        client_timeout=settings.client_timeout_seconds,
                        max_clients_per_user=settings.max_clients_per_user)
                found = daemon_identity.resolve(settings, self.service.account_of)
                self.service.reconfigure(settings, found)
                log.info("condor_annexd's own AWS identity: %s", found.describe())
                reconfig.log_restart_needed(self.started_with, settings)
            log.info("configuration re-read")
        except (knobs.KnobError, SocketSetupError, Fatal) as error:
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


class Passes:
    """The daemon's periodic passes -- the lease backstop, the auto annexes, the token renewal
    -- each on a thread of its own.

    A stop is a stop between annexes, as it is between steps for a request: each pass looks
    at ``service.stopping`` before it takes the next annex, and the daemon waits for the
    annex each pass is on before it closes the journal and exits.  Abandoned, a pass was cut
    off mid-call (moto saw a request's headers and then no body) and left its annex
    ``ending`` for the next start.  The threads are still daemon threads, so that SIGQUIT
    (``os._exit``) never waits for them.
    """

    def __init__(self, stop: threading.Event) -> None:
        self.stop = stop
        self.threads: list[threading.Thread] = []

    def every(self, name: str, interval: Callable[[], float], work: Callable[[], Any]) -> None:
        """Run ``work`` every ``interval()`` seconds until the stop."""
        def loop() -> None:
            while not self.stop.wait(interval()):
                work()
        thread = threading.Thread(target=loop, name=name, daemon=True)
        thread.start()
        self.threads.append(thread)

    def join(self) -> None:
        """Wait for each pass to finish the annex it is on (call after the stop); a pass
        still busy after a moment is named in the log, so a slow stop says why."""
        for thread in self.threads:
            thread.join(timeout=0.2)
            if thread.is_alive():
                log.info("stopping: waiting for the %s pass to finish the annex it is on",
                         thread.name)
                thread.join()


def _start_passes(service: AnnexService, stop: threading.Event) -> Passes:
    passes = Passes(stop)
    # Every ANNEXD_LEASE_CHECK_INTERVAL seconds, end annexes whose lease is over.
    passes.every("lease-backstop", lambda: service.settings.lease_check_interval,
                 service.enforce_leases)
    # Every ANNEX_DEMAND_INTERVAL seconds, size the auto annexes (annexd.commands.auto).
    passes.every("auto-annexes", lambda: service.settings.demand_interval, service.steer_auto)
    # Renew live annexes' tokens at half their life (annexd.commands.renew), looking at least
    # eight times per token life so that a renewal is never late by more than an eighth.
    passes.every("token-renewal", lambda: renew.pass_interval(service.settings),
                 service.renew_tokens)
    return passes


def _open(settings: knobs.DaemonSettings) -> tuple[Journal, AnnexService, AnnexServer]:
    """The journal (brought up to date: see annexd.state.upgrade), the service and the socket."""
    try:
        journal = Journal(settings.journal_path)
    except Exception as error:  # sqlite3.Error, OSError, or an upgrade's surprise
        cause = getattr(error, "strerror", None) or (
            error if isinstance(error, (sqlite3.Error, OSError))
            else f"{type(error).__name__}: {error}")
        raise Fatal(EXIT_NO_RESTART,
                    f"cannot open the journal {settings.journal_path}: {cause}") from None
    try:
        service = AnnexService(settings, journal)
        server = AnnexServer(settings.socket_path, service, group=settings.socket_group,
                             max_clients=settings.max_clients,
                             client_timeout=settings.client_timeout_seconds,
                             max_clients_per_user=settings.max_clients_per_user)
    except (SocketSetupError, OSError) as error:
        journal.close()
        raise Fatal(EXIT_NO_RESTART, f"cannot start: {error}") from None
    return journal, service, server


def _plan_user() -> None:
    """Whom to run as once the socket is made (annexd.process.privileges)."""
    try:
        privileges.plan()
    except privileges.PrivilegeError as error:
        raise Fatal(EXIT_NO_RESTART, f"configuration error: {error}") from None


def _drop_root(settings: knobs.DaemonSettings) -> None:
    """Started as root: from here on, run as the condor user (CONDOR_IDS), owning the
    journal, the log and the socket it keeps using."""
    ids = privileges.planned()
    if ids is None:
        if os.geteuid() == 0:
            log.warning("running as root: CONDOR_IDS is not set and there is no condor "
                        "account to run as (HTCondor's own daemons refuse to start so)")
        return
    log_path = knobs.path("ANNEXD_LOG")
    journal = settings.journal_path
    directories = {"ANNEXD_JOURNAL": os.path.dirname(os.path.abspath(journal)),
                   "ANNEXD_LOG": os.path.dirname(os.path.abspath(log_path)),
                   "ANNEXD_SOCKET": os.path.dirname(os.path.abspath(settings.socket_path))}
    files = [journal, f"{journal}-wal", f"{journal}-shm", log_path, f"{log_path}.old",
             settings.socket_path]
    code = tuple(os.path.dirname(module.__file__) for module in (os, htcondor2, knobs))
    try:
        privileges.drop(ids, directories, files, code)
    except (privileges.PrivilegeError, OSError) as error:
        raise Fatal(EXIT_NO_RESTART, f"cannot run as the condor user: {error}") from None


def _serve(lifecycle: Lifecycle) -> int:
    memory.limit_arenas()  # before any thread: see annexd.process.memory
    settings = _load_settings()
    journal, service, server = _open(settings)
    _drop_root(settings)
    lifecycle.service, lifecycle.server = service, server
    lifecycle.started_with = reconfig.snapshot(settings)
    if lifecycle.stop.is_set():
        service.stopping.set()
    master = MasterLink()
    passes: Passes | None = None
    try:
        log.info("condor_annexd starting (region %s, journal %s)", settings.region,
                 settings.journal_path)
        _resolve_identity(service, settings)
        log.info("recovering unfinished requests")
        service.recover()
        master.ready()
        master.keep_alive(lifecycle.stop)
        passes = _start_passes(service, lifecycle.stop)
        log.info("condor_annexd ready")
        lifecycle.report.ready()
        lifecycle.serving = True
        server.serve_forever(poll_interval=0.1)  # a stop wakes it (AnnexServer.stop_serving)
    finally:
        lifecycle.stop.set()
        service.stopping.set()
        server.server_close()  # waits for every request's thread
        if passes is not None:
            passes.join()
        journal.close()
    log.info("condor_annexd exiting with status 0")
    return EXIT_OK


@quiet_when_output_closes
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
        _plan_user()
        _check_log()
        if args.daemonize:
            _load_settings()  # report configuration errors before detaching
            try:
                lifecycle.report = standalone.daemonize(
                    args.pidfile or knobs.path("ANNEXD_PIDFILE"), lifecycle.signal_map())
            except standalone.StartFailed as error:
                raise Fatal(EXIT_NO_RESTART, str(error)) from None
        else:
            lifecycle.install()
        _enable_logging(args.t and not args.daemonize)
        _exit_now(_serve(lifecycle))
    except Fatal as fatal:
        return _failed(fatal, lifecycle)
    except Exception as error:
        if lifecycle.serving:
            raise
        # Anything else before serving would fail again on a restart (same configuration,
        # same journal): exit 99, so that the master leaves the daemon off, and say why.
        log.debug("start-up failed", exc_info=True)
        return _failed(Fatal(EXIT_NO_RESTART, f"cannot start: {type(error).__name__}: {error}"),
                       lifecycle)


def _exit_now(status: int) -> NoReturn:
    """Exit once the daemon has stopped cleanly, without tearing the interpreter down.

    By then every request's thread has finished (the server joins them on close), so has
    the annex each periodic pass was on (:class:`Passes`), and the journal is closed.  The
    exit handlers still run, as on a normal exit: logging's flush, the executors' joins, and
    -daemonize's release of the pid file.  What is skipped is freeing the botocore service
    models and every other object one by one -- 0.3 to 0.4 s of CPU after a create, during
    which a master (or a restart) waits for the process to go.
    """
    atexit._run_exitfuncs()  # pylint: disable=protected-access
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # closed by whoever started us: nothing to lose
            pass
    os._exit(status)


def _failed(fatal: Fatal, lifecycle: Lifecycle) -> int:
    """Say why the daemon cannot start, in one line, in its log, on stderr and to the
    command that started it with -daemonize."""
    line = " ".join(str(fatal).split())  # one line, whatever the cause's text holds
    if logging.getLogger().handlers:
        log.error("%s", line)
    print(f"condor_annexd: {line}", file=sys.stderr)
    lifecycle.report.failed(line)
    return fatal.status


if __name__ == "__main__":
    sys.exit(main())
