"""Steering annexes that exist: status, lease changes, off now, and the daemon's lease backstop.

Who owns an annex comes from the journal (the uid the kernel named when it was created); what
AWS holds for it comes from AWS, by its tag and its rule.  A lease change rewrites only
``LeaseExpiration`` in the rule target's Input and keeps every other field (the original
``condor_annex`` lost the bucket name there), and never creates a rule: an annex without one
is an error, not a new orphan.
"""
from __future__ import annotations

import json
import logging
import pwd
import time
from typing import Any, Callable

from .aws import AnnexAws, AwsError
from .journal import Journal
from .plan import AnnexPlan

log = logging.getLogger("annexd.operate")

AwsFor = Callable[[str, "dict[str, str] | None"], AnnexAws]


class OperationError(Exception):
    """The operation cannot be done; ``kind`` is the protocol error kind."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


def user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


class Operations:
    def __init__(self, journal: Journal, aws_for: AwsFor, clock: Callable[[], float] = time.time):
        self.journal, self.aws_for, self.clock = journal, aws_for, clock

    def _row(self, name: str, uid: int, is_admin: bool, live: bool = True) -> dict[str, Any]:
        rows = self.journal.live if live else self.journal.latest
        for row in rows(None if is_admin else uid):
            if row["annex_id"] == name:
                return row
        raise OperationError("invalid-request", f"you have no annex named {name!r}")

    def status(self, uid: int, is_admin: bool, name: str | None,
               credentials: dict[str, str] | None) -> list[dict[str, Any]]:
        """One entry per live annex the caller may see, with what AWS holds for it now."""
        rows = [self._row(name, uid, is_admin, live=False)] if name else \
            self.journal.live(None if is_admin else uid)
        report = []
        for row in rows:
            plan = AnnexPlan.from_record(row["plan"])
            aws = self.aws_for(plan.region, credentials)
            target = aws.lease_target(plan.annex_id)
            lease_end = target["Input"].get("LeaseExpiration", row["lease_end"]) if target \
                else row["lease_end"]
            report.append({
                "name": plan.annex_id,
                "owner": user_name(row["owner_uid"]),
                "owner_uid": row["owner_uid"],
                "type": plan.annex_type,
                "region": plan.region,
                "state": row["state"],
                "lease_end": int(lease_end),
                "lease_enforced": target is not None,
                "instances": aws.instance_states(plan.annex_id),
            })
        return report

    def off(self, uid: int, is_admin: bool, name: str,
            credentials: dict[str, str] | None) -> dict[str, Any]:
        """End the annex now, exactly as its lease would; safe to repeat."""
        row = self._row(name, uid, is_admin, live=False)
        plan = AnnexPlan.from_record(row["plan"])
        summary = self.aws_for(plan.region, credentials).teardown(plan.annex_id, plan.bucket)
        self.journal.set_state(row["id"], "ended")
        log.info("annex %s turned off by uid %d: %s", plan.annex_id, uid, summary)
        return summary

    def extend(self, uid: int, is_admin: bool, name: str, lease_duration: int,
               credentials: dict[str, str] | None,
               max_lease: int | None = None) -> dict[str, Any]:
        """Move the lease end to now + ``lease_duration``, keeping the rest of the Input."""
        if max_lease is not None and lease_duration > max_lease:
            raise OperationError("invalid-request", f"a lease of {lease_duration} s exceeds "
                                 f"the limit of {max_lease} s (ANNEX_MAX_LEASE_DURATION)")
        row = self._row(name, uid, is_admin)
        plan = AnnexPlan.from_record(row["plan"])
        aws = self.aws_for(plan.region, credentials)
        target = aws.lease_target(plan.annex_id)
        if target is None:
            raise OperationError("conflict", f"annex {name!r} has no lease rule any more (it "
                                 "has ended); start a new one instead")
        lease_input = dict(target["Input"], LeaseExpiration=int(self.clock()) + lease_duration)
        aws.put_target(plan.rule_name, plan.target_id, target["Arn"],
                       json.dumps(lease_input, sort_keys=True))
        self.journal.set_lease_end(row["id"], lease_input["LeaseExpiration"])
        log.info("annex %s: uid %d moved its lease end to %d", name, uid,
                 lease_input["LeaseExpiration"])
        return {"annex_id": name, "lease_end": lease_input["LeaseExpiration"]}

    def enforce_expired(self) -> list[str]:
        """The backstop: end every annex whose lease is over, with the daemon's own identity.

        The lease function should have done it; if resources were still there, say so loudly.
        """
        ended = []
        for row in self.journal.expired(self.clock()):
            plan = AnnexPlan.from_record(row["plan"])
            try:
                aws = self.aws_for(plan.region, None)
                target = aws.lease_target(plan.annex_id)
                extended = target and target["Input"].get("LeaseExpiration", 0) > self.clock()
                if extended:  # moved by someone else: believe AWS
                    self.journal.set_lease_end(row["id"], target["Input"]["LeaseExpiration"])
                    continue
                summary = aws.teardown(plan.annex_id, plan.bucket)
            except AwsError as error:
                log.error("LEASE BACKSTOP: cannot check expired annex %s: %s",
                          plan.annex_id, error)
                continue
            if summary["cancelled_fleets"] or summary["terminated_instances"] or \
                    summary["deleted_rule"]:
                log.error("LEASE BACKSTOP: annex %s outlived its lease (ended %d); the lease "
                          "function did not end it. Ended it now: %s",
                          plan.annex_id, row["lease_end"], summary)
            self.journal.set_state(row["id"], "ended")
            ended.append(plan.annex_id)
        return ended
