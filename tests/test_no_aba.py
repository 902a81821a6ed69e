"""-status never ends anything in AWS, and no operation acts on a row that moved under it
(issue 24, finding 3).

Was: the owner's ``-lease-duration 3600`` answered "Lease restored", then a concurrent
``-status`` tore everything down, marked the row ended and logged that the lease function had
ended it.  ``status._settled`` did not re-check, and ``journal.transition`` compared the state
only, so ``active -> extending -> active`` looked unchanged (an ABA).  Now every write moves
the row's version, a claim compares it, and -status only records, journal-only, what the
lease function already did.
"""
from __future__ import annotations

import time

import pytest

from annexd.commands.context import Moved, claim
from annexd.state.journal import Journal, StateChanged
from annexd.state.lifecycle import RequestState
from localaws.pool import AnnexDaemon, LocalPool

from test_lifecycle import plan
from test_operations import annex, keys_pool, status_of  # noqa: F401  (fixture)
from test_recovery import live_fleets

S = RequestState


@pytest.fixture
def journal(tmp_path):
    opened = Journal(str(tmp_path / "journal.sqlite"))
    yield opened
    opened.close()


def active_row(journal: Journal) -> dict:
    request_id = journal.begin(plan(), daemon_credentials=False)
    journal.transition(request_id, S.ACTIVE)
    return journal.request(request_id)


def test_every_write_moves_the_version(journal):
    row = active_row(journal)
    journal.transition(row["id"], S.EXTENDING)
    journal.transition(row["id"], S.ACTIVE, lease_end=row["lease_end"] + 60)
    journal.set_lease_end(row["id"], row["lease_end"] + 120)
    assert journal.request(row["id"])["version"] == row["version"] + 3


def test_a_claim_on_a_row_that_went_and_came_back_is_refused(journal):
    """The ABA: the row is back in the state it was read in, but it was written meanwhile."""
    stale = active_row(journal)
    journal.transition(stale["id"], S.EXTENDING)
    journal.transition(stale["id"], S.ACTIVE)
    with pytest.raises(Moved, match="changed by another request while this one was deciding"):
        claim(journal, stale, S.ENDING)
    assert journal.request(stale["id"])["state"] == "active"
    claim(journal, journal.request(stale["id"]), S.ENDING)  # read again, decided again
    assert journal.request(stale["id"])["state"] == "ending"


def test_recording_an_end_loses_to_any_write_in_between(journal):
    stale = active_row(journal)
    journal.transition(stale["id"], S.EXTENDING)  # a lease restore...
    journal.transition(stale["id"], S.ACTIVE, lease_end=stale["lease_end"] + 3600)  # ...won
    with pytest.raises(StateChanged):
        journal.settle_ended(stale["id"], stale["version"])
    assert journal.request(stale["id"])["state"] == "active"
    fresh = journal.request(stale["id"])
    journal.settle_ended(fresh["id"], fresh["version"])
    assert journal.request(fresh["id"])["state"] == "ended"


def pass_the_lease_end(end: int) -> None:
    """Wait until the lease end (epoch seconds) has passed on the daemon's clock, a real one:
    the same machine's, so a fifth of a second past it is past it for the daemon too."""
    time.sleep(max(0.0, end + 0.2 - time.time()))


def test_status_never_ends_an_expired_annex_that_still_runs(aws, keys_pool):
    """Its rule deleted by hand and its lease over, with 2 instances running: -status shows
    it and ends nothing (the backstop or -off does that), and a restore then wins."""
    with AnnexDaemon(keys_pool):
        made = annex(keys_pool, "-lease-duration", "2", keys=True, name="late")
        assert made.returncode == 0, made.stderr
        end = aws.target_input("late")["LeaseExpiration"]
        aws.events.remove_targets(Rule="late", Ids=["late"])
        aws.events.delete_rule(Name="late")
        pass_the_lease_end(end)
        for _ in range(2):
            shown = status_of(keys_pool, "late")
            assert shown["state"] == "active" and shown["instances"] == {"running": 2}
        assert len(live_fleets(aws, "late")) == 1
        held = aws.annex_resources("late")
        assert len(held["instances"]) == 2 and len(held["objects"]) == 1
        restored = keys_pool.condor_annex("-annex-name", "late", "-lease-duration", "3600")
        assert restored.returncode == 0, restored.stderr
        assert status_of(keys_pool, "late")["lease"] == "enforced"
        off = keys_pool.condor_annex("-annex-name", "late", "-off")
        assert off.returncode == 0, off.stderr


def test_status_records_what_the_lease_function_did(aws, keys_pool, fire_lease):
    """Nothing of the request left and the lease over: recorded as ended, journal only."""
    with AnnexDaemon(keys_pool):
        made = annex(keys_pool, "-lease-duration", "2", keys=True, name="done")
        assert made.returncode == 0, made.stderr
        lease_input = aws.target_input("done")
        pass_the_lease_end(lease_input["LeaseExpiration"])
        ended = fire_lease(lease_input, now=lease_input["LeaseExpiration"] + 1)
        assert ended["expired"] and ended["deleted_rule"]
        shown = keys_pool.condor_annex("-status", "-json")
        assert shown.returncode == 0 and "done" not in shown.stdout, shown.stdout
        assert status_of(keys_pool, "done")["state"] == "ended"
