"""The daemon's lease backstop: end every annex whose lease is over, with its own identity.

Only annexes the daemon's identity may act on (made with it, or in its account).  The lease
function should have done it; if resources were still there, say so loudly.
"""
from __future__ import annotations

import logging

from ..aws import AwsError
from ..plan import AnnexPlan
from .context import Context
from .off import end_row

log = logging.getLogger("annexd.operate")


def enforce_expired(ctx: Context) -> list[str]:
    """End what outlived its lease; the names of the annexes marked ended."""
    ended = []
    for row in ctx.journal.expired(ctx.clock()):
        if not ctx.may_recover(row):
            continue
        plan = AnnexPlan.from_record(row["plan"])
        try:
            aws = ctx.aws(plan.region, None)
            target = aws.lease_target(plan.annex_id)
            extended = target and target["Input"].get("LeaseExpiration", 0) > ctx.clock()
            if extended:  # moved by someone else: believe AWS
                ctx.journal.set_lease_end(row["id"], target["Input"]["LeaseExpiration"])
                continue
            summary = aws.teardown(plan.annex_id, plan.bucket, plan.annex_type)
        except AwsError as error:
            log.error("LEASE BACKSTOP: cannot check expired annex %s: %s",
                      plan.annex_id, error)
            continue
        if summary["cancelled_fleets"] or summary["terminated_instances"] or \
                summary["deleted_rule"]:
            log.error("LEASE BACKSTOP: annex %s outlived its lease (ended %d); the lease "
                      "function did not end it. Ended it now: %s",
                      plan.annex_id, row["lease_end"], summary)
        if end_row(ctx.journal, row):
            ended.append(plan.annex_id)
    return ended
