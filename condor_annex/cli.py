"""``condor_annex``: the thin client of ``condor_annexd``.

It reads the user's files itself (the fleet JSON config, the AWS key files, the user's
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
problems; 10 the user answered no at the confirmation prompt (nothing was started).
"""
from __future__ import annotations

import re
import sys
from typing import Any, Sequence

from annexd.config import knobs
from annexd.rpc import protocol
from annexd.process.version import version_text

from annexd.usage import manpage

from . import about, client, inputs
from .command import (EXIT_DAEMON, EXIT_DECLINED, EXIT_INPUT, EXIT_OK, EXIT_USAGE, Command,
                      DaemonRefused, lease_seconds)
from .create import ODI_KNOBS, CreateAnnex, annex_kind, config_positionals
from .extend import Extend
from .inputs import InputError
from .off import Off
from .plan import Plan
from annexd.usage.options import Option, UsageError, parse
from .setup import CheckSetup, Setup
from .status import Status
from annex_ec2.closedpipe import quiet_when_output_closes

#: The original condor_annex's flags (its manual, docs/man-pages/condor_annex.rst, and its
#: annex.cpp) that have no counterpart here: refused, each naming what to use instead.
_ENDPOINT = ("the daemon calls AWS at the endpoints its admin configured ({knob}, "
             "condor_config_val {knob}); a user cannot redirect them")
ORIGINAL_ONLY = (
    Option(("-aws-default-user-data",), "default_user_data", "DATA", refused=(
        "use -aws-user-data DATA, which sets the user data of every instance (replacing the "
        "fleet config's); or put UserData in the config's launch specifications")),
    Option(("-aws-default-user-data-file",), "default_user_data_file", "FILE", refused=(
        "use -aws-user-data-file FILE, which sets the user data of every instance (replacing "
        "the fleet config's); or put UserData in the config's launch specifications")),
    Option(("-aws-ec2-url",), "ec2_url", "URL",
           refused=_ENDPOINT.format(knob="ANNEX_DEFAULT_EC2_URL")),
    Option(("-aws-events-url",), "events_url", "URL",
           refused=_ENDPOINT.format(knob="ANNEX_DEFAULT_CWE_URL")),
    Option(("-aws-lambda-url",), "lambda_url", "URL",
           refused=_ENDPOINT.format(knob="ANNEX_DEFAULT_LAMBDA_URL")),
    Option(("-aws-s3-url",), "s3_url", "URL",
           refused=_ENDPOINT.format(knob="ANNEX_DEFAULT_S3_URL")),
    Option(("-aws-s3-config-path",), "s3_config_path", "BUCKET/KEY", refused=(
        "an annex's configuration is always config-NAME.tar.gz in the bucket "
        "ANNEX_DEFAULT_S3_BUCKET, the only object its instances may read")),
)

OPTIONS = {option.dest: option for option in (
    Option(("-annex-name",), "annex_name", "NAME",
           f"name of the annex ({protocol.ANNEX_NAME_RULE}); generated if omitted"),
    Option(("-lease-duration",), "lease_duration", "SECONDS",
           "the annex is torn down this many seconds from now "
           "(default ANNEX_DEFAULT_LEASE_DURATION)"),
    Option(("-count",), "count", "N",
           "override the config's TargetCapacity; with no config file: start N on-demand "
           "instances"),
    Option(("-slots",), "slots", "N",
           "a Spot Fleet's TargetCapacity; with no config file: the fleet config "
           "ANNEX_DEFAULT_SFR_CONFIG_FILE names (never on-demand instances)"),
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
           "the lease Lambda (default ANNEX_DEFAULT_LEASE_FUNCTION_ARN)",
           aliases=("-aws-spot-fleet-lease-function-arn", "-aws-on-demand-lease-function-arn")),
    Option(("-aws-on-demand",), "on_demand", None,
           "start on-demand instances (-count N, no fleet config): the original's synopsis"),
    Option(("-aws-spot-fleet",), "spot_fleet", None,
           "start a Spot Fleet (from the fleet config): the original's synopsis"),
    Option(("-aws-region",), "region", "REGION",
           "use this region's setup and knobs (default ANNEX_DEFAULT_AWS_REGION)"),
    Option(("-public-key-file", "-access-key-file"), "access_key_file", "FILE",
           "file holding the AWS access key ID (default ANNEX_DEFAULT_ACCESS_KEY_FILE)",
           aliases=("-aws-access-key-file", "-aws-public-key-file")),
    Option(("-secret-key-file", "-private-key-file"), "secret_key_file", "FILE",
           "file holding the AWS secret key, mode 600 (default ANNEX_DEFAULT_SECRET_KEY_FILE)",
           aliases=("-aws-secret-key-file", "-aws-private-key-file")),
    Option(("-aws-spot-fleet-config-file",), "config_file", "FILE",
           "the fleet JSON config (the same as giving it as the last argument)"),
    Option(("-aws-user-data",), "user_data", "DATA",
           "EC2 user data for every instance (on-demand, or a Spot Fleet's "
           "LaunchSpecifications; replaces theirs)"),
    Option(("-aws-user-data-file",), "user_data_file", "FILE",
           "as -aws-user-data, read from FILE (at most 16 KiB)"),
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
    Option(("-classad",), "classad", None,
           "with -status: print ClassAds (old syntax, as condor_status -l)",
           aliases=("-classads",)),
    Option(("-long",), "long", None, "with -status: also list each annex's instance IDs"),
    Option(("-off",), "off", None, "with -annex-name: end that annex now"),
    Option(("-plan",), "plan", "JOBS_FILE",
           "print what an auto annex would order for the idle jobs in JOBS_FILE "
           "(condor_q -long output), and why; calls no AWS API"),
    Option(("-auto",), "auto", None,
           "let the daemon size the annex from its demand (idle jobs routed to it), from "
           "none up to -max-instances; on-demand settings or a Spot Fleet config, paid by "
           "the daemon's identity"),
    Option(("-max-instances",), "max_instances", "N",
           "with -plan or -auto: order at most N instances"),
    Option(("-max-cost",), "max_cost", "DOLLARS",
           "with -plan or -auto: spend at most this many US dollars, at worst"),
    Option(("-yes",), "yes", None, "do not ask for confirmation"),
    Option(("-setup",), "setup", None,
           "create or update this region's CloudFormation stacks and write their knobs"),
    Option(("-check-setup",), "check_setup", None, "check this region's setup"),
    Option(("-help",), "help", None, "print this help and exit"),
    Option(("-version",), "version", None, "print the version and exit"),
    *ORIGINAL_ONLY,
)}

COMMANDS = (CreateAnnex, Extend, Status, Off, Setup, CheckSetup, Plan)

#: condor_annex(1) and -help, from the same usage lines and flag table.
PAGE = about.page(tuple(c.usage for c in COMMANDS), tuple(OPTIONS.values()))


def select(values: dict[str, Any], positionals: list[str]) -> Command:
    verbs = [flag for flag in ("setup", "check_setup", "status", "off", "plan")
             if values.get(flag)]
    if len(verbs) > 1:
        raise UsageError(f"give only one of {', '.join(OPTIONS[v].flag for v in verbs)}")
    changing_lease = (not positionals and values.get("annex_name")
                      and lease_seconds(values) is not None and values.get("count") is None
                      and not values.get("auto")
                      and values.get("slots") is None
                      and not any(values.get(dest) for dest in ODI_KNOBS))
    command = {"setup": Setup, "check_setup": CheckSetup, "status": Status, "off": Off,
               "plan": Plan}.get(
        verbs[0] if verbs else "", Extend if changing_lease else CreateAnnex)()
    stray = [OPTIONS[d].flag for d in values
             if d not in command.flags and d not in ("help", "version")]
    if stray:
        raise UsageError(f"{', '.join(stray)} cannot be used here ({command.usage})")
    return command


#: The original's subcommands, bare words: ``condor_annex [-annex-name N] status`` / ``off``.
SUBCOMMANDS = {"status": "status", "off": "off"}


def subcommand(values: dict[str, Any], positionals: list[str]) -> list[str]:
    """``condor_annex status`` is ``-status``, ``condor_annex off`` is ``-off``.

    The original handed the words after them to condor_status / condor_off; here they are
    this command's own flags (``-annex-name``, ``-classad``, ...), and other words are refused.
    """
    if not positionals or positionals[0] not in SUBCOMMANDS:
        return positionals
    word, rest = positionals[0], positionals[1:]
    if rest:
        raise UsageError(f"'{word}' takes no more words (the original passed them to "
                         f"condor_{word}); give -{SUBCOMMANDS[word]}'s flags instead, e.g. "
                         f"condor_annex -annex-name NAME {word}")
    values[SUBCOMMANDS[word]] = True
    return rest


def usage_text() -> str:
    return manpage.help_text(PAGE)


@quiet_when_output_closes
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
        positionals = subcommand(values, positionals)
        positionals = config_positionals(values, positionals)
        annex_kind(values, positionals)
        if values.get("help"):
            print(usage_text())
            return EXIT_OK
        if values.get("version"):
            print(version_text("condor_annex"))
            return EXIT_OK
        command = select(values, positionals)
        region = values.get("region")
        if region is not None and not re.search(protocol.REGION_PATTERN, region):
            raise UsageError(f"-aws-region: {inputs.shown(region)!r} is not an AWS region name")
        settings = knobs.ClientSettings.load(region)
        if isinstance(command, Plan):   # worked out here: no daemon, no AWS
            return command.run(values, positionals, settings)
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
            return EXIT_DECLINED
        reply = client.call(settings.socket_path, request, on_progress=command.progress,
                            on_busy=_say_waiting)
    except DaemonRefused as refused:
        return command.failed(refused.reply)
    except client.DaemonUnreachable as error:
        print(f"condor_annex: error: {error}", file=sys.stderr)
        return EXIT_DAEMON
    for notice in reply.get("notices", []):
        if notice in command.notices_shown:
            continue
        print(f"condor_annex: notice: {notice}", file=sys.stderr)
    if not reply["ok"]:
        return command.failed(reply)
    return command.show(reply["result"], settings)


if __name__ == "__main__":
    sys.exit(main())
