"""condor_annex_ec2: an instance of a real annex finds, fetches and installs its configuration.

condor_annex_ec2 runs as tests/instance_side.py says: the suite's console script, or (with
ANNEX_EC2_COMMAND, as scripts/dev.sh does beside the suite) the single-file bundle on the
oldest Python 3.9+ here with boto3 alone.
"""
from __future__ import annotations

import ast
import io
import json
import os
import pwd
import stat
import subprocess
import sys
import tarfile
import time
import zipfile

import pytest

from annex_ec2 import extract, gone, install
from annexd.instance_config import routing
from localaws.faultproxy import FaultProxy
from localaws import fixtures
from localaws.fakeimds import FakeImds
from localaws.wait import wait_for

import instance_side
from conftest import SPOT_CONFIG
from instance_side import (annex_ec2_command, annex_instance, condor_params, instance_env,
                           run_annex_ec2,  # noqa: F401 (a fixture)
                           run_bootstrap, stub_command)

ROOT = instance_side.ROOT
ANNEX_KNOBS = ["COLLECTOR_HOST", "AnnexName", "IsAnnex", "START", "STARTD_NOCLAIM_SHUTDOWN",
               "SEC_DEFAULT_AUTHENTICATION", "SEC_DEFAULT_AUTHENTICATION_METHODS",
               "SEC_TOKEN_DIRECTORY", "SEC_DAEMON_SESSION_DURATION", "EC2InstanceID",
               "MASTER.DAEMON_SHUTDOWN"]


def test_instance_joins_with_the_annexs_configuration(aws, annex_instance, tmp_path):
    config_dir = tmp_path / "config.d"
    result = run_bootstrap(aws.url, annex_instance, config_dir)
    assert result.returncode == 0, result.stderr
    assert "not restricting the metadata service: it is http://127.0.0.1" in result.stderr
    secrets = config_dir / f".annex-{annex_instance.annex}"
    assert stat.S_IMODE(secrets.stat().st_mode) == 0o700
    assert stat.S_IMODE((secrets / "tokens.d" / "annex").stat().st_mode) == 0o600
    assert not any(p.name.startswith(".annex-incoming") for p in config_dir.iterdir())

    knobs = condor_params(config_dir, ANNEX_KNOBS, before="START = True")
    me = pwd.getpwuid(os.getuid()).pw_name
    assert knobs["COLLECTOR_HOST"] == "cm.pool.example.org:9618"
    assert knobs["AnnexName"] == f'"{annex_instance.annex}"' and knobs["IsAnnex"] == "True"
    assert knobs["START"] == f"(True) && {routing.start_expression([me])}"
    assert knobs["STARTD_NOCLAIM_SHUTDOWN"] == "900"
    assert knobs["MASTER.DAEMON_SHUTDOWN"] == "STARTD_StartTime =?= 0"
    assert knobs["SEC_DEFAULT_AUTHENTICATION"] == "REQUIRED"
    assert knobs["SEC_TOKEN_DIRECTORY"] == f"{config_dir}/.annex-{annex_instance.annex}/tokens.d"
    assert knobs["SEC_DAEMON_SESSION_DURATION"] == "1800"
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


def test_a_missing_copy_is_waited_for_then_the_instance_powers_off(aws, annex_instance,
                                                                    tmp_path):
    """Issue 23 requirement 5: at boot the instance's own copy may not be there yet (the
    daemon writes it once it sees the instance), or never again (the lease ended): it is
    waited for within the boot's budget, then the instance powers off."""
    aws.end_config(annex_instance.annex)
    marker = tmp_path / "powered-off"
    result = run_bootstrap(aws.url, annex_instance, tmp_path / "config.d", "-max-wait", "2",
                           "-poweroff-command", f"touch {marker}")
    assert result.returncode == 1
    assert "cannot install this annex's configuration" in result.stderr
    assert "condor_annexd has not copied the annex's configuration for this instance" in \
        result.stderr
    assert "retrying" in result.stderr and "still failing after" in result.stderr
    assert marker.exists()


def test_the_copy_written_while_the_instance_waits_lets_it_boot(aws, annex_instance, tmp_path,
                                                                run_annex, with_keys):
    """The copy comes while the boot waits (here: a lease change rewrites the copies)."""
    key = aws.copy_key(annex_instance.annex, annex_instance.instance_id)
    aws.s3.delete_object(Bucket="htcondor-annex-config", Key=key)
    env = instance_env(annex_instance.url, AWS_ENDPOINT_URL=aws.url,
                       **annex_instance.credentials)
    config_dir, log = tmp_path / "config.d", tmp_path / "boot.log"
    with open(log, "w", encoding="utf-8") as output:
        booting = subprocess.Popen(
            [*annex_ec2_command(), "-config-dir", str(config_dir), "-retry-base", "0.2",
             "-max-wait", "120", "-poweroff-command", f"touch {tmp_path}/off"],
            env=env, stdout=output, stderr=output, text=True)
    try:
        wait_for(lambda: "has not copied" in log.read_text(), "the boot to wait for its copy")
        extended = run_annex("-annex-name", annex_instance.annex, "-lease-duration", "7200",
                             *with_keys)
        assert extended.returncode == 0, extended.stderr
        booting.wait(timeout=120)
    finally:
        if booting.poll() is None:
            booting.kill()
    assert booting.returncode == 0, log.read_text()
    assert (config_dir / "00annex.config").exists()


def test_no_shutdown_only_logs(aws, annex_instance, tmp_path):
    annex_instance.fail_next = 10**6  # the metadata service never answers
    marker = tmp_path / "powered-off"
    result = run_bootstrap(aws.url, annex_instance, tmp_path / "config.d", "-max-wait", "1",
                           "-no-shutdown", "-poweroff-command", f"touch {marker}")
    assert result.returncode == 1
    assert "still failing after" in result.stderr and not marker.exists()



# -- gone or denied: S3 answers a missing object with 403 to a caller that may not list ------

def as_on_aws(aws, kind: str, *operations: str) -> FaultProxy:
    """A proxy in front of the emulator that answers S3 ``operations`` as AWS would: with
    ``hide-missing``, a missing object is a 403 AccessDenied (moto always says 404)."""
    proxy = FaultProxy(aws.url).start()
    for operation in operations:
        proxy.arm(operation, kind, -1)
    return proxy


def test_a_config_deleted_on_aws_makes_refresh_tell_the_startd_to_leave(aws, annex_instance,
                                                                        tmp_path):
    """Finding 3: on AWS the deleted object answers 403; the role's narrow s3:ListBucket
    shows it is gone, and the startd is told to leave."""
    config_dir = tmp_path / "config.d"
    assert run_bootstrap(aws.url, annex_instance, config_dir).returncode == 0
    aws.end_config(annex_instance.annex)
    proxy = as_on_aws(aws, "hide-missing", "s3:HEAD")
    marker = tmp_path / "reconfigured"
    try:
        refreshed = run_bootstrap(proxy.url, annex_instance, config_dir, "-refresh-lease",
                                  "-reconfig-command", f"touch {marker}")
    finally:
        proxy.stop()
    assert proxy.seen["s3:HEAD"] >= 1  # the 403 was really seen
    assert refreshed.returncode == 0, refreshed.stderr
    assert "its config object is gone: the lease has ended" in refreshed.stderr
    assert marker.exists()
    ended = int(condor_params(config_dir, ["AnnexLeaseExpiration"])["AnnexLeaseExpiration"])
    assert ended <= time.time()


def test_a_copy_missing_on_aws_is_waited_for_not_denied(aws, annex_instance, tmp_path):
    """Finding 3: on AWS the missing copy answers 403; the role's narrow s3:ListBucket (its
    own copy's key) shows it missing -- not yet written, to wait for -- rather than denied."""
    aws.end_config(annex_instance.annex)
    proxy = as_on_aws(aws, "hide-missing", "s3:GET")
    try:
        result = run_bootstrap(proxy.url, annex_instance, tmp_path / "config.d",
                               "-max-wait", "2")
    finally:
        proxy.stop()
    assert result.returncode == 1
    assert "does not exist (yet): condor_annexd has not copied" in result.stderr
    assert "AccessDenied" not in result.stderr and "Forbidden" not in result.stderr
    assert (tmp_path / "config.d.powered-off").exists()


def test_a_copy_written_between_the_read_and_the_listing_is_read_again(aws):
    """The boot's read misses the copy, condor_annexd writes it, then the listing that tells
    "gone" from "denied" shows it: the object is read again.  It was the read's NoSuchKey
    that was raised -- a permanent error: the instance powered off (a fresh clone's
    instance-side run, test_the_copy_written_while_the_instance_waits_lets_it_boot)."""
    bucket, key, reads = "htcondor-annex-config", "config-us-east-1-race_1.tar.gz", []

    def read_while_the_copy_is_written() -> bytes:
        reads.append(key)
        try:
            return aws.s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        finally:
            if len(reads) == 1:  # condor_annexd's copy lands just after the first read
                aws.s3.put_object(Bucket=bucket, Key=key, Body=b"the copy")

    aws.s3.create_bucket(Bucket=bucket)
    assert gone.read(aws.s3, bucket, key, read_while_the_copy_is_written) == b"the copy"
    assert len(reads) == 2
    # Still missing at the listing: gone, without a second read.
    with pytest.raises(gone.Gone):
        gone.read(aws.s3, bucket, "config-us-east-1-none_1.tar.gz",
                  lambda: aws.s3.get_object(Bucket=bucket, Key="config-us-east-1-none_1.tar.gz"))


def test_a_real_denial_is_not_taken_for_gone(aws, annex_instance, tmp_path):
    """A 403 for an object that exists (a policy mistake, say) must not end every annex
    instance: refresh fails and leaves the lease alone; the boot keeps retrying."""
    config_dir = tmp_path / "config.d"
    assert run_bootstrap(aws.url, annex_instance, config_dir).returncode == 0
    before = condor_params(config_dir, ["AnnexLeaseExpiration"])
    proxy = as_on_aws(aws, "deny", "s3:HEAD")
    marker = tmp_path / "reconfigured"
    try:
        refreshed = run_bootstrap(proxy.url, annex_instance, config_dir, "-refresh-lease",
                                  "-reconfig-command", f"touch {marker}")
        proxy.arm("s3:GET", "deny", -1)  # the object and the listing
        booted = run_bootstrap(proxy.url, annex_instance, tmp_path / "again", "-max-wait", "1",
                               "-no-shutdown")
    finally:
        proxy.stop()
    assert refreshed.returncode == 1 and "Forbidden" in refreshed.stderr
    assert not marker.exists()
    assert condor_params(config_dir, ["AnnexLeaseExpiration"]) == before
    assert booted.returncode == 1 and "still failing after" in booted.stderr


# -- instances launched from launch templates: the annex tag is on the fleet ---------------

ANNEX_TAG, CLIENT_TOKEN_TAG = "htcondor:AnnexName", "htcondor:AnnexClientToken"
OWNER_TAG = "htcondor:AnnexOwner"


def launch_template(aws) -> tuple[str, str]:
    """A launch template of our example's image, and a subnet: (template ID, subnet ID)."""
    with open(SPOT_CONFIG, encoding="utf-8") as handle:
        image = json.load(handle)["LaunchSpecifications"][0]["ImageId"]
    template = aws.ec2.create_launch_template(
        LaunchTemplateName=f"annex-template-{time.monotonic_ns()}", LaunchTemplateData={
            "ImageId": image, "InstanceType": "m5.large", "TagSpecifications": [
                {"ResourceType": "instance", "Tags": [{"Key": "project", "Value": "t"}]}]})
    return (template["LaunchTemplate"]["LaunchTemplateId"],
            aws.ec2.describe_subnets()["Subnets"][0]["SubnetId"])


def template_configs(aws) -> list[dict]:
    template, subnet = launch_template(aws)
    return [{"LaunchTemplateSpecification": {"LaunchTemplateId": template, "Version": "$Latest"},
             "Overrides": [{"InstanceType": "m5.large", "SubnetId": subnet}]}]


def spot_fleet_instance(aws, fleet_tags: list[dict]) -> str:
    """An instance of a Spot Fleet launched from a launch template; the fleet request is
    tagged with ``fleet_tags``."""
    fleet = aws.ec2.request_spot_fleet(SpotFleetRequestConfig={
        "IamFleetRole": "arn:aws:iam::123456789012:role/aws-ec2-spot-fleet-tagging-role",
        "AllocationStrategy": "lowestPrice", "TargetCapacity": 1,
        "LaunchTemplateConfigs": template_configs(aws),
        "TagSpecifications": [{"ResourceType": "spot-fleet-request", "Tags": fleet_tags}]})
    fleet_id = fleet["SpotFleetRequestId"]
    [instance] = aws.ec2.describe_spot_fleet_instances(SpotFleetRequestId=fleet_id)[
        "ActiveInstances"]
    # Stands in for AWS, which tags every instance of a Spot Fleet with its request's ID
    # (moto does not, and accepts aws:-prefixed keys from us).
    aws.ec2.create_tags(Resources=[instance["InstanceId"]],
                        Tags=[{"Key": "aws:ec2spot:fleet-request-id", "Value": fleet_id}])
    return instance["InstanceId"]


def ec2_fleet_instance(aws, fleet_tags: list[dict]) -> str:
    """An instance of an EC2 Fleet (CreateFleet, maintain); the fleet is tagged ``fleet_tags``."""
    fleet_id = aws.ec2.create_fleet(
        Type="maintain", LaunchTemplateConfigs=template_configs(aws),
        TargetCapacitySpecification={"TotalTargetCapacity": 1,
                                     "DefaultTargetCapacityType": "spot"},
        TagSpecifications=[{"ResourceType": "fleet", "Tags": fleet_tags}])["FleetId"]
    [instance] = aws.ec2.describe_fleet_instances(FleetId=fleet_id)["ActiveInstances"]
    # Stands in for AWS, which tags every instance of an EC2 Fleet with the fleet's ID.
    aws.ec2.create_tags(Resources=[instance["InstanceId"]],
                        Tags=[{"Key": "aws:ec2:fleet-id", "Value": fleet_id}])
    return instance["InstanceId"]


FLEETS = {"spot-fleet": spot_fleet_instance, "ec2-fleet": ec2_fleet_instance}


def boot_instance(aws, annex_instance, instance_id: str, config_dir,
                  *extra: str, copy: bool = False) -> subprocess.CompletedProcess:
    """Boot ``instance_id`` (with the annex instance profile, and its role's credentials)
    against the emulator; ``copy``: after the annex's object is copied for it, standing in
    for the daemon, which copies only for its annexes' own fleets (these are a test's)."""
    if not aws.ec2.describe_iam_instance_profile_associations(Filters=[
            {"Name": "instance-id", "Values": [instance_id]}])["IamInstanceProfileAssociations"]:
        aws.ec2.associate_iam_instance_profile(  # AWS: the fleet's; moto leaves it out
            IamInstanceProfile={"Arn": annex_instance.profile}, InstanceId=instance_id)
    if copy:
        aws.copy_for(annex_instance.annex, instance_id)
    imds = FakeImds(instance_id, "us-east-1", annex_instance.profile)
    imds.credentials = fixtures.instance_role_credentials(aws.url, "us-east-1", instance_id)
    try:
        return run_bootstrap(aws.url, imds, config_dir, *extra)
    finally:
        imds.close()


@pytest.mark.parametrize("fleet", FLEETS)
def test_an_instance_launched_from_a_launch_template_finds_its_annex_through_its_fleet(
        fleet, aws, annex_instance, tmp_path):
    annex = annex_instance.annex
    instance_id = FLEETS[fleet](aws, [{"Key": ANNEX_TAG, "Value": annex},
                                      {"Key": CLIENT_TOKEN_TAG,
                                       "Value": annex_instance.client_token},
                                      {"Key": OWNER_TAG, "Value": annex_instance.owner}])
    tags = aws.ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0][
        "Instances"][0].get("Tags", [])
    assert ANNEX_TAG not in {tag["Key"] for tag in tags}  # as on AWS: not on the instance

    config_dir = tmp_path / "config.d"
    result = boot_instance(aws, annex_instance, instance_id, config_dir, copy=True)
    assert result.returncode == 0, result.stderr
    assert condor_params(config_dir, ["AnnexName", "EC2InstanceID"]) == {
        "AnnexName": f'"{annex}"', "EC2InstanceID": f'"{instance_id}"'}


def test_an_instance_of_no_annex_waits_for_a_tag_but_a_foreign_fleet_ends_it(
        aws, annex_instance, tmp_path):
    # A fleet not made by condor_annex: waiting cannot help, power off at once.
    foreign = ec2_fleet_instance(aws, [{"Key": "project", "Value": "someone-else"}])
    started = time.monotonic()
    result = boot_instance(aws, annex_instance, foreign, tmp_path / "foreign")
    assert result.returncode == 1
    assert "has no htcondor:AnnexName tag: it is not an annex's fleet" in result.stderr
    assert "retrying" not in result.stderr and time.monotonic() - started < 30
    assert (tmp_path / "foreign.powered-off").exists()

    # No tag at all (yet): AWS may not have applied it; retried until the budget is spent.
    # (The budget must outlast one look-up on a loaded machine -- with 1 s the first attempt
    # alone could spend it, and no retry was seen: a test-timing bug, not the product's.)
    aws.ec2.delete_tags(Resources=[foreign], Tags=[{"Key": "aws:ec2:fleet-id"}])
    result = boot_instance(aws, annex_instance, foreign, tmp_path / "untagged",
                           "-max-wait", "4", "-no-shutdown")
    assert result.returncode == 1
    assert "has no htcondor:AnnexName tag, nor a fleet's" in result.stderr
    assert "retrying" in result.stderr and "still failing after" in result.stderr
    assert not (tmp_path / "untagged.powered-off").exists()


def instance_lease(config_dir) -> dict[str, str]:
    """What HTCondor on the instance reads of the lease from ``config_dir``."""
    return condor_params(config_dir, ["AnnexLeaseExpiration", "STARTD.DAEMON_SHUTDOWN"])


def with_member(payload: bytes, name: str, content: bytes) -> bytes:
    """A gzipped tarball with one file's content replaced, as a renewal replaces the token."""
    out = io.BytesIO()
    with tarfile.open(fileobj=io.BytesIO(payload), mode="r:gz") as old, \
            tarfile.open(fileobj=out, mode="w:gz") as new:
        for member in old.getmembers():
            if member.name == name:
                member.size = len(content)
                new.addfile(member, io.BytesIO(content))
            else:
                new.addfile(member, old.extractfile(member) if member.isfile() else None)
    return out.getvalue()


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
    stored = aws.s3.get_object(Bucket="htcondor-annex-config", Key=aws.config_key(name))
    assert stored["Metadata"]["annex-lease-expiration"] == str(new_end)
    copied = aws.s3.head_object(Bucket="htcondor-annex-config",
                                Key=aws.copy_key(name, annex_instance.instance_id))
    assert copied["Metadata"] == stored["Metadata"]  # the daemon rewrote the copy
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
    # The annex's token was renewed with the lease: the instance holds the new one.
    with tarfile.open(fileobj=io.BytesIO(aws.s3.get_object(
            Bucket="htcondor-annex-config", Key=aws.config_key(name))["Body"].read())) as tar:
        renewed = tar.extractfile(f".annex-{name}/tokens.d/annex").read()
    assert (config_dir / f".annex-{name}" / "tokens.d" / "annex").read_bytes() == renewed

    marker.unlink()  # unchanged: no reconfig
    again = run_bootstrap(aws.url, annex_instance, config_dir, "-refresh-lease",
                          "-reconfig-command", f"touch {marker}")
    assert again.returncode == 0 and not marker.exists(), again.stderr

    # The daemon's token renewal (issue 23): the same lease end, a new token and a new
    # x-amz-meta-annex-token-minted, in one PutObject -- installed, then HTCondor reconfigured.
    key = aws.config_key(name)
    body = aws.s3.get_object(Bucket="htcondor-annex-config", Key=key)["Body"].read()
    aws.s3.put_object(Bucket="htcondor-annex-config", Key=key,
                      Body=with_member(body, f".annex-{name}/tokens.d/annex", b"renewed-token"),
                      Metadata={"annex-lease-expiration": str(new_end),
                                "annex-token-minted": "1234567890"})
    copy = aws.copy_key(name, annex_instance.instance_id)  # and its copy, as the daemon does
    aws.s3.copy_object(Bucket="htcondor-annex-config", Key=copy,
                       CopySource={"Bucket": "htcondor-annex-config", "Key": key})
    renewal = run_bootstrap(aws.url, annex_instance, config_dir, "-refresh-lease",
                            "-reconfig-command", f"touch {marker}")
    assert renewal.returncode == 0 and marker.exists(), renewal.stderr
    assert "installed its renewed token" in renewal.stderr
    assert (config_dir / f".annex-{name}" / "tokens.d" / "annex").read_bytes() == \
        b"renewed-token"
    assert instance_lease(config_dir)["AnnexLeaseExpiration"] == str(new_end)
    marker.unlink()
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


# -- the single-file bundle, its install on an image, and the oldest Python ----------------

def test_image_dir_is_exactly_what_the_package_ships():
    """image/ (what the README points at) and annex_ec2/image/ (what -install writes out) are
    one set of files: the same names, the same bytes."""
    packaged = os.path.join(ROOT, "annex_ec2", "image")
    assert sorted(os.listdir(os.path.join(ROOT, "image"))) == sorted(os.listdir(packaged)) \
        == sorted(install.IMAGE_FILES)
    for name in install.IMAGE_FILES:
        with open(os.path.join(ROOT, "image", name), "rb") as shown, \
                open(os.path.join(packaged, name), "rb") as shipped:
            assert shown.read() == shipped.read(), name


def test_install_puts_the_bundle_and_its_units_on_an_image(tmp_path):
    root, stubs, calls = tmp_path / "image", tmp_path / "bin", tmp_path / "calls"
    stub_command(stubs, "systemctl", calls)
    env = {**os.environ, "PATH": f"{stubs}{os.pathsep}{os.environ['PATH']}"}
    installed = run_annex_ec2("-install", "-prefix", str(root), "-enable", env=env)
    assert installed.returncode == 0, installed.stderr

    command = root / "usr" / "local" / "bin" / "condor_annex_ec2"
    assert stat.S_IMODE(command.stat().st_mode) == 0o755
    assert command.read_bytes().startswith(b"#!/usr/bin/env python3\n")
    with zipfile.ZipFile(command) as bundle:  # the package alone, and its __main__
        names = {name for name in bundle.namelist() if not name.endswith("/")}
    modules = [name for name in os.listdir(os.path.join(ROOT, "annex_ec2"))
               if name.endswith(".py")]
    assert names == {"__main__.py", *(f"annex_ec2/{name}" for name in modules),
                     *(f"annex_ec2/image/{name}" for name in install.IMAGE_FILES)}
    if os.environ.get(instance_side.COMMAND_VARIABLE):  # it copied itself
        assert command.read_bytes() == open(instance_side.annex_ec2_command()[-1], "rb").read()
    for name, where in install.IMAGE_FILES.items():
        path = root / where / name
        assert path.read_bytes() == open(os.path.join(ROOT, "image", name), "rb").read()
        assert stat.S_IMODE(path.stat().st_mode) == 0o644
    units = "condor-annex-ec2.service condor-annex-lease.timer condor-annex-interruption.service"
    assert calls.read_text() == f"systemctl --root {root} enable {units}\n"

    ran = subprocess.run([instance_side.command_python(), str(command), "-help"],
                         capture_output=True, text=True, timeout=60)
    assert ran.returncode == 0 and "-watch-interruptions" in ran.stdout, ran.stderr

    printed = run_annex_ec2("-install", "-prefix", str(root), env=env)  # no -enable: told
    assert printed.returncode == 0, printed.stderr
    assert f"    systemctl --root {root} enable {units}\n" in printed.stdout
    assert calls.read_text().count("systemctl") == 1


def test_install_works_before_boto3_is_installed_and_says_it_is_missing(tmp_path):
    """-install needs the standard library alone, and tells how to get boto3."""
    interpreter = instance_side.oldest_python()
    bundle = instance_side.build_bundle(interpreter.path, str(tmp_path / "c.pyz"))
    root = tmp_path / "image"
    ran = subprocess.run([interpreter.path, "-S", bundle, "-install", "-prefix", str(root)],
                         capture_output=True, text=True, timeout=60)  # -S: no site-packages
    assert ran.returncode == 0, ran.stderr
    assert "boto3 is not installed" in ran.stderr and "python3-boto3" in ran.stderr
    assert (root / "usr" / "local" / "bin" / "condor_annex_ec2").read_bytes() == \
        open(bundle, "rb").read()


def test_install_into_the_system_needs_root(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setattr(install, "_put", lambda *args: pytest.fail("wrote as non-root"))
    assert install.install("/", enable=False) == 1
    assert capsys.readouterr().out == ""


COMPILE_EACH = """
import pathlib, sys
for path in sorted(pathlib.Path(sys.argv[1]).glob("*.py")):
    compile(path.read_text("utf-8"), str(path), "exec", dont_inherit=True)
print(sys.version.split()[0])
"""

#: In the instance virtualenv, from the bundle alone: import every annex_ec2 module, then
#: sort what that imported into the standard library, the bundle, boto3 with what it
#: requires -- and anything else.
IMPORT_EACH = """
import sys
before = set(sys.modules)
import importlib, json, os, pkgutil, re, site, sysconfig
from importlib import metadata
bundle = os.path.realpath(sys.argv[1])
sys.path.insert(0, bundle)
import annex_ec2
for found in pkgutil.iter_modules(annex_ec2.__path__):
    importlib.import_module("annex_ec2." + found.name)
imported = {name: getattr(module, "__file__", None)
            for name, module in list(sys.modules.items()) if name not in before}

closure, todo = set(), ["boto3"]
while todo:
    name = todo.pop().lower().replace("_", "-")
    if name in closure:
        continue
    closure.add(name)
    for requirement in metadata.requires(name) or []:
        if "extra ==" not in requirement:
            todo.append(re.match(r"[A-Za-z0-9_.-]+", requirement).group(0))
provided = set()
for name in closure:
    files = metadata.distribution(name).read_text("top_level.txt")
    tops = files.split() if files else [str(f).split("/")[0] for f in
                                        metadata.distribution(name).files or []]
    provided |= {top[:-3] if top.endswith(".py") else top for top in tops}

sites = [os.path.realpath(path) for path in site.getsitepackages()]
stdlib = {os.path.realpath(sysconfig.get_paths()[key]) for key in ("stdlib", "platstdlib")}
outside = {}
for name, path in imported.items():
    real = os.path.realpath(path) if path else None
    if real is None:
        continue  # built in, frozen, or a namespace
    if real.startswith(bundle + os.sep):
        ok = name.split(".")[0] == "annex_ec2"
    elif any(real.startswith(where + os.sep) for where in sites):
        ok = name.split(".")[0] in provided
    else:
        ok = "site-packages" not in real and any(real.startswith(where + os.sep)
                                                 for where in stdlib)
    if not ok:
        outside[name] = path
print(json.dumps({"imported": sorted(imported), "outside": outside,
                  "boto3": sorted(closure)}))
"""


def test_the_instance_side_runs_on_the_oldest_python_with_boto3_alone(tmp_path):
    """Every annex_ec2 module compiles and imports on the oldest Python 3.9+ here, from the
    bundle, in a virtualenv holding boto3 alone, and imports nothing but the standard library,
    boto3 with what it requires, and annex_ec2."""
    interpreter = instance_side.oldest_python()
    python = instance_side.instance_venv(interpreter)
    bundle = instance_side.build_bundle(python, str(tmp_path / "condor_annex_ec2.pyz"))

    compiled = subprocess.run([python, "-I", "-c", COMPILE_EACH,
                               os.path.join(ROOT, "annex_ec2")], capture_output=True, text=True)
    assert compiled.returncode == 0, compiled.stderr
    assert compiled.stdout.strip() == interpreter.version_text

    ran = subprocess.run([python, "-I", "-c", IMPORT_EACH, bundle], capture_output=True,
                         text=True, timeout=120)
    assert ran.returncode == 0, ran.stderr
    report = json.loads(ran.stdout)
    assert report["outside"] == {}
    assert {"annex_ec2.bootstrap", "annex_ec2.interruption", "annex_ec2.install",
            "boto3", "botocore"} <= set(report["imported"])
    assert "botocore" in report["boto3"]


def test_the_instance_package_imports_only_the_standard_library_and_boto3():
    """What any Python would see, read from the source: no import of annexd, htcondor, ..."""
    allowed = set(sys.stdlib_module_names) | {"annex_ec2", "boto3", "botocore"}
    found = {}
    package = os.path.join(ROOT, "annex_ec2")
    for name in sorted(os.listdir(package)):
        if not name.endswith(".py"):
            continue
        with open(os.path.join(package, name), encoding="utf-8") as handle:
            tree = ast.parse(handle.read())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found.update((alias.name, name) for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                found[node.module] = name
    assert found and {module: where for module, where in found.items()
                      if module.split(".")[0] not in allowed} == {}
