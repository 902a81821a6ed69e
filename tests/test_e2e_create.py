"""End to end: real condor_annex and condor_annexd processes against moto's HTTP server."""
from __future__ import annotations

import concurrent.futures
import os
import sqlite3
import stat
import json
import re
import time

from annexd_lambda.lease import ANNEX_TAG, CLIENT_TOKEN_TAG

from conftest import SECRET, SPOT_CONFIG, WRAPPED_CONFIG

SFR_ID = re.compile(r"^sfr-[0-9a-f]+$")


def tags_of(resource: dict) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in resource.get("Tags", [])}


def test_create_with_count_override(aws, run_annex, with_keys, pool):
    before = time.time()
    result = run_annex("-annex-name", "nightly", "-lease-duration", "3600", "-count", "3",
                       "-lease-function-arn", aws.lease_arn, *with_keys, SPOT_CONFIG)
    assert result.returncode == 0, result.stderr
    fleet_id = result.stdout.strip()
    assert SFR_ID.match(fleet_id)
    assert "dropped ValidUntil" in result.stderr and "dropped ValidFrom" in result.stderr

    [fleet] = aws.all_fleets()
    assert fleet["SpotFleetRequestId"] == fleet_id
    assert fleet["SpotFleetRequestConfig"]["TargetCapacity"] == 3
    assert tags_of(fleet)[ANNEX_TAG] == "nightly"

    instances = [i for r in aws.ec2.describe_instances()["Reservations"] for i in r["Instances"]]
    assert len(instances) == 3
    for instance in instances:
        assert tags_of(instance) == {ANNEX_TAG: "nightly", "project": "nightly-builds",
                                     CLIENT_TOKEN_TAG: tags_of(fleet)[CLIENT_TOKEN_TAG],
                                     # issue 23: the AWS principal that made it
                                     "htcondor:AnnexOwner": caller_id(aws.url, pool)}

    rule = aws.events.describe_rule(Name="nightly")
    assert rule["ScheduleExpression"] == "rate(1 minute)" and rule["State"] == "ENABLED"
    [target] = aws.events.list_targets_by_rule(Rule="nightly")["Targets"]
    assert target["Arn"] == aws.lease_arn and target["Id"] == "nightly"
    lease_input = json.loads(target["Input"])
    assert lease_input["AnnexID"] == "nightly"
    assert lease_input["S3BucketName"] == "htcondor-annex-config"
    assert isinstance(lease_input["LeaseExpiration"], int)
    assert int(before) + 3600 <= lease_input["LeaseExpiration"] <= time.time() + 3600

    head = aws.s3.head_object(Bucket="htcondor-annex-config", Key=aws.config_key("nightly"))
    assert head["ServerSideEncryption"] == "AES256"
    # The instances read the lease end from the object's metadata, never from its body.
    assert head["Metadata"] == {"annex-lease-expiration": str(lease_input["LeaseExpiration"])}


def test_wrapped_console_config(aws, run_annex, with_keys):
    result = run_annex("-annex-name", "wrapped", "-lease-duration", "600",
                       "-lease-function-arn", aws.lease_arn, *with_keys, WRAPPED_CONFIG)
    assert result.returncode == 0, result.stderr
    [fleet] = aws.all_fleets()
    assert fleet["SpotFleetRequestId"] == result.stdout.strip()
    assert fleet["SpotFleetRequestConfig"]["TargetCapacity"] == 2  # the file's own value
    assert len(aws.annex_resources("wrapped")["instances"]) == 2


def test_config_from_stdin(aws, run_annex, with_keys):
    with open(SPOT_CONFIG, encoding="utf-8") as handle:
        result = run_annex("-annex-name", "piped", "-lease-duration", "600", "-count", "1",
                           "-lease-function-arn", aws.lease_arn, *with_keys, "-",
                           stdin=handle.read())
    assert result.returncode == 0, result.stderr
    assert len(aws.annex_resources("piped")["instances"]) == 1


def test_eight_concurrent_creates_give_eight_annexes(aws, run_annex, with_keys):
    names = [f"team-{n}" for n in range(8)]

    def create(name: str):
        return run_annex("-annex-name", name, "-lease-duration", "900", "-count", "1",
                         "-lease-function-arn", aws.lease_arn, *with_keys, SPOT_CONFIG)

    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(create, names))
    assert [r.returncode for r in results] == [0] * 8, \
        [r.stderr for r in results if r.returncode]
    fleet_ids = {r.stdout.strip() for r in results}
    assert len(fleet_ids) == 8
    for name in names:
        held = aws.annex_resources(name)
        assert len(held["fleets"]) == 1 and held["fleets"][0] in fleet_ids
        assert held["rules"] == [name] and held["targets"] == [name]
        assert len(held["objects"]) == 1


def test_same_name_twice_adds_to_the_first_under_its_lease(aws, run_annex, with_keys):
    """The original's behaviour (issue 25): tests/test_grow.py has the rest."""
    args = ("-annex-name", "twice", "-lease-duration", "600", "-count", "1",
            "-lease-function-arn", aws.lease_arn, *with_keys, SPOT_CONFIG)
    first = run_annex(*args)
    assert first.returncode == 0, first.stderr
    lease = aws.target_input("twice")
    second = run_annex(*args)
    assert second.returncode == 0, second.stderr
    assert "added launch 2 to annex twice" in second.stderr
    held = aws.annex_resources("twice")
    assert set(held["fleets"]) == {first.stdout.strip(), second.stdout.strip()}
    assert len(held["instances"]) == 2 and held["rules"] == ["twice"]
    assert aws.target_input("twice") == lease


def test_lease_expiry_tears_down_only_its_own_annex(aws, run_annex, with_keys, fire_lease):
    for name in ("foo", "foobar"):
        result = run_annex("-annex-name", name, "-lease-duration", "60", "-count", "2",
                           "-lease-function-arn", aws.lease_arn, *with_keys, SPOT_CONFIG)
        assert result.returncode == 0, result.stderr
    event = aws.target_input("foo")

    early = fire_lease(event, now=event["LeaseExpiration"] - 1)
    assert early == {"AnnexID": "foo", "expired": False}
    assert len(aws.annex_resources("foo")["instances"]) == 2

    summary = fire_lease(event, now=event["LeaseExpiration"] + 1)
    assert summary["expired"] and len(summary["cancelled_fleets"]) == 1
    assert all(summary[k] for k in ("removed_target", "deleted_rule", "deleted_config"))
    assert not any(aws.annex_resources("foo").values())

    foobar = aws.annex_resources("foobar")
    assert len(foobar["fleets"]) == 1 and len(foobar["instances"]) == 2
    assert foobar["rules"] == ["foobar"] and len(foobar["objects"]) == 1

    again = fire_lease(event, now=event["LeaseExpiration"] + 300)  # a late tick: no rule
    assert again["expired"] is False and again["refused"].startswith("there is no rule foo ")
    assert aws.annex_resources("foobar") == foobar


def test_failed_fleet_request_rolls_back_lease_and_config(aws, run_annex, with_keys, tmp_path):
    with open(SPOT_CONFIG, encoding="utf-8") as handle:
        config = json.load(handle)
    config["LaunchSpecifications"][0]["ImageId"] = "ami-00000000"  # moto validates AMIs
    bad = tmp_path / "bad-ami.json"
    bad.write_text(json.dumps(config))
    result = run_annex("-annex-name", "doomed", "-lease-duration", "600",
                       "-lease-function-arn", aws.lease_arn, *with_keys, str(bad))
    assert result.returncode == 5
    assert "RequestSpotFleet failed: InvalidAMIID.NotFound" in result.stderr
    assert "nothing was left behind" in result.stderr
    assert "Traceback" not in result.stderr
    assert not any(aws.annex_resources("doomed").values())


def test_secret_key_never_written_anywhere(aws, pool, run_annex, with_keys):
    ok = run_annex("-annex-name", "secretive", "-lease-duration", "600", "-count", "1",
                   "-lease-function-arn", aws.lease_arn, *with_keys, SPOT_CONFIG)
    failed = run_annex("-annex-name", "secretive2", "-lease-duration", "600",
                       "-lease-function-arn", aws.lease_arn.replace("Lease", "Nope"),
                       *with_keys, SPOT_CONFIG)
    assert ok.returncode == 0 and failed.returncode == 5
    for result in (ok, failed):
        assert SECRET not in result.stdout + result.stderr
    scanned = []
    for directory, _, files in os.walk(pool.root):
        if os.path.basename(directory) == "keys":
            continue
        for name in files:
            path = os.path.join(directory, name)
            if not os.path.isfile(path):
                continue  # the daemon's socket
            with open(path, "rb") as handle:
                assert SECRET.encode() not in handle.read(), path
            scanned.append(name)
    assert "AnnexdLog" in scanned and "annexd-journal.sqlite" in scanned


def test_journal_records_plan_and_steps_but_no_credentials(aws, pool, run_annex, with_keys):
    result = run_annex("-annex-name", "journaled", "-lease-duration", "600", "-count", "1",
                       "-lease-function-arn", aws.lease_arn, *with_keys, SPOT_CONFIG)
    assert result.returncode == 0, result.stderr
    with sqlite3.connect(pool.journal_file) as db:
        state, plan, outputs = db.execute(
            "SELECT state, plan, outputs FROM requests WHERE annex_id = 'journaled'").fetchone()
        events = db.execute(
            "SELECT step, event FROM step_events JOIN requests ON requests.id = request_id "
            "WHERE annex_id = 'journaled' ORDER BY step_events.rowid").fetchall()
        mode = db.execute("PRAGMA journal_mode").fetchone()[0]
    assert state == "active" and mode == "wal"
    plan = json.loads(plan)
    assert plan["client_token"].startswith("journaled_") and len(plan["client_token"]) <= 64
    assert plan["launch_request"]["ClientToken"] == plan["client_token"]
    assert json.loads(outputs)["spot_fleet_request_id"] == result.stdout.strip()
    assert events == [(step, event) for step in ("check", "rule", "target", "config", "fleet")
                      for event in ("started", "done")]
    assert "secret" not in json.dumps(plan).lower()
    assert stat.S_IMODE(os.stat(pool.journal_file).st_mode) == 0o600


def caller_id(url: str, pool) -> str:
    """The aws:userid STS names for the pool's user keys (what the daemon tags with)."""
    import boto3
    with open(pool.access_key_file, encoding="utf-8") as handle:
        key = handle.read().strip()
    sts = boto3.client("sts", endpoint_url=url, region_name="us-east-1",
                       aws_access_key_id=key, aws_secret_access_key="x")
    return sts.get_caller_identity()["UserId"]
