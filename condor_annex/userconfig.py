"""Write ``condor_annex -setup``'s results into the user's HTCondor config file, idempotently.

Each region's settings live in one marked block::

    # BEGIN condor_annex -setup us-east-1
    us_east_1.ANNEX_DEFAULT_S3_BUCKET = ...
    # END condor_annex -setup us-east-1

Re-running setup rewrites that block in place (and leaves the file untouched when nothing
changed); lines outside the blocks are the user's and are never changed.  A knob the user
already sets outside the blocks is not written at all: theirs stays in force.  The file is
replaced atomically, so HTCondor never reads it half-written.
"""
from __future__ import annotations

import os
import re
import tempfile

KNOB_LINE = re.compile(r"^\s*([A-Za-z0-9_.]+)\s*=")


def _markers(region: str) -> tuple[str, str]:
    return f"# BEGIN condor_annex -setup {region}", f"# END condor_annex -setup {region}"


def _split(lines: list[str], region: str) -> tuple[list[str], int | None, int | None]:
    """(lines outside every setup block, start and end index of this region's block)."""
    begin, end = _markers(region)
    outside, start, stop, inside = [], None, None, False
    for index, line in enumerate(lines):
        if line.startswith("# BEGIN condor_annex -setup "):
            inside = True
            if line == begin:
                start = index
        if not inside:
            outside.append(line)
        if line.startswith("# END condor_annex -setup "):
            inside = False
            if line == end:
                stop = index
    return outside, start, stop


def _defined(lines: list[str]) -> set[str]:
    return {match.group(1).upper() for line in lines if (match := KNOB_LINE.match(line))}


def update(path: str, region: str, values: dict[str, str],
           set_default_region: bool = True) -> tuple[bool, list[str]]:
    """Write ``values`` (knob -> value) into ``region``'s block of the file at ``path``.

    Returns (whether the file changed, the knobs left alone because the user sets them).
    ``ANNEX_DEFAULT_AWS_REGION`` is added only if no line of the file sets it yet.
    """
    try:
        with open(path, encoding="utf-8") as handle:
            old_text = handle.read()
    except FileNotFoundError:
        old_text = ""
    lines = old_text.splitlines()
    outside, start, stop = _split(lines, region)
    users_own = _defined(outside)
    kept = [knob for knob in values if knob.upper() in users_own]
    wanted = {k: v for k, v in values.items() if k not in kept}
    other_lines = lines if start is None else lines[:start] + lines[stop + 1:]
    if set_default_region and "ANNEX_DEFAULT_AWS_REGION" not in _defined(other_lines):
        wanted = {"ANNEX_DEFAULT_AWS_REGION": region, **wanted}
    begin, end = _markers(region)
    block = [begin, "# Written by condor_annex -setup; running it again rewrites this block."]
    block += [f"{knob} = {value}" for knob, value in wanted.items()] + [end]
    if start is None:
        new_lines = lines + ([""] if lines and lines[-1].strip() else []) + block
    else:
        new_lines = lines[:start] + block + lines[stop + 1:]
    new_text = "\n".join(new_lines) + "\n"
    if new_text == old_text:
        return False, kept
    _write_atomically(path, new_text)
    return True, kept


def _write_atomically(path: str, text: str) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, mode=0o700, exist_ok=True)
    try:
        mode = os.stat(path).st_mode & 0o777
    except FileNotFoundError:
        mode = 0o600
    fd, temporary = tempfile.mkstemp(dir=directory, prefix=".user_config.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise
