"""A stand-in for ``condor_master``, as far as a daemon it starts can tell.

It listens where ``CONDOR_INHERIT`` says the master is and records the DaemonCore commands
it receives (``DC_SET_READY``, ``DC_CHILDALIVE``).  :meth:`MasterStandIn.start` starts a
daemon the way the master does: ``<NAME>`` from ``DAEMON_LIST``, the executable the ``<NAME>``
knob names, ``<NAME>_ARGS``, no ``-f`` -- all read from the configuration by the HTCondor
bindings of the install under test, so a packaged configuration is exercised as written.
"""
from __future__ import annotations

import json
import os
import re
import select
import shlex
import socket
import subprocess
import threading

from .children import spawn

DC_CHILDALIVE = 60008
DC_SET_READY = 60043

_READ_KNOBS = """
import json, sys
import htcondor2
name = sys.argv[1]
print(json.dumps({k: htcondor2.param.get(k) for k in ("DAEMON_LIST", name, name + "_ARGS")}))
"""


class MasterStandIn:
    """Listens where CONDOR_INHERIT says the master is; records the DaemonCore commands."""

    def __init__(self) -> None:
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(8)
        self.commands: list[int] = []
        self._stop = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

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
            connection.settimeout(2)
            try:
                data = connection.recv(4096)
            except OSError:
                data = b""
            connection.close()
            self.commands += [int(n) for n in re.findall(rb"Command = (\d+)", data)]

    def close(self) -> None:
        self._stop.set()
        self.listener.close()
