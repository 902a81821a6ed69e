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

import logging
import os
import stat
from dataclasses import dataclass, field
from typing import Callable

import boto3

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
        found = boto3.session.Session().get_credentials()
        if found is None:
            return NONE
        credentials, source = None, SOURCES.get(found.method, found.method)
    try:
        account = account_of(credentials)
    except Exception as error:  # the identity still serves; only the account is unknown
        log.warning("cannot tell the daemon identity's AWS account: %s", error)
        account = None
    return DaemonIdentity(source, account, credentials)
