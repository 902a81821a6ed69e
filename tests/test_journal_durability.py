"""What exactly-once needs is on disk before the AWS call that needs it, seen from outside:
strace on a real condor_annexd, the journal's WAL writes and syncs against the calls it sends.

A new create's request row is forced to disk while its check step's look-ups run (on the
journal's own thread): the sync must have returned before PutRule, the first call that
changes AWS, is sent.  The launch step's *started* must be on disk before RequestSpotFleet is
sent: a resumed request must know to look for what it may have launched.  (strace is what the
benchmark counts fsyncs with, tests/test_bench.py.)
"""
from __future__ import annotations

import re
import shutil
import signal
import subprocess
import time

from localaws.pool import AnnexDaemon, LocalPool

from conftest import SECRET, SPOT_CONFIG

SYNCS = ("fdatasync", "fsync")


def traced(pool: LocalPool, work) -> list[str]:
    """The daemon's WAL writes, syncs and socket sends while ``work`` runs, in order."""
    with AnnexDaemon(pool) as daemon, open(pool.root + "/strace.out", "w+") as out:
        tracer = subprocess.Popen(
            [shutil.which("strace"), "-f", "-y", "-s", "100000", "-o", out.name,
             "-e", "trace=pwrite64,write,fdatasync,fsync,sendto,sendmsg",
             "-p", str(daemon.process.pid)], stderr=subprocess.DEVNULL)
        time.sleep(1.0)  # attached to every thread
        try:
            work()
        finally:
            tracer.send_signal(signal.SIGINT)
            tracer.wait(timeout=30)
        return out.read().splitlines()


def first(lines: list[str], pattern: str) -> int:
    found = [i for i, line in enumerate(lines) if re.search(pattern, line)]
    assert found, pattern
    return found[0]


def wal_synced(lines: list[str]) -> list[int]:
    """Where a sync of the WAL returned: its whole line, or the line it resumed on."""
    return [i for i, line in enumerate(lines)
            if re.search(rf"(^\d+\s+({'|'.join(SYNCS)})\(\d+<[^>]*-wal>\)|"
                         rf"<\.\.\. ({'|'.join(SYNCS)}) resumed>).*= 0$", line)]


def test_the_request_is_on_disk_before_anything_changes_aws_and_the_launch_start_before_the_launch(
        aws, moto_server, tmp_path):
    pool = LocalPool(str(tmp_path)).write(
        moto_server.url, secret=SECRET,
        extra=f"ANNEX_DEFAULT_LEASE_FUNCTION_ARN = {aws.lease_arn}")
    name = "durable-annex"

    def create() -> None:
        result = pool.condor_annex("-annex-name", name, "-count", "1", "-lease-duration",
                                   "3600", SPOT_CONFIG)
        assert result.returncode == 0, result.stderr

    lines = traced(pool, create)
    synced = wal_synced(lines)
    # The request row (its plan names the annex) first reaches the WAL ...
    row = first(lines, rf"pwrite64\(\d+<[^>]*-wal>,.*{name}")
    # ... and the first call that changes anything is sent only after a WAL sync returned.
    put_rule = first(lines, r"send(to|msg)\(.*AWSEvents\.PutRule")
    assert first(lines, r"send(to|msg)\(.*AWSEvents\.DescribeRule") < put_rule
    assert any(row < done < put_rule for done in synced), (row, put_rule, synced)
    # The launch's *started* (a step_events row: step, event and detail side by side) ...
    started = first(lines, r"pwrite64\(\d+<[^>]*-wal>,.*fleetstarted")
    launch = first(lines, r"send(to|msg)\(.*Action=RequestSpotFleet")
    assert put_rule < started < launch
    assert any(started < done < launch for done in synced), (started, launch, synced)
