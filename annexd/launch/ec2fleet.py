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
    ORDER_TAG,
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


# -- auto annexes: one order, one instant fleet (annexd.commands.auto) -----------------------

#: What an override of an -auto annex's EC2 Fleet config may say: where and which instance
#: type, how much it counts and costs, in what order AWS tries it.  None of it changes what
#: the instance is (image, profile, key pair, user data: the site's template decides those);
#: the rest (ImageId, IamInstanceProfile, KeyName, BlockDeviceMappings, MetadataOptions,
#: Placement, InstanceRequirements) is refused by name.
AUTO_OVERRIDES = frozenset({"InstanceType", "WeightedCapacity", "SubnetId", "AvailabilityZone",
                            "AvailabilityZoneId", "Priority", "MaxPrice"})
#: The knob naming the site's launch template (ID or name) of daemon-paid EC2 Fleets.
TEMPLATE_KNOB = "ANNEX_DEFAULT_LAUNCH_TEMPLATE"
#: The tag an account administrator puts on that template (value ``true``); the daemon policy
#: lets the daemon's identity launch from tagged templates only (cfn/daemon-policy.json).
SITE_TEMPLATE_TAG = "htcondor:AnnexSiteTemplate"


def site_template_spec(template: str) -> dict[str, str]:
    """The LaunchTemplateSpecification of the site's template: its ``$Default`` version, which
    only whoever may change the template (the account's administrators) moves."""
    key = "LaunchTemplateId" if template.startswith("lt-") else "LaunchTemplateName"
    return {key: template, "Version": "$Default"}


def _is_site_template(spec: dict[str, Any], template: str) -> bool:
    named = spec.get("LaunchTemplateId") or spec.get("LaunchTemplateName")
    return named == template and spec.get("Version", "$Default") == "$Default"


def with_site_template(config: dict[str, Any], template: str | None) -> dict[str, Any]:
    """An -auto annex's EC2 Fleet config (the user's) with every LaunchTemplateSpecification
    the site's -- one left out is filled in, one naming the site's template (its ``$Default``
    version) is kept, any other is refused naming the knob -- and of Type ``instant``, as
    each order is (so the plan tags instances, not only the fleet).  Before the build: what
    the config must be besides is :func:`check_auto`'s, after it."""
    if not template:
        raise LaunchConfigError(
            f"LaunchTemplateConfigs: an -auto annex launches an EC2 Fleet from the site's launch "
            f"template only, and {TEMPLATE_KNOB} is not set for condor_annexd; give a Spot Fleet "
            "config with LaunchSpecifications, or on-demand settings, or ask the admin to set it")
    config = copy.deepcopy(config)
    entries = config.get("LaunchTemplateConfigs") if isinstance(config, dict) else None
    for index, entry in enumerate(entries if isinstance(entries, list) else []):
        if not isinstance(entry, dict):
            continue  # the shape check names it
        spec = entry.get("LaunchTemplateSpecification")
        if spec and not _is_site_template(spec, template):
            raise LaunchConfigError(
                f"LaunchTemplateConfigs[{index}].LaunchTemplateSpecification: an -auto annex is "
                "paid by condor_annexd's AWS identity, and a launch template chooses its own "
                "instance profile, key pair and user data: only the site's "
                f"({TEMPLATE_KNOB} = {template}, version $Default) may be used; leave "
                "LaunchTemplateSpecification out to use it")
        entry["LaunchTemplateSpecification"] = site_template_spec(template)
    if isinstance(config, dict):
        config["Type"] = "instant"  # what the plan's tags are for: see order_request
    return config


def check_auto(request: dict[str, Any], template: str | None) -> None:
    """What an -auto annex's EC2 Fleet config must be: the site's template only, overrides
    that change no identity and name an instance type, whole-number weights (an order of N
    instances is N x weight units), one capacity type, instances that end when interrupted."""
    if not request.get("LaunchTemplateConfigs"):
        raise LaunchConfigError("LaunchTemplateConfigs: give at least one, with Overrides "
                                "naming the instance types")
    for index, entry in enumerate(request["LaunchTemplateConfigs"]):
        if not template or not _is_site_template(entry.get("LaunchTemplateSpecification")
                                                 or {}, template):
            raise LaunchConfigError(f"LaunchTemplateConfigs[{index}]: only the site's launch "
                                    f"template ({TEMPLATE_KNOB}) may be used")
    for where, override in template_overrides(request):
        refused = sorted(set(override) - AUTO_OVERRIDES)
        if refused:
            raise LaunchConfigError(
                f"{where}: {', '.join(refused)}: an -auto annex's override may give only "
                f"{', '.join(sorted(AUTO_OVERRIDES))}; what the instance is (image, profile, "
                f"key pair, user data) is the site's launch template's ({TEMPLATE_KNOB})")
        if not override.get("InstanceType"):
            raise LaunchConfigError(f"{where}: an -auto annex orders instance types it knows: "
                                    "give InstanceType")
        weight = override.get("WeightedCapacity")
        if weight is not None and float(weight) != int(weight):
            raise LaunchConfigError(f"{where}.WeightedCapacity: an -auto annex orders whole "
                                    "instances, so a weight must be a whole number, got "
                                    f"{shown(weight)}")
    spec = request["TargetCapacitySpecification"]
    for name in ("OnDemandTargetCapacity", "SpotTargetCapacity"):
        if spec.get(name):
            raise LaunchConfigError(f"TargetCapacitySpecification.{name}: an -auto annex orders "
                                    "one capacity type (DefaultTargetCapacityType); leave it out")
    behaviour = request.get("SpotOptions", {}).get("InstanceInterruptionBehavior", "terminate")
    if behaviour != "terminate":
        raise LaunchConfigError(f"SpotOptions.InstanceInterruptionBehavior {shown(behaviour)!r}: "
                                "an -auto annex's interrupted instances must end; leave it out")


def order_request(template: dict[str, Any], instance_type: str, weight: float, count: int,
                  order_token: str) -> dict[str, Any]:
    """The CreateFleet request of one order of an auto annex: an ``instant`` fleet of
    ``count`` instances of ``instance_type`` -- the template's (the plan's launch request:
    the site's launch template, tags) overrides of that type and weight only, for exactly
    ``count`` x ``weight`` units -- idempotent by ``order_token``, tagged with it (fleet and
    instances).  An instant fleet launches what it can at once, answers with the instance
    IDs, and never launches or replaces anything later (see annexd.commands.auto)."""
    config = copy.deepcopy(template)
    kept = []
    for entry in config.get("LaunchTemplateConfigs", []):
        overrides = [o for o in entry.get("Overrides", [])
                     if o.get("InstanceType") == instance_type
                     and float(o.get("WeightedCapacity") or 1) == weight]
        if overrides:
            kept.append({**entry, "Overrides": overrides})
    if not kept:
        raise LaunchConfigError(f"no override of {instance_type} with weight {weight:g}")
    order = {ORDER_TAG: order_token}
    config["LaunchTemplateConfigs"] = kept
    for resource in ("instance", "fleet"):
        config["TagSpecifications"] = tag_resource(config.get("TagSpecifications", []),
                                                   resource, order, "TagSpecifications")
    # What only a maintain or request fleet takes (AWS refuses it on an instant fleet).
    for name in ("ExcessCapacityTerminationPolicy", "TerminateInstancesWithExpiration",
                 "ReplaceUnhealthyInstances", "ValidFrom", "ValidUntil", "Context"):
        config.pop(name, None)
    spec = config["TargetCapacitySpecification"]
    spec.pop("OnDemandTargetCapacity", None)
    spec.pop("SpotTargetCapacity", None)
    spec["TotalTargetCapacity"] = int(count * weight)
    config.update(Type="instant", ClientToken=order_token)
    validate("CreateFleet", config)
    return config
