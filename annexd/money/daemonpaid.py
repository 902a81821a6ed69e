"""What a request paid by the daemon's own AWS identity may choose: nothing the admin decides.

With ``ANNEXD_ALLOW_DAEMON_CREDENTIALS``, a user without keys creates annexes in the admin's
AWS account.  Everything that decides what those instances may do or who may get into them
is then the admin's, from the daemon's configuration for the region:

* the lease function and the configuration bucket (``ANNEX_DEFAULT_LEASE_FUNCTION_ARN``,
  ``ANNEX_DEFAULT_S3_BUCKET``): a lease function of the user's choosing could be one that
  never ends anything, and a bucket of theirs would receive the annex's secret;
* the instance profile (``ANNEX_DEFAULT_ODI_INSTANCE_PROFILE_ARN``), the key pair
  (``ANNEX_DEFAULT_ODI_KEY_NAME``), the Spot Fleet role (``ANNEX_DEFAULT_FLEET_ROLE_ARN``) and
  the user data (``ANNEX_DEFAULT_USER_DATA_FILE``): user data of the user's choosing runs as
  root on an instance holding whatever role the site passes, and a key pair of theirs logs
  them in as root there;
* no launch template but the site's (``ANNEX_DEFAULT_LAUNCH_TEMPLATE``, which an EC2 Fleet
  needs): a template carries its own profile, key pair and user data, which the daemon
  cannot see in the request; an EC2 Fleet's overrides may then change only where, which type
  and how much (:data:`annexd.launch.ec2fleet.AUTO_OVERRIDES`), and the daemon policy lets
  the daemon's identity launch only from templates the administrator tagged as the site's.

A different choice is refused, with the reason, rather than quietly replaced; ``condor_annex``
sends the values its own configuration holds, which are the admin's unless the user set
others: those pass.  The check reads the *plan*, so a parked request resumed without keys is
held to it too (finding 7 of issue 23).
"""
from __future__ import annotations

import hashlib
from typing import Any, Iterator

from annexd.config.knobs import RegionSettings
from annexd.launch import ec2fleet
from annexd.launch.base import LaunchConfigError
from annexd.launch.plan import AnnexPlan, InvalidRequest
from annexd.rpc.protocol import shown

OWN_KEYS = "pass -public-key-file and -secret-key-file to use your own"
#: An auto annex is always paid by the daemon (it never keeps a user's keys).
AUTO_KEYS = "an -auto annex is always paid by it: leave that choice to the admin's knob"


def check(plan: AnnexPlan, settings: RegionSettings) -> None:
    """Raise InvalidRequest if ``plan``, to be paid by the daemon's identity, uses anything
    other than the admin's choices for its region."""
    for what, wanted, knob, admin in _choices(plan, settings):
        if wanted != admin:
            theirs = f"{knob} = {shown(admin)}" if admin else f"{knob} is not set"
            raise InvalidRequest(
                f"{what} {shown(wanted or '(none)')!r} is not the admin's ({theirs} for "
                f"{settings.region}): an annex paid by condor_annexd's AWS identity uses only "
                "the admin's lease function, bucket, instance profile, key pair, Spot Fleet "
                f"role and user data; {AUTO_KEYS if plan.auto else OWN_KEYS}")


def _choices(plan: AnnexPlan,
             settings: RegionSettings) -> Iterator[tuple[str, str | None, str, str | None]]:
    """(what, the plan's value, the admin's knob, its value) for each choice that must be
    the admin's.  A key pair or user data the plan leaves out is the admin's only where the
    admin has none either; an instance profile left out (instances without a role) passes."""
    yield ("-lease-function-arn", plan.lease_function_arn, "ANNEX_DEFAULT_LEASE_FUNCTION_ARN",
           settings.lease_function_arn)
    yield ("the configuration bucket", plan.bucket, "ANNEX_DEFAULT_S3_BUCKET", settings.bucket)
    request = plan.launch_request
    if plan.annex_type == "spot-fleet":
        if request.get("LaunchTemplateConfigs"):
            raise InvalidRequest(f"a launch template chooses its own instance profile, key pair "
                                 "and user data: an annex paid by condor_annexd's AWS identity "
                                 f"uses LaunchSpecifications only; {OWN_KEYS}")
        yield ("the Spot Fleet role (IamFleetRole)", request.get("IamFleetRole"),
               "ANNEX_DEFAULT_FLEET_ROLE_ARN", settings.fleet_role_arn)
        specs = request.get("LaunchSpecifications", [])
    elif plan.annex_type == "on-demand":
        specs = [request]
    else:  # an EC2 Fleet: the site's template (ANNEX_DEFAULT_LAUNCH_TEMPLATE) only
        try:
            ec2fleet.check_auto(request, settings.launch_template)
        except LaunchConfigError as error:
            raise InvalidRequest(f"{error}: an EC2 Fleet launches from launch templates, "
                                 "which choose their own instance profile, key pair and user "
                                 "data, so an annex paid by condor_annexd's AWS identity uses "
                                 f"the site's ({ec2fleet.TEMPLATE_KNOB}); "
                                 f"{AUTO_KEYS if plan.auto else OWN_KEYS}") from None
        specs = []
    for spec in specs:
        yield from _instance_choices(spec, settings)


def _instance_choices(spec: dict[str, Any], settings: RegionSettings
                      ) -> Iterator[tuple[str, str | None, str, str | None]]:
    profile = spec.get("IamInstanceProfile") or {}
    wanted = profile.get("Arn") or profile.get("Name") if isinstance(profile, dict) else None
    if wanted:  # none at all gives the instances no role: nothing to guard
        yield ("the instance profile", wanted, "ANNEX_DEFAULT_ODI_INSTANCE_PROFILE_ARN",
               settings.instance_profile_arn)
    yield ("the key pair", spec.get("KeyName"), "ANNEX_DEFAULT_ODI_KEY_NAME", settings.key_name)
    yield ("the user data", _abbreviated(spec.get("UserData")), "ANNEX_DEFAULT_USER_DATA_FILE",
           _abbreviated(settings.user_data))


def _abbreviated(user_data: str | None) -> str | None:
    """User data as messages name it (its length, never its content)."""
    if not user_data:
        return None
    return f"{len(user_data)} base64 characters, sha256 " \
        f"{hashlib.sha256(user_data.encode()).hexdigest()[:12]}"
