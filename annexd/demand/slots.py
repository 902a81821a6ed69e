"""The slot an instance of a type would advertise, and whether a job matches a slot.

A new instance runs one partitionable slot with all of the instance's CPUs, memory and GPUs,
advertising ``AnnexName``/``IsAnnex`` and the annex's START -- taken from the function that
writes it into the annex's config (:func:`annexd.instance_config.tarball.start_expression`),
so the planner can never disagree with the instances about which jobs they take.

Matching is ``classad2``'s, with what it does differently from a startd made up for:

- a config value's ``$(START)`` is the image's own START, which is ``True``;
- ``stringListMember(x, "a, b")`` evaluates to ERROR in ``classad2`` until HTCondor's own
  ClassAd functions are loaded (importing ``htcondor2`` or a first ``parseOne`` does it, so
  the result would depend on what ran before); with a literal list it means
  ``member(x, {"a", "b"})``, which is built in, so it is rewritten to that;
- an unscoped name in the slot's START (``Owner``, ``MayUseAWS``) is looked up in the job
  when the slot lacks it, as HTCondor's matchmaking does: the job's attributes the slot lacks
  are put beside the slot's for that one evaluation.
"""
from __future__ import annotations

import re
from typing import Any

import classad2

from annexd.demand.instance_types import InstanceType
from annexd.demand.jobs import Requests

#: The image's START (annex_ec2/image): what ``$(START)`` in the annex's config expands to.
IMAGE_START = "True"
#: EC2's usual root volume when the launch request names no size.
DEFAULT_DISK_GIB = 8
_STRING_LIST = re.compile(r'stringListMember\(\s*([^,()]+?)\s*,\s*"([^"]*)"\s*\)', re.I)


def evaluable(start: str | None) -> str:
    """A START config value as ``classad2`` evaluates it the way a startd would."""
    if start is None:
        return IMAGE_START
    return _STRING_LIST.sub(_as_member, start.replace("$(START)", IMAGE_START))


def _as_member(match: re.Match[str]) -> str:
    items = [item.strip() for item in re.split(r"[,\s]+", match.group(2)) if item.strip()]
    return f"member({match.group(1)}, {{{', '.join(classad2.quote(i) for i in items)}}})"


def as_startd_sees_it(ad: classad2.ClassAd) -> classad2.ClassAd:
    """A slot ad from the collector, its expressions rewritten as :func:`evaluable` does
    (its START still says ``stringListMember``): otherwise an idle slot of the annex would
    match nothing, count as no supply, and be ordered again."""
    found = classad2.ClassAd(str(ad))
    for name in ad.keys():
        value = ad[name]
        if isinstance(value, classad2.ExprTree) and _STRING_LIST.search(str(value)):
            found[name] = classad2.ExprTree(_STRING_LIST.sub(_as_member, str(value)))
    return found


def disk_kib(launch_request: Any) -> int:
    """The largest EBS volume the launch request names, in KiB (else EC2's usual root)."""
    sizes: list[int] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            size = node.get("VolumeSize")
            if isinstance(size, int):
                sizes.append(size)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)
    walk(launch_request)
    return max(sizes, default=DEFAULT_DISK_GIB) * 1024 * 1024


def type_slot(itype: InstanceType, annex: str, start: str | None, disk: int) -> classad2.ClassAd:
    """The partitionable slot a new instance of ``itype`` in ``annex`` advertises."""
    ad = classad2.ClassAd()
    ad.update({"MyType": "Machine", "Name": f"slot1@{itype.name}", "Cpus": itype.cpus,
               "Memory": itype.memory_mib, "GPUs": itype.gpus, "Disk": disk,
               "Arch": itype.arch, "OpSys": "LINUX", "HasFileTransfer": True,
               "SlotType": "Partitionable", "State": "Unclaimed",
               "AnnexName": annex, "IsAnnex": True, "EC2InstanceType": itype.name})
    expression = classad2.ExprTree(evaluable(start))
    ad["START"] = expression
    ad["Requirements"] = classad2.ExprTree("START")
    return ad


def matches(job: classad2.ClassAd, slot: classad2.ClassAd) -> bool:
    """Both sides' requirements hold, looked up the way a startd and a schedd do.  (In
    ``classad2``, ``a.matches(b)`` evaluates ``b``'s Requirements.)"""
    if not slot.matches(job):
        return False
    seen = classad2.ClassAd(str(slot))
    for name in job.keys():
        if name not in seen:
            seen[name] = job.lookup(name)
    return job.matches(seen)


def resources(slot: classad2.ClassAd) -> Requests:
    """What a slot has free, in the units jobs ask in."""
    def number(name: str) -> int:
        value = slot.eval(name) if name in slot else 0
        return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0
    return Requests(number("Cpus"), number("Memory"), number("GPUs"), number("Disk"))


def how_many(want: Requests, have: Requests) -> int:
    """How many jobs asking ``want`` fit in ``have`` at once."""
    counts = [have.cpus // want.cpus if want.cpus else None,
              have.memory_mib // want.memory_mib if want.memory_mib else None,
              have.gpus // want.gpus if want.gpus else None,
              have.disk_kib // want.disk_kib if want.disk_kib else None]
    known = [count for count in counts if count is not None]
    return min(known) if known else 1


def minus(have: Requests, want: Requests, jobs: int) -> Requests:
    return Requests(have.cpus - want.cpus * jobs, have.memory_mib - want.memory_mib * jobs,
                    have.gpus - want.gpus * jobs, have.disk_kib - want.disk_kib * jobs)
