"""An on-demand annex's RunInstances request, checked against botocore's own input shape.

Instances shut down by the idle policy terminate themselves
(``InstanceInitiatedShutdownBehavior=terminate``); they carry the annex tag and the request's
ClientToken tag (so a retry or a recovery finds what an earlier attempt started), and their
volumes carry the annex tag too.  ``MinCount`` is 1: EC2 may start fewer than asked, and the
user is told so.
"""
from __future__ import annotations

import functools
from typing import Any

import botocore.session
from botocore.validate import ParamValidator

from annexd_lambda.lease import ANNEX_TAG, CLIENT_TOKEN_TAG


class OnDemandConfigError(ValueError):
    """The on-demand settings cannot be used; the message names the field."""


@functools.lru_cache(maxsize=1)
def _shape():
    model = botocore.session.get_session().get_service_model("ec2")
    return model.operation_model("RunInstances").input_shape


def build(settings: dict[str, Any], *, annex_id: str, client_token: str, count: int,
          instance_tags: dict[str, str]) -> dict[str, Any]:
    """The RunInstances parameters for ``count`` instances."""
    missing = [flag for key, flag in (("image_id", "-aws-on-demand-ami-id"),
                                      ("instance_type", "-aws-on-demand-instance-type"))
               if not settings.get(key)]
    if missing:
        raise OnDemandConfigError(f"give {' and '.join(missing)} (or their "
                                  "ANNEX_DEFAULT_ODI_* knobs)")
    tags = [{"Key": k, "Value": v} for k, v in instance_tags.items()]
    tags += [{"Key": ANNEX_TAG, "Value": annex_id}, {"Key": CLIENT_TOKEN_TAG, "Value": client_token}]
    params: dict[str, Any] = {
        "ImageId": settings["image_id"],
        "InstanceType": settings["instance_type"],
        "MinCount": count,
        "MaxCount": count,
        "ClientToken": client_token,
        "InstanceInitiatedShutdownBehavior": "terminate",
        "TagSpecifications": [
            {"ResourceType": "instance", "Tags": tags},
            {"ResourceType": "volume", "Tags": [{"Key": ANNEX_TAG, "Value": annex_id}]},
        ],
    }
    if settings.get("security_group_ids"):
        params["SecurityGroupIds"] = list(settings["security_group_ids"])
    if settings.get("key_name"):
        params["KeyName"] = settings["key_name"]
    if settings.get("instance_profile_arn"):
        params["IamInstanceProfile"] = {"Arn": settings["instance_profile_arn"]}
    report = ParamValidator().validate(params, _shape())
    if report.has_errors():
        lines = [line.strip() for line in report.generate_report().splitlines()]
        raise OnDemandConfigError("; ".join(line for line in lines if line))
    return params
