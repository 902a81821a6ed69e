"""The annex's HTCondor configuration, packed as ``config-<annexID>.tar.gz`` for its instances.

Built in memory with :mod:`tarfile` (no shell, no temporary directory).  The instance
bootstrap (``condor_annex_ec2``) extracts it into the instance's config directory
(``LOCAL_CONFIG_DIR``), so the top level holds config files only; the pool's security
material goes in a hidden subdirectory, which HTCondor does not read as configuration.
Every member is owned by root and readable by no one else: the tarball carries a secret.

The secret is, by default, the annex's own IDTOKEN (annexd.instance_config.idtoken), never the pool password
unless the admin opts in.  The lease end is *not* in the tarball: it travels as the config
object's metadata, which ``condor_annex_ec2`` turns into ``AnnexLeaseExpiration`` and the
startd's shutdown time at boot and re-reads every minute (``-refresh-lease``).  A lease change
rewrites only the token (:func:`with_token`, see annexd.commands.renew), and the instances
re-install the object when its lease end moved.
"""
from __future__ import annotations

import io
import tarfile
import time
from dataclasses import dataclass, field

from annexd.instance_config import idtoken, routing
from annexd.launch.plan import AnnexPlan

CONFIG_FILE = "00annex.config"


def secrets_dir(plan: AnnexPlan) -> str:
    return f".annex-{plan.annex_id}"


def token_member(plan: AnnexPlan) -> str:
    """Where the annex's IDTOKEN is in the tarball (and, extracted, on the instance)."""
    return f"{secrets_dir(plan)}/tokens.d/annex"


@dataclass(frozen=True)
class PoolMaterial:
    """What the instance needs that is not in the plan: secrets and the user's own files."""

    idtoken: str | None = None
    password: bytes | None = None
    config_files: dict[str, bytes] = field(default_factory=dict)


def _security(plan: AnnexPlan) -> list[str]:
    where = f"$(LOCAL_CONFIG_DIR)/{secrets_dir(plan)}"
    lines = ["SEC_DEFAULT_AUTHENTICATION = REQUIRED",
             "SEC_DEFAULT_ENCRYPTION = REQUIRED",
             "SEC_DEFAULT_INTEGRITY = REQUIRED"]
    if plan.pool_auth != "password":
        # FS: local tools on the instance (condor_reconfig by -refresh-lease, the Spot
        # interruption watcher) as root; the instance holds no key that could check a token.
        lines += ["SEC_DEFAULT_AUTHENTICATION_METHODS = FS, IDTOKENS",
                  f"SEC_TOKEN_DIRECTORY = {where}/tokens.d",
                  # A token's exp is checked only when a session is made: keep sessions
                  # short, so that an expired (or revoked) token stops working soon.
                  f"SEC_DAEMON_SESSION_DURATION = {idtoken.SESSION_SECONDS}"]
    else:
        lines += ["SEC_DEFAULT_AUTHENTICATION_METHODS = PASSWORD, IDTOKENS",
                  f"SEC_PASSWORD_FILE = {where}/pool_password"]
    return lines


def start_expression(plan: AnnexPlan) -> str:
    """The annex's slots' START, as its config file says it: the image's own, and only jobs
    that ask for this annex (or any annex) and belong to its owners
    (:func:`annexd.instance_config.routing.start_expression`).  The demand planner
    (annexd.demand.slots) matches jobs against this very expression."""
    return f"($(START)) && {routing.start_expression(plan.owners)}"


def annex_config(plan: AnnexPlan) -> str:
    """The HTCondor config file every instance of this annex loads."""
    lines = [
        f"# Written by condor_annexd for annex {plan.annex_id}; do not edit.",
        f"COLLECTOR_HOST = {plan.collector_host}",
        f'AnnexName = "{plan.annex_id}"',
        "IsAnnex = True",
        # AnnexLeaseExpiration and STARTD.DAEMON_SHUTDOWN (the startd leaves when the lease
        # ends: a second line of defence behind the lease function) come from the lease file
        # condor_annex_ec2 keeps in step with the config object's metadata.
        "STARTD_ATTRS = $(STARTD_ATTRS) AnnexName IsAnnex AnnexLeaseExpiration",
        "MASTER_ATTRS = $(MASTER_ATTRS) AnnexName IsAnnex AnnexLeaseExpiration",
        # Go away when idle; the master follows its startd.
        f"STARTD_NOCLAIM_SHUTDOWN = {plan.idle_seconds}",
        "MASTER.DAEMON_SHUTDOWN = STARTD_StartTime =?= 0",
        f"START = {start_expression(plan)}",
    ]
    return "\n".join(lines + _security(plan) + [""])


def _add(archive: tarfile.TarFile, name: str, payload: bytes, mode: int) -> None:
    member = tarfile.TarInfo(name)
    member.size, member.mode, member.mtime = len(payload), mode, int(time.time())
    member.uid = member.gid = 0
    member.uname = member.gname = "root"
    archive.addfile(member, io.BytesIO(payload))


def _add_dir(archive: tarfile.TarFile, name: str) -> None:
    member = tarfile.TarInfo(name)
    member.type, member.mode, member.mtime = tarfile.DIRTYPE, 0o700, int(time.time())
    member.uid = member.gid = 0
    member.uname = member.gname = "root"
    archive.addfile(member)


def build(plan: AnnexPlan, material: PoolMaterial) -> bytes:
    """The gzipped tarball's bytes."""
    buffer = io.BytesIO()
    secrets = secrets_dir(plan)
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        _add(archive, CONFIG_FILE, annex_config(plan).encode(), 0o640)
        for name, payload in sorted(material.config_files.items()):
            _add(archive, f"90user-{name}", payload, 0o640)
        _add_dir(archive, secrets)
        if plan.pool_auth != "password":
            _add_dir(archive, f"{secrets}/tokens.d")
            _add(archive, token_member(plan), (material.idtoken or "").encode(), 0o600)
        else:
            _add(archive, f"{secrets}/pool_password", material.password or b"", 0o600)
    return buffer.getvalue()


def with_token(payload: bytes, plan: AnnexPlan, token: str) -> bytes:
    """The annex's tarball ``payload`` with its token replaced, everything else kept as it is
    (the user's -config-dir files, which only the create request carried, among it)."""
    buffer = io.BytesIO()
    name = token_member(plan)
    replaced = False
    with tarfile.open(fileobj=io.BytesIO(payload), mode="r:gz") as old, \
            tarfile.open(fileobj=buffer, mode="w:gz") as new:
        for member in old.getmembers():
            if member.name == name and member.isfile():
                _add(new, name, token.encode(), 0o600)
                replaced = True
            elif member.isfile():
                new.addfile(member, old.extractfile(member))
            else:
                new.addfile(member)
    if not replaced:
        raise ValueError(f"the config object of annex {plan.annex_id} holds no token")
    return buffer.getvalue()
