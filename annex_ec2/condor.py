"""The local HTCondor as ``condor_annex_ec2`` touches it: files in its config directory, and
its commands (``condor_reconfig``, ``condor_vacate``, the power-off command).

A config file is written under a hidden name in the same directory (HTCondor skips dot
files), made 0644 and renamed over the old one, so that HTCondor, whenever it reads its
configuration, sees either the old file or the new one, never half of one.
"""
from __future__ import annotations

import logging
import os
import shlex
import subprocess

log = logging.getLogger("condor_annex_ec2")


def replace_file(path: str, data: bytes, mode: int = 0o644) -> None:
    """Atomically make ``path`` hold ``data``, with ``mode``: the reader sees the old file or
    the new one, never half of one (used for the units and the command on an image, too)."""
    staging = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.new")
    with open(staging, "wb") as handle:
        handle.write(data)
    os.chmod(staging, mode)
    os.replace(staging, path)


def write(config_dir: str, name: str, text: str) -> None:
    """Atomically make ``config_dir/name`` hold ``text`` (mode 0644)."""
    replace_file(os.path.join(config_dir, name), text.encode("utf-8"))


def read(config_dir: str, name: str) -> str | None:
    """What ``config_dir/name`` holds, or None when there is no such file."""
    try:
        with open(os.path.join(config_dir, name), encoding="utf-8") as handle:
            return handle.read()
    except FileNotFoundError:
        return None


def remove(config_dir: str, name: str) -> None:
    try:
        os.unlink(os.path.join(config_dir, name))
    except FileNotFoundError:
        pass


def run(command: str, why: str) -> bool:
    """Run ``command`` (a shell-quoted string, not run by a shell) ``why``; True if it worked.

    A failure is logged, never raised: the callers' next step must happen anyway (a config
    file already written stays right; a failed reconfig is redone by the next change).
    """
    try:
        result = subprocess.run(shlex.split(command), check=False)
    except OSError as error:
        log.error("cannot run %r to %s: %s", command, why, error)
        return False
    if result.returncode != 0:
        log.error("%r (to %s) exited with status %d", command, why, result.returncode)
        return False
    return True
