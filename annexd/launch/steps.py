"""The create sequence as data, and the one driver that walks it forward and, on failure, back.

Lease first: the lease (the EventBridge rule and its target, whose Input carries the lease
end) is the first thing created, before the config object (which carries the pool's secret)
and before any instance; a rollback undoes in reverse and removes the lease last.  So at every
point a crash can stop us, whatever exists of the annex is covered by a lease that, once
expired, removes all of it.

Each step names its forward call, its undo call, and optionally a *find*: how to look up what
an interrupted or timed-out forward call may already have created.  The driver

* journals a step as *started* before its call and *done* (with what it produced) after, and
  an undo as *undone*, so a restarted daemon knows exactly where every request stood
  (:class:`Progress`), in either direction.  A step's *done* is committed with the next
  step's *started* (or with the request's next state change): one commit where there were
  two, the same events in the same order, and nothing runs in between -- a crash there
  loses the *done*, and the step, known as started, is looked up or put again on resume, as
  a crash during its call would have it;
* has a new request on disk before its first call that changes anything: the check step only
  looks (GetFunction, DescribeRule), so its *started* -- and with it the accepted request --
  is forced to disk on the journal's own thread while the check's calls run, and the driver
  waits for that before it goes on or records anything else (the fsync is off the create's
  path, never skipped);
* retries transient AWS failures with capped exponential backoff and full jitter, calling the
  step's *find* before every retry and every resumed attempt -- the fleet step's find is what
  keeps RequestSpotFleet exactly-once on services that do not honour ClientToken;
* stops between steps when asked (daemon shutdown), leaving the request resumable;
* on a permanent failure undoes, in reverse order, every step that started (the failed one too:
  a timed-out call may still have taken effect).  An instance step's undo first looks the
  instances up; when that lookup or any other undo fails, the lease is *not* removed: it is
  kept with its end moved to now, so the lease function (or the daemon's backstop) ends
  whatever is left, or appears later.
"""
from __future__ import annotations

import functools
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

from annexd.aws import AnnexAws, Transient
from annex_ec2.backoff import Backoff
from annexd.state.journal import Journal, Progress, StepEvent
from annexd.state.lifecycle import RequestState
from annexd.launch import adjust
from annexd.launch.plan import AnnexPlan

log = logging.getLogger("annexd.launch.steps")

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
    #: Part of the lease: undone only once everything after it is proven gone.
    lease: bool = False
    #: What the user at a terminal is told as the step starts.
    says: str = ""
    #: Only looks: changes nothing in AWS, so its calls may run before the request is on disk.
    looks_only: bool = False


class CannotJoin(Exception):
    """The launch templates would start instances that can never join the pool."""


def check(aws: AnnexAws, plan: AnnexPlan, _: Outputs) -> Outputs:
    """The lease function exists, every launch template names an instance profile and a
    security group (-setup's cannot be filled in there: see annexd.launch.adjust), and no
    other request holds the annex's rule (its description names the request that made it: a
    resumed create may meet its own)."""
    aws.check_function(plan.lease_function_arn)
    for spec in adjust.launch_templates(plan.launch_request):
        missing = adjust.template_gaps(aws.launch_template_data(spec))
        if missing:
            raise CannotJoin(adjust.template_refusal(spec, missing))
    description = aws.rule_description(plan.rule_name)
    if description is not None and not plan.owns_rule(description):
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
    aws.put_config(plan.bucket, plan.config_key, payload, plan.annex_id, plan.lease_end)
    return {"config_url": f"s3://{plan.bucket}/{plan.config_key}"}


def delete_config(aws: AnnexAws, plan: AnnexPlan, _: Outputs) -> None:
    aws.delete_config(plan.bucket, plan.config_key)


def put_rule(aws: AnnexAws, plan: AnnexPlan, _: Outputs) -> Outputs:
    return {"rule_arn": aws.put_rule(plan.rule_name, plan.rule_schedule, plan.annex_id,
                                     plan.client_token, plan.owner_tags)}


def delete_rule(aws: AnnexAws, plan: AnnexPlan, _: Outputs) -> None:
    aws.delete_rule(plan.rule_name)


def put_target(aws: AnnexAws, plan: AnnexPlan, _: Outputs) -> Outputs:
    aws.put_target(plan.rule_name, plan.target_id, plan.lease_function_arn, plan.target_input())
    return {"target_id": plan.target_id}


def remove_target(aws: AnnexAws, plan: AnnexPlan, _: Outputs) -> None:
    aws.remove_target(plan.rule_name, plan.target_id)


def create_sequence(plan: AnnexPlan, payload: bytes | None) -> tuple[Step, ...]:
    """The create sequence, with the config tarball ``payload`` (None: it can't be rebuilt).

    Lease first (rule, then its target), then the config object, and last the instances,
    launched by the annex's kind (a Spot Fleet, an EC2 Fleet, or on-demand instances).  An
    auto annex launches nothing here: the daemon orders its instances as demand comes
    (:mod:`annexd.commands.auto`), each order under the lease this sequence put in force.
    """
    kind = plan.kind
    start = Step(kind.step_name, kind.launch, kind.end, kind.find,
                 says=f"launching: {LAUNCH_CALLS.get(plan.annex_type, kind.step_name)}")
    return _lease_and_config(plan, payload) + (() if plan.auto else (start,))


def _lease_and_config(plan: AnnexPlan, payload: bytes | None) -> tuple[Step, ...]:
    return (
        Step("check", check, says="checking the lease function and the annex name",
             looks_only=True),
        Step("rule", put_rule, delete_rule, lease=True,
             says=f"putting the lease in force: EventBridge rule {plan.rule_name}"),
        Step("target", put_target, remove_target, lease=True,
             says="pointing the lease rule at the lease function"),
        Step("config", functools.partial(upload_config, payload=payload), delete_config,
             says=f"uploading the instances' configuration to s3://{plan.bucket}"),
    )


#: The launch call of each kind of annex, as the progress line names it.
LAUNCH_CALLS = {"spot-fleet": "RequestSpotFleet", "ec2-fleet": "CreateFleet",
                "on-demand": "RunInstances"}


@dataclass(frozen=True)
class RetryPolicy:
    """Step-level retries on top of botocore's own: capped exponential backoff, full jitter."""

    attempts: int = 4
    base_seconds: float = 1.0
    max_seconds: float = 30.0

    def delay(self, attempt: int) -> float:
        return Backoff(self.base_seconds, self.max_seconds).delay(attempt)


class CreateFailed(Exception):
    """A forward step failed; what had been created was undone (see ``undo_errors``).

    ``lease_kept``: something could not be undone, so the lease stays, expiring now.
    """

    def __init__(self, step: str, cause: Exception, undo_errors: list[tuple[str, Exception]],
                 lease_kept: bool = False):
        super().__init__(step, cause, undo_errors)
        self.step, self.cause, self.undo_errors = step, cause, undo_errors
        self.lease_kept = lease_kept


@dataclass
class RollbackOutcome:
    errors: list[tuple[str, Exception]]
    lease_kept: bool


class Driver:
    """Walks one request's steps, journaling as it goes."""

    def __init__(self, steps: tuple[Step, ...], aws: AnnexAws, plan: AnnexPlan,
                 journal: Journal, request_id: int, *, retry: RetryPolicy = RetryPolicy(),
                 stop: threading.Event | None = None,
                 clock: Callable[[], float] = time.time,
                 report: Callable[[str], None] = lambda text: None,
                 on_disk: bool = True):
        self.steps, self.aws, self.plan = steps, aws, plan
        self.journal, self.request_id = journal, request_id
        self.retry, self.stop, self.clock = retry, stop or threading.Event(), clock
        #: Tells the caller (a user at a terminal) each step as it starts.
        self.report = report
        #: False: the request was committed but not forced to disk (Journal.begin with
        #: durable=False); the first step's *started* forces it (see the module).
        self.on_disk = on_disk

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

    def _park(self, step: str, events: list[StepEvent] | None = None) -> Paused:
        self.journal.transition(self.request_id, RequestState.INTERRUPTED, events=events or ())
        return Paused(step)

    def forward(self, progress: Progress | None = None) -> Outputs:
        """Run the remaining steps; raises CreateFailed (rolled back) or Paused.

        The request must be *creating* (a new one, or one just resumed).
        """
        progress = progress or Progress()
        outputs = progress.outputs()
        finished: list[StepEvent] = []  # the last step's *done*, committed with what follows
        for step in self.steps:
            if step.name in progress.done:
                continue
            if self.stop.is_set():
                raise self._park(step.name, finished)
            resumed = step.name in progress.started
            opened = [*finished, (step.name, "started", None)]
            finished = []
            syncing = None
            if not self.on_disk and step.looks_only:  # on disk while the step looks
                syncing = self.journal.record_steps_soon(self.request_id, opened)
            else:
                # The launch (the step with a find) is journaled durably before its call: a
                # resumed request must know to look for what it may have launched.
                self.journal.record_steps(self.request_id, opened,
                                          durable=step.find is not None or not self.on_disk)
            self.on_disk = True  # or, while syncing, before anything else: see below
            progress.started.add(step.name)
            self.report(step.says or step.name)
            try:
                try:
                    produced = self._attempt(step, step.forward, outputs, look_first=resumed,
                                             interruptible=True)
                finally:
                    if syncing is not None:  # on disk before the next step, or the failure
                        syncing.result()
            except Paused:
                raise self._park(step.name) from None
            except Exception as error:
                log.warning("annex %s: step %s failed: %s", self.plan.annex_id, step.name, error)
                self.journal.step_event(self.request_id, step.name, "failed", str(error))
                if not any(s.undo for s in self.steps if s.name in progress.touched()):
                    # Nothing was created: the request was refused, not rolled back.
                    self.journal.transition(self.request_id, RequestState.REFUSED,
                                            error=str(error))
                    raise CreateFailed(step.name, error, []) from error
                outcome = self.rollback(progress, reason=str(error))
                raise CreateFailed(step.name, error, outcome.errors,
                                   outcome.lease_kept) from error
            outputs.update(produced)
            progress.done[step.name] = produced
            finished = [(step.name, "done", produced)]
            log.info("annex %s: %s done %s", self.plan.annex_id, step.name, produced or "")
        self.journal.transition(self.request_id, RequestState.ACTIVE, outputs=outputs,
                                events=finished)
        return outputs

    def rollback(self, progress: Progress, reason: str, *,
                 resumed: bool = False) -> RollbackOutcome:
        """Undo, in reverse, every step the request touched and has not undone yet.

        ``resumed``: the request is already *rolling-back* (a parked rollback, resumed).
        The lease steps are undone only if everything after them was; otherwise the lease is
        kept with its end moved to now, and the request ends *rollback-incomplete*.
        """
        if not resumed:
            self.journal.transition(self.request_id, RequestState.ROLLING_BACK, error=reason)
        outputs = progress.outputs()
        errors: list[tuple[str, Exception]] = []
        kept = False
        for step in reversed([s for s in self.steps if s.name in progress.touched()]):
            if step.undo is None:
                continue
            if step.lease and errors:
                kept = True  # something may be left: the lease must stay to end it
                break
            self.journal.step_event(self.request_id, step.name, "undo-started")
            self.report(f"undoing: {step.says or step.name}")
            try:
                self._attempt(step, step.undo, outputs, look_first=False, interruptible=False)
            except Exception as error:  # keep undoing the rest: never stop a rollback
                log.error("annex %s: undo of %s failed: %s", self.plan.annex_id, step.name,
                          error)
                self.journal.step_event(self.request_id, step.name, "undo-failed", str(error))
                errors.append((step.name, error))
            else:
                self.journal.step_event(self.request_id, step.name, "undone")
                progress.undone.add(step.name)
        if not errors:
            self.journal.transition(self.request_id, RequestState.ROLLED_BACK)
            return RollbackOutcome(errors, False)
        lease_end = self._expire_lease(progress) if kept else None
        self.journal.transition(self.request_id, RequestState.ROLLBACK_INCOMPLETE,
                                lease_end=lease_end)
        return RollbackOutcome(errors, kept)

    def _expire_lease(self, progress: Progress) -> int | None:
        """Move the kept lease's end to now, so its next tick ends what is left."""
        now = int(self.clock())
        if "target" not in progress.done:
            return now
        try:  # one call; botocore's standard retries cover the transient failures
            self.aws.put_target(self.plan.rule_name, self.plan.target_id,
                                self.plan.lease_function_arn,
                                self.plan.target_input(lease_end=now))
        except Exception as error:
            log.error("annex %s: could not move the lease end to now (%s); it still ends at %d",
                      self.plan.annex_id, error, self.plan.lease_end)
            return None
        log.warning("annex %s: rollback incomplete; its lease is kept and now ends at %d so "
                    "that the lease function removes what is left", self.plan.annex_id, now)
        return now
