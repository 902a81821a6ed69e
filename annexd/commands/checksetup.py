"""``condor_annex -check-setup``: does what a create in this region would use work?

One line per thing a create uses, each checked the way the create (or its instances, or AWS)
uses it, with the caller's keys: the credentials and their account, the configuration bucket
(it exists, in this region), the lease function (it exists, runs this release's code, and its
resource policy lets EventBridge rules of the account invoke it), the instance profile and the
security groups instances get, the daemon's signing key for the annexes' tokens, and the
setup's stacks.  The values are a create's: the user's configuration first (condor_annex sends
them), then the daemon's.  Every call only reads.
"""
from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass
from typing import Any, Callable

from annexd.aws import AnnexAws, AwsError, Denied, NotFound, leasecode, stacks
from annexd.config import hints
from annexd.config.knobs import PoolSettings, RegionSettings, region_local_name
from annexd.instance_config import idtoken
from annexd.launch import adjust
from annexd.launch.plan import LAMBDA_ARN, join_defaults

#: What a rule's target carries for the lease: its ARN is what the policy must admit.
EVENTS_PRINCIPAL = "events.amazonaws.com"


class Problem(Exception):
    """The thing checked will not work as a create uses it; the message says how to fix."""


@dataclass(frozen=True)
class Uses:
    """What a create in the region would use."""

    region: str
    lease_function_arn: str | None
    bucket: str | None
    join: adjust.JoinDefaults
    pool: PoolSettings


def uses(request: dict[str, Any], settings: RegionSettings, pool: PoolSettings) -> Uses:
    sent = request.get("uses", {})
    return Uses(region=settings.region,
                lease_function_arn=sent.get("lease_function_arn") or settings.lease_function_arn,
                bucket=sent.get("bucket") or settings.bucket,
                join=join_defaults(sent, settings), pool=pool)


def _unset(knob: str, region: str) -> Problem:
    return Problem(f"none: set {region_local_name(region)}.{knob} "
                   f"({hints.setup_command(region)} writes it)")


def credentials(aws: AnnexAws, use: Uses) -> str:
    account, principal, _ = aws.caller()  # STS GetCallerIdentity: no permission needed
    return f"AWS account {account} ({principal})"


def bucket(aws: AnnexAws, use: Uses) -> str:
    if not use.bucket:
        raise _unset("ANNEX_DEFAULT_S3_BUCKET", use.region)
    where = aws.bucket_region(use.bucket)
    if where != use.region:
        raise Problem(f"{use.bucket} is in {where}, not {use.region}: instances read their "
                      f"configuration from a bucket of their region; run "
                      f"{hints.setup_command(use.region)}")
    return f"{use.bucket}, in {where}"


def invocable_by_eventbridge(policy: dict[str, Any] | None, arn: str) -> bool:
    """Whether the function's resource policy lets EventBridge rules of its own account and
    region invoke it: an Allow for events.amazonaws.com of lambda:InvokeFunction whose
    conditions (AWS:SourceArn, AWS:SourceAccount) admit such a rule.  A condition on any
    other key is not assumed to hold."""
    _, partition, _, region, account = arn.split(":")[:5]
    rule = f"arn:{partition}:events:{region}:{account}:rule/annex-check-setup"
    context = {"aws:sourcearn": rule, "aws:sourceaccount": account}

    def listed(value: Any) -> list[str]:
        return value if isinstance(value, list) else [value]

    def admits(condition: dict[str, Any]) -> bool:
        for operator, keys in condition.items():
            for key, wanted in keys.items():
                have = context.get(key.lower())
                if have is None:
                    return False
                if operator in ("ArnLike", "StringLike"):
                    ok = any(fnmatch.fnmatchcase(have, w) for w in listed(wanted))
                elif operator in ("ArnEquals", "StringEquals"):
                    ok = have in listed(wanted)
                else:
                    return False
                if not ok:
                    return False
        return True

    for statement in (policy or {}).get("Statement", []):
        principal = statement.get("Principal", {})
        services = listed(principal.get("Service", [])) if isinstance(principal, dict) else []
        actions = listed(statement.get("Action", []))
        if statement.get("Effect") == "Allow" and EVENTS_PRINCIPAL in services and \
                any(a in ("lambda:InvokeFunction", "lambda:*", "*") for a in actions) and \
                admits(statement.get("Condition", {})):
            return True
    return False


def lease_function(aws: AnnexAws, use: Uses) -> str:
    arn = use.lease_function_arn
    if not arn:
        raise _unset("ANNEX_DEFAULT_LEASE_FUNCTION_ARN", use.region)
    match = LAMBDA_ARN.match(arn)
    if not match or match.group("region") != use.region:
        raise Problem(f"{arn} is not a Lambda function of {use.region}: EventBridge calls "
                      "only functions of its own region")
    setup = hints.setup_command(use.region)
    try:
        code = aws.function_code_sha256(arn)
    except NotFound:
        raise Problem(f"{arn} does not exist: run {setup}") from None
    if code != leasecode.code_sha256():
        raise Problem(f"{arn} runs other code than this release ships: run {setup} to update it")
    if not invocable_by_eventbridge(aws.function_policy(arn), arn):
        raise Problem(f"{arn}: its resource policy does not let EventBridge rules invoke it, so "
                      f"no lease would ever end an annex: run {setup} (it adds the "
                      "permission)")
    return f"{arn}: this release's code; EventBridge rules may invoke it"


def instance_profile(aws: AnnexAws, use: Uses) -> str:
    arn = use.join.instance_profile_arn
    if not arn:
        raise _unset(adjust.PROFILE_KNOB, use.region)
    try:
        roles = aws.instance_profile_roles(arn)
    except NotFound:
        raise Problem(f"{arn} does not exist: run {hints.setup_command(use.region)}") from None
    if not roles:
        raise Problem(f"{arn} has no role: instances could not read their configuration")
    return f"{arn} (role {', '.join(roles)})"


def security_groups(aws: AnnexAws, use: Uses) -> str:
    groups = list(use.join.security_group_ids)
    if not groups:
        raise _unset(adjust.GROUPS_KNOB, use.region)
    try:
        found = aws.security_groups(groups)
    except NotFound as error:
        raise Problem(f"{', '.join(groups)}: {error.message}; run "
                      f"{hints.setup_command(use.region)}") from None
    return ", ".join(f"{g['GroupId']} ({g.get('GroupName', '')})" for g in found)


def signing_key(aws: AnnexAws, use: Uses) -> str:
    """How the instances of a create will authenticate, and whether the daemon can do it."""
    pool = use.pool
    if pool.idtoken_file:
        if not os.access(pool.idtoken_file, os.R_OK):
            raise Problem(f"ANNEX_DEFAULT_IDTOKEN_FILE {pool.idtoken_file}: condor_annexd "
                          "cannot read it")
        return f"none needed: instances use ANNEX_DEFAULT_IDTOKEN_FILE {pool.idtoken_file}"
    if pool.send_password:
        if not pool.password_file:
            raise Problem("ANNEX_SEND_POOL_PASSWORD = true, but SEC_PASSWORD_FILE names no "
                          "file")
        return f"none needed: instances get the pool password ({pool.password_file})"
    if pool.token is None:
        raise Problem("no signing key is configured (ANNEX_TOKEN_SIGNING_KEY)")
    try:
        idtoken.read_key(pool.token)
    except idtoken.TokenKeyError as error:
        raise Problem(f"{error}; each annex's token could not be made (the admin's "
                      "ANNEX_TOKEN_SIGNING_KEY)") from None
    return f"{pool.token.key_knob} ({pool.token.key_file}): condor_annexd can sign with it"


def setup_stacks(aws: AnnexAws, use: Uses) -> str:
    problems = stacks.Setup(aws, lambda text: None).check()
    if problems:
        raise Problem("; ".join(problems))
    return f"all {len(stacks.STACKS)} complete"


#: (what, how) in the order they are shown.
CHECKS: tuple[tuple[str, Callable[[AnnexAws, Uses], str]], ...] = (
    ("credentials", credentials),
    ("bucket", bucket),
    ("lease function", lease_function),
    ("instance profile", instance_profile),
    ("security group", security_groups),
    ("signing key", signing_key),
    ("setup stacks", setup_stacks),
)


def check(aws: AnnexAws, use: Uses) -> list[dict[str, Any]]:
    """One line per check: {"what", "ok", "text"}."""
    lines = []
    for what, how in CHECKS:
        try:
            lines.append({"what": what, "ok": True, "text": how(aws, use)})
        except Problem as problem:
            lines.append({"what": what, "ok": False, "text": str(problem)})
        except Denied as error:
            lines.append({"what": what, "ok": False, "text": f"{error}: these keys may not "
                          "look (the user policy in cfn/user-policy.json allows it)"})
        except AwsError as error:
            lines.append({"what": what, "ok": False, "text": str(error)})
        if what == "credentials" and not lines[-1]["ok"]:
            break  # nothing else can be asked with keys AWS does not take
    return lines
