"""What is done to the user's launch input before its kind builds the AWS request: the EC2
console's ``null`` members are taken as absent, and the original condor_annex's
``-aws-user-data`` is put where EC2 reads it.

The console's Spot Fleet "JSON config" export (AWS's own Spot Fleet example 7 among them)
writes members it has no value for as ``null`` (``"SpotPrice": null``); AWS's CLI and SDKs
treat them as not given, so we do too, and say so in a notice, rather than refusing a file
the console itself wrote.
"""
from __future__ import annotations

import copy
from typing import Any

from annexd.launch.base import Kind, LaunchConfigError


def drop_nulls(config: Any) -> tuple[Any, list[str]]:
    """``config`` without its ``null`` object members (at any depth), and their paths."""
    dropped: list[str] = []

    def clean(value: Any, path: str) -> Any:
        if isinstance(value, dict):
            kept = {}
            for key, member in value.items():
                where = f"{path}.{key}" if path else str(key)
                if member is None:
                    dropped.append(where)
                else:
                    kept[key] = clean(member, where)
            return kept
        if isinstance(value, list):
            return [clean(item, f"{path}[{index}]") for index, item in enumerate(value)]
        return value

    cleaned = clean(config, "")
    return cleaned, dropped


def null_notice(dropped: list[str]) -> list[str]:
    if not dropped:
        return []
    shown = ", ".join(dropped[:8]) + (f" and {len(dropped) - 8} more" if len(dropped) > 8
                                      else "")
    return [f"treated null as absent (as the AWS CLI does): {shown}"]


def with_user_data(kind: Kind, source: dict[str, Any],
                   user_data: str) -> tuple[dict[str, Any], list[str]]:
    """``source`` with ``user_data`` (base64) for every instance it launches, and notices.

    On-demand instances and a Spot Fleet's ``LaunchSpecifications`` take it (replacing what
    a specification had, as the original condor_annex did).  Instances launched from a
    launch template take their user data from the template alone (no override exists for
    it), so such a config is refused with that reason.
    """
    if kind.annex_type == "on-demand":
        return {**source, "user_data": user_data}, []
    config = copy.deepcopy(source)
    inner = config.get("SpotFleetRequestConfig", config) if isinstance(config, dict) else {}
    specs = inner.get("LaunchSpecifications") or []
    if kind.annex_type != "spot-fleet" or inner.get("LaunchTemplateConfigs") or not specs:
        raise LaunchConfigError(
            "-aws-user-data: instances launched from a launch template get their user data "
            "from the template (EC2 has no override for it); put it in the template instead")
    replaced = [f"LaunchSpecifications[{index}]" for index, spec in enumerate(specs)
                if isinstance(spec, dict) and spec.get("UserData")]
    for spec in specs:
        if isinstance(spec, dict):
            spec["UserData"] = user_data
    notices = [f"-aws-user-data replaced the UserData of {', '.join(replaced)}"] \
        if replaced else []
    return config, notices
