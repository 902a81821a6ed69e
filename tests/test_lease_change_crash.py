"""A crash during a lease change: the journal follows AWS (issue 24, finding 4).

Was: kill -9 after the change's PutTargets took effect, before the journal moved.  Without a
daemon identity, -status said ``expired`` while AWS's lease ran another hour; with one, the
owner's -off was refused ("being turned off"), then the backstop put the row back to
``active`` and 2 instances ran on.  Now the change's intent (its new end) is on record before
its first AWS call, and -status and the backstop read the rule's Input (AWS is the truth)
before anything else; the backstop claims nothing it has not read.
"""
from __future__ import annotations

import sqlite3
import time

import pytest

from localaws.pool import AnnexDaemon, LocalPool
from localaws.wait import wait_for

from conftest import SECRET
from test_recovery import DAEMON_CREDENTIALS, KNOBS, annex, crash_pool, live_fleets  # noqa: F401
from test_operations import status_of

POINT = "EventBridge PutTargets:after"


def row(pool: LocalPool) -> tuple[str, int, int]:
    with sqlite3.connect(pool.journal_file) as db:
        return db.execute("SELECT state, lease_end, lease_intent FROM requests").fetchone()


def change_and_crash(pool: LocalPool, identity: bool) -> int:
    """Create an annex, then a lease change to two hours that dies right after AWS took its
    new end; then the old end, which the journal still holds, passes.  Returns the new end.

    The old end passes by being moved into the past in the journal (time passing, as
    tests/test_model.py makes it pass), not by a short lease and a sleep: under load, a
    3-second lease ran out before the change was made (the backstop ended the annex, so the
    crash point was never reached)."""
    # No backstop in these two daemons: the one under test is the recovering daemon's, every
    # 0.2 s, after them.
    env = {**(DAEMON_CREDENTIALS if identity else {}),
           "_CONDOR_ANNEXD_LEASE_CHECK_INTERVAL": "3600"}
    with AnnexDaemon(pool, env):
        made = annex(pool, "-lease-duration", "3600", keys=True)
        assert made.returncode == 0, made.stderr
    changed = AnnexDaemon(pool, {**env, "ANNEXD_TEST_CRASH_AT": POINT}).crash_during(
        lambda: pool.condor_annex("-annex-name", "phoenix", "-lease-duration", "7200"))
    assert changed.returncode == 3, changed.stderr
    with sqlite3.connect(pool.journal_file) as db:
        [(old_end,)] = db.execute("SELECT lease_end FROM requests").fetchall()
        assert old_end < time.time() + 3700  # the journal has not moved: the old end
        db.execute("UPDATE requests SET lease_end = ?", (int(time.time()) - 1,))
    return int(time.time()) + 7200


def test_without_a_daemon_identity_status_reads_the_lease_from_aws(aws, crash_pool):
    new_end = change_and_crash(crash_pool, identity=False)
    with AnnexDaemon(crash_pool):
        state, _, intent = row(crash_pool)  # the change's intent, on record
        assert state == "active" and abs(intent - new_end) <= 5
        shown = status_of(crash_pool, "phoenix")
        assert shown["lease"] == "enforced", shown  # was: "expired"
        assert abs(shown["lease_end"] - new_end) <= 5
        assert aws.target_input("phoenix")["LeaseExpiration"] == shown["lease_end"]
        assert row(crash_pool) == ("active", shown["lease_end"], None)
        off = crash_pool.condor_annex("-annex-name", "phoenix", "-off")
        assert off.returncode == 0, off.stderr


@pytest.fixture
def backstop_pool(aws, moto_server, tmp_path) -> LocalPool:
    """As crash_pool, with the backstop looking every 0.2 s."""
    return LocalPool(str(tmp_path)).write(moto_server.url, secret=SECRET, extra="\n".join([
        KNOBS, f"ANNEX_DEFAULT_LEASE_FUNCTION_ARN = {aws.lease_arn}",
        "ANNEXD_LEASE_CHECK_INTERVAL = 0.2"]))


def test_with_a_daemon_identity_the_backstop_reads_aws_before_it_claims(aws, backstop_pool):
    pool = backstop_pool
    new_end = change_and_crash(pool, identity=True)
    with AnnexDaemon(pool, DAEMON_CREDENTIALS):  # recovery, then the backstop every 0.2 s
        # The backstop reads the lease (a wait, not ten guessed 0.2 s naps: under load a
        # daemon's first looks can take longer than 2 s).
        state, lease_end, intent = wait_for(lambda: row(pool), "the backstop to read AWS",
                                            until=lambda seen: seen[2] is None)
        assert (state, intent) == ("active", None) and abs(lease_end - new_end) <= 5
        assert len(live_fleets(aws, "phoenix")) == 1  # the backstop ended nothing
        off = pool.condor_annex("-annex-name", "phoenix", "-off")
        assert off.returncode == 0, off.stderr
    assert live_fleets(aws, "phoenix") == []
