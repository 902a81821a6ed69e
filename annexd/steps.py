"""The create sequence as data, and the one driver that walks it forward and, on failure, back.

Lease before instances: the lease function is checked, the config uploaded and the rule and
target that enforce the lease are in place before the fleet is requested, so no instance can
exist without something that will end it.

Each step names its forward call, its undo call, and optionally a *find*: how to look up what
an interrupted or timed-out forward call may already have created.  The driver

* journals a step as *started* before its call and *done* (with what it produced) after, so a
  restarted daemon knows exactly where every request stood (:class:`Progress`);
* retries transient AWS failures with capped exponential backoff and full jitter, calling the
  step's *find* before every retry and every resumed attempt -- the fleet step's find is what
  keeps RequestSpotFleet exactly-once on services that do not honour ClientToken;
* stops between steps when asked (daemon shutdown), leaving the request resumable;
* on a permanent failure undoes, in reverse order, every step that started (the failed one too:
  a timed-out call may still have taken effect), and carries on through undo errors so that one
  stuck resource does not keep the others alive.
"""
from __future__ import annotations

import functools
import logging
import random
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

from .aws import AnnexAws, Transient
from .journal import Journal, Progress
from .plan import AnnexPlan

log = logging.getLogger("annexd.steps")

Outputs = dict[str, Any]
StepCall = Callable[[AnnexAws, AnnexPlan, Outputs], Any]


class AnnexExists(Exception):
    """An annex of this name already has a lease rule: creating it again would hijack it."""


class Paused(Exception):
    """The daemon is stopping: the request stopped cleanly between steps and can resume."""

    def __init__(self, step: str):
        super().__init__(step)
        self.step = step


@dataclass(frozen=True)
class Step:
    name: str
    forward: Callable[[AnnexAws, AnnexPlan, Outputs], Outputs]
    undo: Callable[[AnnexAws, AnnexPlan, Outputs], None] | None = None
    find: Callable[[AnnexAws, AnnexPlan, Outputs], Outputs | None] | None = None


def check(aws: AnnexAws, plan: AnnexPlan, _: Outputs) -> Outputs:
    aws.check_function(plan.lease_function_arn)
    if aws.rule_exists(plan.rule_name):
        raise AnnexExists(
            f"annex {plan.annex_id!r} already exists (its lease rule is in place); "
            "choose another -annex-name")
    return {}


class MaterialGone(Exception):
    """The annex's config needs what only the original request carried (never journaled)."""


def upload_config(aws: AnnexAws, plan: AnnexPlan, _: Outputs, *,
                  payload: bytes | None) -> Outputs:
    if payload is None:
        raise MaterialGone(f"annex {plan.annex_id}'s config needs the IDTOKEN or -config-dir "
                           "files of its original request, which are never stored")
    aws.put_config(plan.bucket, plan.config_key, payload, plan.annex_id)
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


def find_fleet(aws: AnnexAws, plan: AnnexPlan, _: Outputs) -> Outputs | None:
    """The fleet an earlier attempt of this very request created, if any (by ClientToken)."""
    found = aws.find_fleets(plan.annex_id, client_token=plan.client_token)
    if len(found) > 1:
        log.error("annex %s: %d fleets carry one ClientToken; keeping %s, cancelling the rest",
                  plan.annex_id, len(found), found[0])
        aws.cancel_fleets(found[1:])
    return {"spot_fleet_request_id": found[0]} if found else None


def cancel_fleet(aws: AnnexAws, plan: AnnexPlan, _: Outputs) -> None:
    """Cancel this request's live fleets, terminating their instances.

    Found by ClientToken rather than by the recorded ID: that also catches a fleet whose ID
    never came back, and never sends an already-removed ID (which moto answers with a 500).
    """
    aws.cancel_fleets(aws.find_fleets(plan.annex_id, client_token=plan.client_token))


def run_instances(aws: AnnexAws, plan: AnnexPlan, _: Outputs) -> Outputs:
    return {"instance_ids": aws.run_instances(plan.on_demand_request)}


def find_instances(aws: AnnexAws, plan: AnnexPlan, _: Outputs) -> Outputs | None:
    """The instances an earlier attempt of this very request started, if any."""
    found = aws.find_instances(plan.annex_id, plan.client_token)
    return {"instance_ids": found} if found else None


def terminate_instances(aws: AnnexAws, plan: AnnexPlan, _: Outputs) -> None:
    aws.terminate_instances(aws.find_instances(plan.annex_id, plan.client_token))


def create_sequence(plan: AnnexPlan, payload: bytes | None) -> tuple[Step, ...]:
    """The create sequence, with the config tarball ``payload`` (None: it can't be rebuilt).

    Lease first; the last step starts the instances: a Spot Fleet, or on-demand instances.
    """
    start = Step("instances", run_instances, terminate_instances, find_instances) \
        if plan.on_demand_request else Step("fleet", request_fleet, cancel_fleet, find_fleet)
    return (
        Step("check", check),
        Step("config", functools.partial(upload_config, payload=payload), delete_config),
        Step("rule", put_rule, delete_rule),
        Step("target", put_target, remove_target),
        start,
    )


@dataclass(frozen=True)
class RetryPolicy:
    """Step-level retries on top of botocore's own: capped exponential backoff, full jitter."""

    attempts: int = 4
    base_seconds: float = 1.0
    max_seconds: float = 30.0

    def delay(self, attempt: int) -> float:
        return random.uniform(0, min(self.max_seconds, self.base_seconds * 2 ** attempt))


class CreateFailed(Exception):
    """A forward step failed; what had been created was undone (see ``undo_errors``)."""

    def __init__(self, step: str, cause: Exception, undo_errors: list[tuple[str, Exception]]):
        super().__init__(step, cause, undo_errors)
        self.step, self.cause, self.undo_errors = step, cause, undo_errors


class Driver:
    """Walks one request's steps, journaling as it goes."""

    def __init__(self, steps: tuple[Step, ...], aws: AnnexAws, plan: AnnexPlan,
                 journal: Journal, request_id: int, *, retry: RetryPolicy = RetryPolicy(),
                 stop: threading.Event | None = None):
        self.steps, self.aws, self.plan = steps, aws, plan
        self.journal, self.request_id = journal, request_id
        self.retry, self.stop = retry, stop or threading.Event()

    def _attempt(self, step: Step, call: StepCall, outputs: Outputs, *, look_first: bool,
                 interruptible: bool) -> Any:
        """Run ``call`` with retries on transient errors, looking up earlier effects first.

        A forward call waiting to retry gives way to a daemon shutdown (Paused); an undo call
        does not: a rollback, once begun, is finished.
        """
        find = step.find if call is step.forward else None
        for attempt in range(self.retry.attempts):
            if find is not None and (look_first or attempt > 0):
                found = find(self.aws, self.plan, outputs)
                if found is not None:
                    return found
            try:
                return call(self.aws, self.plan, outputs)
            except Transient as error:
                if attempt + 1 == self.retry.attempts:
                    raise
                delay = self.retry.delay(attempt)
                log.warning("annex %s: %s; retrying in %.1f s", self.plan.annex_id, error, delay)
                if interruptible and self.stop.wait(delay):
                    raise Paused(step.name) from error
                if not interruptible:
                    time.sleep(delay)
        raise AssertionError("unreachable")

    def forward(self, progress: Progress | None = None) -> Outputs:
        """Run the remaining steps; raises CreateFailed (rolled back) or Paused."""
        progress = progress or Progress()
        outputs = progress.outputs()
        started = [s for s in self.steps if s.name in progress.started | set(progress.done)]
        for step in self.steps:
            if step.name in progress.done:
                continue
            if self.stop.is_set():
                self.journal.set_state(self.request_id, "interrupted")
                raise Paused(step.name)
            resumed = step.name in progress.started
            self.journal.step_event(self.request_id, step.name, "started")
            if step not in started:
                started.append(step)
            try:
                produced = self._attempt(step, step.forward, outputs, look_first=resumed,
                                         interruptible=True)
            except Paused:
                self.journal.set_state(self.request_id, "interrupted")
                raise
            except Exception as error:
                log.warning("annex %s: step %s failed: %s", self.plan.annex_id, step.name, error)
                self.journal.step_event(self.request_id, step.name, "failed", str(error))
                undo_errors = self.rollback(started, outputs, reason=str(error))
                raise CreateFailed(step.name, error, undo_errors) from error
            outputs.update(produced)
            self.journal.step_event(self.request_id, step.name, "done", produced)
            log.info("annex %s: %s done %s", self.plan.annex_id, step.name, produced or "")
        self.journal.set_state(self.request_id, "active", outputs=outputs)
        return outputs

    def rollback(self, started: list[Step], outputs: Outputs,
                 reason: str) -> list[tuple[str, Exception]]:
        """Undo ``started`` steps in reverse; returns the undo failures."""
        self.journal.set_state(self.request_id, "rolling-back", error=reason)
        errors = []
        for step in reversed(started):
            if step.undo is None:
                continue
            self.journal.step_event(self.request_id, step.name, "undo-started")
            try:
                self._attempt(step, step.undo, outputs, look_first=False, interruptible=False)
            except Exception as error:  # keep undoing the rest: never stop a rollback
                log.error("annex %s: undo of %s failed: %s", self.plan.annex_id, step.name,
                          error)
                self.journal.step_event(self.request_id, step.name, "undo-failed", str(error))
                errors.append((step.name, error))
            else:
                self.journal.step_event(self.request_id, step.name, "undone")
        self.journal.set_state(self.request_id,
                               "rollback-incomplete" if errors else "rolled-back")
        return errors

    def rollback_progress(self, progress: Progress, reason: str) -> list[tuple[str, Exception]]:
        """Roll back a journaled request (recovery): every step it ever started."""
        started = [s for s in self.steps if s.name in progress.started | set(progress.done)]
        return self.rollback(started, progress.outputs(), reason)
