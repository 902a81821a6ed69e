"""Regressions of issue 10: money must never escape a lease, and no user touches another's
annex.  (The fourth, a lease change reaching running instances, is
tests/test_bootstrap.py::test_a_lease_change_reaches_running_instances.)"""
from __future__ import annotations

import json
import time

import pytest

from condor_annex import client
from localaws.faultproxy import FaultProxy
from localaws.pool import AnnexDaemon, LocalPool

from conftest import SECRET
from test_daemon_boundary import as_other_user, create_message
from test_recovery import (annex, assert_all_or_nothing, assert_covered_by_its_lease, crash,
                           unfinished)


@pytest.fixture
def keys_pool(aws, tmp_path) -> LocalPool:
    return LocalPool(str(tmp_path)).write(
        aws.url, secret=SECRET, extra=f"ANNEX_DEFAULT_LEASE_FUNCTION_ARN = {aws.lease_arn}")


def test_config_object_is_never_without_its_lease(aws, keys_pool, fire_lease):
    """Was: PutObject (with the pool secret) before PutRule; a crash between them left the
    config object with no lease, and with a user's keys parked, maybe forever."""
    crash(keys_pool, "S3 PutObject:after", "-lease-duration", "3600", keys=True,
          identity=False)
    with AnnexDaemon(keys_pool):
        assert unfinished(keys_pool) == [("phoenix", "interrupted")]
    held = aws.annex_resources("phoenix")
    assert len(held["objects"]) == 1
    assert_covered_by_its_lease(aws, "phoenix")
    # The owner never comes back; the lease ends; its next tick removes everything.
    lease_input = aws.target_input("phoenix")
    fire_lease(lease_input, now=lease_input["LeaseExpiration"] + 1)
    assert not any(aws.annex_resources("phoenix").values())


def test_a_resumed_rollback_stays_a_rollback(aws, moto_server, tmp_path):
    """Was: RequestSpotFleet rejected, rollback begun, daemon killed before DeleteRule; the
    owner's repeat resumed it as a create and ended with a fleet, its instances and the rule
    but no lease target: nothing would ever end it."""
    proxy = FaultProxy(moto_server.url).start()
    try:
        pool = LocalPool(str(tmp_path)).write(
            proxy.url, secret=SECRET, extra="\n".join([
                f"ANNEX_DEFAULT_LEASE_FUNCTION_ARN = {aws.lease_arn}",
                "ANNEXD_STEP_ATTEMPTS = 1"]))  # the first refusal is final
        proxy.arm("ec2:RequestSpotFleet", "reject", 1)
        crash(pool, "EventBridge DeleteRule:before", "-lease-duration", "3600", keys=True,
              identity=False)
        with AnnexDaemon(pool):
            assert unfinished(pool) == [("phoenix", "rollback-interrupted")]
            assert_covered_by_its_lease(aws, "phoenix")
            again = annex(pool, "-lease-duration", "3600", keys=True)
    finally:
        proxy.stop()
    assert again.returncode == 0, again.stderr
    assert assert_all_or_nothing(aws, "phoenix") == "complete"  # the target included


ALICE, BOB = 54321, 54322


def test_another_user_can_neither_end_nor_see_your_annex(aws, shared_pool):
    """Was: bob's refused create of alice's name journaled a row that then let bob's -off end
    alice's annex and bob's -status show it; root's -status then missed it."""
    with AnnexDaemon(shared_pool):
        made = as_other_user(shared_pool.socket_path, create_message("shared"), uid=ALICE)
        assert made["ok"], made
        fleet = made["result"]["spot_fleet_request_id"]
        refused = as_other_user(shared_pool.socket_path, create_message("shared"), uid=BOB)
        assert refused["ok"] is False and refused["error"]["kind"] == "conflict"
        assert "belongs to another user" in refused["error"]["message"]
        creds = create_message("x")["credentials"]
        for message in ({"command": "off", "name": "shared"},
                        {"command": "status", "name": "shared"},
                        {"command": "extend", "name": "shared", "lease_duration": 99999}):
            reply = as_other_user(shared_pool.socket_path,
                                  {"version": 1, "credentials": creds, **message}, uid=BOB)
            assert reply["ok"] is False, reply
            assert "no annex named 'shared'" in reply["error"]["message"]
        everything = as_other_user(shared_pool.socket_path,
                                   {"version": 1, "command": "status", "credentials": creds},
                                   uid=BOB)
        assert everything["result"]["annexes"] == []
        # root sees alice's annex, with alice as its owner.
        admin = shared_pool.condor_annex("-status", "-json")
        assert admin.returncode == 0, admin.stderr
        [shown] = json.loads(admin.stdout)
        assert shown["name"] == "shared" and shown["owner_uid"] == ALICE
        assert shown["instances"] == {"running": 1}
    held = aws.annex_resources("shared")
    assert held["fleets"] == [fleet] and len(held["instances"]) == 1
    assert held["rules"] == ["shared"] and held["targets"] == ["shared"]


def test_an_unknown_launch_outcome_keeps_the_lease_expiring_now(aws, moto_server, tmp_path,
                                                                fire_lease):
    """RequestSpotFleet timed out (reset) and the lookup that would prove no fleet exists
    fails too: the rollback must not delete the lease; it moves its end to now instead."""
    proxy = FaultProxy(moto_server.url).start()
    try:
        pool = LocalPool(str(tmp_path)).write(proxy.url, secret=SECRET, extra="\n".join([
            f"ANNEX_DEFAULT_LEASE_FUNCTION_ARN = {aws.lease_arn}",
            "ANNEXD_STEP_ATTEMPTS = 1", "ANNEXD_RETRY_BASE_SECONDS = 0.05"]))
        proxy.arm("ec2:RequestSpotFleet", "reset-after", 1)  # the fleet is made, unseen
        proxy.arm("ec2:DescribeSpotFleetRequests", "error", -1)
        with AnnexDaemon(pool):
            result = annex(pool, "-lease-duration", "3600", keys=True)
            listed = client.call(pool.socket_path, {"version": 1, "command": "list"})
    finally:
        proxy.stop()
    assert result.returncode == 6, result.stderr
    assert "Its lease is kept and now ends at once" in result.stderr
    [row] = listed["result"]["annexes"]
    assert row["state"] == "rollback-incomplete" and row["lease_end"] <= time.time()
    held = aws.annex_resources("phoenix")
    assert held["objects"] == []  # the secret went at once
    assert held["rules"] == ["phoenix"] and held["targets"] == ["phoenix"]
    assert held["fleets"] and held["instances"]  # what the lease must still end
    lease_input = aws.target_input("phoenix")
    assert lease_input["LeaseExpiration"] <= time.time()
    fire_lease(lease_input, now=time.time())
    assert not any(aws.annex_resources("phoenix").values())


def test_a_parked_request_whose_lease_was_ended_is_never_launched_again(aws, keys_pool,
                                                                         fire_lease):
    """Found by the model: the lease function (on AWS's clock) ended a parked request's annex;
    resuming it by the journal alone would have launched a fleet with no lease at all."""
    crash(keys_pool, "EC2 RequestSpotFleet:after", "-lease-duration", "3600", keys=True,
          identity=False)
    lease_input = aws.target_input("phoenix")
    fire_lease(lease_input, now=lease_input["LeaseExpiration"] + 1)  # AWS's clock ran ahead
    assert not any(aws.annex_resources("phoenix").values())
    with AnnexDaemon(keys_pool):
        again = annex(keys_pool, "-lease-duration", "3600", keys=True)
        assert unfinished(keys_pool) == []
    assert again.returncode == 5, again.stderr
    assert "its lease was ended while it was interrupted" in again.stderr
    assert not any(aws.annex_resources("phoenix").values())
