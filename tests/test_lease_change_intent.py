"""A lease change records its intent before its first AWS call; whoever acts next after a
crash settles it from the rule's Input (AWS is the truth), never from either end
(issue 24, requirement 3).

kill -9 at each AWS call of a lease change, the rule there (a move) or gone (a restore): the
journal holds the row ``extending`` with the new end as its intent; recovery with the daemon's
identity, the owner's -status, or the owner's -off then finds exactly what AWS holds.  (Before
and after a call that only looks leave AWS alike: one point each stands for both.)
"""
from __future__ import annotations

import sqlite3
import time

import pytest

from annexd.aws.create import LEASE_METADATA
from localaws.pool import BUCKET, AnnexDaemon, LocalPool

from test_recovery import (DAEMON_CREDENTIALS, annex, assert_covered_by_its_lease,  # noqa: F401
                           crash_pool, live_fleets)
from test_operations import status_of

#: A move (its rule and target there): the reads, the target's new Input, the object's.
MOVE_POINTS = ["EventBridge DescribeRule:before", "EventBridge PutTargets:before",
               "EventBridge PutTargets:after", "S3 PutObject:after"]
#: A restore (its rule and target gone): the rule alone back, then the target too.
RESTORE_POINTS = ["EventBridge PutRule:after", "EventBridge PutTargets:after"]


def row(pool: LocalPool) -> tuple[str, int, int | None]:
    with sqlite3.connect(pool.journal_file) as db:
        return db.execute("SELECT state, lease_end, lease_intent FROM requests").fetchone()


def held_in_aws(aws, name: str) -> int | None:
    """The lease end the rule's target holds, or None without a lease."""
    try:
        targets = aws.events.list_targets_by_rule(Rule=name)["Targets"]
    except aws.events.exceptions.ResourceNotFoundException:
        return None
    return aws.target_input(name)["LeaseExpiration"] if targets else None


def instances_read(aws, name: str) -> int:
    """The lease end the instances read: the config object's metadata."""
    head = aws.s3.head_object(Bucket=BUCKET, Key=aws.config_key(name))
    return int(head["Metadata"][LEASE_METADATA])


def change_cut_short(aws, pool: LocalPool, point: str, *, restore: bool,
                     identity: bool) -> tuple[int, int]:
    """An annex with a 10-minute lease (its lease removed by hand for a restore), then a
    change to an hour that dies at ``point``; (the old end, the change's end)."""
    env = DAEMON_CREDENTIALS if identity else {}
    with AnnexDaemon(pool, env):
        made = annex(pool, "-lease-duration", "600", keys=not identity)
        assert made.returncode == 0, made.stderr
    old_end = row(pool)[1]
    if restore:
        aws.events.remove_targets(Rule="phoenix", Ids=["phoenix"])
        aws.events.delete_rule(Name="phoenix")
    wanted = int(time.time()) + 3600
    changed = AnnexDaemon(pool, {**env, "ANNEXD_TEST_CRASH_AT": point}).crash_during(
        lambda: pool.condor_annex("-annex-name", "phoenix", "-lease-duration", "3600"))
    assert changed.returncode == 3, changed.stderr
    state, lease_end, intent = row(pool)
    assert (state, lease_end) == ("extending", old_end)
    assert intent is not None and abs(intent - wanted) <= 5  # on disk before any AWS call
    return old_end, intent


@pytest.mark.parametrize("restore, point", [(False, p) for p in MOVE_POINTS] +
                         [(True, p) for p in RESTORE_POINTS])
def test_recovery_settles_a_cut_short_change_from_the_rules_input(aws, crash_pool, restore,
                                                                   point):
    old_end, intent = change_cut_short(aws, crash_pool, point, restore=restore, identity=True)
    held = held_in_aws(aws, "phoenix")
    assert held in (old_end, intent, None)
    with AnnexDaemon(crash_pool, DAEMON_CREDENTIALS):  # recovery runs before it answers
        assert row(crash_pool) == ("active", old_end if held is None else held, None)
        if held == intent:  # the change took effect in the rule: recovery finished it
            assert instances_read(aws, "phoenix") == intent
        shown = status_of(crash_pool, "phoenix")
        assert shown["lease"] == ("missing" if held is None else "enforced"), shown
        if not restore:
            assert_covered_by_its_lease(aws, "phoenix")
        again = crash_pool.condor_annex("-annex-name", "phoenix", "-lease-duration", "3600")
        assert again.returncode == 0, again.stderr  # the owner can change it again
        assert row(crash_pool)[2] is None and held_in_aws(aws, "phoenix") == row(crash_pool)[1]
        off = crash_pool.condor_annex("-annex-name", "phoenix", "-off")
        assert off.returncode == 0, off.stderr
    assert live_fleets(aws, "phoenix") == [] and not any(aws.annex_resources("phoenix").values())


@pytest.mark.parametrize("point", ["EventBridge PutTargets:before",
                                   "EventBridge PutTargets:after"])
def test_without_the_daemons_identity_the_owners_status_settles_it(aws, crash_pool, point):
    old_end, intent = change_cut_short(aws, crash_pool, point, restore=False, identity=False)
    held = held_in_aws(aws, "phoenix")
    with AnnexDaemon(crash_pool):  # no identity: recovery keeps the intent for the owner
        assert row(crash_pool) == ("active", old_end, intent)
        shown = status_of(crash_pool, "phoenix")
        assert (shown["lease"], shown["lease_end"]) == ("enforced", held)
        assert row(crash_pool) == ("active", held, None)


def test_without_the_daemons_identity_the_owners_off_ends_it(aws, crash_pool):
    """Was (finding 4): the owner's -off refused, "being turned off"."""
    change_cut_short(aws, crash_pool, "EventBridge PutTargets:after", restore=False,
                     identity=False)
    with AnnexDaemon(crash_pool):
        off = crash_pool.condor_annex("-annex-name", "phoenix", "-off")
        assert off.returncode == 0, off.stderr
        assert row(crash_pool)[0] == "ended"
    assert live_fleets(aws, "phoenix") == [] and not any(aws.annex_resources("phoenix").values())
