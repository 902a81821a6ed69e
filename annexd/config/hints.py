"""The fix an error names: which command, flag or knob the user should reach for.

An error a user cannot act on costs them the manual (or the source); each message built here
ends with what to do.  Kept apart from the code that fails, so the wording is in one place.
"""
from __future__ import annotations

from typing import Any

from annexd.config.knobs import region_local_name

#: EC2's codes for an image it cannot use.
IMAGE_CODES = frozenset({"InvalidAMIID.NotFound", "InvalidAMIID.Malformed",
                         "InvalidAMIID.Unavailable"})


def setup_command(region: str | None) -> str:
    return f"condor_annex -aws-region {region} -setup" if region else "condor_annex -setup"


def request_region(request: dict[str, Any]) -> str | None:
    return request.get("region") or (request.get("annex") or {}).get("region")


def no_credentials(request: dict[str, Any]) -> str:
    """Why a request without keys is refused (the daemon lends no identity), and the fix."""
    if request.get("daemon_identity"):
        return ("FROM INSTANCE asks for condor_annexd's own AWS identity, which this pool "
                "does not lend to users (the admin's ANNEXD_ALLOW_DAEMON_CREDENTIALS); give "
                "key files instead: -public-key-file and -secret-key-file")
    return (f"no AWS credentials: run {setup_command(request_region(request))} once with your "
            "key files (it records them), or pass -public-key-file and -secret-key-file")


def for_aws_code(code: str | None, annex_type: str, region: str) -> str:
    """Advice to add to an AWS failure of a create, or ""."""
    if code in IMAGE_CODES:
        if annex_type == "on-demand":
            return (f"; the image comes from -aws-on-demand-ami-id, else the knob "
                    f"{region_local_name(region)}.ANNEX_DEFAULT_ODI_IMAGE_ID (or "
                    f"ANNEX_DEFAULT_ODI_IMAGE_ID): set it to an image in {region} that has "
                    "condor_annex_ec2 installed")
        return (f"; set ImageId in the config (or its launch template) to an image in "
                f"{region} that has condor_annex_ec2 installed")
    return ""
