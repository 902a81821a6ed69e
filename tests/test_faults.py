"""Transient and permanent AWS faults at every call: each run ends complete or fully rolled back.

A fault-injecting HTTP proxy sits between condor_annexd and moto's server, so the daemon sees
real 5xx answers, dropped connections and silent stalls, including ones where the call took
effect before the connection died.
"""
from __future__ import annotations

import itertools

import pytest

from localaws.faultproxy import FaultProxy
from localaws.pool import AnnexDaemon, LocalPool, run_program, script

from conftest import SECRET, SPOT_CONFIG
from test_recovery import assert_all_or_nothing, unfinished

CALLS = ["lambda:GetFunction", "events:DescribeRule", "events:PutRule", "events:PutTargets",
         "s3:PutObject", "ec2:RequestSpotFleet"]
# kind -> (times, expected outcome)
FAULTS = {
    "throttle": (2, "complete"),
    "error": (1, "complete"),
    "reset": (1, "complete"),
    "reset-after": (1, "complete"),
    "stall-after": (1, "complete"),
    "reject": (-1, "absent"),
}


@pytest.fixture(scope="module")
def proxy(moto_server):
    proxy = FaultProxy(moto_server.url, stall_seconds=1.5).start()
    yield proxy
    proxy.stop()


@pytest.fixture(scope="module")
def fault_pool(proxy, tmp_path_factory) -> LocalPool:
    knobs = "\n".join([
        "ANNEXD_AWS_TIMEOUT_SECONDS = 1",
        "ANNEXD_AWS_MAX_ATTEMPTS = 2",
        "ANNEXD_STEP_ATTEMPTS = 4",
        "ANNEXD_RETRY_BASE_SECONDS = 0.05",
        # Every case injects faults into GetFunction too: check the function every time.
        "ANNEXD_FUNCTION_CHECK_SECONDS = 0",
    ])
    return LocalPool(str(tmp_path_factory.mktemp("faults"))).write(proxy.url, secret=SECRET,
                                                                   extra=knobs)


@pytest.fixture(scope="module")
def fault_daemon(fault_pool):
    with AnnexDaemon(fault_pool) as daemon:
        yield daemon


_NAMES = itertools.count()


@pytest.mark.parametrize("kind", list(FAULTS))
@pytest.mark.parametrize("call", CALLS)
def test_fault_at_every_call(call, kind, aws, proxy, fault_pool, fault_daemon):
    # Each case its own annex name: the module's daemon remembers every annex it made.
    name = f"shaky-{next(_NAMES)}"
    proxy.clear()
    times, expected = FAULTS[kind]
    proxy.arm(call, kind, times)
    result = run_program([script("condor_annex"), "-annex-name", name, "-count", "2", "-lease-duration",
         "3600", "-lease-function-arn", aws.lease_arn, "-public", fault_pool.access_key_file,
         "-secret", fault_pool.secret_key_file, SPOT_CONFIG], fault_pool.env(), timeout=120)
    assert proxy.seen[call] >= 1, f"{call} was never made"
    outcome = assert_all_or_nothing(aws, name)
    assert outcome == expected, result.stderr
    if expected == "complete":
        assert result.returncode == 0, result.stderr
    else:
        assert result.returncode in (4, 5), result.stderr
        assert "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()[-1]) < 600
    assert all(state not in ("creating", "rolling-back") for _, state in unfinished(fault_pool))
    assert fault_daemon.process.poll() is None
