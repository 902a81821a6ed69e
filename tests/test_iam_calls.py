"""Least privilege derived from what the code calls.

Every principal runs its scenarios against the emulator with moto's recorder on
(:mod:`iam_scenarios`); each recorded call becomes the authorisations AWS makes for it
(:mod:`localaws.iamactions`); each is judged against that principal's policy as written in
``cfn/`` (:mod:`localaws.iampolicy`).  The test fails on a call its policy refuses, on a
granted action no scenario uses, and -- the mutation check -- it would fail if any one needed
action were taken out of a policy.
"""
from __future__ import annotations

import json
import os
from typing import Callable

import pytest

from condor_annex import roletemplate
from iam_scenarios import (ACCOUNT, DAEMON_KEY, INSTANCE_KEY, LEASE_KEY, SETUP_KEY, USER_KEY,
                           Facts, Recording, record_everything)
from localaws import cfntemplate, daemonpolicy, setuppolicy
from localaws.iamactions import Resources, requests_of
from localaws.iampolicy import (Policy, Request, action_matches, as_principal, assumed_role_keys,
                                document_statements, role_statements)
from localaws.pool import REGION

from conftest import copy_of

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CFN = os.path.join(ROOT, "cfn")
#: Actions a principal is granted for a service that acts on its behalf, never called by our
#: code: the Lambda service writes the lease function's log with its role.  (CloudFormation
#: makes the setup's resources as its own service role, cfn/setup-role.json: nothing of
#: that is the setup keys'.)
USED_BY_THE_SERVICE = {
    "lease function": {"logs:CreateLogStream", "logs:PutLogEvents"},
}


def base_context(facts: Facts) -> dict[str, str]:
    return {"AWS::Partition": "aws", "AWS::Region": REGION, "AWS::AccountId": ACCOUNT,
            "Partition": "aws", "AccountId": ACCOUNT, "S3BucketName": facts.bucket}


def template(name: str) -> dict:
    return cfntemplate.load(os.path.join(CFN, name))


def user_policy(facts: Facts) -> Policy:
    with open(os.path.join(CFN, "user-policy.json"), encoding="utf-8") as handle:
        return Policy(document_statements(handle.read(), base_context(facts)), "user policy")


def daemon_policy(facts: Facts) -> Policy:
    with open(daemonpolicy.TARGET, encoding="utf-8") as handle:
        return Policy(document_statements(handle.read(), base_context(facts)), "daemon policy")


def setup_policy(facts: Facts) -> Policy:
    with open(os.path.join(CFN, "setup-policy.json"), encoding="utf-8") as handle:
        return Policy(document_statements(handle.read(), base_context(facts)), "setup policy")


def lease_policy(facts: Facts) -> Policy:
    context = {**base_context(facts), "LeaseFunctionLogGroup.Arn":
               f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/aws/lambda/"
               "HTCondorAnnex-LeaseFunction:*"}
    return Policy(role_statements(template("lease-function.yaml"), "LeaseFunctionRole",
                                  context), "lease function role")


def instance_policy(facts: Facts, shared: bool = False) -> Policy:
    """The setup's instance role; ``shared``: with the transition's grant of every annex's
    object (the stack parameter ShareEveryAnnexsConfig)."""
    context = {**base_context(facts), "InstanceConfigurationProfile.Arn": facts.profile_arn,
               "InstanceConfigurationRole.Arn": facts.instance_role_arn}
    return Policy(role_statements(template("instance-profile.yaml"),
                                  "InstanceConfigurationRole", context, {"Shared": shared}),
                  "instance role" + (" (shared)" if shared else ""))


def role_template_policy(facts: Facts, annexes: list[str]) -> Policy:
    """condor_annex_role_template's role, one per annex whose instance booted, together
    (made from the annex's name and region only: what is known before it is created)."""
    context = {**base_context(facts), "InstanceProfile.Arn": facts.profile_arn,
               "Role.Arn": facts.instance_role_arn}
    statements = []
    for annex in annexes:
        statements += role_statements(roletemplate.template(facts.bucket, REGION, annex),
                                      "Role", context)
    return Policy(statements, "role template")


#: principal -> (its access key in the recording, its policy)
PRINCIPALS: dict[str, tuple[str, Callable[[Facts], Policy]]] = {
    "user": (USER_KEY, user_policy),
    "daemon": (DAEMON_KEY, daemon_policy),
    "lease function": (LEASE_KEY, lease_policy),
    "instance": (INSTANCE_KEY, instance_policy),
    "setup": (SETUP_KEY, setup_policy),
}
#: each shipped policy -> the principals that act under it
POLICIES: dict[str, tuple[Callable[[Facts], Policy], tuple[str, ...]]] = {
    "cfn/user-policy.json": (user_policy, ("user", "daemon")),
    # The daemon's identity makes the annexes it pays for with the calls a user's keys make.
    "cfn/daemon-policy.json": (daemon_policy, ("user", "daemon")),
    "lease-function.yaml LeaseFunctionRole": (lease_policy, ("lease function",)),
    "instance-profile.yaml InstanceConfigurationRole": (instance_policy, ("instance",)),
    "cfn/setup-policy.json": (setup_policy, ("setup",)),
}


@pytest.fixture(scope="module")
def recording(moto_server, tmp_path_factory) -> Recording:
    return record_everything(moto_server, str(tmp_path_factory.mktemp("iam")))


def principal_keys(url: str, key: str) -> dict[str, str]:
    """The principal's own condition keys, as STS names it for that access key: what the
    user policy's ``${aws:userid}`` becomes (and what the daemon tagged its annexes with)."""
    import boto3
    sts = boto3.client("sts", endpoint_url=url, region_name=REGION, aws_access_key_id=key,
                       aws_secret_access_key="testing")
    return {"aws:userid": sts.get_caller_identity()["UserId"]}


@pytest.fixture(scope="module")
def judged(recording, moto_server) -> dict[str, list[Request]]:
    """principal -> the authorisations its calls needed, in order, each with the
    principal's own keys in its context (an instance's: its role session's, as IAM sees an
    instance role's credentials: aws:userid = <role-id>:<instance-id>)."""
    facts = recording.facts
    resources = Resources(ACCOUNT, facts.tags, facts.profile_roles, facts.template_profiles,
                          template_ids=facts.template_ids)
    keys = {key: name for name, (key, _) in PRINCIPALS.items()}
    keys.update({key: "instance" for key in facts.instance_keys})
    context = {key: principal_keys(moto_server.url, key)
               for name, (key, _) in PRINCIPALS.items() if name != "instance"}
    context.update({key: assumed_role_keys(*user_id.split(":", 1))
                    for key, user_id in facts.instance_keys.items()})
    found: dict[str, list[Request]] = {name: [] for name in PRINCIPALS}
    mine = [call for call in recording.calls if call.key_id in keys]
    for call, request in requests_of(mine, resources):
        found[keys[call.key_id]] += as_principal([request], context[call.key_id])
    return found


def refused(policy: Policy, requests: list[Request]) -> list[str]:
    return sorted({str(r) for r in requests if not policy.allows(r)})


def test_the_scenarios_did_their_work(recording, judged):
    """The recording means something only if every scenario did what it is for."""
    lease_results = recording.outcomes["lease"]
    assert all(result["expired"] and result["deleted_rule"] and result["deleted_config"]
               for result in lease_results.values()), lease_results
    for kind in ("u-sf", "u-lt", "u-ec2m", "u-ec2i", "u-strag-sf2", "u-strag-ec22"):
        assert lease_results[kind]["cancelled_fleets"], kind
    assert lease_results["u-odi2"]["terminated_instances"]
    booted = recording.outcomes["instance"]
    assert "Setup successful" in recording.outcomes["setup"].stdout
    checked = recording.outcomes["check-setup"].stdout
    for what in ("credentials", "bucket", "lease function", "instance profile",
                 "security group", "signing key", "setup stacks"):
        assert f": {what}: " in checked, (what, checked)
    for name in ("boot", "refresh", "watch", "boot u-lt", "boot u-ec2m", "refresh gone"):
        assert booted[name].returncode == 0, (name, booted[name].stderr)
    assert "config object is gone" in booted["refresh gone"].stderr
    assert booted["boot gone"].returncode == 1 and "has not copied" in booted["boot gone"].stderr
    for name in PRINCIPALS:
        assert judged[name], f"no calls recorded for {name}"


@pytest.mark.parametrize("principal", PRINCIPALS)
def test_every_call_is_allowed_by_its_principals_policy(principal, recording, judged):
    policy = PRINCIPALS[principal][1](recording.facts)
    assert refused(policy, judged[principal]) == []


def _service_used(principals: tuple[str, ...]) -> set[str]:
    return {a for p in principals for a in USED_BY_THE_SERVICE.get(p, set())}


@pytest.mark.parametrize("name", POLICIES)
def test_no_action_is_granted_that_no_scenario_uses(name, recording, judged):
    load, principals = POLICIES[name]
    used = {r.action for p in principals for r in judged[p]} | _service_used(principals)
    assert load(recording.facts).grants_unused(used) == []


@pytest.mark.parametrize("name", POLICIES)
def test_taking_any_needed_action_out_of_a_policy_fails_the_check(name, recording, judged):
    """The mutation check: each action the scenarios need, deleted from the policy in turn,
    leaves a recorded call refused.  Only the calls the deleted action (or pattern) matches
    are judged again: a deletion cannot change a verdict on any other call (the statements
    that still apply to it keep every action that matches it), and the policy whole refuses
    none of them (test_every_call_is_allowed_by_its_principals_policy)."""
    load, principals = POLICIES[name]
    policy = load(recording.facts)
    requests = [r for p in principals for r in judged[p]]
    needed = policy.granted_actions() - _service_used(principals)
    assert needed
    for action in sorted(needed):
        affected = [r for r in requests if action_matches(action, r.action)]
        assert refused(policy.without_action(action), affected), \
            f"{action} could be deleted from {name} unnoticed"


def instance_config_keys(recording) -> list[str]:
    """The copies of config objects the instances read: one per instance that booted."""
    return sorted({call.params["Key"] for call in recording.calls
                   if call.key_id in recording.facts.instance_keys
                   and call.operation == "GetObject"})


def test_the_role_template_lets_an_instance_of_each_kind_find_and_read_its_config(
        recording, judged):
    """Finding 4: the one-annex role of condor_annex_role_template may read its EC2 Fleet (an
    instance launched from a launch template finds its annex there).  Issue 23: the role is
    made from the annex's name and region, before the annex (and its object's key) exists."""
    keys = instance_config_keys(recording)
    annexes = sorted({copy_of(key) for key in keys})
    assert {"u-sf", "u-lt", "u-ec2m"} <= set(annexes)
    policy = role_template_policy(recording.facts, annexes)
    assert refused(policy, judged["instance"]) == []
    assert policy.grants_unused({r.action for r in judged["instance"]}) == []
    assert ("ec2:DescribeFleets", "*") in {(r.action, r.resource) for r in judged["instance"]}


def test_lease_role_ends_every_fleet_kind(recording, judged):
    """Finding 1: the lease function ends EC2 Fleets (DescribeFleets, DeleteFleets...) as
    well as Spot Fleets, under its role as written."""
    actions = {r.action for r in judged["lease function"]}
    assert {"ec2:DescribeFleets", "ec2:DeleteFleets", "ec2:DescribeFleetInstances",
            "ec2:CancelSpotFleetRequests", "ec2:DescribeSpotFleetInstances"} <= actions
    assert refused(lease_policy(recording.facts), judged["lease function"]) == []


def test_the_lease_function_confirms_each_lease_on_the_annexs_own_rule(recording, judged):
    """Issue 23 finding 2: before it ends anything the function reads the lease its annex's
    rule stores (DescribeRule, ListTargetsByRule), which its role allows on annex rules."""
    lease_calls = [r for r in judged["lease function"] if r.action.startswith("events:")]
    actions = [r.action for r in lease_calls]
    assert actions.count("events:ListTargetsByRule") == len(recording.outcomes["lease"])
    assert {"events:DescribeRule", "events:ListTargetsByRule"} <= set(actions)
    assert refused(lease_policy(recording.facts), lease_calls) == []


def test_no_role_grants_describe_tags(recording):
    """Finding 6: the instance side never calls DescribeTags, so no role may."""
    facts = recording.facts
    for policy in (instance_policy(facts), role_template_policy(facts, ["x"])):
        assert not policy.allows(Request("ec2:DescribeTags", "*")), policy.name


def test_the_user_policy_is_valid_json_with_only_known_placeholders():
    with open(os.path.join(CFN, "user-policy.json"), encoding="utf-8") as handle:
        text = handle.read()
    assert json.loads(text)["Version"] == "2012-10-17"
    assert document_statements(text, {"Partition": "aws", "AccountId": ACCOUNT,
                                      "S3BucketName": "b"})


def test_the_setup_policy_and_role_are_generated_from_the_templates():
    """``python -m localaws.setuppolicy`` writes both.  Issue 23 finding 3: the setup keys
    may make no IAM role, policy or pass any role but the setup role, directly or through
    CloudFormation; they make and change the stacks only as the setup role."""
    with open(setuppolicy.TARGET, encoding="utf-8") as handle:
        assert handle.read() == setuppolicy.text(), "run python -m localaws.setuppolicy"
    with open(setuppolicy.ROLE_TARGET, encoding="utf-8") as handle:
        assert handle.read() == setuppolicy.role_text(), "run python -m localaws.setuppolicy"
    policy = Policy(document_statements(setuppolicy.text(), {"Partition": "aws",
                                                              "AccountId": ACCOUNT}))
    role = "arn:aws:iam::123456789012:role/HTCondorAnnex-x"
    via = {"aws:CalledVia": ["cloudformation.amazonaws.com"]}
    for action in ("iam:CreateRole", "iam:AttachRolePolicy", "iam:PutUserPolicy",
                   "iam:PassRole", "s3:PutBucketPolicy"):
        assert not policy.allows(Request(action, role, via)), action
    stack = "arn:aws:cloudformation:us-east-1:123456789012:stack/HTCondorAnnex-x/1"
    setup_role = f"arn:aws:iam::{ACCOUNT}:role/HTCondorAnnex-SetupRole"
    assert not policy.allows(Request("cloudformation:CreateStack", stack))
    assert not policy.allows(Request("cloudformation:CreateStack", stack, {
        "cloudformation:RoleArn": role}))
    assert policy.allows(Request("cloudformation:CreateStack", stack, {
        "cloudformation:RoleArn": setup_role}))
    assert policy.allows(Request("iam:PassRole", setup_role, {
        "iam:PassedToService": "cloudformation.amazonaws.com"}))
    assert not policy.allows(Request("iam:PassRole", setup_role, {
        "iam:PassedToService": "lambda.amazonaws.com"}))


def test_the_daemon_policy_is_generated_from_the_user_policy():
    """``python -m localaws.daemonpolicy`` writes it: the user policy, and renewal of every
    annex's config object (issue 23 requirement 6)."""
    with open(daemonpolicy.TARGET, encoding="utf-8") as handle:
        assert handle.read() == daemonpolicy.text(), "run python -m localaws.daemonpolicy"


def test_the_daemon_may_renew_any_annexs_object_and_end_only_its_own_annexes():
    """The daemon's identity reads and rewrites another principal's config object (what a
    renewal calls), and nothing more of it or of that principal's annexes: no delete, no
    object outside ``config-*/``, no instance, fleet or rule it did not create."""
    policy = daemon_policy(Facts(bucket="b"))
    me = {"aws:userid": "AIDADAEMON"}
    theirs = "arn:aws:s3:::b/config-AIDAALICE/us-east-1-x.tar.gz"
    for action in daemonpolicy.RENEWAL_ACTIONS:
        assert policy.allows(Request(action, theirs, me)), action
        assert not user_policy(Facts(bucket="b")).allows(Request(action, theirs, me)), action
    assert not policy.allows(Request("s3:DeleteObject", theirs, me))
    assert policy.allows(Request("s3:DeleteObject", theirs.replace("AIDAALICE", "AIDADAEMON"),
                                 me))
    for elsewhere in ("arn:aws:s3:::b/lambda/lease-1.zip", "arn:aws:s3:::other/config-x/y",
                      "arn:aws:s3:::b/config-x.tar.gz"):
        assert not policy.allows(Request("s3:PutObject", elsewhere, me)), elsewhere
    alices = {"aws:ResourceTag/htcondor:AnnexOwner": "AIDAALICE", **me}
    for action, resource in (
            ("ec2:TerminateInstances", f"arn:aws:ec2:{REGION}:{ACCOUNT}:instance/i-1"),
            ("ec2:CancelSpotFleetRequests",
             f"arn:aws:ec2:{REGION}:{ACCOUNT}:spot-fleet-request/sfr-1"),
            ("ec2:DeleteFleets", f"arn:aws:ec2:{REGION}:{ACCOUNT}:fleet/fleet-1"),
            ("events:DeleteRule", f"arn:aws:events:{REGION}:{ACCOUNT}:rule/alpha"),
            ("events:RemoveTargets", f"arn:aws:events:{REGION}:{ACCOUNT}:rule/alpha")):
        assert not policy.allows(Request(action, resource, alices)), action
        assert policy.allows(Request(action, resource, {
            **alices, "aws:ResourceTag/htcondor:AnnexOwner": "AIDADAEMON"})), action


def test_the_transition_grant_keeps_every_instance_call_allowed(recording, judged):
    """ShareEveryAnnexsConfig=true (for images that predate the per-instance copies) adds
    the earlier grant to the instance role; this release's instances work under it too."""
    assert refused(instance_policy(recording.facts, shared=True), judged["instance"]) == []
