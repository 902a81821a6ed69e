"""What condor_annex reads from the user: files and numbers, checked before they are trusted.

Files: regular files only, checked on the open descriptor of a non-blocking open (a FIFO or a
device named by mistake or malice is refused at once instead of hanging the CLI), bounded in
size (the limit is named in the error), UTF-8.  JSON: bounded in nesting depth before it is
parsed.  Numbers: ASCII decimal digits only (Python's ``int`` would also take ``١٢`` and
``1_000``), finite, within bounds.  Values echoed in errors are shortened.
"""
from __future__ import annotations

import math
import os
import re
import stat
import sys
from typing import Any

from annexd.config import keytext
from annexd.rpc import protocol

from annexd.usage.options import UsageError

MAX_CONFIG_BYTES = 256 * 1024
MAX_KEY_BYTES = 4096
MAX_TOKEN_BYTES = 65536
#: The largest Spot Fleet / on-demand capacity one annex may ask for (AWS's default quota
#: for one Spot Fleet's target capacity).
MAX_CAPACITY = protocol.MAX_CAPACITY
MAX_LEASE_SECONDS = protocol.MAX_LEASE_SECONDS

_WHOLE = re.compile(r"[0-9]{1,15}")
_DECIMAL = re.compile(r"[0-9]{1,9}(\.[0-9]{1,9})?|\.[0-9]{1,9}")


class InputError(Exception):
    """A file the user named cannot be used."""


def shown(value: str) -> str:
    """``value`` as an error message may show it: shortened when long."""
    return protocol.shown(value)


#: Paths are shown whole (a user needs all of one), up to the longest a path can be.
PATH_MAX = 4096


def _label(path: str, what: str) -> str:
    path = protocol.shown(path, PATH_MAX)
    return f"{what} {path}" if what else path


def read_bytes(path: str, what: str, limit: int, private: bool = False) -> bytes:
    """The contents of the regular file ``path`` (``-``: standard input), at most ``limit``
    bytes; ``what`` (a flag) names it in errors, else the path alone does.  ``private``: the
    file holds a secret, so it must be the caller's and unreadable by anyone else."""
    if path == "-":
        data = sys.stdin.buffer.read(limit + 1)
    else:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
        except OSError as error:
            raise InputError(f"{_label(path, what)}: {error.strerror}") from None
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise InputError(f"{_label(path, what)}: not a regular file")
            if private and (info.st_uid != os.getuid() or info.st_mode & 0o077):
                raise InputError(
                    f"{_label(path, what)}: a secret key file must be owned by you and "
                    f"accessible only by you (mode is {stat.S_IMODE(info.st_mode):o}; run "
                    f"chmod 600 {protocol.shown(path, PATH_MAX)})")
            if info.st_size > limit:
                raise InputError(f"{_label(path, what)}: larger than the limit of "
                                 f"{_size(limit)}")
            data = os.read(fd, limit + 1)
        except OSError as error:
            raise InputError(f"{_label(path, what)}: {error.strerror}") from None
        finally:
            os.close(fd)
    if len(data) > limit:
        raise InputError(f"{_label(path, what)}: larger than the limit of {_size(limit)}")
    return data


def _size(limit: int) -> str:
    return f"{limit // 1024} KiB" if limit >= 1024 else f"{limit} bytes"


def read_text(path: str, what: str, limit: int) -> str:
    data = read_bytes(path, what, limit)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise InputError(f"{_label(path, what)}: not UTF-8 text ({error.reason})") from None


def read_json(path: str, what: str = "", limit: int = MAX_CONFIG_BYTES) -> Any:
    """A JSON document from ``path``, bounded in size and nesting."""
    text = read_text(path, what, limit)
    try:
        return protocol.loads(text)
    except protocol.ProtocolError as error:
        raise InputError(f"{_label(path, what)}: {error}") from None


def read_key(path: str, flag: str, private: bool, limit: int = MAX_KEY_BYTES) -> str:
    """One key or token from a file, stripped; a secret one must be private to the caller."""
    try:
        key = read_bytes(path, flag, limit, private).decode("ascii").strip()
    except UnicodeDecodeError:
        raise InputError(f"{_label(path, flag)}: not a key (non-ASCII bytes)") from None
    if not key:
        raise InputError(f"{_label(path, flag)}: the file is empty")
    return key


def read_aws_key(path: str, flag: str, private: bool) -> str:
    """An AWS key from a file that must hold that key alone; errors never show the file's text
    (botocore would echo a garbled key, with every secret in the file, in its own error)."""
    key = read_key(path, flag, private)
    wrong = keytext.problem(key)
    if wrong:
        raise InputError(f"{_label(path, flag)}: {wrong}")
    return key


def whole_number(flag: str, text: str, unit: str, most: int) -> int:
    """``text`` as a whole number from 1 to ``most``, in ASCII digits."""
    if not _WHOLE.fullmatch(text) or not 1 <= int(text) <= most:
        raise UsageError(f"{flag}: expected a positive whole number of {unit} (at most "
                         f"{most}), got {shown(text)!r}")
    return int(text)


def dollars(flag: str, text: str) -> float:
    """``text`` as an amount of US dollars above 0 (a finite ASCII decimal)."""
    if not _DECIMAL.fullmatch(text) or not 0 < float(text) < 1e9:
        raise UsageError(f"{flag}: expected an amount of US dollars such as 25.50, got "
                         f"{shown(text)!r}")
    return float(text)


def hours(flag: str, text: str, most_seconds: int) -> int:
    """``text`` hours (a finite ASCII decimal) as whole seconds from 1 to ``most_seconds``."""
    if not _DECIMAL.fullmatch(text):
        raise UsageError(f"{flag}: expected a number of hours such as 1.5, got {shown(text)!r}")
    seconds = float(text) * 3600
    if not math.isfinite(seconds) or not 1 <= round(seconds) <= most_seconds:
        raise UsageError(f"{flag}: {shown(text)!r} hours is not between 1 second and "
                         f"{most_seconds // 3600} hours")
    return round(seconds)

