"""Talk to ``condor_annexd`` over its Unix socket: one request, one reply."""
from __future__ import annotations

import errno
import socket
import time
from typing import Any, Callable

from annexd import protocol

#: A full listen backlog (a burst of clients) answers EAGAIN; retry that for this long.
CONNECT_RETRY_SECONDS = 10.0

#: Creating an annex waits on AWS (with retries); give it room but never hang forever.
REPLY_TIMEOUT_SECONDS = 900


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


def call(socket_path: str, message: dict[str, Any], timeout: float = REPLY_TIMEOUT_SECONDS,
         on_progress: Callable[[str], None] = lambda text: None) -> dict[str, Any]:
    """Send ``message``; hand progress lines to ``on_progress``; return the final reply."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        try:
            _connect(sock, socket_path)
        except OSError as error:
            raise DaemonUnreachable(
                f"cannot reach condor_annexd at {socket_path}: {error.strerror or error}; "
                "is it running? (DAEMON_LIST must include ANNEXD, and ANNEXD_SOCKET must "
                "match the daemon's)") from None
        try:
            sock.sendall(protocol.encode(message))
            reader = protocol.Reader(sock)
            while True:
                reply = reader.read()
                if isinstance(reply, dict) and "progress" in reply and "ok" not in reply:
                    on_progress(protocol.validate(reply, protocol.PROGRESS_SCHEMA)["progress"])
                    continue
                return protocol.validate_reply(reply)
        except socket.timeout:
            raise DaemonUnreachable(f"condor_annexd did not answer within {timeout:.0f} s") \
                from None
        except (OSError, protocol.ProtocolError) as error:
            raise DaemonUnreachable(f"bad exchange with condor_annexd: {error}") from None
    finally:
        sock.close()
