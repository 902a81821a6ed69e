"""The annex's HTCondor configuration, packed as ``config-<annexID>.tar.gz`` for its instances.

Built in memory with :mod:`tarfile` (no shell, no temporary directory).  For now it carries
the annex's identity and lease end; the pool connection, security and START policy follow
with the instance bootstrap.
"""
from __future__ import annotations

import io
import tarfile
import time

from .plan import AnnexPlan

CONFIG_FILE = "50annex.config"


def annex_config(plan: AnnexPlan) -> str:
    """The HTCondor config file an instance of this annex loads."""
    return "\n".join([
        f"# Written by condor_annexd for annex {plan.annex_id}; do not edit.",
        f'AnnexName = "{plan.annex_id}"',
        "IsAnnex = True",
        f"AnnexLeaseExpiration = {plan.lease_end}",
        "STARTD_ATTRS = $(STARTD_ATTRS) AnnexName IsAnnex AnnexLeaseExpiration",
        "MASTER_ATTRS = $(MASTER_ATTRS) AnnexName IsAnnex AnnexLeaseExpiration",
        "",
    ])


def build(plan: AnnexPlan) -> bytes:
    """The gzipped tarball's bytes; members are owner/group readable only."""
    payload = annex_config(plan).encode()
    member = tarfile.TarInfo(CONFIG_FILE)
    member.size, member.mode, member.mtime = len(payload), 0o640, int(time.time())
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        archive.addfile(member, io.BytesIO(payload))
    return buffer.getvalue()
