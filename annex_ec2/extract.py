"""Install the annex's config object into the config directory, safely and atomically.

A tarball is read as a stream: each member's header is checked before its data is touched
(only regular files and directories; no absolute paths, ``..``, links, devices or fifos; size
limits the standard filters lack), then extracted with :mod:`tarfile`'s ``data`` filter into
a hidden staging directory next to the target (on Pythons older than 3.11.4, which lack the
filters, the filter's extra rules are applied by hand).  Only when every member passed are the entries
moved into place, each with one atomic rename, so HTCondor never reads a half-written file
and a hostile tarball leaves the directory exactly as it was.
"""
from __future__ import annotations

import copy
import gzip
import io
import os
import shutil
import tarfile
import tempfile

MAX_MEMBERS = 256
MAX_MEMBER_BYTES = 1 << 20
MAX_TOTAL_BYTES = 8 << 20


class UnsafeArchive(Exception):
    """The object cannot be installed as it is; nothing was written."""


def _is_tarball(payload: bytes) -> bool:
    try:
        with tarfile.open(fileobj=io.BytesIO(payload), mode="r:*"):
            return True
    except (tarfile.TarError, gzip.BadGzipFile, EOFError):
        return False


#: tarfile's extraction filters arrived in Python 3.12 and 3.11.4 (and in 3.10.12, 3.9.17 and
#: 3.8.17); 3.11.0-3.11.3, Debian 12's 3.11.2 among them, lack them.
HAS_DATA_FILTER = hasattr(tarfile, "data_filter")


def _extract_member(archive: tarfile.TarFile, member: tarfile.TarInfo, staging: str) -> None:
    """Extract one member that passed our checks, with the ``data`` filter where Python has
    it, else with what that filter adds to our checks done by hand: no setuid, setgid or
    sticky bit, no group or other write, and no ownership taken from the archive."""
    if HAS_DATA_FILTER:
        try:
            archive.extract(member, staging, filter="data")
        except tarfile.FilterError as error:
            raise UnsafeArchive(str(error)) from None
        return
    safe = copy.copy(member)
    safe.mode = member.mode & ~0o7022
    safe.uid, safe.gid, safe.uname, safe.gname = os.getuid(), os.getgid(), "", ""
    archive.extract(safe, staging, set_attrs=True)


def _extract(payload: bytes, staging: str) -> None:
    count = total = 0
    with tarfile.open(fileobj=io.BytesIO(payload), mode="r|*") as archive:
        for member in archive:
            count += 1
            if count > MAX_MEMBERS:
                raise UnsafeArchive(f"more than {MAX_MEMBERS} members")
            parts = member.name.replace("\\", "/").split("/")
            if member.name.startswith("/") or ".." in parts:
                # The data filter would quietly strip a leading "/"; we refuse instead.
                raise UnsafeArchive(f"{member.name!r} points outside the config directory")
            if not (member.isfile() or member.isdir()):
                raise UnsafeArchive(f"{member.name!r} is not a regular file or directory "
                                    "(links, devices and fifos are refused)")
            if member.size > MAX_MEMBER_BYTES:
                raise UnsafeArchive(f"{member.name!r} is larger than {MAX_MEMBER_BYTES} bytes")
            total += member.size
            if total > MAX_TOTAL_BYTES:
                raise UnsafeArchive(f"members add up to more than {MAX_TOTAL_BYTES} bytes")
            _extract_member(archive, member, staging)
            if member.isdir():
                # The data filter drops directory modes (they get the umask's): keep the
                # archive's, never wider than 0750 -- these hold the pool's secrets.
                os.chmod(os.path.join(staging, member.name), (member.mode & 0o750) | 0o700)


def _move_into_place(staging: str, target: str) -> list[str]:
    installed = []
    for name in sorted(os.listdir(staging)):
        source, destination = os.path.join(staging, name), os.path.join(target, name)
        if os.path.isdir(source) and os.path.isdir(destination):
            retired = tempfile.mkdtemp(dir=target, prefix=".annex-retired-")
            os.replace(destination, os.path.join(retired, name))
            os.replace(source, destination)
            shutil.rmtree(retired)
        else:
            os.replace(source, destination)
        installed.append(name)
    return installed


def install(payload: bytes, target: str, plain_name: str) -> list[str]:
    """Put the object into ``target``; returns the top-level names installed.

    A tarball is extracted; anything else is taken as one config file named ``plain_name``.
    """
    os.makedirs(target, exist_ok=True)
    staging = tempfile.mkdtemp(dir=target, prefix=".annex-incoming-")
    try:
        if _is_tarball(payload):
            _extract(payload, staging)
        else:
            descriptor = os.open(os.path.join(staging, plain_name),
                                 os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(payload)
        for directory, _, files in os.walk(staging):
            for name in files:
                with open(os.path.join(directory, name), "rb") as handle:
                    os.fsync(handle.fileno())
        return _move_into_place(staging, target)
    except (tarfile.TarError, EOFError, OSError) as error:
        raise UnsafeArchive(f"cannot unpack: {error}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
