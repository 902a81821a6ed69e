"""What an annex may cost at worst, and the admin's caps on what one user may start.

Caps count what they name, whatever the weights.  A fleet's capacity is in *units*; an
instance counts for its ``WeightedCapacity`` units, so a fleet of capacity C may run up to
C / (its smallest weight) instances, rounded up, in each of its parts (Spot and on-demand):
that is what ANNEX_MAX_INSTANCES counts.  The price of an instance is per *instance*-hour:
the config's Spot maximum (``SpotPrice``, ``MaxPrice``) is per *unit*-hour, so an instance
may cost that times its weight; without one, its on-demand price (AWS's default maximum for
Spot); an on-demand part pays the on-demand price.  Worst case = the most instances the
config can run x the most one of them may cost x the lease in hours: what ANNEX_MAX_COST
bounds, and ANNEX_MAX_COST_PER_USER over all of a user's live annexes.  On-demand prices come
from the shipped table (``prices.json``, whose date every estimate names), so no AWS call is
needed.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from annexd import launch
from annexd.config.knobs import Caps
from annexd.launch.plan import AnnexPlan, InvalidRequest


@functools.lru_cache(maxsize=1)
def price_table() -> dict[str, Any]:
    with open(os.path.join(os.path.dirname(__file__), "prices.json"), encoding="utf-8") as f:
        return json.load(f)


def capacity(plan: AnnexPlan) -> int:
    return plan.kind.capacity(plan.launch_request)


def _instances_for(units: int, smallest_weight: float) -> int:
    """Instances a part of ``units`` capacity units may run: a fleet launches until its
    capacity is met, so with weights below 1 it runs more instances than units."""
    if units <= 0:
        return 0
    return math.ceil(round(units / smallest_weight, 9))


def worst_instances(plan: AnnexPlan) -> int:
    """The most instances ``plan`` can have running at once (what ANNEX_MAX_INSTANCES counts):
    an auto annex's ``-max-instances`` (its daemon orders whole instances, one type per order,
    and counts instances, whatever the weights)."""
    if plan.auto and plan.max_instances is not None:
        return plan.max_instances
    kind, request = plan.kind, plan.launch_request
    weights = [option.weight for option in kind.options(request)] or [1.0]
    smallest = min(weights)
    spot = kind.spot_capacity(request)
    return (_instances_for(spot, smallest) +
            _instances_for(kind.capacity(request) - spot, smallest))


def _instances(count: int) -> str:
    return f"{count} instance" + ("" if count == 1 else "s")


def _od_price(option: launch.Option) -> float | None:
    price = price_table()["on_demand_hourly"].get(option.instance_type or "")
    return None if price is None else float(price)


def instance_price(option: launch.Option, on_demand_part: bool) -> float | None:
    """The most one instance of ``option`` may cost per hour: a Spot maximum is per unit-hour,
    so it is multiplied by the weight; without one, the on-demand price (AWS's default
    maximum); an on-demand part pays the on-demand price."""
    od_price = _od_price(option)
    prices = [option.max_price * option.weight if option.max_price is not None else od_price]
    if on_demand_part:
        prices.append(od_price)
    if None in prices:
        return None
    return max(prices)  # type: ignore[type-var]


def _hours(plan: AnnexPlan) -> float | None:
    return max(0.0, plan.lease_end - plan.created_at) / 3600 if plan.created_at else None


def estimate(plan: AnnexPlan) -> dict[str, Any]:
    """The worst case of ``plan`` over its lease, with the numbers that make it up."""
    kind, request = plan.kind, plan.launch_request
    hours = _hours(plan)
    on_demand_part = kind.capacity(request) > kind.spot_capacity(request)
    prices = [instance_price(option, on_demand_part) for option in kind.options(request)]
    price = None if not prices or None in prices else max(prices)  # type: ignore[type-var]
    instances = worst_instances(plan)
    cost = None if price is None or hours is None else round(instances * price * hours, 2)
    return {"type": plan.annex_type, "capacity": capacity(plan), "instances": instances,
            "hours": hours, "instance_price": price, "worst_case_cost": cost,
            "prices_date": price_table()["date"]}


def life_cost(plan: AnnexPlan) -> tuple[float | None, str]:
    """The worst case of ``plan`` from its start to its end, and how it was reached: the
    price table's, or, when lower or the only one known, its fleet's own AWS-enforced hourly
    cap's.  (None, why) when neither can price it."""
    found = estimate(plan)
    hours = found["hours"] or 0.0
    cost = found["worst_case_cost"]
    how = "" if cost is None else (f"{_instances(found['instances'])} x "
                                   f"${found['instance_price']:.4f}/h x {hours:.2f} h")
    # An auto annex's orders are fleets of their own, each held to the cap: it bounds none
    # of them together, so only the price table prices an auto annex.
    hourly = None if plan.auto else plan.kind.hourly_cap(plan.launch_request)
    if hourly is not None and (cost is None or hourly * hours < cost):
        cost, how = round(hourly * hours, 2), f"its fleet's cap of ${hourly:.4f}/h x {hours:.2f} h"
    return cost, how


def annex_instances(parts: Iterable[AnnexPlan]) -> int:
    """The most instances an annex of several launches (``parts``: one plan per launch,
    its create's first: see annexd.commands.launches) can have running at once."""
    return sum(worst_instances(part) for part in parts)


def annex_life_cost(parts: Iterable[AnnexPlan]) -> tuple[float | None, str]:
    """:func:`life_cost` of an annex of several launches: each from its own start to the
    annex's lease end, added up; (None, "") when one cannot be priced."""
    total, hows = 0.0, []
    for part in parts:
        cost, how = life_cost(part)
        if cost is None:
            return None, ""
        total += cost
        hows.append(how)
    return round(total, 2), " + ".join(hows)


@dataclass(frozen=True)
class Holding:
    """What a user's live annexes hold together: instances at most, and their worst-case cost
    over their leases (None: one of them cannot be priced)."""

    instances: int = 0
    cost: float | None = 0.0
    unpriced: str | None = None   # the name of an annex that cannot be priced

    @classmethod
    def of(cls, plans: Iterable[AnnexPlan]) -> "Holding":
        instances, cost, unpriced = 0, 0.0, None
        for plan in plans:
            instances += worst_instances(plan)
            part, _ = life_cost(plan)
            if part is None:
                unpriced = unpriced or plan.annex_id
            else:
                cost += part
        return cls(instances, None if unpriced else round(cost, 2), unpriced)


def _check_instances(caps: Caps, found: dict[str, Any], plan: AnnexPlan, others: Holding) -> None:
    if caps.max_instances is None:
        return
    mine = found["instances"]
    how = "" if mine == found["capacity"] else (
        f" (capacity {found['capacity']} / its smallest weight, rounded up)")
    if mine > caps.max_instances:
        raise InvalidRequest(
            f"annex {plan.annex_id!r} may run up to {mine} instances{how}, over the limit "
            f"of {caps.max_instances} (ANNEX_MAX_INSTANCES)")
    if others.instances + mine > caps.max_instances:
        raise InvalidRequest(
            f"annex {plan.annex_id!r} may run up to {mine} more instances{how}, which would "
            f"make {others.instances + mine} for you, over the limit of {caps.max_instances} "
            "(ANNEX_MAX_INSTANCES)")


def _check_user_cost(caps: Caps, plan: AnnexPlan, cost: float | None,
                     others: Holding) -> None:
    if caps.max_cost_per_user is None:
        return
    if others.cost is None:
        raise InvalidRequest(
            f"your annex {others.unpriced!r} cannot be priced, and ANNEX_MAX_COST_PER_USER is "
            "set: end it before starting or extending another")
    if cost is None:
        raise InvalidRequest(
            f"the cost of annex {plan.annex_id!r} cannot be estimated (an instance type "
            "without a known price: give SpotPrice), and ANNEX_MAX_COST_PER_USER is set")
    if others.cost + cost > caps.max_cost_per_user:
        raise InvalidRequest(
            f"annex {plan.annex_id!r} may cost up to ${cost:.2f}, which with your other live "
            f"annexes (${others.cost:.2f}) makes ${others.cost + cost:.2f}, over the limit of "
            f"${caps.max_cost_per_user:.2f} (ANNEX_MAX_COST_PER_USER)")


def with_price_cap(plan: AnnexPlan, caps: Caps, budget: float | None = None) -> AnnexPlan:
    """With ANNEX_MAX_COST set, a fleet also carries the cap as hourly maxima that AWS
    enforces itself (our estimate uses a price table, and can not price every option).
    ``budget``: what is left of the cap for this launch (a launch added to an annex: the cap
    less what its other launches may cost); default the whole cap."""
    hours = _hours(plan)
    if caps.max_cost is None or not plan.kind.can_cap_price or not hours:
        return plan
    budget = caps.max_cost if budget is None else budget
    request, notice = plan.kind.cap_price(plan.launch_request, budget / hours)
    return dataclasses.replace(plan, launch_request=request, notices=plan.notices + (notice,))


def check(plan: AnnexPlan, caps: Caps, others: Callable[[], Holding]) -> dict[str, Any]:
    """The estimate, or InvalidRequest naming the cap and the numbers.

    ``others`` (what the user's other live annexes hold) is asked only when a per-user cap
    is set: it reads the journal, which no create should pay for otherwise.
    """
    found = estimate(plan)
    held = others() if (caps.max_instances is not None or
                        caps.max_cost_per_user is not None) else Holding()
    _check_instances(caps, found, plan, held)
    lease = plan.lease_end - plan.created_at
    if caps.max_lease_duration is not None and lease > caps.max_lease_duration:
        raise InvalidRequest(f"a lease of {lease} s exceeds the limit of "
                             f"{caps.max_lease_duration} s (ANNEX_MAX_LEASE_DURATION)")
    if caps.max_cost is not None:
        if found["worst_case_cost"] is None and (plan.auto or not plan.kind.can_cap_price):
            raise InvalidRequest("the cost of this annex cannot be estimated (an instance type "
                                 "without a known price: give SpotPrice), and ANNEX_MAX_COST "
                                 "is set")
        if found["worst_case_cost"] is not None and found["worst_case_cost"] > caps.max_cost:
            raise InvalidRequest(
                f"this annex may cost up to ${found['worst_case_cost']:.2f} "
                f"({_instances(found['instances'])} x ${found['instance_price']:.4f}/h x "
                f"{found['hours']:.2f} h, prices of {found['prices_date']}), over the limit of "
                f"${caps.max_cost:.2f} (ANNEX_MAX_COST)")
    _check_user_cost(caps, plan, life_cost(plan)[0], held)
    return found


def check_added(parts: list[AnnexPlan], added: AnnexPlan, caps: Caps,
                others: Callable[[], Holding]) -> dict[str, Any]:
    """Hold a launch ``added`` to a live annex (the same name again) to the caps, counting
    the whole annex: ``parts``, its launches so far (annexd.commands.launches), plus this
    one, which runs from now to the annex's lease end.  The estimate of the added launch,
    or InvalidRequest naming the cap and the numbers.  ``others``: what the owner's other
    live annexes hold (this one left out), asked only when a per-user cap is set.

    ANNEX_MAX_INSTANCES bounds the annex's instances and, with the owner's other annexes,
    the owner's; ANNEX_MAX_COST what the whole annex may cost over its lease (its launches
    so far from their starts, this one from now; a fleet added also carries what is left of
    the cap as AWS-enforced hourly maxima: :func:`with_price_cap`); ANNEX_MAX_COST_PER_USER
    that plus the owner's other annexes.  The lease is the annex's: not moved, so
    ANNEX_MAX_LEASE_DURATION has nothing new to bound.
    """
    found = estimate(added)
    name = added.annex_id
    held = others() if (caps.max_instances is not None or
                        caps.max_cost_per_user is not None) else Holding()
    before, more = annex_instances(parts), found["instances"]
    if caps.max_instances is not None:
        if before + more > caps.max_instances:
            raise InvalidRequest(
                f"annex {name!r} may run up to {before} instances; {more} more would make "
                f"{before + more}, over the limit of {caps.max_instances} (ANNEX_MAX_INSTANCES)")
        if held.instances + before + more > caps.max_instances:
            raise InvalidRequest(
                f"annex {name!r} with {more} more instances may run up to {before + more}, "
                f"which with your other live annexes ({held.instances}) makes "
                f"{held.instances + before + more}, over the limit of {caps.max_instances} "
                "(ANNEX_MAX_INSTANCES)")
    so_far, _ = annex_life_cost(parts)
    if caps.max_cost is not None:
        if so_far is None:
            raise InvalidRequest(f"the cost of annex {name!r} so far cannot be estimated, and "
                                 "ANNEX_MAX_COST is set: no launch can be added to it")
        if found["worst_case_cost"] is None and not added.kind.can_cap_price:
            raise InvalidRequest("the cost of the added instances cannot be estimated (an "
                                 "instance type without a known price), and ANNEX_MAX_COST "
                                 "is set")
        if found["worst_case_cost"] is not None and \
                round(so_far + found["worst_case_cost"], 2) > caps.max_cost:
            raise InvalidRequest(
                f"annex {name!r} may cost up to ${so_far:.2f} so far; the added instances "
                f"up to ${found['worst_case_cost']:.2f} more ("
                f"{_instances(found['instances'])} x ${found['instance_price']:.4f}/h x "
                f"{found['hours']:.2f} h left of its lease, prices of {found['prices_date']}),"
                f" making ${so_far + found['worst_case_cost']:.2f}, over the limit of "
                f"${caps.max_cost:.2f} (ANNEX_MAX_COST)")
    whole, _ = annex_life_cost([*parts, added])
    _check_user_cost(caps, added, whole, held)
    return {**found, "annex_instances": before + more, "annex_cost": whole}


def check_lease_change(plan: AnnexPlan, lease_end: int, now: float, caps: Caps,
                       current_end: int, others: Callable[[], Holding],
                       added: Iterable[AnnexPlan] = ()) -> None:
    """Hold a lease change to the caps a create is held to; InvalidRequest names the cap and
    the numbers.  Call it before anything changes: a refused change changes nothing.

    Only a longer lease raises what an annex may cost, so a change to an earlier end always
    passes.  ANNEX_MAX_LEASE_DURATION bounds the new lease, from now, as on a create;
    ANNEX_MAX_INSTANCES the instances the owner's live annexes may run (``others``: the
    owner's other live annexes; the admin may have lowered the cap since); ANNEX_MAX_COST
    what the annex may cost over its whole life, from its start to the new end -- else a
    one-hour annex extended for a year would escape it -- and ANNEX_MAX_COST_PER_USER that
    plus what the owner's other live annexes may cost.  ``added``: the launches added to the
    annex after its create (the same name again), each counted from its own start.
    """
    if lease_end <= current_end:
        return
    duration = lease_end - int(now)
    if caps.max_lease_duration is not None and duration > caps.max_lease_duration:
        raise InvalidRequest(f"a lease of {duration} s exceeds the limit of "
                             f"{caps.max_lease_duration} s (ANNEX_MAX_LEASE_DURATION)")
    start = plan.created_at or int(now)  # journals before created_at: from now on
    longer = [dataclasses.replace(part, lease_end=lease_end,
                                  created_at=part.created_at or start)
              for part in (plan, *added)]
    per_user = caps.max_instances is not None or caps.max_cost_per_user is not None
    held = others() if per_user else Holding()
    if caps.max_instances is not None:
        mine = annex_instances(longer)
        if held.instances + mine > caps.max_instances:
            raise InvalidRequest(
                f"your live annexes may run {held.instances + mine} instances, over the limit "
                f"of {caps.max_instances} (ANNEX_MAX_INSTANCES); end some before making a "
                "lease longer")
    cost, how = annex_life_cost(longer)
    if caps.max_cost is not None:
        if cost is None:
            raise InvalidRequest(f"the cost of annex {plan.annex_id!r} over a longer lease "
                                 "cannot be estimated (an instance type without a known "
                                 "price, and no price cap on its fleet), and ANNEX_MAX_COST "
                                 "is set")
        if cost > caps.max_cost:
            raise InvalidRequest(
                f"with that lease end annex {plan.annex_id!r} may cost up to ${cost:.2f} "
                f"({how} since it started), over the limit of ${caps.max_cost:.2f} "
                "(ANNEX_MAX_COST)")
    _check_user_cost(caps, plan, cost, held)
