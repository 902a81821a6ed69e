"""The knob reference: every configuration knob condor-annexd reads, who reads it and what it
means, rendered as README's knob table (``python -m annexd.config.knobref -markdown``) and as the
CONFIGURATION section of condor_annexd(8).

Defaults are not written here: a knob with a default takes it from the one table of defaults,
:data:`annexd.config.knobs.DEFAULTS`, which the code reads; only knobs without one say here what
"unset" means.  tests/test_docs.py checks that README's table is this module's output, and
tests/test_config_fragment.py that every knob the code reads is in it.
"""
from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from typing import Sequence

from annexd.config.knobs import DEFAULTS
from annex_ec2.closedpipe import quiet_when_output_closes


@dataclass(frozen=True)
class Knob:
    name: str
    reader: str                     # daemon, client (condor_annex), both, condor_master
    meaning: str
    unset: str = "—"                # what no value means; only for knobs not in DEFAULTS
    regional: bool = False          # a region-prefixed form (us_west_2.NAME) wins

    @property
    def default(self) -> str:
        if self.name not in DEFAULTS:
            return self.unset
        value = DEFAULTS[self.name]
        return f"`{str(value).lower() if isinstance(value, bool) else value}`"


KNOBS: tuple[Knob, ...] = (
    # --- the daemon's place in HTCondor
    Knob("ANNEXD", "condor_master", "the daemon's executable; `config.d/80annexd` also adds "
         "`ANNEXD` to `DAEMON_LIST`", unset="`$(BIN)/condor_annexd` (set by `80annexd`)"),
    Knob("ANNEXD_SOCKET", "both", "the Unix socket; its directory must not be writable by "
         "others"),
    Knob("ANNEXD_SOCKET_GROUP", "daemon", "only this group may connect (socket mode 0660)",
         unset="— (every local user, mode 0666)"),
    Knob("ANNEXD_JOURNAL", "daemon", "the journal (SQLite, mode 0600; never credentials)"),
    Knob("ANNEXD_LOG", "daemon", "the log, written through HTCondor's logging"),
    Knob("ANNEXD_DEBUG", "daemon", "log verbosity, as for any HTCondor daemon (`D_FULLDEBUG`)"),
    Knob("ANNEXD_PIDFILE", "daemon", "the pid file with `-daemonize`"),
    Knob("ANNEXD_NOT_RESPONDING_TIMEOUT", "daemon", "keep-alive period under condor_master",
         unset="`$(NOT_RESPONDING_TIMEOUT)`"),
    Knob("ANNEXD_MAX_CLIENTS", "daemon", "clients served at once (more are told \"busy\", "
         "which `condor_annex` waits out)"),
    Knob("ANNEXD_MAX_CLIENTS_PER_USER", "daemon", "clients of one user served at once"),
    Knob("ANNEXD_CLIENT_TIMEOUT_SECONDS", "daemon", "time for a whole request to arrive"),
    # --- the daemon's own AWS identity
    Knob("ANNEXD_ACCESS_KEY_FILE", "daemon", "the daemon's own AWS access key ID file, for "
         "the lease backstop and crash recovery; readable by the daemon's user only",
         unset="— (then the environment, then an instance role)"),
    Knob("ANNEXD_SECRET_KEY_FILE", "daemon", "the daemon's own AWS secret key file; set both "
         "or neither", unset="— (then the environment, then an instance role)"),
    Knob("ANNEXD_ALLOW_DAEMON_CREDENTIALS", "daemon", "may a request without keys use the "
         "daemon's own AWS identity"),
    # --- leases and AWS calls
    Knob("ANNEXD_LEASE_RATE_MINUTES", "daemon", "minutes between two runs of an annex's lease "
         "function (the rule's `rate(...)`): a lease is enforced at most this late"),
    Knob("ANNEXD_LEASE_CHECK_INTERVAL", "daemon", "seconds between two runs of the daemon's "
         "lease backstop"),
    # --- auto annexes (-auto): sized by demand
    Knob("ANNEX_DEMAND_INTERVAL", "daemon", "seconds between two looks at an auto annex's "
         "demand and supply (and so between two orders)"),
    Knob("ANNEX_DEMAND_JOBS", "daemon", "where an auto annex's idle jobs are read: "
         "`file:PATH` (`condor_q -long` output, re-read every cycle)",
         unset="— (the local schedd, through `htcondor2`)"),
    Knob("ANNEX_DEMAND_SLOTS", "daemon", "where an auto annex's slots are read: `file:PATH` "
         "(`condor_status -long` output, re-read every cycle)",
         unset="— (the pool's collector, through `htcondor2`)"),
    Knob("ANNEX_AUTO_LINGER", "daemon", "seconds an auto annex keeps its lease after its last "
         "demand (idle jobs routed to it, or claimed slots); its lease is extended while "
         "demand lasts"),
    Knob("ANNEXD_AWS_MAX_ATTEMPTS", "daemon", "attempts per AWS call (botocore standard "
         "retries)"),
    Knob("ANNEXD_AWS_TIMEOUT_SECONDS", "daemon", "read timeout of one AWS call (launch calls "
         "wait at least 60 s)"),
    Knob("ANNEXD_STEP_ATTEMPTS", "daemon", "attempts per step of a create, with capped "
         "exponential backoff and full jitter"),
    Knob("ANNEXD_RETRY_BASE_SECONDS", "daemon", "first backoff between step attempts"),
    Knob("ANNEXD_RETRY_MAX_SECONDS", "daemon", "longest backoff between step attempts"),
    Knob("ANNEXD_FUNCTION_CHECK_SECONDS", "daemon", "a create skips looking up the lease "
         "function when the same credentials saw it in that region this recently; 0: always "
         "look"),
    Knob("ANNEXD_SETUP_POLL_SECONDS", "daemon", "stack polling period during `-setup`"),
    Knob("ANNEX_SETUP_SERVICE_ROLE_ARN", "daemon", "the CloudFormation service role "
         "`-setup`'s stacks run as (`cfn/setup-role.json`, made once by the account "
         "administrator); the setup keys then need only `cfn/setup-policy.json`",
         unset="— (the stacks run with the setup keys' own permissions)"),
    # --- the admin's limits
    Knob("ANNEX_MAX_INSTANCES", "daemon", "most instances one annex, and one user's live "
         "annexes together, may run at once, whatever the weights (a fleet of capacity C runs "
         "up to C / its smallest `WeightedCapacity` instances)", unset="— (no limit)"),
    Knob("ANNEX_MAX_LEASE_DURATION", "daemon", "longest lease, in seconds, of a create or a "
         "lease change", unset="— (no limit)"),
    Knob("ANNEX_MAX_COST", "daemon", "most one annex may cost over its whole lease, in US "
         "dollars, at worst: the most instances it can run x the most one may cost per hour x "
         "the hours (also put into the fleet as AWS-enforced hourly caps)",
         unset="— (no limit)"),
    Knob("ANNEX_MAX_COST_PER_USER", "daemon", "most one user's live annexes may cost together "
         "over their leases, in US dollars, at worst", unset="— (no limit)"),
    # --- how instances join the pool
    Knob("COLLECTOR_HOST", "daemon", "the pool annex instances join (HTCondor's own knob)",
         unset="— (required)"),
    Knob("ANNEX_DEFAULT_IDTOKEN_FILE", "daemon", "the IDTOKEN instances join the pool with, "
         "unless a user gives `-idtoken-file`", unset="— (then a minted token)"),
    Knob("ANNEX_TOKEN_SIGNING_KEY", "daemon", "the signing key of the IDTOKEN minted for each "
         "annex: `POOL` is the file `SEC_TOKEN_POOL_SIGNING_KEY_FILE` names, any other name a "
         "file in `SEC_PASSWORD_DIRECTORY` (a dedicated key is recommended)"),
    Knob("ANNEX_TOKEN_IDENTITY", "daemon", "the identity (`sub`) of each annex's token; "
         "`{annex}` and `{user}` are replaced by the annex's name and owner"),
    Knob("ANNEX_TOKEN_LIFETIME", "daemon", "seconds a minted token is valid after its minting "
         "(at least 60; never past the lease end + 15 minutes); the daemon renews the tokens of "
         "every annex of its identity's account at half their life"),
    Knob("ANNEX_SEND_POOL_PASSWORD", "daemon", "ship the pool password to annex instances "
         "instead of a minted token (with a notice on every create)"),
    Knob("SEC_PASSWORD_FILE", "daemon", "the pool password, if the pool uses one (HTCondor's "
         "own knob)", unset="`$(LOCAL_DIR)/passwords.d/POOL` (HTCondor's)"),
    Knob("ANNEX_DEFAULT_UNCLAIMED_TIMEOUT", "daemon", "seconds an instance may stay unclaimed "
         "before it shuts down (`-idle HOURS` overrides)"),
    # --- regions and endpoints
    Knob("ANNEX_DEFAULT_AWS_REGION", "both", "the region used without `-aws-region`"),
    Knob("ANNEX_DEFAULT_EC2_URL", "daemon", "EC2 endpoint; a value naming another region "
         "than the annex's is ignored", unset="— (AWS's regional endpoint)", regional=True),
    Knob("ANNEX_DEFAULT_CWE_URL", "daemon", "EventBridge (CloudWatch Events) endpoint",
         unset="— (AWS's regional endpoint)", regional=True),
    Knob("ANNEX_DEFAULT_LAMBDA_URL", "daemon", "Lambda endpoint",
         unset="— (AWS's regional endpoint)", regional=True),
    Knob("ANNEX_DEFAULT_S3_URL", "daemon", "S3 endpoint",
         unset="— (AWS's regional endpoint)", regional=True),
    Knob("ANNEX_DEFAULT_CF_URL", "daemon", "CloudFormation endpoint",
         unset="— (AWS's regional endpoint)", regional=True),
    Knob("ANNEX_DEFAULT_STS_URL", "daemon", "STS endpoint",
         unset="— (AWS's regional endpoint)", regional=True),
    Knob("ANNEX_DEFAULT_IAM_URL", "daemon", "IAM endpoint, used by `-check-setup` only",
         unset="— (AWS's global endpoint)", regional=True),
    # --- what -setup writes into each user's configuration
    Knob("ANNEX_DEFAULT_LEASE_FUNCTION_ARN", "client, then daemon", "the lease function "
         "(`-lease-function-arn` overrides)", unset="— (`-setup` writes it)", regional=True),
    Knob("ANNEX_DEFAULT_S3_BUCKET", "client, then daemon", "the bucket for annex "
         "configurations", unset="— (`-setup` writes it)", regional=True),
    Knob("ANNEX_DEFAULT_ACCESS_KEY_FILE", "client", "the user's AWS access key ID file "
         "(`-public-key-file` overrides)", unset="— (`-setup` writes it)", regional=True),
    Knob("ANNEX_DEFAULT_SECRET_KEY_FILE", "client", "the user's AWS secret key file, mode 600 "
         "(`-secret-key-file` overrides)", unset="— (`-setup` writes it)", regional=True),
    Knob("ANNEX_DEFAULT_ODI_INSTANCE_PROFILE_ARN", "client, then daemon", "the instance "
         "profile of instances whose launch names none (on-demand, Spot Fleet launch "
         "specifications); without one such a create is refused; the daemon's value is the "
         "only one an annex it pays for may use", unset="— (`-setup` writes it)",
         regional=True),
    Knob("ANNEX_DEFAULT_FLEET_ROLE_ARN", "daemon", "the Spot Fleet role (`IamFleetRole`) an "
         "annex paid by the daemon may use", unset="— (such annexes are on-demand only)",
         regional=True),
    Knob("ANNEX_DEFAULT_LAUNCH_TEMPLATE", "daemon", "the launch template (ID or name; its "
         "`$Default` version) an EC2 Fleet annex paid by the daemon launches from; the "
         "administrator tags it `htcondor:AnnexSiteTemplate=true`, the only tag the daemon "
         "policy lets its identity launch from",
         unset="— (such annexes are Spot Fleet or on-demand only)", regional=True),
    Knob("ANNEX_DEFAULT_USER_DATA_FILE", "daemon", "the user data an annex paid by the daemon "
         "may use", unset="— (none)", regional=True),
    Knob("ANNEX_DEFAULT_ODI_SECURITY_GROUP_IDS", "client, then daemon", "the security groups "
         "of instances whose launch names none, likewise", unset="— (`-setup` writes it)",
         regional=True),
    # --- the users' defaults
    Knob("ANNEX_DEFAULT_SFR_CONFIG_FILE", "client", "the Spot Fleet config `-slots N` uses "
         "when no config file is given (the original's knob)",
         unset="— (`-slots N` alone is refused)", regional=True),
    Knob("ANNEX_DEFAULT_LEASE_DURATION", "client", "lease in seconds without "
         "`-lease-duration`", regional=True),
    Knob("ANNEX_DEFAULT_ODI_IMAGE_ID", "client", "on-demand annexes' AMI; it must have "
         "`condor_annex_ec2` installed", unset="HTCondor's param table", regional=True),
    Knob("ANNEX_DEFAULT_ODI_INSTANCE_TYPE", "client", "on-demand annexes' instance type",
         unset="HTCondor's param table", regional=True),
    Knob("ANNEX_DEFAULT_ODI_KEY_NAME", "client, then daemon", "on-demand annexes' SSH key "
         "pair; the daemon's value is the only one an annex it pays for may use",
         unset="HTCondor's param table", regional=True),
    Knob("USER_CONFIG_FILE", "client", "the user's HTCondor configuration, where `-setup` "
         "writes (HTCondor's own knob; relative: inside `~/.condor/`)",
         unset="`user_config` (HTCondor's)"),
)


def names() -> set[str]:
    return {knob.name for knob in KNOBS}


def plain() -> tuple[tuple[str, str], ...]:
    """(knob, what it is) without markdown, for the manual page's CONFIGURATION section."""
    def text(markdown: str) -> str:
        return re.sub(r"^—", "none", markdown.replace("`", ""))
    readers = {"both": "condor_annexd and condor_annex", "daemon": "condor_annexd",
               "client": "condor_annex", "client, then daemon": "condor_annex, then condor_annexd"}
    return tuple((knob.name, f"{text(knob.meaning)}. Default: {text(knob.default)}. Read by "
                  f"{readers.get(knob.reader, knob.reader)}"
                  f"{', per region' if knob.regional else ''}.") for knob in KNOBS)


def markdown() -> str:
    """README's knob table."""
    rows = ["| knob | default | read by | meaning |", "|---|---|---|---|"]
    for knob in KNOBS:
        reader = knob.reader + (", per region" if knob.regional else "")
        rows.append(f"| `{knob.name}` | {knob.default} | {reader} | {knob.meaning} |")
    return "\n".join(rows) + "\n"


@quiet_when_output_closes
def main(argv: Sequence[str] | None = None) -> int:
    if list(sys.argv[1:] if argv is None else argv) != ["-markdown"]:
        print("usage: python -m annexd.config.knobref -markdown   (README's knob table)",
              file=sys.stderr)
        return 1
    sys.stdout.write(markdown())
    return 0


if __name__ == "__main__":
    sys.exit(main())
