"""``condor_annex -lease-duration`` on an existing annex: move its lease end.

It rewrites only ``LeaseExpiration`` in the rule target's Input and keeps every other field
(the original ``condor_annex`` lost the bucket name there), and never creates a rule: an annex
without one is an error, not a new orphan.  It first moves the lease end the instances read
(their config object's metadata), so no instance ever shuts down before the lease end in force.
"""
from __future__ import annotations

import json
import logging
from typing import Any

from ..lifecycle import RequestState
from ..plan import AnnexPlan
from .context import Caller, Context, OperationError, unknown

log = logging.getLogger("annexd.operate")


def extend(ctx: Context, who: Caller, name: str, region: str | None, lease_duration: int,
           credentials: dict[str, str] | None,
           max_lease: int | None = None) -> dict[str, Any]:
    """Move the lease end to now + ``lease_duration``, keeping the rest of the Input."""
    if max_lease is not None and lease_duration > max_lease:
        raise OperationError("invalid-request", f"a lease of {lease_duration} s exceeds "
                             f"the limit of {max_lease} s (ANNEX_MAX_LEASE_DURATION)")
    row = ctx.live(who, name, region)
    if row is None:
        raise unknown(name)
    if row["state"] != RequestState.ACTIVE:
        raise OperationError("conflict", f"annex {name!r} is {row['state']}, not active; "
                             "only an active annex's lease can change")
    plan = AnnexPlan.from_record(row["plan"])
    aws = ctx.aws(plan.region, credentials)
    target = aws.lease_target(plan.annex_id)
    if target is None:
        raise OperationError("conflict", f"annex {name!r} has no lease rule any more (it "
                             "has ended); start a new one instead")
    lease_end = int(ctx.clock()) + lease_duration
    lease_input = dict(target["Input"], LeaseExpiration=lease_end)
    aws.set_config_lease_end(plan.bucket, plan.config_key, lease_end)
    aws.put_target(plan.rule_name, plan.target_id, target["Arn"],
                   json.dumps(lease_input, sort_keys=True))
    ctx.journal.set_lease_end(row["id"], lease_end)
    log.info("annex %s: uid %d moved its lease end to %d", name, who.uid, lease_end)
    return {"annex_id": name, "lease_end": lease_end}
