"""The daemon's lease backstop: end every annex whose lease is over, with its own identity.

Only annexes the daemon's identity may act on (made with it, or in its account).  For an active
annex it reads the lease AWS holds first (the rule's Input: AWS is the truth): one moved on
(a lease change the journal did not see to its end) is taken as the row's, and nothing is
claimed.  Only an annex whose lease is over in AWS too is claimed (``-> ending``), like
``-off``, before its teardown.  A
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
from annexd.commands.lease import lease_in_aws
from annexd.commands.off import finish
from annexd.state.journal import StateChanged

log = logging.getLogger("annexd.operate")


def enforce_expired(ctx: Context) -> list[str]:
    """End what outlived its lease; the names of the annexes marked ended."""
    ended = []
    for row in ctx.until_stopping(ctx.journal.expired(ctx.clock())):
        if ctx.may_recover(row) and _end(ctx, row):
            ended.append(row["annex_id"])
    return ended


def _end(ctx: Context, row: dict[str, Any]) -> bool:
    plan = AnnexPlan.from_record(row["plan"])
    if row["state"] == RequestState.ACTIVE and not _still_over(ctx, row, plan):
        return False
    try:
        claim(ctx.journal, row, RequestState.ENDING, lease_intent=None)
    except OperationError as lost:  # an owner's command got there first: it decides
        log.info("LEASE BACKSTOP: %s; leaving it", lost)
        return False
    try:
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


def _still_over(ctx: Context, row: dict[str, Any], plan: AnnexPlan) -> bool:
    """Read AWS before claiming anything: whether the lease the rule holds for the annex's
    request is over too.  A lease moved on in AWS (a change the journal did not see to its
    end: a crash, someone else) is taken as the row's; a lease missing from AWS while the
    journal's end is ahead is left to that end.  Either way nothing is claimed, so an
    owner's command is never refused for the backstop's look."""
    try:
        held = lease_in_aws(ctx, plan, None)
    except AwsError as error:
        log.warning("LEASE BACKSTOP: cannot read the lease of annex %s: %s; leaving it",
                    plan.annex_id, error)
        return False
    now = ctx.clock()
    if held is not None and held > now:
        settled = held
    elif held is None and row["lease_end"] > now:  # missing from AWS; the journal's end holds
        settled = row["lease_end"]
    else:
        return True
    try:
        ctx.journal.settle_lease(row["id"], row["version"], settled)
    except StateChanged:
        pass  # an owner's command wrote the row meanwhile: it decides
    return False
