"""Demand-driven sizing (issue 26, requirements 2, 3 and 5): which jobs are demand, which
instance types can run them, what supply is, and what the planner orders within the limits.

Pure functions, table-driven; the only files read are the recorded queue under tests/data and
the shipped instance-type table.
"""
from __future__ import annotations

import gzip
import json
import os

import classad2
import pytest

from annexd.demand import ads, budget, cycle, instance_types, jobs, planner, slots, supply
from annexd.instance_config import tarball

DATA = os.path.join(os.path.dirname(__file__), "data")
QUEUE = os.path.join(DATA, "queue-burst.ads")
NOW, HOUR = 1_000_000, 3600
REQ = ('(TARGET.Arch == "X86_64") && (TARGET.OpSys == "LINUX") && (TARGET.Disk >= RequestDisk)'
       ' && (TARGET.Memory >= RequestMemory) && (TARGET.HasFileTransfer)')


def fleet(*types: str, spot_price: str | None = None) -> dict:
    specs = [{"ImageId": "ami-1", "InstanceType": t} for t in types]
    for spec in specs:
        if spot_price:
            spec["SpotPrice"] = spot_price
    return {"IamFleetRole": "arn:aws:iam::123456789012:role/r",
            "AllocationStrategy": "priceCapacityOptimized", "TargetCapacity": 1,
            "LaunchSpecifications": specs}


def annex(*types: str, owners: tuple[str, ...] = ("alice",), spot_price: str | None = None):
    return cycle.dry_plan(fleet(*types, spot_price=spot_price), annex="burst", owners=owners,
                          lease_seconds=HOUR, now=NOW)


def job(owner: str = "alice", cpus: int = 1, memory: int = 2048, gpus: int = 0,
        status: int = 1, target: str | None = "burst", may_use_aws: bool = False,
        requirements: str = REQ) -> classad2.ClassAd:
    ad = classad2.ClassAd()
    ad.update({"Owner": owner, "JobStatus": status, "RequestCpus": cpus,
               "RequestMemory": memory, "RequestDisk": 1000})
    ad["Requirements"] = classad2.ExprTree(requirements)
    if gpus:
        ad["RequestGPUs"] = gpus
    if target is not None:
        ad["TargetAnnexName"] = target
    if may_use_aws:
        ad["MayUseAWS"] = True
    return ad


def queue_file(tmp_path, ads_: list[classad2.ClassAd]) -> ads.Source:
    path = tmp_path / "queue.ads"
    path.write_text("\n\n".join(ad.printOld() for ad in ads_) + "\n")
    return ads.file_source(str(path))


def limits(**kw) -> planner.Limits:
    return planner.Limits(now=NOW, lease_end=NOW + HOUR, **kw)


# --- reading ads --------------------------------------------------------------------------
def test_recorded_queue_parses_every_job():
    found = ads.read_file(QUEUE)
    assert len(found) == 25
    assert {ad["Owner"] for ad in found} == {"alice", "bob"}


@pytest.mark.parametrize("text, line", [
    ("Owner = \"alice\"\nRequestCpus = [[[\n", 2),
    ("just words\n", 1),
    ("Requirements = (TARGET.Memory >= \n", 1),
])
def test_a_bad_line_is_named(tmp_path, text, line):
    path = tmp_path / "bad.ads"
    path.write_text(text)
    with pytest.raises(ads.DemandError, match=rf"bad.ads line {line}: not a ClassAd attribute"):
        ads.read_file(str(path))


@pytest.mark.parametrize("text, line, name", [
    ("Owner = \"alice\"\n\nJobStatus = 1\nRequestMemory = 2 GiB\n", 4, "RequestMemory"),
    ('Cmd = "/bin/true" extra\n', 1, "Cmd"),
])
def test_a_value_kept_only_in_part_is_named(tmp_path, text, line, name):
    path = tmp_path / "bad.ads"
    path.write_text(text)
    with pytest.raises(ads.DemandError, match=rf"bad.ads line {line}: the value of {name} is "
                       "not a ClassAd expression"):
        ads.read_file(str(path))


def test_global_queue_headers_are_skipped(tmp_path):
    """condor_q -long -global heads each schedd's ads with a line of its own."""
    path = tmp_path / "global.ads"
    path.write_text("-- Schedd: submit.example.org : <10.0.0.1:9618?...>\n"
                    'Owner = "alice"\nJobStatus = 1\n\n'
                    "-- Schedd: other.example.org : <10.0.0.2:9618?...>\n"
                    'Owner = "bob"\nJobStatus = 1\n')
    assert [ad["Owner"] for ad in ads.read_file(str(path))] == ["alice", "bob"]


@pytest.mark.parametrize("value, expect", [
    (None, "default"), ("file:/x/q.ads", "file /x/q.ads"), ("file: /x/q.ads", "file /x/q.ads"),
])
def test_knob_names_a_source(value, expect):
    default = ads.Source("default", lambda c, p: [])
    assert ads.source(value, lambda: default, "ANNEX_DEMAND_JOBS").description == expect


@pytest.mark.parametrize("value", ["file:", "schedd:foo", "/x/q.ads"])
def test_knob_refuses_other_values(value):
    with pytest.raises(ads.DemandError, match="ANNEX_DEMAND_JOBS = .*expected file:PATH"):
        ads.source(value, lambda: ads.Source("d", lambda c, p: []), "ANNEX_DEMAND_JOBS")


def test_a_file_source_is_read_again_each_time(tmp_path):
    source = queue_file(tmp_path, [job()])
    assert len(source.read("true", [])) == 1
    (tmp_path / "queue.ads").write_text(job().printOld() + "\n\n" + job().printOld() + "\n")
    assert len(source.read("true", [])) == 2


def test_unreadable_file_is_a_demand_error(tmp_path):
    with pytest.raises(ads.DemandError, match="cannot read ads from"):
        ads.read_file(str(tmp_path / "missing.ads"))


# --- instance types -----------------------------------------------------------------------
def test_shipped_table_is_ec2s_data():
    """The table is DescribeInstanceTypes' records, as moto ships them from AWS."""
    import moto
    path = os.path.join(os.path.dirname(moto.__file__), "ec2/resources/instance_types.json.gz")
    with gzip.open(path) as f:
        records = list(json.load(f).values())
    with open(instance_types.TABLE, encoding="utf-8") as f:
        assert json.load(f)["types"] == instance_types.rows(records), (
            "refresh: python -m annexd.demand.instance_types -refresh RECORDS.json")


def test_refresh_writes_the_table_from_describe_instance_types(tmp_path, monkeypatch):
    records = {"InstanceTypes": [
        {"InstanceType": "m5.large", "VCpuInfo": {"DefaultVCpus": 2},
         "MemoryInfo": {"SizeInMiB": 8192}, "ProcessorInfo": {"SupportedArchitectures":
                                                              ["x86_64"]}},
        {"InstanceType": "mac1.metal", "VCpuInfo": {"DefaultVCpus": 12},
         "MemoryInfo": {"SizeInMiB": 32768},
         "ProcessorInfo": {"SupportedArchitectures": ["x86_64_mac"]}}]}
    source = tmp_path / "records.json"
    source.write_text(json.dumps(records))
    monkeypatch.setattr(instance_types, "TABLE", str(tmp_path / "table.json"))
    assert instance_types.main(["-refresh", str(source)]) == 0
    with open(tmp_path / "table.json", encoding="utf-8") as f:
        assert json.load(f)["types"] == {"m5.large": [2, 8192, 0, "X86_64"]}


@pytest.mark.parametrize("name, cpus, gib, gpus, arch", [
    ("m5.large", 2, 8, 0, "X86_64"), ("r5.2xlarge", 8, 64, 0, "X86_64"),
    ("g4dn.xlarge", 4, 16, 1, "X86_64"), ("m6g.large", 2, 8, 0, "aarch64"),
])
def test_instance_type_resources(name, cpus, gib, gpus, arch):
    found = instance_types.lookup(name)
    assert (found.cpus, found.memory_gib, found.gpus, found.arch) == (cpus, gib, gpus, arch)


def test_unknown_type_is_none():
    assert instance_types.lookup("x9.mega") is None and instance_types.lookup(None) is None


# --- which jobs are demand ----------------------------------------------------------------
@pytest.mark.parametrize("ad, counted", [
    (job(), True),
    (job(target=None, may_use_aws=True), True),            # the original's gate
    (job(owner="bob"), False),                             # another owner's
    (job(target="other"), False),                          # another annex's
    (job(target=None), False),                             # routed to no annex
    (job(status=2), False),                                # running
    (job(status=5), False),                                # held
])
def test_demand_is_the_owners_idle_jobs_routed_to_the_annex(ad, counted):
    test = classad2.ExprTree(jobs.constraint("burst", ["alice"]))
    assert (test.eval(ad) is True) is counted


def test_no_owner_annex_counts_anyones_jobs():
    test = classad2.ExprTree(jobs.constraint("burst", []))
    assert test.eval(job(owner="bob")) is True


def test_groups_by_requests_biggest_first():
    groups = jobs.group([job(), job(), job(cpus=4, memory=8192), job(memory=4096)])
    assert [(g.requests.cpus, g.requests.memory_mib, g.count) for g in groups] == [
        (4, 8192, 1), (1, 4096, 1), (1, 2048, 2)]


def test_request_memory_expression_is_evaluated():
    ad = job()
    ad["RequestMemory"] = classad2.ExprTree(
        "ifthenelse(MemoryUsage =!= undefined, MemoryUsage, 3000)")
    assert jobs.requests(ad).memory_mib == 3000


# --- matching with the annex's START --------------------------------------------------------
@pytest.mark.parametrize("start, text", [
    (None, "True"),
    ('($(START)) && stringListMember(Owner, "alice, bob")',
     '(True) && member(Owner, {"alice", "bob"})'),
    ('(MY.AnnexName == TARGET.TargetAnnexName || TARGET.MayUseAWS == TRUE) && '
     'stringListMember(Owner, "alice")',
     '(MY.AnnexName == TARGET.TargetAnnexName || TARGET.MayUseAWS == TRUE) && '
     'member(Owner, {"alice"})'),
])
def test_start_as_classad2_evaluates_it(start, text):
    assert slots.evaluable(start) == text


def test_slot_start_is_the_instances_start():
    """The planner's slots carry what the tarball writes into the instances' config."""
    plan = annex("m5.large", owners=("alice", "bob"))
    [choice], _ = planner.choices(plan)
    written = [line for line in tarball.annex_config(plan).splitlines()
               if line.startswith("START = ")]
    assert written == [f"START = {tarball.start_expression(plan)}"]
    assert str(choice.slot.lookup("START")) == str(classad2.ExprTree(
        slots.evaluable(tarball.start_expression(plan))))


@pytest.mark.parametrize("start, ad, expect", [
    (None, job(owner="carol"), True),
    ('($(START)) && stringListMember(Owner, "alice")', job(), True),
    ('($(START)) && stringListMember(Owner, "alice")', job(owner="carol"), False),
    ('MY.AnnexName == TARGET.TargetAnnexName || TARGET.MayUseAWS == TRUE', job(), True),
    ('MY.AnnexName == TARGET.TargetAnnexName || TARGET.MayUseAWS == TRUE',
     job(target="other"), False),
    ('MY.AnnexName == TARGET.TargetAnnexName || TARGET.MayUseAWS == TRUE',
     job(target=None, may_use_aws=True), True),
    # MayUseAWS unscoped is the job's, as in a startd (classad2 alone would not find it).
    ("MayUseAWS == TRUE", job(target=None, may_use_aws=True), True),
    (None, job(memory=9000), False),                          # the job's Requirements
    (None, job(requirements='TARGET.Arch == "aarch64"'), False),
])
def test_matching(start, ad, expect):
    slot = slots.type_slot(instance_types.lookup("m5.large"), "burst", start,
                           slots.disk_kib({}))
    assert slots.matches(ad, slot) is expect


@pytest.mark.parametrize("want, have, fits", [
    (jobs.Requests(1, 2048), jobs.Requests(2, 8192), 2),
    (jobs.Requests(1, 6000), jobs.Requests(2, 8192), 1),
    (jobs.Requests(4, 1024), jobs.Requests(2, 8192), 0),
    (jobs.Requests(1, 0, 1), jobs.Requests(8, 8192, 2), 2),
    (jobs.Requests(0, 0), jobs.Requests(2, 8192), 1),
])
def test_how_many_fit(want, have, fits):
    assert slots.how_many(want, have) == fits


def test_disk_is_the_largest_volume():
    request = {"LaunchSpecifications": [{"BlockDeviceMappings": [
        {"Ebs": {"VolumeSize": 30}}, {"Ebs": {"VolumeSize": 100}}]}]}
    assert slots.disk_kib(request) == 100 * 1024 * 1024
    assert slots.disk_kib({}) == slots.DEFAULT_DISK_GIB * 1024 * 1024


# --- the planner --------------------------------------------------------------------------
def decide(plan, queue, instances=(), slot_ads=(), **kw):
    options, _ = planner.choices(plan)
    return planner.decide(jobs.group(queue), options, instances, list(slot_ads), limits(**kw))


def slot_ad(instance: str, state: str = "Unclaimed", cpus: int = 2, memory: int = 8192,
            start: str = "True") -> classad2.ClassAd:
    ad = slots.type_slot(instance_types.lookup("m5.large"), "burst", start,
                         slots.disk_kib({}))
    ad.update({"EC2InstanceID": instance, "State": state, "Cpus": cpus, "Memory": memory,
               "Name": f"slot1@{instance}"})
    return ad


@pytest.mark.parametrize("case, types, queue, orders", [
    ("two small jobs per m5.large", ("m5.large",), [job()] * 5, {"m5.large": 3}),
    ("cheapest per job: four to an xlarge is no dearer, name order breaks the tie",
     ("m5.xlarge", "m5.large"), [job()] * 4, {"m5.large": 2}),
    ("a 4-CPU job needs an xlarge", ("m5.large", "m5.xlarge"), [job(cpus=4, memory=8192)],
     {"m5.xlarge": 1}),
    ("a 40 GiB job needs r5.2xlarge", ("m5.large", "r5.2xlarge"), [job(memory=40960)],
     {"r5.2xlarge": 1}),
    ("first order full size", ("m5.large",), [job()] * 40, {"m5.large": 20}),
    ("small jobs fill the room big ones leave", ("m5.xlarge",),
     [job(cpus=3, memory=4096), job()], {"m5.xlarge": 1}),
    ("GPU jobs go to the GPU type", ("m5.xlarge", "g4dn.xlarge"), [job(gpus=1, memory=4096)],
     {"g4dn.xlarge": 1}),
])
def test_orders(case, types, queue, orders):
    assert decide(annex(*types), queue).orders == orders, case


@pytest.mark.parametrize("queue, reason", [
    ([job(memory=512 * 1024)] * 3,
     "3 jobs ask for 512 GiB; the largest type in the config has 64"),
    ([job(cpus=16)], "1 job asks for 16 CPUs; the largest type in the config has 8"),
    ([job(gpus=1)] * 2, "2 jobs ask for 1 GPU; the config's types have at most 0"),
    ([job(requirements='TARGET.Arch == "aarch64"')],
     "1 job (1 CPU, 2 GiB) matches no type of the config"),
])
def test_jobs_no_type_fits_launch_nothing(queue, reason):
    decision = decide(annex("m5.large", "r5.2xlarge"), queue)
    assert decision.orders == {}
    assert [u.reason for u in decision.unfit][0].startswith(reason)
    assert f"cannot run: {reason}" in "\n".join(decision.lines())


def test_weighted_types_order_in_capacity_units():
    config = fleet("m5.large", "m5.xlarge")
    for spec in config["LaunchSpecifications"]:
        spec["WeightedCapacity"] = {"m5.large": 2.0, "m5.xlarge": 4.0}[spec["InstanceType"]]
    plan = cycle.dry_plan(config, annex="burst", owners=("alice",), lease_seconds=HOUR,
                          now=NOW)
    decision = decide(plan, [job(cpus=4, memory=8192)] + [job()] * 2)
    assert decision.orders == {"m5.xlarge": 1, "m5.large": 1}
    assert decision.units == 6
    assert "order: 1 x m5.xlarge, 1 x m5.large (6 capacity units)" in decision.lines()


def test_unfit_groups_do_not_stop_the_others():
    decision = decide(annex("m5.large"), [job(memory=512 * 1024), job()])
    assert decision.orders == {"m5.large": 1} and len(decision.unfit) == 1


def test_other_owners_and_annexes_jobs_are_ignored(tmp_path):
    source = queue_file(tmp_path, [job(owner="bob"), job(target="other"), job(target=None),
                                   job(status=2)])
    plan = annex("m5.large")
    decision = cycle.assess(plan, source, limits())
    assert (decision.jobs, decision.orders) == (0, {})


@pytest.mark.parametrize("case, instances, slot_ads, orders", [
    ("booting instances take the demand: no second order",
     [supply.Instance("i-1", "m5.large"), supply.Instance("i-2", "m5.large")], [], {}),
    ("one booting instance: the rest is ordered",
     [supply.Instance("i-1", "m5.large")], [], {"m5.large": 1}),
    ("an advertised instance counts by its unclaimed slot, once",
     [supply.Instance("i-1", "m5.large"), supply.Instance("i-2", "m5.large")],
     [slot_ad("i-1")], {}),
    ("a claimed slot is not supply, and its instance is not booting",
     [supply.Instance("i-1", "m5.large"), supply.Instance("i-2", "m5.large")],
     [slot_ad("i-1", state="Claimed")], {"m5.large": 1}),
    ("a partly used slot counts for what it has free",
     [supply.Instance("i-1", "m5.large")], [slot_ad("i-1", cpus=1, memory=2048)],
     {"m5.large": 2}),
    ("an idle slot whose START refuses the jobs is no supply",
     [supply.Instance("i-1", "m5.large")], [slot_ad("i-1", start='Owner == "bob"')],
     {"m5.large": 2}),
])
def test_supply_counted_once(case, instances, slot_ads, orders):
    decision = decide(annex("m5.large"), [job()] * 4, instances, slot_ads)
    assert decision.orders == orders, case


def test_no_duplicate_orders_while_instances_boot():
    """Cycle after cycle, an order still booting is not ordered again."""
    plan, queue = annex("m5.large"), [job()] * 6
    instances: list[supply.Instance] = []
    for cycle_number in range(4):
        decision = decide(plan, queue, instances)
        for _ in range(decision.orders.get("m5.large", 0)):
            instances.append(supply.Instance(f"i-{len(instances)}", "m5.large"))
        assert len(instances) == 3, cycle_number


@pytest.mark.parametrize("case, kw, ordered, held_by", [
    ("-max-instances", {"max_instances": 3}, 3, "-max-instances is 3"),
    ("ANNEX_MAX_INSTANCES with the owner's other annexes",
     {"site_max_instances": 5, "others_instances": 4}, 1, "ANNEX_MAX_INSTANCES is 5"),
    # 0.096/h for 61 minutes is $0.0976 an instance: $0.30 buys three.
    ("-max-cost", {"budget": budget.Budget(annex_cap=0.30)}, 3, "over -max-cost"),
    ("ANNEX_MAX_COST", {"budget": budget.Budget(site_cap=0.30)}, 3, "over ANNEX_MAX_COST"),
    ("spent so far counts", {"budget": budget.Budget(annex_cap=0.30, spent=0.1)}, 2,
     "over -max-cost"),
    ("ANNEX_MAX_COST_PER_USER with the others",
     {"budget": budget.Budget(user_cap=1.0, others=0.75)}, 2, "ANNEX_MAX_COST_PER_USER"),
    ("no limit", {}, 10, ""),
])
def test_limits_cut_the_order(case, kw, ordered, held_by):
    decision = decide(annex("m5.large"), [job()] * 20, **kw)
    assert decision.instances == ordered, case
    assert held_by in decision.held_by
    assert decision.held_back == 10 - ordered
    if decision.cost is not None and "budget" in kw:
        assert budget.over(kw["budget"], decision.cost) is None


def test_money_rule_skips_what_it_cannot_afford_and_takes_a_cheaper_type():
    """$0.30 buys one m5.xlarge ($0.195 to the lease end) and then no second, but an
    m5.large ($0.0976) still fits."""
    decision = decide(annex("m5.large", "m5.xlarge"), [job(cpus=4, memory=8192)] * 2 +
                      [job()] * 2, budget=budget.Budget(annex_cap=0.30))
    assert decision.orders == {"m5.xlarge": 1, "m5.large": 1}
    assert decision.held_back == 1 and "over -max-cost" in decision.held_by
    assert decision.unplaced == 1
    assert decision.cost <= 0.30


def test_running_instances_count_against_the_limits():
    running = [supply.Instance(f"i-{n}", "m5.large") for n in range(2)]
    slot_ads = [slot_ad(f"i-{n}", state="Claimed") for n in range(2)]
    decision = decide(annex("m5.large"), [job()] * 20, running, slot_ads, max_instances=5)
    assert decision.instances == 3


def test_a_running_type_the_config_no_longer_names_is_priced_from_the_table():
    running = [supply.Instance("i-1", "r5.large")]
    decision = decide(annex("m5.large"), [job()] * 2, running,
                      [slot_ad("i-1", state="Claimed")], budget=budget.Budget(annex_cap=1.0))
    assert decision.orders == {"m5.large": 1}
    assert decision.cost == pytest.approx((0.126 + 0.096) * 61 / 60)


def test_unpriced_type_orders_nothing_under_a_cost_cap():
    decision = decide(annex("m5.24xlarge"), [job()],
                      budget=budget.Budget(annex_cap=100.0))
    assert decision.orders == {} and "without a known price" in decision.held_by


def test_spot_price_prices_an_unknown_type():
    decision = decide(annex("m5.24xlarge", spot_price="0.05"), [job()],
                      budget=budget.Budget(annex_cap=100.0))
    assert decision.orders == {"m5.24xlarge": 1}


# --- the money rule -----------------------------------------------------------------------
@pytest.mark.parametrize("spent, prices, lease_left, total", [
    (0.0, [], HOUR, 0.0),
    (0.0, [0.096], HOUR, 0.096 * 61 / 60),
    (1.5, [0.096, 0.192], 1800, 1.5 + 0.288 * 31 / 60),
    (0.0, [0.096], -600, 0.096 / 60),           # past its lease: the grace minute only
    (0.0, [None], HOUR, None),
])
def test_committed(spent, prices, lease_left, total):
    found = budget.committed(budget.Budget(spent=spent), prices, NOW, NOW + lease_left)
    assert found == pytest.approx(total) if total is not None else found is None


@pytest.mark.parametrize("cap, total, broken", [
    (budget.Budget(annex_cap=1.0), 1.0, None),
    (budget.Budget(annex_cap=1.0), 1.01, "-max-cost"),
    (budget.Budget(site_cap=1.0, annex_cap=5.0), 1.01, "ANNEX_MAX_COST"),
    (budget.Budget(user_cap=1.0, others=0.5), 0.5, None),
    (budget.Budget(user_cap=1.0, others=0.5), 0.51, "ANNEX_MAX_COST_PER_USER"),
    (budget.Budget(), None, None),
    (budget.Budget(annex_cap=1.0), None, "without a known price"),
])
def test_over(cap, total, broken):
    found = budget.over(cap, total)
    assert (found is None) if broken is None else (broken in found)


def test_recorded_queue_plan():
    plan = annex("m5.large", "m5.xlarge", "r5.2xlarge")
    decision = cycle.assess(plan, ads.file_source(QUEUE), limits())
    assert decision.jobs == 15
    assert decision.orders == {"m5.xlarge": 4, "m5.large": 3}
    assert sorted(u.reason for u in decision.unfit) == [
        "2 jobs ask for 1 GPU; the config's types have at most 0",
        "3 jobs ask for 512 GiB; the largest type in the config has 64"]


# --- the HTCondor adapter -------------------------------------------------------------------
def test_unreachable_daemons_are_a_demand_error_naming_them(condor_config):
    """Without a schedd or a collector to ask, the adapters say which; nothing else escapes."""
    from annexd.demand import condor
    condor_config("COLLECTOR_HOST = 127.0.0.1:9\nSCHEDD_HOST = 127.0.0.1")
    with pytest.raises(ads.DemandError, match="cannot query the local schedd"):
        condor.local_schedd().read(jobs.constraint("burst", ["alice"]), jobs.PROJECTION)
    with pytest.raises(ads.DemandError, match="cannot query the pool's collector"):
        condor.pool_collector().read(supply.slot_constraint("burst"), supply.PROJECTION)


def test_supply_from_recorded_slot_ads():
    """condor_status -long ads of the annex (tests/data/slots-burst.ads): i-0a1 runs a job in
    a dynamic slot and has 1 CPU and 5.5 GiB left; i-0b2 is idle; i-0c3 still boots; a slot
    of another annex does not count.  Their START says stringListMember, as a startd's does,
    and their Requirements need WithinResourceLimits: both must still match."""
    plan = annex("m5.large")
    source = ads.file_source(os.path.join(DATA, "slots-burst.ads"))
    slot_ads = cycle.annex_slots(source, plan)
    assert {str(ad["EC2InstanceID"]) for ad in slot_ads} == {"i-0a1", "i-0b2"}
    instances = [supply.Instance(i, "m5.large") for i in ("i-0a1", "i-0b2", "i-0c3")]
    decision = decide(plan, [job()] * 6, instances, slot_ads)
    assert decision.supplied == 5                   # 1 + 2 + 2 (booting)
    assert decision.orders == {"m5.large": 1}


def test_a_startd_start_with_string_lists_still_matches():
    [ad] = [a for a in ads.read_file(os.path.join(DATA, "slots-burst.ads"))
            if a["Name"].startswith("slot1@ip-10-0-0-12")]
    seen = slots.as_startd_sees_it(ad)
    assert "stringlistmember" not in str(seen).lower()
    assert slots.matches(job(), seen)
    assert not slots.matches(job(owner="bob"), seen)


def test_matching_does_not_depend_on_what_loaded_htcondors_functions():
    """In a fresh process, before htcondor2 or parseOne loads HTCondor's ClassAd functions,
    stringListMember is ERROR in classad2; the owner check must hold all the same."""
    code = "\n".join([
        "import classad2",
        "assert classad2.ExprTree('stringListMember(\"a\", \"a, b\")').eval() is "
        "classad2.Value.Error",
        "from annexd.demand import instance_types, slots",
        "slot = slots.type_slot(instance_types.lookup('m5.large'), 'burst',",
        "                       '($(START)) && stringListMember(Owner, \"alice, bob\")', 8388608)",
        "def job(owner):",
        "    ad = classad2.ClassAd({'Owner': owner, 'RequestCpus': 1, 'RequestMemory': 1024})",
        "    ad['Requirements'] = classad2.ExprTree('TARGET.Memory >= RequestMemory')",
        "    return ad",
        "print(slots.matches(job('alice'), slot), slots.matches(job('carol'), slot))"])
    import subprocess
    import sys
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "False"]


def test_assess_reads_demand_and_supply_from_their_sources(tmp_path):
    """One cycle as an auto annex would run it: ANNEX_DEMAND_JOBS and ANNEX_DEMAND_SLOTS as
    file: sources, the instances as AWS lists them."""
    jobs_source = queue_file(tmp_path, [job()] * 6 + [job(owner="bob")] * 3)
    slots_source = ads.source(f"file:{os.path.join(DATA, 'slots-burst.ads')}",
                              lambda: pytest.fail("the default source was used"),
                              "ANNEX_DEMAND_SLOTS")
    instances = [supply.Instance(i, "m5.large") for i in ("i-0a1", "i-0b2", "i-0c3")]
    decision = cycle.assess(annex("m5.large"), jobs_source, limits(),
                            slots_source=slots_source, instances=instances)
    assert (decision.jobs, decision.supplied, decision.orders) == (6, 5, {"m5.large": 1})
    assert decision.lines()[0] == "demand: 6 idle jobs; 5 can run on what the annex has"
