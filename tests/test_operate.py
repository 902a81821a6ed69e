"""Operating annexes end to end: status, lease changes, off, caps, the prompt, the backstop."""
from __future__ import annotations

import json
import os
import pty
import signal
import sqlite3
import subprocess
import time

import pytest

from annexd.money import costs

from annexd_lambda.lease import ANNEX_TAG
from localaws import fixtures
from localaws.faultproxy import FaultProxy
from localaws.pool import AnnexDaemon, LocalPool, run_program, script
from localaws.wait import wait_for

from conftest import SECRET, SPOT_CONFIG, serving_pool
from test_daemon_boundary import as_other_user, create_message


def create(aws, run_annex, with_keys, name, *flags):
    result = run_annex("-annex-name", name, "-lease-function-arn", aws.lease_arn, *with_keys,
                       *flags, SPOT_CONFIG)
    assert result.returncode == 0, result.stderr
    return result


def status(run_annex, with_keys, *flags):
    result = run_annex("-status", "-json", *with_keys, *flags)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_status_then_off(aws, run_annex, with_keys):
    create(aws, run_annex, with_keys, "seen", "-count", "3", "-lease-duration", "3600")
    [annex] = status(run_annex, with_keys)
    assert annex["name"] == "seen" and annex["type"] == "spot-fleet"
    assert annex["region"] == "us-east-1" and annex["instances"] == {"running": 3}
    assert annex["owner"] and annex["in_pool"] is None  # no collector to ask
    assert annex["lease_end"] - time.time() == pytest.approx(3600, abs=60)

    table = run_annex("-status", *with_keys)
    assert table.returncode == 0 and "seen" in table.stdout and "running 3" in table.stdout
    ads = run_annex("-status", "-classad", *with_keys)
    assert 'MyType = "Annex"' in ads.stdout and "NumInstancesRunning = 3" in ads.stdout

    off = run_annex("-annex-name", "seen", "-off", *with_keys)
    assert off.returncode == 0, off.stderr
    assert "Annex seen is off: ended 1 fleet(s)" in off.stdout
    assert status(run_annex, with_keys) == []
    [gone] = status(run_annex, with_keys, "-annex-name", "seen")
    assert gone["instances"] == {} and gone["state"] == "ended"
    assert not any(aws.annex_resources("seen").values())
    again = run_annex("-annex-name", "seen", "-off", *with_keys)  # idempotent, and an
    assert again.returncode == 0, again.stderr                     # ended row touches no AWS
    assert again.stdout == "Annex seen had already ended.\n"
    unknown = run_annex("-annex-name", "never", "-off", *with_keys)
    assert unknown.returncode == 4 and "no annex named 'never'" in unknown.stderr


def test_lease_change_keeps_every_other_input_field(aws, run_annex, with_keys):
    create(aws, run_annex, with_keys, "longer", "-count", "1", "-lease-duration", "600")
    before = aws.target_input("longer")
    moved = run_annex("-annex-name", "longer", "-duration", "2", *with_keys)
    assert moved.returncode == 0, moved.stderr and "Lease updated" in moved.stdout
    after = aws.target_input("longer")
    assert after.pop("LeaseExpiration") == pytest.approx(time.time() + 7200, abs=60)
    before.pop("LeaseExpiration")
    assert after == before and after["S3BucketName"] == "htcondor-annex-config"
    [target] = aws.events.list_targets_by_rule(Rule="longer")["Targets"]
    assert target["Arn"] == aws.lease_arn


def test_changing_the_lease_of_an_unknown_annex_creates_nothing(aws, run_annex, with_keys):
    result = run_annex("-annex-name", "ghost", "-lease-duration", "600", *with_keys)
    assert result.returncode == 4 and "no annex named 'ghost'" in result.stderr
    assert aws.events.list_rules()["Rules"] == []


def test_other_users_can_neither_see_nor_steer(aws, shared_pool):
    """Another uid reaches the socket of a pool under /tmp (mode 0755: conftest.shared_pool).
    Was: the module's pool, whose socket sits under pytest's 0700 tmp root, with the search
    bit added to every parent for the test -- which a second pytest session of the same user
    takes away again at its start (it makes pytest-of-<user> 0700), failing this test."""
    creds = {"access_key_id": "AKIAOTHER", "secret_access_key": "other"}
    with AnnexDaemon(shared_pool):
        made = shared_pool.condor_annex("-annex-name", "private", "-lease-function-arn",
                                        aws.lease_arn, "-count", "1", "-lease-duration", "600",
                                        SPOT_CONFIG)
        assert made.returncode == 0, made.stderr
        seen = as_other_user(shared_pool.socket_path, {"version": 1, "command": "status",
                                                       "credentials": creds})
        assert seen["ok"] and seen["result"]["annexes"] == []
        for message in ({"command": "off", "name": "private"},
                        {"command": "extend", "name": "private", "lease_duration": 99999},
                        {"command": "status", "name": "private"}):
            reply = as_other_user(shared_pool.socket_path,
                                  {"version": 1, "credentials": creds, **message})
            assert reply["ok"] is False and "no annex named 'private'" in reply["error"]["message"]
        # The same name again (issue 25) adds instances for the annex's owner only.
        grown = as_other_user(shared_pool.socket_path, create_message("private"))
        assert grown["ok"] is False and "belongs to another user; only its owner may add " \
            "instances to it" in grown["error"]["message"], grown
    assert len(aws.annex_resources("private")["instances"]) == 1
    assert aws.target_input("private")["LeaseExpiration"] < time.time() + 700


def test_confirmation_prompt_at_a_terminal(aws, pool, daemon, with_keys):
    def at_terminal(answer: str, name: str) -> tuple[int, str]:
        leader, follower = pty.openpty()
        process = subprocess.Popen(
            [script("condor_annex"), "-annex-name", name, "-count", "2", "-lease-duration",
             "3600", "-lease-function-arn", aws.lease_arn, *with_keys, SPOT_CONFIG],
            env=pool.env(), stdin=follower, stdout=follower, stderr=follower)
        os.close(follower)
        output = b""
        while b"(Type 'yes' or 'no'):" not in output:
            output += os.read(leader, 4096)
        os.write(leader, answer.encode() + b"\n")
        status_ = process.wait(timeout=60)
        try:
            while chunk := os.read(leader, 4096):
                output += chunk
        except OSError:
            pass
        os.close(leader)
        return status_, output.decode()

    status_, output = at_terminal("no", "asked-no")
    # Declining is not a usage error (1): it has its own status, and the notices about the
    # config come before the question, not after the answer.
    assert status_ == 10 and "Nothing was started" in output
    asked = output.index("Is that OK?")
    assert 0 <= output.index("notice: ") < asked and "dropped ValidUntil" in output[:asked]
    assert "Will request 2 Spot Fleet capacity unit(s) for 1.00 hours, costing $0.19 at most" in output
    assert aws.all_fleets() == []
    status_, output = at_terminal("yes", "asked-yes")
    assert status_ == 0 and len(aws.annex_resources("asked-yes")["fleets"]) == 1
    assert output.count("dropped ValidUntil") == 1  # told once, before the question


@pytest.fixture
def capped_pool(aws, moto_server, tmp_path):
    yield from serving_pool(aws, moto_server, str(tmp_path), "ANNEX_MAX_INSTANCES = 4",
                            "ANNEX_MAX_LEASE_DURATION = 7200", "ANNEX_MAX_COST = 0.50")


@pytest.mark.parametrize("flags, words", [
    (["-count", "5", "-lease-duration", "60"],
     "annex 'big' may run up to 5 instances, over the limit of 4 (ANNEX_MAX_INSTANCES)"),
    (["-count", "1", "-lease-duration", "9000"],
     "a lease of 9000 s exceeds the limit of 7200 s (ANNEX_MAX_LEASE_DURATION)"),
    (["-count", "4", "-lease-duration", "7000"],
     "this annex may cost up to $0.75 (4 instances x $0.0960/h x 1.94 h, prices of "
     f"{costs.price_table()['date']}), over the limit of $0.50 (ANNEX_MAX_COST)"),
])
def test_caps_refuse_with_the_numbers(aws, capped_pool, flags, words):
    result = run_program([script("condor_annex"), "-annex-name", "big", "-public", capped_pool.access_key_file,
         "-secret", capped_pool.secret_key_file, *flags, SPOT_CONFIG], capped_pool.env(), timeout=60)
    assert result.returncode == 4 and words in result.stderr
    assert aws.all_fleets() == []


def test_caps_count_what_the_user_already_runs(aws, capped_pool):
    command = [script("condor_annex"), "-public", capped_pool.access_key_file, "-secret",
               capped_pool.secret_key_file]
    result = run_program([*command, "-annex-name", "first", "-count", "2",
                             "-lease-duration", "7200", SPOT_CONFIG], capped_pool.env(), timeout=60)
    assert result.returncode == 0, result.stderr  # 2 x $0.096 x 2 h = $0.38
    more = run_program([*command, "-annex-name", "second", "-count", "3",
                           "-lease-duration", "600", SPOT_CONFIG], capped_pool.env(), timeout=60)
    assert more.returncode == 4 and "may run up to 3 more instances, which would make 5 for you" in more.stderr
    longer = run_program([*command, "-annex-name", "first", "-lease-duration", "9000"], capped_pool.env(), timeout=60)
    assert longer.returncode == 4 and "ANNEX_MAX_LEASE_DURATION" in longer.stderr


def test_backstop_ends_an_expired_annex_when_the_lease_function_does_not(aws, moto_server,
                                                                         tmp_path):
    pool = LocalPool(str(tmp_path)).write(moto_server.url, secret=SECRET,
                                          extra="ANNEXD_LEASE_CHECK_INTERVAL = 0.5")
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    with AnnexDaemon(pool, env):
        created = pool.condor_annex("-annex-name", "overdue", "-count", "2",
                                    "-lease-duration", "2", "-lease-function-arn",
                                    aws.lease_arn, SPOT_CONFIG)
        assert created.returncode == 0, created.stderr
        aws.lambda_.delete_function(FunctionName=aws.lease_arn)  # no lease function any more
        wait_for(lambda: aws.annex_resources("overdue"), "the backstop to end the annex",
                 until=lambda held: not any(held.values()), timeout=20)
    assert not any(aws.annex_resources("overdue").values())
    with open(pool.log_file, encoding="utf-8") as log:
        assert "LEASE BACKSTOP: annex overdue outlived its lease" in log.read()


def test_a_stopping_daemon_finishes_the_backstops_annex_and_takes_no_other(aws, moto_server,
                                                                          tmp_path):
    """SIGTERM while the lease backstop ends one of two expired annexes: the daemon waits
    for that teardown (the annex is ended, not left ``ending`` for the next start, its last
    calls not cut off mid-request), takes no other annex, and exits 0; the next start's
    backstop ends the other."""
    proxy = FaultProxy(moto_server.url, stall_seconds=60).start()
    proxy.arm("events:RemoveTargets", "delay")  # the first teardown's, held until released
    try:
        pool = LocalPool(str(tmp_path)).write(proxy.url, secret=SECRET,
                                              extra="ANNEXD_LEASE_CHECK_INTERVAL = 0.5")
        env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
        daemon = AnnexDaemon(pool, env).start()
        for name in ("first", "second"):
            created = pool.condor_annex("-annex-name", name, "-count", "1", "-lease-duration",
                                        "2", "-lease-function-arn", aws.lease_arn, SPOT_CONFIG)
            assert created.returncode == 0, created.stderr
        wait_for(lambda: proxy.seen["events:RemoveTargets"], "the backstop's teardown",
                 interval=0.02, timeout=30)
        assert daemon.process is not None
        daemon.process.send_signal(signal.SIGTERM)
        wait_for(lambda: "waiting for the lease-backstop pass to finish the annex it is on"
                 in open(pool.log_file, encoding="utf-8").read(),
                 "the stopping daemon to wait for the backstop", interval=0.02, timeout=30)
        assert daemon.process.poll() is None
        proxy.release()
        assert daemon.process.wait(timeout=60) == 0
        states = dict(journal_states(pool))
        assert sorted(states.values()) == ["active", "ended"], states
        [ended] = [name for name, state in states.items() if state == "ended"]
        [other] = [name for name, state in states.items() if state == "active"]
        assert not any(aws.annex_resources(ended).values())
        held = aws.annex_resources(other)
        assert held["rules"] == [other] and held["targets"] == [other] and held["fleets"]
        with AnnexDaemon(pool, env):
            wait_for(lambda: aws.annex_resources(other), "the next start's backstop",
                     until=lambda found: not any(found.values()), timeout=20)
    finally:
        proxy.stop()


def journal_states(pool: LocalPool) -> list[tuple[str, str]]:
    with sqlite3.connect(pool.journal_file) as db:
        return db.execute("SELECT annex_id, state FROM requests ORDER BY id").fetchall()


def test_annexes_in_two_regions_show_together(aws, moto_server, tmp_path):
    west = {name: fixtures.client(name, moto_server.url, "us-west-2")
            for name in ("s3", "iam", "lambda")}
    fixtures.create_bucket(west["s3"], "west-annex-config", "us-west-2")
    west_arn = west["lambda"].create_function(
        FunctionName="HTCondorAnnex-LeaseFunction", Runtime="python3.12",
        Role=aws.iam.get_role(RoleName="HTCondorAnnex-LeaseFunction-Role")["Role"]["Arn"],
        Handler="lease.handler", Code={"ZipFile": b"PK"})["FunctionArn"]
    pool = LocalPool(str(tmp_path)).write(moto_server.url, secret=SECRET, extra="\n".join([
        "us_west_2.ANNEX_DEFAULT_S3_BUCKET = west-annex-config"]))
    keys = ["-public", pool.access_key_file, "-secret", pool.secret_key_file]
    with AnnexDaemon(pool):
        for name, region, arn in (("east", "us-east-1", aws.lease_arn),
                                  ("west", "us-west-2", west_arn)):
            made = run_program([script("condor_annex"), "-annex-name", name, "-count", "1",
                                   "-aws-region", region, "-lease-function-arn", arn, *keys,
                                   SPOT_CONFIG], pool.env(), timeout=60)
            assert made.returncode == 0, made.stderr
        shown = run_program([script("condor_annex"), "-status", "-json", *keys], pool.env(), timeout=60)
    annexes = {a["name"]: a for a in json.loads(shown.stdout)}
    assert annexes["east"]["region"] == "us-east-1" and annexes["west"]["region"] == "us-west-2"
    assert annexes["east"]["instances"] == {"running": 1} == annexes["west"]["instances"]
    west_ec2 = fixtures.client("ec2", moto_server.url, "us-west-2")
    assert west_ec2.describe_instances(Filters=[
        {"Name": f"tag:{ANNEX_TAG}", "Values": ["west"]}])["Reservations"]


def test_the_pool_is_asked_once_for_all_annexes_shown(monkeypatch):
    """-status asks the collector one query for every annex it shows (an unreachable
    collector costs its timeout once, not once per annex).  The collector is the one part of
    HTCondor no test here runs, so htcondor2's Collector is replaced at its boundary."""
    import htcondor2

    from condor_annex import status

    queries = []

    class Collector:
        def __init__(self, host):
            self.host = host

        def query(self, ad_type, constraint, projection):
            queries.append(constraint)
            return [{"AnnexName": "a", "EC2InstanceID": "i-1"},
                    {"AnnexName": "a", "EC2InstanceID": "i-1"},  # two slots, one instance
                    {"AnnexName": "a", "EC2InstanceID": "i-2"},
                    {"AnnexName": "ab", "EC2InstanceID": "i-3"},  # not shown: not counted
                    {"AnnexName": "b", "Machine": "b1.example"}]

    monkeypatch.setattr(status.knobs, "raw", lambda name: "cm.example.org")
    monkeypatch.setattr(htcondor2, "Collector", Collector)
    assert {name: len(ids) for name, ids in status.in_pool(["a", "b", "c"]).items()} == \
        {"a": 2, "b": 1, "c": 0}
    assert len(queries) == 1

    def unreachable(host):
        raise htcondor2.HTCondorException("cannot reach the collector")

    monkeypatch.setattr(htcondor2, "Collector", unreachable)
    assert status.in_pool(["a", "b"]) is None
