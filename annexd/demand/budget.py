"""The money rule every order and every lease extension of an auto annex is held to.

Money spent so far, plus every running or ordered instance until the lease ends, plus one
more minute (the lease function runs once a minute, so an instance may outlive its lease by
that much), must be within every cap: the annex's ``-max-cost``, the site's ``ANNEX_MAX_COST``
and, with the owner's other live annexes, ``ANNEX_MAX_COST_PER_USER``.  An instance costs the
most it may (:func:`annexd.money.costs.instance_price`: its Spot maximum, else the on-demand
price), so the rule holds whatever the market does.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

#: How late the lease function may end an instance after its lease.
GRACE_SECONDS = 60


@dataclass(frozen=True)
class Budget:
    """The caps an auto annex is held to, and what it and its owner hold already."""

    annex_cap: float | None = None        # -max-cost
    site_cap: float | None = None         # ANNEX_MAX_COST
    user_cap: float | None = None         # ANNEX_MAX_COST_PER_USER
    others: float = 0.0                   # the owner's other live annexes, at worst
    spent: float = 0.0                    # this annex so far

    @property
    def capped(self) -> bool:
        return any(cap is not None for cap in (self.annex_cap, self.site_cap, self.user_cap))


def until_lease_end(hourly: float | None, now: float, lease_end: float) -> float | None:
    """What one instance may cost from now to its lease's end, plus the grace minute."""
    if hourly is None:
        return None
    return hourly * (max(0.0, lease_end - now) + GRACE_SECONDS) / 3600


def committed(budget: Budget, hourly: Iterable[float | None], now: float,
              lease_end: float) -> float | None:
    """Spent, plus every instance (running and ordered) at ``hourly`` until the lease ends;
    None when one of them cannot be priced."""
    total = budget.spent
    for price in hourly:
        part = until_lease_end(price, now, lease_end)
        if part is None:
            return None
        total += part
    return total


def over(budget: Budget, total: float | None) -> str | None:
    """Which cap ``total`` would break (a sentence), or None when it is within all."""
    if not budget.capped:
        return None
    if total is None:
        return "an instance type without a known price (give SpotPrice), and a cost cap is set"
    for cap, name, amount in ((budget.annex_cap, "-max-cost", total),
                              (budget.site_cap, "ANNEX_MAX_COST", total),
                              (budget.user_cap, "ANNEX_MAX_COST_PER_USER",
                               total + budget.others)):
        if cap is not None and amount > cap + 1e-9:
            return f"${amount:.2f} would be over {name} (${cap:.2f})"
    return None
