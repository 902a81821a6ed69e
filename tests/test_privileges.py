"""Issue 25 finding 8: started as root (as a root condor_master starts it), condor_annexd runs
as the condor user (CONDOR_IDS, else the condor account), as HTCondor's daemons do, once its
socket is made -- and the socket, journal and log stay usable."""
from __future__ import annotations

import os
import pwd
import signal
import stat
import subprocess
import tempfile
import shutil
import time

import pytest

from annexd.process import privileges
from annexd.process.privileges import CondorIds, PrivilegeError, condor_ids, decide, may_write
from localaws.children import spawn, wait_until_ready
from localaws.pool import AnnexDaemon, LocalPool, script

from conftest import SECRET, SPOT_CONFIG

NOBODY = pwd.getpwnam("nobody")
AS_NOBODY = CondorIds(NOBODY.pw_uid, NOBODY.pw_gid, "nobody", "test")


def test_condor_ids_are_found_as_htcondor_finds_them(condor_config):
    ids = condor_ids({"CONDOR_IDS": f"{NOBODY.pw_uid}.{NOBODY.pw_gid}"})
    assert (ids.uid, ids.gid, ids.name) == (NOBODY.pw_uid, NOBODY.pw_gid, "nobody")
    assert "environment" in ids.source
    condor_config(f"CONDOR_IDS = {NOBODY.pw_uid}.{NOBODY.pw_gid}")
    assert condor_ids({}).source == "the knob CONDOR_IDS"
    with pytest.raises(PrivilegeError, match="not a uid.gid pair"):
        condor_ids({"CONDOR_IDS": "condor"})
    with pytest.raises(PrivilegeError, match="not in the password database"):
        condor_ids({"CONDOR_IDS": "4242424.4242424"})
    condor_config("")
    try:
        account = pwd.getpwnam("condor")
    except KeyError:
        assert condor_ids({}) is None
    else:
        assert condor_ids({}) == CondorIds(account.pw_uid, account.pw_gid, "condor",
                                           "the condor account")


def test_only_root_switches_and_only_to_someone_else():
    assert decide(0, AS_NOBODY) == AS_NOBODY
    assert decide(1000, AS_NOBODY) is None  # not root: stays as it is
    assert decide(0, CondorIds(0, 0, "root", "CONDOR_IDS = 0.0")) is None
    assert decide(0, None) is None  # no condor account: stays root, and logs it


def test_may_write_reads_owner_group_and_mode(tmp_path):
    directory = tmp_path / "d"
    directory.mkdir(mode=0o755)
    os.chown(directory, NOBODY.pw_uid, 0)
    assert may_write(AS_NOBODY, str(directory), [])
    os.chown(directory, 0, 0)
    assert not may_write(AS_NOBODY, str(directory), [])
    os.chmod(directory, 0o775)
    assert may_write(AS_NOBODY, str(directory), [0]) and not may_write(AS_NOBODY,
                                                                         str(directory), [])


def _ids(pid: int) -> dict[str, list[int]]:
    with open(f"/proc/{pid}/status", encoding="utf-8") as handle:
        return {line.split(":")[0]: [int(v) for v in line.split()[1:]]
                for line in handle if line.startswith(("Uid:", "Gid:"))}


@pytest.fixture(scope="module")
def readable_python(tmp_path_factory):
    """An interpreter the condor user can read, as a site's /opt virtualenv of
    /usr/bin/python3 is (this suite's own Python may sit in root's 0700 home): a virtualenv of
    the system's Python 3 whose site directory adds this suite's packages."""
    system = shutil.which("python3", path="/usr/bin:/bin")
    if system is None or not os.access(system, os.X_OK):
        pytest.skip("no system python3 to make an interpreter readable by others from")
    target = tempfile.mkdtemp(prefix="annex-python-")
    os.chmod(target, 0o755)
    subprocess.run([system, "-m", "venv", "--without-pip", target], check=True, timeout=120)
    packages = _readable_packages(os.path.join(target, "packages"))
    [theirs] = subprocess.run([os.path.join(target, "bin", "python"), "-c",
                               "import site; print(site.getsitepackages()[0])"],
                              capture_output=True, text=True, check=True).stdout.split()
    with open(os.path.join(theirs, "annexd.pth"), "w", encoding="utf-8") as handle:
        handle.write(f"import site; site.addsitedir({packages!r})\n")
    yield os.path.join(target, "bin", "python")
    shutil.rmtree(target, ignore_errors=True)


#: The project's own packages (an editable install finds them in the checkout).
PROJECT_PACKAGES = ("annexd", "annexd_lambda", "annexd_cfn", "condor_annex", "annex_ec2",
                    "localaws")


def _readable_packages(destination: str) -> str:
    """This suite's packages and the project's own, where the condor user can read them: the
    checkout (and its .venv) may sit in a directory only root may enter (a fresh clone made
    in ``mktemp -d``, mode 0700), where the daemon, once it is the condor user, could not
    import them.  Files are hard-linked where they may be (else copied), so this costs about
    a second, not a copy of the whole virtualenv."""
    import importlib.util
    import site as ours
    [packages] = [p for p in ours.getsitepackages() if p.endswith("site-packages")]
    shutil.copytree(packages, destination, copy_function=_link_readable,
                    ignore=shutil.ignore_patterns("__editable__*"))
    for name in PROJECT_PACKAGES:
        spec = importlib.util.find_spec(name)
        assert spec is not None and spec.origin, name
        shutil.copytree(os.path.dirname(spec.origin), os.path.join(destination, name),
                        copy_function=_link_readable, dirs_exist_ok=True)
    for directory, _, _ in os.walk(destination):
        os.chmod(directory, 0o755)
    return destination


def _link_readable(source: str, destination: str) -> None:
    """A hard link of a file anyone may read; a copy made readable when it is not (or when
    the two directories are on different file systems)."""
    if os.stat(source).st_mode & stat.S_IROTH:
        try:
            os.link(source, destination)
            return
        except OSError:
            pass
    shutil.copy2(source, destination)
    os.chmod(destination, 0o644)


class RootStartedDaemon(AnnexDaemon):
    """condor_annexd started by root, as a root condor_master starts it, with ``python``."""

    def __init__(self, pool: LocalPool, python: str):
        super().__init__(pool)
        self.python = python

    def start(self, timeout: float = 30.0) -> "RootStartedDaemon":
        self.process = spawn([self.python, "-m", "annexd.process.main", "-f"], self.pool.env(),
                             os.path.join(self.pool.root, "log", "annexd.stderr"),
                             cwd=self.pool.root)
        wait_until_ready(self.process, self._answers, "condor_annexd", timeout)
        return self


@pytest.fixture
def root_started_pool(aws, moto_server):
    """A pool laid out as packaged HTCondor's: LOG, SPOOL and LOCK owned by the condor user
    (here nobody, CONDOR_IDS), the pool password root's own (mode 0600)."""
    root = tempfile.mkdtemp(prefix="annex-root-")
    os.chmod(root, 0o755)
    pool = LocalPool(root).write(moto_server.url, secret=SECRET, extra="\n".join([
        f"ANNEX_DEFAULT_LEASE_FUNCTION_ARN = {aws.lease_arn}",
        f"CONDOR_IDS = {NOBODY.pw_uid}.{NOBODY.pw_gid}"]))
    for sub in ("log", "spool", "lock"):
        os.chown(os.path.join(root, sub), NOBODY.pw_uid, NOBODY.pw_gid)
    yield pool
    shutil.rmtree(root, ignore_errors=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="starting the daemon as root needs root")
def test_started_as_root_it_runs_as_the_condor_user(aws, root_started_pool, readable_python):
    pool = root_started_pool
    keys = ["-public-key-file", pool.access_key_file, "-secret-key-file", pool.secret_key_file]
    with RootStartedDaemon(pool, readable_python) as daemon:
        pid = daemon.process.pid
        ids = _ids(pid)
        # real, effective, saved, filesystem: effective (and fs) the condor user's
        assert ids["Uid"][1] == NOBODY.pw_uid and ids["Uid"][3] == NOBODY.pw_uid
        assert ids["Gid"][1] == NOBODY.pw_gid
        journal = os.path.join(pool.root, "spool", "annexd-journal.sqlite")
        for path in (journal, os.path.join(pool.root, "log", "AnnexdLog"), pool.socket_path):
            assert os.stat(path).st_uid == NOBODY.pw_uid, path
        assert stat.S_IMODE(os.stat(pool.password_file).st_mode) == 0o600
        # A create: journal written, the root-only pool password read, the lease in place.
        created = subprocess.run([script("condor_annex"), "-annex-name", "as-condor",
                                  "-lease-duration", "600", *keys, SPOT_CONFIG],
                                 env=pool.env(), capture_output=True, text=True, timeout=120)
        assert created.returncode == 0, created.stderr
        assert len(aws.annex_resources("as-condor")["fleets"]) == 1
        os.kill(pid, signal.SIGHUP)  # the log reopened as the condor user
        deadline = time.monotonic() + 30
        log = os.path.join(pool.root, "log", "AnnexdLog")
        while "configuration re-read" not in open(log, encoding="utf-8").read():
            assert time.monotonic() < deadline, "no reconfig"
            time.sleep(0.2)
        text = open(log, encoding="utf-8").read()
        assert "running as nobody (65534.65534, from the knob CONDOR_IDS)" in text
        assert "configuration error" not in text
        shown = subprocess.run([script("condor_annex"), "-status", *keys], env=pool.env(),
                               capture_output=True, text=True, timeout=60)
        assert shown.returncode == 0 and "as-condor" in shown.stdout
        assert daemon.stop() == 0
    assert not os.path.exists(pool.socket_path)  # removed as the condor user


@pytest.mark.skipif(os.geteuid() != 0, reason="starting the daemon as root needs root")
def test_a_spool_the_condor_user_cannot_write_is_refused_naming_it(root_started_pool,
                                                                   readable_python):
    pool = root_started_pool
    os.chown(os.path.join(pool.root, "spool"), 0, 0)
    process = subprocess.run([readable_python, "-m", "annexd.process.main", "-f"],
                             env=pool.env(), capture_output=True, text=True, timeout=60,
                             cwd=pool.root)
    assert process.returncode == 99
    assert "ANNEXD_JOURNAL's directory" in process.stderr and "not writable by nobody" \
        in process.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="starting the daemon as root needs root")
def test_a_python_the_condor_user_cannot_read_is_refused_naming_it(root_started_pool):
    """Modules load lazily: a daemon whose Python the condor user cannot read would fail at
    some later import; it refuses to start instead, when its library is such."""
    library = os.path.dirname(os.__file__)
    if privileges.may_read(AS_NOBODY, library, []):
        pytest.skip(f"this suite's Python ({library}) is readable by nobody")
    process = subprocess.run([script("condor_annexd"), "-f"], env=root_started_pool.env(),
                             capture_output=True, text=True, timeout=60)
    assert process.returncode == 99
    assert f"{library} (condor_annexd's Python and packages) is not readable by nobody" \
        in process.stderr
