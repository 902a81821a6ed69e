"""``condor_annex``: the thin client of ``condor_annexd``.

It reads the user's files itself (the Spot Fleet JSON config and the AWS key files: the
daemon never opens a user's files), sends one request over the daemon's socket and prints the
result.  It never imports boto3, so it starts fast.

Exit status: 0 success; 1 usage error; 2 an input file cannot be read or parsed; 3 the daemon
cannot be reached; 4 the daemon refused the request (invalid, or the annex exists); 5 AWS
failed and everything created was rolled back; 6 AWS failed and rolling back failed too
(the error names what may be left); 7 internal daemon error; 8 the daemon shut down
mid-way (the lease is in force; run the same command again to finish).
"""
from __future__ import annotations

import json
import os
import re
import stat
import sys
import time
from typing import Any, Sequence

from annexd import knobs, protocol

from . import client
from .options import Option, UsageError, help_text, parse, positive_int

EXIT_OK, EXIT_USAGE, EXIT_INPUT, EXIT_DAEMON = 0, 1, 2, 3
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


class InputError(Exception):
    """A file the user named cannot be used."""


def read_json_config(path: str) -> Any:
    """The Spot Fleet JSON config from ``path`` (``-`` is standard input)."""
    try:
        text = sys.stdin.read() if path == "-" else open(path, encoding="utf-8").read()
    except OSError as error:
        raise InputError(f"{path}: {error.strerror}") from None
    except UnicodeDecodeError as error:
        raise InputError(f"{path}: not UTF-8 text ({error.reason})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise InputError(f"{path}: not valid JSON: {error.msg} at line {error.lineno} "
                         f"column {error.colno}") from None


def read_key_file(path: str, flag: str, secret: bool) -> str:
    """One AWS key from a file; the secret one must be the caller's and private to them."""
    try:
        with open(path, encoding="utf-8") as handle:
            info = os.fstat(handle.fileno())
            if secret and (info.st_uid != os.getuid() or info.st_mode & 0o077):
                raise InputError(
                    f"{flag} {path}: a secret key file must be owned by you and accessible only "
                    f"by you (mode is {stat.S_IMODE(info.st_mode):o}; run chmod 600 {path})")
            key = handle.read().strip()
    except OSError as error:
        raise InputError(f"{flag} {path}: {error.strerror}") from None
    if not key:
        raise InputError(f"{flag} {path}: the file is empty")
    return key


def _credentials(values: dict[str, Any], settings: knobs.ClientSettings) -> dict[str, str] | None:
    access = values.get("access_key_file") or settings.access_key_file
    secret = values.get("secret_key_file") or settings.secret_key_file
    if not access and not secret:
        return None
    if not (access and secret):
        raise UsageError("give both -public-key-file and -secret-key-file (or set both "
                         "ANNEX_DEFAULT_ACCESS_KEY_FILE and ANNEX_DEFAULT_SECRET_KEY_FILE)")
    return {"access_key_id": read_key_file(access, "-public-key-file", secret=False),
            "secret_access_key": read_key_file(secret, "-secret-key-file", secret=True)}


def _report_failure(reply: dict[str, Any]) -> int:
    error = reply["error"]
    print(f"condor_annex: error: {error['message']}", file=sys.stderr)
    return EXIT_CODES.get(error["kind"], EXIT_DAEMON)


class CreateAnnex:
    """Start a leased Spot Fleet annex from an EC2 console "JSON config"."""

    usage = "condor_annex [-annex-name NAME] [-lease-duration SECONDS] [-count N] " \
            "[-lease-function-arn ARN] [-public-key-file F -secret-key-file F] CONFIG.json"
    options = (
        Option(("-annex-name",), "annex_name", "NAME",
               f"name of the annex ({protocol.ANNEX_NAME_RULE}); generated if omitted"),
        Option(("-lease-duration",), "lease_duration", "SECONDS",
               "the annex is torn down this many seconds from now "
               "(default ANNEX_DEFAULT_LEASE_DURATION)"),
        Option(("-count",), "count", "N", "override the config's TargetCapacity"),
        Option(("-lease-function-arn",), "lease_function_arn", "ARN",
               "the lease Lambda (default ANNEX_DEFAULT_LEASE_FUNCTION_ARN)"),
        Option(("-public-key-file", "-access-key-file"), "access_key_file", "FILE",
               "file holding the AWS access key ID (default ANNEX_DEFAULT_ACCESS_KEY_FILE)"),
        Option(("-secret-key-file", "-private-key-file"), "secret_key_file", "FILE",
               "file holding the AWS secret key, mode 600 (default ANNEX_DEFAULT_SECRET_KEY_FILE)"),
        Option(("-help",), "help", None, "print this help and exit"),
    )

    def request(self, values: dict[str, Any], positionals: list[str],
                settings: knobs.ClientSettings) -> dict[str, Any]:
        """Build the create request; raises UsageError or InputError."""
        if len(positionals) != 1:
            raise UsageError("give exactly one Spot Fleet JSON config file (or - for stdin)")
        annex: dict[str, Any] = {"config_source": positionals[0]}
        name = values.get("annex_name")
        if name is not None:
            if not re.match(protocol.ANNEX_NAME_PATTERN, name):
                raise UsageError(f"-annex-name: {name!r} is not valid: use "
                                 f"{protocol.ANNEX_NAME_RULE}")
            annex["name"] = name
        duration = values.get("lease_duration")
        annex["lease_duration"] = (positive_int("-lease-duration", duration, "seconds")
                                   if duration is not None else settings.lease_duration)
        if values.get("count") is not None:
            annex["count"] = positive_int("-count", values["count"], "instances")
        arn = values.get("lease_function_arn") or settings.lease_function_arn
        if arn:
            annex["lease_function_arn"] = arn
        credentials = _credentials(values, settings)
        annex["spot_fleet_config"] = read_json_config(positionals[0])
        request = {"version": protocol.VERSION, "command": "create", "annex": annex}
        if credentials:
            request["credentials"] = credentials
        return request

    def show(self, result: dict[str, Any]) -> None:
        end = time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(result["lease_end"]))
        print(f"condor_annex: annex {result['annex_id']} started; its lease ends {end}.",
              file=sys.stderr)
        print(result["spot_fleet_request_id"])


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = CreateAnnex()
    try:
        values, positionals = parse(argv, command.options)
        if values.get("help"):
            print(help_text(command.usage, command.options))
            return EXIT_OK
        settings = knobs.ClientSettings.load()
        request = command.request(values, positionals, settings)
    except (UsageError, knobs.KnobError) as error:
        print(f"condor_annex: error: {error}", file=sys.stderr)
        print("Run 'condor_annex -help' for usage.", file=sys.stderr)
        return EXIT_USAGE
    except InputError as error:
        print(f"condor_annex: error: {error}", file=sys.stderr)
        return EXIT_INPUT
    try:
        reply = client.call(settings.socket_path, request)
    except client.DaemonUnreachable as error:
        print(f"condor_annex: error: {error}", file=sys.stderr)
        return EXIT_DAEMON
    for notice in reply.get("notices", []):
        print(f"condor_annex: notice: {notice}", file=sys.stderr)
    if not reply["ok"]:
        return _report_failure(reply)
    command.show(reply["result"])
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
