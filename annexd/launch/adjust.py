"""What is done to the user's launch input before its kind builds the AWS request: the EC2
console's ``null`` members are taken as absent, the original condor_annex's
``-aws-user-data`` is put where EC2 reads it, and instances that would get no instance
profile or security group get -setup's (as the original filled them in), so that nothing
launches that cannot join the pool.

The console's Spot Fleet "JSON config" export (AWS's own Spot Fleet example 7 among them)
writes members it has no value for as ``null`` (``"SpotPrice": null``); AWS's CLI and SDKs
treat them as not given, so we do too, and say so in a notice, rather than refusing a file
the console itself wrote.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from annexd.config.knobs import region_local_name
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


#: The knobs -setup writes for what instances join with (the original's names).
PROFILE_KNOB = "ANNEX_DEFAULT_ODI_INSTANCE_PROFILE_ARN"
GROUPS_KNOB = "ANNEX_DEFAULT_ODI_SECURITY_GROUP_IDS"


@dataclass(frozen=True)
class JoinDefaults:
    """The instance profile and security groups -setup made, for a launch that names none:
    the request's (the user's configuration, sent by condor_annex), else the daemon's."""

    region: str
    instance_profile_arn: str | None = None
    security_group_ids: tuple[str, ...] = ()


def _cannot_join(where: str, what: str, knob: str, why: str, defaults: JoinDefaults,
                 flag: str) -> LaunchConfigError:
    return LaunchConfigError(
        f"{where}no {what}, and {region_local_name(defaults.region)}.{knob} is not set: the "
        f"instances could not {why}, so they would never join the pool (and would be billed "
        f"until they gave up); set {knob} (condor_annex -aws-region {defaults.region} -setup "
        f"writes it) or {flag}")


def _profile(where: str, defaults: JoinDefaults, flag: str) -> dict[str, str]:
    if not defaults.instance_profile_arn:
        raise _cannot_join(where, "instance profile", PROFILE_KNOB,
                           "read their configuration", defaults, flag)
    return {"Arn": defaults.instance_profile_arn}


def _groups(where: str, defaults: JoinDefaults, flag: str) -> list[str]:
    if not defaults.security_group_ids:
        raise _cannot_join(where, "security group", GROUPS_KNOB,
                           "accept the pool's connections (TCP 9618)", defaults, flag)
    return list(defaults.security_group_ids)


def _named(profile: Any) -> bool:
    return isinstance(profile, dict) and bool(profile.get("Arn") or profile.get("Name"))


def _fill_specification(where: str, spec: dict[str, Any],
                        defaults: JoinDefaults) -> list[str]:
    """Give a Spot Fleet launch specification the profile and groups it lacks."""
    flag = f"name one in {where}"
    filled = []
    if not _named(spec.get("IamInstanceProfile")):
        spec["IamInstanceProfile"] = _profile(f"{where}: ", defaults, flag)
        filled.append(f"IamInstanceProfile {defaults.instance_profile_arn}")
    interfaces = spec.get("NetworkInterfaces")
    if interfaces:  # AWS takes the groups of a spec with interfaces from the interfaces only
        for index, interface in enumerate(interfaces):
            if interface.get("DeviceIndex", 0) == 0 and not interface.get("Groups"):
                interface["Groups"] = _groups(f"{where}.NetworkInterfaces[{index}]: ",
                                              defaults, flag)
                filled.append(f"NetworkInterfaces[{index}].Groups "
                              f"{', '.join(defaults.security_group_ids)}")
    elif not spec.get("SecurityGroups"):
        spec["SecurityGroups"] = [{"GroupId": group} for group in
                                  _groups(f"{where}: ", defaults, flag)]
        filled.append(f"SecurityGroups {', '.join(defaults.security_group_ids)}")
    return [f"{where}: added -setup's {' and '.join(filled)}"] if filled else []


def with_join_defaults(kind: Kind, request: dict[str, Any],
                       defaults: JoinDefaults) -> list[str]:
    """Give the built AWS ``request`` -setup's instance profile and security groups wherever
    its instances would otherwise get none (changing it in place); returns notices.  Raises
    LaunchConfigError, naming the knob, when instances that cannot join would be launched and
    there is nothing to fill in.

    On-demand instances (RunInstances) and a Spot Fleet's ``LaunchSpecifications`` take
    them; a launch template's instances take both from the template alone (EC2 has no
    override for either), which the create checks against the template itself before it
    makes anything (:func:`annexd.launch.steps.check`)."""
    if kind.annex_type == "on-demand":
        flag = "pass -aws-on-demand-instance-profile-arn"
        if not _named(request.get("IamInstanceProfile")):
            request["IamInstanceProfile"] = _profile("", defaults, flag)
        if not request.get("SecurityGroupIds") and not request.get("NetworkInterfaces"):
            request["SecurityGroupIds"] = _groups(
                "", defaults, "pass -aws-on-demand-security-group-ids")
        return []
    notices: list[str] = []
    if kind.annex_type == "spot-fleet":
        for index, spec in enumerate(request.get("LaunchSpecifications", [])):
            notices += _fill_specification(f"LaunchSpecifications[{index}]", spec, defaults)
    return notices


def launch_templates(request: dict[str, Any]) -> list[dict[str, Any]]:
    """The launch template versions a fleet request launches from (each once)."""
    found: list[dict[str, Any]] = []
    for config in request.get("LaunchTemplateConfigs", []):
        spec = config.get("LaunchTemplateSpecification", {})
        if spec and spec not in found:
            found.append(spec)
    return found


def template_gaps(data: dict[str, Any]) -> list[str]:
    """What of -setup's a launch template's data leaves its instances without."""
    missing = [] if _named(data.get("IamInstanceProfile")) else ["instance profile"]
    interfaces = data.get("NetworkInterfaces") or []
    groups = data.get("SecurityGroupIds") or data.get("SecurityGroups") or any(
        interface.get("Groups") for interface in interfaces
        if interface.get("DeviceIndex", 0) == 0)
    return missing + ([] if groups else ["security group"])


def template_refusal(spec: dict[str, Any], missing: list[str]) -> str:
    name = spec.get("LaunchTemplateName") or spec.get("LaunchTemplateId")
    knobs = " and ".join(knob for what, knob in (("instance profile", PROFILE_KNOB),
                                                  ("security group", GROUPS_KNOB))
                         if what in missing)
    return (f"launch template {name} (version {spec.get('Version') or '$Default'}) names no "
            f"{' and no '.join(missing)}: its instances could not join the pool (and would be "
            f"billed until they gave up), and EC2 has no override for either; add -setup's "
            f"({knobs}) to the template")
