"""One look at demand and supply, and the decision it leads to: what ``-plan`` prints, and
what an auto annex would order each cycle.

``dry_plan`` makes the plan a create would (the same launch kinds build the request, the same
START goes into the slots) without anything a real create needs (lease function, bucket,
pool secrets), so a queue can be planned for before any AWS call.
"""
from __future__ import annotations

from typing import Any, Iterable

import classad2

from annexd import launch
from annexd.demand import jobs, supply
from annexd.demand.ads import Source
from annexd.demand.planner import Decision, Limits, choices, decide
from annexd.launch.plan import AnnexPlan, InvalidRequest


def dry_plan(config: Any, *, annex: str, owners: tuple[str, ...], lease_seconds: int,
             now: float) -> AnnexPlan:
    """The plan a create of ``config`` (a Spot Fleet or EC2 Fleet config) would make, as far
    as planning needs it; InvalidRequest when the config is not one."""
    kind = launch.recognise(config)
    try:
        built = kind.build(config, annex_id=annex, client_token=f"{annex}_plan", count=None,
                           instance_tags={})
    except launch.LaunchConfigError as exc:
        raise InvalidRequest(f"invalid {kind.label}: {exc}") from None
    return AnnexPlan(annex_id=annex, annex_type=kind.annex_type, owner_uid=-1, region="",
                     lease_function_arn="", lease_end=int(now) + lease_seconds, bucket="",
                     client_token=f"{annex}_plan", rule_schedule="",
                     launch_request=built.request, owners=owners, created_at=int(now))


def demand(source: Source, plan: AnnexPlan) -> list[jobs.Group]:
    """The annex's demand: its owners' idle jobs routed to it, grouped."""
    return jobs.group(source.read(jobs.constraint(plan.annex_id, plan.owners), jobs.PROJECTION))


def annex_slots(source: Source, plan: AnnexPlan) -> list[classad2.ClassAd]:
    return source.read(supply.slot_constraint(plan.annex_id), supply.PROJECTION)


def assess(plan: AnnexPlan, jobs_source: Source, limits: Limits, *,
           slots_source: Source | None = None,
           instances: Iterable[supply.Instance] = ()) -> Decision:
    """Read demand (and supply, for a running annex) and decide."""
    options, skipped = choices(plan)
    ads = annex_slots(slots_source, plan) if slots_source is not None else []
    decision = decide(demand(jobs_source, plan), options, instances, ads, limits)
    decision.notes += [f"skipped {what}" for what in skipped]
    return decision
