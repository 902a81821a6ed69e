"""A stand-in for ``condor_master``, as far as a daemon it starts can tell.

It listens where ``CONDOR_INHERIT`` says the master is and answers the DaemonCore commands a
child sends its master (``DC_SET_READY``, ``DC_CHILDALIVE``) the way condor_master's
DaemonCore does, over CEDAR as HTCondor's source writes it, and keeps what each carried.
:meth:`MasterStandIn.start` starts a daemon the way the master does: ``<NAME>`` from
``DAEMON_LIST``, the executable the ``<NAME>`` knob names, ``<NAME>_ARGS``, no ``-f`` -- all
read from the configuration by the HTCondor bindings of the install under test, so a packaged
configuration is exercised as written.

The protocol, from HTCondor's source (src/condor_io/reli_sock.cpp, stream.cpp,
condor_secman.cpp; src/condor_utils/classad_oldnew.cpp; src/condor_daemon_core.V6/
daemon_command.cpp, daemon_keep_alive.cpp; src/condor_daemon_client/dc_message.cpp):

* a message is packets of a 5-byte header (1 byte: last packet of the message or not; 4 bytes:
  the length, big-endian) and the data;
* an int is 8 bytes big-endian, whatever its C type; a double is two ints, the fraction
  (``frexp`` x 2147483647) and the exponent; a string is its bytes and a NUL; a ClassAd is an
  int (how many attributes), one ``Name = expression`` string each, then MyType and
  TargetType;
* a client that negotiates security sends ``DC_AUTHENTICATE`` (60010) and its policy ad
  (``Command``, ``NewSession``...); the server answers with the reconciled policy (here, as
  from a master whose policy leaves authentication, encryption and integrity optional: all
  ``NO``, and ``Enact = "YES"`` as SecMan::ReconcileSecurityPolicyAds puts it); for a new
  session the server then sends the post-auth ad (the client's
  end_of_message() on nothing sends nothing: ReliSock::end_of_message_internal) (``Sid``, ``ValidCommands``, ``ReturnCode = "AUTHORIZED"``); a client resuming that
  session sends ``UseSession = "YES"`` and the ``Sid``, and, if it asks
  (``ResumeResponse``), is answered ``ReturnCode = "AUTHORIZED"`` and a ``Nonce``
  (``SID_NOT_FOUND`` for a session the master does not know); then comes the command's own
  message:
* ``DC_CHILDALIVE``: the child's pid, its not-responding timeout, and (optionally) a double,
  the dprintf lock delay (DaemonKeepAlive::HandleChildAliveCommand);
* ``DC_SET_READY``: a ClassAd with ``DaemonPID``, ``DaemonName`` and ``DaemonState``.

Anything else -- another framing, a policy ad without ``Command``, a short payload -- is a
protocol error: the connection is dropped (as DaemonCore does) and the error kept in
:attr:`MasterStandIn.errors`.
"""
from __future__ import annotations

import base64
import json
import math
import os
import re
import select
import shlex
import socket
import struct
import subprocess
import threading
from dataclasses import dataclass, field
from typing import Any

import classad2

from .children import spawn

DC_CHILDALIVE = 60008
DC_SET_READY = 60043
DC_AUTHENTICATE = 60010
FRAC_CONST = 2147483647
HEADER = struct.Struct("!BI")
#: What a master version answers with as RemoteVersion (the client only records it).
VERSION = "$CondorVersion: 25.0.13 2025-01-01 BuildID: stand-in $"


class ProtocolError(Exception):
    """The peer did not speak CEDAR / DaemonCore as HTCondor's source writes it."""


def read_message(connection: socket.socket) -> bytes:
    """One CEDAR message: its packets' data, up to the packet marked last."""
    data = b""
    while True:
        header = _read_exactly(connection, HEADER.size)
        last, length = HEADER.unpack(header)
        if last not in (0, 1) or length > 1 << 20:
            raise ProtocolError(f"not a CEDAR packet header: {header!r}")
        data += _read_exactly(connection, length)
        if last:
            return data


def _read_exactly(connection: socket.socket, size: int) -> bytes:
    chunks = b""
    while len(chunks) < size:
        chunk = connection.recv(size - len(chunks))
        if not chunk:
            raise ProtocolError(f"the peer closed mid-message ({len(chunks)} of {size} bytes)")
        chunks += chunk
    return chunks


def send_message(connection: socket.socket, data: bytes) -> None:
    connection.sendall(HEADER.pack(1, len(data)) + data)


class Reader:
    """Decodes one message's data as Stream::code() wrote it."""

    def __init__(self, data: bytes):
        self.data, self.at = data, 0

    def done(self) -> bool:
        return self.at == len(self.data)

    def int(self) -> int:
        if self.at + 8 > len(self.data):
            raise ProtocolError("an int is 8 bytes; the message ended before")
        (value,) = struct.unpack_from("!q", self.data, self.at)
        self.at += 8
        return value

    def double(self) -> float:
        fraction, exponent = self.int(), self.int()
        return math.ldexp(fraction / FRAC_CONST, exponent)

    def string(self) -> str:
        end = self.data.find(b"\0", self.at)
        if end < 0:
            raise ProtocolError("a string ends with NUL; none found")
        text = self.data[self.at:end].decode()
        self.at = end + 1
        return text

    def classad(self) -> classad2.ClassAd:
        count = self.int()
        if not 0 <= count < 10000:
            raise ProtocolError(f"a ClassAd of {count} attributes")
        lines = [self.string() for _ in range(count)]
        self.string(), self.string()  # MyType, TargetType
        return classad2.parseOne("\n".join(lines), classad2.ParserType.Old)


def encode_int(value: int) -> bytes:
    return struct.pack("!q", value)


def encode_classad(attributes: dict[str, Any]) -> bytes:
    ad = classad2.ClassAd()
    for name, value in attributes.items():
        ad[name] = value
    lines = [line for line in ad.printOld().splitlines() if line.strip()]
    return encode_int(len(lines)) + b"".join(line.encode() + b"\0" for line in lines) + \
        b"\0\0"


@dataclass
class Received:
    """One DaemonCore command a child delivered, decoded."""
    command: int
    payload: dict[str, Any] = field(default_factory=dict)
    session: str = "none"  # "new", "resumed", or "none" (no negotiation)

_READ_KNOBS = """
import json, sys
import htcondor2
name = sys.argv[1]
print(json.dumps({k: htcondor2.param.get(k) for k in ("DAEMON_LIST", name, name + "_ARGS")}))
"""


class MasterStandIn:
    """Listens where CONDOR_INHERIT says the master is; answers and decodes the DaemonCore
    commands a child sends it (see the module's docstring)."""

    def __init__(self) -> None:
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(8)
        self.received: list[Received] = []
        self.errors: list[str] = []
        self._sessions: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    @property
    def commands(self) -> list[int]:
        """The commands delivered whole, in order."""
        return [r.command for r in self.received]

    @property
    def inherit(self) -> str:
        return f"{os.getpid()} <127.0.0.1:{self.listener.getsockname()[1]}> 0"

    def start(self, name: str, python: str, env: dict[str, str],
              output_path: str) -> subprocess.Popen:
        """Start daemon ``name`` as configured; ``python`` has the bindings to read the config."""
        read = subprocess.run([python, "-c", _READ_KNOBS, name], env=env, capture_output=True,
                              text=True, timeout=60, cwd="/")
        if read.returncode != 0:
            raise RuntimeError(f"cannot read the configuration: {read.stderr.strip()}")
        knobs = json.loads(read.stdout)
        if name not in re.split(r"[\s,]+", knobs["DAEMON_LIST"] or ""):
            raise RuntimeError(f"{name} is not in DAEMON_LIST ({knobs['DAEMON_LIST']!r})")
        if not knobs[name]:
            raise RuntimeError(f"{name} names no executable")
        argv = [knobs[name], *shlex.split(knobs[f"{name}_ARGS"] or "")]
        return spawn(argv, {**env, "CONDOR_INHERIT": self.inherit}, output_path, cwd="/")

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                ready, _, _ = select.select([self.listener], [], [], 0.2)
                if not ready:
                    continue
                connection, _ = self.listener.accept()
            except (OSError, ValueError):  # closed by close() meanwhile
                return
            threading.Thread(target=self._handle, args=(connection,), daemon=True).start()

    def _handle(self, connection: socket.socket) -> None:
        connection.settimeout(10)
        try:
            with connection:
                received = self._command(connection)
            with self._lock:
                self.received.append(received)
        except (ProtocolError, OSError, ValueError, KeyError) as error:
            with self._lock:
                self.errors.append(f"{type(error).__name__}: {error}")

    def _command(self, connection: socket.socket) -> Received:
        """One connection: the security negotiation, if any, then the command's message."""
        first = Reader(read_message(connection))
        command, session = first.int(), "none"
        if command == DC_AUTHENTICATE:
            policy = first.classad()
            command = int(policy["Command"])
            session = self._negotiate(connection, policy)
            body = Reader(read_message(connection))
        else:
            body = first
        return Received(command, self._payload(command, body), session)

    def _negotiate(self, connection: socket.socket, policy: classad2.ClassAd) -> str:
        """DaemonCommandProtocol's side of SecManStartCommand, for a master whose policy
        negotiates no authentication, encryption or integrity."""
        if str(policy.get("UseSession", "")).upper() == "YES":
            known = policy.get("Sid") in self._sessions
            if policy.get("ResumeResponse") is True:  # clients of 9.9.0 and later ask
                send_message(connection, encode_classad(
                    {"ReturnCode": "AUTHORIZED", "RemoteVersion": VERSION,
                     "Nonce": base64.b64encode(os.urandom(33)).decode()} if known
                    else {"ReturnCode": "SID_NOT_FOUND"}))
            if not known:
                raise ProtocolError(f"resumed an unknown session {policy.get('Sid')!r}")
            return "resumed"
        send_message(connection, encode_classad({
            "Authentication": "NO", "Encryption": "NO", "Integrity": "NO", "Enact": "YES",
            "NegotiatedSession": True, "RemoteVersion": VERSION,
            "SessionDuration": "3600", "SessionLease": 3600}))
        if str(policy.get("NewSession", "")).upper() != "YES":
            return "none"
        sid = f"stand-in:{os.getpid()}:{len(self._sessions) + 1}"
        with self._lock:
            self._sessions.add(sid)
        send_message(connection, encode_classad({
            "Sid": sid, "ValidCommands": f"{DC_CHILDALIVE},{DC_SET_READY}",
            "ReturnCode": "AUTHORIZED"}))
        return "new"

    @staticmethod
    def _payload(command: int, body: Reader) -> dict[str, Any]:
        if command == DC_CHILDALIVE:
            payload = {"pid": body.int(), "timeout": body.int()}
            if not body.done():
                payload["dprintf_lock_delay"] = body.double()
        elif command == DC_SET_READY:
            ad = body.classad()
            payload = {key: ad[key] for key in ("DaemonPID", "DaemonName", "DaemonState")}
        else:
            raise ProtocolError(f"command {command} is not one a child sends its master")
        if not body.done():
            raise ProtocolError(f"{len(body.data) - body.at} bytes after command {command}")
        return payload

    def close(self) -> None:
        self._stop.set()
        self.listener.close()
