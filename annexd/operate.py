"""Steering annexes that exist: status, lease changes, off now, and the daemon's lease backstop.

Who owns an annex comes from the journal: the one live row holding its (region, name), with the
uid the kernel named when it was created.  Finished rows never grant access.  What AWS holds
for it comes from AWS, by its tag and its rule.  A lease change rewrites only
``LeaseExpiration`` in the rule target's Input and keeps every other field (the original
``condor_annex`` lost the bucket name there), and never creates a rule: an annex without one
is an error, not a new orphan.  It first moves the lease end the instances read (their
config object's metadata), so no instance ever shuts down before the lease end in force.
"""
from __future__ import annotations

import json
import logging
import pwd
import time
from dataclasses import dataclass
from typing import Any, Callable

from . import lifecycle, renew
from .aws import AnnexAws, AwsError
from .journal import Journal, StateChanged
from .lifecycle import RequestState
from .plan import AnnexPlan

log = logging.getLogger("annexd.operate")

AwsFor = Callable[[str, "dict[str, str] | None"], AnnexAws]


class OperationError(Exception):
    """The operation cannot be done; ``kind`` is the protocol error kind."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class Caller:
    uid: int
    is_admin: bool

    def sees(self, row: dict[str, Any]) -> bool:
        return self.is_admin or row["owner_uid"] == self.uid


def user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


class Operations:
    def __init__(self, journal: Journal, aws_for: AwsFor, clock: Callable[[], float] = time.time,
                 may_act_alone: Callable[[dict[str, Any]], bool] = lambda row: True,
                 mint: renew.Minter | None = None):
        self.journal, self.aws_for, self.clock = journal, aws_for, clock
        #: Whether the daemon's own identity may end this row's annex (the backstop).
        self.may_act_alone = may_act_alone
        #: Mints an annex's token for a new lease end (see annexd.renew).
        self.mint = mint

    def _live(self, who: Caller, name: str, region: str | None) -> dict[str, Any] | None:
        """The caller's one live annex of this name (in ``region``, if given)."""
        rows = [row for row in self.journal.live_rows(annex_id=name, region=region)
                if who.sees(row)]
        if len(rows) > 1:
            regions = ", ".join(row["region"] for row in rows)
            raise OperationError("invalid-request", f"you have annexes named {name!r} in "
                                 f"{regions}; say which with -aws-region")
        return rows[0] if rows else None

    def _unknown(self, name: str) -> OperationError:
        return OperationError("invalid-request", f"you have no annex named {name!r}")

    def _reports(self, rows: list[dict[str, Any]], credentials: dict[str, str] | None,
                 ask_aws: bool = True) -> list[dict[str, Any]]:
        """What each annex holds now.  The lease end is the journal's, which the daemon keeps
        in step with the rule (it moves both, and the backstop re-reads AWS's at expiry);
        AWS is asked only for the instances: one tag-filtered DescribeInstances per region and
        tag key for all the annexes, so -status costs the same for 1 annex and for 100."""
        plans = [AnnexPlan.from_record(row["plan"]) for row in rows]
        counts: dict[tuple[str, str], dict[str, int]] = {}
        if ask_aws:
            for region in sorted({plan.region for plan in plans}):
                wanted: dict[str, dict[str, str]] = {}
                for plan, row in zip(plans, rows):
                    tag = plan.kind.instance_tag(plan, json.loads(row.get("outputs") or "{}"))
                    if plan.region == region and tag is not None:
                        wanted.setdefault(tag[0], {})[tag[1]] = plan.annex_id
                if wanted:
                    found = self.aws_for(region, credentials).count_instances(wanted)
                    counts.update(((region, annex), states) for annex, states in found.items())
        now = self.clock()
        return [{
            "name": plan.annex_id,
            "owner": user_name(row["owner_uid"]),
            "owner_uid": row["owner_uid"],
            "type": plan.annex_type,
            "region": plan.region,
            "state": row["state"],
            "lease_end": int(row["lease_end"]),
            "lease_enforced": RequestState(row["state"]) in lifecycle.LIVE and
            row["lease_end"] > now,
            "instances": counts.get((plan.region, plan.annex_id), {}),
            **({"token_id": plan.token_id} if plan.token_id else {}),
        } for plan, row in zip(plans, rows)]

    def status(self, who: Caller, name: str | None, region: str | None,
               credentials: dict[str, str] | None) -> list[dict[str, Any]]:
        """One entry per live annex the caller may see, with what AWS holds for it now.

        Asked by name, a caller with no live annex of that name sees their own last finished
        one, from the journal only.
        """
        if name is None:
            rows = self.journal.live_rows(owner_uid=None if who.is_admin else who.uid,
                                          region=region)
            return self._reports(rows, credentials)
        row = self._live(who, name, region)
        if row is not None:
            return self._reports([row], credentials)
        history = self.journal.last_final(who.uid, name, region)
        if history is None:
            raise self._unknown(name)
        return self._reports([history], credentials, ask_aws=False)

    def off(self, who: Caller, name: str, region: str | None,
            credentials: dict[str, str] | None) -> dict[str, Any]:
        """End the annex now, exactly as its lease would; safe to repeat."""
        row = self._live(who, name, region)
        if row is None:
            if self.journal.last_final(who.uid, name, region) is None:
                raise self._unknown(name)
            return {"AnnexID": name, "already_ended": True}
        if RequestState(row["state"]) in lifecycle.DRIVEN:
            raise OperationError("conflict", f"annex {name!r} is being created or rolled back "
                                 "right now; try again when that is done")
        plan = AnnexPlan.from_record(row["plan"])
        summary = self.aws_for(plan.region, credentials).teardown(plan.annex_id, plan.bucket,
                                                               plan.annex_type)
        self._end(row)
        log.info("annex %s in %s turned off by uid %d: %s", plan.annex_id, plan.region,
                 who.uid, summary)
        return summary

    def extend(self, who: Caller, name: str, region: str | None, lease_duration: int,
               credentials: dict[str, str] | None,
               max_lease: int | None = None) -> dict[str, Any]:
        """Move the lease end to now + ``lease_duration``, keeping the rest of the Input.

        The instances' copy (the config object's metadata) moves first, then the lease's.
        """
        if max_lease is not None and lease_duration > max_lease:
            raise OperationError("invalid-request", f"a lease of {lease_duration} s exceeds "
                                 f"the limit of {max_lease} s (ANNEX_MAX_LEASE_DURATION)")
        row = self._live(who, name, region)
        if row is None:
            raise self._unknown(name)
        if row["state"] != RequestState.ACTIVE:
            raise OperationError("conflict", f"annex {name!r} is {row['state']}, not active; "
                                 "only an active annex's lease can change")
        plan = AnnexPlan.from_record(row["plan"])
        aws = self.aws_for(plan.region, credentials)
        target = aws.lease_target(plan.annex_id)
        if target is None:
            raise OperationError("conflict", f"annex {name!r} has no lease rule any more (it "
                                 "has ended); start a new one instead")
        lease_end = int(self.clock()) + lease_duration
        lease_input = dict(target["Input"], LeaseExpiration=lease_end)
        renew.move_config_lease_end(aws, plan, lease_end, self.mint)
        aws.put_target(plan.rule_name, plan.target_id, target["Arn"],
                       json.dumps(lease_input, sort_keys=True))
        self.journal.set_lease_end(row["id"], lease_end)
        log.info("annex %s: uid %d moved its lease end to %d", name, who.uid, lease_end)
        return {"annex_id": name, "lease_end": lease_end}

    def enforce_expired(self) -> list[str]:
        """The backstop: end every annex whose lease is over, with the daemon's own identity.

        Only annexes the daemon's identity may act on (made with it, or in its account).
        The lease function should have done it; if resources were still there, say so loudly.
        """
        ended = []
        for row in self.journal.expired(self.clock()):
            if not self.may_act_alone(row):
                continue
            plan = AnnexPlan.from_record(row["plan"])
            try:
                aws = self.aws_for(plan.region, None)
                target = aws.lease_target(plan.annex_id)
                extended = target and target["Input"].get("LeaseExpiration", 0) > self.clock()
                if extended:  # moved by someone else: believe AWS
                    self.journal.set_lease_end(row["id"], target["Input"]["LeaseExpiration"])
                    continue
                summary = aws.teardown(plan.annex_id, plan.bucket, plan.annex_type)
            except AwsError as error:
                log.error("LEASE BACKSTOP: cannot check expired annex %s: %s",
                          plan.annex_id, error)
                continue
            if summary["cancelled_fleets"] or summary["terminated_instances"] or \
                    summary["deleted_rule"]:
                log.error("LEASE BACKSTOP: annex %s outlived its lease (ended %d); the lease "
                          "function did not end it. Ended it now: %s",
                          plan.annex_id, row["lease_end"], summary)
            if self._end(row):
                ended.append(plan.annex_id)
        return ended

    def _end(self, row: dict[str, Any]) -> bool:
        """Mark the annex ended; False if another request or the backstop changed it first
        (e.g. both ended it at once, or its owner resumed it)."""
        try:
            self.journal.transition(row["id"], RequestState.ENDED, expect=lifecycle.SETTLED)
        except StateChanged as changed:
            log.info("annex %s: now %s; not marking it ended", row["annex_id"], changed.state)
            return False
        return True
