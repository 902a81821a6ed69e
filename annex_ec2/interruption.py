"""Leave gracefully when AWS takes a Spot instance back: ``condor_annex_ec2 -watch-interruptions``.

AWS warns a Spot instance through the instance metadata service, in two steps:

* a *rebalance recommendation* (``meta-data/events/recommendations/rebalance``, JSON
  ``{"noticeTime": ...}``) when the instance is at elevated risk of interruption, often well
  before it happens;
* an *interruption notice* (``meta-data/spot/instance-action``, JSON ``{"action": "terminate"
  | "stop" | "hibernate", "time": ...}``) two minutes before AWS acts.

Each answers 404 until it is given.  Polling both every few seconds, the watcher makes the
startd take no new jobs on either (``START = False`` in :data:`CONFIG_FILE`, with attributes
in the startd's ad saying why) and runs ``condor_reconfig``; on an interruption notice it also
vacates the running jobs at once (``condor_vacate -fast``), so that they go back to idle in
their schedds within seconds and can match elsewhere, instead of dying with the instance two
minutes later and being noticed only when the schedd's claim times out.

The config file is the watcher's memory: it acts only when what the metadata says differs
from what the file says, so it acts once per notice, across polls and across restarts of the
watcher; when the notices are gone (a stopped Spot instance started again) it removes the
file, and the startd takes jobs again.

At boot, :func:`interruptible` tells ``condor_annex_ec2`` whether this is a Spot instance at
all, for the startd's ``CloudInterruptible`` attribute.
"""
from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass

from . import condor, imds

log = logging.getLogger("condor_annex_ec2")

CONFIG_FILE = "52annex-interruption.config"
INSTANCE_ACTION_PATH = "meta-data/spot/instance-action"
REBALANCE_PATH = "meta-data/events/recommendations/rebalance"
LIFE_CYCLE_PATH = "meta-data/instance-life-cycle"
#: What ``meta-data/instance-life-cycle`` says, and whether AWS may take the instance back.
LIFE_CYCLES = {"spot": True, "on-demand": False, "scheduled": False}
#: A notice's time and action go into the HTCondor config between quotes: keep them to the
#: characters an ISO 8601 time or an action name can have.
_UNSAFE = re.compile(r"[^0-9A-Za-z:.+-]")


@dataclass(frozen=True)
class Notices:
    """What the metadata service says about this instance's future, now."""

    rebalance_time: str | None = None
    interruption_time: str | None = None
    interruption_action: str | None = None

    @property
    def any(self) -> bool:
        return self.rebalance_time is not None or self.interruption_time is not None


def read(metadata: imds.Imds) -> Notices:
    """The notices AWS has given (none: two 404s)."""
    rebalance = metadata.get_optional(REBALANCE_PATH)
    action = metadata.get_optional(INSTANCE_ACTION_PATH)
    notices = Notices()
    if rebalance is not None:
        document = imds.parse_json(REBALANCE_PATH, rebalance)
        notices = Notices(rebalance_time=_safe(document.get("noticeTime", "unknown")))
    if action is not None:
        document = imds.parse_json(INSTANCE_ACTION_PATH, action)
        notices = Notices(notices.rebalance_time, _safe(document.get("time", "unknown")),
                          _safe(document.get("action", "terminate")))
    return notices


def _safe(value: object) -> str:
    return _UNSAFE.sub("", str(value))[:64] or "unknown"


def _rebalance_lines(notices: Notices) -> list[str]:
    return ["CloudRebalanceRecommended = True"] if notices.rebalance_time is not None else []


def _interruption_lines(notices: Notices) -> list[str]:
    if notices.interruption_time is None:
        return []
    return [f'CloudInterruptionNotice = "{notices.interruption_time}"',
            f'CloudInterruptionAction = "{notices.interruption_action}"']


def config_text(notices: Notices) -> str | None:
    """The config file that says ``notices`` to HTCondor; None: no file."""
    if not notices.any:
        return None
    attributes = _rebalance_lines(notices) + _interruption_lines(notices)
    names = " ".join(line.split(" = ")[0] for line in attributes)
    return "\n".join([
        "# Written by condor_annex_ec2 -watch-interruptions from the instance metadata; do not",
        "# edit.  AWS is about to take this Spot instance back: take no new jobs.",
        "START = False",
        *attributes,
        f"STARTD_ATTRS = $(STARTD_ATTRS) {names}",
        ""])


def _is_new(lines: list[str], before: str | None) -> bool:
    """Whether ``lines`` (one notice) are news to the config file that held ``before``."""
    return bool(lines) and not all(line in (before or "").splitlines() for line in lines)


class Watcher:
    """Brings :data:`CONFIG_FILE` in step with the notices, and acts on what is new."""

    def __init__(self, config_dir: str, reconfig_command: str, vacate_command: str,
                 metadata: imds.Imds | None = None):
        self.config_dir = config_dir
        self.reconfig_command, self.vacate_command = reconfig_command, vacate_command
        self.metadata = metadata or imds.Imds()

    def poll(self) -> Notices:
        """Read the notices once and act on any change; MetadataError if IMDS fails."""
        notices = read(self.metadata)
        before = condor.read(self.config_dir, CONFIG_FILE)
        wanted = config_text(notices)
        if wanted != before:
            self._apply(notices, before, wanted)
        return notices

    def _apply(self, notices: Notices, before: str | None, wanted: str | None) -> None:
        if wanted is None:
            condor.remove(self.config_dir, CONFIG_FILE)
            log.info("no Spot interruption notice or rebalance recommendation any more: "
                     "taking new jobs again")
        else:
            condor.write(self.config_dir, CONFIG_FILE, wanted)
            if _is_new(_rebalance_lines(notices), before):
                log.warning("AWS recommends rebalancing away from this Spot instance (notice "
                            "time %s): taking no new jobs; running jobs go on",
                            notices.rebalance_time)
        condor.run(self.reconfig_command, "make HTCondor read " + CONFIG_FILE)
        if _is_new(_interruption_lines(notices), before):
            log.warning("AWS will %s this Spot instance at %s: taking no new jobs, and vacating "
                        "the running ones so that they go back to idle now (%s)",
                        notices.interruption_action, notices.interruption_time,
                        self.vacate_command)
            condor.run(self.vacate_command, "vacate the running jobs")


def watch(config_dir: str, reconfig_command: str, vacate_command: str, poll_seconds: float,
          once: bool = False) -> int:
    """Poll for notices until killed (``once``: poll one time); the exit status."""
    watcher = Watcher(config_dir, reconfig_command, vacate_command)
    log.info("watching for Spot interruption notices and rebalance recommendations every "
             "%g s (%s)", poll_seconds, watcher.metadata.base)
    failing = False
    while True:
        try:
            watcher.poll()
        except (imds.MetadataError, OSError) as error:  # IMDS down, or config dir unwritable
            if once:
                log.error("cannot watch for Spot notices: %s", error)
                return 1
            if not failing:  # say so once per outage, not every few seconds
                log.warning("cannot watch for Spot notices (%s); still trying every %g s",
                            error, poll_seconds)
            failing = True
        else:
            if failing:
                log.info("watching for Spot notices again")
            failing = False
        if once:
            return 0
        time.sleep(poll_seconds)


def interruptible(metadata: imds.Imds) -> bool:
    """Whether AWS may take this instance back (a Spot instance), for the startd's ad.

    Anything but a known answer is taken as on-demand, with a warning: the attribute is
    informative, and claiming an instance safe from interruption is the usual case.
    """
    life_cycle = metadata.get_optional(LIFE_CYCLE_PATH)
    known = LIFE_CYCLES.get((life_cycle or "").strip())
    if known is None:
        log.warning("the metadata service gives no known instance life cycle (%r, not one of "
                    "%s): advertising CloudInterruptible = False", life_cycle,
                    ", ".join(LIFE_CYCLES))
        return False
    return known
