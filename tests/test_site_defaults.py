"""A site as HTCondor installs it: a packaged-style condor_config, config.d/80annexd dropped in
unchanged, HTCondor's own defaults for everything else -- and a real user with a home in the
password database."""
from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import tempfile

import pytest

from localaws.pool import AnnexDaemon, LocalPool, script

from conftest import SECRET, SPOT_CONFIG

SITE_UID = 54399
READ_KNOBS = """
import json, htcondor2
print(json.dumps({n: htcondor2.param.get(n) for n in [
    "USER_CONFIG_FILE", "us_east_1.ANNEX_DEFAULT_LEASE_FUNCTION_ARN",
    "us_east_1.ANNEX_DEFAULT_S3_BUCKET"]}))
"""


@pytest.fixture
def reachable_checkout():
    """Let another user run this checkout's venv: a clone may sit in a 0700 directory (mktemp
    -d); its parents get the search bit for the test, and get their old mode back after."""
    changed = []
    path = os.path.dirname(os.path.abspath(script("python")))
    while path != "/":
        mode = os.stat(path).st_mode
        if not mode & 0o001:
            os.chmod(path, mode | 0o011)
            changed.append((path, mode))
        path = os.path.dirname(path)
    yield
    for path, mode in changed:
        os.chmod(path, mode)


@pytest.fixture
def site(empty_aws, moto_server, reachable_checkout):
    """A pool under /tmp (other users can reach it) with no USER_CONFIG_FILE, and a user."""
    root = tempfile.mkdtemp(prefix="annex-site-")
    os.chmod(root, 0o755)
    home = os.path.join(root, "home", "ann")
    name = f"annexsite{SITE_UID}"
    subprocess.run(["userdel", name], capture_output=True)  # a leftover of a killed run
    subprocess.run(["useradd", "-M", "-d", home, "-u", str(SITE_UID), "-s", "/bin/sh", name],
                   check=True, capture_output=True)
    try:
        os.makedirs(home, mode=0o755)
        shutil.chown(home, SITE_UID, SITE_UID)
        pool = LocalPool(root).write(moto_server.url, secret=SECRET, bucket=None,
                                     own_user_config=False)
        for path in (pool.access_key_file, pool.secret_key_file):  # the user's own keys
            mine = os.path.join(home, os.path.basename(path))
            shutil.copyfile(path, mine)
            shutil.chown(mine, SITE_UID, SITE_UID)
            os.chmod(mine, 0o600)
        yield pool, pwd.getpwnam(name)
    finally:
        subprocess.run(["userdel", name], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def as_user(user: pwd.struct_passwd, pool: LocalPool, *argv: str) -> subprocess.CompletedProcess:
    """Run argv as the site user, with $HOME pointing elsewhere (HTCondor must not use it)."""
    env = {**pool.env(), "HOME": "/nonexistent", "USER": user.pw_name}
    return subprocess.run(["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}",
                           "--clear-groups", *argv], env=env, capture_output=True, text=True,
                          timeout=300, cwd="/")


def test_setup_writes_where_htcondor_reads_and_create_then_needs_no_flags(empty_aws, site):
    pool, user = site
    keys = [os.path.join(user.pw_dir, os.path.basename(p))
            for p in (pool.access_key_file, pool.secret_key_file)]
    with AnnexDaemon(pool) as daemon:  # no ANNEXD_LOG anywhere: the default is used
        setup = as_user(user, pool, script("condor_annex"), "-setup", *keys)
        assert setup.returncode == 0, setup.stderr
        user_config = os.path.join(user.pw_dir, ".condor", "user_config")
        assert os.stat(user_config).st_uid == SITE_UID
        assert not os.path.exists(os.path.join("/", "user_config"))  # not the working dir
        seen = as_user(user, pool, script("python"), "-c", READ_KNOBS)
        assert seen.returncode == 0, seen.stderr
        knobs = json.loads(seen.stdout)
        assert knobs["USER_CONFIG_FILE"] == "user_config"  # HTCondor's own default
        assert knobs["us_east_1.ANNEX_DEFAULT_LEASE_FUNCTION_ARN"].startswith(
            "arn:aws:lambda:us-east-1:")
        assert knobs["us_east_1.ANNEX_DEFAULT_S3_BUCKET"]
        created = as_user(user, pool, script("condor_annex"), "-annex-name", "sited",
                          "-count", "1", "-lease-duration", "600", "-owner", user.pw_name,
                          "-yes", *[flag for pair in zip(("-public", "-secret"), keys)
                                    for flag in pair], SPOT_CONFIG)
        assert created.returncode == 0, created.stderr
    assert daemon.process.returncode == 0
    with open(os.path.join(pool.root, "log", "AnnexdLog"), encoding="utf-8") as log:
        assert "condor_annexd ready" in log.read()
    assert empty_aws.annex_resources("sited", bucket=knobs["us_east_1.ANNEX_DEFAULT_S3_BUCKET"])[
        "fleets"]
