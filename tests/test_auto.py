"""Auto annexes (issue 26, step 5): ``condor_annex -auto`` makes an annex whose lease and
config are in place at once and whose size the daemon steers from demand, within
-max-instances, -max-cost and the site's caps; paid by the daemon's identity only.

The daemon reads demand and supply from ``file:`` sources (ANNEX_DEMAND_JOBS/SLOTS) and
looks every 0.2 s; AWS is moto's server, through the real daemon and the real CLI.
"""
from __future__ import annotations

import json
import os
import sqlite3
import time
from typing import Any, Callable

import pytest

from annexd_lambda.lease import ANNEX_TAG, CLIENT_TOKEN_TAG
from condor_annex import client
from localaws.pool import AnnexDaemon, LocalPool

from conftest import EC2_FLEET_CONFIG, LAUNCH_TEMPLATE_CONFIG, SECRET, SPOT_CONFIG
from test_ondemand import AMI, instances_of, profile_arn  # noqa: F401
from test_recovery import DAEMON_CREDENTIALS, KNOBS

from annexd.commands.auto import order_token
from annexd.demand import budget
from annexd.launch import ondemand, spotfleet
from annexd.launch.base import ORDER_TAG
from annexd.launch.plan import AUTO_IDLE_SECONDS, auto_idle_seconds
from annexd.rpc import protocol


def job(annex: str, number: int, cpus: int = 1, memory: int = 1024) -> str:
    return "\n".join([f"ClusterId = 7", f"ProcId = {number}", "JobStatus = 1",
                      "JobUniverse = 5", 'Owner = "alice"', f"RequestCpus = {cpus}",
                      f"RequestMemory = {memory}", "RequestDisk = 1000",
                      f'TargetAnnexName = "{annex}"',
                      'Requirements = (TARGET.Arch == "X86_64") && (TARGET.OpSys == "LINUX")'])


def claimed_slot(annex: str) -> str:
    return "\n".join(['MyType = "Machine"', 'Name = "slot1_1@i-0"', 'State = "Claimed"',
                      f'AnnexName = "{annex}"', "Cpus = 1", "Memory = 1024"])


class Demand:
    """The daemon's ANNEX_DEMAND_JOBS and ANNEX_DEMAND_SLOTS files."""

    def __init__(self, root: str):
        self.jobs, self.slots = f"{root}/jobs.ads", f"{root}/slots.ads"
        self.set()

    def set(self, jobs: list[str] = (), slots: list[str] = ()) -> None:
        for path, ads in ((self.jobs, jobs), (self.slots, slots)):
            with open(path + ".new", "w") as f:
                f.write("\n\n".join(ads) + "\n")
            os.replace(path + ".new", path)


@pytest.fixture
def auto_pool(aws, moto_server, tmp_path, profile_arn) -> tuple[LocalPool, Demand]:
    demand = Demand(str(tmp_path))
    pool = LocalPool(str(tmp_path)).write(moto_server.url, secret=SECRET, extra="\n".join([
        KNOBS, f"ANNEX_DEFAULT_LEASE_FUNCTION_ARN = {aws.lease_arn}",
        "ANNEX_DEMAND_INTERVAL = 0.2", f"ANNEX_DEMAND_JOBS = file:{demand.jobs}",
        f"ANNEX_DEMAND_SLOTS = file:{demand.slots}", "ANNEX_AUTO_LINGER = 120",
        "ANNEX_MAX_INSTANCES = 7",
        # Paid by the daemon's identity: the instance profile is the admin's.
        f"ANNEX_DEFAULT_ODI_INSTANCE_PROFILE_ARN = {profile_arn}"]))
    return pool, demand


def create_auto(pool: LocalPool, profile: str, name: str, *more: str) -> Any:
    return pool.condor_annex("-annex-name", name, "-auto", "-no-owner",
                             "-lease-duration", "3600", "-aws-on-demand-ami-id", AMI,
                             "-aws-on-demand-instance-type", "m5.large",
                             "-aws-on-demand-instance-profile-arn", profile, *more, keys=False)


def wait_for(what: Callable[[], Any], timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = what()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError("timed out")


def cycle_started(pool: LocalPool, name: str) -> float:
    """When the last cycle that looked at auto annex ``name`` began (0: none yet); the
    journal's record of a cycle is written when the cycle is done."""
    with sqlite3.connect(pool.journal_file) as db:
        found = db.execute("SELECT s.at FROM auto_status s JOIN requests r ON r.id = "
                           "s.request_id WHERE r.annex_id = ?", (name,)).fetchall()
    return max((at for (at,) in found), default=0.0)


def later_cycles(pool: LocalPool, *names: str, count: int = 2) -> None:
    """Wait until ``count`` whole cycles, each begun after the one before and the first after
    this call, have looked at each of ``names``: what a check that "later cycles order
    nothing" must wait for (a fixed sleep waited as long on every machine, or too little)."""
    since = time.time()
    for _ in range(count):
        for name in names:
            wait_for(lambda name=name: cycle_started(pool, name) > since)
        since = max(cycle_started(pool, name) for name in names)


def status(pool: LocalPool, name: str) -> dict[str, Any]:
    shown = pool.condor_annex("-status", "-json", "-annex-name", name, keys=False)
    assert shown.returncode == 0, shown.stderr
    return json.loads(shown.stdout)[0]


def orders(pool: LocalPool) -> list[tuple[str, str, int, str]]:
    with sqlite3.connect(pool.journal_file) as db:
        return db.execute("SELECT r.annex_id, o.instance_type, o.count, o.state FROM "
                          "auto_orders o JOIN requests r ON r.id = o.request_id "
                          "ORDER BY o.request_id, o.number").fetchall()


def test_auto_annexes_grow_with_demand_within_their_limits(aws, auto_pool, profile_arn):
    pool, demand = auto_pool
    with AnnexDaemon(pool, DAEMON_CREDENTIALS):
        for name, more in (("burst", ["-max-instances", "2"]),
                           ("thrift", ["-max-instances", "5", "-max-cost", "0.15"])):
            made = create_auto(pool, profile_arn, name, *more)
            assert made.returncode == 0, made.stderr
            assert made.stdout.strip() == ""          # nothing launched by the create
            assert aws.target_input(name)["AnnexType"] == "on-demand"   # the lease is there
            assert aws.config_key(name)                                 # and the config
        # The site's caps count an auto annex at -max-instances: 2 + 5 leave no room.
        third = create_auto(pool, profile_arn, "more", "-max-instances", "1")
        assert third.returncode != 0 and "ANNEX_MAX_INSTANCES" in third.stderr, third.stderr
        later_cycles(pool, "burst", "thrift")  # cycles without demand order nothing
        assert instances_of(aws, "burst") == [] and instances_of(aws, "thrift") == []
        assert status(pool, "burst")["auto"]["instances"] == 0

        # 5 jobs of 1 CPU each: 3 m5.large wanted; -max-instances 2 holds one back.
        demand.set([job("burst", n) for n in range(5)] + [job("thrift", n) for n in range(5)])
        wait_for(lambda: len(instances_of(aws, "burst")) == 2 and instances_of(aws, "thrift"))
        later_cycles(pool, "burst", "thrift")  # they count what booted: no second order
        assert len(instances_of(aws, "burst")) == 2
        # 0.15 dollars buy one m5.large hour (0.096/h), not two.
        assert len(instances_of(aws, "thrift")) == 1
        assert orders(pool) == [("burst", "m5.large", 2, "done"),
                                ("thrift", "m5.large", 1, "done")]
        request_token = aws.target_input("burst")["ClientToken"]
        for instance in instances_of(aws, "burst"):  # what the lease function ends them by
            tags = {t["Key"]: t["Value"] for t in instance["Tags"]}
            assert tags[ANNEX_TAG] == "burst" and tags[CLIENT_TOKEN_TAG] == request_token
            assert tags[ondemand.ORDER_TAG] == order_token(request_token, 1)

        shown = status(pool, "burst")["auto"]
        assert shown["max_instances"] == 2 and shown["jobs"] == 5
        assert shown["last_order"]["count"] == 2 and shown["last_order"]["state"] == "done"
        assert "-max-instances is 2" in shown["last_order"]["why"]
        thrift = status(pool, "thrift")["auto"]
        assert thrift["max_cost"] == 0.15 and "-max-cost" in " ".join(thrift["why"])
        # The owner's own lease change is held to -max-cost too.
        longer = pool.condor_annex("-annex-name", "thrift", "-lease-duration", "36000",
                                   keys=False)
        assert longer.returncode != 0 and "-max-cost of $0.15" in longer.stderr, longer.stderr
        table = pool.condor_annex("-status", keys=False).stdout
        assert "burst sizes itself: 2 instance(s) now, up to 2" in table
        assert "last order" in table and "because demand: 5 idle jobs" in table

        for name in ("burst", "thrift"):   # -off ends what the orders started
            off = pool.condor_annex("-annex-name", name, "-off", keys=False)
            assert off.returncode == 0, off.stderr
            assert instances_of(aws, name) == [] and not any(aws.annex_resources(name).values())


def test_the_lease_is_extended_while_demand_lasts_and_left_to_run_out(aws, auto_pool,
                                                                      profile_arn):
    pool, demand = auto_pool
    with AnnexDaemon(pool, DAEMON_CREDENTIALS):
        made = create_auto(pool, profile_arn, "linger", "-max-instances", "1",
                           "-lease-duration", "30")
        assert made.returncode == 0, made.stderr
        first = aws.target_input("linger")["LeaseExpiration"]
        later_cycles(pool, "linger")
        assert aws.target_input("linger")["LeaseExpiration"] == first  # no demand: untouched
        # A claimed slot of the annex is demand too (its job runs there): no idle jobs.
        demand.set(slots=[claimed_slot("linger")])
        extended = wait_for(lambda: aws.target_input("linger")["LeaseExpiration"] > first
                            and aws.target_input("linger")["LeaseExpiration"])
        assert extended >= time.time() + 120 - 5        # ANNEX_AUTO_LINGER from now
        shown = status(pool, "linger")
        assert shown["lease_end"] == extended and str(extended) in shown["auto"]["lease"]
        assert instances_of(aws, "linger") == []  # a running job is not an idle one
        demand.set()
        later_cycles(pool, "linger")
        assert aws.target_input("linger")["LeaseExpiration"] == extended
        assert "no demand for" in status(pool, "linger")["auto"]["lease"]
        demand.set(["RequestMemory = 2 GiB"])  # unreadable demand: said, nothing done
        trouble = wait_for(lambda: status(pool, "linger")["auto"].get("error"))
        assert "line 1" in trouble and "RequestMemory" in trouble
        assert instances_of(aws, "linger") == []
        assert pool.condor_annex("-annex-name", "linger", "-off", keys=False).returncode == 0


@pytest.mark.parametrize("point", ["EC2 RunInstances:before", "EC2 RunInstances:after"])
def test_a_crash_at_an_order_leaves_one_order_under_the_lease(aws, auto_pool, profile_arn,
                                                               fire_lease, point):
    """kill -9 just before and just after the order's RunInstances: after the restart the
    order is finished once (found by its tag, or sent again with its ClientToken), never
    duplicated, never past -max-instances; what runs carries the tags the lease ends."""
    pool, demand = auto_pool
    with AnnexDaemon(pool, DAEMON_CREDENTIALS):
        assert create_auto(pool, profile_arn, "phoenix", "-max-instances", "2").returncode == 0
    demand.set([job("phoenix", n) for n in range(3)])
    AnnexDaemon(pool, {**DAEMON_CREDENTIALS, "ANNEXD_TEST_CRASH_AT": point}).crash_during()
    assert orders(pool) == [("phoenix", "m5.large", 2, "sent")]   # journaled before the call
    running = len(instances_of(aws, "phoenix"))
    assert running == (2 if point.endswith("after") else 0)
    with AnnexDaemon(pool, DAEMON_CREDENTIALS):
        wait_for(lambda: orders(pool)[0][3] == "done")
        later_cycles(pool, "phoenix")
        assert len(instances_of(aws, "phoenix")) == 2 and len(orders(pool)) == 1
        request_token = aws.target_input("phoenix")["ClientToken"]
        assert all({"Key": CLIENT_TOKEN_TAG, "Value": request_token} in i["Tags"]
                   for i in instances_of(aws, "phoenix"))
        demand.set()  # no more demand: nothing extends the lease, or orders again
        later_cycles(pool, "phoenix")
    # The lease function, once the lease is over, ends everything the orders started.
    lease = aws.target_input("phoenix")
    fire_lease(lease, now=lease["LeaseExpiration"] + 1)
    assert instances_of(aws, "phoenix") == [] and not any(aws.annex_resources("phoenix").values())


def test_an_auto_annex_with_the_users_own_keys_is_refused(aws, auto_pool, profile_arn):
    pool, _ = auto_pool
    with AnnexDaemon(pool, DAEMON_CREDENTIALS):
        cli = create_auto(pool, profile_arn, "mine", "-max-instances", "2",
                          "-public", pool.access_key_file, "-secret", pool.secret_key_file)
        assert cli.returncode != 0 and "paid by condor_annexd's own AWS identity" in cli.stderr
        # Another client that sends keys anyway: the daemon refuses, naming why.
        with open(pool.access_key_file) as a, open(pool.secret_key_file) as s:
            keys = {"access_key_id": a.read().strip(), "secret_access_key": s.read().strip()}
        reply = client.call(pool.socket_path, {
            "version": protocol.VERSION, "command": "create", "credentials": keys,
            "annex": {"name": "mine", "lease_duration": 3600, "region": "us-east-1",
                      "lease_function_arn": aws.lease_arn, "owners": [],
                      "auto": {"max_instances": 2},
                      "on_demand": {"image_id": AMI, "instance_type": "m5.large"}}})
        assert not reply["ok"] and "never keeps your keys" in reply["error"]["message"]
        assert not any(aws.annex_resources("mine").values())


@pytest.mark.parametrize("args, message", [
    (["-max-instances", "2", "-count", "2"], "give -auto or -count/-slots, not both"),
    ([], "-auto needs -max-instances N"),
    (["-max-instances", "0"], "-max-instances: expected a positive whole number"),
    (["-max-instances", "2", "-max-cost", "-1"], "-max-cost: expected an amount"),
])
def test_auto_flags_are_checked(args, message, tmp_path):
    from condor_annex.create import auto_settings
    from annexd.usage.options import UsageError
    values = {"auto": True}
    for flag, value in zip(args[::2], args[1::2]):
        values[flag.lstrip("-").replace("-", "_")] = value
    with pytest.raises(UsageError, match=message):
        auto_settings(values)


def test_max_instances_without_auto_is_an_error():
    from condor_annex.create import auto_settings
    from annexd.usage.options import UsageError
    with pytest.raises(UsageError, match="-max-instances goes with -auto"):
        auto_settings({"max_instances": "3"})


def _auto_plan(fleet_config: dict[str, Any], launch_template: str | None = None) -> Any:
    from annexd.config.knobs import RegionSettings
    from annexd.launch.plan import build_plan
    settings = RegionSettings(region="us-east-1", endpoints={}, bucket="b", lease_function_arn=(
        "arn:aws:lambda:us-east-1:123456789012:function:lease"),
        instance_profile_arn="arn:aws:iam::123456789012:instance-profile/annex",
        security_group_ids=("sg-12345678",), launch_template=launch_template)
    return build_plan({"auto": {"max_instances": 2}, "fleet_config": fleet_config,
                       "lease_duration": 3600, "owners": []},
                      owner_uid=0, settings=settings, lease_rate_minutes=1, now=0,
                      pool=type("P", (), {"collector_host": "cm", "idtoken_file": "t",
                                          "send_password": False, "token": None,
                                          "unclaimed_timeout": 300,
                                          "negotiator_interval": 60})(),
                      user_name="alice")


def _spot_config(**changes: Any) -> dict[str, Any]:
    with open(SPOT_CONFIG, encoding="utf-8") as handle:
        config = json.load(handle)
    config.update(changes)
    return config


@pytest.mark.parametrize("config, message", [
    (json.load(open(EC2_FLEET_CONFIG)), "an -auto annex launches an EC2 Fleet from the "
     "site's launch template only, and ANNEX_DEFAULT_LAUNCH_TEMPLATE is not set"),
    (json.load(open(LAUNCH_TEMPLATE_CONFIG)), "LaunchTemplateConfigs: a launch template "
     "chooses its own instance profile, key pair and user data, which the site did not"),
    (_spot_config(OnDemandTargetCapacity=1), "OnDemandTargetCapacity: an -auto annex orders "
     "Spot capacity"),
    (_spot_config(InstanceInterruptionBehavior="stop"), "interrupted instances must end"),
    (_spot_config(LaunchSpecifications=[{"ImageId": AMI, "InstanceType": "m5.large",
                                         "WeightedCapacity": 1.5}]),
     r"LaunchSpecifications\[0\].WeightedCapacity: an -auto annex orders whole instances"),
])
def test_what_an_auto_fleet_config_cannot_be_is_refused_by_name(config, message):
    """EC2 Fleet without the site's template (ANNEX_DEFAULT_LAUNCH_TEMPLATE unset) and Spot
    Fleet launch templates: the site did not choose what a template holds (issue 23,
    requirement 4); the rest: an order is exactly N instances of one type, Spot, ending
    when interrupted."""
    from annexd.launch.plan import InvalidRequest
    with pytest.raises(InvalidRequest, match=message):
        _auto_plan(config)


def test_a_spot_fleet_order_is_a_one_time_fleet_of_whole_instances_of_one_type():
    config = _spot_config(LaunchSpecifications=[
        {"ImageId": AMI, "InstanceType": "m5.large", "WeightedCapacity": 2},
        {"ImageId": AMI, "InstanceType": "m5.xlarge", "WeightedCapacity": 4,
         "SpotPrice": "0.05"}], Type="maintain", ReplaceUnhealthyInstances=True,
        SpotMaintenanceStrategies={"CapacityRebalance": {"ReplacementStrategy": "launch"}})
    plan = _auto_plan(config)
    assert plan.max_instances == 2 and plan.most_instances == 2
    assert plan.idle_seconds == AUTO_IDLE_SECONDS      # not the site's default of 300
    from annexd.money import costs
    assert costs.worst_instances(plan) == 2     # instances, not units / the smallest weight
    order = spotfleet.order_config(plan.launch_request, "m5.xlarge", 4.0, 3, "tok", 1e9)
    assert order["Type"] == "request" and order["ClientToken"] == "tok"
    # A maintain fleet's settings, which AWS refuses on a one-time fleet, are left out.
    assert not {"ReplaceUnhealthyInstances", "SpotMaintenanceStrategies"} & set(order)
    assert order["TargetCapacity"] == 12       # exactly 3 instances of weight 4
    assert [s["InstanceType"] for s in order["LaunchSpecifications"]] == ["m5.xlarge"]
    assert order["ValidUntil"] == "2001-09-09T01:46:40Z"
    assert order["TerminateInstancesWithExpiration"] is False
    for tags in [order["TagSpecifications"], order["LaunchSpecifications"][0][
            "TagSpecifications"]]:
        assert {"Key": ORDER_TAG, "Value": "tok"} in tags[0]["Tags"]
        assert {"Key": ANNEX_TAG, "Value": plan.annex_id} in tags[0]["Tags"]


def test_a_fleet_order_launches_nothing_dearer_than_it_was_budgeted_at():
    """Two specs of one type and weight at different Spot maxima (two subnets, say): the
    planner prices the type at the cheaper, so the order's fleet may not use the dearer."""
    from annexd.commands.auto import _fleet_order
    from annexd.demand.planner import choices
    plan = _auto_plan(_spot_config(LaunchSpecifications=[
        {"ImageId": AMI, "InstanceType": "m5.large", "WeightedCapacity": 2,
         "SpotPrice": "0.05", "SubnetId": "subnet-dear"},
        {"ImageId": AMI, "InstanceType": "m5.large", "WeightedCapacity": 2,
         "SpotPrice": "0.02", "SubnetId": "subnet-cheap"}]))
    (choice,), _ = choices(plan)
    assert choice.hourly == pytest.approx(0.04)          # 0.02 a unit-hour x 2 units
    order = _fleet_order(plan, {"number": 1, "instance_type": "m5.large", "count": 2,
                                "client_token": "tok", "at": 0.0, "hourly": choice.hourly})
    assert [s["SubnetId"] for s in order["LaunchSpecifications"]] == ["subnet-cheap"]
    assert order["TargetCapacity"] == 4


def test_order_tokens_are_stable_distinct_and_fit_ec2():
    token = "burst_" + "0" * 36
    assert order_token(token, 1) == order_token(token, 1) != order_token(token, 2)
    assert all(len(order_token(token, n)) <= 64 for n in (1, 10 ** 6))


def test_the_farthest_affordable_lease_end():
    # $1 cap, $0.40 spent, two instances at $0.30/h: 1 hour from now, less the grace minute.
    assert budget.affordable_end(1.0, 0.4, [0.3, 0.3], 1000.0) == pytest.approx(
        1000.0 + 3600 - 60)
    assert budget.affordable_end(1.0, 0.4, [None], 0.0) is None


@pytest.mark.parametrize("point", ["EventBridge PutTargets:after", "S3 PutObject:before"])
def test_a_crash_while_the_lease_is_extended_leaves_the_lease_aws_holds(aws, auto_pool,
                                                                        profile_arn, point):
    """kill -9 in the middle of an auto extension (rule moved, config not yet): after the
    restart the journal takes the lease AWS holds, and the loop goes on from there."""
    pool, demand = auto_pool
    with AnnexDaemon(pool, DAEMON_CREDENTIALS):
        made = create_auto(pool, profile_arn, "phoenix", "-max-instances", "1",
                           "-lease-duration", "30")
        assert made.returncode == 0, made.stderr
    first = aws.target_input("phoenix")["LeaseExpiration"]
    demand.set(slots=[claimed_slot("phoenix")])
    AnnexDaemon(pool, {**DAEMON_CREDENTIALS, "ANNEXD_TEST_CRASH_AT": point}).crash_during()
    held = aws.target_input("phoenix")["LeaseExpiration"]
    assert held > first  # the rule moved before the crash
    with AnnexDaemon(pool, DAEMON_CREDENTIALS):
        shown = wait_for(lambda: (s := status(pool, "phoenix"))["state"] == "active"
                         and s["lease_end"] >= held and s)
        assert shown["lease_end"] == aws.target_input("phoenix")["LeaseExpiration"]
        assert shown["lease"] == "enforced" and instances_of(aws, "phoenix") == []
        assert pool.condor_annex("-annex-name", "phoenix", "-off", keys=False).returncode == 0
        assert not any(aws.annex_resources("phoenix").values())


def test_an_auto_annex_is_held_to_the_admins_choices_and_told_so(aws, auto_pool):
    """Daemon-paid: an instance profile other than the admin's is refused, and the refusal
    does not send the user to their own keys, which -auto cannot take."""
    pool, _ = auto_pool
    with AnnexDaemon(pool, DAEMON_CREDENTIALS):
        made = create_auto(pool, "arn:aws:iam::123456789012:instance-profile/other", "mine",
                           "-max-instances", "1")
    assert made.returncode != 0 and "is not the admin's" in made.stderr, made.stderr
    assert "always paid by it" in made.stderr and "-public-key-file" not in made.stderr
    assert not any(aws.annex_resources("mine").values())


def fleet_file(tmp_path, name: str = "fleet.json") -> str:
    """A Spot Fleet config the admin's choices fill in: m5.large weighs 2 units, m5.xlarge 4
    (WeightedCapacity: what the caps must not count)."""
    config = _spot_config(LaunchSpecifications=[
        {"ImageId": AMI, "InstanceType": "m5.large", "WeightedCapacity": 2},
        {"ImageId": AMI, "InstanceType": "m5.xlarge", "WeightedCapacity": 4}])
    path = tmp_path / name
    path.write_text(json.dumps(config), encoding="utf-8")
    return str(path)


def create_fleet_auto(pool: LocalPool, config: str, name: str, *more: str) -> Any:
    return pool.condor_annex("-annex-name", name, "-auto", "-no-owner",
                             "-lease-duration", "3600", *more, config, keys=False)


def fleets_of(aws, name: str) -> list[dict]:
    return [f for f in aws.all_fleets() if {"Key": ANNEX_TAG, "Value": name} in f.get("Tags", [])
            and f["SpotFleetRequestState"] in ("submitted", "active", "modifying")]


def test_a_spot_fleet_auto_annex_grows_on_demand_and_shrinks_without_replacement(
        aws, auto_pool, tmp_path, fire_lease):
    """Each order is a one-time Spot Fleet of one type, in whole instances whatever the
    weights; booting instances are supply (no second order); an instance that leaves is
    not replaced (nothing to lower: a one-time fleet never replaces) and the annex's size
    drops; the lease function ends every order's fleet."""
    pool, demand = auto_pool
    config = fleet_file(tmp_path)
    with AnnexDaemon(pool, DAEMON_CREDENTIALS):
        made = create_fleet_auto(pool, config, "sfa", "-max-instances", "3")
        assert made.returncode == 0, made.stderr
        assert aws.target_input("sfa")["AnnexType"] == "spot-fleet" and fleets_of(aws, "sfa") == []
        # The caps count it at 3 instances (not 3 units / weight 2): 3 + 5 > 7.
        more = create_fleet_auto(pool, config, "more", "-max-instances", "5")
        assert more.returncode != 0 and "ANNEX_MAX_INSTANCES" in more.stderr, more.stderr

        # 5 one-CPU jobs: three m5.large (two jobs each) are the cheapest per job.
        demand.set([job("sfa", n) for n in range(5)])
        wait_for(lambda: len(instances_of(aws, "sfa")) == 3)
        # Settled open at the call, done once a cycle has seen all three.
        wait_for(lambda: orders(pool) == [("sfa", "m5.large", 3, "done")])
        later_cycles(pool, "sfa")  # later cycles count the booting instances as supply
        assert orders(pool) == [("sfa", "m5.large", 3, "done")]
        fleets = fleets_of(aws, "sfa")
        assert len(fleets) == 1 and fleets[0]["SpotFleetRequestConfig"]["TargetCapacity"] == 6
        request_token = aws.target_input("sfa")["ClientToken"]
        token = order_token(request_token, 1)
        assert {"Key": ORDER_TAG, "Value": token} in fleets[0]["Tags"]
        for instance in instances_of(aws, "sfa"):
            tags = {t["Key"]: t["Value"] for t in instance["Tags"]}
            assert instance["InstanceType"] == "m5.large" and tags[ORDER_TAG] == token
            assert tags[CLIENT_TOKEN_TAG] == request_token
        shown = status(pool, "sfa")["auto"]
        assert shown["max_instances"] == 3 and shown["instances"] == 3 and shown["jobs"] == 5
        assert "order: 3 x m5.large (6 capacity units)" in shown["last_order"]["why"]

        # The jobs ran and left; one instance idled out and shut itself down.
        demand.set()
        gone = instances_of(aws, "sfa")[0]["InstanceId"]
        aws.ec2.terminate_instances(InstanceIds=[gone])
        wait_for(lambda: status(pool, "sfa")["auto"]["instances"] == 2)
        later_cycles(pool, "sfa")
        assert len(instances_of(aws, "sfa")) == 2 and len(orders(pool)) == 1
        assert len(fleets_of(aws, "sfa")) == 1
        table = pool.condor_annex("-status", keys=False).stdout
        assert "sfa sizes itself: 2 instance(s) now, up to 3" in table, table
    lease = aws.target_input("sfa")
    fire_lease(lease, now=lease["LeaseExpiration"] + 1)
    assert instances_of(aws, "sfa") == [] and fleets_of(aws, "sfa") == []
    assert not any(aws.annex_resources("sfa").values())


def crash_at_the_first_order(pool, demand, config: str, point: str) -> None:
    """An auto annex "phoenix" of ``config`` within -max-instances 3 and -max-cost $0.20 --
    which buys two m5.large for the hour and the grace minute ($0.0976 each), not three --,
    five jobs for it, and a daemon killed at ``point`` of its first order: the order is on
    disk, sent, its outcome not."""
    with AnnexDaemon(pool, DAEMON_CREDENTIALS):
        made = create_fleet_auto(pool, config, "phoenix", "-max-instances", "3",
                                 "-max-cost", "0.2")
        assert made.returncode == 0, made.stderr
    demand.set([job("phoenix", n) for n in range(5)])
    AnnexDaemon(pool, {**DAEMON_CREDENTIALS, "ANNEXD_TEST_CRASH_AT": point}).crash_during()
    assert orders(pool) == [("phoenix", "m5.large", 2, "sent")]


@pytest.mark.parametrize("point", ["EC2 RequestSpotFleet:before", "EC2 RequestSpotFleet:after"])
def test_a_crash_at_a_fleet_order_keeps_one_order_within_the_budget(aws, auto_pool, tmp_path,
                                                                     point):
    """kill -9 just before and just after an order's RequestSpotFleet: the order was on disk
    first; after the restart it is finished once (its fleet found by its order tag, or sent
    again with its ClientToken), and spent plus committed stays within -max-cost."""
    pool, demand = auto_pool
    crash_at_the_first_order(pool, demand, fleet_file(tmp_path), point)
    assert len(fleets_of(aws, "phoenix")) == (1 if point.endswith("after") else 0)
    with AnnexDaemon(pool, DAEMON_CREDENTIALS):
        wait_for(lambda: orders(pool)[0][3] == "done")
        later_cycles(pool, "phoenix")
        assert orders(pool) == [("phoenix", "m5.large", 2, "done")]
        assert len(fleets_of(aws, "phoenix")) == 1 and len(instances_of(aws, "phoenix")) == 2
        why = " ".join(status(pool, "phoenix")["auto"]["why"])
        committed = float(why.split("committed at worst: $")[1].split()[0])
        assert committed <= 0.2 and "-max-cost ($0.20)" in why, why
        assert pool.condor_annex("-annex-name", "phoenix", "-off", keys=False).returncode == 0
    assert instances_of(aws, "phoenix") == [] and fleets_of(aws, "phoenix") == []


def test_an_open_fleet_order_counts_as_coming_until_filled_or_closed(tmp_path):
    """Real AWS fills a one-time fleet asynchronously (moto at once): until every instance
    it ordered is seen, or its ValidUntil has passed, what it may still launch is booting
    supply (no second order) and counts for the money rule."""
    from types import SimpleNamespace
    from annexd.commands.auto import _coming
    from annexd.state.journal import Journal
    journal = Journal(str(tmp_path / "journal.sqlite"))
    try:
        request_id = journal.begin(_auto_plan(_spot_config()), daemon_credentials=True)
        token, at = "auto1-x", 1000.0
        journal.order_sent(request_id, {"number": 1, "client_token": token,
                                        "instance_type": "m5.large", "count": 3,
                                        "hourly": 0.1, "why": "demand", "at": at})
        journal.order_settled(request_id, 1, "open", [], 0.1, at)
        ctx, row = SimpleNamespace(journal=journal), {"id": request_id}
        assert journal.running_hourly(request_id) == [0.1] * 3
        assert [i.instance_type for i in _coming(ctx, row, [], at + 10)] == ["m5.large"] * 3
        listed = [{"id": "i-1", "type": "m5.large", "tags": {ORDER_TAG: token}},
                  {"id": "i-9", "type": "m5.large", "tags": {ORDER_TAG: "another"}}]
        assert len(_coming(ctx, row, listed, at + 20)) == 2
        assert json.loads(journal.orders(request_id)[0]["instance_ids"]) == ["i-1"]
        assert journal.running_hourly(request_id) == [0.1] * 3   # i-1 and the two coming
        # Its ValidUntil (plus the grace minute) passed: AWS launches nothing more for it.
        closed = at + spotfleet.ORDER_WINDOW_SECONDS + budget.GRACE_SECONDS
        assert _coming(ctx, row, listed, closed) == []
        assert journal.orders(request_id)[0]["state"] == "done"
        assert journal.running_hourly(request_id) == [0.1]
    finally:
        journal.close()


def test_an_auto_annexs_idle_time_outlasts_a_negotiation_cycle():
    """About one boot delay (ski rental), but never so short that a booted instance leaves
    before the negotiator's next cycle could match it (then it would be ordered again and
    again)."""
    assert auto_idle_seconds(60) == AUTO_IDLE_SECONDS == 90
    assert auto_idle_seconds(300) == 330


def test_a_fleet_order_left_sent_past_its_window_is_given_up_not_sent_late(aws, auto_pool,
                                                                          tmp_path):
    """A daemon down longer than an order's window (kill -9 before its RequestSpotFleet):
    the order, whose fleet would open for less than a minute, is settled failed rather than
    sent, and the next cycle orders afresh from what it sees: one fleet, never two."""
    pool, demand = auto_pool
    config = fleet_file(tmp_path)
    with AnnexDaemon(pool, DAEMON_CREDENTIALS):
        made = create_fleet_auto(pool, config, "late", "-max-instances", "2")
        assert made.returncode == 0, made.stderr
    demand.set([job("late", n) for n in range(3)])
    AnnexDaemon(pool, {**DAEMON_CREDENTIALS,
                       "ANNEXD_TEST_CRASH_AT": "EC2 RequestSpotFleet:before"}).crash_during()
    with sqlite3.connect(pool.journal_file) as db:  # the outage: the order is that much older
        db.execute("UPDATE auto_orders SET at = at - ?", (spotfleet.ORDER_WINDOW_SECONDS,))
    with AnnexDaemon(pool, DAEMON_CREDENTIALS):
        wait_for(lambda: len(orders(pool)) == 2 and orders(pool)[1][3] == "done")
        later_cycles(pool, "late")
        assert orders(pool) == [("late", "m5.large", 2, "failed"),
                                ("late", "m5.large", 2, "done")]
        assert len(fleets_of(aws, "late")) == 1 and len(instances_of(aws, "late")) == 2
        assert pool.condor_annex("-annex-name", "late", "-off", keys=False).returncode == 0
    assert instances_of(aws, "late") == [] and fleets_of(aws, "late") == []


def test_status_says_what_an_open_fleet_order_has_not_launched_yet():
    from condor_annex.status import auto_lines
    lines = auto_lines([{"name": "sfa", "auto": {
        "instances": 1, "coming": 2, "max_instances": 3, "max_cost": None, "jobs": 5,
        "claimed_slots": 0, "why": ["order: nothing"], "lease": "demand now",
        "last_order": {"at": 0, "state": "open", "count": 3, "instance_type": "m5.large",
                       "why": "demand"}}}])
    assert "sfa sizes itself: 1 instance(s) now (2 more ordered, not yet launched), up to 3" \
        in lines
    assert "  last order (" in lines[-1] and "open): 3 x m5.large, because demand" in lines[-1]


# -- EC2 Fleet auto annexes: the site's launch template, one instant fleet per order ----------

SITE_TEMPLATE = "lt-0511e0000000000a1"


def _ec2_config(*overrides: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """An EC2 Fleet config naming no template (the site's is filled in): m5.large weighs 2
    units, m5.xlarge 4 (what the caps must not count)."""
    overrides = overrides or ({"InstanceType": "m5.large", "WeightedCapacity": 2},
                              {"InstanceType": "m5.xlarge", "WeightedCapacity": 4})
    return {"TargetCapacitySpecification": {"TotalTargetCapacity": 1,
                                            "DefaultTargetCapacityType": "spot"},
            "LaunchTemplateConfigs": [{"Overrides": list(overrides)}], **changes}


@pytest.mark.parametrize("config, message", [
    (_ec2_config(LaunchTemplateConfigs=[{"LaunchTemplateSpecification": {
        "LaunchTemplateName": "my-own", "Version": "$Default"},
        "Overrides": [{"InstanceType": "m5.large"}]}]),
     r"LaunchTemplateConfigs\[0\].LaunchTemplateSpecification: .*only the site's "
     rf"\(ANNEX_DEFAULT_LAUNCH_TEMPLATE = {SITE_TEMPLATE}, version \$Default\)"),
    (_ec2_config(LaunchTemplateConfigs=[{"LaunchTemplateSpecification": {
        "LaunchTemplateId": SITE_TEMPLATE, "Version": "1"},
        "Overrides": [{"InstanceType": "m5.large"}]}]),
     r"only the site's \(ANNEX_DEFAULT_LAUNCH_TEMPLATE"),
    (_ec2_config({"InstanceType": "m5.large", "ImageId": AMI}),
     r"Overrides\[0\]: ImageId: an -auto annex's override may give only"),
    (_ec2_config({"InstanceType": "m5.large", "KeyName": "mine",
                  "IamInstanceProfile": {"Name": "mine"}}),
     r"Overrides\[0\]: IamInstanceProfile, KeyName: .*ANNEX_DEFAULT_LAUNCH_TEMPLATE"),
    (_ec2_config({"WeightedCapacity": 1}), r"Overrides\[0\]: .* give InstanceType"),
    (_ec2_config({"InstanceType": "m5.large", "WeightedCapacity": 1.5}),
     r"WeightedCapacity: an -auto annex orders whole instances"),
    (_ec2_config(SpotOptions={"InstanceInterruptionBehavior": "stop"}),
     "interrupted instances must end"),
])
def test_what_an_auto_ec2_fleet_config_cannot_be_is_refused_by_name(config, message):
    """A user's template (or another version of the site's) is refused naming the knob; an
    override may say only where, which type and how much, never what the instance is."""
    from annexd.launch.plan import InvalidRequest
    with pytest.raises(InvalidRequest, match=message):
        _auto_plan(config, SITE_TEMPLATE)


def test_an_ec2_fleet_order_is_an_instant_fleet_of_whole_instances_of_one_type():
    from annexd.launch import ec2fleet
    plan = _auto_plan(_ec2_config(), SITE_TEMPLATE)
    assert plan.launch_request["LaunchTemplateConfigs"][0]["LaunchTemplateSpecification"] == \
        {"LaunchTemplateId": SITE_TEMPLATE, "Version": "$Default"}
    order = ec2fleet.order_request(plan.launch_request, "m5.xlarge", 4.0, 3, "auto7-x")
    assert order["Type"] == "instant" and order["ClientToken"] == "auto7-x"
    assert order["TargetCapacitySpecification"]["TotalTargetCapacity"] == 12
    assert order["LaunchTemplateConfigs"] == [{
        "LaunchTemplateSpecification": {"LaunchTemplateId": SITE_TEMPLATE, "Version": "$Default"},
        "Overrides": [{"InstanceType": "m5.xlarge", "WeightedCapacity": 4}]}]
    for resource in ("fleet", "instance"):
        [spec] = [t for t in order["TagSpecifications"] if t["ResourceType"] == resource]
        tags = {t["Key"]: t["Value"] for t in spec["Tags"]}
        assert tags[ORDER_TAG] == "auto7-x" and tags[ANNEX_TAG] == plan.annex_id
        assert tags[CLIENT_TOKEN_TAG] == plan.client_token


@pytest.fixture
def ec2_auto_pool(aws, auto_pool) -> tuple[LocalPool, Demand, str]:
    """The auto pool, with the site's launch template (ANNEX_DEFAULT_LAUNCH_TEMPLATE)."""
    from localaws import fixtures
    pool, demand = auto_pool
    template = fixtures.create_worker_template(aws.ec2)
    pool.add_knobs(f"ANNEX_DEFAULT_LAUNCH_TEMPLATE = {template}")
    return pool, demand, template


def ec2_fleet_file(tmp_path, **changes: Any) -> str:
    path = tmp_path / "ec2-fleet.json"
    path.write_text(json.dumps(_ec2_config(**changes)), encoding="utf-8")
    return str(path)


def ec2_fleets_of(aws, name: str) -> list[dict]:
    return [f for f in aws.ec2.describe_fleets()["Fleets"]
            if {"Key": ANNEX_TAG, "Value": name} in f.get("Tags", [])
            and f["FleetState"] not in ("deleted", "deleted_terminating", "deleted_running")]


def test_an_ec2_fleet_auto_annex_grows_on_demand_from_the_sites_template(
        aws, ec2_auto_pool, tmp_path, fire_lease):
    """Each order is one instant EC2 Fleet of one type from the site's template, in whole
    instances whatever the weights; booting instances are supply (no second order); the
    caps count instances; the lease function ends every order's fleet and instances."""
    pool, demand, template = ec2_auto_pool
    config = ec2_fleet_file(tmp_path)
    with AnnexDaemon(pool, DAEMON_CREDENTIALS):
        made = create_fleet_auto(pool, config, "e2a", "-max-instances", "3")
        assert made.returncode == 0, made.stderr
        assert aws.target_input("e2a")["AnnexType"] == "ec2-fleet" and \
            ec2_fleets_of(aws, "e2a") == []
        # The caps count it at 3 instances (not 3 units / weight 2): 3 + 5 > 7.
        more = create_fleet_auto(pool, config, "more", "-max-instances", "5")
        assert more.returncode != 0 and "ANNEX_MAX_INSTANCES" in more.stderr, more.stderr

        demand.set([job("e2a", n) for n in range(5)])
        wait_for(lambda: len(instances_of(aws, "e2a")) == 3)
        wait_for(lambda: orders(pool) == [("e2a", "m5.large", 3, "done")])
        later_cycles(pool, "e2a")  # later cycles count the booting instances as supply
        assert orders(pool) == [("e2a", "m5.large", 3, "done")]
        [fleet] = ec2_fleets_of(aws, "e2a")
        assert fleet["Type"] == "instant"
        assert fleet["TargetCapacitySpecification"]["TotalTargetCapacity"] == 6
        [used] = fleet["LaunchTemplateConfigs"]
        assert used["LaunchTemplateSpecification"]["LaunchTemplateId"] == template
        token = order_token(aws.target_input("e2a")["ClientToken"], 1)
        assert {"Key": ORDER_TAG, "Value": token} in fleet["Tags"]
        for instance in instances_of(aws, "e2a"):
            tags = {t["Key"]: t["Value"] for t in instance["Tags"]}
            assert instance["InstanceType"] == "m5.large" and tags[ORDER_TAG] == token
        shown = status(pool, "e2a")["auto"]
        assert shown["instances"] == 3 and shown["jobs"] == 5
        assert "order: 3 x m5.large (6 capacity units)" in shown["last_order"]["why"]
    lease = aws.target_input("e2a")
    fire_lease(lease, now=lease["LeaseExpiration"] + 1)
    assert instances_of(aws, "e2a") == [] and ec2_fleets_of(aws, "e2a") == []
    assert not any(aws.annex_resources("e2a").values())


def test_a_users_launch_template_is_refused_naming_the_knob(aws, ec2_auto_pool, tmp_path):
    pool, _, template = ec2_auto_pool
    config = ec2_fleet_file(tmp_path, LaunchTemplateConfigs=[{
        "LaunchTemplateSpecification": {"LaunchTemplateName": "alices-own"},
        "Overrides": [{"InstanceType": "m5.large"}]}])
    with AnnexDaemon(pool, DAEMON_CREDENTIALS):
        made = create_fleet_auto(pool, config, "theirs", "-max-instances", "2")
    assert made.returncode != 0, made.stdout
    assert f"ANNEX_DEFAULT_LAUNCH_TEMPLATE = {template}" in made.stderr, made.stderr
    assert not any(aws.annex_resources("theirs").values())


@pytest.mark.parametrize("point", ["EC2 CreateFleet:before", "EC2 CreateFleet:after"])
def test_a_crash_at_an_ec2_fleet_order_keeps_one_order_within_the_budget(
        aws, ec2_auto_pool, tmp_path, point):
    """kill -9 just before and just after an order's CreateFleet: the order was on disk
    first; after the restart it is finished once (its instances found by their order tag,
    or sent again with its ClientToken), within -max-instances and -max-cost; -off ends
    the fleet and its instances."""
    pool, demand, _ = ec2_auto_pool
    crash_at_the_first_order(pool, demand, ec2_fleet_file(tmp_path), point)
    assert len(ec2_fleets_of(aws, "phoenix")) == (1 if point.endswith("after") else 0)
    with AnnexDaemon(pool, DAEMON_CREDENTIALS):
        wait_for(lambda: orders(pool)[0][3] == "done")
        later_cycles(pool, "phoenix")
        assert orders(pool) == [("phoenix", "m5.large", 2, "done")]
        assert len(ec2_fleets_of(aws, "phoenix")) == 1
        request_token = aws.target_input("phoenix")["ClientToken"]
        assert [i for i in instances_of(aws, "phoenix")  # what the lease function ends
                if {"Key": CLIENT_TOKEN_TAG, "Value": request_token} in i["Tags"]] == \
            instances_of(aws, "phoenix")
        assert len(instances_of(aws, "phoenix")) == 2
        why = " ".join(status(pool, "phoenix")["auto"]["why"])
        committed = float(why.split("committed at worst: $")[1].split()[0])
        assert committed <= 0.2 and "-max-cost ($0.20)" in why, why
        assert pool.condor_annex("-annex-name", "phoenix", "-off", keys=False).returncode == 0
    assert instances_of(aws, "phoenix") == [] and ec2_fleets_of(aws, "phoenix") == []


def test_a_daemon_paid_ec2_fleet_is_held_to_the_sites_template_when_checked_again():
    """The daemon-paid check reads the plan (a parked create resumed, a knob changed since):
    a plan of the site's template passes; the same plan against another site template is
    refused naming the knob, as is a plan whose template is not the site's at all."""
    import dataclasses
    from annexd.config.knobs import RegionSettings
    from annexd.launch.plan import InvalidRequest
    from annexd.money import daemonpaid
    plan = _auto_plan(_ec2_config(), SITE_TEMPLATE)
    settings = RegionSettings(region="us-east-1", endpoints={}, bucket="b", lease_function_arn=(
        "arn:aws:lambda:us-east-1:123456789012:function:lease"),
        instance_profile_arn="arn:aws:iam::123456789012:instance-profile/annex",
        launch_template=SITE_TEMPLATE)
    daemonpaid.check(plan, settings)
    for other in (dataclasses.replace(settings, launch_template="lt-0ther0000000000000"),
                  dataclasses.replace(settings, launch_template=None)):
        with pytest.raises(InvalidRequest, match="ANNEX_DEFAULT_LAUNCH_TEMPLATE"):
            daemonpaid.check(plan, other)
    users = json.loads(json.dumps(plan.launch_request))
    users["LaunchTemplateConfigs"][0]["LaunchTemplateSpecification"] = {
        "LaunchTemplateName": "alices-own", "Version": "$Default"}
    with pytest.raises(InvalidRequest, match="only the site's launch template"):
        daemonpaid.check(dataclasses.replace(plan, launch_request=users, auto=False), settings)


def test_an_auto_annex_orders_nothing_under_a_lease_aws_no_longer_holds(aws, auto_pool,
                                                                        profile_arn):
    """As for an added launch (tests/test_grow.py): the lease function's tick may have ended
    the annex while a lease change held its row, which stays active.  With demand, an order
    is sent only under a lease AWS holds: here the rule and target are removed as the tick
    removes them, and the cycles order nothing and say why."""
    pool, demand = auto_pool
    with AnnexDaemon(pool, DAEMON_CREDENTIALS):
        made = create_auto(pool, profile_arn, "unleased", "-max-instances", "2")
        assert made.returncode == 0, made.stderr
        targets = aws.events.list_targets_by_rule(Rule="unleased")["Targets"]
        aws.events.remove_targets(Rule="unleased", Ids=[t["Id"] for t in targets])
        aws.events.delete_rule(Name="unleased")
        demand.set([job("unleased", n) for n in range(3)])
        report = wait_for(lambda: (status(pool, "unleased")["auto"] or {}).get("error"))
        assert "has no lease in force in AWS" in report, report
        assert instances_of(aws, "unleased") == [] and orders(pool) == []
