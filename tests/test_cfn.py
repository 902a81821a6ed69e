"""The CloudFormation templates: cfn-lint clean, and least privilege proven by evaluation."""
from __future__ import annotations

import fnmatch
import glob
import json
import os
import re
import subprocess

import pytest
from cfnlint.decode import decode_str

from localaws.pool import script

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEMPLATES = sorted(glob.glob(os.path.join(ROOT, "annexd_cfn", "*.yaml")))
CONTEXT = {"AWS::Partition": "aws", "AWS::Region": "us-east-1",
           "AWS::AccountId": "123456789012", "S3BucketName": "annex-bucket"}


def test_there_are_four_templates():
    assert [os.path.basename(t) for t in TEMPLATES] == [
        "bucket.yaml", "instance-profile.yaml", "lease-function.yaml", "security-group.yaml"]


@pytest.mark.parametrize("template", TEMPLATES, ids=os.path.basename)
def test_cfn_lint_is_clean(template):
    result = subprocess.run([script("cfn-lint"), template], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_generated_single_object_role_template_is_clean(tmp_path):
    generated = subprocess.run([script("condor_annex_role_template"), "annex-bucket",
                                "config-nightly.tar.gz"], capture_output=True, text=True)
    assert generated.returncode == 0, generated.stderr
    path = tmp_path / "role.json"
    path.write_text(generated.stdout)
    lint = subprocess.run([script("cfn-lint"), str(path)], capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout
    statements = json.loads(generated.stdout)["Resources"]["Role"]["Properties"]["Policies"][0][
        "PolicyDocument"]["Statement"]
    policy = Policy(statements)
    assert policy.allows("s3:GetObject", "arn:aws:s3:::annex-bucket/config-nightly.tar.gz")
    assert not policy.allows("s3:GetObject", "arn:aws:s3:::annex-bucket/config-other.tar.gz")
    bad = subprocess.run([script("condor_annex_role_template"), "annex-bucket", "config-*"],
                         capture_output=True, text=True)
    assert bad.returncode == 1 and "not a plain object key" in bad.stderr


# -- a small IAM evaluator: enough for these templates, and loud about anything else -------

def _text(value) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and "Fn::Sub" in value:
        return re.sub(r"\$\{([^}]+)\}", lambda m: CONTEXT[m.group(1)], value["Fn::Sub"])
    raise AssertionError(f"the evaluator cannot resolve {value!r}")


def _listed(value) -> list:
    return value if isinstance(value, list) else [value]


class Policy:
    def __init__(self, statements: list[dict]):
        self.statements = statements

    @staticmethod
    def _conditions_hold(conditions: dict, tags: dict[str, str]) -> bool:
        for operator, checks in conditions.items():
            if operator != "Null":
                raise AssertionError(f"the evaluator does not know condition {operator}")
            for key, must_be_null in checks.items():
                assert key.startswith("aws:ResourceTag/"), key
                present = key.split("/", 1)[1] in tags
                if present == (must_be_null == "true"):
                    return False
        return True

    def allows(self, action: str, resource: str, tags: dict[str, str] | None = None) -> bool:
        allowed = False
        for statement in self.statements:
            if not any(fnmatch.fnmatchcase(action, a) for a in _listed(statement["Action"])):
                continue
            if not any(fnmatch.fnmatchcase(resource, _text(r))
                       for r in _listed(statement["Resource"])):
                continue
            if not self._conditions_hold(statement.get("Condition", {}), tags or {}):
                continue
            if statement["Effect"] == "Deny":
                return False
            allowed = True
        return allowed


def role_policy(template_name: str, role: str) -> Policy:
    with open(os.path.join(ROOT, "annexd_cfn", template_name), encoding="utf-8") as handle:
        template, errors = decode_str(handle.read())
    assert not errors
    statements = []
    for policy in template["Resources"][role]["Properties"]["Policies"]:
        statements += policy["PolicyDocument"]["Statement"]
    return Policy(statements)


ACCOUNT = "arn:aws:ec2:us-east-1:123456789012"
TAGGED = {"htcondor:AnnexName": "nightly"}


@pytest.fixture(scope="module")
def lease_role() -> Policy:
    return role_policy("lease-function.yaml", "LeaseFunctionRole")


@pytest.mark.parametrize("tags, allowed", [(TAGGED, True), ({}, False),
                                           ({"Name": "web-server"}, False)])
def test_lease_role_terminates_only_annex_instances(lease_role, tags, allowed):
    assert lease_role.allows("ec2:TerminateInstances", f"{ACCOUNT}:instance/i-0123", tags) \
        is allowed


@pytest.mark.parametrize("tags, allowed", [(TAGGED, True), ({}, False)])
def test_lease_role_cancels_only_annex_fleets(lease_role, tags, allowed):
    assert lease_role.allows("ec2:CancelSpotFleetRequests",
                             f"{ACCOUNT}:spot-fleet-request/sfr-1", tags) is allowed


@pytest.mark.parametrize("resource, allowed", [
    ("arn:aws:s3:::annex-bucket/config-nightly.tar.gz", True),
    ("arn:aws:s3:::annex-bucket/lambda/lease-0123.zip", False),
    ("arn:aws:s3:::annex-bucket/config-nightly.txt", False),
    ("arn:aws:s3:::annex-bucket/home/config-x.tar.gz", False),
    ("arn:aws:s3:::other-bucket/config-nightly.tar.gz", False),
    ("arn:aws:s3:::annex-bucket", False),
])
def test_lease_role_deletes_only_config_objects(lease_role, resource, allowed):
    assert lease_role.allows("s3:DeleteObject", resource) is allowed


@pytest.mark.parametrize("action, resource", [
    ("ec2:RunInstances", f"{ACCOUNT}:instance/*"),
    ("ec2:StopInstances", f"{ACCOUNT}:instance/i-0123"),
    ("ec2:ModifySpotFleetRequest", f"{ACCOUNT}:spot-fleet-request/sfr-1"),
    ("s3:PutObject", "arn:aws:s3:::annex-bucket/config-x.tar.gz"),
    ("s3:DeleteBucket", "arn:aws:s3:::annex-bucket"),
    ("events:PutRule", "arn:aws:events:us-east-1:123456789012:rule/x"),
    ("events:PutTargets", "arn:aws:events:us-east-1:123456789012:rule/x"),
    ("iam:PassRole", "arn:aws:iam::123456789012:role/x"),
    ("lambda:InvokeFunction", "arn:aws:lambda:us-east-1:123456789012:function:x"),
])
def test_lease_role_cannot_do_anything_else(lease_role, action, resource):
    assert not lease_role.allows(action, resource, TAGGED)


def test_instance_role_reads_only_config_objects():
    policy = role_policy("instance-profile.yaml", "InstanceConfigurationRole")
    assert policy.allows("s3:GetObject", "arn:aws:s3:::annex-bucket/config-a.tar.gz")
    assert not policy.allows("s3:GetObject", "arn:aws:s3:::annex-bucket/lambda/lease.zip")
    assert not policy.allows("s3:PutObject", "arn:aws:s3:::annex-bucket/config-a.tar.gz")
    assert not policy.allows("ec2:TerminateInstances", f"{ACCOUNT}:instance/i-1", TAGGED)


def test_instance_role_may_find_its_annex_through_its_fleet():
    """An instance launched from a launch template carries no annex tag; its fleet does
    (annex_ec2.discover): the role may read instances, Spot Fleet requests and EC2 Fleets."""
    policy = role_policy("instance-profile.yaml", "InstanceConfigurationRole")
    for action in ("ec2:DescribeInstances", "ec2:DescribeSpotFleetRequests",
                   "ec2:DescribeFleets"):
        assert policy.allows(action, "*"), action
    assert not policy.allows("ec2:ModifyFleet", f"{ACCOUNT}:fleet/fleet-1", TAGGED)


def test_events_may_invoke_the_function_only_from_this_accounts_rules():
    with open(os.path.join(ROOT, "annexd_cfn", "lease-function.yaml"), encoding="utf-8") as handle:
        template, _ = decode_str(handle.read())
    permission = template["Resources"]["LeaseFunctionPermission"]["Properties"]
    assert permission["Principal"] == "events.amazonaws.com"
    assert _text(permission["SourceArn"]) == "arn:aws:events:us-east-1:123456789012:rule/*"
    assert permission["SourceAccount"] == {"Ref": "AWS::AccountId"}


def test_bucket_is_private_encrypted_and_expires_stale_configs():
    with open(os.path.join(ROOT, "annexd_cfn", "bucket.yaml"), encoding="utf-8") as handle:
        template, _ = decode_str(handle.read())
    bucket = template["Resources"]["ConfigurationBucket"]["Properties"]
    assert all(bucket["PublicAccessBlockConfiguration"].values())
    assert bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"][0][
        "ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    [rule] = bucket["LifecycleConfiguration"]["Rules"]
    assert rule["Prefix"] == "config-" and rule["Status"] == "Enabled"


def test_security_group_keeps_ssh_closed_by_default():
    with open(os.path.join(ROOT, "annexd_cfn", "security-group.yaml"), encoding="utf-8") as handle:
        template, _ = decode_str(handle.read())
    ingress = template["Resources"]["AnnexSecurityGroup"]["Properties"]["SecurityGroupIngress"]
    assert [(rule["FromPort"], rule["ToPort"]) for rule in ingress] == [(9618, 9618)]
    assert template["Resources"]["SSHIngress"]["Condition"] == "AllowSSH"
    assert template["Parameters"]["SSHCidr"]["Default"] == ""
