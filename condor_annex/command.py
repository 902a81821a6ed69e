"""What every condor_annex command shares: exit statuses, the base class, keys and requests."""
from __future__ import annotations

import os
import re
import sys
from typing import Any

from annexd.config import knobs
from annexd.rpc import protocol

from . import inputs
from annexd.usage.options import UsageError

EXIT_OK, EXIT_USAGE, EXIT_INPUT, EXIT_DAEMON, EXIT_SETUP_PROBLEMS = 0, 1, 2, 3, 9
#: The user answered no at the confirmation prompt: nothing was started, nothing is wrong.
EXIT_DECLINED = 10
EXIT_CODES = {
    "protocol": EXIT_DAEMON,
    "invalid-request": 4,
    "conflict": 4,
    "aws": 5,
    "rollback-incomplete": 6,
    "internal": 7,
    "interrupted": 8,
    "busy": EXIT_DAEMON,
}

#: Where the original condor_annex's manual puts the keys; used when nothing else names any.
DEFAULT_KEY_FILES = ("~/.condor/publicKeyFile", "~/.condor/privateKeyFile")
#: The original's word (as -setup's arguments, or as the key-file knobs) for "use the AWS
#: identity of the machine": here, condor_annexd's own, if the admin lends it.
FROM_INSTANCE = "FROM INSTANCE"
#: What credentials() returns for FROM INSTANCE.
DAEMON_IDENTITY = "daemon"

#: IAM's AccessKeyId: 16 to 128 word characters.  A secret key (40 characters, mostly with
#: '/' or '+') does not fit; an access key ID does fit LOOKS_LIKE_KEY_ID.
ACCESS_KEY_ID = re.compile(r"\w{16,128}")
LOOKS_LIKE_KEY_ID = re.compile(r"A[KS]IA[A-Z0-9]{12,124}")

def default_key_files() -> tuple[str, str] | None:
    """~/.condor/publicKeyFile and privateKeyFile, if both are there."""
    files = tuple(os.path.expanduser(name) for name in DEFAULT_KEY_FILES)
    return (files[0], files[1]) if all(os.path.exists(name) for name in files) else None


def key_files(values: dict[str, Any], settings: knobs.ClientSettings) -> tuple[str, str] | None:
    """The key files to use: the flags, else the (region's) knobs, else the original's place.

    Both may be FROM INSTANCE (the original's setting for an instance role).
    """
    access = values.get("access_key_file") or settings.access_key_file
    secret = values.get("secret_key_file") or settings.secret_key_file
    if FROM_INSTANCE in (str(access).strip().upper(), str(secret).strip().upper()):
        return FROM_INSTANCE, FROM_INSTANCE
    if not access and not secret:
        return default_key_files()
    if not (access and secret):
        raise UsageError("give both -public-key-file and -secret-key-file (or set both "
                         "ANNEX_DEFAULT_ACCESS_KEY_FILE and ANNEX_DEFAULT_SECRET_KEY_FILE)")
    return access, secret


def credentials(files: tuple[str, str] | None) -> dict[str, str] | str | None:
    """The keys in ``files``; DAEMON_IDENTITY for FROM INSTANCE; None for no files."""
    if files is None:
        return None
    if files == (FROM_INSTANCE, FROM_INSTANCE):
        return DAEMON_IDENTITY
    access = inputs.read_aws_key(files[0], "-public-key-file", private=False)
    secret = inputs.read_aws_key(files[1], "-secret-key-file", private=True)
    if not ACCESS_KEY_ID.fullmatch(access):
        swapped = LOOKS_LIKE_KEY_ID.fullmatch(secret) or not ACCESS_KEY_ID.fullmatch(secret)
        raise inputs.InputError(
            f"-public-key-file {files[0]} does not hold an AWS access key ID (16 or more "
            "letters and digits, such as AKIA...)" +
            (f"; are it and -secret-key-file {files[1]} swapped?" if swapped else ""))
    return {"access_key_id": access, "secret_access_key": secret}


def lease_seconds(values: dict[str, Any]) -> int | None:
    """-lease-duration SECONDS or -duration HOURS (the original's), or None."""
    if values.get("lease_duration") is not None and values.get("duration") is not None:
        raise UsageError("give -lease-duration or -duration, not both")
    if values.get("lease_duration") is not None:
        return inputs.whole_number("-lease-duration", values["lease_duration"], "seconds",
                                   inputs.MAX_LEASE_SECONDS)
    if values.get("duration") is not None:
        return inputs.hours("-duration", values["duration"], inputs.MAX_LEASE_SECONDS)
    return None


def report_failure(reply: dict[str, Any]) -> int:
    error = reply["error"]
    print(f"condor_annex: error: {error['message']}", file=sys.stderr)
    return EXIT_CODES.get(error["kind"], EXIT_DAEMON)


def wants_progress(request: dict[str, Any]) -> dict[str, Any]:
    """Ask the daemon to stream the steps, when someone is at the terminal to see them."""
    if sys.stderr.isatty():
        request["progress"] = True
    return request


def with_credentials(request: dict[str, Any],
                     creds: dict[str, str] | str | None) -> dict[str, Any]:
    if creds == DAEMON_IDENTITY:
        request["daemon_identity"] = True
    elif creds:
        request["credentials"] = creds
    return request


class DaemonRefused(Exception):
    """The daemon said no before anything started; carries its reply."""

    def __init__(self, reply: dict[str, Any]):
        super().__init__(reply["error"]["message"])
        self.reply = reply


class Command:
    """One thing condor_annex does: its flags, its request, and how it shows the answer."""

    usage = ""
    flags: tuple[str, ...] = ()
    #: Notices already printed (at the confirmation prompt): not repeated with the reply.
    notices_shown: tuple[str, ...] = ()

    def confirm(self, values: dict[str, Any], request: dict[str, Any],
                settings: knobs.ClientSettings) -> bool:
        """False: the user declined (exit EXIT_DECLINED)."""
        return True

    def request(self, values: dict[str, Any], positionals: list[str],
                settings: knobs.ClientSettings) -> dict[str, Any]:
        raise NotImplementedError

    def show(self, result: dict[str, Any], settings: knobs.ClientSettings) -> int:
        raise NotImplementedError

    def progress(self, text: str) -> None:
        print(text, flush=True)

    def steps_at_terminal(self, text: str) -> None:
        """A create's or an -off's steps, as the daemon does them: at a terminal only
        (a script gets exactly what it got before)."""
        print(f"condor_annex: {text}", file=sys.stderr, flush=True)

    def failed(self, reply: dict[str, Any]) -> int:
        return report_failure(reply)


def region_request(command: str, creds: dict[str, str] | str | None,
                    settings: knobs.ClientSettings) -> dict[str, Any]:
    return with_credentials({"version": protocol.VERSION, "command": command,
                              "region": settings.region}, creds)


def annex_request(command: str, values: dict[str, Any], settings: knobs.ClientSettings,
                   **fields: Any) -> dict[str, Any]:
    request = {"version": protocol.VERSION, "command": command, **fields}
    if values.get("annex_name"):
        request["name"] = values["annex_name"]
    if values.get("region"):  # else: every region the caller has annexes in
        request["region"] = values["region"]
    return with_credentials(request, credentials(key_files(values, settings)))
