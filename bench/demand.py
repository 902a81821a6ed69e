"""Demand-driven sizing, measured: our planner against the cluster-toolkit rule, on four traces.

    python bench/demand.py            # the full traces (docs/benchmarks.md records a run)
    python bench/demand.py --quick    # shorter traces, seconds; the test suite runs this

A fake clock and a simulated execute side: an instance advertises one partitionable slot
``boot_delay`` after it is launched; every tick the negotiator gives idle jobs, oldest first, to
advertised slots that match them -- ``classad2`` matching of the job ad against the slot ad,
with the annex's real START (annexd.demand.slots) -- and have the CPUs, memory and GPUs free;
a job runs for its runtime; an instance whose slot stays unclaimed for the idle timeout shuts
itself down (``STARTD_NOCLAIM_SHUTDOWN``) and is not replaced (an auto annex's orders are
RunInstances or one-time Spot Fleets, which replace nothing).

The planner (annexd.demand.planner) decides.  By default its orders go straight to the
simulated execute side; with ``--emulator`` they go to the AWS emulator (moto's server, as the
test suite runs it): each order is what the daemon's ``-auto`` loop (annexd.commands.auto)
sends for this Spot Fleet config, one one-time Spot Fleet per type
(annexd.launch.spotfleet.order_config: the annex's and the order's tags on its instances),
every cycle's supply is what DescribeInstances lists for the annex's tag (pending or
running), and an instance that leaves is terminated there -- so the decision time includes
listing the annex in AWS.  (moto fills a fleet at once; the boot delay is simulated either
way.)

Policies:

- **ours**: every ``interval`` (5 s), the planner on the idle jobs routed to the annex, with
  booting instances and unclaimed slots as supply, within ``-max-instances`` and the money
  rule; the lease is extended (within the caps) while there is demand.
- **baseline**: Google cluster-toolkit's HTCondor autoscaler as its sources and issue 26
  describe it: once a minute, nodes = ceil(sum of ``RequestCpus`` of idle and running jobs /
  CPUs of a node), at most 5; one instance type; memory and GPUs ignored; nodes seen idle at
  the query are deleted when the target is lower, after that minute's negotiation (no
  draining: one claimed in between is killed); nodes never shut themselves down.

Figures (``--quick`` prints one JSON line each, ``{"metric", "value"}``, ours then the
baseline's with ``baseline_`` in front), over all four traces:

- ``decision_s_p95``: from a job going idle to the first decision that counted it (the next
  cycle, plus the cycle's own computing time, measured);
- ``idle_to_running_s_p95``: from idle to claimed; a job never run counts until the trace's
  end (``jobs_never_run`` says how many);
- ``unclaimed_fraction``: instance-seconds advertised with nothing claimed / all
  instance-seconds (booting counted in the total, not as unclaimed);
- ``scale_down_lag_s``: the longest time from an instance's last job ending (with no demand
  it could take) to its end;
- ``budget_exceeded``: cycles in which money spent plus what the live instances would cost to
  the lease's end plus one minute was over the cap (for the baseline, which has no lease: to
  the end of the hour);
- ``claimed_instances_terminated``: instances ended with a job on them;
- ``jobs_never_run``, ``cost_usd`` (at the most each instance may cost per hour) and
  ``usd_per_job_hour`` (that over the job-hours run), to read the others by.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import classad2  # noqa: E402

from annexd.demand import budget as money  # noqa: E402
from annexd.demand import cycle, jobs, planner, slots, supply  # noqa: E402
from annexd.demand.jobs import Requests  # noqa: E402
from annexd.launch import spotfleet  # noqa: E402
from annexd.launch.base import ORDER_TAG  # noqa: E402
from annexd.launch.plan import AUTO_IDLE_SECONDS  # noqa: E402
from annexd_lambda.lease import ANNEX_TAG  # noqa: E402
from annex_ec2.closedpipe import quiet_when_output_closes  # noqa: E402

ANNEX, OWNER = "burst", "alice"
TICK = 5                    # the simulation's step, and the negotiator's cycle (s)
BOOT_DELAY = 90             # launch to advertised slot (s)
#: STARTD_NOCLAIM_SHUTDOWN (s): an auto annex's default idle time, about one boot delay (the
#: ski-rental rule, annexd.launch.plan.AUTO_IDLE_SECONDS); 120 s left each instance idle 6% of
#: a half-hour job's life after its last job.
IDLE_TIMEOUT = AUTO_IDLE_SECONDS
LEASE = 3600                # an auto annex's lease, extended while demand lasts (s)
MAX_INSTANCES = 50          # -max-instances
MAX_COST = 50.0             # -max-cost (US dollars), per trace
TYPES = ("m5.large", "m5.xlarge", "r5.xlarge")
BASELINE_TYPE, BASELINE_MAX_NODES, BASELINE_INTERVAL = "m5.xlarge", 5, 60
OUR_INTERVAL = 5
REQ = ('(TARGET.Arch == "X86_64") && (TARGET.OpSys == "LINUX") && (TARGET.Disk >= RequestDisk)'
       ' && (TARGET.Memory >= RequestMemory) && (TARGET.HasFileTransfer)')
#: The job mix: (share, CPUs, memory MiB).  One in ten needs more memory than the baseline's
#: node has: the anchor's users' first complaint.
SHAPES = ((0.7, 1, 2048), (0.2, 4, 8192), (0.1, 2, 24576))


def job_ad(cpus: int, memory: int) -> classad2.ClassAd:
    ad = classad2.ClassAd()
    ad.update({"Owner": OWNER, "JobStatus": 1, "TargetAnnexName": ANNEX, "RequestCpus": cpus,
               "RequestMemory": memory, "RequestDisk": 1000})
    ad["Requirements"] = classad2.ExprTree(REQ)
    return ad


AD_OF = {(cpus, memory): job_ad(cpus, memory) for _, cpus, memory in SHAPES}


@dataclass
class Job:
    number: int
    submit: float
    runtime: float
    cpus: int
    memory: int
    started: float | None = None
    decided: float | None = None

    @property
    def requests(self) -> Requests:
        return Requests(self.cpus, self.memory, 0, 1000)

    @property
    def ad(self) -> classad2.ClassAd:
        return AD_OF[(self.cpus, self.memory)]


def shape(number: int) -> tuple[int, int]:
    """The job mix, deterministically: the n-th job's shape by its place in ten."""
    slot, edge = (number * 7) % 10, 0.0
    for share, cpus, memory in SHAPES:
        edge += share * 10
        if slot < edge:
            return cpus, memory
    return SHAPES[-1][1:]


# --- traces ---------------------------------------------------------------------------------
def _jobs(times: list[float], runtime: Callable[[int], float]) -> list[Job]:
    """Jobs submitted at ``times``, each a fraction of a tick later (spread evenly, so no
    job goes idle exactly at a cycle)."""
    return [Job(n, t + TICK * ((n * 0.618034) % 1), runtime(n), *shape(n))
            for n, t in enumerate(times)]


def traces(scale: float) -> dict[str, tuple[list[Job], float]]:
    """name -> (jobs, horizon in s).  ``scale`` shrinks the job counts (--quick)."""
    def count(n: int) -> int:
        return max(4, int(n * scale))
    step = _jobs([0.0] * count(60), lambda n: 3600)
    burst = _jobs([b * 3600.0 for b in range(3) for _ in range(count(40))], lambda n: 1800)
    sine_times, total, t = [], 0.0, 0.0
    while t < 7200:
        total += TICK * 0.02 * scale * (1 + math.sin(2 * math.pi * t / 3600))
        while total >= 1:
            sine_times.append(t)
            total -= 1
        t += TICK
    sine = _jobs(sine_times, lambda n: 1800)
    drain = _jobs([0.0] * count(80), lambda n: 600 + (n * 397) % 3000)
    return {"step": (step, 5400.0), "burst": (burst, 12600.0), "sine": (sine, 10800.0),
            "drain": (drain, 5400.0)}


# --- the execute side -----------------------------------------------------------------------
@dataclass
class Node:
    name: str
    choice: planner.Choice
    launched: float
    free: Requests
    running: list[Job] = field(default_factory=list)
    idle_since: float | None = None
    ended: float | None = None

    @property
    def ready_at(self) -> float:
        return self.launched + BOOT_DELAY

    def advertised(self, now: float) -> bool:
        return self.ended is None and now >= self.ready_at

    def slot_ad(self) -> classad2.ClassAd:
        ad = classad2.ClassAd(str(self.choice.slot))
        ad.update({"EC2InstanceID": self.name, "Cpus": self.free.cpus,
                   "Memory": self.free.memory_mib, "GPUs": self.free.gpus,
                   "State": "Unclaimed"})
        return ad


class Emulated:
    """The annex's instances in the AWS emulator: launched, listed and terminated there."""

    REGION = "us-east-1"

    def __init__(self) -> None:
        from localaws import fixtures
        from localaws.moto_server import MotoServer
        self.image = fixtures.WORKER_IMAGE
        self.server = MotoServer().start()
        self.ec2 = fixtures.client("ec2", self.server.url, self.REGION)
        self.calls = self.orders = 0
        self.plan = setup()[0]     # the auto annex's Spot Fleet config: every order's template

    def reset(self) -> None:
        self.server.reset()

    def launch(self, choice: planner.Choice, count: int) -> list[str]:
        """One order as the daemon sends it for a Spot Fleet annex: a one-time fleet of
        ``count`` instances of one type (annexd.launch.spotfleet.order_config), then the
        instances it launched, by its order tag (moto fills a fleet at once)."""
        self.orders += 1
        token = f"bench{self.orders}"
        config = spotfleet.order_config(self.plan.launch_request, choice.instance_type,
                                        choice.weight, count, token,
                                        time.time() + spotfleet.ORDER_WINDOW_SECONDS)
        for spec in config["LaunchSpecifications"]:
            spec["ImageId"] = self.image
        self.calls += 2
        self.ec2.request_spot_fleet(SpotFleetRequestConfig=config)
        found = self.ec2.describe_instances(Filters=[
            {"Name": f"tag:{ORDER_TAG}", "Values": [token]}])
        return sorted(i["InstanceId"] for r in found["Reservations"] for i in r["Instances"])

    def listed(self) -> list[supply.Instance]:
        found = []
        for page in self.ec2.get_paginator("describe_instances").paginate(Filters=[
                {"Name": f"tag:{ANNEX_TAG}", "Values": [ANNEX]},
                {"Name": "instance-state-name", "Values": ["pending", "running"]}]):
            self.calls += 1
            found += [supply.Instance(i["InstanceId"], i["InstanceType"])
                      for reservation in page["Reservations"] for i in reservation["Instances"]]
        return found

    def terminate(self, instance_id: str) -> None:
        self.calls += 1
        self.ec2.terminate_instances(InstanceIds=[instance_id])

    def stop(self) -> None:
        self.server.stop()


class Pool:
    """The simulated execute side, and what it measures."""

    def __init__(self, jobs_: list[Job], options: list[planner.Choice],
                 aws: Emulated | None = None):
        self.jobs, self.nodes, self.aws = jobs_, [], aws
        self.options = {c.instance_type: c for c in options}
        self.finish: list[tuple[float, Job, Node]] = []
        self.instance_seconds = self.unclaimed_seconds = self.spent = self.job_seconds = 0.0
        self.killed = self.over_budget = 0
        self.lags: list[float] = []
        self._match: dict[tuple[tuple[int, int], str], bool] = {}

    def live(self) -> list[Node]:
        return [n for n in self.nodes if n.ended is None]

    def idle_jobs(self, now: float) -> list[Job]:
        return [j for j in self.jobs if j.submit <= now and j.started is None]

    def launch(self, name: str, now: float, count: int = 1) -> None:
        choice = self.options[name]
        ids = (self.aws.launch(choice, count) if self.aws else
               [f"i-{len(self.nodes) + n:05d}" for n in range(count)])
        self.nodes += [Node(i, choice, now, slots.resources(choice.slot)) for i in ids]

    def instances(self) -> list[supply.Instance]:
        """The annex's instances as AWS lists them (pending or running), in launch order (so
        that moto's random instance IDs do not change the figures from run to run)."""
        if self.aws:
            order = {node.name: number for number, node in enumerate(self.nodes)}
            return sorted(self.aws.listed(), key=lambda i: order.get(i.instance_id, len(order)))
        return [supply.Instance(n.name, n.choice.instance_type) for n in self.live()]

    def matches(self, job: Job, node: Node) -> bool:
        key = ((job.cpus, job.memory), node.choice.instance_type)
        if key not in self._match:
            self._match[key] = slots.matches(job.ad, node.choice.slot)
        return self._match[key]

    def negotiate(self, now: float) -> None:
        """Oldest job first, each to the matching slot with room that HTCondor's default
        NEGOTIATOR_PRE_JOB_RANK prefers: fewest CPUs, then least memory (best fit)."""
        ready = [n for n in self.live() if n.advertised(now)]
        for job in self.idle_jobs(now):
            fits = [n for n in ready
                    if slots.how_many(job.requests, n.free) >= 1 and self.matches(job, n)]
            if not fits:
                continue
            node = min(fits, key=lambda n: (n.free.cpus, n.free.memory_mib, n.launched))
            node.free = slots.minus(node.free, job.requests, 1)
            node.running.append(job)
            node.idle_since = None
            job.started = now
            self.finish.append((now + job.runtime, job, node))

    def complete(self, now: float) -> None:
        done = [f for f in self.finish if f[0] <= now]
        self.finish = [f for f in self.finish if f[0] > now]
        for _, job, node in done:
            if node.ended is None and job in node.running:
                node.running.remove(job)
                node.free = slots.minus(node.free, job.requests, -1)
                if not node.running:
                    node.idle_since = now

    def end(self, node: Node, now: float, scale_down: bool = True) -> None:
        if node.running:
            self.killed += 1
            for job in node.running:     # the job goes back to the queue
                job.started = None
                self.finish = [f for f in self.finish if f[1] is not job]
            node.running = []
        elif scale_down and node.idle_since is not None:
            self.lags.append(now - node.idle_since)
        node.ended = now
        if self.aws:
            self.aws.terminate(node.name)

    def account(self, now: float) -> None:
        for node in self.live():
            self.instance_seconds += TICK
            self.spent += (node.choice.hourly or 0.0) * TICK / 3600
            self.job_seconds += len(node.running) * TICK
            if node.advertised(now):
                if node.idle_since is None and not node.running:
                    node.idle_since = now
                if not node.running:
                    self.unclaimed_seconds += TICK

    def shut_down_idle(self, now: float) -> None:
        """The instance side: an advertised slot unclaimed for the idle timeout leaves."""
        for node in self.live():
            if (node.advertised(now) and not node.running and node.idle_since is not None
                    and now - node.idle_since >= IDLE_TIMEOUT):
                self.end(node, now)

    def committed(self, now: float, lease_end: float) -> float | None:
        return money.committed(money.Budget(spent=self.spent),
                               [n.choice.hourly for n in self.live()], now, lease_end)


# --- the policies ---------------------------------------------------------------------------
class Ours:
    interval = OUR_INTERVAL
    name = "ours"

    def __init__(self, plan: Any, options: list[planner.Choice], max_cost: float = MAX_COST):
        self.plan, self.options, self.max_cost = plan, options, max_cost
        self.lease_end = 0.0

    def start(self, now: float) -> None:
        self.lease_end = now + LEASE

    def cycle(self, pool: Pool, now: float) -> None:
        started = time.perf_counter()
        idle = pool.idle_jobs(now)
        if idle or any(n.running for n in pool.live()):
            self._extend(pool, now)
        if idle:
            ads = [n.slot_ad() for n in pool.live() if n.advertised(now)]
            instances = pool.instances()
            limits = planner.Limits(now=now, lease_end=self.lease_end,
                                    max_instances=MAX_INSTANCES,
                                    budget=money.Budget(annex_cap=self.max_cost,
                                                        spent=pool.spent))
            decision = planner.decide(jobs.group(j.ad for j in idle), self.options, instances,
                                      ads, limits)
            for name, count in decision.orders.items():
                pool.launch(name, now, count)
        took = time.perf_counter() - started
        for job in idle:
            if job.decided is None:
                job.decided = now + took

    def _extend(self, pool: Pool, now: float) -> None:
        """Extend the lease while demand lasts, if the caps allow it."""
        wanted = now + LEASE
        total = pool.committed(now, wanted)
        if (wanted > self.lease_end
                and money.over(money.Budget(annex_cap=self.max_cost), total) is None):
            self.lease_end = wanted

    def after_negotiation(self, pool: Pool, now: float) -> None:
        if now >= self.lease_end:                  # the lease function
            for node in pool.live():
                pool.end(node, now, scale_down=False)

    def over_budget(self, pool: Pool, now: float) -> bool:
        total = pool.committed(now, max(self.lease_end, now))
        return total is not None and total > self.max_cost + 1e-9


class Baseline:
    interval = BASELINE_INTERVAL
    name = "baseline"

    def __init__(self, options: list[planner.Choice]):
        self.choice = next(c for c in options if c.instance_type == BASELINE_TYPE)
        self.seen_idle: list[Node] = []

    def start(self, now: float) -> None:
        pass

    def cycle(self, pool: Pool, now: float) -> None:
        started = time.perf_counter()
        queued = [j for j in pool.jobs if j.submit <= now and j.started is None]
        running = [j for n in pool.live() for j in n.running]
        cpus = sum(j.cpus for j in queued + running)
        target = min(BASELINE_MAX_NODES, math.ceil(cpus / self.choice.itype.cpus))
        live = pool.live()
        if target > len(live):
            pool.launch(self.choice.instance_type, now, target - len(live))
        excess = len(live) - target
        idle = [n for n in live if n.advertised(now) and not n.running]
        self.seen_idle = idle[:max(0, excess)]
        took = time.perf_counter() - started
        for job in queued:
            if job.decided is None:
                job.decided = now + took

    def after_negotiation(self, pool: Pool, now: float) -> None:
        for node in self.seen_idle:          # deleted as seen at the query: no draining
            if node.ended is None:
                pool.end(node, now)
        self.seen_idle = []

    def over_budget(self, pool: Pool, now: float) -> bool:
        total = pool.committed(now, now + LEASE)
        return total is not None and total > MAX_COST + 1e-9


# --- running a trace ------------------------------------------------------------------------
def run_trace(policy: Any, jobs_: list[Job], horizon: float,
              options: list[planner.Choice], aws: Emulated | None = None) -> Pool:
    if aws:
        aws.reset()
    pool = Pool(jobs_, options, aws)
    policy.start(0.0)
    now = 0.0
    while now <= horizon:
        pool.complete(now)
        if now % policy.interval == 0:
            policy.cycle(pool, now)
            pool.over_budget += policy.over_budget(pool, now)
        pool.negotiate(now)
        policy.after_negotiation(pool, now)
        if isinstance(policy, Ours):
            pool.shut_down_idle(now)
        pool.account(now)
        now += TICK
    return pool


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(fraction * len(ordered)) - 1)] if ordered \
        else 0.0


def figures(pools: list[tuple[Pool, float]]) -> dict[str, Any]:
    decisions, waits, never = [], [], 0
    for pool, horizon in pools:
        for job in pool.jobs:
            # A job claimed before any cycle saw it was decided by the supply already there.
            seen = [t for t in (job.decided, job.started) if t is not None]
            decisions.append(min(seen, default=horizon) - job.submit)
            if job.started is None:
                never += 1
                waits.append(horizon - job.submit)
            else:
                waits.append(job.started - job.submit)
    seconds = sum(p.instance_seconds for p, _ in pools)
    return {
        "decision_s_p95": round(percentile(decisions, 0.95), 2),
        "idle_to_running_s_p95": round(percentile(waits, 0.95), 1),
        "unclaimed_fraction": round(sum(p.unclaimed_seconds for p, _ in pools) / seconds, 4)
        if seconds else 0.0,
        # None: nothing was scaled down (the instances were busy to the end).
        "scale_down_lag_s": max((lag for p, _ in pools for lag in p.lags), default=None),
        "budget_exceeded": sum(p.over_budget for p, _ in pools),
        "claimed_instances_terminated": sum(p.killed for p, _ in pools),
        "jobs_never_run": never,
        "cost_usd": round(sum(p.spent for p, _ in pools), 2),
        "usd_per_job_hour": round(sum(p.spent for p, _ in pools) * 3600 /
                                  max(1.0, sum(p.job_seconds for p, _ in pools)), 4),
    }



def setup() -> tuple[Any, list[planner.Choice]]:
    """The auto annex the traces run against: a Spot Fleet config of TYPES."""
    config = {"IamFleetRole": "arn:aws:iam::123456789012:role/r",
              "AllocationStrategy": "priceCapacityOptimized", "TargetCapacity": 1,
              "LaunchSpecifications": [{"ImageId": "ami-1", "InstanceType": t}
                                       for t in TYPES]}
    plan = cycle.dry_plan(config, annex=ANNEX, owners=(OWNER,), lease_seconds=LEASE, now=0)
    options, _ = planner.choices(plan)
    return plan, options


@quiet_when_output_closes
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="shorter traces (seconds)")
    parser.add_argument("--table", action="store_true", help="also print a markdown table")
    parser.add_argument("--emulator", action="store_true",
                        help="order, list and terminate instances in the AWS emulator")
    parser.add_argument("--traces", default="step,burst,sine,drain",
                        help="which traces, comma-separated")
    parser.add_argument("--interval", type=int, default=OUR_INTERVAL,
                        help=f"our cycle in seconds, a multiple of {TICK} (default "
                             f"{OUR_INTERVAL})")
    args = parser.parse_args(argv)
    if args.interval <= 0 or args.interval % TICK:
        parser.error(f"--interval: a positive multiple of {TICK}")
    Ours.interval = args.interval
    chosen = [name.strip() for name in args.traces.split(",") if name.strip()]
    unknown = sorted(set(chosen) - set(traces(1.0)))
    if unknown or not chosen:
        parser.error(f"--traces: unknown {', '.join(unknown) or 'empty list'}")
    aws = Emulated() if args.emulator else None
    try:
        results = run(0.25 if args.quick else 1.0, chosen, aws)
    finally:
        if aws:
            aws.stop()
    if args.table:
        print(table(results))
    return 0


def run(scale: float, chosen: list[str], aws: Emulated | None
        ) -> dict[str, dict[str, dict[str, Any]]]:
    """Both policies on the chosen traces; prints the JSON lines, returns every figure."""
    plan, options = setup()
    results: dict[str, dict[str, dict[str, Any]]] = {}
    for policy_name in ("ours", "baseline"):
        runs, calls = [], aws.calls if aws else 0
        for trace, (jobs_, horizon) in traces(scale).items():
            if trace not in chosen:
                continue
            policy = Ours(plan, options) if policy_name == "ours" else Baseline(options)
            pool = run_trace(policy, jobs_, horizon, options, aws)
            results.setdefault(trace, {})[policy_name] = figures([(pool, horizon)])
            runs.append((pool, horizon))
        overall = figures(runs)
        if aws:
            overall["aws_calls"] = aws.calls - calls
        results.setdefault("all", {})[policy_name] = overall
        prefix = "" if policy_name == "ours" else "baseline_"
        for metric, value in overall.items():
            print(json.dumps({"metric": prefix + metric, "value": value}), flush=True)
    return results


GOALS = {"decision_s_p95": "≤ 10", "idle_to_running_s_p95": f"≤ {BOOT_DELAY + 30}",
         "unclaimed_fraction": "≤ 0.05", "scale_down_lag_s": f"≤ {IDLE_TIMEOUT + 30}",
         "budget_exceeded": "0", "claimed_instances_terminated": "0", "jobs_never_run": "",
         "cost_usd": "", "usd_per_job_hour": "", "aws_calls": ""}


def table(results: dict[str, dict[str, dict[str, float]]]) -> str:
    traces_ = [t for t in results if t != "all"] + ["all"]
    head = "| metric | goal | " + " | ".join(f"{t}: ours / baseline" for t in traces_) + " |"
    rows = [head, "|" + "---|" * (len(traces_) + 2)]
    def shown(value: Any) -> str:
        return "—" if value is None else str(value)
    for metric, goal in GOALS.items():
        if all(metric not in results[t]["ours"] for t in traces_):
            continue
        cells = [f"{shown(results[t]['ours'].get(metric))} / "
                 f"{shown(results[t]['baseline'].get(metric))}" for t in traces_]
        rows.append(f"| `{metric}` | {goal} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


if __name__ == "__main__":
    sys.exit(main())
