"""The user's Spot Fleet "JSON config" (as the EC2 console exports it) made into our request.

We keep every field the user wrote, with three exceptions, each reported as a notice:
``ValidFrom``/``ValidUntil`` are dropped (the annex lease, not the fleet's validity window,
decides when capacity goes away, and a stale console date would otherwise fail the request),
and ``ClientToken`` is replaced by the annex's own (it is how a retry finds the same fleet).
Validation uses botocore's own ``RequestSpotFleet`` input shape, so an error reads like AWS's.
"""
from __future__ import annotations

import copy
import functools
import math
import re
from typing import Any

import botocore.session
from botocore.validate import ParamValidator

from annexd_lambda.lease import ANNEX_TAG, CLIENT_TOKEN_TAG

from .protocol import MAX_CAPACITY, shown

DROPPED_FIELDS = ("ValidFrom", "ValidUntil")


class SpotFleetConfigError(ValueError):
    """The Spot Fleet config cannot be used; the message names the field."""


@functools.lru_cache(maxsize=1)
def _request_shape():
    model = botocore.session.get_session().get_service_model("ec2")
    return model.operation_model("RequestSpotFleet").input_shape


def unwrap(config: Any) -> dict[str, Any]:
    """Accept both the bare config and ``{"SpotFleetRequestConfig": {...}}``."""
    if isinstance(config, dict) and set(config) == {"SpotFleetRequestConfig"}:
        config = config["SpotFleetRequestConfig"]
    if not isinstance(config, dict):
        raise SpotFleetConfigError("expected a JSON object holding a SpotFleetRequestConfig")
    return copy.deepcopy(config)


def _tag_resource(tag_specs: list[dict[str, Any]], resource_type: str, wanted: dict[str, str],
                  where: str, overrides: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """Return ``tag_specs`` with the ``wanted`` tags on ``resource_type``.

    ``overrides`` (the command line's -tag) replace the file's tags of the same name; a
    ``wanted`` tag (the annex's identity) may not be contradicted by anyone.
    """
    specs = copy.deepcopy(tag_specs)
    overrides = overrides or {}
    matching = [spec for spec in specs if spec.get("ResourceType") == resource_type]
    if not matching:
        matching = [{"ResourceType": resource_type, "Tags": []}]
        specs.append(matching[0])
    for spec in matching:
        spec["Tags"] = [t for t in spec.get("Tags", []) if t.get("Key") not in overrides] + \
            [{"Key": key, "Value": value} for key, value in overrides.items()]
        tags = spec["Tags"]
        for tag in tags:
            if tag.get("Key") in wanted and tag.get("Value") != wanted[tag.get("Key")]:
                raise SpotFleetConfigError(
                    f"{where}: tag {tag.get('Key')}={tag.get('Value')!r} conflicts with the "
                    f"annex's {wanted[tag.get('Key')]!r}; remove it, condor_annexd sets it")
        present = {tag.get("Key") for tag in tags}
        tags += [{"Key": key, "Value": value} for key, value in wanted.items()
                 if key not in present]
    return specs


def _check_shape(config: dict[str, Any]) -> None:
    report = ParamValidator().validate({"SpotFleetRequestConfig": config}, _request_shape())
    if report.has_errors():
        lines = [line.strip() for line in report.generate_report().splitlines()]
        raise SpotFleetConfigError(shown("; ".join(line for line in lines if line), 400))


PRICE = re.compile(r"[0-9]{1,6}(\.[0-9]{1,8})?")


def _check_values(config: dict[str, Any]) -> None:
    """What the shape allows but AWS (or a sane annex) does not: run after _check_shape."""
    capacity = config["TargetCapacity"]
    if not 1 <= capacity <= MAX_CAPACITY:
        raise SpotFleetConfigError(f"TargetCapacity: expected a whole number from 1 to "
                                   f"{MAX_CAPACITY}, got {shown(capacity)}")
    on_demand = config.get("OnDemandTargetCapacity", 0)
    if not 0 <= on_demand <= capacity:
        raise SpotFleetConfigError(f"OnDemandTargetCapacity: expected 0 to TargetCapacity "
                                   f"({capacity}), got {shown(on_demand)}")
    prices = [("SpotPrice", config.get("SpotPrice"))] + [
        (f"LaunchSpecifications[{index}].SpotPrice", spec.get("SpotPrice"))
        for index, spec in enumerate(config.get("LaunchSpecifications", []))]
    for where, price in prices:
        if price is not None and not (PRICE.fullmatch(price) and float(price) > 0):
            raise SpotFleetConfigError(f"{where}: expected a price in USD such as 0.05, got "
                                       f"{shown(price)!r}")
    for index, spec in enumerate(config.get("LaunchSpecifications", [])):
        weight = spec.get("WeightedCapacity")
        if weight is not None and not (math.isfinite(weight) and 0 < weight <= MAX_CAPACITY):
            raise SpotFleetConfigError(f"LaunchSpecifications[{index}].WeightedCapacity: "
                                       f"expected a number above 0, got {shown(weight)}")


def build(config: Any, *, annex_id: str, client_token: str, count: int | None,
          instance_tags: dict[str, str] | None = None) -> tuple[dict[str, Any], list[str]]:
    """Return the ``SpotFleetRequestConfig`` to send, and notices for the user."""
    config = unwrap(config)
    notices = [f"dropped {field} (the annex lease decides when the fleet ends)"
               for field in DROPPED_FIELDS if config.pop(field, None) is not None]
    if "ClientToken" in config:
        notices.append("replaced ClientToken with the annex's own")
    config["ClientToken"] = client_token
    if count is not None:
        config["TargetCapacity"] = count
    if config.get("LaunchTemplateConfigs") and not config.get("LaunchSpecifications"):
        raise SpotFleetConfigError(
            "LaunchTemplateConfigs: instances launched from a launch template cannot be tagged "
            f"{ANNEX_TAG} by the fleet request; use LaunchSpecifications")
    _check_shape(config)  # before tagging, so the tagging below sees well-typed lists
    _check_values(config)
    # The token tag lets a retry find this request's fleet where ClientToken is not reported.
    config["TagSpecifications"] = _tag_resource(
        config.get("TagSpecifications", []), "spot-fleet-request",
        {ANNEX_TAG: annex_id, CLIENT_TOKEN_TAG: client_token}, "TagSpecifications")
    for index, spec in enumerate(config.get("LaunchSpecifications", [])):
        spec["TagSpecifications"] = _tag_resource(
            spec.get("TagSpecifications", []), "instance", {ANNEX_TAG: annex_id},
            f"LaunchSpecifications[{index}].TagSpecifications", overrides=instance_tags)
    return config, notices
