"""``condor_annex -off``: end the annex now, exactly as its lease would; safe to repeat.

The row is claimed (``-> ending``) before the first AWS call, and the teardown ends only what
the annex's own request made (its ClientToken): an off that raced a resume, another off, or
the backstop either wins the claim or says who did; it never ends another request's annex of
the same name.  The name is free again once the teardown finished (``ending -> ended``); a
teardown that fails half-way parks the row (``ending-interrupted``) for ``-off`` again, the
backstop, or recovery at start-up.
"""
from __future__ import annotations

import logging
from typing import Any, Callable

from annexd.state import lifecycle
from annexd.state.journal import Journal
from annexd.state.lifecycle import RequestState
from annexd.launch.plan import AnnexPlan
from annexd.commands.context import (Caller, Context, Moved, OperationError, busy, claim,
                                     unknown)

log = logging.getLogger("annexd.operate")

#: How often -off reads the row again when another operation wrote it meanwhile.
CLAIM_ATTEMPTS = 3


def off(ctx: Context, who: Caller, name: str, region: str | None,
        credentials: dict[str, str] | None,
        report: Callable[[str], None] = lambda text: None) -> dict[str, Any]:
    """End the caller's live annex ``name`` now; ``report`` hears each step as it starts."""
    for attempt in range(CLAIM_ATTEMPTS):
        row = ctx.live(who, name, region)
        if row is None:
            return _history(ctx, who, name, region)
        if row["state"] not in lifecycle.ENDABLE:
            raise busy(name, row["state"])
        ctx.check_payer(row, credentials)  # another account's keys would end nothing
        try:
            claim(ctx.journal, row, RequestState.ENDING, lease_intent=None)  # ends it all
            break
        except Moved:  # a lease change came and went: read it again, decide again
            if attempt == CLAIM_ATTEMPTS - 1:
                raise
    summary = finish(ctx, row, credentials, report)
    log.info("annex %s in %s turned off by uid %d: %s", name, row["region"], who.uid, summary)
    return summary


def _history(ctx: Context, who: Caller, name: str, region: str | None) -> dict[str, Any]:
    """No live annex of that name: say what became of the caller's last one, truthfully."""
    last = ctx.journal.last_final(who.uid, name, region)
    if last is None:
        raise unknown(name)
    if last["state"] != RequestState.ENDED:  # refused, rolled back: it never ran
        raise OperationError("invalid-request", f"you have no live annex named {name!r} "
                             f"(your last request for it was {last['state']})")
    return {"AnnexID": name, "already_ended": True}


def finish(ctx: Context, row: dict[str, Any], credentials: dict[str, str] | None,
           report: Callable[[str], None] = lambda text: None) -> dict[str, Any]:
    """Tear down the annex of a row this thread has claimed (``ending``), then end the row.

    If AWS fails half-way the row is parked (``ending-interrupted``) and the error raised.
    """
    plan = AnnexPlan.from_record(row["plan"])
    try:
        summary = ctx.aws(plan.region, credentials).teardown(
            plan.annex_id, plan.bucket, plan.annex_type, plan.request_token, report,
            plan.owner or None)
    except BaseException:
        park(ctx.journal, row["id"])
        raise
    ctx.journal.transition(row["id"], RequestState.ENDED, expect={RequestState.ENDING})
    return summary


def park(journal: Journal, request_id: int) -> None:
    """A teardown stopped half-way: leave the row for whoever resumes it."""
    journal.transition(request_id, RequestState.ENDING_INTERRUPTED,
                       expect={RequestState.ENDING})
