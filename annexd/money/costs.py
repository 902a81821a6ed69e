"""What an annex may cost at worst, and the admin's caps on what one user may start.

Worst case = capacity x the highest price per capacity unit among the options the launch may
start x the lease in hours.  A spot price is the config's ``SpotPrice`` (the most the user will pay)
or, when it gives none, the on-demand price: AWS's default maximum for Spot.  On-demand prices
come from the shipped table (``prices.json``, with its date), so no AWS call is needed.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import os
from typing import Any, Callable

from annexd import launch
from annexd.config.knobs import Caps
from annexd.launch.plan import AnnexPlan, InvalidRequest


@functools.lru_cache(maxsize=1)
def price_table() -> dict[str, Any]:
    with open(os.path.join(os.path.dirname(__file__), "prices.json"), encoding="utf-8") as f:
        return json.load(f)


def capacity(plan: AnnexPlan) -> int:
    return plan.kind.capacity(plan.launch_request)


def _od_price(option: launch.Option) -> float | None:
    price = price_table()["on_demand_hourly"].get(option.instance_type or "")
    return None if price is None else float(price)


def _unit_price(option: launch.Option, on_demand_part: bool) -> float | None:
    """The most one capacity unit of ``option`` may cost per hour.  A Spot price defaults
    to the on-demand price (AWS's default maximum); an on-demand part pays that price."""
    od_price = _od_price(option)
    prices = [option.max_price if option.max_price is not None else od_price]
    if on_demand_part:
        prices.append(od_price)
    if None in prices:
        return None
    return max(prices) / option.weight  # type: ignore[type-var]


def _hours(plan: AnnexPlan) -> float | None:
    return max(0.0, plan.lease_end - plan.created_at) / 3600 if plan.created_at else None


def estimate(plan: AnnexPlan) -> dict[str, Any]:
    kind, request = plan.kind, plan.launch_request
    hours = _hours(plan)
    on_demand_part = kind.capacity(request) > kind.spot_capacity(request)
    prices = [_unit_price(option, on_demand_part) for option in kind.options(request)]
    unit = None if not prices or None in prices else max(prices)  # type: ignore[type-var]
    cost = None if unit is None or hours is None else round(capacity(plan) * unit * hours, 2)
    return {"type": plan.annex_type, "capacity": capacity(plan), "hours": hours,
            "unit_price": unit,
            "worst_case_cost": cost, "prices_date": price_table()["date"]}


def with_price_cap(plan: AnnexPlan, caps: Caps) -> AnnexPlan:
    """With ANNEX_MAX_COST set, a fleet also carries the cap as hourly maxima that AWS
    enforces itself (our estimate uses a price table, and can not price every option)."""
    hours = _hours(plan)
    if caps.max_cost is None or not plan.kind.can_cap_price or not hours:
        return plan
    request, notice = plan.kind.cap_price(plan.launch_request, caps.max_cost / hours)
    return dataclasses.replace(plan, launch_request=request, notices=plan.notices + (notice,))


def check(plan: AnnexPlan, caps: Caps, already_running: Callable[[], int]) -> dict[str, Any]:
    """The estimate, or InvalidRequest naming the cap and the numbers.

    ``already_running`` is asked only when ANNEX_MAX_INSTANCES is set: it reads every live
    annex of the user, which no create should pay for otherwise.
    """
    found = estimate(plan)
    running = already_running() if caps.max_instances is not None else 0
    if caps.max_instances is not None and running + found["capacity"] > caps.max_instances:
        raise InvalidRequest(
            f"{found['capacity']} more instances would make {running + found['capacity']}"
            f" for you, over the limit of {caps.max_instances} (ANNEX_MAX_INSTANCES)")
    lease = plan.lease_end - plan.created_at
    if caps.max_lease_duration is not None and lease > caps.max_lease_duration:
        raise InvalidRequest(f"a lease of {lease} s exceeds the limit of "
                             f"{caps.max_lease_duration} s (ANNEX_MAX_LEASE_DURATION)")
    if caps.max_cost is not None:
        if found["worst_case_cost"] is None and not plan.kind.can_cap_price:
            raise InvalidRequest("the cost of this annex cannot be estimated (an instance type "
                                 "without a known price: give SpotPrice), and ANNEX_MAX_COST "
                                 "is set")
        if found["worst_case_cost"] is not None and found["worst_case_cost"] > caps.max_cost:
            raise InvalidRequest(
                f"this annex may cost up to ${found['worst_case_cost']:.2f} "
                f"({found['capacity']} x ${found['unit_price']:.4f}/h x "
                f"{found['hours']:.2f} h), over the limit of ${caps.max_cost:.2f} (ANNEX_MAX_COST)")
    return found


def check_lease_change(plan: AnnexPlan, lease_end: int, now: float, caps: Caps,
                       current_end: int, already_running: Callable[[], int]) -> None:
    """Hold a lease change to the caps a create is held to; InvalidRequest names the cap and
    the numbers.  Call it before anything changes: a refused change changes nothing.

    Only a longer lease raises what an annex may cost, so a change to an earlier end always
    passes.  ANNEX_MAX_LEASE_DURATION bounds the new lease, from now, as on a create;
    ANNEX_MAX_INSTANCES the instances the owner's live annexes hold (this one included: the
    admin may have lowered it since); ANNEX_MAX_COST what the annex may cost over its whole
    life, from its start to the new end -- else a one-hour annex extended for a year would
    escape it.
    """
    if lease_end <= current_end:
        return
    duration = lease_end - int(now)
    if caps.max_lease_duration is not None and duration > caps.max_lease_duration:
        raise InvalidRequest(f"a lease of {duration} s exceeds the limit of "
                             f"{caps.max_lease_duration} s (ANNEX_MAX_LEASE_DURATION)")
    if caps.max_instances is not None:
        running = already_running()
        if running > caps.max_instances:
            raise InvalidRequest(
                f"your live annexes hold {running} instances, over the limit of "
                f"{caps.max_instances} (ANNEX_MAX_INSTANCES); end some before making a lease "
                "longer")
    if caps.max_cost is not None:
        start = plan.created_at or int(now)  # journals before created_at: from now on
        _check_life_cost(dataclasses.replace(plan, lease_end=lease_end, created_at=start),
                         caps.max_cost)


def _check_life_cost(plan: AnnexPlan, max_cost: float) -> None:
    """The worst case of ``plan`` from its start to its (new) end: the price table's, or,
    when lower or the only one known, the fleet's own AWS-enforced hourly cap's."""
    found = estimate(plan)
    hours = found["hours"] or 0.0
    cost = found["worst_case_cost"]
    how = "" if cost is None else \
        f"{found['capacity']} x ${found['unit_price']:.4f}/h x {hours:.2f} h"
    hourly = plan.kind.hourly_cap(plan.launch_request)
    if hourly is not None and (cost is None or hourly * hours < cost):
        cost, how = round(hourly * hours, 2), f"its fleet's cap of ${hourly:.4f}/h x {hours:.2f} h"
    if cost is None:
        raise InvalidRequest(f"the cost of annex {plan.annex_id!r} over a longer lease cannot "
                             "be estimated (an instance type without a known price, and no "
                             "price cap on its fleet), and ANNEX_MAX_COST is set")
    if cost > max_cost:
        raise InvalidRequest(
            f"with that lease end annex {plan.annex_id!r} may cost up to ${cost:.2f} ({how} "
            f"since it started), over the limit of ${max_cost:.2f} (ANNEX_MAX_COST)")
