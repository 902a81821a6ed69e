"""The admin's caps hold on lease changes too, with the numbers in the refusal, and a refused
change changes nothing: not the journal, not the rule's Input, not the instances' lease end
(issue 17, finding 4)."""
from __future__ import annotations

import json
import signal
import sqlite3

import pytest

from annexd.money import costs
from annexd import launch
from annexd.config.knobs import Caps
from annexd.launch.plan import AnnexPlan, InvalidRequest
from localaws.pool import AnnexDaemon, LocalPool
from localaws.wait import log_contains, wait_for

from conftest import BUCKET, SECRET, SPOT_CONFIG

YEAR = 366 * 86400


def everything_of(aws, pool: LocalPool, name: str) -> dict:
    """What a lease change could touch: the journal's row, the rule's Input, and the lease
    end the instances read (every object's metadata in the bucket)."""
    db = sqlite3.connect(pool.journal_file)
    try:
        journal = db.execute("SELECT state, lease_end FROM requests WHERE annex_id = ?",
                             (name,)).fetchall()
    finally:
        db.close()
    objects = {o["Key"]: aws.s3.head_object(Bucket=BUCKET, Key=o["Key"])["Metadata"]
               for o in aws.s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])}
    return {"journal": journal, "input": aws.target_input(name), "objects": objects}


def capped(aws, moto_server, tmp_path, *knobs: str) -> LocalPool:
    return LocalPool(str(tmp_path)).write(moto_server.url, secret=SECRET, extra="\n".join([
        f"ANNEX_DEFAULT_LEASE_FUNCTION_ARN = {aws.lease_arn}", *knobs]))


def test_the_cost_cap_holds_on_a_lease_change(aws, moto_server, tmp_path):
    """Was: with ANNEX_MAX_COST = 5 a 30-day create was refused, but a 1-hour create
    extended to 366 days was accepted (about $843 at worst)."""
    pool = capped(aws, moto_server, tmp_path, "ANNEX_MAX_COST = 5")
    with AnnexDaemon(pool):
        month = pool.condor_annex("-annex-name", "month", "-count", "1", "-lease-duration",
                                  str(30 * 86400), SPOT_CONFIG)
        assert month.returncode == 4 and "over the limit of $5.00 (ANNEX_MAX_COST)" in \
            month.stderr
        made = pool.condor_annex("-annex-name", "hour", "-count", "1", "-lease-duration",
                                 "3600", SPOT_CONFIG)
        assert made.returncode == 0, made.stderr
        before = everything_of(aws, pool, "hour")
        longer = pool.condor_annex("-annex-name", "hour", "-lease-duration", str(YEAR))
        assert longer.returncode == 4, longer.stdout
        assert "with that lease end annex 'hour' may cost up to $843." in longer.stderr
        assert "(1 instance x $0.0960/h x 8784.0" in longer.stderr
        assert "h since it started), over the limit of $5.00 (ANNEX_MAX_COST)" in longer.stderr
        assert everything_of(aws, pool, "hour") == before
        a_bit = pool.condor_annex("-annex-name", "hour", "-lease-duration", "7200")
        assert a_bit.returncode == 0, a_bit.stderr  # 3 h at $0.096: within the cap
    assert everything_of(aws, pool, "hour")["input"]["LeaseExpiration"] > \
        before["input"]["LeaseExpiration"]


def test_the_instance_cap_holds_on_a_lease_change_but_an_earlier_end_always_passes(
        aws, moto_server, tmp_path):
    pool = capped(aws, moto_server, tmp_path, "ANNEX_MAX_INSTANCES = 4")
    with AnnexDaemon(pool) as daemon:
        made = pool.condor_annex("-annex-name", "two", "-count", "2", "-lease-duration",
                                 "3600", SPOT_CONFIG)
        assert made.returncode == 0, made.stderr
        pool.add_knobs("ANNEX_MAX_INSTANCES = 1\n")  # the admin lowers the cap
        daemon.process.send_signal(signal.SIGHUP)
        wait_for(log_contains(pool.log_file, "configuration re-read"), "the re-read", timeout=10)
        before = everything_of(aws, pool, "two")
        longer = pool.condor_annex("-annex-name", "two", "-lease-duration", "7200")
        assert longer.returncode == 4
        assert "your live annexes may run 2 instances, over the limit of 1 " \
               "(ANNEX_MAX_INSTANCES)" in longer.stderr
        assert everything_of(aws, pool, "two") == before
        shorter = pool.condor_annex("-annex-name", "two", "-lease-duration", "600")
        assert shorter.returncode == 0, shorter.stderr
    assert everything_of(aws, pool, "two")["input"]["LeaseExpiration"] < \
        before["input"]["LeaseExpiration"]


def fleet_plan(request: dict, created_at: int = 1_000_000) -> AnnexPlan:
    return AnnexPlan(annex_id="x", annex_type="spot-fleet", owner_uid=1, region="us-east-1",
                     lease_function_arn="arn", lease_end=created_at + 3600, bucket="b",
                     client_token="x_t", rule_schedule="rate(1 minute)",
                     launch_request=request, created_at=created_at)


def test_an_unpriced_fleet_is_held_to_its_own_aws_enforced_cap():
    """A fleet the price table cannot price was let through at create time because AWS
    enforces ANNEX_MAX_COST / lease hours on it; a longer lease multiplies that."""
    with open(SPOT_CONFIG, encoding="utf-8") as handle:
        config = json.load(handle)
    for spec in config["LaunchSpecifications"]:
        spec["InstanceType"] = "x9.unknown"
    built = launch.SPOT_FLEET.build(config, annex_id="x", client_token="x_t", count=2,
                                    instance_tags={})
    plan = fleet_plan(built.request)
    caps = Caps(max_instances=None, max_lease_duration=None, max_cost=1.0)
    plan = costs.with_price_cap(plan, caps)  # as a create does: $1/h for its 1 h
    assert costs.estimate(plan)["worst_case_cost"] is None
    start = plan.created_at
    costs.check_lease_change(plan, start + 3600, start, caps, plan.lease_end, costs.Holding)
    with pytest.raises(InvalidRequest, match=r"may cost up to \$2\.00 \(its fleet's cap of "
                       r"\$1\.0000/h x 2\.00 h since it started\), over the limit of \$1\.00"):
        costs.check_lease_change(plan, start + 7200, start, caps, plan.lease_end, costs.Holding)
    uncapped = fleet_plan(built.request)  # no cap on the fleet, no price: cannot be held
    with pytest.raises(InvalidRequest, match="cannot be estimated"):
        costs.check_lease_change(uncapped, start + 7200, start, caps, uncapped.lease_end,
                                 costs.Holding)
