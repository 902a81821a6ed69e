"""The ``condor_annex_ec2`` command line: one command, four modes.

* (no mode) at boot, install this annex instance's configuration (:mod:`annex_ec2.bootstrap`);
* ``-refresh-lease``: re-read the lease end (every minute, from a systemd timer);
* ``-watch-interruptions``: leave gracefully on a Spot notice (:mod:`annex_ec2.interruption`);
* ``-install``: put the single-file command and its systemd units on an image
  (:mod:`annex_ec2.install`).

It runs on an annex image's own Python (3.9 or newer).  boto3 is imported only by the modes
that talk to AWS, so that ``-install`` can run, and warn, before boto3 is installed, and the
interruption watcher needs the metadata service alone.
"""
from __future__ import annotations

import argparse
import logging
import sys

from . import condor
from .closedpipe import quiet_when_output_closes

log = logging.getLogger("condor_annex_ec2")
CONFIG_DIR = "/etc/condor/config.d"


def parser() -> argparse.ArgumentParser:
    parse = argparse.ArgumentParser(
        prog="condor_annex_ec2", add_help=False,
        description="Install this annex instance's HTCondor configuration (run at boot).")
    parse.add_argument("-help", "-h", action="help", help="show this help and exit")
    parse.add_argument("-config-dir", default=CONFIG_DIR,
                       help=f"where HTCondor reads its configuration (default {CONFIG_DIR})")
    parse.add_argument("-no-shutdown", action="store_true",
                       help="on failure, log and exit non-zero, but do not power off")
    parse.add_argument("-max-wait", type=float, default=3000.0, metavar="SECONDS",
                       help="give up after this long (default 3000)")
    parse.add_argument("-poweroff-command", default="/sbin/shutdown -h now",
                       help="how to power off on failure")
    parse.add_argument("-refresh-lease", action="store_true",
                       help="only re-read the lease end (run every minute by a timer)")
    parse.add_argument("-reconfig-command", default="condor_reconfig",
                       help="with -refresh-lease and -watch-interruptions: how to make "
                            "HTCondor re-read its config (default condor_reconfig)")
    parse.add_argument("-watch-interruptions", action="store_true",
                       help="watch for Spot interruption notices and rebalance "
                            "recommendations; take no new jobs, and vacate on a notice")
    parse.add_argument("-poll-seconds", type=float, default=5.0, metavar="SECONDS",
                       help="with -watch-interruptions: how often to look (default 5)")
    parse.add_argument("-once", action="store_true",
                       help="with -watch-interruptions: look once, then exit")
    parse.add_argument("-vacate-command", default="condor_vacate -fast",
                       help="with -watch-interruptions: how to send running jobs back to "
                            "idle on an interruption notice (default condor_vacate -fast)")
    parse.add_argument("-install", action="store_true",
                       help="as root on an image: install this single-file command and its "
                            "systemd units")
    parse.add_argument("-enable", action="store_true",
                       help="with -install: also run the systemctl enable commands")
    parse.add_argument("-prefix", default="/", metavar="DIR",
                       help="with -install: install under DIR instead of / (default /)")
    parse.add_argument("-retry-base", type=float, default=2.0, help=argparse.SUPPRESS)
    return parse


@quiet_when_output_closes
def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="condor_annex_ec2: %(levelname)s %(message)s")
    logging.getLogger("botocore").setLevel(logging.WARNING)
    if args.install:
        from . import install
        return install.install(args.prefix, args.enable)
    if args.watch_interruptions:
        from . import interruption
        return interruption.watch(args.config_dir, args.reconfig_command, args.vacate_command,
                                  args.poll_seconds, once=args.once)
    if args.refresh_lease:
        return _refresh_lease(args.config_dir, args.reconfig_command)
    return _boot(args)


def _refresh_lease(config_dir: str, reconfig_command: str) -> int:
    try:
        from . import bootstrap
        bootstrap.refresh_lease(config_dir, reconfig_command)
    except Exception as error:  # the next run of the timer tries again
        log.error("cannot refresh the lease end: %s", error)
        return 1
    return 0


def _boot(args: argparse.Namespace) -> int:
    try:
        from . import bootstrap
    except ImportError as error:
        log.error("cannot install this annex's configuration: %s (is boto3 installed for %s?)",
                  error, sys.executable)
    else:
        if bootstrap.boot(args.config_dir, args.max_wait, args.retry_base):
            return 0
    if not args.no_shutdown:
        log.error("powering off so that a broken instance does not bill forever: %s",
                  args.poweroff_command)
        condor.run(args.poweroff_command, "power off")
    return 1
