"""The replies a create or a resumed create ends with: its outputs, a clean failure, a pause,
or why the name is taken.  Shared by the create and resume paths."""
from __future__ import annotations

import logging
from typing import Any, Callable

from annexd.config import hints
from annexd.state import lifecycle
from annexd.rpc import protocol
from annexd.launch import steps
from annexd.aws import AwsError
from annexd.state.journal import Journal
from annexd.state.lifecycle import RequestState
from annexd.launch.plan import AnnexPlan
from annexd.commands.context import DOING, Caller, busy

log = logging.getLogger("annexd.rpc.service")


def failure_reply(error: steps.CreateFailed, notices: list[str],
                  plan: AnnexPlan | None = None) -> dict[str, Any]:
    """``plan`` (when known) lets the message name the flag or knob that fixes it."""
    cause = error.cause
    aws_code = getattr(cause, "code", None)
    request_id = getattr(cause, "request_id", None)
    if isinstance(cause, steps.AnnexExists):
        return protocol.error_reply("conflict", str(cause), notices=notices)
    if isinstance(cause, steps.CannotJoin):
        return protocol.error_reply("invalid-request", f"{cause}; nothing was created",
                                    notices=notices)
    if error.undo_errors:
        leftovers = "; ".join(f"{name}: {err}" for name, err in error.undo_errors)
        kept = " Its lease is kept and now ends at once: the lease function removes what " \
            "is left within minutes." if error.lease_kept else ""
        return protocol.error_reply(
            "rollback-incomplete",
            f"{cause}; rolling back also failed, these may be left over: {leftovers}.{kept}",
            aws_code=aws_code, request_id=request_id, notices=notices)
    kind = "aws" if isinstance(cause, AwsError) else "internal"
    message = f"{cause}; nothing was left behind"
    if plan is not None:
        message += hints.for_aws_code(aws_code, plan.annex_type, plan.region)
    if error.step == "check" and aws_code == "ResourceNotFoundException":
        message = f"the lease function does not exist ({cause}); nothing was created"
    return protocol.error_reply(kind, message, aws_code=aws_code, request_id=request_id,
                                notices=notices)


def paused_reply(plan: AnnexPlan, step: str, notices: list[str]) -> dict[str, Any]:
    return protocol.error_reply(
        "interrupted",
        f"condor_annexd is shutting down; annex {plan.annex_id!r} stopped safely before its "
        f"{step} step (its lease is in force). Run the same condor_annex command again to "
        "finish it.", notices=notices)


def outcome_reply(journal: Journal, driver: steps.Driver,
                  run: Callable[[], steps.Outputs | None],
                  notices: list[str]) -> dict[str, Any]:
    """Run a create (new or resumed) and say how it ended."""
    plan = driver.plan
    try:
        outputs = run()
    except steps.CreateFailed as error:
        log.warning("request %d: annex %s failed at %s: %s",
                    driver.request_id, plan.annex_id, error.step, error.cause)
        return failure_reply(error, notices, plan)
    except steps.Paused as paused:
        log.info("request %d: annex %s paused before %s for shutdown",
                 driver.request_id, plan.annex_id, paused.step)
        return paused_reply(plan, paused.step, notices)
    except AwsError as error:  # checking the lease before resuming: nothing changed
        return protocol.error_reply(
            "aws", f"cannot resume annex {plan.annex_id!r}: {error}; nothing was changed, "
            "run the same command again", aws_code=error.code,
            request_id=error.request_id, notices=notices)
    if outputs is None:
        why = journal.request(driver.request_id)["error"]
        return protocol.error_reply(
            "aws", f"annex {plan.annex_id!r} could not be finished ({why}); it was rolled "
            "back", notices=notices)
    result = {
        "annex_id": plan.annex_id,
        "type": plan.annex_type,
        "region": plan.region,
        "lease_end": plan.lease_end,
        "rule_arn": outputs["rule_arn"],
        "config_url": outputs["config_url"],
    }
    if plan.auto:  # nothing launched yet: the daemon sizes it from demand
        launched, more = {"instance_ids": [], "auto": True,
                          "max_instances": plan.most_instances}, []
    else:
        launched, more = plan.kind.reply(plan, outputs)
    result.update(launched)
    notices = notices + more
    log.info("request %d: annex %s is up: %s", driver.request_id, plan.annex_id, result)
    return protocol.ok_reply(result, notices)


def resumable(row: dict[str, Any], who: Caller) -> bool:
    """Whether the caller's repeat of the command resumes this live row (a parked request
    of theirs), rather than being refused."""
    return who.may_act_on(row["owner_uid"]) and \
        RequestState(row["state"]) in lifecycle.PARKED_CREATES


def taken_reply(row: dict[str, Any], who: Caller) -> dict[str, Any]:
    """Why a live row's (region, name) cannot be created again by this caller."""
    name, region = row["annex_id"], row["region"]
    state = RequestState(row["state"])
    if not who.may_act_on(row["owner_uid"]):
        message = f"annex {name!r} in {region} belongs to another user; choose another name"
    elif state in DOING:
        message = str(busy(name, state))
    else:
        message = (f"annex {name!r} already exists in {region} ({state}); choose another "
                   "-annex-name, or end it first with -off (the same name again adds "
                   "instances only to an active annex of yours)")
    return protocol.error_reply("conflict", message)
