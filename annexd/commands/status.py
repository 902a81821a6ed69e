"""``condor_annex -status``: the caller's annexes from the journal, with what AWS runs for
them now; and the plain list (``list``), from the journal alone."""
from __future__ import annotations

import json
from typing import Any

from .. import lifecycle
from ..lifecycle import RequestState
from ..plan import AnnexPlan
from .context import Caller, Context, unknown, user_name


def list_annexes(ctx: Context, who: Caller) -> list[dict[str, Any]]:
    """The live annexes the caller may see: their own, or all for root and the daemon."""
    rows = ctx.journal.live_rows(owner_uid=None if who.is_admin else who.uid)
    return [{
        "name": row["annex_id"],
        "region": row["region"],
        "owner": row["owner_uid"],
        "state": row["state"],
        "lease_end": row["lease_end"],
    } for row in rows]


def _reports(ctx: Context, rows: list[dict[str, Any]], credentials: dict[str, str] | None,
             ask_aws: bool = True, instance_ids: bool = False) -> list[dict[str, Any]]:
    """What each annex holds now.  The lease end is the journal's, which the daemon keeps
    in step with the rule (it moves both, and the backstop re-reads AWS's at expiry);
    AWS is asked only for the instances: one tag-filtered DescribeInstances per region and
    tag key for all the annexes, so -status costs the same for 1 annex and for 100."""
    plans = [AnnexPlan.from_record(row["plan"]) for row in rows]
    listed: dict[tuple[str, str], dict[str, list[str]]] = {}
    if ask_aws:
        for region in sorted({plan.region for plan in plans}):
            wanted: dict[str, dict[str, str]] = {}
            for plan, row in zip(plans, rows):
                tag = plan.kind.instance_tag(plan, json.loads(row.get("outputs") or "{}"))
                if plan.region == region and tag is not None:
                    wanted.setdefault(tag[0], {})[tag[1]] = plan.annex_id
            if wanted:
                found = ctx.aws(region, credentials).list_instances(wanted)
                listed.update(((region, annex), states) for annex, states in found.items())
    now = ctx.clock()
    reports = [{
        "name": plan.annex_id,
        "owner": user_name(row["owner_uid"]),
        "owner_uid": row["owner_uid"],
        "type": plan.annex_type,
        "region": plan.region,
        "state": row["state"],
        "lease_end": int(row["lease_end"]),
        "lease_enforced": RequestState(row["state"]) in lifecycle.LIVE and
        row["lease_end"] > now,
        "instances": {state: len(ids) for state, ids in
                      listed.get((plan.region, plan.annex_id), {}).items()},
    } for plan, row in zip(plans, rows)]
    if instance_ids and ask_aws:  # -status -long / -classad: the IDs too, by state
        for plan, report in zip(plans, reports):
            report["instance_ids"] = listed.get((plan.region, plan.annex_id), {})
    return reports


def status(ctx: Context, who: Caller, name: str | None, region: str | None,
           credentials: dict[str, str] | None,
           instance_ids: bool = False) -> list[dict[str, Any]]:
    """One entry per live annex the caller may see, with what AWS holds for it now.

    Asked by name, a caller with no live annex of that name sees their own last finished
    one, from the journal only.
    """
    if name is None:
        rows = ctx.journal.live_rows(owner_uid=None if who.is_admin else who.uid,
                                     region=region)
        return _reports(ctx, rows, credentials, instance_ids=instance_ids)
    row = ctx.live(who, name, region)
    if row is not None:
        return _reports(ctx, [row], credentials, instance_ids=instance_ids)
    history = ctx.journal.last_final(who.uid, name, region)
    if history is None:
        raise unknown(name)
    return _reports(ctx, [history], credentials, ask_aws=False)
