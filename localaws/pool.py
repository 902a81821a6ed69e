"""A throw-away HTCondor configuration and a real ``condor_annexd`` process, for demo and tests."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass

from condor_annex import client

from .children import spawn, wait_until_ready

BUCKET = "htcondor-annex-config"
REGION = "us-east-1"


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
        return subprocess.run([script("condor_annex"), *args, *key_args], env=self.env(),
                              capture_output=True, text=True, timeout=timeout)

    def env(self) -> dict[str, str]:
        """Environment for our processes: this config, and no ambient AWS settings."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env["CONDOR_CONFIG"] = self.config_file
        return env

    @property
    def password_file(self) -> str:
        return os.path.join(self.root, "keys", "pool_password")

    @property
    def user_config_file(self) -> str:
        return os.path.join(self.root, "user_config")

    def write(self, endpoint_url: str, *, secret: str, extra: str = "",
              bucket: str | None = BUCKET, pool_password: bool = True) -> "LocalPool":
        """Write the config; ``bucket=None`` leaves ANNEX_DEFAULT_S3_BUCKET to -setup, and
        ``pool_password=False`` gives the daemon no way for instances to authenticate."""
        for sub in ("log", "spool", "lock", "keys"):
            os.makedirs(os.path.join(self.root, sub), mode=0o755, exist_ok=True)
        os.chmod(os.path.join(self.root, "keys"), 0o700)
        with open(self.config_file, "w", encoding="utf-8") as handle:
            handle.write("\n".join([
                f"LOCAL_DIR = {self.root}",
                "LOG = $(LOCAL_DIR)/log",
                "SPOOL = $(LOCAL_DIR)/spool",
                "LOCK = $(LOCAL_DIR)/lock",
                "ANNEXD_LOG = $(LOG)/AnnexdLog",
                f"ANNEX_DEFAULT_AWS_REGION = {REGION}",
                f"ANNEX_DEFAULT_EC2_URL = {endpoint_url}",
                f"ANNEX_DEFAULT_CWE_URL = {endpoint_url}",
                f"ANNEX_DEFAULT_LAMBDA_URL = {endpoint_url}",
                f"ANNEX_DEFAULT_S3_URL = {endpoint_url}",
                f"ANNEX_DEFAULT_CF_URL = {endpoint_url}",
                f"ANNEX_DEFAULT_STS_URL = {endpoint_url}",
                f"ANNEX_DEFAULT_S3_BUCKET = {bucket}" if bucket else "",
                f"USER_CONFIG_FILE = {self.user_config_file}",
                "ANNEXD_SETUP_POLL_SECONDS = 0.2",
                "COLLECTOR_HOST = cm.pool.example.org:9618",
                f"SEC_PASSWORD_FILE = {self.password_file}" if pool_password else "",
                "ANNEXD_AWS_MAX_ATTEMPTS = 2",
                extra, ""]))
        fd = os.open(self.password_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(b"pool-password-for-tests")
        with open(self.access_key_file, "w", encoding="utf-8") as handle:
            handle.write("AKIAEXAMPLELOCAL\n")
        fd = os.open(self.secret_key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(secret + "\n")
        return self


class AnnexDaemon:
    """``condor_annexd`` as a child process; ``stop()`` returns its exit status."""

    def __init__(self, pool: LocalPool, extra_env: dict[str, str] | None = None):
        self.pool = pool
        self.extra_env = extra_env or {}
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> "AnnexDaemon":
        self.process = spawn([script("condor_annexd"), "-f"],
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

    def __enter__(self) -> "AnnexDaemon":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if self.process and self.process.poll() is None:
            self.stop()
