"""Showing annexes: a table for people, ClassAds for HTCondor tools, and the pool's view.

How many of an annex's instances joined the pool comes from the collector (startd ads with
``AnnexName``); when the collector cannot be asked, that column says "unknown" and nothing
else suffers.
"""
from __future__ import annotations

import json
import time
from typing import Any

from annexd import knobs

from .command import EXIT_OK, Command, annex_request
from .options import UsageError

COLLECTOR_TIMEOUT_SECONDS = "5"


def in_pool(names: list[str]) -> dict[str, int] | None:
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
    return {name: len(found) for name, found in instances.items()}


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
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip()
                     for row in rows)


def classads(annexes: list[dict[str, Any]]) -> str:
    """One ``Annex`` ClassAd per annex, like the original's ``-classads``."""
    import classad2  # here: only -classad needs it
    ads = []
    for annex in annexes:
        ad = classad2.ClassAd()
        ad["MyType"] = "Annex"
        ad["Name"] = annex["name"]
        ad["AnnexName"] = annex["name"]
        ad["Owner"] = annex["owner"]
        ad["AnnexType"] = annex["type"]
        ad["Region"] = annex["region"]
        ad["LeaseExpiration"] = annex["lease_end"]
        if annex["instances"] is not None:  # unknown: no counts, rather than false zeros
            ad["TotalInstances"] = sum(annex["instances"].values())
            for state, count in annex["instances"].items():
                ad["NumInstances" + state.title().replace("-", "")] = count
        if annex.get("in_pool") is not None:
            ad["NumInstancesInPool"] = annex["in_pool"]
        ads.append(str(ad))
    return "\n".join(ads)


class Status(Command):
    """What each of your annexes holds now, and how many of its instances joined the pool."""

    usage = "condor_annex [-annex-name NAME] -status [-json | -classad]"
    flags = ("status", "annex_name", "json", "classad", "region", "access_key_file",
             "secret_key_file")

    def request(self, values: dict[str, Any], positionals: list[str],
                settings: knobs.ClientSettings) -> dict[str, Any]:
        if positionals:
            raise UsageError("-status takes no arguments")
        if values.get("json") and values.get("classad"):
            raise UsageError("give -json or -classad, not both")
        self.style = "json" if values.get("json") else "classad" if values.get("classad") \
            else "table"
        return annex_request("status", values, settings)

    def show(self, result: dict[str, Any], settings: knobs.ClientSettings) -> int:
        annexes = result["annexes"]
        joined = in_pool([annex["name"] for annex in annexes])
        for annex in annexes:
            annex["in_pool"] = None if joined is None else joined[annex["name"]]
        if self.style == "json":
            print(json.dumps(annexes, indent=2, sort_keys=True))
        elif self.style == "classad":
            print(classads(annexes))
        else:
            print(table(annexes, time.time()))
        return EXIT_OK
