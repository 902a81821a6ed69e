"""What an annex may cost at worst, and the admin's caps on what one user may start.

Worst case = capacity x the highest price per capacity unit among the launch specifications x
the lease in hours.  A spot price is the config's ``SpotPrice`` (the most the user will pay)
or, when it gives none, the on-demand price: AWS's default maximum for Spot.  On-demand prices
come from the shipped table (``prices.json``, with its date), so no AWS call is needed.
"""
from __future__ import annotations

import functools
import json
import os
from typing import Any

from .knobs import Caps
from .plan import AnnexPlan, InvalidRequest


@functools.lru_cache(maxsize=1)
def price_table() -> dict[str, Any]:
    with open(os.path.join(os.path.dirname(__file__), "prices.json"), encoding="utf-8") as f:
        return json.load(f)


def capacity(plan: AnnexPlan) -> int:
    if plan.on_demand_request:
        return int(plan.on_demand_request["MaxCount"])
    return int(plan.spot_fleet_config.get("TargetCapacity", 0))


def _unit_price(spec: dict[str, Any], fleet_price: str | None) -> float | None:
    price = spec.get("SpotPrice") or fleet_price
    if price is None:
        price = price_table()["on_demand_hourly"].get(spec.get("InstanceType", ""))
    if price is None:
        return None
    return float(price) / float(spec.get("WeightedCapacity") or 1)


def estimate(plan: AnnexPlan) -> dict[str, Any]:
    config = plan.spot_fleet_config
    hours = max(0.0, plan.lease_end - plan.created_at) / 3600 if plan.created_at else None
    specs = [plan.on_demand_request] if plan.on_demand_request else \
        config.get("LaunchSpecifications", [])
    prices = [_unit_price(spec, config.get("SpotPrice")) for spec in specs]
    unit = None if not prices or None in prices else max(prices)
    cost = None if unit is None or hours is None else round(capacity(plan) * unit * hours, 2)
    return {"type": plan.annex_type, "capacity": capacity(plan), "hours": hours,
            "unit_price": unit,
            "worst_case_cost": cost, "prices_date": price_table()["date"]}


def check(plan: AnnexPlan, caps: Caps, already_running: int) -> dict[str, Any]:
    """The estimate, or InvalidRequest naming the cap and the numbers."""
    found = estimate(plan)
    if caps.max_instances is not None and already_running + found["capacity"] > caps.max_instances:
        raise InvalidRequest(
            f"{found['capacity']} more instances would make {already_running + found['capacity']}"
            f" for you, over the limit of {caps.max_instances} (ANNEX_MAX_INSTANCES)")
    lease = plan.lease_end - plan.created_at
    if caps.max_lease_duration is not None and lease > caps.max_lease_duration:
        raise InvalidRequest(f"a lease of {lease} s exceeds the limit of "
                             f"{caps.max_lease_duration} s (ANNEX_MAX_LEASE_DURATION)")
    if caps.max_cost is not None:
        if found["worst_case_cost"] is None:
            raise InvalidRequest("the cost of this annex cannot be estimated (an instance type "
                                 "without a known price: give SpotPrice), and ANNEX_MAX_COST "
                                 "is set")
        if found["worst_case_cost"] > caps.max_cost:
            raise InvalidRequest(
                f"this annex may cost up to ${found['worst_case_cost']:.2f} "
                f"({found['capacity']} x ${found['unit_price']:.4f}/h x "
                f"{found['hours']:.2f} h), over the limit of ${caps.max_cost:.2f} (ANNEX_MAX_COST)")
    return found
