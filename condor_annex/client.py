"""Talk to ``condor_annexd`` over its Unix socket: one request, one reply."""
from __future__ import annotations

import errno
import grp
import os
import socket
import time
from typing import Any, Callable

from annexd.rpc import protocol
from annex_ec2.backoff import Backoff, Deadline

#: A full listen backlog (a burst of clients) answers EAGAIN; retry that for this long.
CONNECT_RETRY_SECONDS = 10.0

#: Creating an annex waits on AWS (with retries); give it room but never hang forever.
REPLY_TIMEOUT_SECONDS = 900

#: A busy daemon is waited out this long, retrying with capped, jittered backoff.
BUSY_WAIT_SECONDS = 300
BUSY_BACKOFF = Backoff(base=0.05, cap=2.0)


class DaemonUnreachable(Exception):
    """No daemon answers at the socket, or it answered nonsense."""


def _connect(sock: socket.socket, path: str) -> None:
    deadline = time.monotonic() + CONNECT_RETRY_SECONDS
    delay = 0.01
    while True:
        try:
            sock.connect(path)
            return
        except BlockingIOError as error:
            if error.errno != errno.EAGAIN or time.monotonic() > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.5)


def unreachable(socket_path: str, error: OSError) -> str:
    """Why the socket cannot be reached, with the setting that fixes it."""
    where = f"cannot reach condor_annexd at {socket_path}: {error.strerror or error}"
    if error.errno in (errno.EACCES, errno.EPERM):
        try:
            group = grp.getgrgid(os.stat(socket_path).st_gid).gr_name
        except (OSError, KeyError):
            return (f"{where}; you may not enter its directory: ask the admin (ANNEXD_SOCKET "
                    "names the socket)")
        return (f"{where}; the socket is open only to group {group!r} (ANNEXD_SOCKET_GROUP): "
                "ask the admin to add you to that group")
    return (f"{where}; is it running? (DAEMON_LIST must include ANNEXD, and ANNEXD_SOCKET "
            "must match the daemon's)")


def call(socket_path: str, message: dict[str, Any], timeout: float = REPLY_TIMEOUT_SECONDS,
         on_progress: Callable[[str], None] = lambda text: None,
         on_busy: Callable[[str], None] = lambda text: None,
         busy_wait: float = BUSY_WAIT_SECONDS) -> dict[str, Any]:
    """Send ``message``; hand progress lines to ``on_progress``; return the final reply.

    A "busy" answer (the daemon's slots, or this user's share of them, are taken) is waited
    out with jittered backoff for up to ``busy_wait`` seconds; ``on_busy`` hears of the first.
    """
    deadline, attempt = Deadline(busy_wait), 0
    while True:
        reply = _call_once(socket_path, message, timeout, on_progress)
        if reply["ok"] or reply["error"]["kind"] != "busy":
            return reply
        delay = BUSY_BACKOFF.delay(attempt)
        if not deadline.allows(delay):
            return reply
        if attempt == 0:
            on_busy(reply["error"]["message"])
        attempt += 1
        time.sleep(delay)


def _call_once(socket_path: str, message: dict[str, Any], timeout: float,
               on_progress: Callable[[str], None]) -> dict[str, Any]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        try:
            _connect(sock, socket_path)
        except OSError as error:
            raise DaemonUnreachable(unreachable(socket_path, error)) from None
        try:
            try:
                sock.sendall(protocol.encode(message))
            except (BrokenPipeError, ConnectionResetError):
                pass  # it answered (busy) without reading all of it: read that answer
            reader = protocol.Reader(sock)
            while True:
                reply = reader.read()
                if isinstance(reply, dict) and "progress" in reply and "ok" not in reply:
                    on_progress(protocol.check_reply(reply, "progress")["progress"])
                    continue
                return protocol.check_reply(reply)
        except socket.timeout:
            raise DaemonUnreachable(f"condor_annexd did not answer within {timeout:.0f} s") \
                from None
        except (OSError, protocol.ProtocolError) as error:
            raise DaemonUnreachable(f"bad exchange with condor_annexd: {error}") from None
    finally:
        sock.close()
