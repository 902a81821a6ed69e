"""The daemon's Unix socket: one thread per connection, callers identified by the kernel.

The socket is the security boundary.  Who is asking comes from ``SO_PEERCRED`` (the kernel's
word, which a client cannot forge), never from the message.  The socket's directory must not
be writable by others (or someone could swap the socket); the socket itself is open to local
users, who are then held to their own annexes by uid.
"""
from __future__ import annotations

import grp
import logging
import os
import socket
import socketserver
import stat
import struct
import threading
import time

from annexd.process import memory
from annexd.rpc import protocol
from annexd.rpc.service import AnnexService, Peer
from annexd.process import privileges

log = logging.getLogger("annexd.rpc.server")


class SocketSetupError(Exception):
    """The socket cannot be created safely (a fatal configuration error)."""


def peer_credentials(sock: socket.socket) -> Peer:
    data = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, gid = struct.unpack("3i", data)
    return Peer(pid=pid, uid=uid, gid=gid)


def _group_id(group: str | None) -> int | None:
    if group is None:
        return None
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        raise SocketSetupError(f"ANNEXD_SOCKET_GROUP: no such group {group!r}") from None


def _make_directory(directory: str) -> None:
    """Make ``directory`` and any missing parent 0755, whatever the umask (the daemon runs
    with umask 077 to keep its log private: annexd.process.main): users must reach the
    socket."""
    parent = os.path.dirname(directory)
    if parent and parent != directory and not os.path.isdir(parent):
        _make_directory(parent)
    try:
        os.mkdir(directory, 0o755)
    except FileExistsError:
        return
    os.chmod(directory, 0o755)


def _check_directory(directory: str) -> None:
    _make_directory(os.path.abspath(directory))
    info = os.stat(directory)
    if info.st_uid not in privileges.own_uids():  # root, us, or the condor user we become
        raise SocketSetupError(f"socket directory {directory} is owned by uid {info.st_uid}")
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise SocketSetupError(f"socket directory {directory} is writable by others "
                               f"(mode {stat.S_IMODE(info.st_mode):o}); make it 0755")


def _clear_stale_socket(path: str) -> None:
    """Remove a socket left by a dead daemon; refuse if a live one is listening."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(info.st_mode):
        raise SocketSetupError(f"{path} exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except (ConnectionRefusedError, FileNotFoundError):
        os.unlink(path)
        return
    finally:
        probe.close()
    raise SocketSetupError(f"another condor_annexd is already listening on {path}")


class Handler(socketserver.BaseRequestHandler):
    server: "AnnexServer"

    def handle(self) -> None:
        peer = peer_credentials(self.request)
        refusal = self.server.admit(peer)
        if refusal:
            log.warning("refusing pid %d (uid %d): %s", peer.pid, peer.uid, refusal)
            self._send(peer, protocol.error_reply(
                "busy", f"condor_annexd is busy: {refusal}; try again shortly"))
            return
        try:
            self._serve(peer)
        finally:
            self.server.leave(peer)
            memory.give_back()

    def _serve(self, peer: Peer) -> None:
        try:
            message = protocol.receive(self.request,
                                       time.monotonic() + self.server.client_timeout)
        except (protocol.ProtocolError, OSError) as error:
            reply = protocol.error_reply("protocol", f"bad message: {error}")
        else:
            self.request.settimeout(None)
            reply = self.server.service.handle(
                message, peer, lambda text: self._send(peer, protocol.progress_message(text)))
        self._send(peer, reply)

    def _send(self, peer: Peer, reply: dict) -> None:
        try:
            self.request.settimeout(self.server.client_timeout)
            self.request.sendall(protocol.encode(reply))
        except OSError as error:
            log.warning("could not reply to pid %d (uid %d): %s", peer.pid, peer.uid, error)


class AnnexServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    """Serves many clients at once; closing waits for the requests in flight."""

    daemon_threads = False
    block_on_close = True
    # socketserver's default backlog of 5 makes a burst of clients fail with EAGAIN.
    request_queue_size = socket.SOMAXCONN

    def __init__(self, path: str, service: AnnexService, *, group: str | None = None,
                 max_clients: int = 64, client_timeout: float = 30.0,
                 max_clients_per_user: int = 16):
        _check_directory(os.path.dirname(os.path.abspath(path)))
        _clear_stale_socket(path)
        gid = _group_id(group)
        self.service = service
        self.path = path
        self.max_clients = max_clients
        self.client_timeout = client_timeout  # for a whole request to arrive, or a reply to go
        #: No user may hold more than this many of the slots, so none can starve the others.
        self.max_clients_per_user = max_clients_per_user
        self._per_user: dict[int, int] = {}
        self._per_user_lock = threading.Lock()
        super().__init__(path, Handler)
        self._open_to(gid, group)
        log.info("listening on %s", path)

    def _open_to(self, gid: int | None, group: str | None) -> None:
        """Who may connect: every local user (0666), or the members of one group (0660)."""
        if gid is None:
            os.chmod(self.path, 0o666)
        else:
            os.chown(self.path, -1, gid)
            os.chmod(self.path, 0o660)
        log.info("socket %s open to %s", self.path,
                 "all local users (mode 0666)" if gid is None
                 else f"group {group} only (mode 0660)")

    def reconfigure(self, *, group: str | None, max_clients: int, client_timeout: float,
                    max_clients_per_user: int) -> None:
        """Apply re-read knobs (SIGHUP) to the socket already listening; raises
        SocketSetupError, changing nothing, for a group that does not exist."""
        gid = _group_id(group)
        self._open_to(gid, group)
        with self._per_user_lock:
            self.max_clients = max_clients
            self.max_clients_per_user = max_clients_per_user
        self.client_timeout = client_timeout

    def admit(self, peer: Peer) -> str | None:
        """Take a slot for ``peer``; None if taken, else why not (the user's own share is
        used up, or every slot is)."""
        with self._per_user_lock:
            held = self._per_user.get(peer.uid, 0)
            if held >= self.max_clients_per_user:
                return (f"you already have {held} requests in flight "
                        "(ANNEXD_MAX_CLIENTS_PER_USER)")
            if sum(self._per_user.values()) >= self.max_clients:
                return f"{self.max_clients} clients are connected (ANNEXD_MAX_CLIENTS)"
            self._per_user[peer.uid] = held + 1
        return None

    def leave(self, peer: Peer) -> None:
        with self._per_user_lock:
            self._per_user[peer.uid] -= 1
            if not self._per_user[peer.uid]:
                del self._per_user[peer.uid]

    def stop_serving(self) -> None:
        """End ``serve_forever`` now, from another thread; returns once it has ended.

        socketserver's loop looks at its stop flag only when its ``select()`` returns, that
        is every ``poll_interval``: every stop (``condor_off``, each of the test suite's few
        hundred daemons) waited out the interval.  A connection to our own socket makes the
        ``select()`` return at once.  The flag ``shutdown()`` sets is set first, so the loop
        leaves without taking that connection (were it taken, it would get the "bad message"
        reply of any empty connection); the listening socket's close drops it."""
        self._BaseServer__shutdown_request = True  # what shutdown() sets before it waits
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as wake:
                wake.settimeout(1.0)
                wake.connect(self.path)
        except OSError:  # not listening, or gone: the loop still notices at its next poll
            pass
        self.shutdown()

    def server_close(self) -> None:
        super().server_close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
