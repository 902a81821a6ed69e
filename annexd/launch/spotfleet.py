"""Spot Fleet annexes: the user's Spot Fleet "JSON config" (as the EC2 console exports it),
with ``LaunchSpecifications`` or ``LaunchTemplateConfigs``, launched with RequestSpotFleet.

We keep every field the user wrote, except ``ValidFrom``/``ValidUntil`` (dropped) and
``ClientToken`` (replaced by the annex's own, which is how a retry finds the same fleet), each
reported as a notice.  The fleet request is tagged with the annex name and the ClientToken.

Instances from ``LaunchSpecifications`` are tagged with the annex name too.  Instances from a
launch template take their tags from the template only: we do not change the user's template
(a new version would move ``$Latest`` under everyone else using it) nor copy it (one more
resource per annex that could outlive the lease).  Such instances are found through their
fleet instead: DescribeSpotFleetInstances here, and on the instance the
``aws:ec2spot:fleet-request-id`` tag AWS puts on every fleet instance.
"""
from __future__ import annotations

import copy
import datetime
from typing import TYPE_CHECKING, Any, Callable

from annexd_lambda.lease import ANNEX_TAG

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

#: The tag AWS puts on every instance a Spot Fleet launches.
SPOT_FLEET_INSTANCE_TAG = "aws:ec2spot:fleet-request-id"

#: How long one order of an auto annex may still launch (its fleet's ValidUntil): a one-time
#: request AWS could not fill at once (no capacity in its pools) stays open that long, and
#: the daemon counts what it may still launch as coming until then (annexd.commands.auto).
ORDER_WINDOW_SECONDS = 300
#: Why an auto annex takes no launch template (issue 23, requirement 4).
AUTO_NO_TEMPLATE = (
    "a launch template chooses its own instance profile, key pair and user data, which the "
    "site did not choose: an -auto annex is paid by condor_annexd's AWS identity, so its "
    "Spot Fleet config gives LaunchSpecifications (the daemon adds the admin's instance "
    "profile, security groups and user data: ANNEX_DEFAULT_ODI_INSTANCE_PROFILE_ARN, "
    "ANNEX_DEFAULT_ODI_SECURITY_GROUP_IDS, ANNEX_DEFAULT_USER_DATA_FILE); an EC2 Fleet config "
    "launches from the site's launch template (ANNEX_DEFAULT_LAUNCH_TEMPLATE)")


def unwrap(config: Any) -> dict[str, Any]:
    """Accept both the bare config and ``{"SpotFleetRequestConfig": {...}}``."""
    if isinstance(config, dict) and set(config) == {"SpotFleetRequestConfig"}:
        config = config["SpotFleetRequestConfig"]
    if not isinstance(config, dict):
        raise LaunchConfigError("expected a JSON object holding a SpotFleetRequestConfig")
    return copy.deepcopy(config)



def _specs(config: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(f"LaunchSpecifications[{index}]", spec)
            for index, spec in enumerate(config.get("LaunchSpecifications", []))] + \
        template_overrides(config)


def _check_values(config: dict[str, Any]) -> None:
    """What the shape allows but AWS (or a sane annex) does not: run after validate()."""
    capacity = config["TargetCapacity"]
    check_capacity("TargetCapacity", capacity)
    on_demand = config.get("OnDemandTargetCapacity", 0)
    if not 0 <= on_demand <= capacity:
        raise LaunchConfigError(f"OnDemandTargetCapacity: expected 0 to TargetCapacity "
                                f"({capacity}), got {shown(on_demand)}")
    if not config.get("LaunchSpecifications") and not config.get("LaunchTemplateConfigs"):
        raise LaunchConfigError("give LaunchSpecifications or LaunchTemplateConfigs")
    check_price("SpotPrice", config.get("SpotPrice"))
    for where, spec in _specs(config):
        check_price(f"{where}.SpotPrice", spec.get("SpotPrice"))
        check_weight(f"{where}.WeightedCapacity", spec.get("WeightedCapacity"))


def spec_option(request: dict[str, Any], spec: dict[str, Any]) -> Option:
    """What one launch specification (or override) may launch: its type, its Spot maximum
    per unit-hour (its own, else the fleet's; None: the on-demand price) and its weight."""
    price = spec.get("SpotPrice") or request.get("SpotPrice")
    return Option(spec.get("InstanceType"), float(price) if price else None,
                  float(spec.get("WeightedCapacity") or 1))


class SpotFleet(Kind):
    annex_type = "spot-fleet"
    label = "Spot Fleet config"
    step_name = "fleet"
    can_cap_price = True

    def build(self, source: Any, *, annex_id: str, client_token: str, count: int | None,
              instance_tags: dict[str, str], owner: str = "") -> Built:
        config = unwrap(source)
        notices = drop_validity_window(config) + take_client_token(config, client_token)
        if count is not None:
            config["TargetCapacity"] = count
        validate("RequestSpotFleet", {"SpotFleetRequestConfig": config})
        _check_values(config)  # after the shape check: the values are well-typed
        if self.spot_capacity(config):
            notices += allocation_notice(config.get("AllocationStrategy"), "lowestPrice",
                                         "priceCapacityOptimized")
        fleet_tags = identity_tags(annex_id, client_token, owner)
        if config.get("LaunchTemplateConfigs") and instance_tags:
            notices.append("-tag: instances launched from a launch template carry the "
                           "template's tags; the tags were put on the fleet request")
            fleet_tags = {**instance_tags, **fleet_tags}
        config["TagSpecifications"] = tag_resource(
            config.get("TagSpecifications", []), "spot-fleet-request", fleet_tags,
            "TagSpecifications")
        for index, spec in enumerate(config.get("LaunchSpecifications", [])):
            spec["TagSpecifications"] = tag_resource(
                spec.get("TagSpecifications", []), "instance",
                identity_tags(annex_id, client_token, owner),
                f"LaunchSpecifications[{index}].TagSpecifications", overrides=instance_tags)
        return Built(config, notices)

    def launch(self, aws: "AnnexAws", plan: "AnnexPlan", outputs: Outputs) -> Outputs:
        return {"spot_fleet_request_id": aws.request_spot_fleet(plan.launch_request)}

    def find(self, aws: "AnnexAws", plan: "AnnexPlan", outputs: Outputs) -> Outputs | None:
        """The fleet an earlier attempt of this very request created, if any (by ClientToken)."""
        found = keep_one(plan, aws.find_fleets(plan.annex_id, client_token=plan.client_token),
                         aws.cancel_fleets)
        return {"spot_fleet_request_id": found} if found else None

    def end(self, aws: "AnnexAws", plan: "AnnexPlan", outputs: Outputs) -> None:
        """Cancel this request's live fleets, terminating their instances.

        Found by ClientToken rather than by the recorded ID: that also catches a fleet whose
        ID never came back, and never sends an already-removed ID (which moto answers with a
        500).
        """
        aws.cancel_fleets(aws.find_fleets(plan.annex_id, client_token=plan.client_token))

    def instance_tag(self, plan: "AnnexPlan", outputs: Outputs) -> tuple[str, str] | None:
        if not plan.launch_request.get("LaunchTemplateConfigs"):
            return ANNEX_TAG, plan.annex_id
        fleet_id = outputs.get("spot_fleet_request_id")
        return (SPOT_FLEET_INSTANCE_TAG, fleet_id) if fleet_id else None

    def reply(self, plan: "AnnexPlan", outputs: Outputs) -> tuple[dict[str, Any], list[str]]:
        return {"spot_fleet_request_id": outputs["spot_fleet_request_id"]}, []

    def capacity(self, request: dict[str, Any]) -> int:
        return int(request.get("TargetCapacity", 0))

    def spot_capacity(self, request: dict[str, Any]) -> int:
        return self.capacity(request) - int(request.get("OnDemandTargetCapacity", 0))

    def options(self, request: dict[str, Any]) -> list[Option]:
        return [spec_option(request, spec) for _, spec in _specs(request)]

    def hourly_cap(self, request: dict[str, Any]) -> float | None:
        spot = self.spot_capacity(request)
        return total_cap([(spot, request.get("SpotMaxTotalPrice")),
                          (self.capacity(request) - spot, request.get("OnDemandMaxTotalPrice"))])

    def cap_price(self, request: dict[str, Any], hourly: float) -> tuple[dict[str, Any], str]:
        capped = copy.deepcopy(request)
        spot, on_demand = split_cap(hourly, self.spot_capacity(request), self.capacity(request))
        if spot:
            capped["SpotMaxTotalPrice"] = lower_cap(request.get("SpotMaxTotalPrice"), spot)
        if on_demand:
            capped["OnDemandMaxTotalPrice"] = lower_cap(request.get("OnDemandMaxTotalPrice"),
                                                        on_demand)
        caps = ", ".join(f"{name} ${capped[name]}/h" for name in
                         ("SpotMaxTotalPrice", "OnDemandMaxTotalPrice") if name in capped)
        return capped, f"AWS enforces ANNEX_MAX_COST on the fleet itself: {caps}"


# -- auto annexes: one order, one one-time fleet (annexd.commands.auto) ---------------------

def check_auto(request: dict[str, Any]) -> None:
    """What a Spot Fleet config must be for an auto annex, whose every order is a one-time
    fleet of one instance type: LaunchSpecifications (no launch template: see
    AUTO_NO_TEMPLATE), Spot only, whole-number weights (an order of N instances is then
    exactly N x weight units, so AWS launches exactly N), instances that end when
    interrupted."""
    if request.get("LaunchTemplateConfigs"):
        raise LaunchConfigError(f"LaunchTemplateConfigs: {AUTO_NO_TEMPLATE}")
    if request.get("OnDemandTargetCapacity"):
        raise LaunchConfigError("OnDemandTargetCapacity: an -auto annex orders Spot capacity "
                                "from a Spot Fleet config; leave it out (for on-demand "
                                "instances, give -auto without a config file)")
    behaviour = request.get("InstanceInterruptionBehavior", "terminate")
    if behaviour != "terminate":
        raise LaunchConfigError(f"InstanceInterruptionBehavior {shown(behaviour)!r}: an -auto "
                                "annex's interrupted instances must end (the daemon orders "
                                "again); leave it out")
    for where, spec in _specs(request):
        weight = spec.get("WeightedCapacity")
        if weight is not None and float(weight) != int(weight):
            raise LaunchConfigError(f"{where}.WeightedCapacity: an -auto annex orders whole "
                                    "instances, so a weight must be a whole number, got "
                                    f"{shown(weight)}")


def order_config(template: dict[str, Any], instance_type: str, weight: float, count: int,
                 order_token: str, valid_until: float,
                 affordable: Callable[[Option], bool] = lambda option: True) -> dict[str, Any]:
    """The RequestSpotFleet config of one order of an auto annex: a one-time (``request``)
    fleet of ``count`` instances of ``instance_type`` -- the template's (the plan's launch
    request: image, the admin's profile and groups, tags) launch specifications of that type
    and weight only, and of those only the ones ``affordable`` takes (none dearer per hour
    than the price the order was budgeted at), for exactly ``count`` x ``weight`` units --
    idempotent by ``order_token``, tagged with it (fleet and instances), and open until
    ``valid_until`` (after which AWS launches nothing more for it; what runs stays, for the
    lease to end)."""
    config = copy.deepcopy(template)
    specs = [spec for spec in config.get("LaunchSpecifications", [])
             if spec.get("InstanceType") == instance_type
             and float(spec.get("WeightedCapacity") or 1) == weight
             and affordable(spec_option(template, spec))]
    if not specs:
        raise LaunchConfigError(f"no launch specification of {instance_type} with weight "
                                f"{weight:g} at the price planned")
    order = {ORDER_TAG: order_token}
    for spec in specs:
        spec["TagSpecifications"] = tag_resource(spec.get("TagSpecifications", []), "instance",
                                                 order, "LaunchSpecifications")
    config["LaunchSpecifications"] = specs
    config["TagSpecifications"] = tag_resource(config.get("TagSpecifications", []),
                                               "spot-fleet-request", order, "TagSpecifications")
    # What only a maintain fleet takes (AWS refuses it on a one-time fleet), or no order uses.
    for name in ("OnDemandTargetCapacity", "OnDemandMaxTotalPrice", "ValidFrom",
                 "LaunchTemplateConfigs", "ReplaceUnhealthyInstances",
                 "SpotMaintenanceStrategies", "ExcessCapacityTerminationPolicy"):
        config.pop(name, None)
    config.update(
        TargetCapacity=int(count * weight), Type="request", ClientToken=order_token,
        ValidUntil=datetime.datetime.fromtimestamp(valid_until, datetime.timezone.utc
                                                   ).strftime("%Y-%m-%dT%H:%M:%SZ"),
        TerminateInstancesWithExpiration=False)
    validate("RequestSpotFleet", {"SpotFleetRequestConfig": config})
    return config
