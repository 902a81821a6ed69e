"""What a request paid by the daemon's own AWS identity may choose: nothing the admin decides.

With ``ANNEXD_ALLOW_DAEMON_CREDENTIALS``, a user without keys creates annexes in the admin's
AWS account.  The lease function and the configuration bucket are then the admin's (the
region's ``ANNEX_DEFAULT_LEASE_FUNCTION_ARN`` and ``ANNEX_DEFAULT_S3_BUCKET`` of the daemon's
configuration): a lease function of the user's choosing could be one that never ends
anything, leaving the daemon's account to the backstop alone, and a bucket of theirs would
receive the pool's secret.  So a different one is refused, with the reason, rather than
quietly replaced.  ``condor_annex`` sends the values its own configuration holds, which are
the admin's unless the user set others: those pass.
"""
from __future__ import annotations

from typing import Any

from annexd.config.knobs import RegionSettings
from annexd.launch.plan import InvalidRequest
from annexd.rpc.protocol import shown

#: (request field, the flag or knob a user sets it with, the admin's knob)
CHOICES = (("lease_function_arn", "-lease-function-arn", "ANNEX_DEFAULT_LEASE_FUNCTION_ARN"),
           ("bucket", "the configuration bucket", "ANNEX_DEFAULT_S3_BUCKET"))


def check(annex: dict[str, Any], settings: RegionSettings) -> None:
    """Raise InvalidRequest if the create request ``annex``, to be paid by the daemon's
    identity, names a lease function or bucket other than the admin's for its region."""
    admin = {"lease_function_arn": settings.lease_function_arn, "bucket": settings.bucket}
    for field, what, knob in CHOICES:
        wanted = annex.get(field)
        if wanted and wanted != admin[field]:
            theirs = f"{knob} = {admin[field]}" if admin[field] else f"{knob} is not set"
            raise InvalidRequest(
                f"{what} {shown(wanted)!r} is not the admin's ({theirs} for "
                f"{settings.region}): an annex paid by condor_annexd's AWS identity uses only "
                "the admin's lease function and bucket; pass -public-key-file and "
                "-secret-key-file to use your own")
