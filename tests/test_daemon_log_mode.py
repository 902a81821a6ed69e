"""Issue 23, requirement 7: the daemon's log is not world-readable.

HTCondor's logging opens ``ANNEXD_LOG`` -- and every file it rotates it into -- with mode
0644 less the umask, so on main ``AnnexdLog`` was 0644 under the usual umask 022.  Now it is
0600 at start (an earlier release's 0644 log and its ``.old`` narrowed), after a SIGHUP that
finds it moved away or names another file, and after HTCondor rotates it; the socket stays
reachable by the users it serves.
"""
from __future__ import annotations

import contextlib
import os
import signal
import stat
from typing import Iterator

from condor_annex import client
from localaws.pool import AnnexDaemon, LocalPool
from localaws.wait import log_contains, wait_for

from conftest import SECRET


def mode(path: str) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@contextlib.contextmanager
def usual_umask() -> Iterator[None]:
    """The daemon starts with umask 022, as under a condor_master or a shell's default."""
    before = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(before)


def pool_of(moto_server, tmp_path, extra: str = "") -> LocalPool:
    return LocalPool(str(tmp_path)).write(moto_server.url, secret=SECRET, extra=extra)


def test_the_log_is_private_and_an_old_world_readable_one_is_made_private(moto_server,
                                                                          tmp_path):
    pool = pool_of(moto_server, tmp_path)
    for name in (pool.log_file, f"{pool.log_file}.old"):  # as an earlier release left them
        with open(name, "w", encoding="utf-8") as handle:
            handle.write("an earlier release's lines\n")
        os.chmod(name, 0o644)
    with usual_umask(), AnnexDaemon(pool):
        assert mode(pool.log_file) == 0o600
        assert mode(f"{pool.log_file}.old") == 0o600
        # ... and the socket, made with the umask the daemon started with, still serves all.
        assert mode(os.path.dirname(pool.socket_path)) & 0o005 == 0o005
        assert mode(pool.socket_path) == 0o666


def test_a_new_log_is_private_from_its_first_line(moto_server, tmp_path):
    pool = pool_of(moto_server, tmp_path)
    assert not os.path.exists(pool.log_file)
    with usual_umask(), AnnexDaemon(pool):
        assert mode(pool.log_file) == 0o600


def test_the_log_reopened_on_sighup_is_private(moto_server, tmp_path):
    """logrotate moves the log away and sends SIGHUP; or SIGHUP names another log."""
    pool = pool_of(moto_server, tmp_path)
    with usual_umask(), AnnexDaemon(pool) as daemon:
        os.rename(pool.log_file, f"{pool.log_file}.1")
        daemon.process.send_signal(signal.SIGHUP)
        wait_for(log_contains(pool.log_file, "configuration re-read"), "the re-read",
                 timeout=10)
        assert mode(pool.log_file) == 0o600
        moved = os.path.join(str(tmp_path), "log", "MovedLog")
        pool.add_knobs(f"ANNEXD_LOG = {moved}\n")
        daemon.process.send_signal(signal.SIGHUP)
        wait_for(log_contains(moved, "configuration re-read"), "the second re-read",
                 timeout=10)
        assert mode(moved) == 0o600


def test_the_files_the_log_rotates_into_are_private(moto_server, tmp_path):
    """HTCondor's logging renames a full log to ``.old`` and makes a new one itself: here at
    the daemon's first lines, the log being all but full already."""
    pool = pool_of(moto_server, tmp_path, extra="MAX_ANNEXD_LOG = 2000")
    fd = os.open(pool.log_file, os.O_WRONLY | os.O_CREAT, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write("an earlier run's line\n" * 90)  # 1,980 bytes
    with usual_umask(), AnnexDaemon(pool):
        assert os.path.exists(f"{pool.log_file}.old")
        assert mode(pool.log_file) == 0o600 and mode(f"{pool.log_file}.old") == 0o600
        with open(pool.log_file, encoding="utf-8") as log:
            assert "an earlier run's line" not in log.read()


def test_a_socket_directory_the_daemon_makes_is_still_reachable(moto_server, tmp_path):
    """The daemon runs with umask 077 for its log's sake; the socket's directory (and any
    missing parent) it makes is 0755 all the same, so other users reach the socket."""
    socket_path = os.path.join(str(tmp_path), "run", "annexd", "annexd.sock")
    pool = pool_of(moto_server, tmp_path, extra=f"ANNEXD_SOCKET = {socket_path}")
    daemon = AnnexDaemon(pool)
    daemon._answers = lambda: os.path.exists(socket_path) and client.call(  # type: ignore
        socket_path, {"version": 1, "command": "ping"}, timeout=5)["ok"]
    with usual_umask(), daemon:
        assert mode(os.path.dirname(socket_path)) == 0o755
        assert mode(os.path.dirname(os.path.dirname(socket_path))) == 0o755
        assert mode(socket_path) == 0o666
