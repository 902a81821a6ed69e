"""condor_annex_ec2: an instance of a real annex finds, fetches and installs its configuration."""
from __future__ import annotations

import io
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

from conftest import SPOT_CONFIG

READ_KNOBS = """
import json, htcondor2
names = ["COLLECTOR_HOST", "AnnexName", "IsAnnex", "START", "STARTD_NOCLAIM_SHUTDOWN",
         "SEC_DEFAULT_AUTHENTICATION", "SEC_DEFAULT_AUTHENTICATION_METHODS",
         "SEC_PASSWORD_FILE", "EC2InstanceID", "MASTER.DAEMON_SHUTDOWN"]
print(json.dumps({n: str(htcondor2.param.get(n)) for n in names}))
"""


@pytest.fixture
def annex_instance(aws, run_annex, with_keys):
    """An annex made by the real daemon, the setup's instance profile, one of its instances."""
    created = run_annex("-annex-name", "booting", "-lease-duration", "3600", "-count", "2",
                        "-lease-function-arn", aws.lease_arn, *with_keys, SPOT_CONFIG)
    assert created.returncode == 0, created.stderr
    with open(os.path.join(os.path.dirname(__file__), "..", "cfn", "instance-profile.yaml"),
              encoding="utf-8") as handle:
        aws.cloudformation.create_stack(
            StackName="HTCondorAnnex-InstanceProfile", TemplateBody=handle.read(),
            Parameters=[{"ParameterKey": "S3BucketName",
                         "ParameterValue": "htcondor-annex-config"}],
            Capabilities=["CAPABILITY_IAM"])
    for _ in range(100):
        stack = aws.cloudformation.describe_stacks(
            StackName="HTCondorAnnex-InstanceProfile")["Stacks"][0]
        if stack["StackStatus"] == "CREATE_COMPLETE":
            break
        time.sleep(0.1)
    profile = stack["Outputs"][0]["OutputValue"]
    instance = aws.ec2.describe_instances(Filters=[
        {"Name": f"tag:{ANNEX_TAG}", "Values": ["booting"]}])["Reservations"][0]["Instances"][0]
    imds = FakeImds(instance["InstanceId"], "us-east-1", profile)
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
    secrets = config_dir / ".annex-booting"
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
    assert knobs["AnnexName"] == '"booting"' and knobs["IsAnnex"] == "True"
    assert knobs["START"] == f'(True) && stringListMember(Owner, "{me}")'
    assert knobs["STARTD_NOCLAIM_SHUTDOWN"] == "900"
    assert knobs["MASTER.DAEMON_SHUTDOWN"] == "STARTD_StartTime =?= 0"
    assert knobs["SEC_DEFAULT_AUTHENTICATION"] == "REQUIRED"
    assert knobs["SEC_PASSWORD_FILE"] == f"{config_dir}/.annex-booting/pool_password"
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
    aws.s3.delete_object(Bucket="htcondor-annex-config", Key="config-booting.tar.gz")
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


@pytest.mark.parametrize("kind", list(HOSTILE))
def test_hostile_tarballs_are_rejected_and_nothing_is_written(kind, tmp_path):
    target = tmp_path / "config.d"
    target.mkdir()
    (target / "10existing.config").write_text("KEEP = me\n")
    before = snapshot(tmp_path)
    with pytest.raises(extract.UnsafeArchive):
        extract.install(HOSTILE[kind], str(target), "50annex.config")
    assert snapshot(tmp_path) == before
    assert not os.path.exists("/tmp/annex-evil.config")
    assert sorted(os.listdir(target)) == ["10existing.config"]


def test_a_good_tarball_replaces_the_previous_install(tmp_path):
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


def test_a_plain_object_is_installed_as_one_config_file(tmp_path):
    target = tmp_path / "config.d"
    assert extract.install(b"COLLECTOR_HOST = cm\n", str(target), "50annex-x.config") == \
        ["50annex-x.config"]
    assert stat.S_IMODE((target / "50annex-x.config").stat().st_mode) == 0o640
