"""The demand of one annex: its owner's idle jobs routed to it, grouped by what they request.

A job is routed to annex ``x`` the way HTCondor routes it: ``TargetAnnexName == "x"``
(``htcondor job submit --annex-name``, ``+TargetAnnexName``), or ``MayUseAWS == TRUE`` (the
original ``condor_annex``'s gate).  Only the owners the annex runs jobs for count: anyone
else's jobs could not start there.  The same constraint is what the schedd is asked
(:mod:`.condor`) and what a ``file:`` source applies, so both read the same demand.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable

import classad2

#: The only attributes the planner reads (the schedd query's projection, which keeps the
#: query of a big queue cheap): a job whose Requirements look at another of its own
#: attributes is judged without it.
PROJECTION = ["ClusterId", "ProcId", "Owner", "JobStatus", "JobUniverse", "TargetAnnexName",
              "MayUseAWS", "RequestCpus", "RequestMemory", "RequestGPUs", "RequestDisk",
              "Requirements", "QDate", "EnteredCurrentStatus", "ImageSize", "DiskUsage",
              "MemoryUsage"]
#: What makes two jobs the same to the planner: what they request, and what decides where
#: they may run (their Requirements, and what the annex's START looks at).
GROUP_BY = ("RequestCpus", "RequestMemory", "RequestGPUs", "RequestDisk", "Requirements",
            "Owner", "TargetAnnexName", "MayUseAWS")
IDLE = 1


def constraint(annex: str, owners: Iterable[str]) -> str:
    """The idle jobs meant for ``annex`` (of ``owners``; none given: anyone's)."""
    owners = list(owners)
    routed = f"(TargetAnnexName =?= {classad2.quote(annex)} || MayUseAWS =?= true)"
    whose = ("" if not owners else
             " && member(Owner, {" + ", ".join(classad2.quote(o) for o in owners) + "})")
    return f"JobStatus == {IDLE} && {routed}{whose}"


@dataclass(frozen=True, order=True)
class Requests:
    """What one job asks for; memory in MiB, disk in KiB (HTCondor's units)."""

    cpus: int = 1
    memory_mib: int = 0
    gpus: int = 0
    disk_kib: int = 0

    def __str__(self) -> str:
        parts = [f"{self.cpus} CPU{'s' if self.cpus != 1 else ''}",
                 f"{self.memory_mib / 1024:g} GiB"]
        if self.gpus:
            parts.append(f"{self.gpus} GPU{'s' if self.gpus != 1 else ''}")
        return ", ".join(parts)


def _number(ad: classad2.ClassAd, name: str, default: int) -> int:
    """An attribute evaluated in the job ad (``RequestMemory`` is often an expression);
    undefined or not a number: the default HTCondor would use."""
    if name not in ad:
        return default
    value: Any = ad.eval(name)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return default
    return max(0, math.ceil(value))


def requests(ad: classad2.ClassAd) -> Requests:
    return Requests(cpus=_number(ad, "RequestCpus", 1), memory_mib=_number(ad, "RequestMemory", 0),
                    gpus=_number(ad, "RequestGPUs", 0), disk_kib=_number(ad, "RequestDisk", 0))


@dataclass(frozen=True)
class Group:
    """Jobs that ask for the same, and may run on the same slots."""

    requests: Requests
    count: int
    example: classad2.ClassAd      # one of them, to match against slots
    key: tuple[str, ...]


def _key(ad: classad2.ClassAd) -> tuple[str, ...]:
    return tuple(str(ad.lookup(name)) if name in ad else "" for name in GROUP_BY)


def group(ads: Iterable[classad2.ClassAd]) -> list[Group]:
    """The jobs in groups, the biggest requests first (they are the hardest to place)."""
    found: dict[tuple[str, ...], list[classad2.ClassAd]] = {}
    for ad in ads:
        found.setdefault(_key(ad), []).append(ad)
    groups = [Group(requests(members[0]), len(members), members[0], key)
              for key, members in found.items()]
    return sorted(groups, key=lambda g: (g.requests, g.key), reverse=True)
