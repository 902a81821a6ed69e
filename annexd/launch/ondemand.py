"""On-demand annexes: ``-count`` with no fleet config starts instances with RunInstances.

Instances shut down by the idle policy terminate themselves
(``InstanceInitiatedShutdownBehavior=terminate``); they carry the annex tag and the request's
ClientToken tag (so a retry or a recovery finds what an earlier attempt started), and their
volumes carry the annex tag too.  ``MinCount`` is the count asked for: EC2 starts all or
none; should it ever start fewer, the user is told so.  RunInstances takes no price cap, so
ANNEX_MAX_COST is checked against the shipped on-demand price table only.
"""
from __future__ import annotations

import base64
from typing import TYPE_CHECKING, Any

from annexd_lambda.lease import CLIENT_TOKEN_TAG

from annexd.launch.base import (
    ORDER_TAG, Built, Kind, LaunchConfigError, Option, Outputs, identity_tags, validate)

__all__ = ["ORDER_TAG", "OnDemand", "order_request", "as_sent"]

if TYPE_CHECKING:
    from annexd.aws import AnnexAws
    from annexd.launch.plan import AnnexPlan


def _as_sent(request: dict[str, Any]) -> dict[str, Any]:
    """The plan keeps UserData base64-encoded, as EC2 (and the fleet APIs) take it; botocore
    encodes RunInstances' UserData itself, so it is handed the bytes."""
    if "UserData" not in request:
        return request
    return {**request, "UserData": base64.b64decode(request["UserData"])}




def order_request(template: dict[str, Any], instance_type: str, count: int,
                  order_token: str) -> dict[str, Any]:
    """The RunInstances parameters of one order of an auto annex: its template (the plan's
    launch request: image, tags -- the annex's and the request's ClientToken, which the lease
    function and -off end instances by -- security groups), for ``count`` instances of
    ``instance_type``, all or none (as a -count annex's; EC2 refuses what it cannot start
    and the next cycle decides again), idempotent by ``order_token``."""
    specs = []
    for spec in template.get("TagSpecifications", []):
        tags = list(spec["Tags"])
        if spec["ResourceType"] == "instance":
            tags.append({"Key": ORDER_TAG, "Value": order_token})
        specs.append({**spec, "Tags": tags})
    params = {**template, "InstanceType": instance_type, "MinCount": count, "MaxCount": count,
              "ClientToken": order_token, "TagSpecifications": specs}
    validate("RunInstances", params)
    return params


def as_sent(request: dict[str, Any]) -> dict[str, Any]:
    return _as_sent(request)


class OnDemand(Kind):
    annex_type = "on-demand"
    label = "on-demand settings"
    step_name = "instances"

    def build(self, source: Any, *, annex_id: str, client_token: str, count: int | None,
              instance_tags: dict[str, str], owner: str = "") -> Built:
        """The RunInstances parameters for ``count`` instances of ``source`` (the CLI's
        -aws-on-demand-* settings)."""
        missing = [flag for key, flag in (("image_id", "-aws-on-demand-ami-id"),
                                          ("instance_type", "-aws-on-demand-instance-type"))
                   if not source.get(key)]
        if missing:
            raise LaunchConfigError(f"give {' and '.join(missing)} (or their "
                                    "ANNEX_DEFAULT_ODI_* knobs)")
        tags = [{"Key": k, "Value": v} for k, v in instance_tags.items()]
        identity = identity_tags(annex_id, client_token, owner)
        tags += [{"Key": k, "Value": v} for k, v in identity.items()]
        volume = {k: v for k, v in identity.items() if k != CLIENT_TOKEN_TAG}
        params: dict[str, Any] = {
            "ImageId": source["image_id"],
            "InstanceType": source["instance_type"],
            "MinCount": count,
            "MaxCount": count,
            "ClientToken": client_token,
            "InstanceInitiatedShutdownBehavior": "terminate",
            "TagSpecifications": [
                {"ResourceType": "instance", "Tags": tags},
                {"ResourceType": "volume",
                 "Tags": [{"Key": k, "Value": v} for k, v in volume.items()]},
            ],
        }
        if source.get("security_group_ids"):
            params["SecurityGroupIds"] = list(source["security_group_ids"])
        if source.get("key_name"):
            params["KeyName"] = source["key_name"]
        if source.get("instance_profile_arn"):
            params["IamInstanceProfile"] = {"Arn": source["instance_profile_arn"]}
        if source.get("user_data"):  # -aws-user-data, base64
            params["UserData"] = source["user_data"]
        validate("RunInstances", params)
        return Built(params)

    def launch(self, aws: "AnnexAws", plan: "AnnexPlan", outputs: Outputs) -> Outputs:
        return {"instance_ids": aws.run_instances(_as_sent(plan.launch_request))}

    def find(self, aws: "AnnexAws", plan: "AnnexPlan", outputs: Outputs) -> Outputs | None:
        """The instances an earlier attempt of this very request started, if any."""
        found = aws.find_instances(plan.annex_id, plan.client_token)
        return {"instance_ids": found} if found else None

    def end(self, aws: "AnnexAws", plan: "AnnexPlan", outputs: Outputs) -> None:
        aws.terminate_instances(aws.find_instances(plan.annex_id, plan.client_token))

    def reply(self, plan: "AnnexPlan", outputs: Outputs) -> tuple[dict[str, Any], list[str]]:
        started, wanted = outputs["instance_ids"], self.capacity(plan.launch_request)
        notices = [f"EC2 started only {len(started)} of the {wanted} instances asked for"] \
            if len(started) < wanted else []
        return {"instance_ids": started}, notices

    def capacity(self, request: dict[str, Any]) -> int:
        return int(request["MaxCount"])

    def options(self, request: dict[str, Any]) -> list[Option]:
        return [Option(request.get("InstanceType"))]
