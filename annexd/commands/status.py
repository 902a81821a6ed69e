"""``condor_annex -status``: the caller's annexes from the journal, with what AWS runs for
them now (instances, and whether each one's lease is in force); and the plain list
(``list``), from the journal alone.

Final rows are history: shown only when asked for by name, with no time left and nothing
asked of AWS.  -status never ends anything in AWS: an annex whose lease is over and of whose
request nothing is left was ended by its lease function, and -status records that in the
journal alone, guarded by the row's version, rather than show it as live.
"""
from __future__ import annotations

import json
import logging
from typing import Any

from annexd.state import lifecycle, upgrade
from annexd.aws import AwsError
from annexd.state.journal import StateChanged
from annexd.state.lifecycle import RequestState
from annexd_lambda.lease import LIVE_INSTANCE_STATES
from annexd.launch.plan import AnnexPlan
from annexd.money import costs
from annexd.commands import grow, launches
from annexd.commands import lease as lease_change
from annexd.commands.context import Caller, Context, unknown, user_name

log = logging.getLogger("annexd.operate")


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
    in step with the rule (it moves both, and the backstop re-reads AWS's at expiry).  AWS is
    asked, per region, for the instances (one tag-filtered DescribeInstances per tag key) and
    for the lease rules in force (one ListRuleNamesByTarget per lease function): -status
    costs two calls for 1 annex and for 200, and the journal is read once for all of them.
    AWS is asked only where it can be (see _countable); elsewhere the instances are None and
    the lease "unknown", never a false zero or "missing"."""
    plans = [AnnexPlan.from_record(row["plan"]) for row in rows]
    added = ctx.journal.added_launches_of(row["id"] for row in rows)
    listed: dict[tuple[str, str], dict[str, list[str]]] = {}
    leases: dict[str, set[str]] = {}
    known = [not ask_aws or _countable(ctx, row, plan, credentials)
             for row, plan in zip(rows, plans)]
    if ask_aws:
        for region in sorted({plan.region for plan, may in zip(plans, known) if may}):
            aws = ctx.aws(region, credentials)
            here = [(plan, row) for plan, row, may in zip(plans, rows, known)
                    if may and plan.region == region]
            wanted: dict[str, dict[str, str]] = {}
            for plan, row in here:  # every launch's, the same name again's too
                for key, value in grow.instance_tags(plan, row, added.get(row["id"], [])):
                    wanted.setdefault(key, {})[value] = plan.annex_id
            if wanted:
                found = aws.list_instances(wanted)
                listed.update(((region, annex), states) for annex, states in found.items())
            leases[region] = aws.leases_in_force({plan.lease_function_arn for plan, _ in here})
    now = ctx.clock()
    targeted = ctx.journal.with_step_done(
        [row["id"] for row, may in zip(rows, known) if may and ask_aws], "target")
    owners: dict[int, str] = {}
    for row in rows:  # one passwd lookup per owner, not per annex
        if row["owner_uid"] not in owners:
            owners[row["owner_uid"]] = user_name(row["owner_uid"])
    reports = [{
        "name": plan.annex_id,
        "owner": owners[row["owner_uid"]],
        "owner_uid": row["owner_uid"],
        "type": plan.annex_type,
        "region": plan.region,
        "state": row["state"],
        "lease_end": int(row["lease_end"]),
        "lease": (lease := _lease(plan, row, leases.get(plan.region), row["id"] in targeted,
                                  now) if may else "unknown"),
        "lease_enforced": lease == "enforced",
        "instances": ({state: len(ids) for state, ids in
                       listed.get((plan.region, plan.annex_id), {}).items()} if may else None),
        # What the caps count: the most instances it can run, and its worst-case cost from
        # its start to its lease end (None: it cannot be priced), with the price table's date.
        **_worst_case(plan, row, added.get(row["id"], [])),
        # Each launch: its create's, and those the same name again added, under one lease.
        "launches": grow.launch_reports(row, plan, added.get(row["id"], [])),
        # An auto annex: how the daemon sizes it, and its last look at demand.
        **({"auto": auto_report(ctx, row, plan)} if plan.auto else {}),
        # The jti of the annex's own token: SEC_TOKEN_REVOCATION_EXPR revokes it by this.
        **({"token_id": plan.token_id} if plan.token_id else {}),
    } for plan, row, may in zip(plans, rows, known)]
    if instance_ids and ask_aws:  # -status -long / -classad: the IDs too, by state
        for plan, report, may in zip(plans, reports, known):
            if may:
                report["instance_ids"] = listed.get((plan.region, plan.annex_id), {})
    return reports


def _with_leases_settled(ctx: Context, rows: list[dict[str, Any]],
                         credentials: dict[str, str] | None) -> list[dict[str, Any]]:
    """Rows with a lease change's intent on record show the end AWS holds (the rule's
    Input), never either end guessed: one cut short (the row is ``active``) is settled in
    the journal, guarded by the version read (:func:`annexd.commands.lease.settle`); one
    under way (``extending``: a thread drives it) is shown as AWS holds it now, and left to
    that thread.  One call per such row; where AWS cannot be asked the lease shows
    ``unknown``."""
    settled = []
    for row in rows:
        if row["lease_intent"] is None or row["state"] not in (RequestState.ACTIVE,
                                                                 RequestState.EXTENDING):
            settled.append(row)
            continue
        plan = AnnexPlan.from_record(row["plan"])
        if _countable(ctx, row, plan, credentials):
            try:
                if row["state"] == RequestState.ACTIVE:
                    row = lease_change.settle(ctx, row, credentials)
                else:
                    held = lease_change.lease_in_aws(ctx, plan, credentials)
                    row = dict(row, lease_intent=None,
                               lease_end=row["lease_end"] if held is None else held)
            except AwsError as error:
                log.info("annex %s: its lease end is unsettled: %s", row["annex_id"], error)
        settled.append(row)
    return settled


def auto_report(ctx: Context, row: dict[str, Any], plan: AnnexPlan) -> dict[str, Any]:
    """An auto annex's limits, its last cycle (size, demand, why) and its last order."""
    found = ctx.journal.auto_status(row["id"])
    orders = ctx.journal.orders(row["id"])
    last = orders[-1] if orders else None
    return {
        "max_instances": plan.most_instances,
        "max_cost": plan.max_cost,
        "checked_at": found["at"] if found else None,
        "last_demand": found["last_demand"] if found else None,
        **({k: v for k, v in found["report"].items() if k != "ordered"} if found else {}),
        "last_order": None if last is None else {
            "instance_type": last["instance_type"], "count": last["count"],
            "state": last["state"], "at": last["at"], "why": last["why"],
            "instance_ids": json.loads(last["instance_ids"])},
    }


def _worst_case(plan: AnnexPlan, row: dict[str, Any],
                added: list[dict[str, Any]]) -> dict[str, Any]:
    parts = launches.parts_of(row, plan, added)
    cost, _ = costs.annex_life_cost(parts)
    return {"max_instances": costs.annex_instances(parts), "worst_case_cost": cost,
            "prices_date": costs.price_table()["date"]}


def _countable(ctx: Context, row: dict[str, Any], plan: AnnexPlan,
               credentials: dict[str, str] | None) -> bool:
    """Whether AWS can be asked about this annex: with the caller's keys of the account that
    pays for it, or -- root and the daemon's own user list every annex without keys -- with
    the daemon's identity where it may act on the annex.  Elsewhere an answer would be a
    false zero, or a false "missing" (finding 6 of issue 23: another account's keys see
    nothing of it)."""
    if credentials is None:
        return ctx.may_recover(row, plan)
    return not ctx.payer_mismatch(row, credentials)


def unknown_counts(ctx: Context, annexes: list[dict[str, Any]],
                   credentials: dict[str, str] | None) -> list[str]:
    """A notice when some annexes' instance counts are unknown, saying why; and one per row
    shown as written (a newer release's), saying why it is not acted on."""
    notices = [f"annex {annex['name']!r} in {annex['region'] or 'an unknown region'} "
               f"({annex['state']}) is shown as the journal holds it and is not acted on: "
               f"{annex['unknown_to_this_release']}" for annex in annexes
               if annex.get("unknown_to_this_release")]
    unknown = [annex for annex in annexes
               if annex["instances"] is None and not annex.get("unknown_to_this_release")]
    if not unknown:
        return notices
    if credentials is not None:  # keys of another account than the annex's
        rows = [ctx.journal.live_row(annex["region"], annex["name"]) for annex in unknown]
        return notices + [
            f"instance counts and leases are unknown: {ctx.payer_mismatch(row, credentials)}"
            for row in rows if row is not None and ctx.payer_mismatch(row, credentials)]
    return notices + [
        f"instance counts and leases are unknown for "
        f"{', '.join(annex['name'] for annex in unknown)}: you gave no "
        "AWS keys (-public-key-file, -secret-key-file), and condor_annexd's own AWS "
        "identity (ANNEXD_ACCESS_KEY_FILE, ANNEXD_SECRET_KEY_FILE) cannot see them"]


def _lease(plan: AnnexPlan, row: dict[str, Any], in_force: set[str] | None,
           target_put: bool, now: float) -> str:
    """The annex's lease, as AWS holds it: ``enforced``; ``missing`` (its rule or target is
    gone: restore it with -lease-duration, or end the annex with -off); ``expired`` (its end
    passed: the lease function ends it); ``pending`` (a create not yet that far); ``ended``
    (history: the row is final); ``unknown`` (AWS was not asked, or a cut-short lease
    change left its intent on record and AWS could not be asked what it holds).

    ``in_force``: the names of the region's rules that target the lease function.  That a
    rule of the annex's name there is *this request's* is the journal's word: its live row
    holds (region, name) -- the database refuses a second live row, every create checks the
    rule of its name (DescribeRule) before it puts its own, and a lease change puts back only
    its own rule -- so within this daemon no other request can hold the name while this row
    is live.  (Listing every rule for its description, a third call per region, would only
    add a rule of that name made outside this daemon -- by hand, or by another pool's daemon
    sharing the account, region and lease function -- after this annex's rule was removed;
    a lease change, -off and the backstop still read the description before they act.)
    ``target_put``: the journal records the create's PutTargets as done.
    """
    if RequestState(row["state"]) in lifecycle.FINAL:
        return "ended"
    if in_force is None:  # AWS was not asked
        return "unknown"
    if not target_put:
        return "pending"
    if plan.rule_name not in in_force:
        return "missing"
    if row["lease_intent"] is not None:  # AWS holds the old end or the new: never guess
        return "unknown"
    return "enforced" if row["lease_end"] > now else "expired"


def status(ctx: Context, who: Caller, name: str | None, region: str | None,
           credentials: dict[str, str] | None,
           instance_ids: bool = False) -> list[dict[str, Any]]:
    """One entry per live annex the caller may see, with what AWS holds for it now.

    Asked by name, a caller with no live annex of that name sees their own last finished
    one, from the journal only (history: no time left, no instances).  Rows this release
    cannot read (a newer release's state or plan; set aside by the upgrade) are shown as
    they were written, saying why, never as an error: see :func:`_as_written`.
    """
    if name is None:
        rows = _with_leases_settled(ctx, ctx.journal.live_rows(
            owner_uid=None if who.is_admin else who.uid, region=region), credentials)
        return [report for report in _settled(
            ctx, _reports(ctx, rows, credentials, instance_ids=instance_ids), rows, credentials)
            if report["lease"] != "ended"] + _set_aside(ctx, who, None, region)
    row = ctx.live(who, name, region)
    if row is not None:
        [row] = _with_leases_settled(ctx, [row], credentials)
        return _settled(ctx, _reports(ctx, [row], credentials, instance_ids=instance_ids),
                        [row], credentials)
    set_aside = _set_aside(ctx, who, name, region)
    if set_aside:
        return set_aside
    history = ctx.journal.last_final(who.uid, name, region)
    if history is None:
        raise unknown(name)
    problem = upgrade.plan_problem(history)
    if problem:
        return [_as_written(history, f"written by another release: {problem}")]
    return _reports(ctx, [history], credentials, ask_aws=False)


def _set_aside(ctx: Context, who: Caller, name: str | None,
               region: str | None) -> list[dict[str, Any]]:
    """The caller's rows the upgrade quarantined because this release cannot read them (a
    newer release's state or plan), of which AWS may still hold something (any state but
    this release's final ones), as written.  (A second live row of one annex, also set
    aside, is an earlier release's, and named in the log.)"""
    return [_as_written(row, row["quarantine_reason"]) for row in ctx.journal.quarantined(
        owner_uid=None if who.is_admin else who.uid, annex_id=name)
        if (region is None or row.get("region") == region) and
        row.get("state") not in {state.value for state in lifecycle.FINAL} and
        (row.get("state") not in {state.value for state in RequestState} or
         upgrade.plan_problem(row))]


def _as_written(row: dict[str, Any], why: str) -> dict[str, Any]:
    """A row this release cannot act on, shown as it was written: its own state (named,
    whatever it is), its lease end; what only its plan or AWS could say is unknown (None),
    never guessed.  ``unknown_to_this_release`` says why."""
    try:
        plan = json.loads(row.get("plan") or "{}")
    except ValueError:
        plan = {}
    plan = plan if isinstance(plan, dict) else {}
    known = row.get("state") in {state.value for state in RequestState}
    return {
        "name": str(row.get("annex_id")),
        "owner": user_name(row.get("owner_uid", -1)),
        "owner_uid": row.get("owner_uid"),
        "type": str(plan.get("annex_type") or "unknown"),
        "region": str(row.get("region") or plan.get("region") or ""),
        "state": str(row.get("state")),
        "lease_end": int(row.get("lease_end") or plan.get("lease_end") or 0),
        "lease": "ended" if known and RequestState(row["state"]) in lifecycle.FINAL
        else "unknown",
        "lease_enforced": False,
        "instances": None,
        "max_instances": None,
        "worst_case_cost": None,
        "prices_date": costs.price_table()["date"],
        "unknown_to_this_release": why,
    }


def _settled(ctx: Context, reports: list[dict[str, Any]], rows: list[dict[str, Any]],
             credentials: dict[str, str] | None) -> list[dict[str, Any]]:
    """Record what the lease function already did: an annex whose lease is over, whose rule
    is gone and of whose request nothing is left (no live instance, no live fleet) ended.

    -status never ends anything in AWS (that is the lease function's, the backstop's or
    -off's job): this is a journal-only transition, made only if the row was not written
    since this listing read it (its version), so a lease restore or any other operation in
    between always wins.  An annex with something left is shown as it is (``expired``), for
    the backstop or -off to end."""
    now = ctx.clock()
    for report, row in zip(reports, rows):
        if report["lease"] != "missing" or row["lease_end"] > now or \
                row["state"] not in lifecycle.ENDABLE or report["instances"] is None or \
                any(count for state, count in report["instances"].items()
                    if state in LIVE_INSTANCE_STATES):
            continue
        plan = AnnexPlan.from_record(row["plan"])
        try:
            if ctx.aws(plan.region, credentials).live_fleets(
                    plan.annex_id, plan.annex_type, plan.request_token):
                continue
        except AwsError as error:
            log.warning("annex %s: cannot tell whether its fleets are gone: %s",
                        row["annex_id"], error)
            continue
        try:
            ctx.journal.settle_ended(row["id"], row["version"])
        except StateChanged:
            continue  # another operation wrote the row meanwhile: it decides, not we
        log.info("annex %s in %s: nothing of it is left and its lease is over; its lease "
                 "function ended it; recorded as ended", row["annex_id"], row["region"])
        report.update(state=RequestState.ENDED.value, lease="ended", instances={})
    return reports
