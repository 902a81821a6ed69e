"""Showing annexes: a table for people, ClassAds for HTCondor tools, and the pool's view.

How many of an annex's instances joined the pool comes from the collector (startd ads with
``AnnexName``); when the collector cannot be asked, that column says "unknown" and nothing
else suffers.
"""
from __future__ import annotations

import hashlib
import json
import time
from typing import Any

from annexd.config import knobs

from .command import FROM_INSTANCE, EXIT_OK, Command, annex_request, key_files
from annexd.usage.options import UsageError

COLLECTOR_TIMEOUT_SECONDS = "5"


def in_pool(names: list[str]) -> dict[str, set[str]] | None:
    """Per annex name, its distinct instances with a startd in the pool; None if unknown.

    One collector query for all the annexes shown (not one per annex: an unreachable
    collector would otherwise cost its timeout once per annex).
    """
    collector_host = knobs.raw("COLLECTOR_HOST")
    if not collector_host or not names:
        return None
    try:
        import htcondor2  # here: only -status asks the collector
        htcondor2.param["QUERY_TIMEOUT"] = COLLECTOR_TIMEOUT_SECONDS
        ads = htcondor2.Collector(collector_host).query(
            htcondor2.AdType.Startd, constraint="AnnexName =!= undefined",
            projection=["AnnexName", "EC2InstanceID", "Machine"])
    except Exception:  # unreachable, unauthenticated, unknown host: degrade, don't fail
        return None
    wanted = set(names)
    instances: dict[str, set[str]] = {name: set() for name in names}
    for ad in ads:
        name = ad.get("AnnexName")
        if name in wanted:
            instances[name].add(ad.get("EC2InstanceID", ad.get("Machine")))
    return instances


def _left(lease_end: int, now: float) -> str:
    seconds = int(lease_end - now)
    if seconds <= 0:
        return "expired"
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d} left"


def _instances(counts: dict[str, int] | None) -> str:
    """Instance counts by state; None: nobody could ask AWS (root without keys, and a
    daemon without an identity that may see the annex)."""
    if counts is None:
        return "unknown"
    return ", ".join(f"{state} {count}" for state, count in sorted(counts.items())) or "none"


def _lease(annex: dict[str, Any], now: float) -> str:
    """Time left only where a lease is in force; history shows what became of the annex."""
    lease = annex.get("lease", "enforced")
    if annex.get("unknown_to_this_release"):  # a newer release's row: its state, as written
        return f"({annex['state']}: not known to this release)"
    if lease == "ended":
        return f"({annex['state']})"
    if lease == "missing":
        return "(lease missing)"
    return f"({_left(annex['lease_end'], now)})"


def table(annexes: list[dict[str, Any]], now: float) -> str:
    if not annexes:
        return "You have no annexes."
    rows = [("NAME", "OWNER", "TYPE", "REGION", "LEASE ENDS", "", "INSTANCES", "IN POOL")]
    for annex in annexes:
        states = _instances(annex["instances"])
        rows.append((annex["name"], annex["owner"], annex["type"], annex["region"],
                     time.strftime("%Y-%m-%d %H:%M", time.localtime(annex["lease_end"])),
                     _lease(annex, now), states,
                     "unknown" if annex.get("in_pool") is None else str(annex["in_pool"])))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip()
                      for row in rows] + launch_lines(annexes) + auto_lines(annexes))


def launch_lines(annexes: list[dict[str, Any]]) -> list[str]:
    """Under the table, for each annex the same name again grew: its launches, all under
    its one lease (the INSTANCES column counts them together)."""
    lines = []
    for annex in annexes:
        launches = annex.get("launches") or []
        if len(launches) < 2:
            continue
        lines += ["", f"{annex['name']}: {len(launches)} launches under its lease"]
        for launch in launches:
            when = time.strftime("%Y-%m-%d %H:%M", time.localtime(launch["at"]))
            made = launch.get("spot_fleet_request_id") or launch.get("fleet_id") or \
                " ".join(launch.get("instance_ids") or ())
            lines.append(f"  {launch['number']}: capacity {launch['capacity']}, "
                         f"{launch['state']} {when}" + (f", {made}" if made else ""))
    return lines


def auto_lines(annexes: list[dict[str, Any]]) -> list[str]:
    """Under the table, for each auto annex: its size and limits, demand, and the last
    order and why."""
    lines = []
    for annex in annexes:
        auto = annex.get("auto")
        if auto is None:
            continue
        cost = "" if auto.get("max_cost") is None else f", at most ${auto['max_cost']:.2f}"
        size = "not looked at yet" if auto.get("instances") is None else \
            f"{auto['instances']} instance(s) now"
        if auto.get("coming"):  # a fleet order AWS is still filling
            size += f" ({auto['coming']} more ordered, not yet launched)"
        lines += ["", f"{annex['name']} sizes itself: {size}, up to "
                      f"{auto['max_instances']}{cost}"]
        if auto.get("jobs") is not None:
            lines.append(f"  demand: {auto['jobs']} idle job(s), "
                         f"{auto.get('claimed_slots', 0)} claimed slot(s)")
        lines += [f"  {line}" for line in auto.get("why", [])]
        if auto.get("lease"):
            lines.append(f"  lease: {auto['lease']}")
        last = auto.get("last_order")
        if last:
            when = time.strftime("%H:%M:%S", time.localtime(last["at"]))
            lines.append(f"  last order ({when}, {last['state']}): {last['count']} x "
                         f"{last['instance_type']}, because {last['why']}")
        if auto.get("error"):
            lines.append(f"  trouble: {auto['error']}")
    return lines


def _state_name(state: str) -> str:
    """An instance state as the original's attribute names spell it: shutting-down ->
    ShuttingDown, in-pool -> InPool."""
    return state.title().replace("-", "")


def key_digest(access_key_file: str | None) -> str | None:
    """The MD5 of the access key file's contents, which the original put in each annex ad's
    ``Name`` ("the annex ID is only unique per-credential", StatusReply.cpp); None if there
    is no such file (FROM INSTANCE) or it cannot be read."""
    if not access_key_file or access_key_file == FROM_INSTANCE:
        return None
    try:
        with open(access_key_file, "rb") as handle:
            return hashlib.md5(handle.read(), usedforsecurity=False).hexdigest()
    except OSError:
        return None


def classads(annexes: list[dict[str, Any]], digest: str | None = None) -> str:
    """One ``Annex`` ad per annex in old ClassAd syntax, as ``condor_status -l`` prints ads
    (and as the original's ``-classads`` did): its attributes ``AnnexID``, ``Name`` (``ID
    [md5 of the access key file]``), ``TotalInstances``, ``NumInstances<State>`` and
    ``<State>InstancesList`` (ClassAd lists; instances whose startd is in the pool count as
    ``InPool``, as there), plus ours."""
    import classad2  # here: only -classad needs it
    ads = []
    for annex in annexes:
        ad = classad2.ClassAd()
        ad["MyType"] = "Annex"
        ad["AnnexID"] = annex["name"]
        ad["Name"] = f"{annex['name']} [{digest}]" if digest else annex["name"]
        ad["AnnexName"] = annex["name"]
        ad["Owner"] = annex["owner"]
        ad["AnnexType"] = annex["type"]
        ad["Region"] = annex["region"]
        ad["LeaseExpiration"] = annex["lease_end"]
        if annex.get("launches"):  # the same name again adds launches under one lease
            ad["NumLaunches"] = len(annex["launches"])
        if annex["instances"] is not None:  # unknown: no counts, rather than false zeros
            ad["TotalInstances"] = sum(annex["instances"].values())
        if annex.get("in_pool") is not None:
            ad["NumInstancesInPool"] = annex["in_pool"]
        if "instance_ids" in annex:
            for state, ids in _with_in_pool(annex).items():
                ad["NumInstances" + _state_name(state)] = len(ids)
                ad[_state_name(state) + "InstancesList"] = sorted(ids)
        else:  # a finished annex, from the journal only, or counts without IDs
            for state, count in (annex["instances"] or {}).items():
                ad["NumInstances" + _state_name(state)] = count
        ads.append(ad.printOld())
    return "\n".join(ads).rstrip("\n")


def _with_in_pool(annex: dict[str, Any]) -> dict[str, list[str]]:
    """The annex's instance IDs by state, those in the pool moved to "in-pool"."""
    joined = annex.get("in_pool_ids") or set()
    by_state: dict[str, list[str]] = {}
    for state, ids in (annex.get("instance_ids") or {}).items():
        for instance in ids:
            by_state.setdefault("in-pool" if instance in joined else state, []).append(instance)
    return by_state


def instance_lists(annexes: list[dict[str, Any]]) -> str:
    """-status -long: each annex's instance IDs, by state."""
    blocks = []
    for annex in annexes:
        states = annex.get("instance_ids") or {}
        lines = [f"  {state:<14}{' '.join(sorted(ids))}" for state, ids in sorted(states.items())]
        blocks.append(f"Instances of {annex['name']} ({annex['region']}):\n" +
                      ("\n".join(lines) if lines else "  none"))
    return "\n".join(blocks)


class Status(Command):
    """What each of your annexes holds now, and how many of its instances joined the pool."""

    usage = "condor_annex [-annex-name NAME] -status [-long] [-json | -classad]"
    flags = ("status", "annex_name", "json", "classad", "long", "region", "access_key_file",
             "secret_key_file")

    def request(self, values: dict[str, Any], positionals: list[str],
                settings: knobs.ClientSettings) -> dict[str, Any]:
        if positionals:
            raise UsageError("-status takes no arguments")
        if values.get("json") and values.get("classad"):
            raise UsageError("give -json or -classad, not both")
        self.style = "json" if values.get("json") else "classad" if values.get("classad") \
            else "table"
        self.long = bool(values.get("long"))
        request = annex_request("status", values, settings)
        self.digest = key_digest((key_files(values, settings) or (None,))[0])
        if self.long or self.style == "classad":
            request["instance_ids"] = True
        return request

    def show(self, result: dict[str, Any], settings: knobs.ClientSettings) -> int:
        annexes = result["annexes"]
        joined = in_pool([annex["name"] for annex in annexes])
        for annex in annexes:
            annex["in_pool"] = None if joined is None else len(joined[annex["name"]])
        if self.style == "json":
            print(json.dumps(annexes, indent=2, sort_keys=True))
        elif self.style == "classad":
            for annex in annexes:
                annex["in_pool_ids"] = set() if joined is None else joined[annex["name"]]
            print(classads(annexes, self.digest))
        else:
            print(table(annexes, time.time()))
            if self.long and annexes:
                print()
                print(instance_lists(annexes))
        return EXIT_OK
