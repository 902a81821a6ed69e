"""An annex as the caps count it: its create's launch, and every launch added to it since
(the same name again: :mod:`annexd.commands.grow`), each a plan of its own, all under the
annex's one lease.

Everything that counts what an annex may run or cost (the per-user caps of a create, a lease
change, an added launch, an auto annex's limits, -status) reads the annex through
:func:`parts`, so an annex grown by a second create is never counted at its first size.
"""
from __future__ import annotations

import dataclasses
import json
from typing import Any

from annexd.commands.context import Context
from annexd.launch.plan import AnnexPlan
from annexd.money import costs
from annexd.state.journal import Journal

#: Added launches the caps count: sent (on disk before their call, so perhaps running) and
#: done; a failed one started nothing.
COUNTED = frozenset({"sent", "done"})


def as_journaled(row: dict[str, Any], plan: AnnexPlan | None = None) -> AnnexPlan:
    """A row's plan with the lease as the journal holds it now (a lease change moves the end;
    plans of releases before ``created_at`` start when the row was made).  A lease change
    under way or cut short counts at the later of its two ends: AWS may hold either."""
    plan = plan or AnnexPlan.from_record(row["plan"])
    lease_end = max(row["lease_end"], row.get("lease_intent") or 0)
    return dataclasses.replace(plan, lease_end=lease_end or plan.lease_end,
                               created_at=plan.created_at or int(row["created"]))


def added_parts(journal: Journal, row: dict[str, Any],
                plan: AnnexPlan | None = None) -> list[AnnexPlan]:
    """The launches added to the row's annex, each as a plan: the annex's, with that
    launch's request, from when it was added to the annex's lease end."""
    return parts_of(row, plan, journal.added_launches(row["id"]))[1:]


def parts(journal: Journal, row: dict[str, Any],
          plan: AnnexPlan | None = None) -> list[AnnexPlan]:
    """The whole annex: its create's launch first, then every launch added to it."""
    return parts_of(row, plan, journal.added_launches(row["id"]))


def parts_of(row: dict[str, Any], plan: AnnexPlan | None,
             added: list[dict[str, Any]]) -> list[AnnexPlan]:
    """:func:`parts`, from the row's added launches as already read (``added``)."""
    base = as_journaled(row, plan)
    return [base, *(dataclasses.replace(base, launch_request=launch["launch_request"],
                                        created_at=int(launch["at"]))
                    for launch in added if launch["state"] in COUNTED)]


def holding(ctx: Context, uid: int, *, besides: int | None = None) -> costs.Holding:
    """What the user's live annexes may run and cost (for the per-user caps), each to its
    journaled lease end, every launch of each counted; ``besides`` leaves out one request
    (the one being changed)."""
    rows = [row for row in ctx.journal.live_rows(owner_uid=uid) if row["id"] != besides]
    added = ctx.journal.added_launches_of(row["id"] for row in rows)  # one query for all
    return costs.Holding.of(part for row in rows
                            for part in parts_of(row, None, added.get(row["id"], [])))


def loads(text: str | None) -> dict[str, Any]:
    """A row's ``outputs`` column, parsed (none yet: empty)."""
    return json.loads(text or "{}")
