"""``condor_annex -off``: end the annex now, exactly as its lease would; safe to repeat."""
from __future__ import annotations

import logging
from typing import Any, Callable

from .. import lifecycle
from ..journal import Journal, StateChanged
from ..lifecycle import RequestState
from ..plan import AnnexPlan
from .context import Caller, Context, OperationError, unknown

log = logging.getLogger("annexd.operate")


def off(ctx: Context, who: Caller, name: str, region: str | None,
        credentials: dict[str, str] | None,
        report: Callable[[str], None] = lambda text: None) -> dict[str, Any]:
    """End the annex now; a caller whose annex already ended is told so.  ``report`` hears
    each step as it starts."""
    row = ctx.live(who, name, region)
    if row is None:
        if ctx.journal.last_final(who.uid, name, region) is None:
            raise unknown(name)
        return {"AnnexID": name, "already_ended": True}
    if RequestState(row["state"]) in lifecycle.DRIVEN:
        raise OperationError("conflict", f"annex {name!r} is being created or rolled back "
                             "right now; try again when that is done")
    plan = AnnexPlan.from_record(row["plan"])
    summary = ctx.aws(plan.region, credentials).teardown(plan.annex_id, plan.bucket,
                                                         plan.annex_type, report)
    end_row(ctx.journal, row)
    log.info("annex %s in %s turned off by uid %d: %s", plan.annex_id, plan.region,
             who.uid, summary)
    return summary


def end_row(journal: Journal, row: dict[str, Any]) -> bool:
    """Mark the annex ended; False if another request or the backstop changed it first
    (e.g. both ended it at once, or its owner resumed it)."""
    try:
        journal.transition(row["id"], RequestState.ENDED, expect=lifecycle.SETTLED)
    except StateChanged as changed:
        log.info("annex %s: now %s; not marking it ended", row["annex_id"], changed.state)
        return False
    return True
