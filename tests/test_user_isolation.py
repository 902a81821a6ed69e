"""Issue 23 finding 1: a user's own AWS keys, holding only ``cfn/user-policy.json``, reach only
that user's annexes -- judged as AWS judges, by the call-derived evaluator (moto ignores
conditions and policy variables, so it would let every call below through).

Alice creates annexes of three kinds through the daemon with her keys, changes a lease and
ends one: every call she needed is allowed.  Then mallory, another IAM user with the same
policy, goes around the daemon with boto3 and her own keys: she reads alice's token object,
overwrites it, moves its lease metadata, deletes another of alice's objects, ends alice's
fleets and instances, aims alice's rule elsewhere, strips it, deletes it, and tries to make
alice's resources her own by re-tagging them.  Each of those calls is refused; the same calls
on her own prefix are allowed (so it is ownership that refuses them, not a blanket denial).
"""
from __future__ import annotations

import json
import os
import subprocess
from typing import Any, Callable

import boto3
import pytest
from botocore.exceptions import ClientError

from annexd_lambda import lease
from localaws import fixtures
from localaws.iamactions import Resources, requests_of
from localaws.iampolicy import Request, as_principal
from localaws.pool import BUCKET, REGION, run_program, script
from localaws.recorder import Call, Recorder

from conftest import EC2_FLEET_CONFIG, LAUNCH_TEMPLATE_CONFIG, Aws
from iam_scenarios import ACCOUNT, Facts, note_tags
from test_iam_calls import principal_keys, user_policy

OWNER = lease.OWNER_TAG


def iam_user(aws: Any, name: str) -> dict[str, str]:
    aws.iam.create_user(UserName=name)
    key = aws.iam.create_access_key(UserName=name)["AccessKey"]
    return {"aws_access_key_id": key["AccessKeyId"],
            "aws_secret_access_key": key["SecretAccessKey"]}


def key_files(tmp_path: Any, name: str, keys: dict[str, str]) -> list[str]:
    paths = []
    for kind, value in (("public", keys["aws_access_key_id"]),
                        ("secret", keys["aws_secret_access_key"])):
        path = tmp_path / f"{name}.{kind}"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(value + "\n")
        paths += [f"-{kind}-key-file", str(path)]
    return paths


def as_given(config: str, tmp_path: Any, name: str, **changes: Any) -> str:
    with open(config, encoding="utf-8") as handle:
        body = {**json.load(handle), **changes}
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(body))
    return str(path)


def attempt(call: Callable[[], Any]) -> None:
    """Make the call; moto may answer it either way, the evaluator judges the request."""
    try:
        call()
    except ClientError:
        pass


@pytest.fixture(scope="module")
def world(moto_server, pool, daemon, tmp_path_factory):
    """Alice's annexes made, changed and one ended with her keys; mallory's attack; every
    call recorded (once for the module: it takes a minute)."""
    moto_server.reset()
    tmp_path = tmp_path_factory.mktemp("isolation")
    aws = Aws(moto_server.url, *(fixtures.client(name, moto_server.url, REGION) for name in
                                 ("ec2", "events", "s3", "lambda", "iam", "cloudformation")))
    fixtures.create_bucket(aws.s3, BUCKET, REGION)
    aws.lease_arn = fixtures.deploy_lease_function(aws.iam, aws.lambda_)
    profile, _ = fixtures.create_join_resources(aws.ec2, aws.iam, moto_server.seed)
    fixtures.create_worker_template(aws.ec2)

    def run_annex(*args: str) -> subprocess.CompletedProcess:
        return run_program([script("condor_annex"), *args], pool.env(), timeout=120)

    alice, mallory = iam_user(aws, "alice"), iam_user(aws, "mallory")
    alices_keys = key_files(tmp_path, "alice", alice)
    role = aws.iam.get_instance_profile(InstanceProfileName=fixtures.JOIN_PROFILE_NAME)[
        "InstanceProfile"]["Roles"][0]["Arn"]
    facts = Facts(template_profiles={fixtures.WORKER_TEMPLATE: profile},
                  profile_roles={profile: role})
    kinds = {
        "alpha": [as_given(LAUNCH_TEMPLATE_CONFIG, tmp_path, "lt")],
        "beta": ["-aws-on-demand-ami-id", fixtures.WORKER_IMAGE,
                 "-aws-on-demand-instance-type", "m5.large"],
        "gamma": [as_given(EC2_FLEET_CONFIG, tmp_path, "ec2", Type="instant")],
        "delta": ["-aws-on-demand-ami-id", fixtures.WORKER_IMAGE,
                  "-aws-on-demand-instance-type", "m5.large"],
    }
    with Recorder(aws.url) as recorder:
        for name, how in kinds.items():
            made = run_annex("-annex-name", name, "-count", "1", "-lease-duration", "3600",
                             "-lease-function-arn", aws.lease_arn, *alices_keys, *how)
            assert made.returncode == 0, made.stderr
        note_tags(aws.ec2, facts)
        longer = run_annex("-annex-name", "alpha", "-lease-duration", "7200", *alices_keys)
        assert longer.returncode == 0, longer.stderr
        off = run_annex("-annex-name", "delta", "-off", *alices_keys)
        assert off.returncode == 0, off.stderr
        attacks = mallorys_attack(aws, mallory)
    return aws, recorder.calls(), facts, alice, mallory, attacks


def mallorys_attack(aws: Any, keys: dict[str, str]) -> dict[str, list[str]]:
    """Every call of finding 1 and more, with mallory's keys; returns what each was aimed at
    and her own control calls."""
    ec2, events, s3 = (boto3.client(n, endpoint_url=aws.url, region_name=REGION, **keys)
                       for n in ("ec2", "events", "s3"))
    alpha, beta = aws.config_key("alpha"), aws.config_key("beta")
    [beta_instance] = lease.find_instances(aws.ec2, "beta")
    [alpha_fleet] = lease.find_fleets(aws.ec2, "alpha")
    [gamma_fleet] = lease.find_ec2_fleets(aws.ec2, "gamma")
    [gamma_instance] = lease.find_instances(aws.ec2, "gamma")
    pwn = b"START = True\nDAEMON_LIST = $(DAEMON_LIST) PWN\n"
    calls = [
        lambda: s3.get_object(Bucket=BUCKET, Key=alpha),
        lambda: s3.put_object(Bucket=BUCKET, Key=alpha, Body=pwn),
        lambda: s3.copy_object(Bucket=BUCKET, Key=alpha, MetadataDirective="REPLACE",
                               CopySource={"Bucket": BUCKET, "Key": alpha},
                               Metadata={"annex-lease-end": "9999999999"}),
        lambda: s3.delete_object(Bucket=BUCKET, Key=beta),
        lambda: ec2.terminate_instances(InstanceIds=[beta_instance]),
        lambda: ec2.terminate_instances(InstanceIds=[gamma_instance]),
        lambda: ec2.cancel_spot_fleet_requests(SpotFleetRequestIds=[alpha_fleet],
                                               TerminateInstances=True),
        lambda: ec2.delete_fleets(FleetIds=[gamma_fleet], TerminateInstances=True),
        lambda: ec2.create_tags(Resources=[beta_instance, gamma_fleet],
                                Tags=[{"Key": OWNER, "Value": "mallory"}]),
        lambda: ec2.delete_tags(Resources=[beta_instance], Tags=[{"Key": OWNER}]),
        lambda: events.put_targets(Rule="alpha", Targets=[{
            "Id": "alpha", "Arn": aws.lease_arn,
            "Input": json.dumps({"AnnexID": "alpha", "LeaseExpiration": 1})}]),
        lambda: events.put_rule(Name="alpha", ScheduleExpression="rate(1 day)",
                                State="DISABLED", Tags=[
                                    {"Key": lease.ANNEX_TAG, "Value": "alpha"},
                                    {"Key": OWNER, "Value": principal_of(aws, keys)}]),
        lambda: events.tag_resource(ResourceARN=rule_arn("alpha"),
                                    Tags=[{"Key": OWNER, "Value": principal_of(aws, keys)}]),
        lambda: events.untag_resource(ResourceARN=rule_arn("beta"), TagKeys=[OWNER]),
        lambda: events.remove_targets(Rule="alpha", Ids=["alpha"]),
        lambda: events.delete_rule(Name="beta", Force=True),
    ]
    for call in calls:
        attempt(call)
    mine = f"config-{principal_of(aws, keys)}/{REGION}-own_0.tar.gz"
    for call in (lambda: s3.put_object(Bucket=BUCKET, Key=mine, Body=b"x"),
                 lambda: s3.get_object(Bucket=BUCKET, Key=mine),
                 lambda: s3.delete_object(Bucket=BUCKET, Key=mine)):
        attempt(call)
    return {"alpha": [alpha], "beta": [beta], "own": [mine]}


def rule_arn(name: str) -> str:
    return f"arn:aws:events:{REGION}:{ACCOUNT}:rule/{name}"


def principal_of(aws: Any, keys: dict[str, str]) -> str:
    return principal_keys(aws.url, keys["aws_access_key_id"])["aws:userid"]


def judged_calls(calls: list[Call], facts: Facts, key: str, url: str
                 ) -> list[tuple[Call, list[Request]]]:
    """Each of ``key``'s calls with the authorisations AWS makes for it."""
    resources = Resources(ACCOUNT, facts.tags, facts.profile_roles, facts.template_profiles)
    principal = principal_keys(url, key)
    out: list[tuple[Call, list[Request]]] = []
    for call, request in requests_of(calls, resources):
        if call.key_id != key:
            continue
        if not out or out[-1][0] is not call:
            out.append((call, []))
        out[-1][1].extend(as_principal([request], principal))
    return out


def test_alice_keeps_every_normal_operation(world):
    aws, calls, facts, alice, _, _ = world
    policy = user_policy(facts)
    judged = judged_calls(calls, facts, alice["aws_access_key_id"], aws.url)
    operations = {str(call) for call, _ in judged}
    assert {"ec2:RunInstances", "ec2:RequestSpotFleet", "ec2:CreateFleet", "events:PutRule",
            "events:PutTargets", "s3:PutObject", "ec2:TerminateInstances",
            "events:DeleteRule", "s3:DeleteObject"} <= operations, operations
    refused = [f"{call}: {r}" for call, requests in judged for r in requests
               if not policy.allows(r)]
    assert refused == []
    owned = [tags for tags in facts.tags.values() if tags.get(lease.ANNEX_TAG)]
    assert owned and all(tags.get(OWNER) == principal_of(aws, alice) for tags in owned
                         if OWNER in tags)


def test_mallory_cannot_touch_alices_annexes(world):
    aws, calls, facts, _, mallory, aimed = world
    policy = user_policy(facts)
    judged = judged_calls(calls, facts, mallory["aws_access_key_id"], aws.url)
    own = {f"arn:aws:s3:::{BUCKET}/{key}" for key in aimed["own"]}
    attacks = [(c, rs) for c, rs in judged if not any(r.resource in own for r in rs)]
    controls = [(c, rs) for c, rs in judged if any(r.resource in own for r in rs)]
    names = [str(c) for c, _ in attacks]
    for wanted in ("s3:GetObject", "s3:PutObject", "s3:CopyObject", "s3:DeleteObject",
                   "ec2:TerminateInstances", "ec2:CancelSpotFleetRequests", "ec2:DeleteFleets",
                   "ec2:CreateTags", "ec2:DeleteTags", "events:PutTargets", "events:PutRule",
                   "events:TagResource", "events:UntagResource", "events:RemoveTargets",
                   "events:DeleteRule"):
        assert wanted in names, (wanted, names)
    let_through = [f"{call}: {[str(r) for r in requests]}" for call, requests in attacks
                   if all(policy.allows(r) for r in requests)]
    assert let_through == []
    assert len(controls) == 3
    assert all(policy.allows(r) for _, requests in controls for r in requests)


def test_an_owner_tag_cannot_be_changed_even_by_its_owner(world):
    """The tag that decides ownership is set at create and never again."""
    aws, calls, facts, alice, _, _ = world
    policy = user_policy(facts)
    me = principal_of(aws, alice)
    instance = next(i for i, tags in facts.tags.items()
                    if i.startswith("i-") and tags.get(OWNER) == me)
    arn = f"arn:aws:ec2:{REGION}:{ACCOUNT}:instance/{instance}"
    mine = {"aws:userid": me, f"aws:ResourceTag/{OWNER}": me}
    for action, context in (
            ("ec2:CreateTags", {f"aws:RequestTag/{OWNER}": "someone", "aws:TagKeys": [OWNER]}),
            ("ec2:CreateTags", {f"aws:RequestTag/{OWNER}": me, "aws:TagKeys": [OWNER]}),
            ("ec2:DeleteTags", {"aws:TagKeys": [OWNER]})):
        assert not policy.allows(Request(action, arn, {**mine, **context})), action
    rule = rule_arn("alpha")
    assert not policy.allows(Request("events:UntagResource", rule,
                                     {**mine, "aws:TagKeys": [OWNER]}))
    assert not policy.allows(Request("events:TagResource", rule, {
        **mine, "aws:TagKeys": [OWNER], f"aws:RequestTag/{OWNER}": "someone",
        f"aws:RequestTag/{lease.ANNEX_TAG}": "alpha"}))


@pytest.mark.parametrize("args", [("a", None, None, None), ("a", "us-east-1", "a_1", None),
                                  ("a", "us-east-1", "a_1", "AIDAEXAMPLE"),
                                  ("a", "eu-west-1", "a_2", "AROAEXAMPLE:i-0abc")])
def test_the_instance_names_the_config_object_as_the_daemon_does(args):
    """annex_ec2 ships without annexd_lambda, so it keeps a copy of config_key: the same."""
    from annex_ec2 import discover
    assert discover.config_key(*args) == lease.config_key(*args)


def test_an_owners_key_stays_under_the_prefix_the_user_policy_grants():
    key = lease.config_key("a", "us-east-1", "a_1", "AIDAEXAMPLE")
    policy = user_policy(Facts())
    arn = f"arn:aws:s3:::{BUCKET}/{key}"
    assert policy.allows(Request("s3:GetObject", arn, {"aws:userid": "AIDAEXAMPLE"}))
    assert not policy.allows(Request("s3:GetObject", arn, {"aws:userid": "AIDAEXAMPL"}))


@pytest.mark.parametrize("args", [("a", None, None, None), ("a", "us-east-1", "a_1", None),
                                  ("a", "us-east-1", "a_1", "AIDAEXAMPLE"),
                                  ("a", "eu-west-1", "a_2", "AROAEXAMPLE:i-0abc")])
def test_the_instance_names_its_own_copy_as_the_daemon_does(args):
    """Issue 23 requirement 5: the instance's copy of the object, named after its
    aws:userid, as annexd (lambda/lease.py) names it, and under the annex's copies prefix."""
    from annex_ec2 import discover
    key = lease.config_key(*args)
    assert discover.copies_prefix(key) == lease.copies_prefix(key)
    mine = lease.instance_config_key(key, "AROAROLE:i-0123")
    assert discover.instance_config_key(key, "AROAROLE:i-0123") == mine
    assert mine.startswith(lease.copies_prefix(key)) and mine.endswith("/i/AROAROLE:i-0123.tar.gz")


def test_an_owners_instance_copies_stay_under_the_prefix_the_user_policy_grants():
    """The owner's keys (and so -off, and a lease change made with them) may write, list and
    delete the copies of the owner's annexes; another principal's keys may not."""
    key = lease.instance_config_key(lease.config_key("a", "us-east-1", "a_1", "AIDAEXAMPLE"),
                                    "AROAROLE:i-0123")
    policy = user_policy(Facts())
    arn = f"arn:aws:s3:::{BUCKET}/{key}"
    for action in ("s3:PutObject", "s3:GetObject", "s3:DeleteObject"):
        assert policy.allows(Request(action, arn, {"aws:userid": "AIDAEXAMPLE"})), action
        assert not policy.allows(Request(action, arn, {"aws:userid": "AIDAOTHER"})), action
    listing = {"s3:prefix": lease.copies_prefix(lease.config_key("a", "us-east-1", "a_1",
                                                                  "AIDAEXAMPLE"))}
    bucket = f"arn:aws:s3:::{BUCKET}"
    assert policy.allows(Request("s3:ListBucket", bucket, {"aws:userid": "AIDAEXAMPLE",
                                                           **listing}))
    assert not policy.allows(Request("s3:ListBucket", bucket, {"aws:userid": "AIDAOTHER",
                                                               **listing}))
    assert not policy.allows(Request("s3:ListBucket", bucket, {"aws:userid": "AIDAEXAMPLE",
                                                               "s3:prefix": "config-"}))
