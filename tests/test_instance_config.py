"""What annex instances get: the config tarball's contents, through the real CLI and daemon."""
from __future__ import annotations

import io
import os
import pwd
import tarfile

import pytest

from annexd_lambda.lease import ANNEX_TAG
from annexd.instance_config import routing

from conftest import SPOT_CONFIG


def tarball_of(aws, annex_id: str) -> dict[str, tuple[int, bytes]]:
    """name -> (mode, content) of the annex's config object."""
    body = aws.s3.get_object(Bucket="htcondor-annex-config",
                             Key=aws.config_key(annex_id))["Body"].read()
    members = {}
    with tarfile.open(fileobj=io.BytesIO(body), mode="r:gz") as archive:
        for member in archive.getmembers():
            assert member.uid == 0 and member.gid == 0 and not member.mode & 0o007
            data = archive.extractfile(member).read() if member.isfile() else b""
            members[member.name] = (member.mode, data)
    return members


def create(aws, run_annex, with_keys, name, *flags):
    result = run_annex("-annex-name", name, "-lease-duration", "3600", "-count", "1",
                       "-lease-function-arn", aws.lease_arn, *with_keys, *flags, SPOT_CONFIG)
    assert result.returncode == 0, result.stderr
    return tarball_of(aws, name)


def config_text(members) -> str:
    return members["00annex.config"][1].decode()


def test_defaults_restrict_start_to_the_caller_and_give_the_annex_its_own_token(
        aws, run_annex, with_keys, pool):
    members = create(aws, run_annex, with_keys, "defaults")
    text = config_text(members)
    me = pwd.getpwuid(os.getuid()).pw_name
    assert "COLLECTOR_HOST = cm.pool.example.org:9618" in text
    assert 'AnnexName = "defaults"' in text and "IsAnnex = True" in text
    assert (f'START = ($(START)) && {routing.GATE} && member(TARGET.Owner, {{"{me}"}})'
            in text.splitlines())
    assert "STARTD_NOCLAIM_SHUTDOWN = 900" in text
    assert "MASTER.DAEMON_SHUTDOWN = STARTD_StartTime =?= 0" in text
    assert "SEC_DEFAULT_AUTHENTICATION = REQUIRED" in text
    assert "SEC_TOKEN_DIRECTORY = $(LOCAL_CONFIG_DIR)/.annex-defaults/tokens.d" in text
    mode, token = members[".annex-defaults/tokens.d/annex"]
    assert mode == 0o600 and token.count(b".") == 2  # tests/test_annex_tokens.py checks it
    assert not any(name.endswith("pool_password") for name in members)
    assert members["00annex.config"][0] == 0o640


def test_owner_idle_tag_and_idtoken(aws, run_annex, with_keys, tmp_path):
    token = tmp_path / "annex.token"
    token.write_text("eyJhbGciOiJIUzI1NiJ9.token.sig\n")
    os.chmod(token, 0o600)
    members = create(aws, run_annex, with_keys, "flags", "-owner", "alice, bob",
                     "-idle", "0.5", "-tag", "project", "physics", "-tag", "cost-center", "42",
                     "-idtoken-file", str(token))
    text = config_text(members)
    assert 'member(TARGET.Owner, {"alice", "bob"})' in text
    assert "STARTD_NOCLAIM_SHUTDOWN = 1800" in text
    assert "SEC_DEFAULT_AUTHENTICATION_METHODS = FS, IDTOKENS" in text
    assert "SEC_TOKEN_DIRECTORY = $(LOCAL_CONFIG_DIR)/.annex-flags/tokens.d" in text
    assert members[".annex-flags/tokens.d/annex"] == (0o600, b"eyJhbGciOiJIUzI1NiJ9.token.sig")
    assert not any(name.endswith("pool_password") for name in members)
    [instance] = [i for r in aws.ec2.describe_instances(Filters=[
        {"Name": f"tag:{ANNEX_TAG}", "Values": ["flags"]}])["Reservations"]
        for i in r["Instances"]]
    tags = {t["Key"]: t["Value"] for t in instance["Tags"]}
    assert tags["project"] == "physics" and tags["cost-center"] == "42"


def test_no_owner_and_config_dir(aws, run_annex, with_keys, tmp_path):
    extra = tmp_path / "extra"
    extra.mkdir()
    (extra / "50site.config").write_text("NUM_CPUS = 4\n")
    (extra / ".hidden").write_text("ignored\n")
    members = create(aws, run_annex, with_keys, "open", "-no-owner", "-config-dir", str(extra))
    # -no-owner widens who, never which jobs: the gate stays (test_routing judges it).
    assert f"START = ($(START)) && {routing.GATE}" in config_text(members).splitlines()
    assert members["90user-50site.config"] == (0o640, b"NUM_CPUS = 4\n")
    assert not any("hidden" in name for name in members)


@pytest.mark.parametrize("flags, status, words", [
    (["-owner", "alice", "-no-owner"], 1, "give -owner or -no-owner, not both"),
    (["-idle", "forever"], 1, "-idle: expected a number of hours"),
    (["-tag", "aws:x", "1"], 1, "is reserved"),
    (["-tag", "lonely"], 1, "give one fleet JSON config file"),  # -tag ate the file
    (["-config-dir", "/nonexistent"], 2, "-config-dir /nonexistent: No such file"),
])
def test_bad_instance_flags(aws, run_annex, with_keys, flags, status, words):
    result = run_annex("-annex-name", "bad", "-lease-function-arn", aws.lease_arn, *with_keys,
                       *flags, SPOT_CONFIG)
    assert result.returncode == status and words in result.stderr
    assert aws.all_fleets() == []


def test_a_world_readable_idtoken_is_refused(aws, run_annex, with_keys, tmp_path):
    token = tmp_path / "loose.token"
    token.write_text("token\n")
    os.chmod(token, 0o644)
    result = run_annex("-annex-name", "loose", "-lease-function-arn", aws.lease_arn, *with_keys,
                       "-idtoken-file", str(token), SPOT_CONFIG)
    assert result.returncode == 2 and "accessible only by you" in result.stderr
