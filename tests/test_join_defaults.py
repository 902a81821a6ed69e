"""Nothing launches that cannot join (issue 25, findings 2 and 3).

Instances need the instance profile -setup made (to read their configuration) and its
security group (to be reached by the pool).  A launch that names neither gets -setup's, as the
original condor_annex filled them in, or is refused before any AWS call, naming the knob; and
``-slots N`` alone is a Spot Fleet from ``ANNEX_DEFAULT_SFR_CONFIG_FILE`` or nothing, never
on-demand instances.  Against the emulator: the pools here name what
:func:`localaws.fixtures.create_join_resources` made, as a site's do after -setup.
"""
from __future__ import annotations

import json

import pytest

from annexd_lambda.lease import ANNEX_TAG
from localaws import fixtures
from localaws.pool import AnnexDaemon, LocalPool

from conftest import SECRET, SPOT_CONFIG

AMI = fixtures.WORKER_IMAGE
OWN_PROFILE = "arn:aws:iam::123456789012:instance-profile/HTCondorAnnex-InstanceProfile-own"
ON_DEMAND = ["-aws-on-demand-ami-id", AMI, "-aws-on-demand-instance-type", "m5.large"]


def instances_of(aws, name: str) -> list[dict]:
    return [i for r in aws.ec2.describe_instances(Filters=[
        {"Name": f"tag:{ANNEX_TAG}", "Values": [name]},
        {"Name": "instance-state-name", "Values": ["pending", "running"]}])["Reservations"]
        for i in r["Instances"]]


def fleet_config(aws, name: str) -> dict:
    """The SpotFleetRequestConfig AWS holds for the annex's one fleet."""
    [fleet_id] = aws.annex_resources(name)["fleets"]
    [fleet] = aws.ec2.describe_spot_fleet_requests(
        SpotFleetRequestIds=[fleet_id])["SpotFleetRequestConfigs"]
    return fleet["SpotFleetRequestConfig"]


def create(run_annex, aws, with_keys, name: str, *args: str):
    return run_annex("-annex-name", name, "-lease-duration", "3600", "-lease-function-arn",
                     aws.lease_arn, "-yes", *with_keys, *args)


def test_a_spot_fleet_config_without_profile_or_group_gets_setups(aws, run_annex, with_keys):
    with open(SPOT_CONFIG, encoding="utf-8") as handle:
        shipped = json.load(handle)["LaunchSpecifications"][0]
    assert "IamInstanceProfile" not in shipped and "SecurityGroups" not in shipped
    made = create(run_annex, aws, with_keys, "filled", "-count", "1", SPOT_CONFIG)
    assert made.returncode == 0, made.stderr
    assert "added -setup's IamInstanceProfile" in made.stderr
    [spec] = fleet_config(aws, "filled")["LaunchSpecifications"]
    assert spec["IamInstanceProfile"] == {"Arn": fixtures.JOIN_PROFILE_ARN}
    assert [g["GroupId"] for g in spec["SecurityGroups"]] == [fixtures.JOIN_GROUP_ID]


def test_a_config_that_names_its_own_keeps_them(aws, run_annex, with_keys, tmp_path):
    with open(SPOT_CONFIG, encoding="utf-8") as handle:
        config = json.load(handle)
    own = aws.ec2.create_security_group(GroupName="own", Description="own")["GroupId"]
    config["LaunchSpecifications"][0].update(
        IamInstanceProfile={"Arn": OWN_PROFILE}, SecurityGroups=[{"GroupId": own}])
    path = tmp_path / "own.json"
    path.write_text(json.dumps(config))
    made = create(run_annex, aws, with_keys, "own", "-count", "1", str(path))
    assert made.returncode == 0, made.stderr
    assert "added -setup's" not in made.stderr
    [spec] = fleet_config(aws, "own")["LaunchSpecifications"]
    assert spec["IamInstanceProfile"] == {"Arn": OWN_PROFILE}
    assert [g["GroupId"] for g in spec["SecurityGroups"]] == [own]


def test_on_demand_instances_carry_setups_profile_and_group(aws, run_annex, with_keys):
    """(moto keeps the profile as an association, and makes one for the first instance of a
    RunInstances call only: one instance here.)"""
    made = create(run_annex, aws, with_keys, "odi-joins", "-count", "1", *ON_DEMAND)
    assert made.returncode == 0, made.stderr
    [instance] = instances_of(aws, "odi-joins")
    assert [g["GroupId"] for g in instance["SecurityGroups"]] == [fixtures.JOIN_GROUP_ID]
    [association] = aws.ec2.describe_iam_instance_profile_associations(Filters=[
        {"Name": "instance-id", "Values": [instance["InstanceId"]]}])[
        "IamInstanceProfileAssociations"]
    assert association["IamInstanceProfile"]["Arn"] == fixtures.JOIN_PROFILE_ARN


@pytest.fixture(scope="module")
def unset_pool(moto_server, tmp_path_factory):
    """A pool whose site never recorded -setup's instance profile and security group."""
    pool = LocalPool(str(tmp_path_factory.mktemp("unset"))).write(moto_server.url,
                                                                  secret=SECRET, join=False)
    with AnnexDaemon(pool):
        yield pool


@pytest.mark.parametrize("args, knob", [
    (["-count", "1", SPOT_CONFIG], "ANNEX_DEFAULT_ODI_INSTANCE_PROFILE_ARN"),
    (["-count", "1", *ON_DEMAND], "ANNEX_DEFAULT_ODI_INSTANCE_PROFILE_ARN"),
    (["-count", "1", *ON_DEMAND, "-aws-on-demand-instance-profile-arn",
      fixtures.JOIN_PROFILE_ARN], "ANNEX_DEFAULT_ODI_SECURITY_GROUP_IDS"),
])
def test_without_them_nothing_is_made_and_the_knob_is_named(aws, unset_pool, args, knob):
    made = unset_pool.condor_annex("-annex-name", "nojoin", "-lease-duration", "3600",
                                   "-lease-function-arn", aws.lease_arn, "-yes", *args)
    assert made.returncode == 4, made.stderr
    assert f"us_east_1.{knob} is not set" in made.stderr
    assert "would never join the pool" in made.stderr
    assert "condor_annex -aws-region us-east-1 -setup writes it" in made.stderr
    assert not any(aws.annex_resources("nojoin").values())
    assert aws.ec2.describe_instances()["Reservations"] == []


def test_slots_alone_is_a_spot_fleet_from_the_sfr_config_file_knob(aws, pool, run_annex,
                                                                   with_keys):
    without = create(run_annex, aws, with_keys, "slots-none", "-slots", "2")
    assert without.returncode == 1
    assert "set ANNEX_DEFAULT_SFR_CONFIG_FILE" in without.stderr
    assert "for on-demand instances use -count N" in without.stderr
    assert aws.ec2.describe_instances()["Reservations"] == []
    assert not any(aws.annex_resources("slots-none").values())

    with open(pool.user_config_file, "a", encoding="utf-8") as handle:
        handle.write(f"ANNEX_DEFAULT_SFR_CONFIG_FILE = {SPOT_CONFIG}\n")
    try:
        made = create(run_annex, aws, with_keys, "slots", "-slots", "3")
    finally:
        with open(pool.user_config_file, encoding="utf-8") as handle:
            kept = [line for line in handle if "ANNEX_DEFAULT_SFR_CONFIG_FILE" not in line]
        with open(pool.user_config_file, "w", encoding="utf-8") as handle:
            handle.writelines(kept)
    assert made.returncode == 0, made.stderr
    assert made.stdout.strip().startswith("sfr-")
    assert fleet_config(aws, "slots")["TargetCapacity"] == 3
    both = create(run_annex, aws, with_keys, "both", "-slots", "1", "-count", "1", SPOT_CONFIG)
    assert both.returncode == 1 and "give -count or -slots, not both" in both.stderr


def test_a_launch_template_without_profile_or_group_is_refused_before_anything_is_made(
        aws, run_annex, with_keys, tmp_path):
    """EC2 has no override for a template's instance profile or security groups, so they
    cannot be filled in: the template is read in the create's first step, which only looks."""
    aws.ec2.create_launch_template(LaunchTemplateName="bare", LaunchTemplateData={
        "ImageId": AMI, "InstanceType": "m5.large",
        "IamInstanceProfile": {"Arn": fixtures.JOIN_PROFILE_ARN}})
    config = {"Type": "instant", "TargetCapacitySpecification": {
        "TotalTargetCapacity": 1, "DefaultTargetCapacityType": "on-demand"},
        "LaunchTemplateConfigs": [{"LaunchTemplateSpecification": {
            "LaunchTemplateName": "bare", "Version": "$Latest"}}]}
    path = tmp_path / "bare.json"
    path.write_text(json.dumps(config))
    made = create(run_annex, aws, with_keys, "bare-lt", str(path))
    assert made.returncode == 4, made.stderr
    assert "launch template bare (version $Latest) names no security group" in made.stderr
    assert "ANNEX_DEFAULT_ODI_SECURITY_GROUP_IDS" in made.stderr
    assert "nothing was created" in made.stderr
    assert not any(aws.annex_resources("bare-lt").values())
    assert aws.ec2.describe_instances()["Reservations"] == []

    fixtures.create_worker_template(aws.ec2)  # names both, as a site's must
    config["LaunchTemplateConfigs"][0]["LaunchTemplateSpecification"] = {
        "LaunchTemplateName": fixtures.WORKER_TEMPLATE, "Version": "$Default"}
    path.write_text(json.dumps(config))
    made = create(run_annex, aws, with_keys, "joined-lt", str(path))
    assert made.returncode == 0, made.stderr
