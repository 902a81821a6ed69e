"""Upgrades never stop the daemon: a journal of any earlier release opens, what those releases
allowed and this one does not is repaired or quarantined with a log line, and every failure
to start exits 99 with one line naming the cause (issue 17, finding 6)."""
from __future__ import annotations

import json
import logging
import os
import sqlite3
import subprocess
import time

import pytest

from annexd.state.journal import Journal, NameTaken
from annexd.launch.plan import AnnexPlan
from localaws.pool import AnnexDaemon, LocalPool, script

import old_journals
from conftest import SECRET

LATER = int(time.time()) + 3600


def row(fmt: int, name: str, state: str, uid: int = 1000, **plan: object) -> dict:
    return {"annex_id": name, "owner_uid": uid, "state": state,
            "plan": old_journals.plan(fmt, name, uid=uid, lease_end=LATER, **plan)}


def quarantined(path: str) -> list[tuple[int, str, dict]]:
    db = sqlite3.connect(path)
    try:
        return [(request_id, reason, json.loads(events)) for request_id, reason, events in
                db.execute("SELECT request_id, reason, step_events FROM quarantine")]
    finally:
        db.close()


@pytest.mark.parametrize("fmt", sorted(old_journals.FORMATS))
def test_a_journal_of_every_earlier_format_opens(tmp_path, fmt, caplog):
    path = str(tmp_path / "journal.sqlite")
    parked = "creating" if fmt == 1 else "interrupted"  # format 1 had no parked state
    old_journals.write(path, fmt, [
        {**row(fmt, "running", "active"), "outputs": {"spot_fleet_request_id": "sfr-1"}},
        {**row(fmt, "halfway", parked, region="us-west-2"),
         "events": [("lease", "started"), ("lease", "done")]},
        row(fmt, "gone", "rolled-back")])
    with caplog.at_level(logging.WARNING, "annexd.state.journal"):
        journal = Journal(path)
    try:
        live = {r["annex_id"]: r for r in journal.live_rows()}
        assert sorted(live) == ["halfway", "running"]
        assert live["halfway"]["region"] == "us-west-2" and live["running"]["region"] == "us-east-1"
        assert live["running"]["lease_end"] == LATER and journal.expired(time.time()) == []
        assert [r["annex_id"] for r in journal.unfinished()] == ["halfway"]
        assert "lease" in journal.progress(live["halfway"]["id"]).done
        plan = AnnexPlan.from_record(live["running"]["plan"])
        assert plan.launch_request["TargetCapacity"] == 1  # the old plan's fleet config
        with pytest.raises(NameTaken):  # one live row per (region, name), from now on
            journal.begin(plan, daemon_credentials=False)
        assert journal.last_final(1000, "gone")["state"] == "rolled-back"
        assert quarantined(path) == []
        # Issue 23: the payer of an earlier release's annex is its lease function's account
        # (what that release's recovery and backstop took it to be); its token's minting
        # time is unknown, so the first renewal pass renews it.
        assert {(r["payer_account"], r["payer_principal"], r["token_minted"])
                for r in live.values()} == {("123456789012", "", 0)}
        # Issue 25: an earlier annex has no added launch (the same name again).
        assert journal.added_launches_of(r["id"] for r in live.values()) == {}
    finally:
        journal.close()
    if fmt < 4:
        assert "journal upgrade: dropped index one_request_in_flight_per_annex" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, "annexd.state.journal"):
        Journal(path).close()  # the second start finds nothing to do
    assert "journal upgrade" not in caplog.text


def test_the_previous_releases_journal_gains_the_added_launches_table(tmp_path, caplog):
    """Issue 25: the previous release's journal (this schema without ``added_launches``)
    opens with the table made, its annexes' rows untouched, and a launch added to one of them
    is journaled, on disk, and read back as written."""
    path = str(tmp_path / "journal.sqlite")
    journal = Journal(path)
    plan = AnnexPlan.from_record(json.dumps(old_journals.plan(5, "running", uid=1000,
                                                              lease_end=LATER)))
    request_id = journal.begin(plan, daemon_credentials=False)
    journal.close()
    db = sqlite3.connect(path)
    db.execute("DROP TABLE added_launches")
    db.commit()
    db.close()
    with caplog.at_level(logging.WARNING, "annexd.state.journal"):
        journal = Journal(path)
    try:
        assert journal.added_launches(request_id) == []
        assert journal.live_row("us-east-1", "running")["id"] == request_id
        launch = {"number": 2, "client_token": "launch2-x", "at": 5.0,
                  "launch_request": {"ClientToken": "launch2-x", "TargetCapacity": 1}}
        journal.launch_added(request_id, launch)
        journal.launch_settled(request_id, 2, "done", {"spot_fleet_request_id": "sfr-2"})
        [read] = journal.added_launches(request_id)
        assert (read["number"], read["state"], read["launch_request"], read["outputs"]) == \
            (2, "done", launch["launch_request"], {"spot_fleet_request_id": "sfr-2"})
    finally:
        journal.close()
    assert "journal upgrade" not in caplog.text  # nothing to repair: a table added


def test_a_lease_change_the_previous_release_left_unsettled_keeps_its_intent(tmp_path,
                                                                              caplog):
    """Format 5's ``lease_unsettled`` flag becomes an intent on record (its end unknown):
    the backstop (Journal.expired) and -status read the rule's Input for it."""
    path = str(tmp_path / "journal.sqlite")
    old_journals.write(path, 5, [{**row(5, "cut", "active"), "lease_unsettled": True},
                                 row(5, "calm", "active")])
    with caplog.at_level(logging.WARNING, "annexd.state.journal"):
        journal = Journal(path)
    try:
        intents = {r["annex_id"]: r["lease_intent"] for r in journal.live_rows()}
        assert intents == {"cut": 0, "calm": None}
        assert [r["annex_id"] for r in journal.expired(time.time())] == ["cut"]
        assert "lease_unsettled" not in journal.request(1)
    finally:
        journal.close()
    assert "column requests.lease_unsettled became lease_intent (1 lease change(s)" \
        in caplog.text


def two_live_rows_of_one_name(path: str) -> None:
    """The previous release's journal of finding 6: its backstop never ended the
    rollback-incomplete row, and a later create of the same name became active."""
    old_journals.write(path, 3, [
        {**row(3, "twice", "rollback-incomplete"),
         "events": [("lease", "done"), ("launch", "failed"), ("lease", "undo-failed")]},
        {**row(3, "twice", "active"), "outputs": {"spot_fleet_request_id": "sfr-2"}}])


def test_two_live_rows_of_one_name_are_repaired_not_fatal(tmp_path, caplog):
    """Was: Journal._migrate raised sqlite3.IntegrityError building the unique index."""
    path = str(tmp_path / "journal.sqlite")
    two_live_rows_of_one_name(path)
    with caplog.at_level(logging.WARNING, "annexd.state.journal"):
        journal = Journal(path)
    try:
        [kept] = journal.live_rows()
        assert (kept["id"], kept["state"]) == (2, "active")
        assert journal.step_events(1) == []  # moved with the row, never inherited by a new id
    finally:
        journal.close()
    [(request_id, reason, events)] = quarantined(path)
    assert request_id == 1 and "request 2 (active) holds the same annex" in reason
    assert [e["event"] for e in events] == ["done", "failed", "undo-failed"]
    assert "journal upgrade: QUARANTINED request 1 (annex 'twice' in us-east-1, uid 1000, " \
           "state 'rollback-incomplete', ClientToken twice_" in caplog.text
    assert "check AWS for resources tagged htcondor:AnnexClientToken with that ClientToken" \
        in caplog.text


def test_rows_this_release_cannot_act_on_are_quarantined(tmp_path, caplog):
    path = str(tmp_path / "journal.sqlite")
    future = row(4, "future", "active")
    future["plan"]["a_field_of_a_later_release"] = 1
    numeric = row(4, "numeric", "interrupted")
    numeric["plan"]["lease_function_arn"] = 12345  # recovery would split it as an ARN
    old_journals.write(path, 4, [row(4, "odd", "hibernating"), future, row(4, "fine", "active"),
                                 numeric])
    db = sqlite3.connect(path)
    db.execute("INSERT INTO requests (annex_id, owner_uid, state, plan, created, updated,"
               " region) VALUES ('torn', 1000, 'active', '{\"annex_id\": ', 0, 0, 'us-east-1')")
    db.commit()
    db.close()
    with caplog.at_level(logging.WARNING, "annexd.state.journal"):
        journal = Journal(path)
    try:
        assert [r["annex_id"] for r in journal.live_rows()] == ["fine"]
    finally:
        journal.close()
    reasons = {request_id: reason for request_id, reason, _ in quarantined(path)}
    assert reasons[1] == "its state 'hibernating' is unknown to this release"
    assert reasons[2].startswith("its plan cannot be read (")
    assert reasons[4] == "its plan's lease_function_arn is not a str (12345)"
    assert reasons[5] == "its plan is not valid JSON"
    assert caplog.text.count("journal upgrade: QUARANTINED") == 4


def test_the_daemon_serves_an_upgraded_journal(aws, moto_server, tmp_path):
    pool = LocalPool(str(tmp_path)).write(moto_server.url, secret=SECRET)
    two_live_rows_of_one_name(pool.journal_file)
    with AnnexDaemon(pool):
        shown = pool.condor_annex("-status", "-json")
    assert shown.returncode == 0, shown.stderr
    [annex] = json.loads(shown.stdout)
    assert annex["name"] == "twice" and annex["state"] == "active"
    with open(pool.log_file, encoding="utf-8") as log:
        assert "journal upgrade: QUARANTINED request 1 (annex 'twice'" in log.read()


def start(pool: LocalPool) -> subprocess.CompletedProcess:
    return subprocess.run([script("condor_annexd")], env=pool.env(), capture_output=True,
                          text=True, timeout=60)


def spoil_journal(text: str):
    def spoil(pool: LocalPool) -> None:
        with open(pool.journal_file, "w", encoding="utf-8") as handle:
            handle.write(text)
    return spoil


@pytest.mark.parametrize("spoil, cause", [
    (spoil_journal("not a database, but a text file" * 200),
     "cannot open the journal {journal}: file is not a database"),
    (lambda pool: os.mkdir(pool.journal_file),
     "cannot open the journal {journal}: Is a directory"),
    (lambda pool: pool.add_knobs("ANNEX_MAX_COST = lots"),
     "configuration error: ANNEX_MAX_COST = 'lots': "),
    (lambda pool: os.chmod(os.path.dirname(pool.socket_path), 0o777),
     "cannot start: socket directory {lock} is writable by others (mode 777); make it 0755"),
], ids=["not-a-database", "a-directory", "a-bad-knob", "an-unsafe-socket"])
def test_every_failure_to_start_exits_99_with_one_line(moto_server, tmp_path, spoil, cause):
    """condor_master leaves a daemon that exits 99 off, instead of restarting it forever;
    the admin reads why in one line, on stderr and in the log (was: a traceback, exit 1)."""
    pool = LocalPool(str(tmp_path)).write(moto_server.url, secret=SECRET)
    spoil(pool)
    result = start(pool)
    words = cause.format(journal=pool.journal_file, lock=os.path.dirname(pool.socket_path))
    assert result.returncode == 99
    [line] = result.stderr.splitlines()
    assert line.startswith("condor_annexd: " + words)
    with open(pool.log_file, encoding="utf-8") as log:
        assert line.removeprefix("condor_annexd: ") in log.read()
