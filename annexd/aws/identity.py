"""The daemon's own AWS identity: what the lease backstop and crash recovery act with.

Users bring their own keys with each request, and the daemon never stores them.  So after a
crash, and for the backstop that ends annexes whose lease function failed, the daemon needs an
identity of its own.  In order of preference:

1. key files named by ``ANNEXD_ACCESS_KEY_FILE`` and ``ANNEXD_SECRET_KEY_FILE`` -- what an
   on-premises submit node under ``condor_master`` has.  They must be readable by the daemon's
   user only (no group or other bits, owned by it); the daemon refuses to start otherwise;
2. the environment (``AWS_ACCESS_KEY_ID``...), then botocore's other sources, an instance role
   among them.

Its account (STS GetCallerIdentity) decides which user requests recovery may finish: those
whose lease function lives in the same account.  Only the account is ever logged.
"""
from __future__ import annotations

import hashlib
import logging
import os
import stat
import threading
from dataclasses import dataclass, field
from typing import Callable

from annexd.aws import session
from annexd.config import keytext
from annexd.process import privileges
from annexd.config.knobs import DaemonSettings, KnobError

log = logging.getLogger("annexd.aws.identity")

#: botocore's names for where credentials came from, in words for the log.
SOURCES = {"env": "the environment", "iam-role": "the instance role",
           "shared-credentials-file": "~/.aws/credentials", "config-file": "~/.aws/config",
           "container-role": "the container role", "assume-role": "an assumed role"}


@dataclass(frozen=True)
class DaemonIdentity:
    source: str                       # where it came from, in words; "" when there is none
    account: str | None = None        # None: unknown (STS unreachable) or no identity
    credentials: dict[str, str] | None = field(default=None, repr=False)

    @property
    def available(self) -> bool:
        return bool(self.source)

    def same_account(self, arn: str) -> bool:
        """Whether ``arn`` (a lease function's) belongs to this identity's account."""
        parts = arn.split(":")
        return self.account is not None and len(parts) > 4 and parts[4] == self.account

    def describe(self) -> str:
        if not self.available:
            return ("none: the lease backstop is off, and after a crash requests made with "
                    "users' keys wait for their owners (set ANNEXD_ACCESS_KEY_FILE and "
                    "ANNEXD_SECRET_KEY_FILE)")
        account = f"account {self.account}" if self.account else "account unknown (STS failed)"
        return f"{account}, from {self.source}"


NONE = DaemonIdentity("")


@dataclass(frozen=True)
class Payer:
    """Whose AWS account pays for an annex: fixed in its journal row at create, before the
    first call that makes anything, and the only account any later operation may act in."""

    account: str
    #: The ARN of the user's keys (STS's ``Arn``); "" when the daemon's identity pays.
    principal: str = ""
    #: STS's ``UserId`` (``aws:userid``): the owner the annex's resources are tagged with.
    owner: str = ""


def short(account: str) -> str:
    """An account as messages show it: its first four digits, enough to tell two apart."""
    return f"{account[:4]}…" if account else "an unknown account"


def key_of(credentials: dict[str, str]) -> str:
    """What the account cache is keyed by: a digest of the key pair, never the keys."""
    return hashlib.sha256(f"{credentials['access_key_id']}\0"
                          f"{credentials['secret_access_key']}".encode()).hexdigest()


class KnownAccounts:
    """The (account, principal ARN, user ID) of each key pair seen, asked of STS once per key
    pair for the daemon's life: an access key belongs to one principal of one account for
    good, so a later create, -status or -off of the same keys costs no extra call."""

    def __init__(self) -> None:
        self._known: dict[str, tuple[str, str, str]] = {}
        self._lock = threading.Lock()

    def of(self, credentials: dict[str, str],
           ask: Callable[[], tuple[str, str, str]]) -> tuple[str, str, str]:
        key = key_of(credentials)
        with self._lock:
            if key in self._known:
                return self._known[key]
        found = ask()
        with self._lock:
            self._known[key] = found
        return found


ACCOUNTS = KnownAccounts()


def _private_file(knob: str, path: str) -> str:
    """The file's stripped text, if only the daemon's user can read it."""
    try:
        info = os.stat(path)
    except OSError as error:
        raise KnobError(f"{knob} = {path}: {error.strerror}") from None
    if not stat.S_ISREG(info.st_mode):
        raise KnobError(f"{knob} = {path}: not a regular file")
    if info.st_uid not in privileges.own_uids() or info.st_mode & 0o077:
        raise KnobError(f"{knob} = {path}: must be owned by the daemon's user and readable by "
                        f"it only (mode 0600 or 0400; it is {stat.S_IMODE(info.st_mode):04o})")
    try:
        with privileges.as_root():  # root's file, once the daemon runs as condor
            handle = open(path, encoding="utf-8")
        with handle:
            text = handle.read().strip()
    except UnicodeDecodeError:
        raise KnobError(f"{knob} = {path}: not a bare key (not UTF-8 text)") from None
    if not text:
        raise KnobError(f"{knob} = {path}: the file is empty")
    wrong = keytext.problem(text)
    if wrong:
        raise KnobError(f"{knob} = {path}: {wrong}")
    return text


def from_key_files(files: tuple[str, str]) -> dict[str, str]:
    """Read the daemon's key files; raises KnobError naming the knob if one is unsafe."""
    access, secret = files
    return {"access_key_id": _private_file("ANNEXD_ACCESS_KEY_FILE", access),
            "secret_access_key": _private_file("ANNEXD_SECRET_KEY_FILE", secret)}


def resolve(settings: DaemonSettings,
            account_of: Callable[[dict[str, str] | None], str]) -> DaemonIdentity:
    """Find the daemon's identity; ``account_of(credentials)`` asks STS for its account.

    Raises KnobError when the key-file knobs are set but unsafe (the daemon must not start).
    """
    if settings.identity_files is not None:
        credentials: dict[str, str] | None = from_key_files(settings.identity_files)
        source = "ANNEXD_ACCESS_KEY_FILE and ANNEXD_SECRET_KEY_FILE"
    else:
        found = session.default_credentials()
        if found is None:
            return NONE
        credentials, source = None, SOURCES.get(found.method, found.method)
    try:
        account = account_of(credentials)
    except Exception as error:  # the identity still serves; only the account is unknown
        log.warning("cannot tell the daemon identity's AWS account: %s", error)
        account = None
    return DaemonIdentity(source, account, credentials)
