"""condor_annexd as condor_master sees it: exit statuses, signals, socket safety."""
from __future__ import annotations

import grp
import os
import signal
import stat
import subprocess

import pytest

from condor_annex import client
from localaws.pool import AnnexDaemon, LocalPool, script
from localaws.wait import log_contains, wait_for

from conftest import SECRET, SPOT_CONFIG


def start_and_wait(pool: LocalPool) -> subprocess.CompletedProcess:
    return subprocess.run([script("condor_annexd")], env=pool.env(), capture_output=True,
                          text=True, timeout=60)


def test_sigterm_stops_cleanly_and_removes_the_socket(moto_server, tmp_path):
    pool = LocalPool(str(tmp_path)).write(moto_server.url, secret=SECRET)
    daemon = AnnexDaemon(pool).start()
    assert os.path.exists(pool.socket_path)
    assert daemon.stop(signal.SIGTERM) == 0
    assert not os.path.exists(pool.socket_path)
    with open(pool.log_file, encoding="utf-8") as log:
        assert "exiting with status 0" in log.read()


def test_sigquit_exits_zero_at_once(moto_server, tmp_path):
    pool = LocalPool(str(tmp_path)).write(moto_server.url, secret=SECRET)
    assert AnnexDaemon(pool).start().stop(signal.SIGQUIT) == 0


def test_unwritable_log_exits_44(moto_server, tmp_path):
    pool = LocalPool(str(tmp_path)).write(
        moto_server.url, secret=SECRET, extra="ANNEXD_LOG = /nonexistent/dir/AnnexdLog")
    result = start_and_wait(pool)
    assert result.returncode == 44
    assert "cannot write the log in /nonexistent/dir" in result.stderr


@pytest.mark.parametrize("extra, words", [
    ("ANNEXD_LEASE_RATE_MINUTES = soon", "ANNEXD_LEASE_RATE_MINUTES = 'soon'"),
    ("ANNEXD_SOCKET = /tmp", "/tmp exists and is not a socket"),
])
def test_configuration_errors_exit_99(moto_server, tmp_path, extra, words):
    pool = LocalPool(str(tmp_path)).write(moto_server.url, secret=SECRET, extra=extra)
    assert start_and_wait(pool).returncode == 99
    with open(pool.log_file, encoding="utf-8") as log:
        assert words in log.read()


def test_socket_directory_writable_by_others_exits_99(moto_server, tmp_path):
    pool = LocalPool(str(tmp_path)).write(moto_server.url, secret=SECRET)
    os.chmod(os.path.dirname(pool.socket_path), 0o777)
    assert start_and_wait(pool).returncode == 99
    with open(pool.log_file, encoding="utf-8") as log:
        assert "is writable by others" in log.read()


def test_second_daemon_on_the_same_socket_exits_99(moto_server, tmp_path):
    pool = LocalPool(str(tmp_path)).write(moto_server.url, secret=SECRET)
    with AnnexDaemon(pool) as first:
        assert start_and_wait(pool).returncode == 99
        assert first.process.poll() is None
    with open(pool.log_file, encoding="utf-8") as log:
        assert "another condor_annexd is already listening" in log.read()


def test_stale_socket_from_a_killed_daemon_is_replaced(moto_server, tmp_path):
    pool = LocalPool(str(tmp_path)).write(moto_server.url, secret=SECRET)
    assert AnnexDaemon(pool).start().stop(signal.SIGKILL) == -signal.SIGKILL
    assert os.path.exists(pool.socket_path)
    with AnnexDaemon(pool) as again:
        assert again.process.poll() is None


def test_sighup_rereads_the_configuration(aws, moto_server, tmp_path):
    pool = LocalPool(str(tmp_path)).write(moto_server.url, secret=SECRET)
    with AnnexDaemon(pool) as daemon:
        pool.add_knobs("ANNEXD_LEASE_RATE_MINUTES = 10\n")
        daemon.process.send_signal(signal.SIGHUP)
        wait_for(log_contains(pool.log_file, "configuration re-read"), "the re-read", timeout=10)
        result = pool.condor_annex("-annex-name", "hup", "-lease-duration", "600", "-count",
                                   "1", "-lease-function-arn", aws.lease_arn, SPOT_CONFIG)
        assert result.returncode == 0, result.stderr
    assert aws.events.describe_rule(Name="hup")["ScheduleExpression"] == "rate(10 minutes)"


def test_cli_never_imports_boto3(pool):
    code = ("import sys; from condor_annex import cli; "
            "status = cli.main(['-help']); "
            "assert status == 0; "
            "leaked = [m for m in ('boto3', 'botocore') if m in sys.modules]; "
            "assert not leaked, leaked")
    result = subprocess.run([script("python"), "-c", code], env=pool.env(),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "-lease-duration SECONDS" in result.stdout


def test_daemonize_returns_once_the_daemon_serves(moto_server, tmp_path):
    pool = LocalPool(str(tmp_path)).write(moto_server.url, secret=SECRET)
    pidfile = tmp_path / "annexd.pid"
    started = subprocess.run([script("condor_annexd"), "-daemonize", "-pidfile", str(pidfile)],
                             env=pool.env(), capture_output=True, text=True, timeout=60)
    assert started.returncode == 0, started.stderr
    pid = int(pidfile.read_text().strip())
    try:  # no waiting: it serves by the time the command returns
        assert client.call(pool.socket_path, {"version": 1, "command": "ping"})["ok"]
    finally:
        os.kill(pid, signal.SIGTERM)
    wait_for(lambda: not pidfile.exists(), "the pid file to go", timeout=20)


def test_daemonize_exits_99_with_the_reason_when_the_daemon_cannot_start(moto_server,
                                                                         tmp_path):
    """Issue 19 finding 5: it exited 0 and printed nothing."""
    pool = LocalPool(str(tmp_path)).write(moto_server.url, secret=SECRET,
                                          extra="ANNEXD_SOCKET = /tmp")
    pidfile = tmp_path / "annexd.pid"
    started = subprocess.run([script("condor_annexd"), "-daemonize", "-pidfile", str(pidfile)],
                             env=pool.env(), capture_output=True, text=True, timeout=60)
    assert started.returncode == 99
    assert "/tmp exists and is not a socket" in started.stderr
    wait_for(lambda: not pidfile.exists(), "the failed daemon's pid file to go", timeout=20)


def test_sighup_applies_the_socket_group_mode_and_log_and_logs_what_needs_a_restart(
        moto_server, tmp_path):
    """Issue 19 finding 5: SIGHUP said "configuration re-read" but left the socket as it was."""
    pool = LocalPool(str(tmp_path)).write(moto_server.url, secret=SECRET)
    with AnnexDaemon(pool) as daemon:
        assert stat.S_IMODE(os.stat(pool.socket_path).st_mode) == 0o666
        moved_socket = os.path.join(tmp_path, "lock", "moved.sock")
        moved_log = os.path.join(tmp_path, "log", "MovedLog")
        pool.add_knobs(f"ANNEXD_SOCKET_GROUP = nogroup\nANNEXD_SOCKET = {moved_socket}\n"
                       f"ANNEXD_LOG = {moved_log}\n")
        daemon.process.send_signal(signal.SIGHUP)
        wait_for(log_contains(moved_log, "configuration re-read"), "the re-read", timeout=10)
        info = os.stat(pool.socket_path)
        assert stat.S_IMODE(info.st_mode) == 0o660
        assert info.st_gid == grp.getgrnam("nogroup").gr_gid
        assert client.call(pool.socket_path, {"version": 1, "command": "ping"})["ok"]
    with open(moved_log, encoding="utf-8") as log:
        text = log.read()
    assert "group nogroup only (mode 0660)" in text
    assert (f"ANNEXD_SOCKET changed ({pool.socket_path} -> {moved_socket}): takes effect when "
            "condor_annexd restarts") in text
    assert "exiting with status 0" in text
