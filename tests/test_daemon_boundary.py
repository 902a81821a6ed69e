"""The daemon as a security boundary and as a well-mannered HTCondor daemon.

Other users are real other uids (``setpriv``), speaking the wire protocol with the system
Python so that nothing of this checkout has to be readable by them.
"""
from __future__ import annotations

import json
import os
import re
import signal
import socket
import stat
import subprocess
import threading
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from annexd.rpc import protocol
from annexd.state.journal import Journal
from annexd.config.knobs import Caps, DaemonSettings, PoolSettings, RegionSettings
from annexd.rpc.server import AnnexServer
from annexd.rpc.service import AnnexService, Peer
from localaws.master import DC_CHILDALIVE, DC_SET_READY, MasterStandIn
from localaws.pool import AnnexDaemon, LocalPool, script
from localaws.wait import log_contains, wait_for

from conftest import SECRET, SPOT_CONFIG

OTHER_UID = 54321

RAW_CLIENT = """
import json, socket, sys
sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
try:
    sock.connect(sys.argv[1])
except OSError as error:
    print(json.dumps({"connect_error": error.strerror})); sys.exit(0)
sock.sendall(sys.argv[2].encode() + b"\\n")
data = b""
while not data.endswith(b"\\n"):
    try:
        chunk = sock.recv(65536)
    except OSError:  # the daemon died (a crash test)
        break
    if not chunk:
        break
    data += chunk
print(data.decode())
"""


def as_other_user(socket_path: str, message: dict, uid: int = OTHER_UID,
                  allow_no_reply: bool = False) -> dict:
    """Send one message as another uid (no supplementary groups) and return the reply.

    ``allow_no_reply``: the daemon may die meanwhile; then the reply is ``{}``.
    """
    result = subprocess.run(
        ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups",
         "/usr/bin/python3", "-c", RAW_CLIENT, socket_path, json.dumps(message)],
        capture_output=True, text=True, timeout=60, cwd="/")
    assert result.returncode == 0, result.stderr
    if allow_no_reply and not result.stdout.strip():
        return {}
    return json.loads(result.stdout)


def create_message(name: str) -> dict:
    with open(SPOT_CONFIG, encoding="utf-8") as handle:
        config = json.load(handle)
    return {"version": 1, "command": "create",
            "annex": {"name": name, "lease_duration": 600, "count": 1, "owners": ["other"],
                      "fleet_config": config},
            "credentials": {"access_key_id": "AKIAOTHER", "secret_access_key": "other-secret"}}


def test_users_see_and_act_only_on_their_own_annexes(aws, shared_pool):
    with AnnexDaemon(shared_pool, {"ANNEXD_TEST_CRASH_AT": "EC2 RequestSpotFleet:before"}) \
            as crashing:
        subprocess.run([script("condor_annex"), "-annex-name", "roots", "-lease-duration", "600",
                        "-public", shared_pool.access_key_file, "-secret",
                        shared_pool.secret_key_file, SPOT_CONFIG],
                       env=shared_pool.env(), capture_output=True, timeout=60)
        crashing.process.wait(timeout=30)
    with AnnexDaemon(shared_pool):
        mine = as_other_user(shared_pool.socket_path, create_message("theirs"))
        assert mine["ok"], mine
        listing = as_other_user(shared_pool.socket_path, {"version": 1, "command": "list"})
        assert [a["name"] for a in listing["result"]["annexes"]] == ["theirs"]
        assert listing["result"]["annexes"][0]["owner"] == OTHER_UID
        # root's interrupted annex: the other user may neither see nor resume it.
        hijack = as_other_user(shared_pool.socket_path, create_message("roots"))
        assert hijack["ok"] is False and hijack["error"]["kind"] == "conflict"
        assert "belongs to another user" in hijack["error"]["message"]
        # root (an admin) sees both.
        from condor_annex import client
        admin = client.call(shared_pool.socket_path, {"version": 1, "command": "list"})
        assert {a["name"]: a["state"] for a in admin["result"]["annexes"]} == {
            "roots": "interrupted", "theirs": "active"}
    assert aws.annex_resources("roots")["fleets"] == []


def test_socket_group_keeps_everyone_else_out(aws, shared_pool):
    shared_pool.add_knobs("ANNEXD_SOCKET_GROUP = nogroup\n")
    with AnnexDaemon(shared_pool):
        info = os.stat(shared_pool.socket_path)
        assert stat.S_IMODE(info.st_mode) == 0o660 and info.st_gid == 65534
        outsider = as_other_user(shared_pool.socket_path, {"version": 1, "command": "ping"})
        assert outsider == {"connect_error": "Permission denied"}
        member = subprocess.run(  # same uid, but now in the socket's group
            ["setpriv", f"--reuid={OTHER_UID}", "--regid=65534", "--clear-groups",
             "/usr/bin/python3", "-c", RAW_CLIENT, shared_pool.socket_path,
             json.dumps({"version": 1, "command": "ping"})],
            capture_output=True, text=True, timeout=60, cwd="/")
        assert json.loads(member.stdout)["result"]["uid"] == OTHER_UID


def test_oversized_and_slow_messages_get_an_answer_not_a_stuck_daemon(tmp_path, moto_server):
    pool = LocalPool(str(tmp_path)).write(moto_server.url, secret=SECRET,
                                          extra="ANNEXD_CLIENT_TIMEOUT_SECONDS = 1")
    with AnnexDaemon(pool) as daemon:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as big:
            big.connect(pool.socket_path)
            try:
                big.sendall(b"x" * (protocol.MAX_MESSAGE_BYTES + 100000))
            except BrokenPipeError:
                pass
            reply = protocol.receive(big)
        assert reply["ok"] is False and "larger than" in reply["error"]["message"]
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as slow:
            slow.connect(pool.socket_path)
            started = time.monotonic()
            for byte in b'{"version": 1':
                slow.sendall(bytes([byte]))
                time.sleep(0.05)
            reply = protocol.receive(slow)
            assert "did not arrive in time" in reply["error"]["message"]
            assert time.monotonic() - started < 10
        from condor_annex import client
        assert client.call(pool.socket_path, {"version": 1, "command": "ping"})["ok"]
        assert daemon.process.poll() is None


def test_group_readable_secret_key_file_is_refused(aws, pool, daemon, tmp_path):
    secret = tmp_path / "secret.key"
    secret.write_text("s3cr3t\n")
    os.chmod(secret, 0o640)
    result = subprocess.run(
        [script("condor_annex"), "-annex-name", "grp", "-lease-function-arn", aws.lease_arn,
         "-public", pool.access_key_file, "-secret", str(secret), SPOT_CONFIG],
        env=pool.env(), capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert re.search(r"must be owned by you and accessible only by you \(mode is 640; "
                     r"run chmod 600 .*secret.key\)", result.stderr)
    assert "s3cr3t" not in result.stderr


def test_secret_key_file_of_another_user_is_refused(aws, pool, daemon, tmp_path):
    secret = tmp_path / "theirs.key"
    secret.write_text("their-secret\n")
    os.chmod(secret, 0o600)
    os.chown(secret, OTHER_UID, OTHER_UID)
    result = subprocess.run(
        [script("condor_annex"), "-annex-name", "theirs", "-lease-function-arn", aws.lease_arn,
         "-public", pool.access_key_file, "-secret", str(secret), SPOT_CONFIG],
        env=pool.env(), capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "must be owned by you" in result.stderr


def wait_for_log(pool: LocalPool, text: str, timeout: float = 10) -> None:
    wait_for(log_contains(pool.log_file, text), f"{text!r} in {pool.log_file}",
             timeout=timeout)


def test_under_a_master_the_daemon_reports_ready_and_alive(aws, moto_server, tmp_path):
    master = MasterStandIn()
    pool = LocalPool(str(tmp_path)).write(moto_server.url, secret=SECRET)
    try:
        with AnnexDaemon(pool, {"CONDOR_INHERIT": master.inherit}) as daemon:
            wait_for(lambda: set(master.commands), "DC_SET_READY and DC_CHILDALIVE",
                     until=lambda seen: {DC_CHILDALIVE, DC_SET_READY} <= seen, timeout=20)
            pool.add_knobs("ANNEXD_LEASE_RATE_MINUTES = 7\n")
            daemon.process.send_signal(signal.SIGHUP)
            wait_for_log(pool, "configuration re-read")
            created = pool.condor_annex("-annex-name", "mastered", "-lease-duration", "600",
                                        "-count", "1", "-lease-function-arn", aws.lease_arn,
                                        SPOT_CONFIG)
            assert created.returncode == 0, created.stderr
            assert daemon.stop(signal.SIGTERM, timeout=30) == 0
    finally:
        master.close()
    assert aws.events.describe_rule(Name="mastered")["ScheduleExpression"] == "rate(7 minutes)"


def test_standalone_daemonize_with_pidfile(moto_server, tmp_path):
    pool = LocalPool(str(tmp_path)).write(moto_server.url, secret=SECRET)
    pidfile = tmp_path / "annexd.pid"
    pidfile.write_text("999999\n")  # stale: no such process
    command = [script("condor_annexd"), "-daemonize", "-pidfile", str(pidfile)]
    started = subprocess.run(command, env=pool.env(), capture_output=True, text=True,
                             timeout=60)
    assert started.returncode == 0, started.stderr
    wait_for(lambda: os.path.exists(pool.socket_path), "the detached daemon's socket",
             timeout=20)
    pid = int(pidfile.read_text().strip())
    try:
        from condor_annex import client
        assert client.call(pool.socket_path, {"version": 1, "command": "ping"})["ok"]
        again = subprocess.run(command, env=pool.env(), capture_output=True, text=True,
                               timeout=60)
        assert again.returncode == 99 and f"pid {pid}" in again.stderr
    finally:
        os.kill(pid, signal.SIGTERM)
    wait_for(lambda: not pidfile.exists(), "the pid file to go", timeout=20)
    with open(pool.log_file, encoding="utf-8") as log:
        assert "exiting with status 0" in log.read()


# -- protocol fuzzing --------------------------------------------------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12)
ANNEX = st.fixed_dictionaries(
    {"lease_duration": st.integers(-5, 10**6), "fleet_config": JSON},
    optional={"name": st.text(max_size=30), "count": st.integers(-2, 5), "surprise": JSON})
MESSAGES = JSON | st.fixed_dictionaries(
    {"version": st.sampled_from([1, 2, "1"]), "command": st.sampled_from(["create", "ping",
                                                                          "list", "x"])},
    optional={"annex": ANNEX, "credentials": JSON})


@pytest.fixture(scope="module")
def fuzz_service(tmp_path_factory):
    settings_ = DaemonSettings(
        socket_path="/unused", journal_path="",
        home=RegionSettings("us-east-1", {}, "bucket", None),
        pool=PoolSettings("cm.example.org", 900, None, None), caps=Caps(),
        lease_check_interval=60, lease_rate_minutes=5,
        aws_max_attempts=1,
        aws_timeout_seconds=1, step_attempts=1, retry_base_seconds=0.01, retry_max_seconds=0.01,
        allow_daemon_credentials=False, socket_group=None, max_clients=4,
        client_timeout_seconds=1, setup_poll_seconds=1)
    journal = Journal(str(tmp_path_factory.mktemp("fuzz") / "journal.sqlite"))
    yield AnnexService(settings_, journal)
    journal.close()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(message=MESSAGES)
def test_fuzzed_messages_always_get_a_valid_reply(fuzz_service, message):
    reply = fuzz_service.handle(message, Peer(pid=1, uid=1000, gid=1000))
    protocol.validate_reply(reply)
    if not (isinstance(message, dict) and message.get("command") in ("ping", "list")
            and message.get("version") == 1):
        assert reply["ok"] is False


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(payload=st.binary(max_size=2000))
def test_fuzzed_bytes_on_the_socket_never_hurt_the_daemon(pool, daemon, payload):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(30)
        sock.connect(pool.socket_path)
        sock.sendall(payload.replace(b"\n", b" ") + b"\n")
        reply = protocol.validate_reply(protocol.receive(sock))
    assert reply["version"] == 1
    assert daemon.process.poll() is None


def test_ready_and_alive_are_delivered_as_daemoncore_reads_them(aws, moto_server, tmp_path):
    """Issue 25 finding 9: the stand-in master answers as condor_master's DaemonCore does
    (security negotiation, a session, then the command; localaws/master.py says from which
    of HTCondor's sources) and decodes what arrives: the ready ad and keep-alives carrying
    this daemon's pid and its not-responding timeout, each delivered whole -- the bindings
    report success, so the daemon logs no failure to send."""
    master = MasterStandIn()
    pool = LocalPool(str(tmp_path)).write(moto_server.url, secret=SECRET,
                                          extra="ANNEXD_NOT_RESPONDING_TIMEOUT = 93")
    try:
        with AnnexDaemon(pool, {"CONDOR_INHERIT": master.inherit}) as daemon:
            pid = daemon.process.pid
            alive_period = 93 // 3 - 30  # 1 s, as DaemonCore's max(1, T/3 - 30)
            wait_for(lambda: master.commands.count(DC_CHILDALIVE), "three keep-alives",
                     until=lambda count: count >= 3, timeout=10 * alive_period + 20)
            assert daemon.stop(signal.SIGTERM, timeout=30) == 0
    finally:
        master.close()
    assert master.errors == []
    [ready] = [r for r in master.received if r.command == DC_SET_READY]
    assert ready.payload == {"DaemonPID": pid, "DaemonName": "ANNEXD", "DaemonState": "Ready"}
    alive = [r for r in master.received if r.command == DC_CHILDALIVE]
    assert all(r.payload["pid"] == pid and r.payload["timeout"] == 93 for r in alive)
    # One negotiated session, then resumed, as a DaemonCore client caches it.
    assert {r.session for r in master.received} <= {"new", "resumed"}
    assert "resumed" in {r.session for r in master.received}
    with open(pool.log_file, encoding="utf-8") as handle:
        log = handle.read()
    assert "told condor_master we are ready" in log
    assert "could not send" not in log


def test_only_root_and_the_daemons_user_run_setup_with_the_daemons_identity(moto_server,
                                                                             shared_pool):
    """Issue 23 finding 4: any local uid (this one has no passwd entry) ran -setup for a new
    region with the daemon's own AWS identity: 4 stacks.  Now it is refused before any AWS
    call; root (the daemon's user here) still may, and anyone may with setup keys."""
    from condor_annex import client
    from localaws import fixtures
    from test_identity import with_identity_files
    with_identity_files(shared_pool).add_knobs("ANNEXD_ALLOW_DAEMON_CREDENTIALS = True\n")
    stacks = fixtures.client("cloudformation", moto_server.url, "us-west-2")
    setup = {"version": 1, "command": "setup", "region": "us-west-2"}
    with AnnexDaemon(shared_pool):
        refused = as_other_user(shared_pool.socket_path, setup)
        assert refused["ok"] is False and refused["error"]["kind"] == "invalid-request"
        assert f"uid {OTHER_UID} may not run -setup" in refused["error"]["message"]
        assert stacks.describe_stacks()["Stacks"] == []
        checked = as_other_user(shared_pool.socket_path, {**setup, "command": "check-setup"})
        assert checked["ok"], checked  # a read: open to all
        done = client.call(shared_pool.socket_path, setup)
        assert done["ok"], done
    assert len(stacks.describe_stacks()["Stacks"]) == 4


def test_a_stop_ends_the_socket_loop_at_once_not_at_its_next_poll(fuzz_service, tmp_path):
    """AnnexServer.stop_serving wakes socketserver's select(): with a 30 s poll interval the
    loop still ends at once (it used to wait out the interval: 0.1 s of every daemon stop),
    and the connection that woke it is never served as a request."""
    path = str(tmp_path / "annexd.sock")
    server = AnnexServer(path, fuzz_service)
    served = []
    server.process_request = lambda request, address: served.append(request)  # type: ignore
    loop = threading.Thread(target=server.serve_forever, args=(30.0,))
    loop.start()
    try:
        wait_for(lambda: os.path.exists(path), "the socket")
        started = time.monotonic()
        server.stop_serving()
        loop.join(timeout=10)
        assert not loop.is_alive() and time.monotonic() - started < 10
        assert served == []
    finally:
        if loop.is_alive():
            server.shutdown()
        server.server_close()
