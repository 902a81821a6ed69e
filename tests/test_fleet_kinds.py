"""Every kind of fleet config, end to end against the moto server: a Spot Fleet with launch
templates, and EC2 Fleets (maintain and instant).  For each: create, tags, -status, lease
expiry leaves nothing running, and a daemon killed right after the launch call finds the fleet
again instead of launching a second one."""
from __future__ import annotations

import itertools
import json
import sqlite3

import pytest

from annexd_lambda import lease
from annexd_lambda.lease import ANNEX_TAG, CLIENT_TOKEN_TAG
from localaws import fixtures
from localaws.pool import AnnexDaemon

from conftest import EC2_FLEET_CONFIG, LAUNCH_TEMPLATE_CONFIG
from test_recovery import DAEMON_CREDENTIALS, annex, crash, crash_pool  # noqa: F401

_NAMES = itertools.count()


def config_file(tmp_path, path: str, **changes) -> str:
    with open(path, encoding="utf-8") as handle:
        config = json.load(handle)
    config.update(changes)
    written = tmp_path / f"config-{next(_NAMES)}.json"
    written.write_text(json.dumps(config))
    return str(written)


KINDS = {
    # kind id: (example, changes, annex type, fleet-ID prefix, whether instances carry our tag)
    "spot-fleet-launch-template": (LAUNCH_TEMPLATE_CONFIG, {}, "spot-fleet", "sfr-", False),
    "ec2-fleet-maintain": (EC2_FLEET_CONFIG, {}, "ec2-fleet", "fleet-", False),
    "ec2-fleet-instant": (EC2_FLEET_CONFIG, {"Type": "instant"}, "ec2-fleet", "fleet-", True),
}


def create(aws, run_annex, with_keys, tmp_path, example: str, lease: str = "3600", **changes):
    """A new annex of 2 capacity units from ``example`` (with ``changes``); its name and the
    finished condor_annex."""
    fixtures.create_worker_template(aws.ec2)
    name = f"kind-{next(_NAMES)}"
    created = run_annex("-annex-name", name, "-count", "2", "-lease-duration", lease,
                        "-lease-function-arn", aws.lease_arn, *with_keys,
                        config_file(tmp_path, example, **changes))
    assert created.returncode == 0, created.stderr
    return name, created


def fleet_tags(aws, fleet_id: str) -> dict[str, str]:
    if fleet_id.startswith("sfr-"):
        fleet = aws.ec2.describe_spot_fleet_requests(
            SpotFleetRequestIds=[fleet_id])["SpotFleetRequestConfigs"][0]
    else:
        fleet = aws.ec2.describe_fleets(FleetIds=[fleet_id])["Fleets"][0]
    return {tag["Key"]: tag["Value"] for tag in fleet.get("Tags", [])}


def fleet_instances(aws, fleet_id: str) -> list[str]:
    if fleet_id.startswith("sfr-"):
        found = aws.ec2.describe_spot_fleet_instances(SpotFleetRequestId=fleet_id)
    else:
        found = aws.ec2.describe_fleet_instances(FleetId=fleet_id)
    return [instance["InstanceId"] for instance in found["ActiveInstances"]]


def instances(aws, ids: list[str]) -> list[dict]:
    reply = aws.ec2.describe_instances(InstanceIds=ids)
    return [i for r in reply["Reservations"] for i in r["Instances"]]


@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_is_created_tagged_counted_and_ended_by_its_lease(
        kind, aws, run_annex, with_keys, fire_lease, tmp_path):
    example, changes, annex_type, prefix, tagged = KINDS[kind]
    name, created = create(aws, run_annex, with_keys, tmp_path, example, **changes)
    fleet_id = created.stdout.strip()
    assert fleet_id.startswith(prefix), created.stdout

    # The fleet carries the annex's identity; its instances do where AWS lets us tag them.
    tags = fleet_tags(aws, fleet_id)
    assert tags[ANNEX_TAG] == name and tags[CLIENT_TOKEN_TAG].startswith(f"{name}_")
    assert tags["project"] == "nightly-builds"  # the user's own fleet tags are kept
    launched = fleet_instances(aws, fleet_id)
    assert len(launched) == 2
    for instance in instances(aws, launched):
        instance_tags = {t["Key"]: t["Value"] for t in instance.get("Tags", [])}
        assert instance_tags.get("project") == "nightly-builds"  # from the launch template
        assert (instance_tags.get(ANNEX_TAG) == name) is tagged

    # AWS tags every fleet instance with its fleet's ID (moto does not): -status counts
    # launch-template fleets' instances by that tag.
    fixtures.tag_fleet_instances_as_aws_does(aws.ec2, fleet_id)
    status = run_annex("-status", "-json", "-annex-name", name, *with_keys)
    assert status.returncode == 0, status.stderr
    [shown] = json.loads(status.stdout)
    assert shown["type"] == annex_type and shown["instances"] == {"running": 2}

    # The lease ends: the lease function ends the fleet and every one of its instances.
    event = aws.target_input(name)
    assert event["AnnexType"] == annex_type
    summary = fire_lease(event, now=event["LeaseExpiration"] + 1)
    assert summary["cancelled_fleets"] == [fleet_id]
    assert {i["State"]["Name"] for i in instances(aws, launched)} == {"terminated"}
    assert not any(aws.annex_resources(name).values())
    again = fire_lease(event, now=event["LeaseExpiration"] + 61)  # a late tick: no rule
    assert again["expired"] is False and again["refused"].startswith(f"there is no rule {name}")


@pytest.mark.parametrize("kind, call", [
    ("spot-fleet-launch-template", "EC2 RequestSpotFleet"),
    ("ec2-fleet-maintain", "EC2 CreateFleet"),
    ("ec2-fleet-instant", "EC2 CreateFleet"),
])
def test_killed_after_the_launch_call_the_restarted_daemon_finds_the_fleet(
        kind, call, aws, crash_pool, tmp_path):  # noqa: F811
    example, changes, annex_type, prefix, _ = KINDS[kind]
    fixtures.create_worker_template(aws.ec2)
    config = config_file(tmp_path, example, **changes)
    # With the user's keys: a launch template chooses its own instance profile, key pair and
    # user data, so neither a daemon-paid create nor the daemon's recovery may launch one
    # (annexd.money.daemonpaid); its owner's repeat resumes it.
    crash(crash_pool, f"{call}:after", "-lease-duration", "3600", config=config, keys=True)
    with AnnexDaemon(crash_pool, DAEMON_CREDENTIALS):
        resumed = annex(crash_pool, "-lease-duration", "3600", config=config, keys=True)
        assert resumed.returncode == 0, resumed.stderr
    with sqlite3.connect(crash_pool.journal_file) as db:
        state, outputs = db.execute("SELECT state, outputs FROM requests WHERE annex_id = "
                                    "'phoenix'").fetchone()
    assert state == "active"
    held = aws.annex_resources("phoenix")
    assert len(held["fleets"]) == 1, held  # found again, not launched twice
    fleet_id = held["fleets"][0]
    assert fleet_id.startswith(prefix) and fleet_id in outputs
    assert len(fleet_instances(aws, fleet_id)) == 2
    assert held["rules"] == ["phoenix"] and len(held["objects"]) == 1


def test_a_fleet_whose_launch_template_is_missing_is_refused_and_leaves_nothing(
        aws, run_annex, with_keys, tmp_path):
    config = config_file(tmp_path, EC2_FLEET_CONFIG, Type="instant", LaunchTemplateConfigs=[{
        "LaunchTemplateSpecification": {"LaunchTemplateName": "no-such-template",
                                        "Version": "$Default"}}])
    name = f"kind-{next(_NAMES)}"
    created = run_annex("-annex-name", name, "-count", "1", "-lease-duration", "3600",
                        "-lease-function-arn", aws.lease_arn, *with_keys, config)
    assert created.returncode != 0
    # Found in the create's first step, which reads each template before anything is made.
    assert "EC2 DescribeLaunchTemplateVersions failed: InvalidLaunchTemplateName" in \
        created.stderr
    assert "nothing was left behind" in created.stderr
    assert not any(aws.annex_resources(name).values())


class _InstantReply:
    """Stands in for AWS where moto cannot: an instant fleet whose every launch failed (AWS
    answers CreateFleet with the fleet ID, no instances and the errors)."""

    def __init__(self, reply):
        self.reply = reply

    def create_fleet(self, params):
        return self.reply


def test_an_instant_fleet_that_starts_nothing_fails_its_step_with_aws_reasons():
    from annexd.aws import InvalidInput
    from annexd.launch import EC2_FLEET
    from annexd.launch.plan import AnnexPlan

    plan = AnnexPlan(annex_id="a", annex_type="ec2-fleet", owner_uid=0, region="us-east-1",
                     lease_function_arn="arn", lease_end=0, bucket="b", client_token="a_t",
                     rule_schedule="rate(1 minute)", launch_request={"Type": "instant"})
    errors = [{"ErrorCode": "InsufficientInstanceCapacity", "ErrorMessage": "no m5.large"}]
    with pytest.raises(InvalidInput) as failed:
        EC2_FLEET.launch(_InstantReply({"FleetId": "fleet-1", "Errors": errors}), plan, {})
    assert failed.value.code == "InsufficientInstanceCapacity"
    assert "no m5.large" in str(failed.value)
    some = EC2_FLEET.launch(_InstantReply({"FleetId": "fleet-1", "Errors": errors, "Instances": [
        {"InstanceIds": ["i-1"]}]}), plan, {})
    assert some == {"fleet_id": "fleet-1", "instance_ids": ["i-1"],
                    "launch_errors": ["InsufficientInstanceCapacity: no m5.large"]}


@pytest.mark.parametrize("changes, notice", [
    ({"AllocationStrategy": "lowestPrice"},
     "AllocationStrategy lowestPrice: AWS recommends priceCapacityOptimized"),
    ({"AllocationStrategy": "diversified"}, None),
])
def test_spot_allocation_strategy_notice(aws, run_annex, with_keys, tmp_path, changes,
                                         notice):
    _, created = create(aws, run_annex, with_keys, tmp_path, LAUNCH_TEMPLATE_CONFIG, "600",
                        **changes)
    assert ("AWS recommends" in created.stderr) is (notice is not None)
    if notice:
        assert notice in created.stderr
    fleet = aws.ec2.describe_spot_fleet_requests(SpotFleetRequestIds=[created.stdout.strip()])
    # A notice, never a silent change: the fleet runs with what the user wrote.
    assert fleet["SpotFleetRequestConfigs"][0]["SpotFleetRequestConfig"][
        "AllocationStrategy"] == changes["AllocationStrategy"]


def test_attribute_based_overrides_pass(aws, run_annex, with_keys, tmp_path):
    fixtures.create_worker_template(aws.ec2)
    with open(LAUNCH_TEMPLATE_CONFIG, encoding="utf-8") as handle:
        templates = json.load(handle)["LaunchTemplateConfigs"]
    templates[0]["Overrides"].append({"InstanceRequirements": {
        "VCpuCount": {"Min": 2, "Max": 8}, "MemoryMiB": {"Min": 4096}}})
    name = f"kind-{next(_NAMES)}"
    created = run_annex("-annex-name", name, "-count", "1", "-lease-duration", "600",
                        "-lease-function-arn", aws.lease_arn, *with_keys,
                        config_file(tmp_path, LAUNCH_TEMPLATE_CONFIG,
                                    LaunchTemplateConfigs=templates))
    assert created.returncode == 0, created.stderr
    assert lease.find_fleets(aws.ec2, name) == [created.stdout.strip()]
