"""The lease function and an annex instance, run with moto's own IAM enforcement on.

moto judges resources only for S3 and IAM (every other request is checked against ``"*"``)
and ignores conditions, so its principals here hold the roles' statements with the S3 and
IAM ones exactly as written and the others widened to ``"*"``: what moto can judge, it
judges as written.  Roles created by moto's CloudFormation cannot be evaluated by moto
itself, so each principal is an IAM user with the role's statements.
"""
from __future__ import annotations

import contextlib
import itertools
import json
import urllib.request
from typing import Any, Iterator

import pytest

from annexd_lambda import lease
from localaws import fixtures
from localaws.eventbridge import LambdaContext
from localaws.fakeimds import FakeImds
from localaws.pool import BUCKET, REGION

from conftest import EC2_FLEET_CONFIG, SPOT_CONFIG
from instance_side import instance_env, on_demand_annex, run_annex_ec2
from test_cfn import CONTEXT
from test_iam_calls import template
from localaws.iampolicy import role_statements

def _listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def judged_by_moto(statement: dict[str, Any]) -> bool:
    """moto matches the real resource for S3 and for IAM roles (not instance profiles)."""
    actions, resources = _listed(statement["Action"]), _listed(statement["Resource"])
    return all(a.startswith("s3:") for a in actions) or (
        all(a.startswith("iam:") for a in actions) and all(":role/" in r for r in resources))


#: AWS's action -> the names moto 5.2.6 asks for instead, for the calls made here.
MOTO_S3_NAMES = {"s3:GetObject": ("s3:HeadObject",), "s3:ListBucket": ("s3:ListObjectsV2",)}


def as_moto_judges(statements: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The statements moto can judge as written; the rest widened to ``*``.

    moto 5.2.6 judges HeadObject and ListObjectsV2 by their operation names,
    ``s3:HeadObject`` and ``s3:ListObjectsV2``, which IAM does not have (AWS authorises them
    as ``s3:GetObject`` and ``s3:ListBucket``): wherever AWS's action is granted, so is moto's
    name for it.
    """
    out = []
    for statement in statements:
        actions = _listed(statement["Action"])
        if judged_by_moto(statement):
            kept = {k: v for k, v in statement.items() if k != "Condition"}
            kept["Action"] = [*actions, *(name for action in actions
                                          for name in MOTO_S3_NAMES.get(action, ()))]
            out.append(kept)
        else:
            out.append({"Effect": "Allow", "Action": actions, "Resource": "*"})
    return out


def iam_user(iam: Any, name: str, statements: list[dict[str, Any]]) -> dict[str, str]:
    iam.create_user(UserName=name)
    iam.put_user_policy(UserName=name, PolicyName="role", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": as_moto_judges(statements)}))
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return {"aws_access_key_id": key["AccessKeyId"],
            "aws_secret_access_key": key["SecretAccessKey"]}


@contextlib.contextmanager
def enforced(url: str) -> Iterator[None]:
    """moto checks every request from now on; back to checking none afterwards."""
    def count(text: str) -> None:
        request = urllib.request.Request(f"{url}/moto-api/reset-auth", data=text.encode(),
                                         headers={"Content-Type": "text/plain"}, method="POST")
        urllib.request.urlopen(request, timeout=10).close()
    count("0")
    try:
        yield
    finally:
        count("inf")


def clients(url: str, keys: dict[str, str]) -> lease.Clients:
    import boto3
    made = [boto3.client(name, endpoint_url=url, region_name=REGION, **keys)
            for name in ("ec2", "events", "s3")]
    return lease.Clients(*made)


_ROUND = itertools.count()


@pytest.fixture
def make_annex(aws, run_annex, with_keys, tmp_path):
    """Create an annex of ``kind`` with the module's daemon; its (fresh) name."""
    fixtures.create_worker_template(aws.ec2)
    ec2_config = tmp_path / "ec2.json"
    with open(EC2_FLEET_CONFIG, encoding="utf-8") as handle:
        ec2_config.write_text(json.dumps({**json.load(handle), "Type": "instant"}))
    kinds = {"sf": [SPOT_CONFIG], "ec2": [str(ec2_config)],
             "odi": ["-aws-on-demand-ami-id", fixtures.WORKER_IMAGE,
                     "-aws-on-demand-instance-type", "m5.large"]}

    def make(kind: str) -> str:
        name = f"enf-{kind}-{next(_ROUND)}"
        created = run_annex("-annex-name", name, "-count", "1", "-lease-duration", "3600",
                            "-lease-function-arn", aws.lease_arn, *with_keys, *kinds[kind])
        assert created.returncode == 0, created.stderr
        return name
    return make


def test_lease_function_ends_every_kind_under_moto_enforcement(aws, make_annex):
    """Finding 1 too: with the role's permissions only, an EC2 Fleet annex is ended."""
    annexes = [make_annex(kind) for kind in ("sf", "ec2", "odi")]
    context = {**CONTEXT, "S3BucketName": BUCKET, "LeaseFunctionLogGroup.Arn": "*"}
    keys = iam_user(aws.iam, "lease-function", role_statements(
        template("lease-function.yaml"), "LeaseFunctionRole", context))
    mine = clients(aws.url, keys)
    inputs = {name: aws.target_input(name) for name in annexes}
    with enforced(aws.url):
        for name in annexes:  # each annex's own Input (its request's token), once expired
            event = inputs[name]
            after = event["LeaseExpiration"] + 1
            assert lease.handler(event, LambdaContext(aws.lease_arn), now=lambda: after,
                                 clients=mine)["expired"]
        with pytest.raises(mine.s3.exceptions.ClientError, match="AccessDenied"):
            mine.s3.delete_object(Bucket=BUCKET, Key="lambda/lease.zip")  # enforcement is on
    for name in annexes:
        assert not any(aws.annex_resources(name).values()), name


def enforced_instance(aws, run_annex, with_keys, name: str,
                      statements: list[dict[str, Any]]) -> tuple[str, dict[str, str]]:
    """An on-demand annex ``name`` whose instance's profile holds a role moto can judge
    (made with IAM's API: moto cannot judge roles its CloudFormation made) with
    ``statements``, ``${aws:userid}`` filled in as IAM fills it in for that instance's
    credentials (moto does not substitute policy variables): (the instance, its role's
    credentials, as EC2 hands them out: aws:userid = <role-id>:<instance-id>)."""
    role = aws.iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                "Principal": {"Service": "ec2.amazonaws.com"}}]
    }))["Role"]
    profile = aws.iam.create_instance_profile(InstanceProfileName=name)["InstanceProfile"]["Arn"]
    aws.iam.add_role_to_instance_profile(InstanceProfileName=name, RoleName=name)
    [instance] = on_demand_annex(aws, run_annex, with_keys, name, profile)
    document = json.dumps({"Version": "2012-10-17", "Statement": as_moto_judges(statements)})
    aws.iam.put_role_policy(RoleName=name, PolicyName="role", PolicyDocument=document.replace(
        "${aws:userid}", f"{role['RoleId']}:{instance}"))
    return instance, fixtures.instance_role_credentials(aws.url, REGION, instance)


def test_instance_boots_refreshes_and_sees_its_config_gone_under_moto_enforcement(
        aws, run_annex, with_keys, tmp_path):
    profile, role = fixtures.create_instance_profile_stack(aws.cloudformation, aws.iam, BUCKET)
    context = {**CONTEXT, "S3BucketName": BUCKET, "InstanceConfigurationProfile.Arn": profile,
               "InstanceConfigurationRole.Arn": role}
    name = "enf-instance"
    instance, credentials = enforced_instance(aws, run_annex, with_keys, name, role_statements(
        template("instance-profile.yaml"), "InstanceConfigurationRole", context,
        {"Shared": False}))
    imds = FakeImds(instance, REGION, profile)  # discovery reads the setup role's policy
    env = instance_env(imds.url, AWS_ENDPOINT_URL=aws.url, **credentials)
    keys = {"aws_access_key_id": credentials["AWS_ACCESS_KEY_ID"],
            "aws_secret_access_key": credentials["AWS_SECRET_ACCESS_KEY"],
            "aws_session_token": credentials["AWS_SESSION_TOKEN"]}
    config_dir = str(tmp_path / "config.d")
    common = ["-config-dir", config_dir, "-retry-base", "0.05", "-max-wait", "5",
              "-no-shutdown"]
    annexs = aws.config_key(name)
    try:
        with enforced(aws.url):
            booted = run_annex_ec2(*common, env=env)
            refreshed = run_annex_ec2(*common, "-refresh-lease", "-reconfig-command", "true",
                                      env=env)
            import boto3
            s3 = boto3.client("s3", endpoint_url=aws.url, region_name=REGION, **keys)
            with pytest.raises(s3.exceptions.ClientError, match="AccessDenied"):
                s3.get_object(Bucket=BUCKET, Key=annexs)  # its own copy only, not the object
        aws.end_config(name)
        with enforced(aws.url):
            gone = run_annex_ec2(*common, "-refresh-lease", "-reconfig-command", "true",
                                 env=env)
            import boto3
            s3 = boto3.client("s3", endpoint_url=aws.url, region_name=REGION, **keys)
            with pytest.raises(s3.exceptions.ClientError, match="AccessDenied"):
                s3.get_object(Bucket=BUCKET, Key="lambda/lease.zip")  # enforcement is on
    finally:
        imds.close()
    assert booted.returncode == 0, booted.stderr
    assert refreshed.returncode == 0, refreshed.stderr
    assert gone.returncode == 0 and "config object is gone" in gone.stderr, gone.stderr
