"""The CloudFormation templates: cfn-lint clean, and least privilege proven by evaluation."""
from __future__ import annotations

import glob
import json
import os
import subprocess

import pytest

from localaws import cfntemplate
from localaws.iampolicy import Policy, Request, resolve, role_statements
from localaws.pool import script

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEMPLATES = sorted(glob.glob(os.path.join(ROOT, "cfn", "*.yaml")))
SETUP_ROLE = os.path.join(ROOT, "cfn", "setup-role.json")
CONTEXT = {"AWS::Partition": "aws", "AWS::Region": "us-east-1",
           "AWS::AccountId": "123456789012", "S3BucketName": "annex-bucket",
           "LeaseFunctionLogGroup.Arn": "arn:aws:logs:us-east-1:123456789012:log-group:"
                                        "/aws/lambda/HTCondorAnnex-LeaseFunction:*",
           "InstanceConfigurationProfile.Arn": "arn:aws:iam::123456789012:instance-profile/p",
           "InstanceConfigurationRole.Arn": "arn:aws:iam::123456789012:role/r"}


def test_there_are_four_templates():
    assert [os.path.basename(t) for t in TEMPLATES] == [
        "bucket.yaml", "instance-profile.yaml", "lease-function.yaml", "security-group.yaml"]


def lint_all(paths: list[str]) -> dict[str, list[str]]:
    """cfn-lint, the command, over every template in one run (each run spends about 2 s
    loading its rules and schemas, whatever it lints): each path's findings, as lines."""
    result = subprocess.run([script("cfn-lint"), "--format", "json", *paths],
                            capture_output=True, text=True)
    try:
        reported = json.loads(result.stdout)
    except ValueError:
        raise AssertionError(f"cfn-lint failed (status {result.returncode}): "
                             f"{result.stdout[-2000:]}{result.stderr[-2000:]}") from None
    findings: dict[str, list[str]] = {path: [] for path in paths}
    for found in reported:
        where = found["Location"]["Start"]
        findings[found["Filename"]].append(
            f"{os.path.basename(found['Filename'])}:{where['LineNumber']}: "
            f"{found['Rule']['Id']} {found['Message']}")
    # cfn-lint's status says whether it found anything (a bit per level) or failed.
    assert (result.returncode == 0) == (not reported), (result.returncode, result.stderr)
    return findings


#: A template with one finding, linted in the same run: shows that a finding is reported
#: as its own template's, not lost among the others' (or given to them).
BROKEN = ("Resources:\n  Queue:\n    Type: AWS::SQS::Queue\n"
          "    Properties:\n      NoSuchProperty: 1\n")


def generate_role(directory: str) -> tuple[subprocess.CompletedProcess, str]:
    """``condor_annex_role_template``'s output for one annex, and where it was written."""
    generated = subprocess.run([script("condor_annex_role_template"), "annex-bucket",
                                "us-east-1", "nightly"], capture_output=True, text=True)
    path = os.path.join(directory, "role.json")
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(generated.stdout)
    return generated, path


@pytest.mark.parametrize("template", TEMPLATES, ids=os.path.basename)
def test_cfn_lint_is_clean(template, cfn_lint):
    assert cfn_lint.findings[template] == []


def test_one_lint_run_reports_each_templates_findings_as_its_own(cfn_lint):
    assert len(cfn_lint.findings[cfn_lint.broken]) == 1, cfn_lint.findings
    assert "NoSuchProperty" in cfn_lint.findings[cfn_lint.broken][0]


def test_generated_role_template_is_clean_and_reads_only_its_annexs_objects(cfn_lint):
    generated = cfn_lint.generated
    assert generated.returncode == 0, generated.stderr
    assert cfn_lint.findings[cfn_lint.generated_path] == []
    statements = json.loads(generated.stdout)["Resources"]["Role"]["Properties"]["Policies"][0][
        "PolicyDocument"]["Statement"]
    policy = Judged(Policy(resolve(statements, CONTEXT)))
    mine = "config-us-east-1-nightly_0f9e8d7c-0000-4000-8000-000000000000.tar.gz"
    assert policy.allows("s3:GetObject", f"arn:aws:s3:::annex-bucket/{mine}")
    for other in ("config-us-east-1-nightly2_0f9e.tar.gz", "config-us-east-1-night_0f9e.tar.gz",
                  "config-us-west-2-nightly_0f9e.tar.gz", "config-nightly.tar.gz",
                  "config-us-east-1-nightly-b_0f9e.tar.gz"):
        assert not policy.allows("s3:GetObject", f"arn:aws:s3:::annex-bucket/{other}"), other
    bucket = "arn:aws:s3:::annex-bucket"
    assert policy.allows("s3:ListBucket", bucket, **{"s3:prefix": mine})
    for prefix in ("config-", "config-us-east-1-nightly_", "config-us-east-1-other_1.tar.gz"):
        assert not policy.allows("s3:ListBucket", bucket, **{"s3:prefix": prefix}), prefix
    for bad, words in ((["annex-bucket", "config-nightly.tar.gz"], "no longer takes an object key"),
                       (["annex-bucket", "us-east-1", "night*"], "is not an annex name"),
                       (["annex-bucket", "mars", "nightly"], "is not an AWS region")):
        refused = subprocess.run([script("condor_annex_role_template"), *bad],
                                 capture_output=True, text=True)
        assert refused.returncode == 1 and words in refused.stderr, refused.stderr


# -- the policies as written, judged by localaws.iampolicy ---------------------------------

def resource_tags(tags: dict[str, str] | None) -> dict[str, str]:
    return {f"aws:ResourceTag/{key}": value for key, value in (tags or {}).items()}


class Judged:
    """A policy, asked the way these tests ask: action, resource, the resource's tags."""

    def __init__(self, policy: Policy):
        self.policy = policy

    def allows(self, action: str, resource: str, tags: dict[str, str] | None = None,
               **context: str) -> bool:
        return self.policy.allows(Request(action, resource, {**resource_tags(tags),
                                                             **context}))


def role_policy(template_name: str, role: str) -> Judged:
    template = cfntemplate.load(os.path.join(ROOT, "cfn", template_name))
    # instance-profile.yaml: as -setup makes it (ShareEveryAnnexsConfig "false")
    return Judged(Policy(role_statements(template, role, CONTEXT, {"Shared": False})))


ACCOUNT = "arn:aws:ec2:us-east-1:123456789012"
TAGGED = {"htcondor:AnnexName": "nightly"}
#: What condor_annexd puts on every fleet it makes: the annex and the create request.
FLEET_TAGS = {**TAGGED, "htcondor:AnnexClientToken": "nightly_0123"}


@pytest.fixture(scope="module")
def lease_role() -> Policy:
    return role_policy("lease-function.yaml", "LeaseFunctionRole")


@pytest.mark.parametrize("tags, allowed", [(TAGGED, True), ({}, False),
                                           ({"Name": "web-server"}, False)])
def test_lease_role_terminates_only_annex_instances(lease_role, tags, allowed):
    assert lease_role.allows("ec2:TerminateInstances", f"{ACCOUNT}:instance/i-0123", tags) \
        is allowed


@pytest.mark.parametrize("tags, allowed", [(FLEET_TAGS, True), (TAGGED, False), ({}, False)])
def test_lease_role_ends_only_fleets_condor_annexd_made(lease_role, tags, allowed):
    """Finding 5: a fleet someone merely tagged htcondor:AnnexName is not enough; the
    daemon's fleets carry the create request's token too.  Both fleet kinds (finding 1)."""
    assert lease_role.allows("ec2:CancelSpotFleetRequests",
                             f"{ACCOUNT}:spot-fleet-request/sfr-1", tags) is allowed
    assert lease_role.allows("ec2:DeleteFleets", f"{ACCOUNT}:fleet/fleet-1", tags) is allowed


@pytest.mark.parametrize("action", ["events:RemoveTargets", "events:DeleteRule",
                                    "events:DescribeRule"])
@pytest.mark.parametrize("tags, allowed", [(TAGGED, True), ({}, False),
                                           ({"team": "web"}, False)])
def test_lease_role_removes_only_annex_rules(lease_role, action, tags, allowed):
    """Finding 5: not any rule of the account (rule/* with no condition), only annexes'."""
    assert lease_role.allows(action, "arn:aws:events:us-east-1:123456789012:rule/nightly",
                             tags) is allowed


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


#: An instance role session's aws:userid (<role-id>:<instance-id>), and its own copy's key.
ME = {"aws:userid": "AROAROLE:i-0aaa"}
MINE = "config-AIDAOWNER/us-east-1-a_1/i/AROAROLE:i-0aaa.tar.gz"


def test_instance_role_may_ask_only_whether_its_own_copy_exists():
    """Finding 3: s3:ListBucket lets S3 answer 404 for a deleted config, limited to the one
    prefix that is the instance's own copy's key (issue 23 requirement 5): no listing of the
    bucket, of an annex's objects, or of another instance's copy."""
    policy = role_policy("instance-profile.yaml", "InstanceConfigurationRole")
    bucket = "arn:aws:s3:::annex-bucket"
    assert policy.allows("s3:ListBucket", bucket, **{"s3:prefix": MINE}, **ME)
    for prefix in ("", "config-", "lambda/", "config-a", "config-a.tar.gz",
                   "config-AIDAOWNER/us-east-1-a_1.tar.gz", "config-AIDAOWNER/",
                   "config-AIDAOWNER/us-east-1-a_1/i/",
                   "config-AIDAOWNER/us-east-1-a_1/i/AROAROLE:i-0bbb.tar.gz"):
        assert not policy.allows("s3:ListBucket", bucket, **{"s3:prefix": prefix}, **ME), \
            prefix
    assert not policy.allows("s3:ListBucket", bucket, **ME)


def test_instance_role_reads_only_its_own_copy():
    """Issue 23 requirement 5: no annex's object, only the instance's own copy of its
    annex's, named after its aws:userid -- which AWS sets, and the instance cannot change."""
    policy = role_policy("instance-profile.yaml", "InstanceConfigurationRole")
    assert policy.allows("s3:GetObject", f"arn:aws:s3:::annex-bucket/{MINE}", **ME)
    for key in ("config-a.tar.gz", "config-AIDAOWNER/us-east-1-a_1.tar.gz",
                "config-AIDAOWNER/us-east-1-a_1/i/AROAROLE:i-0bbb.tar.gz",
                "config-AIDAOTHER/us-east-1-b_1/i/AROAROLE:i-0bbb.tar.gz", "lambda/lease.zip"):
        assert not policy.allows("s3:GetObject", f"arn:aws:s3:::annex-bucket/{key}", **ME), key
    assert not policy.allows("s3:GetObject", f"arn:aws:s3:::annex-bucket/{MINE}",
                             **{"aws:userid": "AROAROLE:i-0bbb"})
    assert not policy.allows("s3:PutObject", f"arn:aws:s3:::annex-bucket/{MINE}", **ME)
    assert not policy.allows("ec2:TerminateInstances", f"{ACCOUNT}:instance/i-1", TAGGED)


def test_instance_role_may_find_its_annex_through_its_fleet():
    """An instance launched from a launch template carries no annex tag; its fleet does
    (annex_ec2.discover): the role may read instances, Spot Fleet requests and EC2 Fleets."""
    policy = role_policy("instance-profile.yaml", "InstanceConfigurationRole")
    for action in ("ec2:DescribeInstances", "ec2:DescribeSpotFleetRequests",
                   "ec2:DescribeFleets"):
        assert policy.allows(action, "*"), action
    assert not policy.allows("ec2:ModifyFleet", f"{ACCOUNT}:fleet/fleet-1", TAGGED)
    assert not policy.allows("ec2:DescribeTags", "*")  # finding 6: never used


def test_the_template_reader_agrees_with_cfn_lints_decoder():
    """localaws.cfntemplate (which the policy checks read the templates with) gives what
    cfn-lint's own decoder gives, for every template: short forms as long forms,
    ``!GetAtt A.B`` as a list, ``2010-09-09`` as text.  cfn-lint is imported here only."""
    from cfnlint.decode import decode_str  # pylint: disable=import-outside-toplevel
    paths = sorted(glob.glob(os.path.join(ROOT, "cfn", "*.yaml")))
    assert len(paths) >= 4
    for path in paths:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
        theirs, errors = decode_str(text)
        assert errors == [], (path, errors)
        assert cfntemplate.loads(text) == theirs, path
    texts = [json.dumps(cfntemplate.load(path)) for path in paths]
    for long_form in ('"Ref"', '"Fn::Sub"', '"Fn::GetAtt"', '"Fn::If"'):
        assert any(long_form in text for text in texts), long_form


def test_events_may_invoke_the_function_only_from_this_accounts_rules():
    template = cfntemplate.load(os.path.join(ROOT, "cfn", "lease-function.yaml"))
    permission = template["Resources"]["LeaseFunctionPermission"]["Properties"]
    assert permission["Principal"] == "events.amazonaws.com"
    assert resolve(permission["SourceArn"], CONTEXT) == \
        "arn:aws:events:us-east-1:123456789012:rule/*"
    assert permission["SourceAccount"] == {"Ref": "AWS::AccountId"}


def test_bucket_is_private_encrypted_and_expires_stale_configs():
    template = cfntemplate.load(os.path.join(ROOT, "cfn", "bucket.yaml"))
    bucket = template["Resources"]["ConfigurationBucket"]["Properties"]
    assert all(bucket["PublicAccessBlockConfiguration"].values())
    assert bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"][0][
        "ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    [rule] = bucket["LifecycleConfiguration"]["Rules"]
    assert rule["Prefix"] == "config-" and rule["Status"] == "Enabled"


def test_bucket_may_log_access_to_a_given_bucket():
    """Finding 8: reads of the secret-bearing objects can leave an audit trail."""
    template = cfntemplate.load(os.path.join(ROOT, "cfn", "bucket.yaml"))
    assert template["Parameters"]["AccessLogBucket"]["Default"] == ""
    logging = template["Resources"]["ConfigurationBucket"]["Properties"]["LoggingConfiguration"]
    condition, when_set, _ = logging["Fn::If"]
    assert condition == "LogAccess"
    assert when_set["DestinationBucketName"] == {"Ref": "AccessLogBucket"}


def test_lease_function_logs_expire_and_its_concurrency_is_reserved():
    """Finding 8: a log group with a retention (default 30 days), and a small reserved
    concurrency, so that the account's other functions cannot starve it."""
    template = cfntemplate.load(os.path.join(ROOT, "cfn", "lease-function.yaml"))
    assert template["Parameters"]["LogRetentionDays"]["Default"] == 30
    group = template["Resources"]["LeaseFunctionLogGroup"]["Properties"]
    assert group["LogGroupName"] == "/aws/lambda/HTCondorAnnex-LeaseFunction"
    assert group["RetentionInDays"] == {"Ref": "LogRetentionDays"}
    function = template["Resources"]["LeaseFunction"]["Properties"]
    assert function["FunctionName"] == "HTCondorAnnex-LeaseFunction"
    assert function["LoggingConfig"]["LogGroup"] == {"Ref": "LeaseFunctionLogGroup"}
    assert 0 < template["Parameters"]["ReservedConcurrency"]["Default"] <= 10
    assert function["ReservedConcurrentExecutions"]["Fn::If"][1] == {"Ref": "ReservedConcurrency"}


def test_security_group_keeps_ssh_closed_by_default():
    template = cfntemplate.load(os.path.join(ROOT, "cfn", "security-group.yaml"))
    ingress = template["Resources"]["AnnexSecurityGroup"]["Properties"]["SecurityGroupIngress"]
    assert [(rule["FromPort"], rule["ToPort"]) for rule in ingress] == [(9618, 9618)]
    assert template["Resources"]["SSHIngress"]["Condition"] == "AllowSSH"
    assert template["Parameters"]["SSHCidr"]["Default"] == ""
