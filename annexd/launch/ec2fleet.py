"""EC2 Fleet annexes: a ``CreateFleet``-shaped JSON (what ``aws ec2 create-fleet
--cli-input-json`` takes), launched with CreateFleet, ended with DeleteFleets(TerminateInstances).

AWS calls RequestSpotFleet legacy and recommends EC2 Fleet.  The fleet is tagged with the
annex name and ClientToken.  Type ``instant`` fleets may tag their instances too (and are told
to); ``request`` and ``maintain`` fleets may tag only the fleet, so their instances are found
through it (DescribeFleetInstances here; the ``aws:ec2:fleet-id`` tag on the instance).
An ``instant`` fleet answers synchronously: its launch errors come back at once, and an
instant fleet that started nothing fails the create (which is rolled back).
"""
from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from annexd_lambda.lease import ANNEX_TAG

from annexd.aws import InvalidInput
from annexd.rpc.protocol import shown
from annexd.launch.base import (
    identity_tags,
    Built,
    Kind,
    LaunchConfigError,
    Option,
    Outputs,
    allocation_notice,
    check_capacity,
    check_price,
    check_weight,
    drop_validity_window,
    keep_one,
    lower_cap,
    split_cap,
    tag_resource,
    total_cap,
    take_client_token,
    template_overrides,
    validate,
)

if TYPE_CHECKING:
    from annexd.aws import AnnexAws
    from annexd.launch.plan import AnnexPlan

#: The tag AWS puts on every instance an EC2 Fleet launches.
EC2_FLEET_INSTANCE_TAG = "aws:ec2:fleet-id"

#: Not the user's to set: DryRun would launch nothing and then look like a failure.
DROPPED_CALL_FIELDS = ("DryRun",)


def looks_like(config: Any) -> bool:
    """A CreateFleet input, told apart from a Spot Fleet config by its required member."""
    return isinstance(config, dict) and "TargetCapacitySpecification" in config


def _capacities(request: dict[str, Any]) -> tuple[int, int, int]:
    """(total, spot, on-demand) capacity units."""
    spec = request.get("TargetCapacitySpecification", {})
    total = int(spec.get("TotalTargetCapacity", 0))
    if spec.get("DefaultTargetCapacityType") == "spot":
        on_demand = int(spec.get("OnDemandTargetCapacity", 0))
        return total, total - on_demand, on_demand
    spot = int(spec.get("SpotTargetCapacity", 0))
    return total, spot, total - spot



def _check_values(config: dict[str, Any]) -> None:
    spec = config["TargetCapacitySpecification"]
    total = spec["TotalTargetCapacity"]
    check_capacity("TargetCapacitySpecification.TotalTargetCapacity", total)
    parts = {name: spec.get(name, 0) for name in ("OnDemandTargetCapacity",
                                                   "SpotTargetCapacity")}
    for name, value in parts.items():
        if not 0 <= value <= total:
            raise LaunchConfigError(f"TargetCapacitySpecification.{name}: expected 0 to "
                                    f"TotalTargetCapacity ({total}), got {shown(value)}")
    if sum(parts.values()) > total:
        raise LaunchConfigError("TargetCapacitySpecification: OnDemandTargetCapacity + "
                                "SpotTargetCapacity exceed TotalTargetCapacity")
    for where, override in template_overrides(config):
        check_price(f"{where}.MaxPrice", override.get("MaxPrice"))
        check_weight(f"{where}.WeightedCapacity", override.get("WeightedCapacity"))
    fleet_type = config.get("Type", "maintain")
    if fleet_type != "instant" and any(
            tags.get("ResourceType") == "instance" for tags in config.get("TagSpecifications",
                                                                          [])):
        raise LaunchConfigError(f"TagSpecifications: a {fleet_type} fleet can tag only the "
                                "fleet (ResourceType fleet); instance tags need Type instant "
                                "or the launch template")


class Ec2Fleet(Kind):
    annex_type = "ec2-fleet"
    label = "EC2 Fleet config"
    step_name = "fleet"
    can_cap_price = True

    def build(self, source: Any, *, annex_id: str, client_token: str, count: int | None,
              instance_tags: dict[str, str], owner: str = "") -> Built:
        config = copy.deepcopy(source)
        notices = drop_validity_window(config) + take_client_token(config, client_token)
        notices += [f"dropped {name}" for name in DROPPED_CALL_FIELDS
                    if config.pop(name, None) is not None]
        if count is not None and isinstance(config.get("TargetCapacitySpecification"), dict):
            config["TargetCapacitySpecification"]["TotalTargetCapacity"] = count
        validate("CreateFleet", config)
        _check_values(config)
        if self.spot_capacity(config):
            notices += allocation_notice(config.get("SpotOptions", {}).get("AllocationStrategy"),
                                         "lowest-price", "price-capacity-optimized")
        identity = identity_tags(annex_id, client_token, owner)
        specs = config.get("TagSpecifications", [])
        if config.get("Type", "maintain") == "instant":
            specs = tag_resource(specs, "instance", identity, "TagSpecifications",
                                 overrides=instance_tags)
            specs = tag_resource(specs, "fleet", identity, "TagSpecifications")
        else:
            if instance_tags:
                notices.append(f"-tag: a {config.get('Type', 'maintain')} fleet's instances "
                               "carry the launch template's tags; the tags were put on the "
                               "fleet")
            specs = tag_resource(specs, "fleet", {**instance_tags, **identity},
                                 "TagSpecifications")
        config["TagSpecifications"] = specs
        return Built(config, notices)

    def launch(self, aws: "AnnexAws", plan: "AnnexPlan", outputs: Outputs) -> Outputs:
        reply = aws.create_fleet(plan.launch_request)
        launched = [instance_id for group in reply.get("Instances", [])
                    for instance_id in group.get("InstanceIds", [])]
        errors = [f"{error.get('ErrorCode')}: {error.get('ErrorMessage')}"
                  for error in reply.get("Errors", [])]
        produced: Outputs = {"fleet_id": reply["FleetId"]}
        if plan.launch_request.get("Type") == "instant":
            if not launched:  # nothing runs: fail (and so roll back) with AWS's reasons
                first = (reply.get("Errors") or [{}])[0]
                raise InvalidInput("EC2 CreateFleet", first.get("ErrorCode", "NoCapacity"),
                                   "; ".join(errors) or "the instant fleet started nothing")
            produced.update(instance_ids=launched, launch_errors=errors)
        return produced

    def find(self, aws: "AnnexAws", plan: "AnnexPlan", outputs: Outputs) -> Outputs | None:
        """The fleet an earlier attempt of this request created (CreateFleet's ClientToken
        is not honoured everywhere -- moto -- so the token tag decides)."""
        found = keep_one(plan, aws.find_ec2_fleets(plan.annex_id,
                                                   client_token=plan.client_token),
                         aws.delete_ec2_fleets)
        return {"fleet_id": found} if found else None

    def end(self, aws: "AnnexAws", plan: "AnnexPlan", outputs: Outputs) -> None:
        aws.delete_ec2_fleets(aws.find_ec2_fleets(plan.annex_id,
                                                  client_token=plan.client_token))

    def instance_tag(self, plan: "AnnexPlan", outputs: Outputs) -> tuple[str, str] | None:
        if plan.launch_request.get("Type") == "instant":
            return ANNEX_TAG, plan.annex_id
        fleet_id = outputs.get("fleet_id")
        return (EC2_FLEET_INSTANCE_TAG, fleet_id) if fleet_id else None

    def reply(self, plan: "AnnexPlan", outputs: Outputs) -> tuple[dict[str, Any], list[str]]:
        result = {"fleet_id": outputs["fleet_id"]}
        notices = []
        if outputs.get("launch_errors"):
            wanted = self.capacity(plan.launch_request)
            notices.append(f"the instant fleet started {len(outputs['instance_ids'])} "
                           f"instances for a capacity of {wanted}; EC2 said: "
                           + "; ".join(outputs["launch_errors"][:3]))
        return result, notices

    def capacity(self, request: dict[str, Any]) -> int:
        return _capacities(request)[0]

    def spot_capacity(self, request: dict[str, Any]) -> int:
        return _capacities(request)[1]

    def options(self, request: dict[str, Any]) -> list[Option]:
        return [Option(override.get("InstanceType"),
                       float(override["MaxPrice"]) if override.get("MaxPrice") else None,
                       float(override.get("WeightedCapacity") or 1))
                for _, override in template_overrides(request)]

    def hourly_cap(self, request: dict[str, Any]) -> float | None:
        _, spot, on_demand = _capacities(request)
        return total_cap([(spot, request.get("SpotOptions", {}).get("MaxTotalPrice")),
                          (on_demand, request.get("OnDemandOptions", {}).get("MaxTotalPrice"))])

    def cap_price(self, request: dict[str, Any], hourly: float) -> tuple[dict[str, Any], str]:
        capped = copy.deepcopy(request)
        total, spot, _ = _capacities(request)
        caps = []
        for share, options in zip(split_cap(hourly, spot, total),
                                  ("SpotOptions", "OnDemandOptions")):
            if share:
                part = capped.setdefault(options, {})
                part["MaxTotalPrice"] = lower_cap(part.get("MaxTotalPrice"), share)
                caps.append(f"{options}.MaxTotalPrice ${part['MaxTotalPrice']}/h")
        return capped, f"AWS enforces ANNEX_MAX_COST on the fleet itself: {', '.join(caps)}"
