"""The create sequence as data, and the one driver that walks it forward and, on failure, back.

Lease before instances: the lease function is checked, the config uploaded and the rule and
target that enforce the lease are in place before the fleet is requested, so no instance can
exist without something that will end it.  Each step names its forward call, its undo call,
and what it records.  On failure the driver undoes, in reverse order, every step that started
(the failed one included: a timed-out call may still have taken effect), and carries on
through undo errors so that one stuck resource does not keep the others alive.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable

from . import tarball
from .aws import AnnexAws
from .journal import Journal
from .plan import AnnexPlan

log = logging.getLogger("annexd.steps")

Outputs = dict[str, Any]


class AnnexExists(Exception):
    """An annex of this name already has a lease rule: creating it again would hijack it."""


@dataclass(frozen=True)
class Step:
    name: str
    forward: Callable[[AnnexAws, AnnexPlan, Outputs], Outputs]
    undo: Callable[[AnnexAws, AnnexPlan, Outputs], None] | None = None


def check(aws: AnnexAws, plan: AnnexPlan, _: Outputs) -> Outputs:
    aws.check_function(plan.lease_function_arn)
    if aws.rule_exists(plan.rule_name):
        raise AnnexExists(
            f"annex {plan.annex_id!r} already exists (its lease rule is in place); "
            "choose another -annex-name")
    return {}


def upload_config(aws: AnnexAws, plan: AnnexPlan, _: Outputs) -> Outputs:
    aws.put_config(plan.bucket, plan.config_key, tarball.build(plan), plan.annex_id)
    return {"config_url": f"s3://{plan.bucket}/{plan.config_key}"}


def delete_config(aws: AnnexAws, plan: AnnexPlan, _: Outputs) -> None:
    aws.delete_config(plan.bucket, plan.config_key)


def put_rule(aws: AnnexAws, plan: AnnexPlan, _: Outputs) -> Outputs:
    return {"rule_arn": aws.put_rule(plan.rule_name, plan.rule_schedule, plan.annex_id)}


def delete_rule(aws: AnnexAws, plan: AnnexPlan, _: Outputs) -> None:
    aws.delete_rule(plan.rule_name)


def put_target(aws: AnnexAws, plan: AnnexPlan, _: Outputs) -> Outputs:
    aws.put_target(plan.rule_name, plan.target_id, plan.lease_function_arn, plan.target_input())
    return {"target_id": plan.target_id}


def remove_target(aws: AnnexAws, plan: AnnexPlan, _: Outputs) -> None:
    aws.remove_target(plan.rule_name, plan.target_id)


def request_fleet(aws: AnnexAws, plan: AnnexPlan, _: Outputs) -> Outputs:
    return {"spot_fleet_request_id": aws.request_spot_fleet(plan.spot_fleet_config)}


def cancel_fleet(aws: AnnexAws, plan: AnnexPlan, outputs: Outputs) -> None:
    """Cancel the fleet (terminating its instances); if its ID never came back, find it by tag."""
    fleet_id = outputs.get("spot_fleet_request_id")
    aws.cancel_fleets([fleet_id] if fleet_id else aws.find_fleets(plan.annex_id))


CREATE_SPOT_FLEET: tuple[Step, ...] = (
    Step("check", check),
    Step("config", upload_config, delete_config),
    Step("rule", put_rule, delete_rule),
    Step("target", put_target, remove_target),
    Step("fleet", request_fleet, cancel_fleet),
)


class CreateFailed(Exception):
    """A forward step failed; what had been created was undone (see ``undo_errors``)."""

    def __init__(self, step: str, cause: Exception, undo_errors: list[tuple[str, Exception]]):
        super().__init__(step, cause, undo_errors)
        self.step, self.cause, self.undo_errors = step, cause, undo_errors


def _undo(steps: list[Step], aws: AnnexAws, plan: AnnexPlan, outputs: Outputs,
          journal: Journal, request_id: int) -> list[tuple[str, Exception]]:
    errors = []
    for step in reversed(steps):
        if step.undo is None:
            continue
        journal.step_event(request_id, step.name, "undo-started")
        try:
            step.undo(aws, plan, outputs)
        except Exception as error:  # keep undoing the rest: never stop a rollback
            log.error("annex %s: undo of %s failed: %s", plan.annex_id, step.name, error)
            journal.step_event(request_id, step.name, "undo-failed", str(error))
            errors.append((step.name, error))
        else:
            journal.step_event(request_id, step.name, "undone")
    return errors


def run(steps: tuple[Step, ...], aws: AnnexAws, plan: AnnexPlan, journal: Journal,
        request_id: int) -> Outputs:
    """Walk ``steps`` forward; on failure roll back and raise CreateFailed."""
    outputs: Outputs = {}
    started: list[Step] = []
    for step in steps:
        journal.step_event(request_id, step.name, "started")
        started.append(step)
        try:
            produced = step.forward(aws, plan, outputs)
        except Exception as error:
            log.warning("annex %s: step %s failed: %s", plan.annex_id, step.name, error)
            journal.step_event(request_id, step.name, "failed", str(error))
            journal.set_state(request_id, "rolling-back", error=str(error))
            undo_errors = _undo(started, aws, plan, outputs, journal, request_id)
            journal.set_state(request_id,
                              "rollback-incomplete" if undo_errors else "rolled-back")
            raise CreateFailed(step.name, error, undo_errors) from error
        outputs.update(produced)
        journal.step_event(request_id, step.name, "done", produced)
        log.info("annex %s: %s done %s", plan.annex_id, step.name, produced or "")
    journal.set_state(request_id, "active", outputs=outputs)
    return outputs
