"""Kill -9 at every point of the create sequence; the restarted daemon finishes exactly once."""
from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import time

import pytest

from annexd_lambda.lease import ANNEX_TAG
from condor_annex import client
from localaws.faultproxy import FaultProxy
from localaws.pool import AnnexDaemon, LocalPool, run_program, script, start_program
from localaws.wait import wait_for

from conftest import SECRET, SPOT_CONFIG

DAEMON_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
#: The admin's Spot Fleet role, the example fleet config's: an annex the daemon pays for (or
#: resumes with its own identity) may use only the admin's (annexd.money.daemonpaid).
FLEET_ROLE = "ANNEX_DEFAULT_FLEET_ROLE_ARN = " \
    "arn:aws:iam::123456789012:role/aws-ec2-spot-fleet-tagging-role"
KNOBS = "\n".join(["ANNEXD_ALLOW_DAEMON_CREDENTIALS = true", "ANNEXD_RETRY_BASE_SECONDS = 0.05",
                   FLEET_ROLE])

#: The create's calls, in order: the checks, the lease (rule, target), config, fleet.
FORWARD_CALLS = ["Lambda GetFunction", "EventBridge DescribeRule", "EventBridge PutRule",
                 "EventBridge PutTargets", "S3 PutObject", "EC2 RequestSpotFleet"]
#: The rollback's calls, in order: instances first, the lease (target, rule) last.
UNDO_CALLS = ["EC2 DescribeSpotFleetRequests", "EC2 CancelSpotFleetRequests",
              "S3 DeleteObject", "EventBridge RemoveTargets", "EventBridge DeleteRule"]


def annex(pool: LocalPool, *args: str, keys: bool = False, config: str | None = SPOT_CONFIG,
          name: str = "phoenix") -> subprocess.CompletedProcess:
    """condor_annex with -count 2; ``config=None``: an on-demand annex."""
    key_args = ["-public", pool.access_key_file, "-secret", pool.secret_key_file] if keys else []
    return run_program([script("condor_annex"), "-annex-name", name, "-count", "2", *args,
                           *key_args, *([config] if config else [])], pool.env(), timeout=120)


def live_fleets(aws, name: str) -> list[dict]:
    return [f for f in aws.all_fleets()
            if {"Key": ANNEX_TAG, "Value": name} in f.get("Tags", [])
            and f["SpotFleetRequestState"] in ("submitted", "active", "modifying")]


def assert_all_or_nothing(aws, name: str) -> str:
    """Exactly one of everything, or none of anything; returns "complete" or "absent"."""
    held = aws.annex_resources(name)
    fleets = live_fleets(aws, name)
    if not fleets and not any(held.values()):
        return "absent"
    assert len(fleets) == 1, fleets
    assert held["rules"] == [name] and held["targets"] == [name], held
    assert len(held["objects"]) == 1, held
    assert len(held["instances"]) == fleets[0]["SpotFleetRequestConfig"]["TargetCapacity"]
    return "complete"


def assert_covered_by_its_lease(aws, name: str) -> None:
    """Whatever exists of the annex, its lease (rule and target) is there to end it."""
    held = aws.annex_resources(name)
    if held["fleets"] or held["instances"] or held["objects"]:
        assert held["rules"] == [name] and held["targets"] == [name], held
        assert aws.target_input(name)["AnnexID"] == name
    assert len(live_fleets(aws, name)) <= 1


def unfinished(pool: LocalPool) -> list[tuple[str, str]]:
    with sqlite3.connect(pool.journal_file) as db:
        return db.execute("SELECT annex_id, state FROM requests WHERE state IN "
                          "('creating', 'rolling-back', 'interrupted', 'rollback-interrupted')"
                          ).fetchall()


@pytest.fixture
def crash_pool(aws, moto_server, tmp_path) -> LocalPool:
    return LocalPool(str(tmp_path)).write(moto_server.url, secret=SECRET,
                                          extra=f"{KNOBS}\nANNEX_DEFAULT_LEASE_FUNCTION_ARN = "
                                                f"{aws.lease_arn}")


def crash(pool: LocalPool, point: str, *args: str, identity: bool = True,
          **kwargs) -> None:
    """Run condor_annex against a daemon that dies like kill -9 at ``point``."""
    env = {**(DAEMON_CREDENTIALS if identity else {}), "ANNEXD_TEST_CRASH_AT": point}
    result = AnnexDaemon(pool, env).crash_during(lambda: annex(pool, *args, **kwargs))
    assert result.returncode == 3 and "condor_annexd" in result.stderr


def crash_then_recover(pool: LocalPool, point: str, *args: str, **kwargs) -> None:
    crash(pool, point, *args, **kwargs)
    with AnnexDaemon(pool, DAEMON_CREDENTIALS):
        pass  # recovery runs before the daemon answers its first request


@pytest.mark.parametrize("point", [f"{call}:{when}" for call in FORWARD_CALLS
                                   for when in ("before", "after")])
def test_kill_at_every_forward_point_then_finish_exactly_once(point, aws, crash_pool):
    crash(crash_pool, point, "-lease-duration", "3600")
    with AnnexDaemon(crash_pool, DAEMON_CREDENTIALS):  # it recovers before it answers
        assert assert_all_or_nothing(aws, "phoenix") == "complete"
        assert unfinished(crash_pool) == []
        # Repeating the command (as the interrupted one said to) must not create a second
        # fleet: the daemon finished it, and says so once (the same name again would add).
        again = annex(crash_pool, "-lease-duration", "3600")
    assert again.returncode == 0 and "nothing more was added" in again.stderr, again.stderr
    assert assert_all_or_nothing(aws, "phoenix") == "complete"


@pytest.mark.parametrize("point", ["EventBridge PutRule:after", "EventBridge PutTargets:after",
                                   "S3 PutObject:after"])
def test_a_power_loss_that_forgot_the_lease_steps_still_finishes_exactly_once(
        point, aws, crash_pool):
    """Only the accepted request and the launch's start are forced to disk; a power loss may
    forget the lease and config steps' events.  Forgetting them (deleted here after a kill
    -9) must not stop the resumed create: it knows its own lease rule by its ClientToken."""
    crash(crash_pool, point, "-lease-duration", "3600")
    with sqlite3.connect(crash_pool.journal_file) as db:
        db.execute("DELETE FROM step_events")  # what synchronous=NORMAL may lose
    with AnnexDaemon(crash_pool, DAEMON_CREDENTIALS):
        assert assert_all_or_nothing(aws, "phoenix") == "complete"
        assert unfinished(crash_pool) == []
    with sqlite3.connect(crash_pool.journal_file) as db:
        assert db.execute("SELECT state FROM requests").fetchall() == [("active",)]


def test_a_rule_of_another_request_still_refuses_the_name(aws, crash_pool):
    """The rule's description names its request: someone else's rule is never taken over."""
    aws.events.put_rule(Name="phoenix", ScheduleExpression="rate(1 minute)",
                        Description="HTCondor annex phoenix: enforce the lease (request x)")
    with AnnexDaemon(crash_pool, DAEMON_CREDENTIALS):
        result = annex(crash_pool, "-lease-duration", "3600")
    assert result.returncode == 4 and "already exists" in result.stderr
    assert aws.all_fleets() == []


@pytest.mark.parametrize("point", [f"{call}:{when}" for call in UNDO_CALLS
                                   for when in ("before", "after")])
def test_kill_during_rollback_then_finish_the_rollback(point, aws, crash_pool, tmp_path):
    crash_then_recover(crash_pool, point, "-lease-duration", "3600", config=bad_config(tmp_path))
    assert assert_all_or_nothing(aws, "phoenix") == "absent"
    assert unfinished(crash_pool) == []


def bad_config(tmp_path) -> str:
    """A Spot Fleet config RequestSpotFleet rejects (no such image)."""
    with open(SPOT_CONFIG, encoding="utf-8") as handle:
        config = json.load(handle)
    config["LaunchSpecifications"][0]["ImageId"] = "ami-00000000"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(config))
    return str(bad)


# Each AWS state a crash can leave on the way forward: nothing yet, the rule alone, the lease,
# the config under the lease, the fleet under the lease.  (A crash before a call leaves AWS as
# the crash after the call before it did, and the two checks change nothing.)
@pytest.mark.parametrize("point", [f"{FORWARD_CALLS[0]}:before"] +
                         [f"{call}:after" for call in FORWARD_CALLS[2:]])
def test_user_keys_kill_at_every_forward_point_parks_under_a_lease_then_the_owner_resumes(
        point, aws, crash_pool):
    crash(crash_pool, point, "-lease-duration", "3600", keys=True, identity=False)
    with AnnexDaemon(crash_pool) as daemon:  # no identity of its own: it must wait
        assert unfinished(crash_pool) == [("phoenix", "interrupted")]
        assert_covered_by_its_lease(aws, "phoenix")
        resumed = annex(crash_pool, "-lease-duration", "3600", keys=True)
        assert resumed.returncode == 0, resumed.stderr
        assert daemon.process.poll() is None
    assert assert_all_or_nothing(aws, "phoenix") == "complete"
    assert unfinished(crash_pool) == []


@pytest.mark.parametrize("point", [f"{call}:{when}" for call in UNDO_CALLS
                                   for when in ("before", "after")])
def test_user_keys_kill_during_rollback_parks_a_rollback_that_the_owner_finishes(
        point, aws, crash_pool, tmp_path):
    crash(crash_pool, point, "-lease-duration", "3600", keys=True, identity=False,
          config=bad_config(tmp_path))
    with AnnexDaemon(crash_pool):
        assert unfinished(crash_pool) == [("phoenix", "rollback-interrupted")]
        assert_covered_by_its_lease(aws, "phoenix")
        # The owner repeats the command, this time with a config that works: the old
        # rollback is finished first, then the annex is created afresh, lease first.
        again = annex(crash_pool, "-lease-duration", "3600", keys=True)
    assert again.returncode == 0, again.stderr
    assert "first finished rolling back the failed request" in again.stderr
    assert assert_all_or_nothing(aws, "phoenix") == "complete"
    assert unfinished(crash_pool) == []


def test_lease_that_ended_while_down_is_rolled_back(aws, crash_pool):
    crashing = AnnexDaemon(crash_pool, {**DAEMON_CREDENTIALS,
                                        "ANNEXD_TEST_CRASH_AT": "EventBridge PutTargets:after"})
    crashing.start()
    annex(crash_pool, "-lease-duration", "1")
    crashing.process.wait(timeout=60)
    lease_end = json.loads(sqlite3.connect(crash_pool.journal_file).execute(
        "SELECT plan FROM requests WHERE annex_id = 'phoenix'").fetchone()[0])["lease_end"]
    wait_for(time.time, "the lease to end", until=lambda now: now > lease_end, timeout=10)
    with AnnexDaemon(crash_pool, DAEMON_CREDENTIALS):
        pass
    assert assert_all_or_nothing(aws, "phoenix") == "absent"
    assert unfinished(crash_pool) == []


def test_user_keys_request_waits_for_its_owner_then_resumes(aws, crash_pool):
    crashing = AnnexDaemon(crash_pool, {"ANNEXD_TEST_CRASH_AT": "EC2 RequestSpotFleet:after"})
    crashing.start()
    first = annex(crash_pool, "-lease-duration", "3600", keys=True)
    assert crashing.process.wait(timeout=60) == -signal.SIGKILL and first.returncode == 3
    with AnnexDaemon(crash_pool) as daemon:
        assert unfinished(crash_pool) == [("phoenix", "interrupted")]
        # The fleet exists already (the crash came after the call); the lease guards it.
        assert len(live_fleets(aws, "phoenix")) == 1
        resumed = annex(crash_pool, "-lease-duration", "3600", keys=True)
        assert resumed.returncode == 0, resumed.stderr
        assert "resumed the interrupted request" in resumed.stderr
        assert resumed.stdout.strip() == live_fleets(aws, "phoenix")[0]["SpotFleetRequestId"]
        assert daemon.process.poll() is None
    assert assert_all_or_nothing(aws, "phoenix") == "complete"
    assert unfinished(crash_pool) == []


def test_sigterm_pauses_a_request_between_steps_and_the_owner_resumes_it(aws, moto_server,
                                                                          tmp_path):
    # The config upload is held until the daemon has taken the SIGTERM, so the signal lands
    # inside that step whatever the machine's speed; then the step finishes.
    proxy = FaultProxy(moto_server.url, stall_seconds=60).start()
    proxy.arm("s3:PutObject", "delay")
    try:
        pool = LocalPool(str(tmp_path)).write(
            proxy.url, secret=SECRET, extra=f"ANNEX_DEFAULT_LEASE_FUNCTION_ARN = {aws.lease_arn}")
        daemon = AnnexDaemon(pool).start()
        client = subprocess.Popen(
            [script("condor_annex"), "-annex-name", "paused", "-count", "1", "-lease-duration",
             "3600", "-public", pool.access_key_file, "-secret", pool.secret_key_file,
             SPOT_CONFIG], env=pool.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True)
        wait_for(lambda: proxy.seen["s3:PutObject"], "the PutObject call", interval=0.02)
        assert daemon.process is not None
        daemon.process.send_signal(signal.SIGTERM)
        wait_for(lambda: "got SIGTERM" in open(pool.log_file, encoding="utf-8").read(),
                 "the daemon to take the SIGTERM", interval=0.02)
        proxy.release()
        assert daemon.process.wait(timeout=60) == 0
        _, stderr = client.communicate(timeout=60)
        assert client.returncode == 8, stderr
        assert "stopped safely before its" in stderr and "run the same" in stderr.lower()
        assert unfinished(pool) == [("paused", "interrupted")]
        assert live_fleets(aws, "paused") == []
        with AnnexDaemon(pool):
            again = annex(pool, "-lease-duration", "3600", keys=True, name="paused")
        assert again.returncode == 0, again.stderr
    finally:
        proxy.stop()
    assert assert_all_or_nothing(aws, "paused") == "complete"
    assert unfinished(pool) == []


def test_twenty_requests_in_flight_when_killed(aws, moto_server, tmp_path):
    proxy = FaultProxy(moto_server.url, latency=0.15).start()
    try:
        pool = LocalPool(str(tmp_path)).write(
            proxy.url, secret=SECRET,
            extra=f"{KNOBS}\nANNEX_DEFAULT_LEASE_FUNCTION_ARN = {aws.lease_arn}")
        names = [f"burst-{n}" for n in range(20)]
        daemon = AnnexDaemon(pool, DAEMON_CREDENTIALS).start()
        clients = [start_program(
            [script("condor_annex"), "-annex-name", name, "-count", "1", "-lease-duration",
             "3600", SPOT_CONFIG], pool.env()) for name in names]
        wait_for(lambda: proxy.seen["events:PutRule"], "five PutRule calls",
                 until=lambda seen: seen >= 5)
        daemon.stop(signal.SIGKILL)
        for client in clients:
            client.wait(timeout=60)
        with AnnexDaemon(pool, DAEMON_CREDENTIALS):
            pass
    finally:
        proxy.stop()
    outcomes = {name: assert_all_or_nothing(aws, name) for name in names}
    assert "complete" in outcomes.values()
    assert unfinished(pool) == []


def test_the_confirmation_prompt_never_resumes_a_parked_request(aws, crash_pool):
    """The prompt's dry run looks only: the parked request resumes on the real command."""
    crash(crash_pool, "EventBridge PutTargets:after", "-lease-duration", "3600", keys=True,
          identity=False)
    with open(SPOT_CONFIG, encoding="utf-8") as handle:
        config = json.load(handle)
    with AnnexDaemon(crash_pool):
        before = aws.annex_resources("phoenix")
        reply = client.call(crash_pool.socket_path, {
            "version": 1, "command": "create", "dry_run": True,
            "credentials": {"access_key_id": "AKIAUSER", "secret_access_key": "s"},
            "annex": {"name": "phoenix", "lease_duration": 3600, "count": 2,
                      "lease_function_arn": aws.lease_arn, "fleet_config": config}})
        assert reply["ok"] and reply["result"]["estimate"]["capacity"] == 2, reply
        assert aws.annex_resources("phoenix") == before
        assert unfinished(crash_pool) == [("phoenix", "interrupted")]
