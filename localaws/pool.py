"""A throw-away HTCondor configuration and a real ``condor_annexd`` process, for demo and tests."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from typing import Any, Callable, TypeVar

from annexd.config.knobs import ENDPOINT_KNOBS
from condor_annex import client

from . import fixtures
from .children import spawn, wait_until_ready
from .forkserver import ForkServer

BUCKET = "htcondor-annex-config"
REGION = "us-east-1"
#: The package's HTCondor config fragment, dropped into a pool's config.d unchanged.
FRAGMENT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                        "config.d", "80annexd")
TEST_KNOBS = "99tests"


def _write(path: str, lines: list[str]) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("\n".join(line for line in lines if line) + "\n")


def script(name: str) -> str:
    """Path of one of our console scripts, installed beside this interpreter."""
    return os.path.join(os.path.dirname(sys.executable), name)


@dataclass(frozen=True)
class LocalPool:
    """Files of a local HTCondor configuration under ``root`` pointed at an AWS endpoint."""

    root: str

    @property
    def config_file(self) -> str:
        return os.path.join(self.root, "condor_config")

    @property
    def socket_path(self) -> str:
        return os.path.join(self.root, "lock", "annexd.sock")

    @property
    def log_file(self) -> str:
        return os.path.join(self.root, "log", "AnnexdLog")

    @property
    def journal_file(self) -> str:
        return os.path.join(self.root, "spool", "annexd-journal.sqlite")

    @property
    def access_key_file(self) -> str:
        return os.path.join(self.root, "keys", "access.key")

    @property
    def secret_key_file(self) -> str:
        return os.path.join(self.root, "keys", "secret.key")

    def condor_annex(self, *args: str, keys: bool = True,
                     timeout: float = 120) -> subprocess.CompletedProcess:
        """Run the real condor_annex against this pool, with its key files unless told not."""
        key_args = ["-public", self.access_key_file, "-secret", self.secret_key_file] \
            if keys else []
        return run_program([script("condor_annex"), *args, *key_args], self.env(),
                           timeout=timeout)

    def env(self) -> dict[str, str]:
        """Environment for our processes: this config, and no ambient AWS settings."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env["CONDOR_CONFIG"] = self.config_file
        return env

    @property
    def password_file(self) -> str:
        """The pool password where HTCondor looks by default: $(LOCAL_DIR)/passwords.d/POOL."""
        return os.path.join(self.root, "passwords.d", "POOL")

    @property
    def user_config_file(self) -> str:
        return os.path.join(self.root, "user_config")

    @property
    def config_dir(self) -> str:
        return os.path.join(self.root, "config.d")

    def add_knobs(self, text: str) -> "LocalPool":
        """Add knobs of a test to the last file of the config directory (they win)."""
        with open(os.path.join(self.config_dir, TEST_KNOBS), "a", encoding="utf-8") as handle:
            handle.write(text.rstrip("\n") + "\n")
        return self

    def write(self, endpoint_url: str, *, secret: str, extra: str = "",
              bucket: str | None = BUCKET, pool_password: bool = True,
              own_user_config: bool = True, join: bool = True) -> "LocalPool":
        """Install like a site: a packaged-style ``condor_config`` (where things live, and
        the config directory), ``config.d/80annexd`` copied in unchanged, the pool's own
        settings, the emulator's endpoints, and what the tests need on top.

        ``bucket=None`` leaves ANNEX_DEFAULT_S3_BUCKET to -setup, and ``pool_password=False``
        gives the daemon no way for instances to authenticate.  ``own_user_config=False``
        leaves USER_CONFIG_FILE at HTCondor's default (the user's ``~/.condor/user_config``).
        ``join=False`` leaves out the instance profile and security group of -setup
        (:func:`localaws.fixtures.create_join_resources` makes them in the emulator).
        """
        for sub in ("log", "spool", "lock", "keys", "config.d", "passwords.d"):
            os.makedirs(os.path.join(self.root, sub), mode=0o755, exist_ok=True)
        for private in ("keys", "passwords.d"):
            os.chmod(os.path.join(self.root, private), 0o700)
        _write(self.config_file, [
            "## As a packaged HTCondor's condor_config: where things live.",
            f"LOCAL_DIR = {self.root}",
            "LOG = $(LOCAL_DIR)/log",
            "SPOOL = $(LOCAL_DIR)/spool",
            "LOCK = $(LOCAL_DIR)/lock",
            "LOCAL_CONFIG_DIR = $(LOCAL_DIR)/config.d"])
        shutil.copyfile(FRAGMENT, os.path.join(self.config_dir, "80annexd"))
        _write(os.path.join(self.config_dir, "90pool"), [
            "## This pool's own settings, as any pool has them.",
            "COLLECTOR_HOST = cm.pool.example.org:9618",
            f"ANNEX_DEFAULT_S3_BUCKET = {bucket}" if bucket else "",
            "## What -setup made for instances to join with (README, install step 9).",
            f"ANNEX_DEFAULT_ODI_INSTANCE_PROFILE_ARN = {fixtures.JOIN_PROFILE_ARN}" if join else "",
            f"ANNEX_DEFAULT_ODI_SECURITY_GROUP_IDS = {fixtures.JOIN_GROUP_ID}" if join else ""])
        _write(os.path.join(self.config_dir, "95emulator"), [
            "## The embedded AWS emulator instead of AWS's endpoints."] + [
            f"{knob} = {endpoint_url}" for knob in ENDPOINT_KNOBS.values()])
        _write(os.path.join(self.config_dir, TEST_KNOBS), [
            "## For the tests: the user's knobs in this pool's directory (not root's home),",
            "## and shorter waits.",
            f"USER_CONFIG_FILE = {self.user_config_file}" if own_user_config else "",
            "## The daemon runs as whoever runs the tests, not as a condor account.",
            f"CONDOR_IDS = {os.getuid()}.{os.getgid()}",
            "ANNEXD_SETUP_POLL_SECONDS = 0.2",
            "ANNEXD_AWS_MAX_ATTEMPTS = 2",
            extra])
        if pool_password:
            fd = os.open(self.password_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(b"pool-password-for-tests")
        with open(self.access_key_file, "w", encoding="utf-8") as handle:
            handle.write("AKIAEXAMPLELOCAL\n")
        fd = os.open(self.secret_key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(secret + "\n")
        return self


T = TypeVar("T")

#: Where our programs start: a new interpreter each (None), or forks of the tests' server
#: (:mod:`localaws.forkserver`), set by :func:`use_fork_server`.
_FORKS: list[ForkServer | None] = [None]


def use_fork_server(server: ForkServer | None) -> None:
    """Start every later :class:`AnnexDaemon` and :func:`run_program` in a fork of
    ``server``; ``None`` goes back to a new interpreter each."""
    _FORKS[0] = server


def run_program(argv: list[str], env: dict[str, str], *, input: str | None = None,
                timeout: float | None = 120, cwd: str | None = None
                ) -> subprocess.CompletedProcess:
    """One of our console scripts (``script(...)``), run to its end as
    ``subprocess.run(..., capture_output=True, text=True)`` runs it: forked from the fork
    server when the tests use one."""
    # pylint: disable=redefined-builtin
    server = _FORKS[0]
    if server is None:
        return subprocess.run(argv, env=env, input=input, capture_output=True, text=True,
                              timeout=timeout, cwd=cwd, check=False)
    return server.run(argv, env, input=input, timeout=timeout, cwd=cwd)


def start_program(argv: list[str], env: dict[str, str], output_path: str | None = None) -> Any:
    """One of our console scripts (``script(...)``) started in the background, its stdout
    and stderr appended to ``output_path`` (or discarded), as
    :func:`localaws.children.spawn` starts it: forked from the fork server when the tests
    use one (a ``subprocess.Popen`` or a ``forkserver.ForkedProcess``, which answers alike)."""
    launch = spawn if _FORKS[0] is None else _FORKS[0].spawn
    return launch(argv, env, output_path)


class AnnexDaemon:
    """``condor_annexd`` as a child process; ``stop()`` returns its exit status."""

    def __init__(self, pool: LocalPool, extra_env: dict[str, str] | None = None):
        self.pool = pool
        self.extra_env = extra_env or {}
        self.process: Any = None  # subprocess.Popen, or a forkserver.ForkedProcess

    def start(self, timeout: float = 30.0) -> "AnnexDaemon":
        self.process = start_program([script("condor_annexd"), "-f"],
                                     {**self.pool.env(), **self.extra_env},
                                     os.path.join(self.pool.root, "log", "annexd.stderr"))
        wait_until_ready(self.process, self._answers, "condor_annexd", timeout)
        return self

    def _answers(self) -> bool:
        try:
            client.call(self.pool.socket_path, {"version": 1, "command": "ping"}, timeout=5)
        except client.DaemonUnreachable:
            return False
        return True

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60.0) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.process.wait(timeout=timeout)

    def crash_during(self, act: Callable[[], T] = lambda: None, timeout: float = 60.0) -> T:
        """Start this daemon -- its environment names a crash point (ANNEXD_TEST_CRASH_AT,
        annexd.aws.faults) --, do ``act`` against it, and wait until it dies at that point as
        by kill -9; AssertionError when it ended otherwise.  Never left running, whatever
        happened.  Returns what ``act`` returned."""
        self.start()
        assert self.process is not None
        try:
            result = act()
            assert self.process.wait(timeout=timeout) == -signal.SIGKILL, \
                "the crash point never fired"
        finally:
            if self.process.poll() is None:
                self.stop(signal.SIGKILL)
        return result

    def __enter__(self) -> "AnnexDaemon":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if self.process and self.process.poll() is None:
            self.stop()
