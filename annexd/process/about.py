"""What condor_annexd says about itself: its flags (the table its command line is parsed with),
its exit statuses and the prose of its manual page, condor_annexd(8).  ``-help`` and the page
are rendered from this one source by :mod:`annexd.usage.manpage`.

No HTCondor bindings here: ``condor_annexd -help`` and ``-version`` work without a
configuration."""
from __future__ import annotations

from annexd.usage.manpage import Page, Section
from annexd.usage.options import Option

from annexd.config import knobref

EXIT_OK = 0
EXIT_LOG_ERROR = 44
EXIT_NO_RESTART = 99

OPTIONS = (
    Option(("-f",), "f", None,
           "run in the foreground (the default, as condor_master expects; accepted for scripts "
           "that pass it)"),
    Option(("-t",), "t", None, "also log to the terminal (standard error)"),
    Option(("-daemonize",), "daemonize", None,
           "detach and run in the background, without condor_master"),
    Option(("-pidfile",), "pidfile", "PATH",
           "with -daemonize: the pid file (default ANNEXD_PIDFILE, $(LOCK)/annexd.pid)"),
    Option(("-help",), "help", None, "print this help and exit"),
    Option(("-version",), "version", None, "print the version and exit"),
)

USAGE = ("condor_annexd [-f] [-t]",
         "condor_annexd -daemonize [-pidfile PATH]",
         "condor_annexd -help | -version")

EXIT_STATUS = (
    (EXIT_OK, "stopped when asked (SIGTERM, SIGINT, SIGQUIT), or -help, -version"),
    (EXIT_LOG_ERROR, "the log (ANNEXD_LOG) cannot be written"),
    (EXIT_NO_RESTART, "any failure to start, which a restart would only repeat (a malformed "
                      "knob or command line, a journal that cannot be opened, an unsafe socket "
                      "directory, an unknown socket group, another daemon on the socket or pid "
                      "file; with -daemonize, a daemon that did not come up); one line names "
                      "the cause on stderr and in the log, and condor_master leaves the daemon "
                      "off"),
)

DESCRIPTION = (
    "condor_annexd is the HTCondor annex daemon: it creates, changes and ends leased AWS EC2 "
    "annexes for the local users of an HTCondor pool, who ask for them with condor_annex(1) "
    "over a Unix socket (ANNEXD_SOCKET). The kernel tells it each caller's uid; that user owns "
    "the annexes it creates and alone (with root) may see or change them.",
    "Every annex is created lease first: an EventBridge rule calling the lease function every "
    "minute, then the annex's HTCondor configuration in S3, then the fleet or instances. When "
    "the lease ends, the lease function ends the annex in AWS. Every step is journaled "
    "(ANNEXD_JOURNAL) before the next AWS call, so the daemon can be killed at any moment: "
    "started again, it finishes or rolls back what it was doing.",
    "condor_master starts it when ANNEXD is in DAEMON_LIST (the config.d/80annexd fragment "
    "does this); it runs in the foreground, reports ready once it has recovered its journal "
    "and then sends keep-alives. Without a master, -daemonize detaches it. It logs through "
    "HTCondor's logging (ANNEXD_LOG, ANNEXD_DEBUG), and reads every setting through the "
    "HTCondor configuration (CONDOR_CONFIG); CONFIGURATION below lists them all.",
)

SIGNALS = Section("Signals", (
    ("SIGTERM, SIGINT", "stop accepting requests; each request in flight finishes the step it "
                        "is in, is journaled, and its client is told to run the command again; "
                        "each periodic pass (lease backstop, auto annexes, token renewal) "
                        "finishes the annex it is on and takes no other; then exit 0"),
    ("SIGQUIT", "exit 0 at once (the journal makes that safe)"),
    ("SIGHUP", "re-read the configuration (condor_reconfig sends it); requests in flight keep "
               "their settings"),
))

FILES = Section("Files", (
    ("$(LOCK)/annexd.sock", "the socket (ANNEXD_SOCKET); its directory must not be writable "
                            "by others"),
    ("$(SPOOL)/annexd-journal.sqlite", "the journal (ANNEXD_JOURNAL), mode 600; it never "
                                       "holds credentials"),
    ("$(LOG)/AnnexdLog", "the log (ANNEXD_LOG)"),
    ("$(LOCK)/annexd.pid", "the pid file with -daemonize (ANNEXD_PIDFILE)"),
    ("config.d/80annexd", "the configuration fragment that adds ANNEXD to DAEMON_LIST and "
                          "lists every knob with its default"),
))

CONFIGURATION = Section("Configuration", (
    "Every knob condor-annexd reads, through the HTCondor configuration (condor_config_val "
    "shows a knob's value). A knob read per region may also be given with the region's local "
    "name in front (us_west_2.ANNEX_DEFAULT_S3_BUCKET), which wins in that region.",
    *knobref.plain()))

PAGE = Page(name="condor_annexd", section=8,
            summary="the HTCondor annex daemon: leased AWS EC2 capacity for an HTCondor pool",
            usage=USAGE, options=OPTIONS, exit_status=EXIT_STATUS, description=DESCRIPTION,
            sections=(SIGNALS, CONFIGURATION, FILES),
            see_also=("condor_annex(1)", "condor_master(1)", "condor_reconfig(1)",
                      "the README of condor-annexd (knobs, setup, troubleshooting)"))
