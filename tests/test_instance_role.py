"""Issue 23, requirement 7: the instance role as sites really use it, with moto's IAM
enforcement on (the principal holds the role's statements, as in test_iam_enforced).

* A managed policy attached to the instance role (an SSM or CloudWatch agent's, say) does not
  break the boot: discovery reads only the role's inline policies.  On main it read every
  attached policy too, with ``iam:GetPolicy``, which the role is not given: the boot failed.
* ``condor_annex_role_template`` works again: a role made for an annex's name and region,
  before the annex exists, lets that annex's instance boot, refresh its lease and see its
  object gone, and reads no other annex's object.  On main it took one exact object key,
  which holds a uuid made when the annex is created.
"""
from __future__ import annotations

import json
import subprocess

import pytest

from annexd_lambda import lease
from localaws import fixtures
from localaws.fakeimds import FakeImds
from localaws.iampolicy import role_statements
from localaws.pool import BUCKET, REGION, script
from localaws.wait import wait_for

from conftest import SPOT_CONFIG
from instance_side import instance_env, run_annex_ec2
from test_cfn import CONTEXT
from test_iam_calls import template
from test_iam_enforced import enforced, enforced_instance, iam_user

#: A policy a site attaches to its instance role for something else (here: an agent's).
AGENT_POLICY = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": ["ssm:UpdateInstanceInformation",
                                   "cloudwatch:PutMetricData"], "Resource": "*"}]}


def create(aws, run_annex, with_keys, name: str) -> str:
    made = run_annex("-annex-name", name, "-count", "1", "-lease-duration", "3600",
                     "-lease-function-arn", aws.lease_arn, *with_keys, SPOT_CONFIG)
    assert made.returncode == 0, made.stderr
    return lease.find_instances(aws.ec2, name)[0]


def instance_runs(aws, instance: str, profile: str, keys: dict[str, str], tmp_path,
                  gone: str) -> dict[str, subprocess.CompletedProcess]:
    """Boot, refresh, and refresh once annex ``gone``'s config object (and its copies) is
    deleted: each with moto judging every call against ``keys``' policy (environment
    variables: an IAM user's, or an instance role session's)."""
    imds = FakeImds(instance, REGION, profile)
    env = instance_env(imds.url, AWS_ENDPOINT_URL=aws.url, **(keys if "AWS_ACCESS_KEY_ID" in keys
        else {"AWS_ACCESS_KEY_ID": keys["aws_access_key_id"],
              "AWS_SECRET_ACCESS_KEY": keys["aws_secret_access_key"]}))
    common = ["-config-dir", str(tmp_path / "config.d"), "-retry-base", "0.05", "-max-wait",
              "5", "-no-shutdown"]
    refresh = ["-refresh-lease", "-reconfig-command", "true"]
    try:
        with enforced(aws.url):
            runs = {"boot": run_annex_ec2(*common, env=env),
                    "refresh": run_annex_ec2(*common, *refresh, env=env)}
        aws.end_config(gone)
        with enforced(aws.url):
            runs["gone"] = run_annex_ec2(*common, *refresh, env=env)
    finally:
        imds.close()
    return runs


def assert_runs_well(runs: dict[str, subprocess.CompletedProcess]) -> None:
    for name in ("boot", "refresh"):
        assert runs[name].returncode == 0, (name, runs[name].stderr)
        assert "retrying" not in runs[name].stderr, (name, runs[name].stderr)
    assert runs["gone"].returncode == 0 and "config object is gone" in runs["gone"].stderr, \
        runs["gone"].stderr


def test_a_managed_policy_on_the_instance_role_does_not_break_the_boot(aws, run_annex,
                                                                       with_keys, tmp_path):
    profile, role = fixtures.create_instance_profile_stack(aws.cloudformation, aws.iam, BUCKET)
    agent = aws.iam.create_policy(PolicyName="SiteAgent", PolicyDocument=json.dumps(
        AGENT_POLICY))["Policy"]["Arn"]
    aws.iam.attach_role_policy(RoleName=role.rsplit("/", 1)[1], PolicyArn=agent)
    context = {**CONTEXT, "S3BucketName": BUCKET, "InstanceConfigurationProfile.Arn": profile,
               "InstanceConfigurationRole.Arn": role}
    instance, credentials = enforced_instance(aws, run_annex, with_keys, "managed", role_statements(
        template("instance-profile.yaml"), "InstanceConfigurationRole", context,
        {"Shared": False}) + AGENT_POLICY["Statement"])
    assert_runs_well(instance_runs(aws, instance, profile, credentials, tmp_path, "managed"))


def role_template_stack(aws, annex: str) -> tuple[dict, str, str]:
    """condor_annex_role_template's output for ``annex``, made into a stack as a site would:
    (the template, its instance profile's ARN, its role's ARN)."""
    printed = subprocess.run([script("condor_annex_role_template"), BUCKET, REGION, annex],
                             capture_output=True, text=True, timeout=60)
    assert printed.returncode == 0, printed.stderr
    stack = f"annex-role-{annex}"
    aws.cloudformation.create_stack(StackName=stack, TemplateBody=printed.stdout,
                                    Capabilities=["CAPABILITY_IAM"])
    made = wait_for(lambda: aws.cloudformation.describe_stacks(StackName=stack)["Stacks"][0],
                    "the role template's stack",
                    until=lambda found: found["StackStatus"] == "CREATE_COMPLETE")
    profile = made["Outputs"][0]["OutputValue"]
    found = aws.iam.get_instance_profile(InstanceProfileName=profile.rsplit("/", 1)[1])
    return json.loads(printed.stdout), profile, found["InstanceProfile"]["Roles"][0]["Arn"]


def test_a_role_template_made_before_its_annex_lets_only_that_annex_in(aws, run_annex,
                                                                     with_keys, tmp_path):
    document, profile, role = role_template_stack(aws, "templated")  # before the annex
    instance = create(aws, run_annex, with_keys, "templated")
    create(aws, run_annex, with_keys, "templated2")  # a neighbour whose name extends it
    mine, theirs = aws.config_key("templated"), aws.config_key("templated2")
    context = {**CONTEXT, "S3BucketName": BUCKET, "InstanceProfile.Arn": profile,
               "Role.Arn": role}
    keys = iam_user(aws.iam, "templated-instance",
                    role_statements(document, "Role", context))
    import boto3
    s3 = boto3.client("s3", endpoint_url=aws.url, region_name=REGION, **keys)
    with enforced(aws.url):
        with pytest.raises(s3.exceptions.ClientError, match="AccessDenied"):
            s3.get_object(Bucket=BUCKET, Key=theirs)
        assert s3.get_object(Bucket=BUCKET, Key=mine)["ContentLength"] > 0
    assert_runs_well(instance_runs(aws, instance, profile, keys, tmp_path, "templated"))
