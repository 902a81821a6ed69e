"""Child processes of the local AWS kit: start one, wait until it answers."""
from __future__ import annotations

import os
import subprocess
from typing import Callable

from .wait import wait_for


def spawn(argv: list[str], env: dict[str, str], output_path: str | None,
          cwd: str | None = None) -> subprocess.Popen:
    """Start ``argv`` with stdout and stderr appended to ``output_path`` (or discarded)."""
    with open(output_path or os.devnull, "ab") as output:
        return subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=output,
                                stderr=output, cwd=cwd)


def wait_until_ready(process: subprocess.Popen, probe: Callable[[], bool], name: str,
                     timeout: float) -> None:
    """Poll ``probe`` until it returns True; fail fast (RuntimeError) if ``process`` dies."""
    def answering() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with status {process.returncode}")
        return probe()
    wait_for(answering, f"{name} to answer", timeout=timeout, interval=0.01)
