"""condor_annex_ec2: an instance of a real annex finds, fetches and installs its configuration."""
from __future__ import annotations

import io
import itertools
import json
import os
import pwd
import stat
import subprocess
import tarfile
import time

import pytest

from annex_ec2 import extract
from annexd_lambda.lease import ANNEX_TAG
from localaws.faultproxy import FaultProxy
from localaws.fakeimds import FakeImds
from localaws.pool import script
from localaws.wait import wait_for

from conftest import SPOT_CONFIG

READ_KNOBS = """
import json, htcondor2
names = ["COLLECTOR_HOST", "AnnexName", "IsAnnex", "START", "STARTD_NOCLAIM_SHUTDOWN",
         "SEC_DEFAULT_AUTHENTICATION", "SEC_DEFAULT_AUTHENTICATION_METHODS",
         "SEC_PASSWORD_FILE", "EC2InstanceID", "MASTER.DAEMON_SHUTDOWN"]
print(json.dumps({n: str(htcondor2.param.get(n)) for n in names}))
"""


_BOOTS = itertools.count()


@pytest.fixture
def annex_instance(aws, run_annex, with_keys):
    """An annex made by the real daemon, the setup's instance profile, one of its instances.

    Each test gets an annex name of its own (``.annex``): the module's daemon remembers them.
    """
    name = f"booting-{next(_BOOTS)}"
    created = run_annex("-annex-name", name, "-lease-duration", "3600", "-count", "2",
                        "-lease-function-arn", aws.lease_arn, *with_keys, SPOT_CONFIG)
    assert created.returncode == 0, created.stderr
    with open(os.path.join(os.path.dirname(__file__), "..", "cfn", "instance-profile.yaml"),
              encoding="utf-8") as handle:
        aws.cloudformation.create_stack(
            StackName="HTCondorAnnex-InstanceProfile", TemplateBody=handle.read(),
            Parameters=[{"ParameterKey": "S3BucketName",
                         "ParameterValue": "htcondor-annex-config"}],
            Capabilities=["CAPABILITY_IAM"])
    stack = wait_for(lambda: aws.cloudformation.describe_stacks(
        StackName="HTCondorAnnex-InstanceProfile")["Stacks"][0], "the instance profile stack",
        until=lambda found: found["StackStatus"] == "CREATE_COMPLETE")
    profile = stack["Outputs"][0]["OutputValue"]
    instance = aws.ec2.describe_instances(Filters=[
        {"Name": f"tag:{ANNEX_TAG}", "Values": [name]}])["Reservations"][0]["Instances"][0]
    imds = FakeImds(instance["InstanceId"], "us-east-1", profile)
    imds.annex, imds.instance_id = name, instance["InstanceId"]
    yield imds
    imds.close()


def run_bootstrap(aws_url: str, imds: FakeImds, config_dir, *extra: str,
                  s3_url: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_EC2_METADATA_SERVICE_ENDPOINT=imds.url, AWS_ENDPOINT_URL=aws_url,
               AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing")
    if s3_url:
        env["AWS_ENDPOINT_URL_S3"] = s3_url
    if "-poweroff-command" not in extra:  # never the real one: this is somebody's machine
        extra += ("-poweroff-command", f"touch {config_dir}.powered-off")
    return subprocess.run([script("condor_annex_ec2"), "-config-dir", str(config_dir),
                           "-retry-base", "0.05", *extra], env=env, capture_output=True,
                          text=True, timeout=120)


def test_instance_joins_with_the_annexs_configuration(aws, annex_instance, tmp_path):
    config_dir = tmp_path / "config.d"
    result = run_bootstrap(aws.url, annex_instance, config_dir)
    assert result.returncode == 0, result.stderr
    assert "not restricting the metadata service: it is http://127.0.0.1" in result.stderr
    secrets = config_dir / f".annex-{annex_instance.annex}"
    assert stat.S_IMODE(secrets.stat().st_mode) == 0o700
    assert stat.S_IMODE((secrets / "pool_password").stat().st_mode) == 0o600
    assert not any(p.name.startswith(".annex-incoming") for p in config_dir.iterdir())

    condor_config = tmp_path / "condor_config"
    condor_config.write_text(f"LOCAL_DIR = {tmp_path}\nSTART = True\n"
                             f"LOCAL_CONFIG_DIR = {config_dir}\n")
    loaded = subprocess.run([script("python"), "-c", READ_KNOBS], capture_output=True,
                            text=True, env={**os.environ, "CONDOR_CONFIG": str(condor_config)})
    assert loaded.returncode == 0, loaded.stderr
    knobs = json.loads(loaded.stdout)
    me = pwd.getpwuid(os.getuid()).pw_name
    assert knobs["COLLECTOR_HOST"] == "cm.pool.example.org:9618"
    assert knobs["AnnexName"] == f'"{annex_instance.annex}"' and knobs["IsAnnex"] == "True"
    assert knobs["START"] == f'(True) && stringListMember(Owner, "{me}")'
    assert knobs["STARTD_NOCLAIM_SHUTDOWN"] == "900"
    assert knobs["MASTER.DAEMON_SHUTDOWN"] == "STARTD_StartTime =?= 0"
    assert knobs["SEC_DEFAULT_AUTHENTICATION"] == "REQUIRED"
    assert knobs["SEC_PASSWORD_FILE"] == f"{config_dir}/.annex-{annex_instance.annex}/pool_password"
    assert knobs["EC2InstanceID"].startswith('"i-')


def test_transient_metadata_iam_and_s3_failures_are_retried(aws, annex_instance, tmp_path):
    annex_instance.fail_next = 3
    proxy = FaultProxy(aws.url).start()
    proxy.arm("s3:GET", "throttle", 4)
    proxy.arm("iam:GetInstanceProfile", "error", 4)
    try:
        result = run_bootstrap(proxy.url, annex_instance, tmp_path / "config.d")
    finally:
        proxy.stop()
    assert result.returncode == 0, result.stderr
    assert "retrying" in result.stderr
    assert proxy.seen["s3:GET"] >= 5 and proxy.seen["iam:GetInstanceProfile"] >= 5
    assert (tmp_path / "config.d" / "00annex.config").exists()


def test_a_gone_config_object_powers_the_instance_off(aws, annex_instance, tmp_path):
    aws.s3.delete_object(Bucket="htcondor-annex-config", Key=f"config-{annex_instance.annex}.tar.gz")
    marker = tmp_path / "powered-off"
    result = run_bootstrap(aws.url, annex_instance, tmp_path / "config.d",
                           "-poweroff-command", f"touch {marker}")
    assert result.returncode == 1
    assert "cannot install this annex's configuration" in result.stderr
    assert "NoSuchKey" in result.stderr and marker.exists()


def test_no_shutdown_only_logs(aws, annex_instance, tmp_path):
    annex_instance.fail_next = 10**6  # the metadata service never answers
    marker = tmp_path / "powered-off"
    result = run_bootstrap(aws.url, annex_instance, tmp_path / "config.d", "-max-wait", "1",
                           "-no-shutdown", "-poweroff-command", f"touch {marker}")
    assert result.returncode == 1
    assert "still failing after" in result.stderr and not marker.exists()


LEASE_KNOBS = """
import json, htcondor2
print(json.dumps({n: str(htcondor2.param.get(n))
                  for n in ["AnnexLeaseExpiration", "STARTD.DAEMON_SHUTDOWN"]}))
"""


def instance_lease(config_dir) -> dict[str, str]:
    """What HTCondor on the instance reads of the lease from ``config_dir``."""
    condor_config = config_dir.parent / "condor_config"
    condor_config.write_text(f"LOCAL_DIR = {config_dir.parent}\nLOCAL_CONFIG_DIR = {config_dir}\n")
    loaded = subprocess.run([script("python"), "-c", LEASE_KNOBS], capture_output=True,
                            text=True, env={**os.environ, "CONDOR_CONFIG": str(condor_config)})
    assert loaded.returncode == 0, loaded.stderr
    return json.loads(loaded.stdout)


def test_a_lease_change_reaches_running_instances(aws, annex_instance, run_annex, with_keys,
                                                  tmp_path):
    name, config_dir = annex_instance.annex, tmp_path / "config.d"
    first_end = aws.target_input(name)["LeaseExpiration"]
    assert run_bootstrap(aws.url, annex_instance, config_dir).returncode == 0
    assert instance_lease(config_dir) == {
        "AnnexLeaseExpiration": str(first_end),
        "STARTD.DAEMON_SHUTDOWN": f"time() > {first_end + 120}"}

    extended = run_annex("-annex-name", name, "-lease-duration", "7200", *with_keys)
    assert extended.returncode == 0, extended.stderr
    new_end = aws.target_input(name)["LeaseExpiration"]
    assert new_end > first_end + 3000
    # Nothing the instances read still carries the old end: not the object, its metadata
    # or body, nor the instances' tags.
    stored = aws.s3.get_object(Bucket="htcondor-annex-config", Key=f"config-{name}.tar.gz")
    assert stored["Metadata"] == {"annex-lease-expiration": str(new_end)}
    with tarfile.open(fileobj=io.BytesIO(stored["Body"].read()), mode="r:gz") as archive:
        for member in archive.getmembers():
            if member.isfile():
                assert str(first_end).encode() not in archive.extractfile(member).read()
    instance = aws.ec2.describe_instances(InstanceIds=[annex_instance.instance_id])
    tags = instance["Reservations"][0]["Instances"][0]["Tags"]
    assert all(str(first_end) not in tag["Value"] for tag in tags)

    marker = tmp_path / "reconfigured"
    refreshed = run_bootstrap(aws.url, annex_instance, config_dir, "-refresh-lease",
                              "-reconfig-command", f"touch {marker}")
    assert refreshed.returncode == 0, refreshed.stderr
    assert marker.exists() and f"the lease now ends at {new_end}" in refreshed.stderr
    assert instance_lease(config_dir) == {
        "AnnexLeaseExpiration": str(new_end),
        "STARTD.DAEMON_SHUTDOWN": f"time() > {new_end + 120}"}

    marker.unlink()  # unchanged: no reconfig
    again = run_bootstrap(aws.url, annex_instance, config_dir, "-refresh-lease",
                          "-reconfig-command", f"touch {marker}")
    assert again.returncode == 0 and not marker.exists(), again.stderr

    off = run_annex("-annex-name", name, "-off", *with_keys)  # the object goes: leave now
    assert off.returncode == 0, off.stderr
    ended = run_bootstrap(aws.url, annex_instance, config_dir, "-refresh-lease",
                          "-reconfig-command", f"touch {marker}")
    assert ended.returncode == 0 and marker.exists(), ended.stderr
    shutdown_at = int(instance_lease(config_dir)["STARTD.DAEMON_SHUTDOWN"].split(">")[1])
    assert shutdown_at <= time.time()


# -- hostile tarballs ------------------------------------------------------------------

def tarball(*members: tuple[tarfile.TarInfo, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for info, payload in members:
            if info.isfile():
                info.size = len(payload)
                archive.addfile(info, io.BytesIO(payload))
            else:
                archive.addfile(info)
    return buffer.getvalue()


def entry(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode = kind, link, 0o640
    return info


HOSTILE = {
    "traversal": tarball((entry("../evil.config"), b"X = 1\n")),
    "absolute": tarball((entry("/tmp/annex-evil.config"), b"X = 1\n")),
    "symlink": tarball((entry("ok.config"), b"A = 1\n"),
                       (entry("link.config", tarfile.SYMTYPE, "/etc/passwd"), b"")),
    "hardlink": tarball((entry("hard.config", tarfile.LNKTYPE, "/etc/passwd"), b"")),
    "device": tarball((entry("dev", tarfile.CHRTYPE), b"")),
    "fifo": tarball((entry("pipe", tarfile.FIFOTYPE), b"")),
    "huge": tarball((entry("huge.config"), b"#" * (extract.MAX_MEMBER_BYTES + 1))),
    "many": tarball(*[(entry(f"f{n}.config"), b"") for n in range(extract.MAX_MEMBERS + 1)]),
}


def snapshot(root) -> dict[str, bytes]:
    found = {}
    for directory, _, files in os.walk(root):
        for name in files:
            path = os.path.join(directory, name)
            with open(path, "rb") as handle:
                found[os.path.relpath(path, root)] = handle.read()
    return found


@pytest.fixture(params=["tarfile-filter", "by-hand"])
def extraction(request, monkeypatch):
    """Both ways of extracting: tarfile's data filter (Python 3.11.4+), and the checks done
    by hand where the interpreter lacks it (3.11.0-3.11.3, e.g. Debian 12's 3.11.2)."""
    if request.param == "by-hand":
        monkeypatch.setattr(extract, "HAS_DATA_FILTER", False)
    elif not extract.HAS_DATA_FILTER:
        pytest.skip("this Python has no tarfile data filter; the by-hand case covers it")
    return request.param


@pytest.mark.parametrize("kind", list(HOSTILE))
def test_hostile_tarballs_are_rejected_and_nothing_is_written(kind, tmp_path, extraction):
    target = tmp_path / "config.d"
    target.mkdir()
    (target / "10existing.config").write_text("KEEP = me\n")
    before = snapshot(tmp_path)
    with pytest.raises(extract.UnsafeArchive):
        extract.install(HOSTILE[kind], str(target), "50annex.config")
    assert snapshot(tmp_path) == before
    assert not os.path.exists("/tmp/annex-evil.config")
    assert sorted(os.listdir(target)) == ["10existing.config"]


def test_a_good_tarball_replaces_the_previous_install(tmp_path, extraction):
    target = tmp_path / "config.d"
    secret_dir = entry(".annex-x", tarfile.DIRTYPE)
    secret_dir.mode = 0o700
    first = tarball((entry("00annex.config"), b"V = 1\n"), (secret_dir, b""),
                    (entry(".annex-x/pool_password"), b"one"))
    second = tarball((entry("00annex.config"), b"V = 2\n"), (secret_dir, b""),
                     (entry(".annex-x/pool_password"), b"two"))
    assert extract.install(first, str(target), "x") == [".annex-x", "00annex.config"]
    extract.install(second, str(target), "x")
    assert (target / "00annex.config").read_text() == "V = 2\n"
    assert (target / ".annex-x" / "pool_password").read_bytes() == b"two"
    assert sorted(os.listdir(target)) == [".annex-x", "00annex.config"]


def test_dangerous_mode_bits_never_reach_the_disk(tmp_path, extraction):
    wide = entry("wide.config")
    wide.mode = 0o6777  # setuid, setgid, writable by all
    extract.install(tarball((wide, b"W = 1\n")), str(tmp_path / "config.d"), "x")
    mode = stat.S_IMODE((tmp_path / "config.d" / "wide.config").stat().st_mode)
    assert mode & 0o7022 == 0


SYSTEM_PYTHON = "/usr/bin/python3"
ON_SYSTEM_PYTHON = """
import io, os, sys, tarfile, tempfile
sys.path.insert(0, sys.argv[1])
from annex_ec2 import extract
evil = io.BytesIO()
with tarfile.open(fileobj=evil, mode="w:gz") as archive:
    info = tarfile.TarInfo("../evil.config"); info.size = 6
    archive.addfile(info, io.BytesIO(b"X = 1\\n"))
good = io.BytesIO()
with tarfile.open(fileobj=good, mode="w:gz") as archive:
    info = tarfile.TarInfo("00annex.config"); info.size = 6; info.mode = 0o4777
    archive.addfile(info, io.BytesIO(b"V = 1\\n"))
target = tempfile.mkdtemp()
try:
    extract.install(evil.getvalue(), target, "x")
    sys.exit("hostile tarball accepted")
except extract.UnsafeArchive:
    pass
extract.install(good.getvalue(), target, "x")
print(sys.version.split()[0], extract.HAS_DATA_FILTER,
      oct(os.stat(os.path.join(target, "00annex.config")).st_mode & 0o7777))
"""


@pytest.mark.skipif(not os.path.exists(SYSTEM_PYTHON), reason="no system Python here")
def test_the_installer_runs_on_the_system_python(tmp_path):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ran = subprocess.run([SYSTEM_PYTHON, "-I", "-c", ON_SYSTEM_PYTHON, root],
                         capture_output=True, text=True, timeout=60)
    assert ran.returncode == 0, ran.stderr
    version, has_filter, mode = ran.stdout.split()
    assert int(mode, 8) & 0o7022 == 0, ran.stdout


def test_a_plain_object_is_installed_as_one_config_file(tmp_path):
    target = tmp_path / "config.d"
    assert extract.install(b"COLLECTOR_HOST = cm\n", str(target), "50annex-x.config") == \
        ["50annex-x.config"]
    assert stat.S_IMODE((target / "50annex-x.config").stat().st_mode) == 0o640
