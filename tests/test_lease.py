"""The lease function's logic, against moto's server, with an injected clock and clients."""
from __future__ import annotations

import json
import uuid

import pytest

from annexd.launch import SPOT_FLEET
from annexd_lambda import lease
from localaws import fixtures

from conftest import SPOT_CONFIG

EXPIRY = 1_800_000_000


def event(annex_id: str, bucket: str | None = "htcondor-annex-config",
          annex_type: str | None = "spot-fleet") -> dict:
    body = {"AnnexID": annex_id, "LeaseExpiration": EXPIRY}
    if annex_type is not None:
        body["AnnexType"] = annex_type
    if bucket is not None:
        body["S3BucketName"] = bucket
    return body


def put_lease(aws, annex_id: str, lease_input: dict) -> None:
    """The lease rule and target of an annex made by an earlier release (an Input without
    ClientToken, the rule described in that release's words): what the lease function
    confirms an event against."""
    aws.events.put_rule(Name=annex_id, ScheduleExpression="rate(5 minutes)",
                        Description=f"HTCondor annex {annex_id}: enforce the lease")
    aws.events.put_targets(Rule=annex_id, Targets=[
        {"Id": annex_id, "Arn": aws.lease_arn, "Input": json.dumps(lease_input)}])


def make_annex(aws, annex_id: str, capacity: int = 2, weight: float | None = None,
               lease_input: dict | None = None) -> str:
    """What condor_annexd leaves in AWS for an annex: config, rule, target, tagged fleet
    (the target's Input: ``lease_input``, by default :func:`event`)."""
    with open(SPOT_CONFIG, encoding="utf-8") as handle:
        config = json.load(handle)
    if weight is not None:
        config["LaunchSpecifications"][0]["WeightedCapacity"] = weight
    config = SPOT_FLEET.build(config, annex_id=annex_id, client_token=f"{annex_id}_t",
                            count=capacity, instance_tags={}).request
    aws.s3.put_object(Bucket="htcondor-annex-config", Key=lease.config_key(annex_id), Body=b"x")
    put_lease(aws, annex_id, event(annex_id) if lease_input is None else lease_input)
    return aws.ec2.request_spot_fleet(SpotFleetRequestConfig=config)["SpotFleetRequestId"]


def clients(aws) -> lease.Clients:
    return lease.Clients(ec2=aws.ec2, events=aws.events, s3=aws.s3)


class CallCounter:
    """Counts AWS API calls made through the given clients (botocore event hooks), until the
    test ends (:func:`counters_closed`: the clients are the worker's, shared by every test)."""

    live: list["CallCounter"] = []

    def __init__(self, *service_clients):
        self.calls: list[str] = []
        self._clients = service_clients
        for client in service_clients:
            client.meta.events.register("before-call.*.*", self._count)
        CallCounter.live.append(self)

    def _count(self, model, **_):
        self.calls.append(model.name)

    def close(self) -> None:
        for client in self._clients:
            client.meta.events.unregister("before-call.*.*", self._count)


@pytest.fixture(autouse=True)
def counters_closed():
    """Every CallCounter a test made stops counting when it ends."""
    yield
    while CallCounter.live:
        CallCounter.live.pop().close()


def test_unexpired_lease_makes_no_aws_call(aws):
    make_annex(aws, "early")
    counter = CallCounter(aws.ec2, aws.events, aws.s3)
    result = lease.handler(event("early"), None, now=lambda: EXPIRY, clients=clients(aws))
    assert result == {"AnnexID": "early", "expired": False}
    assert counter.calls == []
    assert len(aws.annex_resources("early")["instances"]) == 2


def test_expired_lease_removes_everything_in_order(aws):
    fleet_id = make_annex(aws, "late")
    counter = CallCounter(aws.ec2, aws.events, aws.s3)
    result = lease.handler(event("late"), None, now=lambda: EXPIRY + 1, clients=clients(aws))
    assert result["cancelled_fleets"] == [fleet_id] and len(result["terminated_instances"]) == 0
    assert not any(aws.annex_resources("late").values())
    mutating = [c for c in counter.calls if not c.startswith(("Describe", "List"))]
    # The lease itself (target, rule) goes last: a tick failing half-way leaves it to retry.
    assert mutating == ["CancelSpotFleetRequests", "DeleteObject", "RemoveTargets", "DeleteRule"]


def test_fleet_that_launched_nothing_is_still_cancelled(aws):
    make_annex(aws, "empty", capacity=1, weight=4)  # moto rounds this fleet down to 0 instances
    assert aws.annex_resources("empty")["instances"] == []
    result = lease.handler(event("empty"), None, now=lambda: EXPIRY + 1, clients=clients(aws))
    assert len(result["cancelled_fleets"]) == 1
    assert aws.annex_resources("empty")["fleets"] == []
    [fleet] = aws.all_fleets()
    assert fleet["SpotFleetRequestState"].startswith("cancelled")


def test_stray_tagged_instances_are_terminated_and_neighbours_kept(aws):
    make_annex(aws, "foo")
    make_annex(aws, "foobar")
    stray = aws.ec2.run_instances(
        ImageId="ami-1e749f67", InstanceType="m5.large", MinCount=1, MaxCount=1,
        TagSpecifications=[{"ResourceType": "instance",
                            "Tags": [{"Key": lease.ANNEX_TAG, "Value": "foo"}]}],
    )["Instances"][0]["InstanceId"]
    untagged = aws.ec2.run_instances(ImageId="ami-1e749f67", InstanceType="m5.large",
                                     MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
    result = lease.handler(event("foo"), None, now=lambda: EXPIRY + 1, clients=clients(aws))
    assert result["terminated_instances"] == [stray]
    assert not any(aws.annex_resources("foo").values())
    assert len(aws.annex_resources("foobar")["instances"]) == 2
    state = aws.ec2.describe_instances(InstanceIds=[untagged])["Reservations"][0]["Instances"][0]
    assert state["State"]["Name"] == "running"


def test_second_expired_tick_changes_nothing(aws):
    """A late tick finds no rule to confirm it and ends nothing; the teardown itself (which
    -off and the backstop share) is idempotent too."""
    make_annex(aws, "twice")
    first = lease.handler(event("twice"), None, now=lambda: EXPIRY + 1, clients=clients(aws))
    second = lease.handler(event("twice"), None, now=lambda: EXPIRY + 2, clients=clients(aws))
    assert first["deleted_rule"] and first["removed_target"]
    assert second == {"AnnexID": "twice", "expired": False,
                      "refused": "there is no rule twice (ended already, or deleted by hand)"}
    again = lease.teardown("twice", "htcondor-annex-config", clients(aws), "spot-fleet")
    assert again == {"AnnexID": "twice", "expired": True, "cancelled_fleets": [],
                     "terminated_instances": [], "removed_target": False,
                     "deleted_rule": False, "deleted_config": True, "deleted_copies": 0}


@pytest.mark.parametrize("bucket", [None, "no-such-bucket"])
def test_a_bad_bucket_does_not_stop_termination(aws, bucket):
    make_annex(aws, "nobucket", lease_input=event("nobucket", bucket))
    result = lease.handler(event("nobucket", bucket), None, now=lambda: EXPIRY + 1,
                           clients=clients(aws))
    assert result["deleted_config"] is False and result["deleted_rule"]
    held = aws.annex_resources("nobucket")
    assert held["fleets"] == held["instances"] == held["rules"] == []


@pytest.mark.parametrize("bad, message", [
    ("not a dict", "not a JSON object"),
    ({"LeaseExpiration": EXPIRY}, "AnnexID None"),
    ({"AnnexID": "", "LeaseExpiration": EXPIRY}, "AnnexID ''"),
    ({"AnnexID": "foo*", "LeaseExpiration": EXPIRY}, "AnnexID 'foo*'"),
    ({"AnnexID": "foo", "LeaseExpiration": "soon"}, "LeaseExpiration 'soon'"),
    ({"AnnexID": "foo", "LeaseExpiration": True}, "LeaseExpiration True"),
])
def test_malformed_events_are_refused_before_any_call(bad, message):
    with pytest.raises(lease.LeaseError, match=message.replace("*", r"\*")):
        lease.handler(bad, None, now=lambda: EXPIRY + 1, clients=None)


def test_many_fleets_are_found_across_pages(aws):
    ids = {make_annex(aws, "paged", capacity=1) for _ in range(3)}
    make_annex(aws, "other", capacity=1)
    counter = CallCounter(aws.ec2)
    found = lease.find_fleets(aws.ec2, "paged")
    assert set(found) == ids
    assert counter.calls.count("DescribeSpotFleetRequests") >= 1


def make_ec2_fleet(aws, annex_id: str, fleet_type: str = "maintain") -> str:
    """What condor_annexd leaves in AWS for an EC2 Fleet annex (fleet tagged, not its
    instances: they come from the launch template)."""
    fixtures.create_worker_template(aws.ec2)
    put_lease(aws, annex_id, event(annex_id, annex_type="ec2-fleet"))
    return aws.ec2.create_fleet(
        Type=fleet_type, ClientToken=f"{annex_id}_t",
        LaunchTemplateConfigs=[{"LaunchTemplateSpecification": {
            "LaunchTemplateName": fixtures.WORKER_TEMPLATE, "Version": "$Default"}}],
        TargetCapacitySpecification={"TotalTargetCapacity": 2,
                                     "DefaultTargetCapacityType": "spot"},
        TagSpecifications=[{"ResourceType": "fleet", "Tags": [
            {"Key": lease.ANNEX_TAG, "Value": annex_id},
            {"Key": lease.CLIENT_TOKEN_TAG, "Value": f"{annex_id}_t"}]}])["FleetId"]


def fleet_instances(aws, fleet_id: str) -> list[str]:
    return [i["InstanceId"] for i in
            aws.ec2.describe_fleet_instances(FleetId=fleet_id)["ActiveInstances"]]


def states(aws, instance_ids: list[str]) -> set[str]:
    assert instance_ids  # an empty list would describe every instance
    reply = aws.ec2.describe_instances(InstanceIds=instance_ids)
    return {i["State"]["Name"] for r in reply["Reservations"] for i in r["Instances"]}


@pytest.mark.parametrize("fleet_type", ["maintain", "request", "instant"])
def test_ec2_fleets_are_deleted_with_their_instances_and_neighbours_kept(aws, fleet_type):
    mine = make_ec2_fleet(aws, "foo", fleet_type)
    neighbour = make_ec2_fleet(aws, "foobar", fleet_type)
    launched, beside = fleet_instances(aws, mine), fleet_instances(aws, neighbour)
    result = lease.handler({**event("foo"), "AnnexType": "ec2-fleet"}, None,
                           now=lambda: EXPIRY + 1, clients=clients(aws))
    assert result["cancelled_fleets"] == [mine]
    assert states(aws, launched) == {"terminated"}
    assert states(aws, beside) == {"running"}
    assert lease.find_ec2_fleets(aws.ec2, "foobar") == [neighbour]
    again = lease.teardown("foo", "htcondor-annex-config", clients(aws), "ec2-fleet")
    assert again["cancelled_fleets"] == []  # idempotent: a deleted fleet is not live


@pytest.mark.parametrize("annex_type, looked_up", [
    ("spot-fleet", {"DescribeSpotFleetRequests"}),
    ("ec2-fleet", {"DescribeFleets"}),
    ("on-demand", set()),
    (None, {"DescribeSpotFleetRequests", "DescribeFleets"}),  # an Input without AnnexType
])
def test_the_annex_type_says_which_fleet_api_to_search(aws, annex_type, looked_up):
    typed = event("typed", annex_type=annex_type)
    make_annex(aws, "typed", lease_input=typed)
    counter = CallCounter(aws.ec2)
    lease.handler(typed, None, now=lambda: EXPIRY + 1, clients=clients(aws))
    assert {"DescribeSpotFleetRequests", "DescribeFleets"} & set(counter.calls) == looked_up


def make_request(aws, annex_id: str, token: str) -> str:
    """An annex of one request, as this release makes it: everything names its token."""
    with open(SPOT_CONFIG, encoding="utf-8") as handle:
        config = json.load(handle)
    config = SPOT_FLEET.build(config, annex_id=annex_id, client_token=token, count=1,
                              instance_tags={}).request
    aws.s3.put_object(Bucket="htcondor-annex-config",
                      Key=lease.config_key(annex_id, "us-east-1", token), Body=b"x")
    aws.events.put_rule(Name=annex_id, ScheduleExpression="rate(5 minutes)",
                        Description=lease.rule_description(annex_id, token))
    aws.events.put_targets(Rule=annex_id, Targets=[{
        "Id": annex_id, "Arn": aws.lease_arn,
        "Input": json.dumps({**event(annex_id), "ClientToken": token})}])
    return aws.ec2.request_spot_fleet(SpotFleetRequestConfig=config)["SpotFleetRequestId"]


def test_a_lease_ends_only_its_own_requests_resources(aws):
    """A tick (or -off, or the backstop) of an earlier request of the same name -- its Input
    naming another ClientToken -- touches nothing of the annex running now."""
    new, old = (f"again_{uuid.uuid4()}" for _ in range(2))
    make_request(aws, "again", new)
    stale = {**event("again"), "ClientToken": old}
    result = lease.handler(stale, None, now=lambda: EXPIRY + 1, clients=clients(aws))
    assert result["expired"] is False and "is not the lease of request" in result["refused"]
    # -off and the backstop of that earlier request (the teardown alone) end nothing either.
    ended = lease.teardown("again", "htcondor-annex-config", clients(aws), "spot-fleet", old)
    assert ended["cancelled_fleets"] == [] and ended["terminated_instances"] == []
    assert not ended["removed_target"] and not ended["deleted_rule"]
    held = aws.annex_resources("again")
    assert len(held["fleets"]) == 1 and len(held["instances"]) == 1
    assert held["rules"] == ["again"] and held["objects"] == [
        f"config-us-east-1-{new}.tar.gz"]
    own = {**event("again"), "ClientToken": new}
    lease.handler(own, None, now=lambda: EXPIRY + 1, clients=clients(aws))
    assert not any(aws.annex_resources("again").values())


def test_a_malformed_client_token_is_refused(aws):
    with pytest.raises(lease.LeaseError):
        lease.Lease.from_event({**event("x"), "ClientToken": "../../etc"})
