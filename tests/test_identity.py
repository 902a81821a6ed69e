"""The daemon's own AWS identity: key-file knobs (owner-only), logged by account, never by key;
it powers the lease backstop and finishes users' requests of the same account after a crash."""
from __future__ import annotations

import os
import subprocess

import pytest

from localaws.pool import AnnexDaemon, LocalPool, script
from localaws.wait import wait_for

from conftest import SECRET, SPOT_CONFIG
from test_recovery import FLEET_ROLE, assert_all_or_nothing, crash, unfinished

DAEMON_SECRET = f"daemon-{SECRET}"


def with_identity_files(pool: LocalPool, mode: int = 0o600) -> LocalPool:
    keys = os.path.join(pool.root, "daemon-keys")
    os.makedirs(keys, exist_ok=True)
    for name, text in (("access", "AKIADAEMONLOCAL0"), ("secret", DAEMON_SECRET)):
        path = os.path.join(keys, name)
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(text + "\n")
        os.chmod(path, mode)
    pool.add_knobs(f"ANNEXD_ACCESS_KEY_FILE = {keys}/access\n"
                     f"ANNEXD_SECRET_KEY_FILE = {keys}/secret\n")
    return pool


def daemon_log(pool: LocalPool) -> str:
    with open(pool.log_file, encoding="utf-8") as handle:
        return handle.read()


@pytest.fixture
def identity_pool(aws, moto_server, tmp_path) -> LocalPool:
    return LocalPool(str(tmp_path)).write(moto_server.url, secret=SECRET, extra="\n".join([
        f"ANNEX_DEFAULT_LEASE_FUNCTION_ARN = {aws.lease_arn}",
        "ANNEXD_RETRY_BASE_SECONDS = 0.05", FLEET_ROLE]))


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644])
def test_key_files_others_may_read_stop_the_daemon(identity_pool, mode):
    with_identity_files(identity_pool, mode)
    started = subprocess.run([script("condor_annexd"), "-f"], env=identity_pool.env(),
                             capture_output=True, text=True, timeout=60)
    assert started.returncode == 99
    assert "ANNEXD_ACCESS_KEY_FILE" in started.stderr and f"{mode:04o}" in started.stderr
    assert DAEMON_SECRET not in started.stderr + started.stdout


def test_the_account_is_logged_never_the_key(identity_pool):
    with AnnexDaemon(identity_pool):
        pass
    assert "own AWS identity: none: the lease backstop is off" in daemon_log(identity_pool)
    with_identity_files(identity_pool)
    with AnnexDaemon(identity_pool):
        pass
    logged = daemon_log(identity_pool)
    assert ("own AWS identity: account 123456789012, from ANNEXD_ACCESS_KEY_FILE and "
            "ANNEXD_SECRET_KEY_FILE") in logged
    assert DAEMON_SECRET not in logged and "AKIADAEMONLOCAL0" not in logged


def test_with_key_files_recovery_finishes_a_users_request_of_the_same_account(
        aws, identity_pool):
    crash(identity_pool, "EC2 RequestSpotFleet:before", "-lease-duration", "3600", keys=True,
          identity=False)
    with_identity_files(identity_pool)
    with AnnexDaemon(identity_pool):
        assert unfinished(identity_pool) == []  # finished before the first request
    assert assert_all_or_nothing(aws, "phoenix") == "complete"


def test_with_key_files_the_backstop_works_on_a_submit_node_without_aws_credentials(
        aws, identity_pool):
    identity_pool.add_knobs("ANNEXD_LEASE_CHECK_INTERVAL = 0.5\n")
    with_identity_files(identity_pool)
    with AnnexDaemon(identity_pool):  # no AWS_* in its environment, no instance role
        created = identity_pool.condor_annex("-annex-name", "overdue", "-count", "1",
                                             "-lease-duration", "2", SPOT_CONFIG)
        assert created.returncode == 0, created.stderr
        aws.lambda_.delete_function(FunctionName=aws.lease_arn)  # no lease function any more
        wait_for(lambda: aws.annex_resources("overdue"), "the backstop to end the annex",
                 until=lambda held: not any(held.values()), timeout=20)
    assert "LEASE BACKSTOP: annex overdue outlived its lease" in daemon_log(identity_pool)
