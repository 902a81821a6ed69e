"""The same name again adds instances under the annex's lease (issue 25, requirement 4).

The original condor_annex, run again with a live annex's name, added instances to it.  Here a
second create of a live annex's name, by its owner paying with the same principal, adds a
launch of the annex's kind: its resources carry the annex's tags (so its lease function,
-off and the backstop end them with the rest) and its own EC2 ClientToken, journaled before
the call (a crash neither duplicates nor orphans it); the lease is not moved; the caps count
the whole annex; -status shows the launches together.  Anything else is refused, changing
nothing.
"""
from __future__ import annotations

import json
import dataclasses
import sqlite3
import subprocess

import pytest

from annexd.commands import grow
from annexd.commands.context import Caller
from annexd.config.knobs import Caps
from annexd.launch.plan import AnnexPlan, InvalidRequest
from annexd.money import costs
from annexd.rpc import protocol
from annexd_lambda.lease import ANNEX_TAG, CLIENT_TOKEN_TAG, OWNER_TAG, find_instances
from localaws import fixtures
from localaws.pool import AnnexDaemon, LocalPool

from conftest import SECRET, SPOT_CONFIG, serving_pool
from test_caps_units import M5_LARGE, START, plan_of, spot_config
from test_payer import other_account
from test_recovery import DAEMON_CREDENTIALS, KNOBS, annex, live_fleets, unfinished

ODI = ("-aws-on-demand-ami-id", "ami-12c6146b", "-aws-on-demand-instance-type", "m5.large")


def tags_of(resource: dict) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in resource.get("Tags", [])}


def added(pool: LocalPool, name: str) -> list[tuple[int, str]]:
    with sqlite3.connect(pool.journal_file) as db:
        return db.execute("SELECT l.number, l.state FROM added_launches l JOIN requests r"
                          " ON r.id = l.request_id WHERE r.annex_id = ? ORDER BY l.number",
                          (name,)).fetchall()


def status_of(pool: LocalPool, name: str, *flags: str) -> dict:
    shown = pool.condor_annex("-annex-name", name, "-status", "-json", *flags)
    assert shown.returncode == 0, shown.stderr
    [report] = json.loads(shown.stdout)
    return report


# -- end to end, with the user's keys (the module's daemon) ------------------------------------

def test_nothing_is_added_under_a_lease_aws_no_longer_holds(aws, pool, daemon):
    """Found by the model test: the lease function's tick ended an annex (its rule, target,
    fleet and object) while a lease change held it, and the row stayed active with a later
    end; the owner's next create of the name then added a fleet that nothing would end.  A
    launch is added only under a lease AWS holds: here the rule and target are removed as
    the tick removes them, the journal still says active, and the create is refused."""
    args = ("-annex-name", "gone", "-lease-function-arn", aws.lease_arn, "-lease-duration",
            "3600", "-count", "1", SPOT_CONFIG)
    first = pool.condor_annex(*args)
    assert first.returncode == 0, first.stderr
    targets = aws.events.list_targets_by_rule(Rule="gone")["Targets"]
    aws.events.remove_targets(Rule="gone", Ids=[t["Id"] for t in targets])
    aws.events.delete_rule(Name="gone")
    fleets = set(aws.annex_resources("gone")["fleets"])
    again = pool.condor_annex(*args)
    assert again.returncode != 0
    assert "has no lease in force in AWS" in again.stderr and "nothing was" not in \
        again.stdout, again.stderr
    assert set(aws.annex_resources("gone")["fleets"]) == fleets  # no second fleet
    assert added(pool, "gone") == []  # nothing journaled: nothing to resume later
    assert pool.condor_annex("-annex-name", "gone", "-off").returncode == 0


def test_the_same_name_again_adds_a_fleet_that_the_annexs_lease_ends(aws, pool, daemon,
                                                                       fire_lease):
    args = ("-annex-name", "twice", "-lease-function-arn", aws.lease_arn)
    first = pool.condor_annex(*args, "-lease-duration", "600", "-count", "1", SPOT_CONFIG)
    assert first.returncode == 0, first.stderr
    lease = aws.target_input("twice")
    second = pool.condor_annex(*args, "-lease-duration", "7200", "-count", "2", SPOT_CONFIG)
    assert second.returncode == 0, second.stderr
    assert "added launch 2 to annex twice" in second.stderr
    # The lease is the annex's: not moved, and the reply says so and how to move it.
    assert "this command's lease (7200 s" in second.stderr
    assert "-annex-name twice -lease-duration SECONDS" in second.stderr
    assert aws.target_input("twice") == lease
    held = aws.annex_resources("twice")
    fleet_ids = {first.stdout.strip(), second.stdout.strip()}
    assert set(held["fleets"]) == fleet_ids and len(fleet_ids) == 2
    assert len(held["instances"]) == 3 and held["rules"] == ["twice"]
    assert len(held["objects"]) == 1
    # The added fleet and its instances carry the annex's tags, its own launch tag.
    fleets = {f["SpotFleetRequestId"]: tags_of(f) for f in aws.all_fleets()}
    one, two = fleets[first.stdout.strip()], fleets[second.stdout.strip()]
    assert two[CLIENT_TOKEN_TAG] == one[CLIENT_TOKEN_TAG] == lease["ClientToken"]
    assert two[OWNER_TAG] == one[OWNER_TAG] and two[ANNEX_TAG] == "twice"
    assert two[grow.LAUNCH_TAG] == grow.launch_token(lease["ClientToken"], 2)
    assert len(find_instances(aws.ec2, "twice", lease["ClientToken"])) == 3
    assert added(pool, "twice") == [(2, "done")]
    # -status: the launches together, counted as one annex.
    report = status_of(pool, "twice")
    assert [(l["number"], l["capacity"], l["state"]) for l in report["launches"]] == \
        [(1, 1, "done"), (2, 2, "done")]
    assert report["launches"][1]["spot_fleet_request_id"] == second.stdout.strip()
    assert sum(report["instances"].values()) == 3 and report["max_instances"] == 3
    table = pool.condor_annex("-annex-name", "twice", "-status")
    assert "twice: 2 launches under its lease" in table.stdout
    # The lease function, at the annex's lease end, ends every launch.
    summary = fire_lease(lease, now=lease["LeaseExpiration"] + 1)
    assert summary["expired"] and set(summary["cancelled_fleets"]) == fleet_ids
    assert not any(aws.annex_resources("twice").values())


def test_off_ends_every_launch_and_refusals_change_nothing(aws, pool, daemon, moto_server):
    args = ("-annex-name", "grown", "-lease-function-arn", aws.lease_arn, "-lease-duration",
            "3600", *ODI)
    first = pool.condor_annex(*args, "-count", "1")
    assert first.returncode == 0, first.stderr
    second = pool.condor_annex(*args, "-count", "2", "-idle", "2")
    assert second.returncode == 0, second.stderr
    assert "the annex's own configuration" in second.stderr  # -idle: the annex's applies
    assert len(second.stdout.split()) == 2
    before = aws.annex_resources("grown")
    assert len(before["instances"]) == 3
    # Another kind, another payer (another account's keys): refused.
    kind = pool.condor_annex(*args[:4], "-lease-duration", "3600", "-count", "1", SPOT_CONFIG)
    assert kind.returncode == 4 and "is of type on-demand; instances added to it must be " \
        "too: give -count without a config file" in kind.stderr, kind.stderr
    assert "nothing was changed" in kind.stderr
    other = other_account(moto_server.url, pool.root)
    keys = pool.condor_annex(*args, "-count", "1", "-public-key-file", other.access_file,
                             "-secret-key-file", other.secret_file, keys=False)
    assert keys.returncode == 4 and "only the principal that pays for an annex may add " \
        "instances to it; nothing was changed" in keys.stderr, keys.stderr
    assert aws.annex_resources("grown") == before and added(pool, "grown") == [(2, "done")]
    classad = pool.condor_annex("-annex-name", "grown", "-status", "-classad")
    assert "NumLaunches = 2" in classad.stdout
    off = pool.condor_annex("-annex-name", "grown", "-off")
    assert off.returncode == 0, off.stderr
    assert not any(aws.annex_resources("grown").values())


def test_a_confirmation_says_what_is_added_and_under_which_lease(aws, pool, daemon):
    """The prompt's dry run (what condor_annex asks before it acts at a terminal)."""
    from condor_annex import client
    args = ("-annex-name", "asked", "-lease-function-arn", aws.lease_arn, "-lease-duration",
            "3600", *ODI)
    assert pool.condor_annex(*args, "-count", "1").returncode == 0
    request = {"version": protocol.VERSION, "command": "create", "dry_run": True, "annex": {
        "name": "asked", "region": "us-east-1", "lease_duration": 3600, "count": 2,
        "lease_function_arn": aws.lease_arn,
        "on_demand": {"image_id": "ami-12c6146b", "instance_type": "m5.large"}}}
    with open(pool.access_key_file) as access, open(pool.secret_key_file) as secret:
        request["credentials"] = {"access_key_id": access.read().strip(),
                                  "secret_access_key": secret.read().strip()}
    reply = client.call(pool.socket_path, request)
    assert reply["ok"], reply
    found = reply["result"]["estimate"]
    assert found["capacity"] == 2 and found["annex_instances"] == 3
    assert 0.9 < found["hours"] <= 1.0
    assert any("the instances are added to it, under its lease" in n for n in reply["notices"])
    assert len(aws.annex_resources("asked")["instances"]) == 1  # a look: nothing started
    assert pool.condor_annex("-annex-name", "asked", "-off").returncode == 0


# -- crash safety ------------------------------------------------------------------------------

@pytest.fixture
def crash_pool(aws, moto_server, tmp_path) -> LocalPool:
    return LocalPool(str(tmp_path)).write(moto_server.url, secret=SECRET,
                                          extra=f"{KNOBS}\nANNEX_DEFAULT_LEASE_FUNCTION_ARN = "
                                                f"{aws.lease_arn}")


def grown_in_a_crash(pool: LocalPool, point: str, *, keys: bool = False) -> None:
    """Create annex phoenix, then add to it, with a daemon that dies like kill -9 at the
    second ``point`` (the added launch's call: the create's was the first)."""
    env = {**({} if keys else DAEMON_CREDENTIALS), "ANNEXD_TEST_CRASH_AT": f"{point}:2"}

    def create_then_add() -> subprocess.CompletedProcess:
        made = annex(pool, "-lease-duration", "3600", keys=keys)
        assert made.returncode == 0, made.stderr
        return annex(pool, "-lease-duration", "3600", keys=keys)

    result = AnnexDaemon(pool, env).crash_during(create_then_add)
    assert result.returncode == 3 and "condor_annexd" in result.stderr


@pytest.mark.parametrize("when", ["before", "after"])
def test_kill_between_journaling_an_added_launch_and_its_call_then_finish_once(
        when, aws, crash_pool):
    grown_in_a_crash(crash_pool, f"EC2 RequestSpotFleet:{when}")
    assert added(crash_pool, "phoenix") == [(2, "sent")]  # on disk before the call
    assert len(live_fleets(aws, "phoenix")) == (1 if when == "before" else 2)
    with AnnexDaemon(crash_pool, DAEMON_CREDENTIALS):  # recovery finishes it, once
        assert added(crash_pool, "phoenix") == [(2, "done")]
        assert len(live_fleets(aws, "phoenix")) == 2
        assert len(aws.annex_resources("phoenix")["instances"]) == 4
        assert unfinished(crash_pool) == []
        report = status_of(crash_pool, "phoenix")
        assert report["state"] == "active" and len(report["launches"]) == 2
        # The owner's repeat (what the interrupted command said to do) is told, once, that
        # the daemon finished it: nothing is added.
        again = annex(crash_pool, "-lease-duration", "3600")
        assert again.returncode == 0 and "finished annex 'phoenix' (launch 2) itself" in \
            again.stderr and "nothing more was added" in again.stderr, again.stderr
        assert len(live_fleets(aws, "phoenix")) == 2
        # Paid by the daemon's identity: the owner's keys add nothing to it.
        keys = annex(crash_pool, "-lease-duration", "3600", keys=True)
        assert keys.returncode == 4, keys.stderr
        assert "is paid by condor_annexd's own AWS identity" in keys.stderr
        assert added(crash_pool, "phoenix") == [(2, "done")]


def test_user_keys_kill_after_the_added_launchs_call_then_the_owners_repeat_finds_it(
        aws, crash_pool):
    grown_in_a_crash(crash_pool, "EC2 RequestSpotFleet:after", keys=True)
    with AnnexDaemon(crash_pool):  # no identity of its own: the launch waits, sent
        assert added(crash_pool, "phoenix") == [(2, "sent")]
        assert len(live_fleets(aws, "phoenix")) == 2  # the call was made
        again = annex(crash_pool, "-lease-duration", "3600", keys=True)
        assert again.returncode == 0, again.stderr
        assert "finished launch 2 of annex 'phoenix'" in again.stderr
        assert added(crash_pool, "phoenix") == [(2, "done")]
        assert len(live_fleets(aws, "phoenix")) == 2  # found, not sent again


# -- caps ----------------------------------------------------------------------------------

@pytest.fixture
def capped(aws, moto_server, tmp_path):
    yield from serving_pool(aws, moto_server, str(tmp_path), "ANNEX_MAX_INSTANCES = 3")


def test_end_to_end_the_instance_cap_counts_the_whole_annex(aws, capped):
    args = ("-annex-name", "edge", "-lease-duration", "3600", *ODI)
    assert capped.condor_annex(*args, "-count", "2").returncode == 0
    at_cap = capped.condor_annex(*args, "-count", "1")
    assert at_cap.returncode == 0, at_cap.stderr
    over = capped.condor_annex(*args, "-count", "1")
    assert over.returncode == 4
    assert "annex 'edge' may run up to 3 instances; 1 more would make 4, over the limit of " \
        "3 (ANNEX_MAX_INSTANCES); nothing was changed" in over.stderr
    assert len(aws.annex_resources("edge")["instances"]) == 3
    # A new annex of the same owner counts every launch of the grown one.
    other = capped.condor_annex("-annex-name", "other", "-lease-duration", "3600", *ODI,
                                "-count", "1")
    assert other.returncode == 4 and "would make 4 for you" in other.stderr


def part(config: dict, start: int = START, end_hours: float = 2) -> AnnexPlan:
    """A launch of annex x from ``start`` to the annex's lease end."""
    return dataclasses.replace(plan_of(config, hours=end_hours), created_at=start)


def test_the_instance_cap_counts_every_launch_whatever_the_weights():
    first = part(spot_config(1, 0.5))                        # 2 instances
    quarter = part(spot_config(1, 0.25), START + 3600)        # 4 instances
    assert costs.check_added([first], quarter, Caps(max_instances=6),
                             lambda: costs.Holding())["annex_instances"] == 6
    with pytest.raises(InvalidRequest, match="may run up to 2 instances; 4 more would make 6, "
                       "over the limit of 5"):
        costs.check_added([first], quarter, Caps(max_instances=5), lambda: costs.Holding())
    with pytest.raises(InvalidRequest, match=r"with your other live annexes \(1\) makes 7"):
        costs.check_added([first], quarter, Caps(max_instances=6),
                          lambda: costs.Holding(instances=1))


def test_the_cost_cap_counts_every_launch_from_its_own_start():
    first = part(spot_config(1))                              # 1 x m5.large x 2 h
    later = part(spot_config(2), START + 3600)                # 2 x m5.large x the last hour
    whole = round(round(2 * M5_LARGE, 2) + round(2 * M5_LARGE, 2), 2)
    found = costs.check_added([first], later, Caps(max_cost=whole), lambda: costs.Holding())
    assert found["annex_cost"] == whole
    with pytest.raises(InvalidRequest, match="ANNEX_MAX_COST"):
        costs.check_added([first], later, Caps(max_cost=whole - 0.01), lambda: costs.Holding())
    with pytest.raises(InvalidRequest, match="ANNEX_MAX_COST_PER_USER"):
        costs.check_added([first], later, Caps(max_cost_per_user=whole + 1),
                          lambda: costs.Holding(cost=1.01))
    # A lease change counts the added launch too, from its own start.
    longer, cap = START + 3 * 3600, round(round(3 * M5_LARGE, 2) + round(4 * M5_LARGE, 2), 2)
    costs.check_lease_change(first, longer, START + 3600, Caps(max_cost=cap), first.lease_end,
                             costs.Holding, added=[later])
    with pytest.raises(InvalidRequest, match="ANNEX_MAX_COST"):
        costs.check_lease_change(first, longer, START + 3600, Caps(max_cost=cap - 0.01),
                                 first.lease_end, costs.Holding, added=[later])


# -- what is refused, before anything is asked of AWS -----------------------------------------

def row_of(plan: AnnexPlan, **changes) -> dict:
    return {"id": 1, "annex_id": plan.annex_id, "region": plan.region, "owner_uid": 1,
            "state": "active", "lease_end": plan.lease_end, "lease_intent": None,
            "daemon_credentials": 0, "created": START, **changes}


@pytest.mark.parametrize("changes, who, expected", [
    ({}, Caller(2, False), "belongs to another user"),
    ({}, Caller(2, True), "belongs to another user"),           # root is not its owner
    ({"state": "extending"}, Caller(1, False), "lease or its size changed by another"),
    ({"state": "ending"}, Caller(1, False), "is being turned off"),
    ({"state": "rollback-incomplete"}, Caller(1, False), "its lease is ending it"),
    ({"lease_intent": START + 99}, Caller(1, False), "was cut short"),
    ({"lease_end": START + 60}, Caller(1, False), "about to end it"),
])
def test_refused_before_anything_is_asked(changes, who, expected):
    plan = dataclasses.replace(plan_of(spot_config(1)), keyed_by_request=True,
                               owner="AIDAOWNER")
    with pytest.raises(grow.Refused) as refused:
        grow._owner_and_state(row_of(plan, **changes), who, plan, START)
    assert expected in str(refused.value) and "nothing was changed" in str(refused.value)


def test_an_auto_annex_and_an_earlier_releases_annex_are_not_grown():
    plan = plan_of(spot_config(1))
    auto = dataclasses.replace(plan, auto=True, keyed_by_request=True, owner="AIDAOWNER")
    with pytest.raises(grow.Refused, match="is an -auto annex"):
        grow._owner_and_state(row_of(auto), Caller(1, False), auto, START)
    with pytest.raises(grow.Refused, match="made by an earlier release"):
        grow._owner_and_state(row_of(plan), Caller(1, False), plan, START)


def test_each_launch_has_its_own_token_and_the_annexs_tags():
    plan = plan_of(spot_config(2))
    annex_plan = dataclasses.replace(plan, client_token="x_annex")
    tokens = {grow.launch_token("x_annex", number) for number in range(2, 200)}
    assert len(tokens) == 198 and max(len(t) for t in tokens) <= 64
    request = grow.added_request(plan, annex_plan, grow.launch_token("x_annex", 2))
    assert request["ClientToken"] == grow.launch_token("x_annex", 2)
    assert "x_t" not in json.dumps(request)  # the command's own request token is nowhere
    [fleet_tags] = [spec["Tags"] for spec in request["TagSpecifications"]
                    if spec["ResourceType"] == "spot-fleet-request"]
    assert {"Key": CLIENT_TOKEN_TAG, "Value": "x_annex"} in fleet_tags
    assert {"Key": grow.LAUNCH_TAG, "Value": request["ClientToken"]} in fleet_tags
    [spec] = request["LaunchSpecifications"]
    [instance_tags] = [s["Tags"] for s in spec["TagSpecifications"]]
    assert {"Key": CLIENT_TOKEN_TAG, "Value": "x_annex"} in instance_tags


def test_a_fleet_added_under_the_cost_cap_carries_what_is_left_of_it():
    """ANNEX_MAX_COST = 1 and $0.40 spent at worst: the added fleet may cost AWS at most
    $0.60 over the hour left of the lease (its hourly maxima, which AWS enforces)."""
    later = part(spot_config(2), START + 3600)
    capped = costs.with_price_cap(later, Caps(max_cost=1.0), budget=0.6)
    assert float(capped.launch_request["SpotMaxTotalPrice"]) <= 0.6
    assert float(capped.launch_request["SpotMaxTotalPrice"]) > 0.59


def test_status_counts_the_instances_of_every_launch_template_fleet():
    """Instances of a launch-template fleet carry only the fleet's ID: -status asks for each
    launch's fleet, the added ones too."""
    config = spot_config(1)
    config["LaunchTemplateConfigs"] = [{"LaunchTemplateSpecification": {
        "LaunchTemplateName": "annex", "Version": "1"}}]
    del config["LaunchSpecifications"]
    plan = plan_of(config)
    row = {**row_of(plan), "outputs": json.dumps({"spot_fleet_request_id": "sfr-1"})}
    added_launches = [{"launch_request": plan.launch_request, "state": "done", "number": 2,
                       "at": START, "outputs": {"spot_fleet_request_id": "sfr-2"}}]
    assert grow.instance_tags(plan, row, added_launches) == [
        ("aws:ec2spot:fleet-request-id", "sfr-1"), ("aws:ec2spot:fleet-request-id", "sfr-2")]
    assert [(l["number"], l["spot_fleet_request_id"])
            for l in grow.launch_reports(row, plan, added_launches)] == [(1, "sfr-1"),
                                                                        (2, "sfr-2")]


@pytest.mark.parametrize("kind", ["spot-fleet-launch-template", "ec2-fleet-maintain",
                                  "ec2-fleet-instant"])
def test_each_fleet_kind_grows_is_counted_whole_and_ended_by_its_lease(
        kind, aws, pool, daemon, fire_lease, tmp_path):
    """Launch-template fleets' instances carry only their fleet's ID (AWS's tag): -status
    counts each launch's; the lease ends every launch's fleet and instances."""
    from test_fleet_kinds import KINDS, config_file, fleet_instances, instances
    example, changes, annex_type, _, _ = KINDS[kind]
    name = f"kinds-{len(kind)}"
    fixtures.create_worker_template(aws.ec2)
    config = config_file(tmp_path, example, **changes)
    args = ("-annex-name", name, "-lease-duration", "3600", "-lease-function-arn",
            aws.lease_arn, config)
    first = pool.condor_annex("-count", "2", *args)
    assert first.returncode == 0, first.stderr
    second = pool.condor_annex("-count", "1", *args)
    assert second.returncode == 0, second.stderr
    fleet_ids = [first.stdout.strip(), second.stdout.strip()]
    for fleet_id in fleet_ids:
        fixtures.tag_fleet_instances_as_aws_does(aws.ec2, fleet_id)
    report = status_of(pool, name)
    assert report["type"] == annex_type and report["instances"] == {"running": 3}
    launched = [i for fleet_id in fleet_ids for i in fleet_instances(aws, fleet_id)]
    event = aws.target_input(name)
    summary = fire_lease(event, now=event["LeaseExpiration"] + 1)
    assert sorted(summary["cancelled_fleets"]) == sorted(fleet_ids)
    assert {i["State"]["Name"] for i in instances(aws, launched)} == {"terminated"}
    assert not any(aws.annex_resources(name).values())
