"""Started as root (by a root ``condor_master``), run as the condor user, as HTCondor's daemons do.

HTCondor's daemons find "the condor user" in ``init_condor_ids()`` (src/condor_utils/uids.cpp):
``CONDOR_IDS`` (``uid.gid``) from the environment, else from the configuration, else the
account named ``condor``; a ``CONDOR_IDS`` whose uid is not in the password database is an
error.  They then run with that user's effective IDs and switch to root only for what needs
it.  condor_annexd does the same once its socket and journal are made (both need root's
rights in the directories a packaged HTCondor owns): it hands the files it keeps writing (the
journal and its ``-wal``/``-shm``, the log, the socket) to that user and sets its effective
uid and gid (and groups) to it.  Root comes back only around opening a root-only secret
(:func:`as_root`: the token signing key, the pool password, key files owned by root), never
for AWS, for a client or for a file a user named.

Where HTCondor would refuse to start (root, no ``condor`` account, no ``CONDOR_IDS``) the
daemon stays root and says so in its log: the tests of this package run it as root in
containers without that account.  ``CONDOR_IDS = 0.0`` keeps it root on purpose, as in
HTCondor.
"""
from __future__ import annotations

import contextlib
import logging
import os
import pwd
import stat
import threading
from dataclasses import dataclass
from typing import Iterator, Mapping

from annexd.config import knobs

log = logging.getLogger("annexd.process.privileges")

KNOB = "CONDOR_IDS"
CONDOR_ACCOUNT = "condor"


class PrivilegeError(Exception):
    """The condor user cannot be found, or cannot take over the daemon's files."""


@dataclass(frozen=True)
class CondorIds:
    uid: int
    gid: int
    name: str
    source: str  # where they came from, for the log

    def __str__(self) -> str:
        return f"{self.name} ({self.uid}.{self.gid}, from {self.source})"


def condor_ids(environ: Mapping[str, str] | None = None) -> CondorIds | None:
    """The condor user as HTCondor finds it; None if there is no such account."""
    environ = os.environ if environ is None else environ
    source, value = ("the environment's CONDOR_IDS", environ.get(KNOB)) if environ.get(KNOB) \
        else ("the knob CONDOR_IDS", knobs.raw(KNOB))
    if value:
        try:
            uid, gid = (int(part) for part in value.strip().split("."))
        except ValueError:
            raise PrivilegeError(f"{source} = {value!r}: not a uid.gid pair") from None
        try:
            name = pwd.getpwuid(uid).pw_name
        except KeyError:
            raise PrivilegeError(f"{source} = {value!r}: uid {uid} is not in the password "
                                 "database") from None
        return CondorIds(uid, gid, name, source)
    try:
        account = pwd.getpwnam(CONDOR_ACCOUNT)
    except KeyError:
        return None
    return CondorIds(account.pw_uid, account.pw_gid, CONDOR_ACCOUNT, "the condor account")


def decide(euid: int, ids: CondorIds | None) -> CondorIds | None:
    """Whom to run as: ``ids`` if we are root and they are not; None to stay as we are."""
    if euid != 0 or ids is None or ids.uid == 0:
        return None
    return ids


def _allows(ids: CondorIds, path: str, groups: list[int], user_bits: int) -> bool:
    """Whether the mode of ``path`` grants ``ids`` (with supplementary ``groups``) the
    permission ``user_bits`` (given as owner bits), by its owner, group and mode (no ACLs)."""
    info = os.stat(path)
    shift = 0 if info.st_uid == ids.uid else \
        3 if info.st_gid == ids.gid or info.st_gid in groups else 6
    wanted = user_bits >> shift
    return info.st_mode & wanted == wanted


def may_write(ids: CondorIds, directory: str, groups: list[int]) -> bool:
    """Whether ``ids`` may create files in ``directory``."""
    return _allows(ids, directory, groups, stat.S_IWUSR | stat.S_IXUSR)


def may_read(ids: CondorIds, directory: str, groups: list[int]) -> bool:
    """Whether ``ids`` may reach and list ``directory`` (each directory above it too)."""
    path, ok = os.path.abspath(directory), True
    while ok and path != os.path.dirname(path):
        ok = _allows(ids, path, groups, stat.S_IXUSR)
        path = os.path.dirname(path)
    return ok and _allows(ids, directory, groups, stat.S_IRUSR | stat.S_IXUSR)


_lock = threading.RLock()
_planned: CondorIds | None = None
_running_as: CondorIds | None = None


def plan(environ: Mapping[str, str] | None = None) -> CondorIds | None:
    """Decide, at start, whom the daemon will run as once its socket is made (None: as it
    is); raises PrivilegeError for a CONDOR_IDS HTCondor would refuse too."""
    global _planned
    _planned = decide(os.geteuid(), condor_ids(environ))
    return _planned


def planned() -> CondorIds | None:
    """Whom :func:`plan` decided the daemon runs as (None: as it is)."""
    return _planned


def running_as() -> CondorIds | None:
    """The user the daemon switched to, if it did."""
    return _running_as


def drop(ids: CondorIds, directories: dict[str, str], files: list[str],
         code: tuple[str, ...] = ()) -> None:
    """Become ``ids``: check that it may write in ``directories`` (what -> path) and read
    the ``code`` directories (Python's library, our packages: modules load lazily), hand it
    ``files`` (those that exist), then set the effective gid, groups and uid."""
    groups = os.getgrouplist(ids.name, ids.gid)
    for directory in code:
        if not may_read(ids, directory, groups):
            raise PrivilegeError(
                f"{directory} (condor_annexd's Python and packages) is not readable by {ids}, "
                "whom condor_annexd runs as once started as root: install it where that user "
                "can read it (e.g. a virtualenv in /opt)")
    for what, directory in directories.items():
        if not may_write(ids, directory, groups):
            raise PrivilegeError(
                f"{what}'s directory {directory} is not writable by {ids}, whom condor_annexd "
                f"runs as once started as root: chown it to that user (as HTCondor's own "
                f"LOG, SPOOL and LOCK are), or set CONDOR_IDS")
    for path in files:
        try:
            os.chown(path, ids.uid, -1, follow_symlinks=False)
        except FileNotFoundError:
            continue
    global _running_as
    with _lock:
        os.setgroups(groups)
        os.setegid(ids.gid)
        os.seteuid(ids.uid)
        _running_as = ids
    log.info("running as %s (effective uid and gid; root only to open root-only secrets)", ids)


@contextlib.contextmanager
def as_root() -> Iterator[None]:
    """Root's rights around opening a root-only file; nothing when the daemon did not drop.
    Effective IDs are the process's (all threads'), so keep the block to the open itself."""
    if _running_as is None:
        yield
        return
    with _lock:
        os.seteuid(0)
        os.setegid(0)
        try:
            yield
        finally:
            os.setegid(_running_as.gid)
            os.seteuid(_running_as.uid)


def own_uids() -> set[int]:
    """Who may own a file "only the daemon's user" may read: that user, and, for a daemon
    started as root, root (whose files it opens :func:`as_root` once it runs as the condor
    user)."""
    root = {0} if os.getuid() == 0 else set()  # the real uid stays root after the drop
    return {os.geteuid()} | root | {ids.uid for ids in (_planned, _running_as) if ids}
