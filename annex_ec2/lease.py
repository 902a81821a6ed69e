"""The lease end on the instance: one small config file, kept in step with the config object.

The lease end is not in the annex's tarball: it is the config object's metadata
(``x-amz-meta-annex-lease-expiration``), which the daemon moves first whenever the lease
changes.  At boot ``condor_annex_ec2`` writes it into :data:`LEASE_FILE`; every minute
``condor_annex_ec2 -refresh-lease`` (a systemd timer on the image) reads it again with one
HeadObject and, if it moved, installs the object again (a lease change renews the annex's
token in it), rewrites the file and runs ``condor_reconfig``.  The daemon also renews the
token on its own, every half ``ANNEX_TOKEN_LIFETIME``, without moving the lease end: the
object's ``x-amz-meta-annex-token-minted`` changes, and the instance installs it again.

The startd leaves at the lease end plus :data:`SHUTDOWN_MARGIN_SECONDS`: the lease function
normally ends the instance first (within a minute of the end); this is the instance's own
second line of defence, and the margin (two refresh periods) makes sure an extension made in
the lease's last minute is seen before the instance would act on the old end.
"""
from __future__ import annotations

import json
import os
import time
from typing import Any

from . import condor

LEASE_FILE = "51annex-lease.config"
#: Where the bootstrap records which object to re-read (hidden: HTCondor skips dot files).
OBJECT_FILE = ".annex-object.json"
METADATA_KEY = "annex-lease-expiration"
#: When the token in the object was minted, set by the daemon's token renewal: a change
#: means a renewed token, to be installed though the lease end did not move.
TOKEN_KEY = "annex-token-minted"
SHUTDOWN_MARGIN_SECONDS = 120


def from_metadata(metadata: dict[str, str] | None) -> int | None:
    """The lease end an S3 object's metadata carries, or None."""
    value = (metadata or {}).get(METADATA_KEY, "")
    return int(value) if value.isascii() and value.isdigit() else None


def text(lease_end: int) -> str:
    return (f"# Written by condor_annex_ec2 from the annex's config object; do not edit.\n"
            f"AnnexLeaseExpiration = {lease_end}\n"
            f"STARTD.DAEMON_SHUTDOWN = time() > {lease_end + SHUTDOWN_MARGIN_SECONDS}\n")


def current(config_dir: str) -> int | None:
    """The lease end the instance acts on now, or None."""
    try:
        with open(os.path.join(config_dir, LEASE_FILE), encoding="utf-8") as handle:
            for line in handle:
                name, _, value = line.partition("=")
                if name.strip() == "AnnexLeaseExpiration":
                    return int(value.strip())
    except (OSError, ValueError):
        pass
    return None


def write(config_dir: str, lease_end: int) -> bool:
    """Make the lease file say ``lease_end``; False if it already did."""
    if current(config_dir) == lease_end:
        return False
    condor.write(config_dir, LEASE_FILE, text(lease_end))
    return True


def token_stamp(metadata: dict[str, str] | None) -> str:
    """Which renewal of the token the object holds ("" before the first)."""
    return (metadata or {}).get(TOKEN_KEY, "")


def record_object(config_dir: str, bucket: str, key: str, annex: str,
                  token: str = "") -> None:
    condor.write(config_dir, OBJECT_FILE,
                 json.dumps({"bucket": bucket, "key": key, "annex": annex, "token": token}))


def recorded_object(config_dir: str) -> dict[str, Any]:
    with open(os.path.join(config_dir, OBJECT_FILE), encoding="utf-8") as handle:
        return json.load(handle)


def ended_now() -> int:
    """The lease end to act on once the config object is gone (the lease has ended)."""
    return int(time.time()) - SHUTDOWN_MARGIN_SECONDS
