"""A lease change puts the lease in force before the object the instances read (issue 24,
finding 5): lease first, as a create does.

Was: at the lease end, a change wrote the config object (fresh token, new end) before it made
sure the rule was still there; the lease function had meanwhile removed everything, the change
then failed at PutTargets (exit 5), and the object stayed with no rule or target.  Here the
lease function's teardown runs while the change waits on its read of the object (the fault
proxy holds the answer back after the read took effect).
"""
from __future__ import annotations

import concurrent.futures
import json
import subprocess

import pytest

from annexd_lambda import lease
from localaws.faultproxy import FaultProxy
from localaws.pool import BUCKET, REGION, AnnexDaemon, LocalPool, script
from localaws.wait import wait_for

from conftest import SECRET, SPOT_CONFIG


@pytest.fixture
def proxy(moto_server):
    running = FaultProxy(moto_server.url, stall_seconds=3).start()
    yield running
    running.stop()


def test_a_lease_change_overtaken_by_the_lease_function_leaves_no_object(aws, proxy, tmp_path):
    pool = LocalPool(str(tmp_path)).write(proxy.url, secret=SECRET, extra="\n".join([
        f"ANNEX_DEFAULT_LEASE_FUNCTION_ARN = {aws.lease_arn}", "ANNEXD_STEP_ATTEMPTS = 1"]))
    with AnnexDaemon(pool):
        made = pool.condor_annex("-annex-name", "edge", "-count", "1", "-lease-duration", "60",
                                 SPOT_CONFIG)
        assert made.returncode == 0, made.stderr
        stored = aws.target_input("edge")
        assert len(aws.annex_resources("edge")["objects"]) == 1
        proxy.arm("s3:GET", "delay-after", 1)  # the change's read of the object, answered late
        with concurrent.futures.ThreadPoolExecutor(1) as background:
            change = background.submit(pool.condor_annex, "-annex-name", "edge",
                                       "-lease-duration", "3600")
            wait_for(lambda: proxy.seen["s3:GET"], "the lease change's read of the object")
            # Meanwhile the lease end comes, and the lease function ends the annex.
            ended = lease.teardown("edge", BUCKET, lease.Clients(aws.ec2, aws.events, aws.s3),
                                   stored["AnnexType"], stored["ClientToken"],
                                   owner=stored["AnnexOwner"])
            assert ended["deleted_rule"] and ended["deleted_config"]
            proxy.release()  # the teardown is done: the read's answer may arrive now
            changed = change.result()
    assert changed.returncode != 0, changed.stdout
    left = aws.annex_resources("edge")
    assert left["objects"] == [] and left["rules"] == [] and left["targets"] == [], left
