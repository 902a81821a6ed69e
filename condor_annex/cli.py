"""``condor_annex``: the thin client of ``condor_annexd``.

It reads the user's files itself (the Spot Fleet JSON config, the AWS key files, the user's
HTCondor config: the daemon never opens a user's files), sends one request over the daemon's
socket and prints the result.  It never imports boto3, so it starts fast.

Commands are small classes; the verb flag (``-setup``, ``-check-setup``) picks one, creating
an annex is the default.  Every flag is an :class:`Option` in one table, so unique-prefix
matching sees them all, and each command says which ones apply to it.

Exit status: 0 success; 1 usage error; 2 an input file cannot be read or parsed; 3 the daemon
cannot be reached; 4 the daemon refused the request (invalid, or the annex exists); 5 AWS
failed and everything created was rolled back; 6 AWS failed and rolling back failed too
(the error names what may be left); 7 internal daemon error; 8 the daemon shut down
mid-way (the lease is in force; run the same command again to finish); 9 -check-setup found
problems.
"""
from __future__ import annotations

import base64
import json
import os
import re
import sys
import time
from typing import Any, Sequence

from annexd import knobs, protocol

from . import client, status, userconfig
from . import inputs
from .inputs import InputError
from .options import Option, UsageError, help_text, parse

EXIT_OK, EXIT_USAGE, EXIT_INPUT, EXIT_DAEMON, EXIT_SETUP_PROBLEMS = 0, 1, 2, 3, 9
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

OPTIONS = {option.dest: option for option in (
    Option(("-annex-name",), "annex_name", "NAME",
           f"name of the annex ({protocol.ANNEX_NAME_RULE}); generated if omitted"),
    Option(("-lease-duration",), "lease_duration", "SECONDS",
           "the annex is torn down this many seconds from now "
           "(default ANNEX_DEFAULT_LEASE_DURATION)"),
    Option(("-count", "-slots"), "count", "N",
           "override the config's TargetCapacity; with no config file: start N on-demand "
           "instances"),
    Option(("-aws-on-demand-instance-type",), "odi_instance_type", "TYPE",
           "on-demand instance type (default ANNEX_DEFAULT_ODI_INSTANCE_TYPE)"),
    Option(("-aws-on-demand-ami-id",), "odi_image_id", "AMI",
           "on-demand image (default ANNEX_DEFAULT_ODI_IMAGE_ID)"),
    Option(("-aws-on-demand-security-group-ids",), "odi_security_group_ids", "ID[,ID]",
           "on-demand security groups (default ANNEX_DEFAULT_ODI_SECURITY_GROUP_IDS)"),
    Option(("-aws-on-demand-key-name",), "odi_key_name", "KEY",
           "on-demand SSH key pair (default ANNEX_DEFAULT_ODI_KEY_NAME)"),
    Option(("-aws-on-demand-instance-profile-arn",), "odi_instance_profile_arn", "ARN",
           "on-demand instance profile (default ANNEX_DEFAULT_ODI_INSTANCE_PROFILE_ARN)"),
    Option(("-lease-function-arn",), "lease_function_arn", "ARN",
           "the lease Lambda (default ANNEX_DEFAULT_LEASE_FUNCTION_ARN)"),
    Option(("-aws-region",), "region", "REGION",
           "use this region's setup and knobs (default ANNEX_DEFAULT_AWS_REGION)"),
    Option(("-public-key-file", "-access-key-file"), "access_key_file", "FILE",
           "file holding the AWS access key ID (default ANNEX_DEFAULT_ACCESS_KEY_FILE)"),
    Option(("-secret-key-file", "-private-key-file"), "secret_key_file", "FILE",
           "file holding the AWS secret key, mode 600 (default ANNEX_DEFAULT_SECRET_KEY_FILE)"),
    Option(("-owner",), "owner", '"USER[, USER...]"',
           "only these users' jobs may run on the annex (default: you)"),
    Option(("-no-owner",), "no_owner", None, "anyone's jobs may run on the annex"),
    Option(("-idle",), "idle", "HOURS",
           "an instance unclaimed this long shuts down (default ANNEX_DEFAULT_UNCLAIMED_TIMEOUT)"),
    Option(("-config-dir",), "config_dir", "DIR",
           "add the files in DIR to the instances' HTCondor configuration"),
    Option(("-tag",), "tags", "NAME VALUE", "tag the instances (repeatable)", nargs=2,
           repeat=True),
    Option(("-idtoken-file",), "idtoken_file", "FILE",
           "IDTOKEN the instances use to join the pool (mode 600; default: the admin's)"),
    Option(("-duration",), "duration", "HOURS",
           "lease length in hours (instead of -lease-duration)"),
    Option(("-status",), "status", None, "show your annexes (with -annex-name: that one)"),
    Option(("-json",), "json", None, "with -status: print JSON"),
    Option(("-classad",), "classad", None, "with -status: print ClassAds"),
    Option(("-off",), "off", None, "with -annex-name: end that annex now"),
    Option(("-yes",), "yes", None, "do not ask for confirmation"),
    Option(("-setup",), "setup", None,
           "create or update this region's CloudFormation stacks and write their knobs"),
    Option(("-check-setup",), "check_setup", None, "check this region's setup"),
    Option(("-help",), "help", None, "print this help and exit"),
)}

#: Where -setup looks for keys when given none, as the original condor_annex did.
DEFAULT_KEY_FILES = ("~/.condor/publicKeyFile", "~/.condor/privateKeyFile")


def key_files(values: dict[str, Any], settings: knobs.ClientSettings) -> tuple[str, str] | None:
    access = values.get("access_key_file") or settings.access_key_file
    secret = values.get("secret_key_file") or settings.secret_key_file
    if not access and not secret:
        return None
    if not (access and secret):
        raise UsageError("give both -public-key-file and -secret-key-file (or set both "
                         "ANNEX_DEFAULT_ACCESS_KEY_FILE and ANNEX_DEFAULT_SECRET_KEY_FILE)")
    return access, secret


def credentials(files: tuple[str, str] | None) -> dict[str, str] | None:
    if files is None:
        return None
    return {"access_key_id": inputs.read_key(files[0], "-public-key-file", private=False),
            "secret_access_key": inputs.read_key(files[1], "-secret-key-file", private=True)}


MAX_CONFIG_DIR_BYTES = 256 * 1024


#: On-demand settings: option dest -> (request field, knob with the default).
ODI_KNOBS = {
    "odi_instance_type": ("instance_type", "ANNEX_DEFAULT_ODI_INSTANCE_TYPE"),
    "odi_image_id": ("image_id", "ANNEX_DEFAULT_ODI_IMAGE_ID"),
    "odi_security_group_ids": ("security_group_ids", "ANNEX_DEFAULT_ODI_SECURITY_GROUP_IDS"),
    "odi_key_name": ("key_name", "ANNEX_DEFAULT_ODI_KEY_NAME"),
    "odi_instance_profile_arn": ("instance_profile_arn",
                                 "ANNEX_DEFAULT_ODI_INSTANCE_PROFILE_ARN"),
}


def on_demand_settings(values: dict[str, Any], region: str) -> dict[str, Any]:
    """Flags first, then the (region-prefixed) knobs -setup wrote."""
    found: dict[str, Any] = {}
    for dest, (field, knob) in ODI_KNOBS.items():
        value = values.get(dest) or knobs.raw(knob, region)
        if value:
            found[field] = value
    if "security_group_ids" in found:
        found["security_group_ids"] = [g for g in re.split(r"[\s,]+",
                                                           found["security_group_ids"]) if g]
    return found


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


def owners(values: dict[str, Any]) -> list[str] | None:
    """-owner "a, b" -> ["a", "b"]; -no-owner -> []; neither -> None (the daemon uses you)."""
    if values.get("owner") is not None and values.get("no_owner"):
        raise UsageError("give -owner or -no-owner, not both")
    if values.get("no_owner"):
        return []
    if values.get("owner") is None:
        return None
    names = [name for name in re.split(r"[\s,]+", values["owner"]) if name]
    bad = [name for name in names if not re.search(protocol.USER_NAME_PATTERN, name)]
    if not names or bad:
        raise UsageError(f"-owner: {inputs.shown(values['owner'])!r} is not a list of user "
                         "names")
    return names


def idle_seconds(text: str) -> int:
    return max(60, inputs.hours("-idle", text, 30 * 86400))


def read_config_dir(directory: str) -> dict[str, str]:
    """The regular files of ``directory`` (not hidden, not recursive), base64-encoded."""
    try:
        names = sorted(os.listdir(directory))
    except OSError as error:
        raise InputError(f"-config-dir {directory}: {error.strerror}") from None
    files, total = {}, 0
    for name in names:
        path = os.path.join(directory, name)
        if name.startswith(".") or not os.path.isfile(path) or os.path.islink(path):
            continue
        if not re.search(protocol.CONFIG_FILE_NAME_PATTERN, name):
            raise InputError(f"-config-dir {directory}: file name "
                             f"{inputs.shown(name)!r} is not allowed "
                             "(use letters, digits, '.', '_' and '-')")
        try:
            with open(path, "rb") as handle:
                payload = handle.read(MAX_CONFIG_DIR_BYTES + 1)
        except OSError as error:
            raise InputError(f"-config-dir {path}: {error.strerror}") from None
        total += len(payload)
        if total > MAX_CONFIG_DIR_BYTES:
            raise InputError(f"-config-dir {directory}: more than "
                             f"{MAX_CONFIG_DIR_BYTES // 1024} KiB of files")
        files[name] = base64.b64encode(payload).decode()
    return files


def instance_options(values: dict[str, Any]) -> dict[str, Any]:
    """The create request's fields about the instances: owners, idle time, tags, files."""
    fields: dict[str, Any] = {}
    names = owners(values)
    if names is not None:
        fields["owners"] = names
    if values.get("idle") is not None:
        fields["idle_seconds"] = idle_seconds(values["idle"])
    if values.get("tags"):
        for key, _ in values["tags"]:
            if key.startswith(("aws:", "htcondor:")):
                raise UsageError(f"-tag: {key!r} is reserved (aws: and htcondor: prefixes)")
        fields["tags"] = [{"key": key, "value": value} for key, value in values["tags"]]
    if values.get("config_dir"):
        fields["config_files"] = read_config_dir(values["config_dir"])
    if values.get("idtoken_file"):
        fields["idtoken"] = inputs.read_key(values["idtoken_file"], "-idtoken-file",
                                            private=True, limit=inputs.MAX_TOKEN_BYTES)
    return fields


def _report_failure(reply: dict[str, Any]) -> int:
    error = reply["error"]
    print(f"condor_annex: error: {error['message']}", file=sys.stderr)
    return EXIT_CODES.get(error["kind"], EXIT_DAEMON)


def _with_credentials(request: dict[str, Any], creds: dict[str, str] | None) -> dict[str, Any]:
    if creds:
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

    def confirm(self, values: dict[str, Any], request: dict[str, Any],
                settings: knobs.ClientSettings) -> bool:
        return True

    def request(self, values: dict[str, Any], positionals: list[str],
                settings: knobs.ClientSettings) -> dict[str, Any]:
        raise NotImplementedError

    def show(self, result: dict[str, Any], settings: knobs.ClientSettings) -> int:
        raise NotImplementedError

    def progress(self, text: str) -> None:
        print(text, flush=True)

    def failed(self, reply: dict[str, Any]) -> int:
        return _report_failure(reply)


class CreateAnnex(Command):
    """Start a leased Spot Fleet annex from an EC2 console "JSON config"."""

    usage = "condor_annex [-annex-name NAME] [-lease-duration SECONDS] [-count N] " \
            "[-lease-function-arn ARN] [-aws-region R] [-public-key-file F -secret-key-file F] " \
            "[-owner USERS | -no-owner] [-idle HOURS] [-config-dir DIR] [-tag NAME VALUE]... " \
            "[-idtoken-file F] CONFIG.json"
    flags = ("annex_name", "lease_duration", "duration", "count", "lease_function_arn",
             "region", "access_key_file", "secret_key_file", "owner", "no_owner", "idle",
             "config_dir", "tags", "idtoken_file", "yes") + tuple(ODI_KNOBS)

    def confirm(self, values: dict[str, Any], request: dict[str, Any],
                settings: knobs.ClientSettings) -> bool:
        """At a terminal, show what will be started and its worst-case cost, and ask."""
        if values.get("yes") or not (sys.stdin.isatty() and sys.stdout.isatty()):
            return True
        reply = client.call(settings.socket_path, {**request, "dry_run": True})
        if not reply["ok"]:
            raise DaemonRefused(reply)
        found = reply["result"]["estimate"]
        cost = (f"${found['worst_case_cost']:.2f} at most (prices of {found['prices_date']})"
                if found["worst_case_cost"] is not None else "an unknown amount")
        what = "on-demand instance(s)" if found["type"] == "on-demand" else \
            "spot capacity unit(s)"
        print(f"Will request {found['capacity']} {what} for {found['hours']:.2f} hours, "
              f"costing {cost}.")
        try:
            answer = input("Is that OK? (Type 'yes' or 'no'): ").strip().lower()
        except EOFError:
            answer = ""
        if answer in ("yes", "y"):
            return True
        print("Nothing was started. Change -count, -lease-duration or the config and try again.")
        return False

    def request(self, values: dict[str, Any], positionals: list[str],
                settings: knobs.ClientSettings) -> dict[str, Any]:
        """Build the create request; raises UsageError or InputError."""
        if len(positionals) > 1 or (not positionals and values.get("count") is None):
            raise UsageError("give one Spot Fleet JSON config file (or - for stdin), or -count N "
                             "for on-demand instances")
        source = positionals[0] if positionals else "on-demand"
        annex: dict[str, Any] = {"config_source": source, "region": settings.region}
        name = values.get("annex_name")
        if name is not None:
            if not re.search(protocol.ANNEX_NAME_PATTERN, name):
                raise UsageError(f"-annex-name: {inputs.shown(name)!r} is not valid: use "
                                 f"{protocol.ANNEX_NAME_RULE}")
            annex["name"] = name
        annex["lease_duration"] = lease_seconds(values) or settings.lease_duration
        if values.get("count") is not None:
            annex["count"] = inputs.whole_number("-count", values["count"], "instances",
                                                 inputs.MAX_CAPACITY)
        # The daemon does not read the user's config file: send what -setup wrote there.
        arn = values.get("lease_function_arn") or settings.lease_function_arn
        if arn:
            annex["lease_function_arn"] = arn
        if settings.bucket:
            annex["bucket"] = settings.bucket
        annex.update(instance_options(values))
        creds = credentials(key_files(values, settings))
        if positionals:
            annex["spot_fleet_config"] = inputs.read_json(positionals[0])
        else:
            annex["on_demand"] = on_demand_settings(values, settings.region)
        return _with_credentials({"version": protocol.VERSION, "command": "create",
                                  "annex": annex}, creds)

    def show(self, result: dict[str, Any], settings: knobs.ClientSettings) -> int:
        end = time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(result["lease_end"]))
        print(f"condor_annex: annex {result['annex_id']} started; its lease ends {end}.",
              file=sys.stderr)
        print("\n".join(result.get("instance_ids") or [result.get("spot_fleet_request_id")]))
        return EXIT_OK


def _region_request(command: str, creds: dict[str, str] | None,
                    settings: knobs.ClientSettings) -> dict[str, Any]:
    return _with_credentials({"version": protocol.VERSION, "command": command,
                              "region": settings.region}, creds)


class Setup(Command):
    """Create or update the region's stacks, then record their outputs as knobs."""

    usage = "condor_annex [-aws-region R] -setup [ACCESS_KEY_FILE SECRET_KEY_FILE]"
    flags = ("setup", "region", "access_key_file", "secret_key_file")

    def request(self, values: dict[str, Any], positionals: list[str],
                settings: knobs.ClientSettings) -> dict[str, Any]:
        if len(positionals) not in (0, 2):
            raise UsageError("-setup takes no arguments or two: ACCESS_KEY_FILE SECRET_KEY_FILE")
        files = (tuple(positionals) if positionals else key_files(values, settings)) \
            or tuple(os.path.expanduser(f) for f in DEFAULT_KEY_FILES)
        self.files = tuple(os.path.abspath(f) for f in files)
        print(f"Setting up region {settings.region}; this takes a few minutes on AWS.",
              flush=True)
        return _region_request("setup", credentials(self.files), settings)

    def show(self, result: dict[str, Any], settings: knobs.ClientSettings) -> int:
        prefix = knobs.region_local_name(result["region"]) + "."
        outputs = result["outputs"]
        values = {
            prefix + "ANNEX_DEFAULT_S3_BUCKET": outputs["S3BucketName"],
            prefix + "ANNEX_DEFAULT_LEASE_FUNCTION_ARN": outputs["LeaseFunctionARN"],
            prefix + "ANNEX_DEFAULT_ODI_INSTANCE_PROFILE_ARN": outputs["InstanceProfileARN"],
            prefix + "ANNEX_DEFAULT_ODI_SECURITY_GROUP_IDS": outputs["SecurityGroupID"],
            prefix + "ANNEX_DEFAULT_ACCESS_KEY_FILE": self.files[0],
            prefix + "ANNEX_DEFAULT_SECRET_KEY_FILE": self.files[1],
        }
        path = settings.user_config_file
        try:
            changed, kept = userconfig.update(path, result["region"], values)
        except OSError as error:
            print(f"condor_annex: error: setup succeeded but {path} cannot be written "
                  f"({error.strerror}); add these lines to your HTCondor config yourself:",
                  file=sys.stderr)
            print("\n".join(f"{knob} = {value}" for knob, value in values.items()))
            return EXIT_INPUT
        for knob in kept:
            print(f"condor_annex: notice: keeping your own {knob} in {path}", file=sys.stderr)
        print(f"Setup successful; {'updated' if changed else 'nothing to change in'} {path}.")
        return EXIT_OK


class CheckSetup(Command):
    """Check the region's stacks, the lease function's code, the knobs and the key files."""

    usage = "condor_annex [-aws-region R] -check-setup"
    flags = ("check_setup", "region", "access_key_file", "secret_key_file")
    REQUIRED = ("ANNEX_DEFAULT_S3_BUCKET", "ANNEX_DEFAULT_LEASE_FUNCTION_ARN",
                "ANNEX_DEFAULT_ODI_INSTANCE_PROFILE_ARN", "ANNEX_DEFAULT_ODI_SECURITY_GROUP_IDS",
                "ANNEX_DEFAULT_ACCESS_KEY_FILE", "ANNEX_DEFAULT_SECRET_KEY_FILE")

    def request(self, values: dict[str, Any], positionals: list[str],
                settings: knobs.ClientSettings) -> dict[str, Any]:
        if positionals:
            raise UsageError("-check-setup takes no arguments")
        self.region = settings.region
        self.problems = [f"{knob} is not set for {settings.region}: run condor_annex -setup"
                         for knob in self.REQUIRED if not knobs.raw(knob, settings.region)]
        creds = None
        try:
            creds = credentials(key_files(values, settings))
        except (InputError, UsageError) as error:
            self.problems.append(f"{error}")
        return _region_request("check-setup", creds, settings)

    def failed(self, reply: dict[str, Any]) -> int:
        """The daemon could not check AWS (no keys, say): still report what we found here."""
        return self.show({"problems": [reply["error"]["message"]]}, None)

    def show(self, result: dict[str, Any], settings: knobs.ClientSettings | None) -> int:
        problems = self.problems + result["problems"]
        for problem in problems:
            print(f"condor_annex: problem: {problem}")
        if problems:
            return EXIT_SETUP_PROBLEMS
        print(f"Your setup of {self.region} looks OK.")
        return EXIT_OK


def _annex_request(command: str, values: dict[str, Any], settings: knobs.ClientSettings,
                   **fields: Any) -> dict[str, Any]:
    request = {"version": protocol.VERSION, "command": command, **fields}
    if values.get("annex_name"):
        request["name"] = values["annex_name"]
    if values.get("region"):  # else: every region the caller has annexes in
        request["region"] = values["region"]
    return _with_credentials(request, credentials(key_files(values, settings)))


class Status(Command):
    """What each of your annexes holds now, and how many of its instances joined the pool."""

    usage = "condor_annex [-annex-name NAME] -status [-json | -classad]"
    flags = ("status", "annex_name", "json", "classad", "region", "access_key_file",
             "secret_key_file")

    def request(self, values: dict[str, Any], positionals: list[str],
                settings: knobs.ClientSettings) -> dict[str, Any]:
        if positionals:
            raise UsageError("-status takes no arguments")
        if values.get("json") and values.get("classad"):
            raise UsageError("give -json or -classad, not both")
        self.style = "json" if values.get("json") else "classad" if values.get("classad") \
            else "table"
        return _annex_request("status", values, settings)

    def show(self, result: dict[str, Any], settings: knobs.ClientSettings) -> int:
        annexes = result["annexes"]
        for annex in annexes:
            annex["in_pool"] = status.in_pool(annex["name"])
        if self.style == "json":
            print(json.dumps(annexes, indent=2, sort_keys=True))
        elif self.style == "classad":
            print(status.classads(annexes))
        else:
            print(status.table(annexes, time.time()))
        return EXIT_OK


class Off(Command):
    """End an annex now: what its lease function would do at expiry."""

    usage = "condor_annex -annex-name NAME -off"
    flags = ("off", "annex_name", "region", "access_key_file", "secret_key_file", "yes")

    def request(self, values: dict[str, Any], positionals: list[str],
                settings: knobs.ClientSettings) -> dict[str, Any]:
        if positionals or not values.get("annex_name"):
            raise UsageError(f"usage: {self.usage}")
        return _annex_request("off", values, settings)

    def show(self, result: dict[str, Any], settings: knobs.ClientSettings) -> int:
        if result.get("already_ended"):
            print(f"Annex {result['AnnexID']} had already ended.")
            return EXIT_OK
        done = [f"cancelled {len(result['cancelled_fleets'])} spot fleet request(s)",
                f"terminated {len(result['terminated_instances'])} more instance(s)",
                "removed its lease rule" if result["deleted_rule"] else "its rule was gone",
                "its config object is deleted" if result["deleted_config"]
                else "its config object could not be deleted (no bucket)"]
        print(f"Annex {result['AnnexID']} is off: {', '.join(done)}.")
        return EXIT_OK


class Extend(Command):
    """Move an existing annex's lease end (every other lease setting is kept)."""

    usage = "condor_annex -annex-name NAME (-lease-duration SECONDS | -duration HOURS)"
    flags = ("annex_name", "lease_duration", "duration", "region", "access_key_file",
             "secret_key_file")

    def request(self, values: dict[str, Any], positionals: list[str],
                settings: knobs.ClientSettings) -> dict[str, Any]:
        return _annex_request("extend", values, settings, lease_duration=lease_seconds(values))

    def show(self, result: dict[str, Any], settings: knobs.ClientSettings) -> int:
        end = time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(result["lease_end"]))
        print(f"Lease updated: annex {result['annex_id']} now ends {end}.")
        return EXIT_OK


def select(values: dict[str, Any], positionals: list[str]) -> Command:
    verbs = [flag for flag in ("setup", "check_setup", "status", "off") if values.get(flag)]
    if len(verbs) > 1:
        raise UsageError(f"give only one of {', '.join(OPTIONS[v].flag for v in verbs)}")
    changing_lease = (not positionals and values.get("annex_name")
                      and lease_seconds(values) is not None and values.get("count") is None
                      and not any(values.get(dest) for dest in ODI_KNOBS))
    command = {"setup": Setup, "check_setup": CheckSetup, "status": Status, "off": Off}.get(
        verbs[0] if verbs else "", Extend if changing_lease else CreateAnnex)()
    stray = [OPTIONS[d].flag for d in values if d not in command.flags and d != "help"]
    if stray:
        raise UsageError(f"{', '.join(stray)} cannot be used here ({command.usage})")
    return command


def usage_text() -> str:
    commands = "\n       ".join(c.usage for c in (CreateAnnex, Extend, Status, Off, Setup,
                                                  CheckSetup))
    return help_text(commands, tuple(OPTIONS.values()))


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return run(list(sys.argv[1:] if argv is None else argv))
    except KeyboardInterrupt:
        print("condor_annex: interrupted", file=sys.stderr)
        return 130


def _say_waiting(why: str) -> None:
    """At a terminal, say why nothing seems to happen."""
    if sys.stderr.isatty():
        print(f"condor_annex: {why.rstrip('.')}; waiting (up to "
              f"{client.BUSY_WAIT_SECONDS} s)...", file=sys.stderr)


def run(argv: list[str]) -> int:
    try:
        values, positionals = parse(argv, tuple(OPTIONS.values()))
        if values.get("help"):
            print(usage_text())
            return EXIT_OK
        command = select(values, positionals)
        region = values.get("region")
        if region is not None and not re.search(protocol.REGION_PATTERN, region):
            raise UsageError(f"-aws-region: {inputs.shown(region)!r} is not an AWS region name")
        settings = knobs.ClientSettings.load(region)
        request = command.request(values, positionals, settings)
        if len(protocol.encode(request)) > protocol.MAX_MESSAGE_BYTES:
            raise InputError(f"the request (config file and -config-dir files) is larger than "
                             f"condor_annexd's limit of {protocol.MAX_MESSAGE_BYTES // 1024} KiB")
    except (UsageError, knobs.KnobError) as error:
        print(f"condor_annex: error: {error}", file=sys.stderr)
        print("Run 'condor_annex -help' for usage.", file=sys.stderr)
        return EXIT_USAGE
    except InputError as error:
        print(f"condor_annex: error: {error}", file=sys.stderr)
        return EXIT_INPUT
    try:
        if not command.confirm(values, request, settings):
            return EXIT_USAGE
        reply = client.call(settings.socket_path, request, on_progress=command.progress,
                            on_busy=_say_waiting)
    except DaemonRefused as refused:
        return command.failed(refused.reply)
    except client.DaemonUnreachable as error:
        print(f"condor_annex: error: {error}", file=sys.stderr)
        return EXIT_DAEMON
    for notice in reply.get("notices", []):
        print(f"condor_annex: notice: {notice}", file=sys.stderr)
    if not reply["ok"]:
        return command.failed(reply)
    return command.show(reply["result"], settings)


if __name__ == "__main__":
    sys.exit(main())
