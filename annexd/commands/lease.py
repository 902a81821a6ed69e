"""``condor_annex -lease-duration`` on an existing annex: move its lease end, or restore a
lease that vanished.

The row is claimed (``active -> extending``) before the first AWS call and released when done
(``-> active``), so an ``-off`` or the backstop never races it.  As a create does, the lease
comes first: the rule's target moves, and only then the lease end the instances read (their
config object's metadata, with the annex's own token renewed in the same write, see
:mod:`.renew`), so a change that fails half-way never leaves an object that no lease covers
(the lease function may have ended the annex meanwhile).  What can fail without changing
anything -- reading the object, minting the token -- is done before either write.  Only
``LeaseExpiration`` of the rule target's Input changes; every other field
is kept (the original ``condor_annex`` lost the bucket name there).  A lease that is missing
(its rule or target deleted by hand, or the rule no longer this request's) is put back as the
create made it: the annex is never left running without one.  A longer lease is held to the
admin's caps as a create is, before anything changes, the claim included
(:func:`annexd.money.costs.check_lease_change`).
"""
from __future__ import annotations

import json
import logging
import time
from typing import Any

from annexd.demand import budget
from annexd.money import costs
from annexd.aws import AnnexAws, AwsError
from annexd.state.journal import StateChanged
from annexd.state.lifecycle import RequestState
from annexd.launch.plan import AnnexPlan, InvalidRequest
from annexd.commands import copies, renew
from annexd.commands.context import DOING, Caller, Context, OperationError, busy, claim, unknown
from annexd.commands.launches import added_parts, holding

log = logging.getLogger("annexd.operate")


def extend(ctx: Context, who: Caller, name: str, region: str | None, lease_duration: int,
           credentials: dict[str, str] | None) -> dict[str, Any]:
    """Move the lease end to now + ``lease_duration``, keeping the rest of the Input.

    The claim records the change's intent (the new end) on disk before the change's first
    AWS call, so that after a crash whoever acts next knows a change was under way and
    reads the rule's Input for what AWS holds (:func:`settle`)."""
    row = ctx.live(who, name, region)
    if row is None:
        raise unknown(name)
    if row["state"] != RequestState.ACTIVE:
        if row["state"] in DOING:
            raise busy(name, row["state"])
        raise OperationError("conflict", f"annex {name!r} is {row['state']}, not active; "
                             "only an active annex's lease can change")
    lease_end, restored = change(ctx, row, int(ctx.clock()) + lease_duration, credentials)
    log.info("annex %s: uid %d %s its lease, which now ends at %d", name, who.uid,
             "restored" if restored else "moved", lease_end)
    return {"annex_id": name, "lease_end": lease_end, "lease_restored": restored}


def change(ctx: Context, row: dict[str, Any], lease_end: int,
           credentials: dict[str, str] | None) -> tuple[int, bool]:
    """Move the lease of the active annex of ``row`` (as read) to ``lease_end``: caps
    checked, the row claimed, AWS changed, the row released.  The one path of every lease
    change, the owner's and an auto annex's (:mod:`annexd.commands.auto`)."""
    plan = AnnexPlan.from_record(row["plan"])
    ctx.check_payer(row, credentials)
    now = ctx.clock()
    _check_caps(ctx, row, plan, lease_end)
    claim(ctx.journal, row, RequestState.EXTENDING, lease_intent=lease_end, durable=True)
    try:
        lease_end, restored = _move(ctx, plan, credentials, lease_end, now)
    except BaseException:
        _release_after_failure(ctx, row, plan, credentials)
        raise
    ctx.journal.transition(row["id"], RequestState.ACTIVE, lease_end=lease_end,
                           lease_intent=None, token_minted=now,
                           expect={RequestState.EXTENDING}, durable=True)
    copies.after_write(ctx, row["id"], credentials)  # the instances read their own copies
    return lease_end, restored


def _release_after_failure(ctx: Context, row: dict[str, Any], plan: AnnexPlan,
                           credentials: dict[str, str] | None) -> None:
    """A change that failed half-way may have moved the lease in AWS or not: take what the
    rule's Input says (none: the lease is missing, and the row keeps its end); if AWS cannot
    say, keep the intent for whoever acts next to settle -- never guess from either end."""
    try:
        held = lease_in_aws(ctx, plan, credentials)
    except AwsError:
        ctx.journal.transition(row["id"], RequestState.ACTIVE, expect={RequestState.EXTENDING})
        return
    ctx.journal.transition(row["id"], RequestState.ACTIVE, lease_end=held, lease_intent=None,
                           expect={RequestState.EXTENDING}, durable=True)


def settle(ctx: Context, row: dict[str, Any], credentials: dict[str, str] | None
           ) -> dict[str, Any]:
    """Settle a lease change cut short (an active row with a ``lease_intent``) from AWS:
    the lease end the rule's Input holds becomes the row's; no lease in AWS (rule or target
    gone) leaves the row's end as it was, shown ``missing``.  Journal-only, guarded by the
    version read, so an operation that wrote the row meanwhile wins.  Returns the row as it
    is now.  AwsError when AWS cannot be asked: the row stays unsettled."""
    plan = AnnexPlan.from_record(row["plan"])
    held = lease_in_aws(ctx, plan, credentials)
    try:
        ctx.journal.settle_lease(row["id"], row["version"],
                                 row["lease_end"] if held is None else held)
        log.info("annex %s: a lease change to %s was cut short; AWS's rule holds %s, "
                 "recorded", row["annex_id"], row["lease_intent"] or "an unrecorded end",
                 held if held is not None else "no lease")
    except StateChanged:
        pass  # written meanwhile: whoever wrote it decides
    return ctx.journal.request(row["id"])


def finish_config(ctx: Context, row: dict[str, Any]) -> None:
    """The last write of a change whose new end the rule holds already: the end the
    instances read, with their token renewed (idempotent: a crash after it changes nothing).
    With the daemon's identity; OperationError when the token cannot be minted."""
    plan = AnnexPlan.from_record(row["plan"])
    renew.config_writer(ctx.aws(plan.region, None), plan, row["lease_end"], ctx.mint,
                        ctx.clock())()
    log.info("annex %s: its instances read the lease end %d again", row["annex_id"],
             row["lease_end"])


def lease_in_aws(ctx: Context, plan: AnnexPlan,
                 credentials: dict[str, str] | None) -> int | None:
    """The lease end in force for the annex's request (its rule target's Input: AWS is the
    truth), or None when AWS holds no lease for it; AwsError when AWS cannot be asked."""
    target = ctx.aws(plan.region, credentials).lease_target(plan.annex_id, plan.owns_rule)
    end = target["Input"].get("LeaseExpiration") if target else None
    return end if isinstance(end, int) and not isinstance(end, bool) else None


def require_in_force(ctx: Context, row: dict[str, Any], plan: AnnexPlan,
                     credentials: dict[str, str] | None, margin: float) -> None:
    """AWS holds the annex's lease, of its own request, ending more than ``margin`` seconds
    from now: the check before anything more is started under it (an added launch, an auto
    annex's order).  The journal is not enough: the lease function's tick may have ended
    the annex (rule, target, fleets, object) while a lease change held the row, which then
    stays active with a later end -- the model test found a launch added there, with
    nothing left to end it.  OperationError (``conflict``) without it; AwsError when AWS
    cannot be asked."""
    name, region = row["annex_id"], row["region"]
    held = lease_in_aws(ctx, plan, credentials)
    if held is None:
        raise OperationError("conflict", f"annex {name!r} in {region} has no lease in force "
                             "in AWS (its lease rule or its target is gone): nothing may be "
                             f"started under it; see condor_annex -annex-name {name} -status, "
                             "and end it with -off")
    if held <= ctx.clock() + margin:
        ends = time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(held))
        raise OperationError("conflict", f"annex {name!r}'s lease in AWS ends at {ends}: "
                             "its lease function is about to end it, so nothing more may be "
                             f"started under it; make its lease longer first (condor_annex "
                             f"-annex-name {name} -lease-duration SECONDS)")


def _move(ctx: Context, plan: AnnexPlan, credentials: dict[str, str] | None,
          lease_end: int, now: float) -> tuple[int, bool]:
    """Set the lease end in AWS; (the new end, whether the lease had to be put back)."""
    aws = ctx.aws(plan.region, credentials)
    target = aws.lease_target(plan.annex_id, plan.owns_rule)
    if target is None:
        _refuse_a_rule_of_another_request(aws, plan)  # before anything changes
    write_config = renew.config_writer(aws, plan, lease_end, ctx.mint, now)  # changes nothing
    if target is None:
        _restore(aws, plan, lease_end)
    else:
        lease_input = dict(target["Input"], LeaseExpiration=lease_end)
        aws.put_target(plan.rule_name, plan.target_id, target["Arn"],
                       json.dumps(lease_input, sort_keys=True))
    write_config()  # last: never an object the lease does not cover
    return lease_end, target is None


def _refuse_a_rule_of_another_request(aws: AnnexAws, plan: AnnexPlan) -> None:
    """A lost lease is put back only under a rule name that no other request holds."""
    description = aws.rule_description(plan.rule_name)
    if description is not None and not plan.owns_rule(description):
        raise OperationError("conflict", f"annex {plan.annex_id!r} lost its lease, and its "
                             f"rule name is used by another request ({description!r}); end "
                             "the annex with -off")


def _restore(aws: AnnexAws, plan: AnnexPlan, lease_end: int) -> None:
    """Put the lease back as the create made it: rule, then target."""
    aws.put_rule(plan.rule_name, plan.rule_schedule, plan.annex_id, plan.client_token,
                 plan.owner_tags)
    aws.put_target(plan.rule_name, plan.target_id, plan.lease_function_arn,
                   plan.target_input(lease_end=lease_end))


def _check_caps(ctx: Context, row: dict[str, Any], plan: AnnexPlan, lease_end: int) -> None:
    """The admin's caps, before anything changes (see costs.check_lease_change); the
    instances counted are the annex owner's, whoever asks."""
    try:
        costs.check_lease_change(plan, lease_end, ctx.clock(), ctx.settings.caps,
                                 row["lease_end"],
                                 lambda: holding(ctx, row["owner_uid"], besides=row["id"]),
                                 added=added_parts(ctx.journal, row, plan))
    except InvalidRequest as error:
        raise OperationError("invalid-request", str(error)) from None
    if plan.auto and plan.max_cost is not None:
        _check_max_cost(ctx, row, plan, lease_end)


def _check_max_cost(ctx: Context, row: dict[str, Any], plan: AnnexPlan, lease_end: int) -> None:
    """An auto annex's -max-cost: what it spent, plus every instance it may run (ordered
    ones too) until the new end and the grace minute."""
    now = ctx.clock()
    spent = ctx.journal.spent(row["id"], now)
    latest = None if spent is None else budget.affordable_end(
        plan.max_cost or 0.0, spent, ctx.journal.running_hourly(row["id"]), now)
    if latest is None or lease_end > latest:
        raise OperationError("invalid-request", f"annex {plan.annex_id!r}: a lease to "
                             f"{lease_end} would be over its -max-cost of ${plan.max_cost:.2f} "
                             "(spent so far, plus its instances until then)")
