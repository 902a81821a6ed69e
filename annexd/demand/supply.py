"""What an annex already has for its demand, each thing counted once.

An instance that does not yet advertise a slot (no slot ad carries its ``EC2InstanceID``) is
booting: all of its type's resources are coming.  Once it advertises, only its unclaimed slots
count -- what it runs is no longer demand, and counting the instance as well would count it
twice.  Unclaimed slots of the annex count for their free CPUs, memory and GPUs, matched
against the jobs with their own ads.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

import classad2

from annexd.demand import slots
from annexd.demand.jobs import Group, Requests

#: The collector query's projection: none (every attribute).  A job's Requirements may look
#: at any attribute of a machine, and a startd's own Requirements at several of its own
#: (``WithinResourceLimits``, ``IsValidCheckpointPlatform``); a slot missing one would not
#: match, count as no supply, and be ordered again.  The constraint keeps the answer to the
#: annex's own slots.
PROJECTION: list[str] = []
UNCLAIMED = "Unclaimed"


def slot_constraint(annex: str) -> str:
    return f"AnnexName =?= {classad2.quote(annex)}"


@dataclass(frozen=True)
class Instance:
    """One of the annex's instances as AWS lists it (pending or running)."""

    instance_id: str
    instance_type: str


@dataclass
class Bin:
    """Room for jobs: a booting instance or an unclaimed slot, with what it has left."""

    what: str
    ad: classad2.ClassAd
    free: Requests
    booting: bool


def advertised(slot_ads: Iterable[classad2.ClassAd]) -> set[str]:
    return {str(ad.eval("EC2InstanceID")) for ad in slot_ads if "EC2InstanceID" in ad}


def bins(instances: Iterable[Instance], slot_ads: list[classad2.ClassAd],
         slot_of_type: Callable[[str], classad2.ClassAd | None]) -> list[Bin]:
    """The annex's room for jobs: booting instances, then unclaimed slots."""
    seen = advertised(slot_ads)
    found: list[Bin] = []
    for instance in instances:
        if instance.instance_id in seen:
            continue
        ad = slot_of_type(instance.instance_type)
        if ad is not None:
            found.append(Bin(instance.instance_id, ad, slots.resources(ad), True))
    for ad in slot_ads:
        if "State" in ad and ad.eval("State") == UNCLAIMED:
            name = str(ad.eval("Name")) if "Name" in ad else "a slot"
            found.append(Bin(name, slots.as_startd_sees_it(ad), slots.resources(ad), False))
    return found


def place(group: Group, jobs: int, room: list[Bin]) -> int:
    """Put up to ``jobs`` of ``group`` into ``room`` (first fit, using it up); how many were
    placed."""
    placed = 0
    for spot in room:
        if placed == jobs:
            break
        fits = slots.how_many(group.requests, spot.free)
        if fits <= 0 or not slots.matches(group.example, spot.ad):
            continue
        taken = min(fits, jobs - placed)
        spot.free = slots.minus(spot.free, group.requests, taken)
        placed += taken
    return placed
