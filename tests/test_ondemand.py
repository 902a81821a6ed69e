"""On-demand annexes: -count with no Spot Fleet config starts instances with RunInstances."""
from __future__ import annotations

import json
import signal

import pytest

from annexd_lambda.lease import ANNEX_TAG, CLIENT_TOKEN_TAG
from localaws.pool import AnnexDaemon

from test_recovery import DAEMON_CREDENTIALS, annex as run_in, crash_pool, unfinished  # noqa: F401

AMI = "ami-1e749f67"


@pytest.fixture
def profile_arn(aws) -> str:
    aws.iam.create_role(RoleName="annex-instance", AssumeRolePolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                "Principal": {"Service": "ec2.amazonaws.com"}}]}))
    profile = aws.iam.create_instance_profile(InstanceProfileName="annex-instance")
    aws.iam.add_role_to_instance_profile(InstanceProfileName="annex-instance",
                                         RoleName="annex-instance")
    return profile["InstanceProfile"]["Arn"]


def odi_flags(profile: str) -> list[str]:
    return ["-aws-on-demand-ami-id", AMI, "-aws-on-demand-instance-type", "m5.large",
            "-aws-on-demand-instance-profile-arn", profile]


def instances_of(aws, name: str) -> list[dict]:
    return [i for r in aws.ec2.describe_instances(Filters=[
        {"Name": f"tag:{ANNEX_TAG}", "Values": [name]},
        {"Name": "instance-state-name", "Values": ["pending", "running"]}])["Reservations"]
        for i in r["Instances"]]


def test_on_demand_annex_lifecycle(aws, run_annex, with_keys, profile_arn):
    created = run_annex("-annex-name", "odi", "-count", "3", "-lease-duration", "3600",
                        "-lease-function-arn", aws.lease_arn, *with_keys, *odi_flags(profile_arn))
    assert created.returncode == 0, created.stderr
    started = created.stdout.split()
    instances = instances_of(aws, "odi")
    assert sorted(started) == sorted(i["InstanceId"] for i in instances) and len(started) == 3
    for instance in instances:
        tags = {t["Key"]: t["Value"] for t in instance["Tags"]}
        assert tags[ANNEX_TAG] == "odi" and tags[CLIENT_TOKEN_TAG].startswith("odi_")
        behaviour = aws.ec2.describe_instance_attribute(
            InstanceId=instance["InstanceId"], Attribute="instanceInitiatedShutdownBehavior")
        assert behaviour["InstanceInitiatedShutdownBehavior"]["Value"] == "terminate"
    assert aws.target_input("odi")["AnnexType"] == "on-demand"

    shown = json.loads(run_annex("-status", "-json", *with_keys).stdout)
    assert [(a["name"], a["type"], a["instances"]) for a in shown] == \
        [("odi", "on-demand", {"running": 3})]
    off = run_annex("-annex-name", "odi", "-off", *with_keys)
    assert off.returncode == 0 and "terminated 3 more instance(s)" in off.stdout
    assert instances_of(aws, "odi") == [] and not any(aws.annex_resources("odi").values())


def test_a_bad_image_rolls_the_lease_back(aws, run_annex, with_keys, profile_arn):
    result = run_annex("-annex-name", "badimage", "-count", "1", "-lease-function-arn",
                       aws.lease_arn, *with_keys, "-aws-on-demand-ami-id", "ami-00000000",
                       "-aws-on-demand-instance-type", "m5.large")
    assert result.returncode == 5 and "RunInstances failed: InvalidAMIID.NotFound" in result.stderr
    assert not any(aws.annex_resources("badimage").values())


def test_run_instances_is_exactly_once_across_a_crash(aws, crash_pool, profile_arn):
    # Paid by the daemon: the instance profile is the admin's (annexd.money.daemonpaid).
    crash_pool.add_knobs(f"ANNEX_DEFAULT_ODI_INSTANCE_PROFILE_ARN = {profile_arn}\n")
    crashing = AnnexDaemon(crash_pool, {**DAEMON_CREDENTIALS,
                                        "ANNEXD_TEST_CRASH_AT": "EC2 RunInstances:after"}).start()
    first = run_in(crash_pool, "-lease-duration", "3600", *odi_flags(profile_arn),
                   config=None, name="odi-crash")
    assert crashing.process.wait(timeout=60) == -signal.SIGKILL and first.returncode == 3
    with AnnexDaemon(crash_pool, DAEMON_CREDENTIALS):
        pass
    assert len(instances_of(aws, "odi-crash")) == 2  # -count 2, not 4
    assert unfinished(crash_pool) == []
