"""What an auto annex orders: at most its unmet demand minus its supply, packed onto the
config's instance types cheapest per job first, within every limit.  Pure: the caller reads
demand and supply (:mod:`.ads`, :mod:`.jobs`, :mod:`.supply`) and passes the clock.

Each cycle starts from what is: the queue, the instances AWS lists (running or still booting)
and the annex's unclaimed slots.  Supply takes jobs first, so an order placed last cycle and
still booting is never ordered again.  What is left is packed group by group (the biggest
requests first): into room left on instances already planned this cycle, then onto new
instances of the type that costs least per job among those that can run the group.  The first
order is full size: no ramp.  A group no type of the config can run orders nothing, and says
why.  Then the order is cut to the limits -- ``-max-instances``, ``ANNEX_MAX_INSTANCES`` (with
the owner's other annexes) and the money rule of :mod:`.budget` -- keeping its cheapest-first
prefix.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable

import classad2

from annexd.demand import budget as money
from annexd.demand import slots, supply
from annexd.demand.instance_types import InstanceType, lookup
from annexd.demand.jobs import Group, Requests
from annexd.instance_config.tarball import start_expression
from annexd.launch import Option
from annexd.launch.plan import AnnexPlan
from annexd.money.costs import instance_price


@dataclass(frozen=True)
class Choice:
    """One instance type the annex's config may launch."""

    instance_type: str
    hourly: float | None             # the most one instance may cost per hour
    weight: float
    itype: InstanceType
    slot: classad2.ClassAd

    def cost_per_job(self, jobs: int) -> float:
        return math.inf if self.hourly is None else self.hourly / jobs


def choices(plan: AnnexPlan) -> tuple[list[Choice], list[str]]:
    """The config's instance types, as slots of this annex; and what could not be used."""
    kind, request = plan.kind, plan.launch_request
    on_demand_part = kind.capacity(request) > kind.spot_capacity(request)
    start, disk = start_expression(plan), slots.disk_kib(request)
    found: dict[str, Choice] = {}
    skipped: list[str] = []
    for option in kind.options(request):
        itype = lookup(option.instance_type)
        if itype is None:
            skipped.append(f"{option.instance_type or 'a type AWS chooses'}: its CPUs and "
                           "memory are not known here, so no job is planned onto it")
            continue
        hourly = instance_price(option, on_demand_part)
        known = found.get(itype.name)
        if known is None or (hourly or math.inf) < (known.hourly or math.inf):
            found[itype.name] = Choice(itype.name, hourly, option.weight, itype,
                                       slots.type_slot(itype, plan.annex_id, start, disk))
    return list(found.values()), skipped


@dataclass(frozen=True)
class Limits:
    """What an order must stay within."""

    now: float
    lease_end: float
    max_instances: int | None = None          # -max-instances
    site_max_instances: int | None = None     # ANNEX_MAX_INSTANCES
    others_instances: int = 0                 # the owner's other live annexes
    budget: money.Budget = money.Budget()


@dataclass(frozen=True)
class Unfit:
    group: Group
    reason: str


@dataclass
class Decision:
    jobs: int = 0
    supplied: int = 0                          # jobs the annex's supply takes
    unfit: list[Unfit] = field(default_factory=list)
    orders: dict[str, int] = field(default_factory=dict)   # instance type -> instances
    units: float = 0.0                         # the orders in fleet capacity units (weights)
    held_back: int = 0                         # instances wanted but not ordered
    held_by: str = ""
    unplaced: int = 0                          # jobs left waiting by the limits
    cost: float | None = 0.0                   # what the annex would then commit, at worst
    notes: list[str] = field(default_factory=list)

    @property
    def instances(self) -> int:
        return sum(self.orders.values())

    def lines(self) -> list[str]:
        """Why, in sentences: what -plan prints and -status shows."""
        said = [f"demand: {self.jobs} idle job{'s' if self.jobs != 1 else ''}; "
                f"{self.supplied} can run on what the annex has"]
        said += [f"cannot run: {unfit.reason}" for unfit in self.unfit]
        if self.orders:
            units = "" if self.units == self.instances else f" ({self.units:g} capacity units)"
            said.append("order: " + ", ".join(f"{count} x {name}"
                                              for name, count in self.orders.items()) + units)
        else:
            said.append("order: nothing")
        if self.held_back:
            said.append(f"held back: {self.held_back} more instance"
                        f"{'s' if self.held_back != 1 else ''} ({self.unplaced} jobs) "
                        f"because {self.held_by}")
        if self.cost is not None:
            said.append(f"committed at worst: ${self.cost:.2f} until the lease ends")
        else:
            said.append("committed at worst: not known (a type without a known price: give "
                        "SpotPrice)")
        return said + self.notes


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def unfit_reason(group: Group, options: list[Choice]) -> str:
    """Why no type of the config can run ``group`` -- the resource first, else the match."""
    jobs, want = _plural(group.count, "job"), group.requests
    ask, match = ("asks", "matches") if group.count == 1 else ("ask", "match")
    if not options:
        return f"{jobs} {ask} for {want}; the config has no instance type known here"
    top = max(options, key=lambda c: c.itype.memory_mib).itype
    if want.memory_mib > top.memory_mib:
        return (f"{jobs} {ask} for {want.memory_mib / 1024:g} GiB; the largest type in the "
                f"config has {top.memory_gib:g}")
    cpus = max(c.itype.cpus for c in options)
    if want.cpus > cpus:
        return f"{jobs} {ask} for {want.cpus} CPUs; the largest type in the config has {cpus}"
    gpus = max(c.itype.gpus for c in options)
    if want.gpus > gpus:
        return (f"{jobs} {ask} for {_plural(want.gpus, 'GPU')}; the config's types have at "
                f"most {gpus}")
    disk = max(slots.resources(c.slot).disk_kib for c in options)
    if want.disk_kib > disk:
        return (f"{jobs} {ask} for {want.disk_kib / 1048576:g} GiB of disk; the config's "
                f"instances have {disk / 1048576:g}")
    return (f"{jobs} ({want}) {match} no type of the config: their Requirements, or the "
            "annex's START, rule every one out")


def _fitting(group: Group, options: list[Choice]) -> list[tuple[Choice, int]]:
    """The types that can run ``group``, with how many of its jobs one instance takes."""
    found = []
    for choice in options:
        per = slots.how_many(group.requests, slots.resources(choice.slot))
        if per >= 1 and slots.matches(group.example, choice.slot):
            found.append((choice, per))
    return found


def _pack(groups: list[tuple[Group, int, list[tuple[Choice, int]]]]
          ) -> list[tuple[Choice, int]]:
    """New instances, in order, each with how many jobs it takes: every group's unmet jobs
    into room left on instances already planned, then onto the cheapest type per job."""
    planned: list[tuple[Choice, supply.Bin, list[int]]] = []   # (type, room, [jobs])
    for group, unmet, fitting in groups:
        for choice, spot, taken in planned:
            if unmet and any(choice is c for c, _ in fitting):
                placed = supply.place(group, unmet, [spot])
                taken[0] += placed
                unmet -= placed
        choice, _ = min(fitting, key=lambda f: (f[0].cost_per_job(f[1]), f[0].instance_type))
        while unmet > 0:
            spot = supply.Bin(choice.instance_type, choice.slot,
                              slots.resources(choice.slot), booting=True)
            placed = supply.place(group, unmet, [spot])
            if placed == 0:     # cannot happen: _fitting checked that one fits
                break
            planned.append((choice, spot, [placed]))
            unmet -= placed
    return [(choice, taken[0]) for choice, _, taken in planned]


def _cut(wanted: list[Choice], current: list[float | None], limits: Limits
         ) -> tuple[list[int], str]:
    """Which of ``wanted`` (by index, in order) fit the limits, and the first limit that left
    one out.  The instance counts stop the order; the money rule skips an instance it cannot
    afford and tries the next (a cheaper type may still fit)."""
    room, why = len(wanted), ""
    for cap, name, used in ((limits.max_instances, "-max-instances", len(current)),
                            (limits.site_max_instances, "ANNEX_MAX_INSTANCES",
                             len(current) + limits.others_instances)):
        if cap is not None and used + room > cap:
            room, why = max(0, cap - used), f"{name} is {cap}"
    prices, taken = list(current), []
    for index, choice in enumerate(wanted):
        if len(taken) == room:
            break
        broken = money.over(limits.budget, money.committed(
            limits.budget, prices + [choice.hourly], limits.now, limits.lease_end))
        if broken:
            why = why or broken
            continue
        prices.append(choice.hourly)
        taken.append(index)
    return taken, why


def decide(groups: list[Group], options: list[Choice], instances: Iterable[supply.Instance],
           slot_ads: list[classad2.ClassAd], limits: Limits) -> Decision:
    """What to order now.  ``instances``: the annex's instances AWS lists (pending or
    running); ``slot_ads``: its slots as the collector has them."""
    instances = list(instances)
    prices = {c.instance_type: c.hourly for c in options}
    by_type = {c.instance_type: c.slot for c in options}
    room = supply.bins(instances, slot_ads, lambda name: by_type.get(name) or _slot_like(
        name, options))
    decision = Decision(jobs=sum(g.count for g in groups))
    todo = []
    for group in groups:
        fitting = _fitting(group, options)
        if not fitting:
            decision.unfit.append(Unfit(group, unfit_reason(group, options)))
            continue
        placed = supply.place(group, group.count, room)
        decision.supplied += placed
        if group.count > placed:
            todo.append((group, group.count - placed, fitting))
    wanted = _pack(todo)
    current = [prices[i.instance_type] if i.instance_type in prices
               else instance_price(Option(i.instance_type), False) for i in instances]
    taken, why = _cut([choice for choice, _ in wanted], current, limits)
    ordered = [wanted[index] for index in taken]
    for choice, _ in ordered:
        decision.orders[choice.instance_type] = decision.orders.get(choice.instance_type, 0) + 1
        decision.units += choice.weight
    if len(ordered) < len(wanted):
        decision.held_back, decision.held_by = len(wanted) - len(ordered), why
        decision.unplaced = (sum(count for _, count, _ in todo) -
                             sum(jobs for _, jobs in ordered))
    decision.cost = money.committed(
        limits.budget, current + [choice.hourly for choice, _ in ordered], limits.now,
        limits.lease_end)
    return decision


def _slot_like(name: str, options: list[Choice]) -> classad2.ClassAd | None:
    """The slot of an instance whose type is no longer among the config's (a config with
    attribute-based selection): made from the type table, with the annex's START."""
    itype = lookup(name)
    if itype is None or not options:
        return None
    model = options[0].slot
    start = str(model.lookup("START"))
    ad = slots.type_slot(itype, str(model.eval("AnnexName")), None,
                         slots.resources(model).disk_kib)
    ad["START"] = classad2.ExprTree(start)
    return ad
