"""No user starves the others: a per-user share of the daemon's slots, and a CLI that waits
out "busy" with jittered backoff instead of failing."""
from __future__ import annotations

import concurrent.futures
import subprocess
import time

from localaws.pool import AnnexDaemon, LocalPool, run_program, script

from conftest import SECRET, SPOT_CONFIG

HOG_UID = 54351
HOLD_IDLE = """
import socket, sys
held = []
for _ in range(int(sys.argv[2])):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(sys.argv[1])
    held.append(sock)
print("holding", flush=True)
sys.stdin.read()  # until the test closes our stdin
"""


def test_two_hundred_idle_connections_of_one_user_do_not_stop_anothers_create(aws,
                                                                               shared_pool):
    shared_pool.add_knobs("ANNEXD_CLIENT_TIMEOUT_SECONDS = 120")
    with AnnexDaemon(shared_pool):
        hog = subprocess.Popen(
            ["setpriv", f"--reuid={HOG_UID}", f"--regid={HOG_UID}", "--clear-groups",
             "/usr/bin/python3", "-c", HOLD_IDLE, shared_pool.socket_path, "200"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd="/")
        try:
            assert hog.stdout.readline().strip() == "holding"
            started = time.monotonic()
            created = shared_pool.condor_annex("-annex-name", "not-starved", "-count", "1",
                                               "-lease-duration", "600", SPOT_CONFIG)
            waited = time.monotonic() - started
        finally:
            hog.stdin.close()
            hog.wait(timeout=30)
    assert created.returncode == 0, created.stderr
    assert waited < 60  # it got a slot at once, not when the hog's connections timed out
    assert len(aws.annex_resources("not-starved")["instances"]) == 1
    with open(shared_pool.log_file, encoding="utf-8") as log:
        refusals = log.read().count(f"(uid {HOG_UID}): you already have 16 requests in flight")
    assert refusals == 200 - 16


def test_a_hundred_simultaneous_creates_of_one_user_all_succeed(aws, moto_server, tmp_path):
    pool = LocalPool(str(tmp_path)).write(
        moto_server.url, secret=SECRET, extra=f"ANNEX_DEFAULT_LEASE_FUNCTION_ARN = {aws.lease_arn}")
    names = [f"crowd-{n}" for n in range(100)]
    def create(name: str) -> subprocess.CompletedProcess:
        return run_program([script("condor_annex"), "-annex-name", name, "-count", "1",
                            "-lease-duration", "600", "-public", pool.access_key_file,
                            "-secret", pool.secret_key_file, SPOT_CONFIG], pool.env(),
                           timeout=300)

    with AnnexDaemon(pool):
        with concurrent.futures.ThreadPoolExecutor(len(names)) as clients:  # all at once
            outcomes = [(done.returncode, done.stderr) for done in clients.map(create, names)]
    failed = [(name, status, err) for name, (status, err) in zip(names, outcomes) if status]
    assert failed == []
    with open(pool.log_file, encoding="utf-8") as log:
        assert "ANNEXD_MAX_CLIENTS_PER_USER" in log.read()  # the share was really exceeded
    fleets = [f for f in aws.all_fleets() if f["SpotFleetRequestState"] == "active"]
    assert len(fleets) == 100
