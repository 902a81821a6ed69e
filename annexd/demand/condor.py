"""The HTCondor daemons as sources of ads: the local schedd's queue and the pool's collector,
through ``htcondor2``, asking only for the attributes the planner reads (a projection keeps a
query of a big queue cheap).  A thin adapter: no logic, so that everything else is tested with
``file:`` sources; it needs running daemons, which the test suite does not start.
"""
from __future__ import annotations

from typing import Any

import classad2

from annexd.demand.ads import DemandError, Source


def _htcondor() -> Any:
    import htcondor2
    return htcondor2


def local_schedd() -> Source:
    def read(constraint: str, projection: list[str]) -> list[classad2.ClassAd]:
        try:
            return list(_htcondor().Schedd().query(constraint=constraint,
                                                   projection=projection))
        except Exception as exc:  # htcondor2 raises HTCondorException and plain OSErrors
            raise DemandError(f"cannot query the local schedd: {exc}") from None
    return Source("the local schedd", read)


def pool_collector() -> Source:
    def read(constraint: str, projection: list[str]) -> list[classad2.ClassAd]:
        htcondor2 = _htcondor()
        try:
            return list(htcondor2.Collector().query(htcondor2.AdType.Startd,
                                                    constraint=constraint,
                                                    projection=projection))
        except Exception as exc:
            raise DemandError(f"cannot query the pool's collector: {exc}") from None
    return Source("the pool's collector", read)
