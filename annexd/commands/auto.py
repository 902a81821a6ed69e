"""Auto annexes (``condor_annex -auto``): every ``ANNEX_DEMAND_INTERVAL`` seconds, read each
one's demand and supply, keep its lease while demand lasts, and order what the planner
(:mod:`annexd.demand.planner`) decides.

An auto annex is paid by the daemon's own AWS identity (the daemon never keeps a user's keys,
and it orders for as long as the annex lives).  Its create put the lease (rule, target) and
the config object in place and launched nothing; its plan's launch request is the template
of every order, for up to ``-max-instances``, which is what the site's caps count it at
(``ANNEX_MAX_INSTANCES``, ``ANNEX_MAX_COST`` and the per-user caps, at create and at every
lease change), so no order can take the annex past them.

One cycle, in order:

1. an order a crash left *sent* (journaled, its outcome not) is finished first: what it
   launched is looked up by its order tag, and if nothing is found it is sent again with the
   same ClientToken (EC2 starts nothing twice for one token);
2. the annex's pending and running instances are listed (by the annex and request tags, as
   the lease function finds them), and what each may have cost so far is journaled;
3. demand (idle jobs routed to it, and its claimed slots) extends the lease, through the one
   lease-change path (:func:`annexd.commands.lease.change`: caps, claim, rule then config),
   to ``ANNEX_AUTO_LINGER`` (plus the lease function's minute) from now whenever less is
   left; with no demand it is left to run out;
4. the planner decides within ``-max-instances``, ``-max-cost`` and the site's caps (the
   owner's other annexes counted), and each order is claimed (``active -> extending``),
   journaled and forced to disk, sent, settled, and released.

Shrinking is the instances' own: one left unclaimed past its idle time shuts down (and, with
``InstanceInitiatedShutdownBehavior=terminate``, is gone); the daemon never terminates an
instance, so never one with a claimed slot.  A kill -9 anywhere leaves instances tagged for
the lease, a lease within the caps, and at most one order to finish.

**Orders by kind.**  An on-demand annex's order is one RunInstances.  A Spot Fleet annex's
order is one *one-time* Spot Fleet of its own (``Type=request``,
:func:`annexd.launch.spotfleet.order_config`): the config's launch specifications of the one
instance type the planner chose, for exactly ``count x WeightedCapacity`` units (whole-number
weights only, so AWS launches exactly ``count`` instances), its ClientToken the order's, the
order tag on the fleet and on every instance, and a ``ValidUntil`` a few minutes on
(``ORDER_WINDOW_SECONDS``, ``TerminateInstancesWithExpiration=false``).  The other design, one
``maintain`` fleet whose TargetCapacity the daemon raises (ModifySpotFleetRequest) and lowers
as instances leave, was not taken, because for money and crash recovery it is worse:

- a maintain fleet *replaces* every instance that leaves -- one shut down idle, one
  interrupted -- unless the daemon lowered the target first; between the instance's own
  shutdown and the daemon's next look (or for as long as the daemon is down) AWS launches
  idle instances that shut down and are replaced again, until the lease ends.  A one-time
  fleet never replaces anything: an instance that leaves is gone whether or not the daemon is
  alive, and there is no target to lower (``ExcessCapacityTerminationPolicy`` never comes
  into it, so no call of ours can terminate an instance with a claimed slot);
- with several types and weights, a maintain fleet's target is in units and AWS picks the
  types: the instance count and the price per hour follow from AWS's choice, not the
  planner's.  An order of one type and weight is exactly the instances the caps and the
  money rule counted (``-max-instances``, ``ANNEX_MAX_INSTANCES`` count instances, dollars
  are per instance: the Spot maximum times the weight);
- RequestSpotFleet takes a ClientToken, so a journaled order sent again after a crash is
  one fleet in AWS; ModifySpotFleetRequest takes none, and a target computed from what was
  listed before the crash may be stale after it.  (moto honours neither the token nor
  ``Type``, and its ModifySpotFleetRequest lowers a target only with the termination policy
  left out and tracks capacity by type and subnet: the order tag is how a crash's order is
  found here, and nothing relies on Modify.)

A one-time fleet AWS cannot fill at once (no capacity in its pools) stays open until its
``ValidUntil``: such an order is settled ``open``, and until every instance it ordered has
been seen or the window is over, what it may still launch counts as booting supply (so it is
not ordered again) and as instances for the caps and the money rule
(:meth:`annexd.state.journal.Journal.running_hourly`).  A crash between the journal and the
call is finished with the same config (its ``ValidUntil`` is the journaled order's), or, too
close to the window's end to be worth it, settled failed for the next cycle to decide again.
Every order's fleet carries the annex and request tags, so the lease function and ``-off``
end them all (cancel, terminating their instances), and their instances carry them too.

An EC2 Fleet annex's order is one ``instant`` EC2 Fleet of its own
(:func:`annexd.launch.ec2fleet.order_request`): the config's overrides of the one type the
planner chose, ``count x WeightedCapacity`` units, its ClientToken the order's, the order tag
on the fleet and on every instance.  ``instant`` because it is the one-time fleet of
CreateFleet: AWS launches what it can during the call and answers with the instance IDs (so
the order is settled ``done`` at once, nothing stays open, nothing counts as coming), and an
instant fleet never launches or replaces anything afterwards -- every reason above against a
``maintain`` fleet holds for EC2 Fleet too, and a ``request`` fleet would stay open like a
Spot Fleet without saying which instances it launched.  An instant fleet tags its instances
itself, so the lease function and ``-off`` find them by the annex tag, and end the fleet too.

An EC2 Fleet launches only from launch templates, and a template chooses its own instance
profile, key pair and user data, which an annex the daemon pays for must take from the site
(issue 23, requirement 4): every such fleet launches from the site's template
(``ANNEX_DEFAULT_LAUNCH_TEMPLATE``, its ``$Default`` version; a config naming another is
refused, naming the knob), and the config's overrides may say only where, which type and
how much (:data:`annexd.launch.ec2fleet.AUTO_OVERRIDES`).  The daemon policy holds the
daemon's identity to it too: it may launch from templates the administrator tagged
``htcondor:AnnexSiteTemplate=true`` only (:mod:`localaws.daemonpolicy`).
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
from dataclasses import dataclass
from typing import Any

import classad2
from annexd_lambda.lease import CLIENT_TOKEN_TAG

from annexd import launch
from annexd.aws import AnnexAws, AwsError, Transient
from annexd.commands import lease
from annexd.commands.context import Context, OperationError, claim
from annexd.commands.create import holding
from annexd.demand import ads, condor, cycle, supply
from annexd.demand.ads import DemandError, Source
from annexd.demand.budget import GRACE_SECONDS, Budget
from annexd.demand.planner import Limits, choices, decide
from annexd.launch import ec2fleet, ondemand, spotfleet
from annexd.launch.base import ORDER_TAG, LaunchConfigError, Option
from annexd.launch.plan import AnnexPlan
from annexd.money.costs import instance_price
from annexd.state.lifecycle import RequestState

log = logging.getLogger("annexd.auto")

CLAIMED = "Claimed"


@dataclass(frozen=True)
class Sources:
    jobs: Source
    slots: Source


def sources(ctx: Context) -> Sources:
    """``ANNEX_DEMAND_JOBS`` and ``ANNEX_DEMAND_SLOTS``; DemandError when one is malformed."""
    settings = ctx.settings
    return Sources(ads.source(settings.demand_jobs, condor.local_schedd, "ANNEX_DEMAND_JOBS"),
                   ads.source(settings.demand_slots, condor.pool_collector,
                              "ANNEX_DEMAND_SLOTS"))


def order_token(request_token: str, number: int) -> str:
    """Order ``number``'s ClientToken: the same for every attempt of it (EC2's limit is 64)."""
    digest = hashlib.sha256(f"{request_token}/{number}".encode()).hexdigest()[:48]
    return f"auto{number}-{digest}"


def steer_all(ctx: Context) -> list[str]:
    """One cycle for every active auto annex; the names of those it looked at.  Nothing
    here may stop the loop: an annex's failure is its report's."""
    try:
        found: Sources | None = sources(ctx)
        unreadable = ""
    except DemandError as error:
        found, unreadable = None, str(error)
    seen = []
    for row in ctx.until_stopping(ctx.journal.live_rows()):
        plan = AnnexPlan.from_record(row["plan"])
        if not plan.auto or row["state"] != RequestState.ACTIVE:
            continue
        seen.append(plan.annex_id)
        try:
            if found is None:
                raise DemandError(unreadable)
            steer(ctx, row, plan, found)
        except (AwsError, DemandError, OperationError) as error:
            _trouble(ctx, row, str(error))
        except Exception as error:  # the loop must go on; say it loudly
            log.exception("auto annex %s: cycle failed", plan.annex_id)
            _trouble(ctx, row, f"internal error: {error}")
    return seen


def _trouble(ctx: Context, row: dict[str, Any], error: str) -> None:
    """A cycle that could not finish: nothing more is ordered or extended; -status says why."""
    log.warning("auto annex %s: %s", row["annex_id"], error)
    known = ctx.journal.auto_status(row["id"]) or {"last_demand": None, "report": {}}
    ctx.journal.auto_report(row["id"], known["last_demand"],
                            {**known["report"], "error": error}, ctx.clock())


def steer(ctx: Context, row: dict[str, Any], plan: AnnexPlan, found: Sources) -> dict[str, Any]:
    """One cycle of one auto annex (see the module); its report, as -status shows it."""
    aws = ctx.aws(plan.region, None)
    row = _finish_sent(ctx, aws, row, plan)
    now = ctx.clock()
    options, skipped = choices(plan)
    listed = aws.annex_instances(plan.annex_id, plan.client_token)
    coming = _coming(ctx, row, listed, now)
    ctx.journal.instances_seen(row["id"], {i["id"]: _price(options, i["type"]) for i in listed},
                               now, since=plan.created_at)
    groups = cycle.demand(found.jobs, plan)
    slot_ads = cycle.annex_slots(found.slots, plan)
    jobs = sum(group.count for group in groups)
    claimed = sum(1 for ad in slot_ads if is_claimed_slot(ad))
    known = ctx.journal.auto_status(row["id"])
    last_demand = now if jobs or claimed else (known or {}).get("last_demand")
    lease_said, row = _keep_lease(ctx, row, plan, last_demand, now)
    spent = ctx.journal.spent(row["id"], now)
    decision = decide(groups, options,
                      [supply.Instance(i["id"], i["type"]) for i in listed] + coming,
                      slot_ads, _limits(ctx, row, plan, now, spent))
    decision.notes += [f"skipped {what}" for what in skipped]
    why = "; ".join(decision.lines())
    ordered: list[dict[str, Any]] = []
    order_error = ""
    if decision.orders and row["lease_end"] > now:
        for instance_type, count in decision.orders.items():
            try:
                ordered.append(_order(ctx, aws, row, plan, instance_type, count,
                                      _price(options, instance_type), why, now))
            except (AwsError, OperationError) as error:
                order_error = str(error)
                break
            row = ctx.journal.request(row["id"])
    report = {"instances": len(listed), "coming": len(coming), "jobs": jobs,
              "claimed_slots": claimed,
              "why": decision.lines(), "lease": lease_said, "spent": spent,
              "ordered": [{k: o[k] for k in ("instance_type", "count", "instance_ids")}
                          for o in ordered]}
    if order_error:
        report["error"] = order_error
    ctx.journal.auto_report(row["id"], last_demand, report, now)
    return report


def _price(options: list[Any], instance_type: str) -> float | None:
    for choice in options:
        if choice.instance_type == instance_type:
            return choice.hourly
    return instance_price(Option(instance_type), True)


def _limits(ctx: Context, row: dict[str, Any], plan: AnnexPlan, now: float,
            spent: float | None) -> Limits:
    caps = ctx.settings.caps
    others = holding(ctx, row["owner_uid"], besides=row["id"])
    return Limits(
        now=now, lease_end=row["lease_end"],
        max_instances=plan.most_instances,
        site_max_instances=caps.max_instances, others_instances=others.instances,
        budget=Budget(annex_cap=plan.max_cost, site_cap=caps.max_cost,
                      user_cap=caps.max_cost_per_user,
                      others=math.inf if others.cost is None else others.cost,
                      spent=math.inf if spent is None else spent))


def _keep_lease(ctx: Context, row: dict[str, Any], plan: AnnexPlan,
                last_demand: float | None, now: float) -> tuple[str, dict[str, Any]]:
    """Extend the lease while there is demand; (what -status says of it, the row now)."""
    linger = ctx.settings.auto_linger
    if last_demand != now:
        since = "ever" if last_demand is None else f"{int(now - last_demand)} s"
        return f"no demand for {since}: the lease ends at {row['lease_end']}", row
    if row["lease_end"] <= now:  # a lease over is over: the lease function ends the annex
        return f"the lease ended at {row['lease_end']}", row
    if row["lease_end"] >= now + linger:
        return f"demand now; the lease ends at {row['lease_end']}", row
    try:
        lease.change(ctx, row, int(now + linger + GRACE_SECONDS), None)
    except OperationError as refused:
        return f"demand now, but the lease stays at {row['lease_end']}: {refused}", \
            ctx.journal.request(row["id"])
    row = ctx.journal.request(row["id"])
    log.info("auto annex %s: demand lasts; its lease now ends at %d", plan.annex_id,
             row["lease_end"])
    return f"demand now; the lease was extended to {row['lease_end']}", row


def _order(ctx: Context, aws: AnnexAws, row: dict[str, Any], plan: AnnexPlan,
           instance_type: str, count: int, hourly: float | None, why: str,
           now: float) -> dict[str, Any]:
    """Claim the annex, journal the order (on disk), send it, settle it, release."""
    number = len(ctx.journal.orders(row["id"])) + 1
    order = {"number": number, "client_token": order_token(plan.client_token, number),
             "instance_type": instance_type, "count": count, "hourly": hourly, "why": why,
             "at": now}
    claim(ctx.journal, row, RequestState.EXTENDING)
    try:
        # Only under a lease AWS holds (its lease function ends what the order starts).
        lease.require_in_force(ctx, row, plan, None, 0)
        ctx.journal.order_sent(row["id"], order)
        order["instance_ids"] = _send(ctx, aws, row, plan, order)
    finally:
        ctx.journal.transition(row["id"], RequestState.ACTIVE, expect={RequestState.EXTENDING})
    log.info("auto annex %s: order %d: %d x %s -> %s", plan.annex_id, number, count,
             instance_type, order["instance_ids"])
    return order


def _send(ctx: Context, aws: AnnexAws, row: dict[str, Any], plan: AnnexPlan,
          order: dict[str, Any]) -> list[str]:
    """The launch call of a journaled order, settled in the journal: RunInstances, CreateFleet
    of an instant fleet for an EC2 Fleet annex, or, for a Spot Fleet annex, RequestSpotFleet
    of a one-time fleet (settled ``open``: AWS fills it
    later, and the next cycles see its instances, :func:`_coming`).  A refusal settles it as
    failed (EC2 started nothing); a call that may have taken effect (a timeout, a throttle)
    leaves it sent, for the next cycle to look for and finish."""
    state, ids = "done", []
    try:
        if plan.annex_type == launch.SPOT_FLEET.annex_type:
            aws.request_spot_fleet(_fleet_order(plan, order))
            state = "open"
        elif plan.annex_type == launch.EC2_FLEET.annex_type:
            ids = _instant_fleet(aws, plan, order)
        else:
            params = ondemand.order_request(plan.launch_request, order["instance_type"],
                                            order["count"], order["client_token"])
            ids = aws.run_instances(ondemand.as_sent(params))
    except Transient:
        raise
    except AwsError:
        ctx.journal.order_settled(row["id"], order["number"], "failed", [], order["hourly"],
                                  order["at"])
        raise
    ctx.journal.order_settled(row["id"], order["number"], state, ids, order["hourly"],
                              order["at"])
    return ids


def _fleet_order(plan: AnnexPlan, order: dict[str, Any]) -> dict[str, Any]:
    """A journaled order's RequestSpotFleet config: the same on every attempt (made from the
    plan and the journaled order only), as one ClientToken requires."""
    weights = {choice.instance_type: choice.weight for choice in choices(plan)[0]}
    budgeted = order["hourly"]

    def affordable(option: Option) -> bool:  # no spec dearer than the order's budgeted price
        price = instance_price(option, False)
        return budgeted is None or (price is not None and price <= budgeted + 1e-9)
    try:
        return spotfleet.order_config(
            plan.launch_request, order["instance_type"],
            weights.get(order["instance_type"], 1.0), order["count"], order["client_token"],
            order["at"] + spotfleet.ORDER_WINDOW_SECONDS, affordable)
    except LaunchConfigError as error:  # cannot happen: the planner chose from the plan
        raise OperationError("invalid-request", f"order {order['number']}: {error}") from None


def _instant_fleet(aws: AnnexAws, plan: AnnexPlan, order: dict[str, Any]) -> list[str]:
    """CreateFleet of a journaled order's instant fleet (the same request on every attempt,
    as one ClientToken requires); the instances it launched.  What AWS could not launch is
    not launched later (an instant fleet never is), so the order is done either way; the
    next cycle decides again on what is then missing."""
    weights = {choice.instance_type: choice.weight for choice in choices(plan)[0]}
    try:
        request = ec2fleet.order_request(plan.launch_request, order["instance_type"],
                                         weights.get(order["instance_type"], 1.0),
                                         order["count"], order["client_token"])
    except LaunchConfigError as error:  # cannot happen: the planner chose from the plan
        raise OperationError("invalid-request", f"order {order['number']}: {error}") from None
    reply = aws.create_fleet(request)
    ids = [i for group in reply.get("Instances", []) for i in group.get("InstanceIds", [])]
    if len(ids) < order["count"]:
        log.warning("auto annex %s: order %d launched %d of %d: %s", plan.annex_id,
                    order["number"], len(ids), order["count"],
                    "; ".join(f"{e.get('ErrorCode')}: {e.get('ErrorMessage')}"
                              for e in reply.get("Errors", [])[:3]) or "no reason given")
    return ids


def _order_instances(aws: AnnexAws, plan: AnnexPlan, order: dict[str, Any]) -> list[str]:
    return [i["id"] for i in aws.annex_instances(plan.annex_id, plan.client_token,
                                                 {ORDER_TAG: order["client_token"]})]


def _coming(ctx: Context, row: dict[str, Any], listed: list[dict[str, Any]],
            now: float) -> list[supply.Instance]:
    """What open fleet orders may still launch: their instances not seen yet, as booting
    supply (so no cycle orders them again) and as instances the caps and the money rule
    count.  An order is open until every instance it ordered has been seen, or until its
    fleet's ValidUntil (plus the grace minute, for clocks) has passed: AWS launches nothing
    more for it then."""
    by_order: dict[str, set[str]] = {}
    for instance in listed:
        by_order.setdefault(instance["tags"].get(ORDER_TAG, ""), set()).add(instance["id"])
    coming: list[supply.Instance] = []
    for order in ctx.journal.orders(row["id"]):
        if order["state"] != "open":
            continue
        known = set(json.loads(order["instance_ids"] or "[]"))
        seen = known | by_order.get(order["client_token"], set())
        over = now >= order["at"] + spotfleet.ORDER_WINDOW_SECONDS + GRACE_SECONDS
        state = "done" if len(seen) >= order["count"] or over else "open"
        if seen != known or state != "open":
            ctx.journal.order_settled(row["id"], order["number"], state, sorted(seen),
                                      order["hourly"], order["at"])
        if state == "open":
            coming += [supply.Instance(f"{order['client_token']}#{n}", order["instance_type"])
                       for n in range(order["count"] - len(seen))]
    return coming


def _finish_sent(ctx: Context, aws: AnnexAws, row: dict[str, Any],
                 plan: AnnexPlan) -> dict[str, Any]:
    """Finish every order a crash (or a timed-out call) left sent, under a claim."""
    for order in ctx.journal.orders(row["id"]):
        if order["state"] != "sent":
            continue
        claim(ctx.journal, row, RequestState.EXTENDING)
        try:
            made, found = _look_for(aws, plan, order)
            fleet = plan.annex_type == launch.SPOT_FLEET.annex_type
            now = ctx.clock()
            # Too late to send: the lease is over, or the order's fleet would be open for
            # less than a minute (its ValidUntil is the journaled order's, as its token is).
            late = row["lease_end"] <= now or (
                fleet and now >= order["at"] + spotfleet.ORDER_WINDOW_SECONDS - GRACE_SECONDS)
            if made or late:
                state = "failed" if not made else \
                    "open" if fleet and len(found) < order["count"] else "done"
                ctx.journal.order_settled(row["id"], order["number"], state, found,
                                          order["hourly"], order["at"])
            else:
                _send(ctx, aws, row, plan, order)
        finally:
            ctx.journal.transition(row["id"], RequestState.ACTIVE,
                                   expect={RequestState.EXTENDING})
        row = ctx.journal.request(row["id"])
        log.info("auto annex %s: order %d, left sent by a crash, is settled", plan.annex_id,
                 order["number"])
    return row


def _look_for(aws: AnnexAws, plan: AnnexPlan, order: dict[str, Any]) -> tuple[bool, list[str]]:
    """Whether a sent order reached AWS, and the instances it launched, by its order tag: on
    its instances, and for a fleet annex on its fleet (a Spot Fleet's may not have launched
    anything yet; an instant EC2 Fleet's may have launched nothing)."""
    found = _order_instances(aws, plan, order)
    if found or plan.annex_type == launch.ON_DEMAND.annex_type:
        return bool(found), found
    if plan.annex_type == launch.EC2_FLEET.annex_type:  # an instant fleet that launched none
        return bool(aws.tagged_ec2_fleets(plan.annex_id, {
            ORDER_TAG: order["client_token"], CLIENT_TOKEN_TAG: plan.client_token})), []
    return bool(aws.tagged_fleets(plan.annex_id, {ORDER_TAG: order["client_token"],
                                                  CLIENT_TOKEN_TAG: plan.client_token},
                                  order["client_token"])), []


def is_claimed_slot(ad: classad2.ClassAd) -> bool:
    return "State" in ad and ad.eval("State") == CLAIMED
