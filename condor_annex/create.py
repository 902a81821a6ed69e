"""condor_annex (the default verb): start a leased annex from a fleet JSON config (a Spot
Fleet's or an EC2 Fleet's), or on-demand instances with -count and no config."""
from __future__ import annotations

import base64
import os
import re
import sys
import time
from typing import Any

from annexd.config import knobs
from annexd.rpc import protocol

from . import client, inputs, userconfig
from .command import (EXIT_OK, Command, DaemonRefused, credentials, key_files, lease_seconds,
                      wants_progress, with_credentials)
from .inputs import InputError
from annexd.usage.options import UsageError

MAX_CONFIG_DIR_BYTES = 256 * 1024
#: EC2's limit for user data, before base64.
MAX_USER_DATA_BYTES = 16 * 1024


#: The on-demand flags' names, for messages.
OPTION_NAMES = {"odi_instance_type": "-aws-on-demand-instance-type",
                "odi_image_id": "-aws-on-demand-ami-id",
                "odi_security_group_ids": "-aws-on-demand-security-group-ids",
                "odi_key_name": "-aws-on-demand-key-name",
                "odi_instance_profile_arn": "-aws-on-demand-instance-profile-arn"}

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


def join_defaults(settings: knobs.ClientSettings) -> dict[str, Any]:
    """-setup's instance profile and security groups from the user's configuration, for the
    daemon to give instances whose launch names none (it falls back to its own knobs); a
    profile the original condor_annex's -setup wrote is not sent (this release's instances
    cannot use it)."""
    found: dict[str, Any] = {}
    knob = "ANNEX_DEFAULT_ODI_INSTANCE_PROFILE_ARN"
    profile = knobs.raw(knob, settings.region)
    groups = knobs.id_list(knobs.raw("ANNEX_DEFAULT_ODI_SECURITY_GROUP_IDS", settings.region))
    if profile and not from_originals_setup(knob, profile, settings):
        found["instance_profile_arn"] = profile
    if groups:
        found["security_group_ids"] = list(groups)
    return found


def bucket(settings: knobs.ClientSettings) -> dict[str, str]:
    """The user's bucket for the request, unless it is the original condor_annex's."""
    if settings.bucket and not from_originals_setup("ANNEX_DEFAULT_S3_BUCKET",
                                                    settings.bucket, settings):
        return {"bucket": settings.bucket}
    return {}


def config_file(values: dict[str, Any], positionals: list[str],
                settings: knobs.ClientSettings) -> str | None:
    """The fleet config to read: the one given, else -- for -slots, a Spot Fleet's capacity
    in the original -- ANNEX_DEFAULT_SFR_CONFIG_FILE's; None: on-demand (-count N, or -auto
    without a config)."""
    if len(positionals) > 1:
        raise UsageError("give one fleet JSON config file (Spot Fleet or EC2 Fleet; - for "
                         "stdin), or -count N for on-demand instances")
    if values.get("slots") is not None and values.get("count") is not None:
        raise UsageError("give -count or -slots, not both (-slots is a Spot Fleet's capacity, "
                         "-count on-demand instances or a config's capacity)")
    if positionals:
        return positionals[0]
    if values.get("slots") is not None:
        if settings.sfr_config_file:
            return os.path.expanduser(settings.sfr_config_file)
        raise UsageError(
            "-slots N starts a Spot Fleet, which needs its config: give the config file, or "
            f"set ANNEX_DEFAULT_SFR_CONFIG_FILE (for {settings.region}: "
            f"{knobs.region_local_name(settings.region)}.ANNEX_DEFAULT_SFR_CONFIG_FILE); "
            "for on-demand instances use -count N")
    if values.get("count") is None and not values.get("auto"):
        raise UsageError("give one fleet JSON config file (Spot Fleet or EC2 Fleet; - for "
                         "stdin), -slots N with ANNEX_DEFAULT_SFR_CONFIG_FILE set, -count N "
                         "for on-demand instances, or -auto")
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


def fleet_config(path: str) -> dict[str, Any]:
    """The fleet JSON config at ``path``: it must be one JSON object."""
    config = inputs.read_json(path)
    if not isinstance(config, dict):
        found = {list: "an array", str: "a string", bool: "true or false", type(None): "null"
                 }.get(type(config), "a number")
        raise InputError(f"{'standard input' if path == '-' else path}: expected one JSON "
                         f"object (a Spot Fleet or EC2 Fleet config), found {found}")
    return config


def config_positionals(values: dict[str, Any], positionals: list[str]) -> list[str]:
    """The original's -aws-spot-fleet-config-file FILE is the config given as an argument."""
    config = values.pop("config_file", None)
    if config is None:
        return positionals
    if positionals:
        raise UsageError("give the fleet config once: -aws-spot-fleet-config-file FILE, or "
                         "FILE as the last argument")
    return [config]


def from_originals_setup(knob: str, value: str | None, settings: knobs.ClientSettings) -> bool:
    """True (and says so) if ``value`` of ``knob`` is what the original condor_annex's -setup
    wrote into the user's config: its resource, which annexes made here cannot use.  It is
    then not sent: the daemon uses the admin's (or says none is set)."""
    local = knobs.region_local_name(settings.region)
    if not userconfig.originals_value(settings.user_config_file, knob, local, value):
        return False
    print(f"condor_annex: notice: not using {local}.{knob} = {value} from "
          f"{settings.user_config_file}: the original condor_annex's -setup wrote it, and this "
          f"release's instances cannot use it; instead: {userconfig.ORIGINALS_RESOURCES[knob]}",
          file=sys.stderr)
    return True


def say_originals_only(settings: knobs.ClientSettings) -> None:
    """Name the original's knobs that are set but not read (there is no lease function)."""
    for knob, instead in userconfig.ORIGINALS_ONLY.items():
        if knobs.raw(knob, settings.region):
            print(f"condor_annex: notice: {knob} (the original condor_annex's lease function) "
                  f"is not used: its lease functions cannot end annexes made here; set "
                  f"{instead} (condor_annex -aws-region {settings.region} -setup writes it)",
                  file=sys.stderr)


def annex_kind(values: dict[str, Any], positionals: list[str]) -> None:
    """The original's synopsis: ``-aws-on-demand ... -count N`` or ``-aws-spot-fleet ...
    -slots N`` with the fleet config.  Here the kind follows from a config being given or not;
    the flags are accepted, checked against that, and dropped."""
    on_demand, spot_fleet = values.pop("on_demand", False), values.pop("spot_fleet", False)
    if on_demand and spot_fleet:
        raise UsageError("give -aws-on-demand or -aws-spot-fleet, not both")
    if on_demand and values.get("slots") is not None:
        raise UsageError("-aws-on-demand starts on-demand instances: give -count N (-slots N "
                         "is a Spot Fleet's capacity)")
    if on_demand and positionals:
        raise UsageError("-aws-on-demand starts on-demand instances (-count N and the "
                         "-aws-on-demand-* settings); a fleet config starts a fleet: drop one")
    odi = [OPTION_NAMES[dest] for dest in ODI_KNOBS if values.get(dest)]
    if spot_fleet and odi:
        raise UsageError(f"-aws-spot-fleet starts a Spot Fleet from its config; "
                         f"{', '.join(odi)} are for on-demand instances")
    if spot_fleet and not positionals and values.get("count") is not None:
        raise UsageError("-aws-spot-fleet needs the fleet config: -aws-spot-fleet-config-file "
                         "FILE (or FILE as the last argument)")


def user_data(values: dict[str, Any]) -> str | None:
    """-aws-user-data DATA or -aws-user-data-file FILE, base64-encoded as EC2 takes it."""
    if values.get("user_data") is not None and values.get("user_data_file") is not None:
        raise UsageError("give -aws-user-data or -aws-user-data-file, not both")
    if values.get("user_data_file") is not None:
        data = inputs.read_bytes(values["user_data_file"], "-aws-user-data-file",
                                 MAX_USER_DATA_BYTES)
    elif values.get("user_data") is not None:
        data = values["user_data"].encode()
        if len(data) > MAX_USER_DATA_BYTES:
            raise UsageError(f"-aws-user-data: longer than EC2's limit of "
                             f"{MAX_USER_DATA_BYTES // 1024} KiB")
    else:
        return None
    return base64.b64encode(data).decode()


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
    encoded = user_data(values)
    if encoded is not None:
        fields["user_data"] = encoded
    if values.get("idtoken_file"):
        fields["idtoken"] = inputs.read_key(values["idtoken_file"], "-idtoken-file",
                                            private=True, limit=inputs.MAX_TOKEN_BYTES)
    return fields


AUTO_WITH_KEYS = ("-auto: an auto annex is paid by condor_annexd's own AWS identity (the "
                  "daemon never keeps your keys); leave out -public-key-file and "
                  "-secret-key-file (and ANNEX_DEFAULT_ACCESS_KEY_FILE / "
                  "ANNEX_DEFAULT_SECRET_KEY_FILE)")


def auto_settings(values: dict[str, Any]) -> dict[str, Any] | None:
    """-auto -max-instances N [-max-cost DOLLARS] as the request's ``auto``; None without
    -auto (-max-instances and -max-cost then belong to -plan only)."""
    if not values.get("auto"):
        for dest, flag in (("max_instances", "-max-instances"), ("max_cost", "-max-cost")):
            if values.get(dest):
                raise UsageError(f"{flag} goes with -auto (or -plan)")
        return None
    if values.get("count") is not None or values.get("slots") is not None:
        raise UsageError("give -auto or -count/-slots, not both: an auto annex sizes itself")
    if not values.get("max_instances"):
        raise UsageError("-auto needs -max-instances N: the most instances the daemon may run")
    auto: dict[str, Any] = {"max_instances": inputs.whole_number(
        "-max-instances", values["max_instances"], "instances", inputs.MAX_CAPACITY)}
    if values.get("max_cost"):
        auto["max_cost"] = inputs.dollars("-max-cost", values["max_cost"])
    return auto


class CreateAnnex(Command):
    """Start a leased annex from a Spot Fleet "JSON config" (as the EC2 console exports it)
    or an EC2 Fleet config (CreateFleet's input), or on-demand instances."""

    usage = "condor_annex [-annex-name NAME] [-lease-duration SECONDS] [-count N | -slots N | " \
            "-auto -max-instances N [-max-cost DOLLARS]] " \
            "[-lease-function-arn ARN] [-aws-region R] [-public-key-file F -secret-key-file F] " \
            "[-owner USERS | -no-owner] [-idle HOURS] [-config-dir DIR] [-tag NAME VALUE]... " \
            "[-idtoken-file F] CONFIG.json"
    flags = ("annex_name", "lease_duration", "duration", "count", "slots", "lease_function_arn",
             "auto", "max_instances", "max_cost",
             "region", "access_key_file", "secret_key_file", "owner", "no_owner", "idle",
             "config_dir", "tags", "idtoken_file", "yes", "user_data", "user_data_file") + \
        tuple(ODI_KNOBS)

    def confirm(self, values: dict[str, Any], request: dict[str, Any],
                settings: knobs.ClientSettings) -> bool:
        """At a terminal, show what will be started and its worst-case cost, and ask."""
        if values.get("yes") or not (sys.stdin.isatty() and sys.stdout.isatty()):
            return True
        reply = client.call(settings.socket_path, {**request, "dry_run": True})
        if not reply["ok"]:
            raise DaemonRefused(reply)
        self.notices_shown = tuple(reply.get("notices", []))
        for notice in self.notices_shown:
            print(f"condor_annex: notice: {notice}", file=sys.stderr, flush=True)
        found = reply["result"]["estimate"]
        cost = (f"${found['worst_case_cost']:.2f} at most (prices of {found['prices_date']})"
                if found["worst_case_cost"] is not None else "an unknown amount")
        what = {"on-demand": "on-demand instance(s)", "ec2-fleet": "EC2 Fleet capacity unit(s)"
                }.get(found["type"], "Spot Fleet capacity unit(s)")
        most = found.get("instances", found["capacity"])
        instances = "" if most == found["capacity"] else f" (up to {most} instances)"
        if "auto" in request["annex"]:  # it orders whole instances, whatever the weights
            print(f"Will let condor_annexd start up to {most} instance(s) as your "
                  f"jobs need them, for {found['hours']:.2f} hours or longer while they do, "
                  f"costing {cost} over those hours.")
        else:
            print(f"Will request {found['capacity']} {what}{instances} for "
                  f"{found['hours']:.2f} hours, costing {cost}.")
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
        auto = auto_settings(values)
        path = config_file(values, positionals, settings)
        source = path or "on-demand"
        annex: dict[str, Any] = {"config_source": source, "region": settings.region}
        name = values.get("annex_name")
        if name is not None:
            if not re.search(protocol.ANNEX_NAME_PATTERN, name):
                raise UsageError(f"-annex-name: {inputs.shown(name)!r} is not valid: use "
                                 f"{protocol.ANNEX_NAME_RULE}")
            annex["name"] = name
        annex["lease_duration"] = lease_seconds(values) or settings.lease_duration
        for dest, flag in (("count", "-count"), ("slots", "-slots")):
            if values.get(dest) is not None:
                annex["count"] = inputs.whole_number(flag, values[dest], "instances",
                                                     inputs.MAX_CAPACITY)
        # The daemon does not read the user's config file: send what -setup wrote there.
        arn = values.get("lease_function_arn") or settings.lease_function_arn
        if arn:
            annex["lease_function_arn"] = arn
        else:
            say_originals_only(settings)
        annex.update(bucket(settings))
        annex.update(join_defaults(settings))
        annex.update(instance_options(values))
        creds = credentials(key_files(values, settings))
        if auto is not None:
            if isinstance(creds, dict):  # keys (FROM INSTANCE names the daemon's own)
                raise UsageError(AUTO_WITH_KEYS)
            annex["auto"] = auto
        if path:
            annex["fleet_config"] = fleet_config(path)
        else:
            annex["on_demand"] = on_demand_settings(values, settings.region)
            if not values.get("odi_instance_profile_arn"):  # the knob's, as join_defaults
                annex["on_demand"].pop("instance_profile_arn", None)  # judged it
        return wants_progress(with_credentials({"version": protocol.VERSION,
                                                 "command": "create", "annex": annex}, creds))

    def progress(self, text: str) -> None:
        self.steps_at_terminal(text)

    def show(self, result: dict[str, Any], settings: knobs.ClientSettings) -> int:
        end = time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(result["lease_end"]))
        if result.get("recovered_launch"):  # finished by the daemon; nothing was added
            print(f"condor_annex: annex {result['annex_id']} is up (launch "
                  f"{result['recovered_launch']}, finished by condor_annexd); its lease ends "
                  f"{end}.", file=sys.stderr)
        elif result.get("added_launch"):  # the same name again: added under the annex's lease
            print(f"condor_annex: added launch {result['added_launch']} to annex "
                  f"{result['annex_id']}; its lease ends {end}.", file=sys.stderr)
        else:
            print(f"condor_annex: annex {result['annex_id']} started; its lease ends {end}.",
                  file=sys.stderr)
        if result.get("auto"):  # nothing started yet: the daemon sizes it from demand
            print(f"condor_annex: the daemon starts up to {result['max_instances']} "
                  "instance(s) as your jobs need them; see condor_annex -status.",
                  file=sys.stderr)
            return EXIT_OK
        print("\n".join(result.get("instance_ids") or
                        [result.get("spot_fleet_request_id") or result.get("fleet_id")]))
        return EXIT_OK
