"""The request lifecycle: one table of transitions, enforced by the journal; names held by
live rows only."""
from __future__ import annotations

import itertools
import sqlite3

import pytest

from annexd.state import lifecycle
from annexd.state.journal import Journal, NameTaken, Progress, StateChanged
from annexd.state.lifecycle import IllegalTransition, RequestState
from annexd.launch.plan import AnnexPlan

S = RequestState


def plan(name: str = "nightly", region: str = "us-east-1", owner: int = 1000) -> AnnexPlan:
    return AnnexPlan(annex_id=name, annex_type="spot-fleet", owner_uid=owner, region=region,
                     lease_function_arn=f"arn:aws:lambda:{region}:123456789012:function:f",
                     lease_end=2_000_000_000, bucket="b", client_token=f"{name}_t",
                     rule_schedule="rate(1 minute)", launch_request={})


@pytest.fixture
def journal(tmp_path):
    opened = Journal(str(tmp_path / "journal.sqlite"))
    yield opened
    opened.close()


def walk(journal: Journal, *states: RequestState, name: str = "nightly") -> int:
    request_id = journal.begin(plan(name), daemon_credentials=False)
    for state in states:
        journal.transition(request_id, state)
    return request_id


def test_the_table_is_closed_and_every_state_can_end():
    assert set(lifecycle.TRANSITIONS) == set(RequestState)
    assert lifecycle.FINAL == {S.ROLLED_BACK, S.REFUSED, S.ENDED}
    assert lifecycle.LIVE | lifecycle.FINAL == set(RequestState)
    assert lifecycle.RESUME == {S.INTERRUPTED: S.CREATING,
                                S.ROLLBACK_INTERRUPTED: S.ROLLING_BACK,
                                S.ENDING_INTERRUPTED: S.ENDING}
    # From every state some path reaches a final one.
    for start in RequestState:
        seen, todo = {start}, [start]
        while todo:
            for onward in lifecycle.TRANSITIONS[todo.pop()]:
                if onward not in seen:
                    seen.add(onward)
                    todo.append(onward)
        assert seen & lifecycle.FINAL, start


def test_a_parked_rollback_never_resumes_as_a_create():
    assert S.CREATING not in lifecycle.TRANSITIONS[S.ROLLBACK_INTERRUPTED]
    assert S.CREATING not in lifecycle.TRANSITIONS[S.ROLLING_BACK]
    assert S.ACTIVE not in lifecycle.TRANSITIONS[S.ROLLBACK_INTERRUPTED]


@pytest.mark.parametrize("before,after", [
    (before, after) for before, after in itertools.product(RequestState, RequestState)
    if after not in lifecycle.TRANSITIONS[before]])
def test_every_other_transition_raises_and_writes_nothing(before, after):
    with pytest.raises(IllegalTransition):
        lifecycle.check(before, after)


def test_the_journal_refuses_illegal_changes_and_keeps_the_state(journal):
    request_id = walk(journal, S.ACTIVE)
    with pytest.raises(IllegalTransition):
        journal.transition(request_id, S.CREATING)
    assert journal.request(request_id)["state"] == "active"
    with pytest.raises(IllegalTransition):  # an annex is ended only by a claimed teardown
        journal.transition(request_id, S.ENDED)
    journal.transition(request_id, S.ENDING)
    journal.transition(request_id, S.ENDED)
    with pytest.raises(IllegalTransition):
        journal.transition(request_id, S.ENDED)


def test_a_live_row_holds_its_region_and_name_whoever_asks(journal):
    walk(journal, S.ACTIVE)
    with pytest.raises(NameTaken) as taken:
        journal.begin(plan(owner=2000), daemon_credentials=False)
    assert taken.value.row["owner_uid"] == 1000
    # The same name in another region is another annex.
    journal.begin(plan(region="us-west-2", owner=2000), daemon_credentials=False)
    assert [(r["annex_id"], r["region"]) for r in journal.live_rows()] == [
        ("nightly", "us-east-1"), ("nightly", "us-west-2")]


@pytest.mark.parametrize("final", [(S.ROLLING_BACK, S.ROLLED_BACK), (S.REFUSED,),
                                   (S.ACTIVE, S.ENDING, S.ENDED)])
def test_final_rows_free_the_name_and_never_count_as_live(journal, final):
    old = walk(journal, *final)
    new = journal.begin(plan(owner=2000), daemon_credentials=False)
    assert journal.live_row("us-east-1", "nightly")["id"] == new != old
    assert journal.live_rows(owner_uid=1000) == []
    assert journal.last_final(1000, "nightly")["id"] == old
    assert journal.last_final(2000, "nightly") is None


def test_progress_counts_undone_steps(journal):
    request_id = walk(journal)
    for step, event, detail in [("rule", "started", None), ("rule", "done", {"rule_arn": "a"}),
                                ("target", "started", None), ("target", "done", {}),
                                ("fleet", "started", None), ("fleet", "failed", "no"),
                                ("fleet", "undone", None), ("target", "undone", None)]:
        journal.step_event(request_id, step, event, detail)
    progress = journal.progress(request_id)
    assert progress.touched() == {"rule"}
    assert progress.outputs() == {"rule_arn": "a"}
    assert Progress(done={"x": {"k": 1}}, undone={"x"}).outputs() == {}


def test_a_state_change_carries_the_last_step_events_and_never_loses_them(journal):
    """The driver commits a step's done with the next change: on a refused change the events
    are recorded all the same, in order, and the refusal is raised."""
    request_id = journal.begin(plan(), daemon_credentials=False, durable=False)
    journal.record_steps(request_id, [("check", "started", None)])
    journal.record_steps(request_id, [("check", "done", {}), ("rule", "started", None)])
    journal.transition(request_id, S.ACTIVE, outputs={"rule_arn": "a"},
                       events=[("rule", "done", {"rule_arn": "a"})])
    assert journal.request(request_id)["state"] == S.ACTIVE
    with pytest.raises(StateChanged):
        journal.transition(request_id, S.ENDING, expect={S.EXTENDING},
                           events=[("late", "done", {"x": 1})])
    with pytest.raises(IllegalTransition):
        journal.transition(request_id, S.CREATING, events=[("later", "done", None)])
    assert journal.request(request_id)["state"] == S.ACTIVE
    assert journal.step_events(request_id) == [
        ("check", "started"), ("check", "done"), ("rule", "started"), ("rule", "done"),
        ("late", "done"), ("later", "done")]
    assert journal.progress(request_id).outputs() == {"rule_arn": "a", "x": 1}


def test_a_new_request_is_forced_to_disk_on_the_journal_thread(journal):
    request_id = journal.begin(plan(), daemon_credentials=False, durable=False)
    syncing = journal.record_steps_soon(request_id, [("check", "started", None)])
    assert syncing.result(timeout=10) is None
    assert journal.step_events(request_id) == [("check", "started")]
    assert journal.live_row("us-east-1", "nightly")["id"] == request_id


def test_expired_skips_rows_a_thread_is_driving(journal):
    walk(journal, name="a")
    active = walk(journal, S.ACTIVE, name="b")
    parked = walk(journal, S.INTERRUPTED, name="c")
    walk(journal, S.ACTIVE, S.EXTENDING, name="d")
    walk(journal, S.ACTIVE, S.ENDING, name="e")
    half_off = walk(journal, S.ACTIVE, S.ENDING, S.ENDING_INTERRUPTED, name="f")
    assert {row["id"] for row in journal.expired(3_000_000_000)} == {active, parked, half_off}
    # A teardown left half-way is the backstop's work whatever its lease end.
    assert {row["id"] for row in journal.expired(0)} == {half_off}


def test_every_operation_claims_the_row_in_one_compare_and_set(journal):
    """Two operations on one annex: the second one's claim fails, and the name stays taken
    until the claimed teardown finished."""
    request_id = walk(journal, S.ACTIVE)
    journal.transition(request_id, S.ENDING, expect={S.ACTIVE})           # -off wins
    for operation in (S.EXTENDING, S.ENDING):                             # extend, backstop
        with pytest.raises(StateChanged):
            journal.transition(request_id, operation, expect={S.ACTIVE})
    with pytest.raises(NameTaken):
        journal.begin(plan(owner=2000), daemon_credentials=False)
    journal.transition(request_id, S.ENDED, expect={S.ENDING})
    journal.begin(plan(owner=2000), daemon_credentials=False)


def test_an_old_journal_is_migrated(tmp_path):
    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as db:
        db.executescript("""
            CREATE TABLE requests (id INTEGER PRIMARY KEY, annex_id TEXT NOT NULL,
                owner_uid INTEGER NOT NULL, state TEXT NOT NULL,
                daemon_credentials INTEGER NOT NULL DEFAULT 0,
                lease_end INTEGER NOT NULL DEFAULT 0, plan TEXT NOT NULL,
                outputs TEXT NOT NULL DEFAULT '{}', error TEXT, created REAL NOT NULL,
                updated REAL NOT NULL);
            CREATE UNIQUE INDEX one_request_in_flight_per_annex ON requests(annex_id)
                WHERE state IN ('creating', 'rolling-back', 'interrupted');""")
        db.execute("INSERT INTO requests (annex_id, owner_uid, state, plan, created, updated)"
                   " VALUES ('old', 1000, 'active', ?, 0, 0)", (plan("old", "eu-west-1").to_record(),))
    journal = Journal(str(path))
    try:
        assert journal.live_row("eu-west-1", "old")["owner_uid"] == 1000
        with pytest.raises(NameTaken):
            journal.begin(plan("old", "eu-west-1"), daemon_credentials=False)
    finally:
        journal.close()
