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

from ..aws import AwsError
from ..lifecycle import RequestState
from ..plan import AnnexPlan
from .context import Context, OperationError, claim
from .off import finish, park

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
        if row["state"] == RequestState.ACTIVE:
            target = ctx.aws(plan.region, None).lease_target(plan.annex_id, plan.request_token)
            moved = target["Input"].get("LeaseExpiration", 0) if target else 0
            if moved > ctx.clock():  # moved on in AWS by someone else: believe AWS
                ctx.journal.transition(row["id"], RequestState.ACTIVE, lease_end=moved,
                                       expect={RequestState.ENDING})
                return False
        summary = finish(ctx, row, None)
    except AwsError as error:
        if ctx.journal.request(row["id"])["state"] == RequestState.ENDING:
            park(ctx.journal, row["id"])
        log.error("LEASE BACKSTOP: cannot end expired annex %s: %s", plan.annex_id, error)
        return False
    if summary["cancelled_fleets"] or summary["terminated_instances"] or \
            summary["deleted_rule"]:
        log.error("LEASE BACKSTOP: annex %s outlived its lease (ended %d); the lease "
                  "function did not end it. Ended it now: %s",
                  plan.annex_id, row["lease_end"], summary)
    return True
