"""Every release's journal tells the truth (issue 24, finding 6).

Was: an annex made before request tokens always showed ``lease: missing`` (all three journal
formats tried); an old release's interrupted create with an hour of lease left was rolled back
"because its lease was ended", although README says an upgrade finishes it; and a final row
written by a newer release made ``-status -annex-name fut`` exit 7, "internal error".

An old annex is made here as its release would have left it in AWS: the rule described
``HTCondor annex <name>: enforce the lease`` (no request named), the target's Input without a
ClientToken, the config object under ``config-<name>.tar.gz``; and its journal row written in
that release's format (tests/old_journals.py).  The annex is first made by this release and
then turned into an old one, so that its fleet and instances are real.
"""
from __future__ import annotations

import json
import os
import sqlite3
import time

import pytest

from annexd_lambda import lease
from localaws.pool import BUCKET, AnnexDaemon, LocalPool

import old_journals
from conftest import SECRET
from test_recovery import DAEMON_CREDENTIALS, KNOBS, annex, live_fleets

#: The formats of releases before request tokens (format 5 has them).
BEFORE_TOKENS = (1, 2, 3, 4)
#: Format 1 had no parked state: a crash left the row ``creating``.
PARKED = {1: "creating", 2: "interrupted", 3: "interrupted", 4: "interrupted"}


@pytest.fixture
def old_pool(aws, moto_server, tmp_path) -> LocalPool:
    return LocalPool(str(tmp_path)).write(moto_server.url, secret=SECRET, extra="\n".join([
        KNOBS, f"ANNEX_DEFAULT_LEASE_FUNCTION_ARN = {aws.lease_arn}"]))


def made_by_this_release(pool: LocalPool, name: str) -> dict:
    """A real annex (its fleet and instances), and its journal row."""
    with AnnexDaemon(pool, DAEMON_CREDENTIALS):
        made = annex(pool, "-lease-duration", "3600", name=name)
        assert made.returncode == 0, made.stderr
    with sqlite3.connect(pool.journal_file) as db:
        db.row_factory = sqlite3.Row
        row = dict(db.execute("SELECT * FROM requests WHERE annex_id = ?", (name,)).fetchone())
    os.unlink(pool.journal_file)
    return row


def as_old_release_left_it(aws, fmt: int, row: dict, *, lease_end: int,
                           rule: bool = True, target: bool = True) -> dict:
    """Turn AWS's side of the annex into what release ``fmt`` made; its old journal row."""
    name = row["annex_id"]
    now = json.loads(row["plan"])
    if rule:
        aws.events.put_rule(Name=name, ScheduleExpression="rate(1 minute)", State="ENABLED",
                            Description=lease.old_rule_description(name))
    else:
        aws.events.remove_targets(Rule=name, Ids=[name])
        aws.events.delete_rule(Name=name)
    if rule and target:
        aws.events.put_targets(Rule=name, Targets=[{"Id": name, "Arn": aws.lease_arn, "Input":
                               json.dumps({"AnnexID": name, "AnnexType": "spot-fleet",
                                           "S3BucketName": BUCKET,
                                           "LeaseExpiration": lease_end}, sort_keys=True)}])
    elif rule:
        aws.events.remove_targets(Rule=name, Ids=[name])
    key = aws.config_key(name)
    aws.s3.copy_object(Bucket=BUCKET, Key=f"config-{name}.tar.gz",
                       CopySource={"Bucket": BUCKET, "Key": key})
    aws.s3.delete_object(Bucket=BUCKET, Key=key)
    plan = old_journals.plan(fmt, name, uid=row["owner_uid"], lease_end=lease_end,
                             capacity=2)
    plan.update(lease_function_arn=now["lease_function_arn"], bucket=BUCKET,
                client_token=now["client_token"], spot_fleet_config=now["launch_request"])
    return {"annex_id": name, "owner_uid": row["owner_uid"], "plan": plan,
            "outputs": json.loads(row["outputs"])}


@pytest.mark.parametrize("fmt", BEFORE_TOKENS)
def test_an_old_annex_shows_its_lease_and_is_operated_by_it(aws, old_pool, fmt):
    made = made_by_this_release(old_pool, "elder")
    lease_end = int(time.time()) + 3600
    old = as_old_release_left_it(aws, fmt, made, lease_end=lease_end)
    old_journals.write(old_pool.journal_file, fmt, [{
        **old, "state": "active",
        "events": [(step, event) for step in ("check", "config", "rule", "target", "fleet")
                   for event in ("started", "done")]}])
    with AnnexDaemon(old_pool):
        shown = old_pool.condor_annex("-annex-name", "elder", "-status", "-json")
        assert shown.returncode == 0, shown.stderr
        [entry] = json.loads(shown.stdout)
        assert entry["lease"] == "enforced", entry  # was: "missing"
        assert entry["lease_end"] == lease_end and entry["instances"] == {"running": 2}
        moved = old_pool.condor_annex("-annex-name", "elder", "-lease-duration", "7200")
        assert moved.returncode == 0, moved.stderr
        held = aws.target_input("elder")
        assert "ClientToken" not in held and held["LeaseExpiration"] >= lease_end + 3500
        assert aws.events.describe_rule(Name="elder")["Description"] == \
            lease.old_rule_description("elder")
        off = old_pool.condor_annex("-annex-name", "elder", "-off")
        assert off.returncode == 0, off.stderr
    assert not any(aws.annex_resources("elder").values())


@pytest.mark.parametrize("fmt", BEFORE_TOKENS)
def test_an_old_interrupted_create_is_finished_while_its_lease_holds(aws, old_pool, fmt):
    """A create the old release left before its fleet: the lease (and, in formats 1-3, the
    config before it) was in force.  Recovery finishes it, as README says; it was rolled
    back "because its lease was ended"."""
    made = made_by_this_release(old_pool, "halfway")
    aws.ec2.cancel_spot_fleet_requests(SpotFleetRequestIds=[
        fleet["SpotFleetRequestId"] for fleet in live_fleets(aws, "halfway")],
        TerminateInstances=True)
    lease_end = int(time.time()) + 3600
    old = as_old_release_left_it(aws, fmt, made, lease_end=lease_end)
    old["plan"]["client_token"] = old["plan"]["spot_fleet_config"]["ClientToken"] = \
        f"halfway_{'0' * 8}-0000-4000-8000-{fmt:012d}"  # a fleet not launched yet
    order = ("check", "config", "rule", "target") if fmt < 4 else \
        ("check", "rule", "target", "config")
    old_journals.write(old_pool.journal_file, fmt, [{
        **old, "state": PARKED[fmt], "outputs": {},
        "events": [(step, event) for step in order for event in ("started", "done")]}])
    with AnnexDaemon(old_pool, DAEMON_CREDENTIALS):  # recovery runs before it answers
        with sqlite3.connect(old_pool.journal_file) as db:
            state, error = db.execute("SELECT state, error FROM requests").fetchone()
        assert (state, error) == ("active", None)
        assert len(live_fleets(aws, "halfway")) == 1
        assert aws.target_input("halfway")["LeaseExpiration"] == lease_end
        off = old_pool.condor_annex("-annex-name", "halfway", "-off")
        assert off.returncode == 0, off.stderr
    assert live_fleets(aws, "halfway") == []


def test_an_old_interrupted_create_whose_lease_is_gone_is_rolled_back(aws, old_pool):
    """The other side: the old release's lease was removed (its rule gone): never launch."""
    made = made_by_this_release(old_pool, "orphan")
    aws.ec2.cancel_spot_fleet_requests(SpotFleetRequestIds=[
        fleet["SpotFleetRequestId"] for fleet in live_fleets(aws, "orphan")],
        TerminateInstances=True)
    old = as_old_release_left_it(aws, 3, made, lease_end=int(time.time()) + 3600, rule=False)
    old_journals.write(old_pool.journal_file, 3, [{
        **old, "state": "interrupted", "outputs": {},
        "events": [(step, event) for step in ("check", "config", "rule", "target")
                   for event in ("started", "done")]}])
    with AnnexDaemon(old_pool, DAEMON_CREDENTIALS):
        with sqlite3.connect(old_pool.journal_file) as db:
            state, error = db.execute("SELECT state, error FROM requests").fetchone()
    assert state == "rolled-back" and "lease was ended" in error
    assert live_fleets(aws, "orphan") == [] and not any(aws.annex_resources("orphan").values())


def newer_release_journal(pool: LocalPool) -> None:
    """A journal a newer release wrote: a column this release lacks, a final row whose plan
    has a field it does not know, and a live row in a state it does not know."""
    uid = os.getuid()
    old_journals.write(pool.journal_file, 5, [
        {**{"annex_id": "fut", "owner_uid": uid, "state": "ended"},
         "plan": {**old_journals.plan(5, "fut", uid=uid, lease_end=1_900_000_000),
                  "a_field_of_a_later_release": {"x": 1}}},
        {"annex_id": "odd", "owner_uid": uid, "state": "hibernating",
         "plan": old_journals.plan(5, "odd", uid=uid, lease_end=1_900_000_000)}])
    with sqlite3.connect(pool.journal_file) as db:
        db.execute("ALTER TABLE requests ADD COLUMN hibernated_at REAL")


def test_rows_of_a_newer_release_are_shown_as_written(aws, old_pool):
    """Was: exit 7, "internal error" (the final row's plan); the live row vanished."""
    newer_release_journal(old_pool)
    with AnnexDaemon(old_pool):
        fut = old_pool.condor_annex("-annex-name", "fut", "-status", "-json", keys=False)
        assert fut.returncode == 0, fut.stderr
        [entry] = json.loads(fut.stdout)
        assert (entry["name"], entry["state"], entry["lease"]) == ("fut", "ended", "ended")
        assert entry["lease_end"] == 1_900_000_000 and entry["instances"] is None
        assert "a_field_of_a_later_release" in entry["unknown_to_this_release"]
        odd = old_pool.condor_annex("-annex-name", "odd", "-status", keys=False)
        assert odd.returncode == 0, odd.stderr
        assert "(hibernating: not known to this release)" in odd.stdout
        assert "its state 'hibernating' is unknown to this release" in odd.stderr
        every = old_pool.condor_annex("-status", "-json", keys=False)
        assert every.returncode == 0, every.stderr
        assert [(a["name"], a["state"]) for a in json.loads(every.stdout)] == \
            [("odd", "hibernating")]
