"""The daemon's lease backstop: end every annex whose lease is over, with its own identity.

Only annexes the daemon's identity may act on (made with it, or in its account).  Each is
claimed (``-> ending``) before the first AWS call, like ``-off``; an active annex whose lease
AWS says was moved on (someone changed it there) is released again with the new end.  A
teardown an ``-off`` left half-way (``ending-interrupted``) is finished too, whatever its
lease end.  The lease function should have done it; if resources were still there, say so
loudly.
"""
from __future__ import annotations

import logging
from typing import Any

from annexd.aws import AwsError
from annexd.state.lifecycle import RequestState
from annexd.launch.plan import AnnexPlan
from annexd.commands.context import Context, OperationError, claim
from annexd.commands.off import finish

log = logging.getLogger("annexd.operate")


def enforce_expired(ctx: Context) -> list[str]:
    """End what outlived its lease; the names of the annexes marked ended."""
    ended = []
    for row in ctx.journal.expired(ctx.clock()):
        if ctx.may_recover(row) and _end(ctx, row):
            ended.append(row["annex_id"])
    return ended


def _end(ctx: Context, row: dict[str, Any]) -> bool:
    try:
        claim(ctx.journal, row, RequestState.ENDING)
    except OperationError as lost:  # an owner's command got there first
        log.info("LEASE BACKSTOP: %s; leaving it", lost)
        return False
    plan = AnnexPlan.from_record(row["plan"])
    try:
        if row["state"] == RequestState.ACTIVE and _moved_on(ctx, row, plan):
            return False
        summary = finish(ctx, row, None)
    except AwsError as error:
        log.error("LEASE BACKSTOP: cannot end expired annex %s: %s", plan.annex_id, error)
        return False
    if summary["cancelled_fleets"] or summary["terminated_instances"] or \
            summary["deleted_rule"]:
        log.error("LEASE BACKSTOP: annex %s outlived its lease (ended %d); the lease "
                  "function did not end it. Ended it now: %s",
                  plan.annex_id, row["lease_end"], summary)
    return True


def _moved_on(ctx: Context, row: dict[str, Any], plan: AnnexPlan) -> bool:
    """Whether AWS says the lease was moved on (by someone else): then believe AWS and
    release the claim with its end.  If AWS cannot be asked, the claim is released too."""
    try:
        target = ctx.aws(plan.region, None).lease_target(plan.annex_id, plan.request_token)
    except AwsError:
        ctx.journal.transition(row["id"], RequestState.ACTIVE, expect={RequestState.ENDING})
        raise
    moved = target["Input"].get("LeaseExpiration", 0) if target else 0
    if moved <= ctx.clock():
        return False
    ctx.journal.transition(row["id"], RequestState.ACTIVE, lease_end=moved,
                           expect={RequestState.ENDING})
    return True
