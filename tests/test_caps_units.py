"""Caps count what they name, whatever the weights (issue 24, findings 1 and 2).

* ANNEX_MAX_INSTANCES counted capacity units: with a cap of 2, a Spot Fleet of TargetCapacity
  2 with WeightedCapacity 0.25 was accepted and 8 instances ran.
* ANNEX_MAX_COST divided the price by the weight: with a $1 cap, a 1-instance m5.large fleet
  with WeightedCapacity 1000 was extended to 30 and to 300 days (worst case $691).

Each is checked at the edge (the cap exactly met passes, one more is refused), for creates
and lease changes, and end to end against the real daemon.
"""
from __future__ import annotations

import copy
import json

import pytest

from annexd import launch
from annexd.config.knobs import Caps
from annexd.launch.plan import AnnexPlan, InvalidRequest
from annexd.money import costs
from localaws.pool import LocalPool, run_program, script

from conftest import EC2_FLEET_CONFIG, SPOT_CONFIG, serving_pool

START = 1_000_000
M5_LARGE = costs.price_table()["on_demand_hourly"]["m5.large"]


def spot_config(target: int, *weights: float, spot_price: str | None = None) -> dict:
    with open(SPOT_CONFIG, encoding="utf-8") as handle:
        config = json.load(handle)
    [spec] = config["LaunchSpecifications"]
    config["LaunchSpecifications"] = []
    for weight in weights or (None,):
        one = copy.deepcopy(spec)
        if weight is not None:
            one["WeightedCapacity"] = weight
        if spot_price is not None:
            one["SpotPrice"] = spot_price
        config["LaunchSpecifications"].append(one)
    config["TargetCapacity"] = target
    return config


def plan_of(config: dict, hours: float = 1, kind: launch.Kind = launch.SPOT_FLEET,
            name: str = "x") -> AnnexPlan:
    built = kind.build(config, annex_id=name, client_token=f"{name}_t", count=None,
                       instance_tags={})
    return AnnexPlan(annex_id=name, annex_type=kind.annex_type, owner_uid=1,
                     region="us-east-1", lease_function_arn="arn",
                     lease_end=START + int(hours * 3600), bucket="b", client_token=f"{name}_t",
                     rule_schedule="rate(1 minute)", launch_request=built.request,
                     created_at=START)


@pytest.mark.parametrize("target, weights, instances", [
    (2, (0.25,), 8),          # finding 1: 2 units of a quarter each are 8 instances
    (2, (1,), 2), (2, (), 2),
    (7, (3,), 3),             # 7 units of 3: the fleet overshoots to 9 with 3 instances
    (1, (1000,), 1),          # one instance, however heavy
    (3, (1.5, 0.5), 6),       # the smallest weight decides
    (1, (0.3,), 4),           # 1 / 0.3 = 3.33.., rounded up
    (3, (0.1,), 30),          # 3 / 0.1 is 30 (not 31: binary fractions do not round up)
])
def test_the_most_instances_a_fleet_can_run(target, weights, instances):
    assert costs.worst_instances(plan_of(spot_config(target, *weights))) == instances


def test_spot_and_on_demand_parts_are_each_rounded_up():
    config = spot_config(3, 0.5)
    config["OnDemandTargetCapacity"] = 1
    assert costs.worst_instances(plan_of(config)) == 4 + 2


def test_an_ec2_fleet_and_on_demand_instances_count_instances_too():
    with open(EC2_FLEET_CONFIG, encoding="utf-8") as handle:
        config = json.load(handle)
    config["TargetCapacitySpecification"]["TotalTargetCapacity"] = 2
    for override in config["LaunchTemplateConfigs"][0]["Overrides"]:
        override["WeightedCapacity"] = 0.5
    assert costs.worst_instances(plan_of(config, kind=launch.EC2_FLEET)) == 4


def test_instance_cap_counts_instances_whatever_the_weights():
    caps = Caps(max_instances=2)
    with pytest.raises(InvalidRequest, match=r"annex 'x' may run up to 8 instances \(capacity 2 "
                       r"/ its smallest weight, rounded up\), over the limit of 2 "
                       r"\(ANNEX_MAX_INSTANCES\)"):
        costs.check(plan_of(spot_config(2, 0.25)), caps, costs.Holding)
    assert costs.check(plan_of(spot_config(2, 1)), caps, costs.Holding)["instances"] == 2
    assert costs.check(plan_of(spot_config(4, 2)), caps, costs.Holding)["instances"] == 2
    with pytest.raises(InvalidRequest, match="may run up to 1 more instances, which would make "
                       "3 for you"):
        costs.check(plan_of(spot_config(1)), caps, lambda: costs.Holding(instances=2))


def test_cost_is_per_instance_not_per_unit():
    """Finding 2: the weight no longer divides the price.  1 m5.large for 30 days is $69.12
    whether it counts for 1 unit or for 1000."""
    month = 30 * 24
    for weights in ((), (1000,)):
        found = costs.estimate(plan_of(spot_config(1, *weights), hours=month))
        assert found["instances"] == 1 and found["instance_price"] == M5_LARGE
        assert found["worst_case_cost"] == round(M5_LARGE * month, 2) == 69.12
    with pytest.raises(InvalidRequest, match=r"may cost up to \$69\.12 \(1 instance x "
                       r"\$0\.0960/h x 720\.00 h, prices of .*over the limit of \$1\.00"):
        costs.check(plan_of(spot_config(1, 1000), hours=month), Caps(max_cost=1.0), costs.Holding)


def test_a_spot_maximum_is_per_unit_hour_so_an_instance_may_cost_it_times_its_weight():
    found = costs.estimate(plan_of(spot_config(8, 4, spot_price="0.05")))
    assert found["instances"] == 2 and found["instance_price"] == pytest.approx(0.20)
    assert found["worst_case_cost"] == pytest.approx(0.40)


def test_cost_cap_at_the_edge():
    one_hour = plan_of(spot_config(2, 0.5))  # 4 instances x $0.096 x 1 h = $0.384
    assert costs.estimate(one_hour)["worst_case_cost"] == 0.38
    costs.check(one_hour, Caps(max_cost=0.38), costs.Holding)
    with pytest.raises(InvalidRequest, match="ANNEX_MAX_COST"):
        costs.check(one_hour, Caps(max_cost=0.37), costs.Holding)


def test_a_heavy_weight_no_longer_lets_a_lease_change_escape_the_cost_cap():
    """Finding 2 on a lease change: extended to 30 and to 300 days under a $1 cap."""
    plan = plan_of(spot_config(1, 1000), hours=1)
    caps = Caps(max_cost=1.0)
    costs.check_lease_change(plan, START + 3600 * 10, START, caps, plan.lease_end, costs.Holding)
    for days in (30, 300):
        with pytest.raises(InvalidRequest, match=r"may cost up to \$\d+\.\d\d \(1 instance x "
                           r"\$0\.0960/h x .*over the limit of \$1\.00 \(ANNEX_MAX_COST\)"):
            costs.check_lease_change(plan, START + days * 86400, START, caps, plan.lease_end,
                                     costs.Holding)


def test_a_lease_change_counts_the_instances_the_annex_may_run():
    plan = plan_of(spot_config(2, 0.25))
    with pytest.raises(InvalidRequest, match="may run 8 instances, over the limit of 4"):
        costs.check_lease_change(plan, plan.lease_end + 60, START, Caps(max_instances=4),
                                 plan.lease_end, costs.Holding)
    costs.check_lease_change(plan, plan.lease_end - 60, START, Caps(max_instances=4),
                             plan.lease_end, costs.Holding)  # an earlier end always passes


def test_the_per_user_cost_cap_adds_up_every_live_annex():
    caps = Caps(max_cost_per_user=1.0)
    first = plan_of(spot_config(2), hours=4, name="first")  # 2 x 0.096 x 4 = $0.77
    second = plan_of(spot_config(1), hours=2, name="second")  # $0.19
    held = costs.Holding.of([first])
    assert held.instances == 2 and held.cost == 0.77
    costs.check(second, caps, lambda: held)  # $0.96 together
    third = plan_of(spot_config(1), hours=3, name="third")  # $0.29
    with pytest.raises(InvalidRequest, match=r"annex 'third' may cost up to \$0\.29, which with "
                       r"your other live annexes \(\$0\.77\) makes \$1\.06, over the limit of "
                       r"\$1\.00 \(ANNEX_MAX_COST_PER_USER\)"):
        costs.check(third, caps, lambda: held)
    # Many small annexes cannot add up past it by lease changes either.
    with pytest.raises(InvalidRequest, match="ANNEX_MAX_COST_PER_USER"):
        costs.check_lease_change(second, START + 4 * 3600, START, caps, second.lease_end,
                                 lambda: held)


def test_an_unpriceable_annex_blocks_the_per_user_cost_cap_with_its_name():
    unknown = spot_config(1)
    unknown["LaunchSpecifications"][0]["InstanceType"] = "x9.unknown"
    held = costs.Holding.of([plan_of(unknown, name="mystery")])
    assert held.cost is None and held.unpriced == "mystery"
    with pytest.raises(InvalidRequest, match="your annex 'mystery' cannot be priced"):
        costs.check(plan_of(spot_config(1)), Caps(max_cost_per_user=5.0), lambda: held)


@pytest.fixture
def capped(aws, moto_server, tmp_path):
    yield from serving_pool(aws, moto_server, str(tmp_path), "ANNEX_MAX_INSTANCES = 2",
                            "ANNEX_MAX_COST = 1", "ANNEX_MAX_COST_PER_USER = 1.5")


def run(pool: LocalPool, tmp_path, name: str, config: dict | None, *flags: str):
    args = [script("condor_annex"), "-annex-name", name, "-public", pool.access_key_file,
            "-secret", pool.secret_key_file, *flags]
    if config is not None:
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(config))
        args.append(str(path))
    return run_program(args, pool.env(), timeout=60)


def test_end_to_end_weights_cannot_get_past_the_caps(aws, capped, tmp_path):
    quarter = run(capped, tmp_path, "quarter", spot_config(2, 0.25), "-lease-duration", "600")
    assert quarter.returncode == 4 and "may run up to 8 instances" in quarter.stderr
    heavy_month = run(capped, tmp_path, "heavy", spot_config(1, 1000), "-lease-duration",
                      str(30 * 86400))
    assert heavy_month.returncode == 4 and "$69.12" in heavy_month.stderr
    assert aws.all_fleets() == []
    heavy = run(capped, tmp_path, "heavy", spot_config(1, 1000), "-lease-duration", "3600")
    assert heavy.returncode == 0, heavy.stderr
    lease_before = aws.target_input("heavy")["LeaseExpiration"]
    longer = run(capped, tmp_path, "heavy", None, "-lease-duration", str(30 * 86400))
    assert longer.returncode == 4 and "ANNEX_MAX_COST" in longer.stderr
    [fleet] = aws.all_fleets()
    assert fleet["SpotFleetRequestConfig"]["TargetCapacity"] == 1
    assert aws.target_input("heavy")["LeaseExpiration"] == lease_before  # refused: unchanged


def test_status_json_shows_what_the_caps_count(aws, capped, tmp_path):
    made = run(capped, tmp_path, "half", spot_config(1, 0.5), "-lease-duration", "7200")
    assert made.returncode == 0, made.stderr
    shown = run_program([script("condor_annex"), "-status", "-json", "-public",
                            capped.access_key_file, "-secret", capped.secret_key_file], capped.env(), timeout=60)
    assert shown.returncode == 0, shown.stderr
    [annex] = [a for a in json.loads(shown.stdout) if a["name"] == "half"]
    assert annex["max_instances"] == 2
    assert annex["worst_case_cost"] == round(2 * M5_LARGE * 2, 2)
    assert annex["prices_date"] == costs.price_table()["date"]
