"""Turning a request into a plan: validation against botocore's model, tags, lease identity."""
import copy
import dataclasses
import json

import pytest

from annexd.instance_config.idtoken import TokenSettings
from annexd.config.knobs import PoolSettings, RegionSettings
from annexd.launch.plan import (POOL_PASSWORD_NOTICE, AnnexPlan, InvalidRequest, build_plan,
                         rate_expression)
from annexd_lambda.lease import ANNEX_TAG, CLIENT_TOKEN_TAG

from conftest import SPOT_CONFIG

ARN = "arn:aws:lambda:us-east-1:123456789012:function:HTCondorAnnex-LeaseFunction"
NOW = 1_800_000_000.7
#: What -setup made for instances to join with (the region's knobs).
PROFILE = "arn:aws:iam::123456789012:instance-profile/HTCondorAnnex-InstanceProfile-x"
GROUP = "sg-0123456789abcdef0"


def settings(**overrides) -> RegionSettings:
    values = dict(region="us-east-1", endpoints={}, bucket="bucket", lease_function_arn=None,
                  instance_profile_arn=PROFILE, security_group_ids=(GROUP,))
    values.update(overrides)
    return RegionSettings(**values)


TOKENS = TokenSettings(key_id="POOL", key_file="/etc/condor/pool_password", key_knob="POOL",
                       issuer="example.org", identity="{annex}.{user}@annex.example.org")
POOL = PoolSettings(collector_host="cm.example.org", unclaimed_timeout=900,
                    idtoken_file=None, password_file="/etc/condor/pool_password", token=TOKENS)


def build(request, *, owner_uid=0, pool=POOL, **overrides):
    return build_plan(request, owner_uid=owner_uid, settings=settings(**overrides),
                      lease_rate_minutes=5, now=NOW, pool=pool, user_name="alice")


def console_config() -> dict:
    with open(SPOT_CONFIG, encoding="utf-8") as handle:
        return json.load(handle)


def plan_for(config=None, **annex) -> AnnexPlan:
    request = {"name": "nightly", "lease_duration": 3600, "lease_function_arn": ARN,
               "fleet_config": console_config() if config is None else config,
               "config_source": "c.json"}
    request.update(annex)
    return build(request, owner_uid=1000)


def test_plan_identity_and_lease():
    plan = plan_for()
    assert plan.annex_id == plan.rule_name == plan.target_id == "nightly"
    # The config object belongs to this request in this region (a bucket is shared by
    # regions and users), and still matches the instance role's config-*.tar.gz.
    assert plan.config_key == f"config-{plan.region}-{plan.client_token}.tar.gz"
    assert plan.lease_end == 1_800_003_600
    assert plan.client_token.startswith("nightly_") and len(plan.client_token) == 8 + 36
    assert plan.rule_schedule == "rate(5 minutes)"
    assert json.loads(plan.target_input()) == {
        "AnnexID": "nightly", "AnnexType": "spot-fleet", "S3BucketName": "bucket",
        "LeaseExpiration": 1_800_003_600, "ClientToken": plan.client_token}


def test_a_plan_of_an_earlier_release_keeps_its_names():
    """Journaled before requests owned their resources: the old key, no token in the Input,
    so that its teardown still finds everything by name."""
    record = json.loads(plan_for().to_record())
    del record["keyed_by_request"]
    old = AnnexPlan.from_record(json.dumps(record))
    assert old.config_key == "config-nightly.tar.gz" and old.request_token is None
    assert "ClientToken" not in json.loads(old.target_input())


def test_longest_name_makes_a_64_character_token():
    plan = plan_for(name="a" * 27)
    assert len(plan.client_token) == 64


def test_plan_round_trips_through_the_journal_record():
    plan = plan_for()
    assert AnnexPlan.from_record(plan.to_record()) == plan


def test_fleet_config_keeps_user_fields_and_adds_annex_tags():
    config = plan_for(count=7).launch_request
    assert config["TargetCapacity"] == 7
    assert config["IamFleetRole"].endswith("aws-ec2-spot-fleet-tagging-role")
    assert config["TerminateInstancesWithExpiration"] is True and config["Type"] == "request"
    assert "ValidFrom" not in config and "ValidUntil" not in config
    plan = plan_for()
    assert plan.launch_request["TagSpecifications"] == [
        {"ResourceType": "spot-fleet-request", "Tags": [
            {"Key": ANNEX_TAG, "Value": "nightly"},
            {"Key": CLIENT_TOKEN_TAG, "Value": plan.client_token}]}]
    [spec] = config["LaunchSpecifications"]
    assert spec["TagSpecifications"] == [{"ResourceType": "instance", "Tags": [
        {"Key": "project", "Value": "nightly-builds"}, {"Key": ANNEX_TAG, "Value": "nightly"},
        {"Key": CLIENT_TOKEN_TAG, "Value": config["ClientToken"]}]}]


def test_notices_say_what_was_changed():
    config = console_config()
    config["ClientToken"] = "mine"
    plan = plan_for(config)
    assert plan.launch_request["ClientToken"] == plan.client_token
    assert plan.notices == (
        "c.json: dropped ValidFrom (the annex lease decides when the fleet ends)",
        "c.json: dropped ValidUntil (the annex lease decides when the fleet ends)",
        "c.json: replaced ClientToken with the annex's own",
        f"c.json: LaunchSpecifications[0]: added -setup's IamInstanceProfile {PROFILE} and "
        f"SecurityGroups {GROUP}")


def test_launch_specifications_get_setups_profile_and_groups_where_they_name_none():
    config = console_config()
    config["LaunchSpecifications"].append(dict(
        config["LaunchSpecifications"][0], IamInstanceProfile={"Name": "own"},
        NetworkInterfaces=[{"DeviceIndex": 0, "SubnetId": "subnet-1"}]))
    config["LaunchSpecifications"].append(dict(
        config["LaunchSpecifications"][0], IamInstanceProfile={"Arn": "arn:own"},
        SecurityGroups=[{"GroupId": "sg-own"}]))
    first, second, third = plan_for(config).launch_request["LaunchSpecifications"]
    assert first["IamInstanceProfile"] == {"Arn": PROFILE}
    assert first["SecurityGroups"] == [{"GroupId": GROUP}]
    assert second["IamInstanceProfile"] == {"Name": "own"} and "SecurityGroups" not in second
    assert second["NetworkInterfaces"] == [{"DeviceIndex": 0, "SubnetId": "subnet-1",
                                            "Groups": [GROUP]}]
    assert third["IamInstanceProfile"] == {"Arn": "arn:own"}
    assert third["SecurityGroups"] == [{"GroupId": "sg-own"}]


def test_the_requests_profile_and_groups_win_over_the_daemons():
    plan = plan_for(instance_profile_arn="arn:users", security_group_ids=["sg-a", "sg-b"])
    [spec] = plan.launch_request["LaunchSpecifications"]
    assert spec["IamInstanceProfile"] == {"Arn": "arn:users"}
    assert spec["SecurityGroups"] == [{"GroupId": "sg-a"}, {"GroupId": "sg-b"}]


@pytest.mark.parametrize("unset, knob", [
    ({"instance_profile_arn": None}, "us_east_1.ANNEX_DEFAULT_ODI_INSTANCE_PROFILE_ARN"),
    ({"security_group_ids": ()}, "us_east_1.ANNEX_DEFAULT_ODI_SECURITY_GROUP_IDS"),
])
def test_without_setups_profile_or_groups_a_launch_that_names_none_is_refused(unset, knob):
    request = {"name": "nightly", "lease_duration": 3600, "lease_function_arn": ARN,
               "config_source": "c.json"}
    with pytest.raises(InvalidRequest) as refused:
        build({**request, "fleet_config": console_config()}, **unset)
    assert str(refused.value).startswith("c.json: LaunchSpecifications[0]: no ")
    assert f"{knob} is not set" in str(refused.value)
    assert "would never join the pool" in str(refused.value)
    # An invalid config is named for what is wrong with it first.
    broken = dict(console_config(), TargetCapacity="two")
    with pytest.raises(InvalidRequest, match="Invalid type for parameter"):
        build({**request, "fleet_config": broken}, **unset)


def test_wrapped_and_bare_configs_give_the_same_request():
    bare = plan_for()
    wrapped = plan_for({"SpotFleetRequestConfig": console_config()})
    as_text = json.dumps(wrapped.launch_request).replace(wrapped.client_token,
                                                           bare.client_token)
    assert json.loads(as_text) == bare.launch_request


def test_the_users_file_is_not_modified():
    config = console_config()
    original = copy.deepcopy(config)
    plan_for(config)
    assert config == original


@pytest.mark.parametrize("mutate, message", [
    (lambda c: c.pop("IamFleetRole"), 'Missing required parameter in SpotFleetRequestConfig: "IamFleetRole"'),
    (lambda c: c.update(TargetCapacity="ten"), "Invalid type for parameter SpotFleetRequestConfig.TargetCapacity"),
    (lambda c: c.update(Bogus=1), 'Unknown parameter in SpotFleetRequestConfig: "Bogus"'),
    (lambda c: c["LaunchSpecifications"][0].update(InstanceType=5), "LaunchSpecifications[0].InstanceType"),
    (lambda c: c.update(TagSpecifications=[{"ResourceType": "spot-fleet-request", "Tags": [
        {"Key": ANNEX_TAG, "Value": "other"}]}]), "conflicts with the annex's 'nightly'"),
    (lambda c: c.pop("LaunchSpecifications"),
     "give LaunchSpecifications or LaunchTemplateConfigs"),
])
def test_invalid_configs_name_the_field(mutate, message):
    config = console_config()
    mutate(config)
    with pytest.raises(InvalidRequest) as error:
        plan_for(config)
    assert str(error.value).startswith("c.json: invalid Spot Fleet config: ")
    assert message in str(error.value)


@pytest.mark.parametrize("config", [[], "text", 5, {"SpotFleetRequestConfig": []}])
def test_a_config_that_is_not_an_object_is_refused(config):
    with pytest.raises(InvalidRequest, match="expected a JSON object"):
        plan_for(config)


def test_lease_function_comes_from_the_knob_when_not_given():
    request = {"lease_duration": 60, "fleet_config": console_config()}
    plan = build(request, lease_function_arn=ARN)
    assert plan.lease_function_arn == ARN
    assert plan.annex_id.startswith("annex-")


@pytest.mark.parametrize("overrides, arn, message", [
    ({}, None, "pass -lease-function-arn ARN or set ANNEX_DEFAULT_LEASE_FUNCTION_ARN"),
    ({}, "arn:aws:s3:::bucket", "is not a Lambda function ARN"),
    ({}, ARN.replace("us-east-1", "eu-west-1"), "the function is in eu-west-1"),
    ({"bucket": None}, ARN, "set ANNEX_DEFAULT_S3_BUCKET"),
])
def test_missing_or_wrong_settings_are_explained(overrides, arn, message):
    request = {"lease_duration": 60, "fleet_config": console_config()}
    if arn:
        request["lease_function_arn"] = arn
    with pytest.raises(InvalidRequest, match=message):
        build(request, **overrides)


def test_rate_expression_uses_aws_singular_for_one_minute():
    assert rate_expression(1) == "rate(1 minute)"
    assert rate_expression(10) == "rate(10 minutes)"


def test_the_users_bucket_wins_over_the_regions():
    request = {"lease_duration": 60, "fleet_config": console_config(),
               "lease_function_arn": ARN, "bucket": "users-own-bucket"}
    assert build(request, bucket=None).bucket == "users-own-bucket"


# -- launch templates, EC2 Fleets, prices ----------------------------------------------------

from annexd.money import costs  # noqa: E402
from annexd.config.knobs import Caps  # noqa: E402

from conftest import EC2_FLEET_CONFIG, LAUNCH_TEMPLATE_CONFIG  # noqa: E402


def example(path: str) -> dict:
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def test_an_old_journal_record_is_read_into_the_launch_request():
    plan = plan_for()
    record = json.loads(plan.to_record())
    record["spot_fleet_config"] = record.pop("launch_request")
    record["on_demand_request"] = {}
    assert AnnexPlan.from_record(json.dumps(record)) == plan


def test_a_launch_template_spot_fleet_tags_the_request_and_keeps_the_templates():
    plan = plan_for(example(LAUNCH_TEMPLATE_CONFIG), count=3)
    request = plan.launch_request
    assert plan.annex_type == "spot-fleet" and request["TargetCapacity"] == 3
    assert request["LaunchTemplateConfigs"] == example(LAUNCH_TEMPLATE_CONFIG)[
        "LaunchTemplateConfigs"]  # the user's templates, untouched
    [fleet_tags] = [spec["Tags"] for spec in request["TagSpecifications"]
                    if spec["ResourceType"] == "spot-fleet-request"]
    assert {"Key": ANNEX_TAG, "Value": "nightly"} in fleet_tags
    assert {"Key": CLIENT_TOKEN_TAG, "Value": plan.client_token} in fleet_tags


def test_an_ec2_fleet_config_is_recognised_and_tagged_by_type():
    maintain = plan_for(example(EC2_FLEET_CONFIG), count=5)
    assert maintain.annex_type == "ec2-fleet"
    assert maintain.launch_request["TargetCapacitySpecification"]["TotalTargetCapacity"] == 5
    assert maintain.launch_request["ClientToken"] == maintain.client_token
    assert {spec["ResourceType"] for spec in maintain.launch_request["TagSpecifications"]} == \
        {"fleet"}
    instant = plan_for({**example(EC2_FLEET_CONFIG), "Type": "instant"},
                       tags=[{"key": "team", "value": "hep"}])
    specs = {spec["ResourceType"]: spec["Tags"]
             for spec in instant.launch_request["TagSpecifications"]}
    assert {"Key": ANNEX_TAG, "Value": "nightly"} in specs["instance"]
    assert {"Key": "team", "Value": "hep"} in specs["instance"]
    assert {"Key": CLIENT_TOKEN_TAG, "Value": instant.client_token} in specs["fleet"]


@pytest.mark.parametrize("change, message", [
    (lambda c: c.pop("LaunchTemplateConfigs"),
     'invalid EC2 Fleet config: Missing required parameter in input: "LaunchTemplateConfigs"'),
    (lambda c: c.update(Bogus=1), 'Unknown parameter in input: "Bogus"'),
    (lambda c: c["TargetCapacitySpecification"].update(SpotTargetCapacity=3,
                                                       OnDemandTargetCapacity=3),
     "OnDemandTargetCapacity + SpotTargetCapacity exceed TotalTargetCapacity"),
    (lambda c: c.update(TagSpecifications=[{"ResourceType": "instance", "Tags": []}]),
     "a maintain fleet can tag only the fleet"),
    (lambda c: c["LaunchTemplateConfigs"][0]["Overrides"][0].update(MaxPrice="lots"),
     "LaunchTemplateConfigs[0].Overrides[0].MaxPrice: expected a price in USD"),
])
def test_invalid_ec2_fleet_configs_name_the_field(change, message):
    config = example(EC2_FLEET_CONFIG)
    change(config)
    with pytest.raises(InvalidRequest) as error:
        plan_for(config)
    assert message in str(error.value)


@pytest.mark.parametrize("spot_options, advised", [
    ({}, True), ({"AllocationStrategy": "lowest-price"}, True),
    ({"AllocationStrategy": "price-capacity-optimized"}, False),
])
def test_ec2_fleet_allocation_strategy_notice(spot_options, advised):
    plan = plan_for({**example(EC2_FLEET_CONFIG), "SpotOptions": spot_options, "DryRun": True})
    assert "c.json: dropped DryRun" in plan.notices
    assert any("AWS recommends price-capacity-optimized" in n for n in plan.notices) is advised
    assert plan.launch_request.get("SpotOptions") == spot_options  # never changed silently


def test_max_cost_becomes_caps_that_aws_enforces_and_add_up_to_it():
    caps = Caps(max_cost=10.0)
    mixed = costs.with_price_cap(plan_for(example(LAUNCH_TEMPLATE_CONFIG)), caps)  # 4, 1 OD
    request = mixed.launch_request
    assert request["SpotMaxTotalPrice"] == "7.5000"      # 10 $ over 1 h, 3 of 4 units
    assert request["OnDemandMaxTotalPrice"] == "2.5000"
    assert any("AWS enforces ANNEX_MAX_COST" in n for n in mixed.notices)
    fleet = costs.with_price_cap(plan_for(example(EC2_FLEET_CONFIG), lease_duration=7200),
                                 caps)
    assert fleet.launch_request["SpotOptions"]["MaxTotalPrice"] == "5.0000"  # all Spot, 2 h
    assert "OnDemandOptions" not in fleet.launch_request
    stricter = {**example(EC2_FLEET_CONFIG), "SpotOptions": {"MaxTotalPrice": "1.25"}}
    assert costs.with_price_cap(plan_for(stricter), caps).launch_request["SpotOptions"][
        "MaxTotalPrice"] == "1.25"  # the user's own, lower cap stays
    unlimited = plan_for()
    assert costs.with_price_cap(unlimited, Caps()) is unlimited


def test_unpriceable_fleets_are_allowed_under_max_cost_because_aws_caps_them():
    config = example(LAUNCH_TEMPLATE_CONFIG)
    config["LaunchTemplateConfigs"][0]["Overrides"] = [{"InstanceRequirements": {
        "VCpuCount": {"Min": 2}, "MemoryMiB": {"Min": 4096}}}]
    plan = costs.with_price_cap(plan_for(config), Caps(max_cost=10.0))
    found = costs.check(plan, Caps(max_cost=10.0), others=costs.Holding)
    assert found["worst_case_cost"] is None and "SpotMaxTotalPrice" in plan.launch_request


def test_each_annex_gets_its_own_token_by_default():
    first, second = plan_for(), plan_for(name="other")
    assert first.pool_auth == "minted" and POOL_PASSWORD_NOTICE not in first.notices
    assert first.token_identity == "nightly.alice@annex.example.org"
    assert len(first.token_id) == 32 and int(first.token_id, 16) >= 0
    assert first.token_id != second.token_id
    assert AnnexPlan.from_record(first.to_record()) == first  # journaled with the plan


def test_the_users_token_wins_then_the_pool_password_only_if_the_admin_opted_in():
    opted_in = dataclasses.replace(POOL, send_password=True)
    request = {"name": "n", "lease_duration": 3600, "lease_function_arn": ARN,
               "fleet_config": console_config()}
    assert build(dict(request, idtoken="t.o.k"), pool=opted_in).pool_auth == "idtoken"
    plan = build(request, pool=opted_in)
    assert plan.pool_auth == "password" and plan.token_id == ""
    assert POOL_PASSWORD_NOTICE in plan.notices
    with pytest.raises(InvalidRequest, match="ANNEX_SEND_POOL_PASSWORD = true, but"):
        build(request, pool=dataclasses.replace(opted_in, password_file=None))


def test_an_identity_that_is_not_name_at_domain_is_refused():
    odd = dataclasses.replace(POOL, token=dataclasses.replace(TOKENS, identity="{annex} x"))
    with pytest.raises(InvalidRequest, match="ANNEX_TOKEN_IDENTITY makes 'n x'"):
        build({"name": "n", "lease_duration": 3600, "lease_function_arn": ARN,
               "fleet_config": console_config()}, pool=odd)
