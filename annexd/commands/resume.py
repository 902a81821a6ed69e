"""Resuming a parked request: by its owner repeating the command, or by the daemon itself at
start-up (recovery).  A parked request resumes in the direction it was going; a create whose
lease ended meanwhile, or lost its lease in AWS, is rolled back instead of launched."""
from __future__ import annotations

import concurrent.futures
import logging
import time
from typing import Any

from annexd.config.knobs import KnobError
from annexd.money import daemonpaid
from annexd.rpc import protocol
from annexd.state import lifecycle
from annexd.launch import steps
from annexd.state.journal import Progress, StateChanged
from annexd.state.lifecycle import RequestState
from annexd.launch.plan import AnnexPlan, InvalidRequest
from annexd.aws import AwsError
from annexd.commands import grow, lease, off
from annexd.commands.context import Caller, Context, OperationError, claim
from annexd.commands.replies import failure_reply, outcome_reply, resumable, taken_reply

log = logging.getLogger("annexd.rpc.service")


def drive_on(ctx: Context, driver: steps.Driver,
             state: RequestState) -> steps.Outputs | None:
    """Resume a parked request in the direction it was going.

    The row is claimed first (``interrupted -> creating``, ``rollback-interrupted ->
    rolling-back``; StateChanged if another operation was first), and only then is AWS asked
    whether the lease is still there.  Returns the outputs of a finished create, or None when
    it was rolled back (a parked rollback, or a create whose lease ended meanwhile).  Raises
    CreateFailed or Paused like Driver.forward, and CreateFailed for a rollback that could
    not finish.
    """
    journal = ctx.journal
    plan, request_id = driver.plan, driver.request_id
    progress = journal.progress(request_id)
    if state is RequestState.ROLLBACK_INTERRUPTED:
        journal.transition(request_id, RequestState.ROLLING_BACK, expect={state})
        reason = "resuming an interrupted rollback"
    elif plan.lease_end <= ctx.clock():
        reason = "the lease ended before the annex was complete"
        journal.transition(request_id, RequestState.ROLLING_BACK, expect={state},
                           error=reason)
    else:
        journal.transition(request_id, RequestState.CREATING, expect={state})
        try:
            lost = _lease_lost(driver, progress)
        except BaseException:  # could not ask: nothing changed, leave it parked as it was
            journal.transition(request_id, RequestState.INTERRUPTED,
                               expect={RequestState.CREATING})
            raise
        if not lost:
            return driver.forward(progress)
        # The journal says the lease was put in force, but AWS no longer has it: its
        # lease function (whose clock is AWS's, not ours) or someone else ended it.
        # Never go on to launch without a lease: finish it off instead.
        reason = "its lease was ended while it was interrupted"
        journal.transition(request_id, RequestState.ROLLING_BACK,
                           expect={RequestState.CREATING}, error=reason)
    log.warning("annex %s: %s; rolling back", plan.annex_id, reason)
    outcome = driver.rollback(progress, reason, resumed=True)
    if outcome.errors:
        raise steps.CreateFailed("rollback", RuntimeError(reason), outcome.errors,
                                 outcome.lease_kept)
    return None


def _lease_lost(driver: steps.Driver, progress: Progress) -> bool:
    """Whether the lease this request put in place (as far as the journal knows) is gone from
    AWS: its rule, once made, no longer this request's; its target, once put, missing.  (A
    lease step that was started but not journaled done is simply done again.)"""
    aws, plan = driver.aws, driver.plan
    if "rule" in progress.done and not plan.owns_rule(aws.rule_description(plan.rule_name)):
        return True
    return "target" in progress.done and aws.lease_target(plan.annex_id) is None


def name_held(ctx: Context, row: dict[str, Any], who: Caller,
              credentials: dict[str, str] | None, annex: dict[str, Any],
              notices: list[str]) -> dict[str, Any] | None:
    """The (region, name) is held by a live row: resume it, finish its rollback, or say
    no.  None: its rollback was finished and the new request may go ahead."""
    state = RequestState(row["state"])
    if not resumable(row, who):
        return taken_reply(row, who)
    plan = AnnexPlan.from_record(row["plan"])
    wrong = ctx.payer_mismatch(row, credentials)
    if wrong:  # finding 5 of issue 23: a resume never moves an annex to another account
        return protocol.error_reply("invalid-request", f"{wrong}: use keys of that account; "
                                    "nothing was changed")
    if credentials is None:  # paid by the daemon's identity: the admin's choices only
        daemonpaid.check(plan, ctx.settings.for_region(plan.region))
    # Only a create still to finish needs the config tarball; a rollback does not.
    payload = ctx.payload(plan, annex) if state is RequestState.INTERRUPTED else None
    log.info("request %d: uid %d resumes %s annex %s", row["id"], who.uid, state,
             row["annex_id"])
    driver = ctx.driver(plan, row["id"], credentials, payload)
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(row["created"]))
    if state is RequestState.ROLLBACK_INTERRUPTED:
        try:
            drive_on(ctx, driver, state)
        except steps.CreateFailed as error:
            return failure_reply(error, [])
        except StateChanged:
            return taken_reply(ctx.journal.request(row["id"]), who)
        notices.append(f"first finished rolling back the failed request for annex "
                       f"{row['annex_id']!r} of {when}")
        return None
    try:
        return outcome_reply(ctx.journal, driver, lambda: drive_on(ctx, driver, state), [
            f"resumed the interrupted request for annex {row['annex_id']!r} of {when}; "
            "its original settings apply"])
    except StateChanged:  # another request resumed it (or the backstop ended it) first
        return taken_reply(ctx.journal.request(row["id"]), who)


def recover(ctx: Context, workers: int = 8) -> None:
    """Drive every request a crash or shutdown left unfinished to a clean end if we can.

    No thread of this process drives any of them, so each is first parked in its
    direction (a rollback stays a rollback).  Those the daemon may act on with its own
    identity are then resumed, a few at a time: they belong to different annexes and do
    not interfere.  The others wait, parked, for their owners.  Then the launches added to
    live annexes (the same name again) that the crash left sent are finished the same way
    (:func:`annexd.commands.grow.recover`).
    """
    rows = ctx.journal.unfinished()
    for row in rows:
        state = RequestState(row["state"])
        if state is RequestState.EXTENDING:  # cut short: AWS holds the old end or the new
            ctx.journal.transition(row["id"], RequestState.ACTIVE)  # its intent kept
            if row["lease_intent"] is not None:  # else an added launch, an order, a renewal
                _settle_cut_short(ctx, ctx.journal.request(row["id"]))
        elif state in lifecycle.DRIVEN:
            ctx.journal.transition(row["id"], lifecycle.AFTER_CRASH[state])
    rows = [ctx.journal.request(row["id"]) for row in rows]
    rows = [row for row in rows if row["state"] in lifecycle.PARKED]
    mine = [row for row in rows if ctx.may_recover(row) and _admins_choices(ctx, row)]
    for row in rows:
        if row not in mine:
            log.warning("request %d: annex %s in %s (uid %d) is parked; it resumes when "
                        "its owner runs the same condor_annex command again",
                        row["id"], row["annex_id"], row["region"], row["owner_uid"])
    if mine:
        with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(lambda request_id: _recover_one(ctx, request_id),
                          [row["id"] for row in mine]))
    grow.recover(ctx)  # launches added to live annexes, left sent by the crash


def _admins_choices(ctx: Context, row: dict[str, Any]) -> bool:
    """Whether the daemon's identity may drive this parked request on: a rollback or an
    unfinished -off only remove; a create goes on only with the admin's choices
    (annexd.money.daemonpaid), as if it had been paid by the daemon from the start."""
    if row["state"] != RequestState.INTERRUPTED:
        return True
    try:
        daemonpaid.check(AnnexPlan.from_record(row["plan"]),
                         ctx.settings.for_region(row["region"]))
    except (InvalidRequest, KnobError) as error:
        log.warning("request %d: annex %s: not resumed with condor_annexd's identity: %s",
                    row["id"], row["annex_id"], error)
        return False
    return True


def _settle_cut_short(ctx: Context, row: dict[str, Any]) -> None:
    """A lease change a crash cut short: its intent is on record; what AWS holds is read
    from the rule's Input, with the daemon's identity where it may, and when the rule holds
    the new end the change is finished: the end the instances read (and their token) is
    written again (the crash may have come before that write).  Elsewhere (or when AWS
    cannot be asked) the row keeps its intent, and the owner's next -status, -off or
    -lease-duration, or the backstop, reads it."""
    if ctx.may_recover(row):
        try:
            settled = lease.settle(ctx, row, None)
            if row["lease_intent"] and settled["lease_end"] == row["lease_intent"]:
                lease.finish_config(ctx, settled)
            return
        except (AwsError, OperationError) as error:
            log.warning("request %d: annex %s: cannot settle its cut-short lease change: %s",
                        row["id"], row["annex_id"], error)
            if ctx.journal.request(row["id"])["lease_intent"] is None:
                return
    log.warning("request %d: annex %s: a lease change to %s was cut short; its lease end is "
                "read from AWS's rule by the owner's next command or the backstop",
                row["id"], row["annex_id"], row["lease_intent"])


def _recover_one(ctx: Context, request_id: int) -> None:
    row = ctx.journal.request(request_id)
    plan = AnnexPlan.from_record(row["plan"])
    log.info("request %d: recovering annex %s from state %s",
             row["id"], plan.annex_id, row["state"])
    try:
        if row["state"] == RequestState.ENDING_INTERRUPTED:  # an -off cut short: finish it
            claim(ctx.journal, row, RequestState.ENDING)
            off.finish(ctx, row, None)
            return
        try:
            payload = ctx.payload(plan, None)
        except InvalidRequest as error:  # the config step, if still to do, rolls back
            log.error("request %d: %s", row["id"], error)
            payload = None
        driver = ctx.driver(plan, row["id"], None, payload)
        if drive_on(ctx, driver, RequestState(row["state"])) is not None:
            grow.finished_by_recovery(ctx, row["id"], 1)  # its owner's repeat adds nothing
    except steps.CreateFailed as error:
        log.error("request %d: recovery of annex %s failed at %s: %s",
                  row["id"], plan.annex_id, error.step, error.cause)
    except steps.Paused:
        log.info("request %d: recovery of annex %s paused for shutdown",
                 row["id"], plan.annex_id)
    except Exception:  # one broken request must not stop the others' recovery
        log.exception("request %d: recovery of annex %s failed", row["id"], plan.annex_id)
