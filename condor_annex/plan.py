"""``condor_annex -plan JOBS_FILE config.json``: what an auto annex would order for the queue in
JOBS_FILE (``condor_q -long`` output), and why -- worked out here, with the daemon's own
planner (annexd.demand), without the daemon and without any AWS call.

The plan is for a new annex: it has no instances or slots yet, so every job it can run is
unmet demand.  The site's caps (``ANNEX_MAX_*``) are read from the configuration; the
owner's other live annexes, which only the daemon knows, are not counted.
"""
from __future__ import annotations

import json
import pwd
import os
import time
from typing import Any

from annexd.config import knobs
from annexd.usage.options import UsageError

from . import inputs
from .command import EXIT_OK, Command, lease_seconds
from .create import owners as owner_list

NOT_COUNTED = ("your other live annexes are not counted here (the daemon counts them "
               "against ANNEX_MAX_INSTANCES and ANNEX_MAX_COST_PER_USER)")


class Plan(Command):
    """Print what an auto annex would order for a recorded queue."""

    usage = ("condor_annex -plan JOBS_FILE -annex-name NAME [-owner USERS | -no-owner] "
             "[-lease-duration SECONDS] [-max-instances N] [-max-cost DOLLARS] [-json] "
             "CONFIG_FILE")
    flags = ("plan", "annex_name", "owner", "no_owner", "lease_duration", "duration",
             "max_instances", "max_cost", "region", "json")

    def run(self, values: dict[str, Any], positionals: list[str],
            settings: knobs.ClientSettings) -> int:
        """Plan and print; raises UsageError or InputError (the caller's exit statuses)."""
        from annexd.demand import ads, budget, cycle, planner
        from annexd.launch.plan import InvalidRequest

        if len(positionals) != 1:
            raise UsageError("-plan needs the fleet config file as the last argument")
        if not values.get("annex_name"):
            raise UsageError("-plan needs -annex-name NAME: jobs are routed to an annex by "
                             "its name (TargetAnnexName)")
        config = inputs.read_json(positionals[0], "the fleet config")
        names = owner_list(values)
        who = tuple(names) if names is not None else (pwd.getpwuid(os.getuid()).pw_name,)
        now = time.time()
        lease = lease_seconds(values) or settings.lease_duration
        try:
            plan = cycle.dry_plan(config, annex=values["annex_name"], owners=who,
                                  lease_seconds=lease, now=now)
        except InvalidRequest as error:
            raise inputs.InputError(f"{positionals[0]}: {error}") from None
        caps = knobs.Caps.load()
        limits = planner.Limits(
            now=now, lease_end=plan.lease_end,
            max_instances=(inputs.whole_number("-max-instances", values["max_instances"],
                                               "instances", 10_000)
                           if values.get("max_instances") else None),
            site_max_instances=caps.max_instances,
            budget=budget.Budget(
                annex_cap=(inputs.dollars("-max-cost", values["max_cost"])
                           if values.get("max_cost") else None),
                site_cap=caps.max_cost, user_cap=caps.max_cost_per_user))
        try:
            decision = cycle.assess(plan, ads.file_source(values["plan"]), limits)
        except ads.DemandError as error:
            raise inputs.InputError(str(error)) from None
        if caps.max_instances is not None or caps.max_cost_per_user is not None:
            decision.notes.append(NOT_COUNTED)
        self._print(plan.annex_id, decision, bool(values.get("json")))
        return EXIT_OK

    @staticmethod
    def _print(annex: str, decision: Any, as_json: bool) -> None:
        if as_json:
            print(json.dumps({
                "annex": annex, "jobs": decision.jobs, "supplied": decision.supplied,
                "orders": decision.orders, "capacity_units": decision.units,
                "held_back": decision.held_back,
                "held_by": decision.held_by,
                "unfit": [{"jobs": u.group.count, "reason": u.reason} for u in decision.unfit],
                "worst_case_cost": (None if decision.cost is None
                                    else round(decision.cost, 2)),
                "why": decision.lines()}, indent=2, sort_keys=True))
            return
        print(f"Plan for auto annex {annex} (nothing is ordered: -plan calls no AWS API):")
        for line in decision.lines():
            print(f"  {line}")
