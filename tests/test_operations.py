"""Regressions of issue 17: every operation on an annex is a claimed lifecycle transition, and
every AWS resource belongs to the one request that made it (its ClientToken)."""
from __future__ import annotations

import concurrent.futures
import json
import os
import shutil
import signal
import sqlite3
import tempfile
import time

import pytest

from localaws import fixtures
from localaws.faultproxy import FaultProxy
from localaws.pool import BUCKET, AnnexDaemon, LocalPool
from localaws.wait import wait_for

from conftest import SECRET
from test_daemon_boundary import as_other_user, create_message
from test_recovery import DAEMON_CREDENTIALS, annex, crash, crash_pool, live_fleets  # noqa: F401

ALICE = 54331
WEST = "us-west-2"


def rows(pool: LocalPool) -> list[tuple[str, int, str]]:
    with sqlite3.connect(pool.journal_file) as db:
        return db.execute("SELECT annex_id, owner_uid, state FROM requests ORDER BY id").fetchall()


def nothing_left(aws, name: str) -> bool:
    return not live_fleets(aws, name) and not any(aws.annex_resources(name).values())


@pytest.fixture
def proxy(moto_server):
    running = FaultProxy(moto_server.url, stall_seconds=12).start()
    yield running
    running.stop()


@pytest.fixture
def slow_pool(aws, proxy):
    """Users' keys only (no daemon identity), every AWS call through the fault proxy, and a
    socket other users can reach."""
    root = tempfile.mkdtemp(prefix="annex-ops-")
    os.chmod(root, 0o755)
    pool = LocalPool(root).write(proxy.url, secret=SECRET, extra="\n".join([
        f"ANNEX_DEFAULT_LEASE_FUNCTION_ARN = {aws.lease_arn}",
        "ANNEXD_STEP_ATTEMPTS = 1"]))
    yield pool
    shutil.rmtree(root, ignore_errors=True)


def test_off_racing_the_owners_resume_leaves_nothing_running(aws, proxy, slow_pool):
    """Finding 1: -off and the owner's repeat of a parked create at once.  Was: both exit 0,
    the row ended, and a live fleet left with no rule, target or config.  Now -off claims the
    row first; the resume is told the annex is being turned off."""
    crash(slow_pool, "S3 PutObject:before", "-lease-duration", "3600", keys=True,
          identity=False)
    with AnnexDaemon(slow_pool):
        assert rows(slow_pool) == [("phoenix", 0, "interrupted")]
        proxy.arm("ec2:DescribeSpotFleetRequests", "delay-after", 1)  # off's first look
        with concurrent.futures.ThreadPoolExecutor(1) as background:
            turning_off = background.submit(slow_pool.condor_annex, "-annex-name", "phoenix",
                                            "-off")
            wait_for(lambda: proxy.seen["ec2:DescribeSpotFleetRequests"], "-off's teardown")
            resumed = annex(slow_pool, "-lease-duration", "3600", keys=True)
            proxy.release()  # the resume has its answer: -off need not wait out its stall
            off = turning_off.result()
    assert off.returncode == 0, off.stderr
    assert resumed.returncode == 4, resumed.stderr
    assert "annex 'phoenix' is being turned off" in resumed.stderr
    assert nothing_left(aws, "phoenix")
    assert rows(slow_pool) == [("phoenix", 0, "ended")]


def test_an_off_never_ends_another_users_annex_of_the_same_name(aws, proxy, slow_pool):
    """Finding 2: bob's -off of his parked rollback, slow; bob repeats his create; alice
    creates the same name.  Was: bob's off, going on by name, terminated alice's instance and
    removed her config, rule and target, leaving her fleet without a lease."""
    proxy.arm("ec2:RequestSpotFleet", "reject", 2)  # bob's create, and his repeat on main
    crash(slow_pool, "EventBridge DeleteRule:before", "-lease-duration", "3600", keys=True,
          identity=False, name="xu")
    with AnnexDaemon(slow_pool):
        assert rows(slow_pool) == [("xu", 0, "rollback-interrupted")]
        proxy.arm("ec2:DescribeInstances", "delay", 1)
        with concurrent.futures.ThreadPoolExecutor(1) as background:
            turning_off = background.submit(slow_pool.condor_annex, "-annex-name", "xu", "-off")
            wait_for(lambda: proxy.seen["ec2:DescribeInstances"], "bob's teardown")
            repeat = annex(slow_pool, "-lease-duration", "3600", keys=True, name="xu")
            proxy.clear()
            during = as_other_user(slow_pool.socket_path, create_message("xu"), uid=ALICE)
            assert not turning_off.done(), "bob's -off was not slow enough to race"
            proxy.release()  # both have their answers: bob's -off need not wait any longer
            off = turning_off.result()
        assert off.returncode == 0, off.stderr
        assert repeat.returncode != 0
        if not during["ok"]:  # the name is bob's until his teardown has finished
            assert "belongs to another user" in during["error"]["message"], during
            during = as_other_user(slow_pool.socket_path, create_message("xu"), uid=ALICE)
        assert during["ok"], during
    held = aws.annex_resources("xu")
    assert len(live_fleets(aws, "xu")) == 1 and len(held["instances"]) == 1, held
    assert held["rules"] == ["xu"] and held["targets"] == ["xu"], held
    assert len(held["objects"]) == 1, held
    assert aws.target_input("xu")["ClientToken"] in held["objects"][0]
    assert rows(slow_pool)[-1] == ("xu", ALICE, "active")


@pytest.fixture
def two_regions(aws, moto_server, tmp_path):
    """One bucket for us-east-1 and us-west-2, a lease function in each."""
    west = {name: fixtures.client(name, moto_server.url, WEST) for name in ("iam", "lambda")}
    west_arn = fixtures.deploy_lease_function(west["iam"], west["lambda"], name="WestLease")
    root = tempfile.mkdtemp(prefix="annex-regions-")
    os.chmod(root, 0o755)
    pool = LocalPool(root).write(moto_server.url, secret=SECRET, extra="\n".join([
        f"ANNEX_DEFAULT_LEASE_FUNCTION_ARN = {aws.lease_arn}",
        f"us_west_2.ANNEX_DEFAULT_LEASE_FUNCTION_ARN = {west_arn}"]))
    yield pool
    shutil.rmtree(root, ignore_errors=True)


def test_one_name_in_two_regions_has_two_config_objects(aws, moto_server, two_regions):
    """Finding 3: alice's "dup" in us-east-1 and bob's "dup" in us-west-2 shared
    config-dup.tar.gz in the one bucket: bob's create overwrote what alice's instances read,
    his lease change moved her lease end, his -off deleted her object."""
    pool = two_regions
    with AnnexDaemon(pool):
        alices = as_other_user(pool.socket_path, create_message("dup"), uid=ALICE)
        assert alices["ok"], alices
        [alice_key] = aws.annex_resources("dup")["objects"]
        before = aws.s3.get_object(Bucket=BUCKET, Key=alice_key)
        bobs = annex(pool, "-lease-duration", "3600", "-aws-region", WEST, keys=True,
                     name="dup")
        assert bobs.returncode == 0, bobs.stderr
        keys = aws.annex_resources("dup")["objects"]
        assert len(keys) == 2 and alice_key in keys
        assert WEST in next(key for key in keys if key != alice_key)
        moved = pool.condor_annex("-annex-name", "dup", "-aws-region", WEST,
                                  "-lease-duration", "7200")
        assert moved.returncode == 0, moved.stderr
        off = pool.condor_annex("-annex-name", "dup", "-aws-region", WEST, "-off")
        assert off.returncode == 0, off.stderr
    after = aws.s3.get_object(Bucket=BUCKET, Key=alice_key)
    assert after["Body"].read() == before["Body"].read()
    assert after["Metadata"] == before["Metadata"]
    assert aws.annex_resources("dup")["objects"] == [alice_key]
    assert len(live_fleets(aws, "dup")) == 1  # alice's, in us-east-1


def status_of(pool: LocalPool, name: str) -> dict:
    shown = pool.condor_annex("-annex-name", name, "-status", "-json")
    assert shown.returncode == 0, shown.stderr
    [entry] = json.loads(shown.stdout)
    return entry


@pytest.fixture
def keys_pool(aws, tmp_path) -> LocalPool:
    return LocalPool(str(tmp_path)).write(
        aws.url, secret=SECRET, extra=f"ANNEX_DEFAULT_LEASE_FUNCTION_ARN = {aws.lease_arn}")


def test_a_lease_rule_deleted_by_hand_shows_as_missing_and_can_be_restored(aws, keys_pool):
    """Finding 7: -status said the lease was enforced, and -lease-duration that the annex
    "has ended; start a new one" while its fleet, instances and config ran on."""
    with AnnexDaemon(keys_pool):
        made = annex(keys_pool, "-lease-duration", "3600", keys=True, name="handmade")
        assert made.returncode == 0, made.stderr
        assert status_of(keys_pool, "handmade")["lease"] == "enforced"
        aws.events.remove_targets(Rule="handmade", Ids=["handmade"])
        assert status_of(keys_pool, "handmade")["lease"] == "missing"  # the rule alone
        aws.events.delete_rule(Name="handmade")
        shown = status_of(keys_pool, "handmade")
        assert shown["lease"] == "missing" and shown["lease_enforced"] is False
        assert shown["state"] == "active" and shown["instances"] == {"running": 2}
        table = keys_pool.condor_annex("-annex-name", "handmade", "-status")
        assert "lease missing" in table.stdout and "left" not in table.stdout
        # A rule of another request under that name: refused, and nothing moves (the lease
        # end the instances read included).
        key = aws.config_key("handmade")
        metadata = aws.s3.head_object(Bucket=BUCKET, Key=key)["Metadata"]
        aws.events.put_rule(Name="handmade", ScheduleExpression="rate(1 minute)",
                            Description="someone else's")
        refused = keys_pool.condor_annex("-annex-name", "handmade", "-lease-duration", "7200")
        assert refused.returncode == 4 and "used by another request" in refused.stderr
        assert aws.s3.head_object(Bucket=BUCKET, Key=key)["Metadata"] == metadata
        aws.events.delete_rule(Name="handmade")
        restored = keys_pool.condor_annex("-annex-name", "handmade", "-lease-duration", "7200")
        assert restored.returncode == 0, restored.stderr
        assert status_of(keys_pool, "handmade")["lease"] == "enforced"
        lease_input = aws.target_input("handmade")
        assert lease_input["LeaseExpiration"] > time.time() + 7000
        assert lease_input["ClientToken"].startswith("handmade_")
        off = keys_pool.condor_annex("-annex-name", "handmade", "-off")
        assert off.returncode == 0, off.stderr
    assert nothing_left(aws, "handmade")


def test_history_is_never_shown_as_a_live_annex(aws, keys_pool):
    """Finding 8: a refused row was shown with time left while AWS ran an instance of that
    name (another request's), and -off of it said "already ended"."""
    aws.events.put_rule(Name="ghost", ScheduleExpression="rate(1 minute)",
                        Description="someone else's")
    fixtures.client("ec2", aws.url, "us-east-1").run_instances(
        ImageId=fixtures.WORKER_IMAGE, MinCount=1, MaxCount=1, TagSpecifications=[{
            "ResourceType": "instance",
            "Tags": [{"Key": "htcondor:AnnexName", "Value": "ghost"}]}])
    with AnnexDaemon(keys_pool):
        refused = annex(keys_pool, "-lease-duration", "3600", keys=True, name="ghost")
        assert refused.returncode == 4 and "already exists" in refused.stderr
        shown = status_of(keys_pool, "ghost")
        assert shown["state"] == "refused" and shown["lease"] == "ended"
        table = keys_pool.condor_annex("-annex-name", "ghost", "-status")
        assert "(refused)" in table.stdout and "left" not in table.stdout
        off = keys_pool.condor_annex("-annex-name", "ghost", "-off")
        assert off.returncode != 0 and "already ended" not in off.stdout + off.stderr
        assert "no live annex named 'ghost'" in off.stderr
    # The other request's rule and instance are untouched.
    assert aws.annex_resources("ghost")["rules"] == ["ghost"]
    assert len(aws.annex_resources("ghost")["instances"]) == 1


def test_resuming_a_create_whose_lease_ended_says_so(aws, keys_pool, fire_lease):
    """Finding 10: the lease function ended a parked create (its target was put, not yet
    journaled); resuming it answered "EventBridge PutTargets failed:
    ResourceNotFoundException" instead of saying that the lease had ended."""
    crash(keys_pool, "EventBridge PutTargets:after", "-lease-duration", "3600", keys=True,
          identity=False)
    lease_input = aws.target_input("phoenix")
    fire_lease(lease_input, now=lease_input["LeaseExpiration"] + 1)
    with AnnexDaemon(keys_pool):
        again = annex(keys_pool, "-lease-duration", "3600", keys=True)
    assert again.returncode == 5, again.stderr
    assert "its lease was ended while it was interrupted" in again.stderr
    assert "ResourceNotFoundException" not in again.stderr
    assert nothing_left(aws, "phoenix")
    assert rows(keys_pool) == [("phoenix", 0, "rolled-back")]


@pytest.mark.parametrize("identity", [True, False])
def test_an_off_cut_short_by_a_crash_is_finished(aws, crash_pool, identity):
    """kill -9 in the middle of -off's teardown: the claimed row is parked as
    ending-interrupted; the restarted daemon finishes it with its own identity, or the owner
    does with -off again.  Until then the name stays taken."""
    with AnnexDaemon(crash_pool, DAEMON_CREDENTIALS):
        made = annex(crash_pool, "-lease-duration", "3600", keys=True)
        assert made.returncode == 0, made.stderr
    with AnnexDaemon(crash_pool, {**DAEMON_CREDENTIALS,
                                  "ANNEXD_TEST_CRASH_AT": "annex teardown:before"}) as dying:
        cut = crash_pool.condor_annex("-annex-name", "phoenix", "-off")
        assert dying.process.wait(timeout=60) == -signal.SIGKILL
    assert cut.returncode == 3, cut.stderr
    assert rows(crash_pool) == [("phoenix", 0, "ending")]
    with AnnexDaemon(crash_pool, DAEMON_CREDENTIALS if identity else {}):
        if not identity:
            assert rows(crash_pool) == [("phoenix", 0, "ending-interrupted")]
            again = annex(crash_pool, "-lease-duration", "3600", keys=True)
            assert again.returncode == 4 and "-off again" in again.stderr, again.stderr
            off = crash_pool.condor_annex("-annex-name", "phoenix", "-off")
            assert off.returncode == 0, off.stderr
    assert rows(crash_pool) == [("phoenix", 0, "ended")]
    assert nothing_left(aws, "phoenix")
