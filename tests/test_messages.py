"""Issue 19 finding 4: every error names its fix -- the command (-setup, with -aws-region), the
flag or knob, the file -- in one line, and an unexpected answer is never an "internal error"."""
from __future__ import annotations

import json
import os
import subprocess

import botocore.session
import pytest
from botocore.exceptions import ClientError
from botocore.parsers import ResponseParserError, create_parser

from annexd.aws import translate
from condor_annex import client
from localaws import fixtures
from localaws.pool import run_program, script

from conftest import SECRET, SPOT_CONFIG

SETUP_HERE = "condor_annex -aws-region us-east-1 -setup"
#: A real secret key's shape (AWS's documentation example): '/' in it.
SECRET_SHAPED = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


def annex(pool, home, *args: str) -> subprocess.CompletedProcess:
    """condor_annex with its own HOME (no keys in ~/.condor unless a test puts them there)."""
    return run_program([script("condor_annex"), *args], {**pool.env(), "HOME": str(home)}, timeout=120)


def error_line(result: subprocess.CompletedProcess) -> str:
    lines = [line for line in result.stderr.splitlines() if "notice:" not in line]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


def keys_at(directory, access: str = "AKIAEXAMPLELOCAL", secret: str = SECRET) -> tuple[str, str]:
    os.makedirs(directory, exist_ok=True)
    files = (os.path.join(directory, "publicKeyFile"), os.path.join(directory, "privateKeyFile"))
    for path, text in zip(files, (access, secret)):
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(text + "\n")
        os.chmod(path, 0o600)
    return files


def test_before_setup_create_and_status_name_setup_with_the_region(aws, pool, daemon, tmp_path):
    created = annex(pool, tmp_path, "-count", "1")
    assert created.returncode == 4
    assert f"no AWS credentials: run {SETUP_HERE}" in error_line(created)
    # -status: root (these tests' user) lists every annex from the journal without keys
    # (issue 17); another user is told to run -setup (tests/test_admin_status.py).
    status = annex(pool, tmp_path, "-status")
    assert status.returncode == 0 and status.stdout == "You have no annexes.\n", status.stderr
    # A second region: the fix names that region, in the create and in -check-setup.
    west = annex(pool, tmp_path, "-aws-region", "us-west-2", "-count", "1")
    assert west.returncode == 4
    assert "run condor_annex -aws-region us-west-2 -setup" in error_line(west)
    check = annex(pool, tmp_path, "-aws-region", "us-west-2", "-check-setup")
    assert check.returncode == 9
    problems = check.stdout.splitlines()
    assert problems and all("condor_annex -aws-region us-west-2 -setup" in line
                            for line in problems if "is not set" in line)


def test_keys_where_the_original_manual_puts_them_are_used(aws, pool, daemon, tmp_path):
    """~/.condor/publicKeyFile and privateKeyFile (the original's place, and -setup's
    default) are the key files when no flag or knob names any."""
    keys_at(tmp_path / ".condor")
    assert annex(pool, tmp_path, "-status").returncode == 0
    created = annex(pool, tmp_path, "-annex-name", "from-home", "-lease-function-arn",
                    aws.lease_arn, "-lease-duration", "600", SPOT_CONFIG)
    assert created.returncode == 0, created.stderr
    assert len(aws.annex_resources("from-home")["fleets"]) == 1
    # Without a lease function, the create names -setup (for this region) as the fix.
    unset = annex(pool, tmp_path, "-annex-name", "no-arn", SPOT_CONFIG)
    assert unset.returncode == 4 and f"({SETUP_HERE} creates one)" in error_line(unset)


def test_swapped_key_files_are_named_in_one_line(aws, pool, daemon, tmp_path):
    access, secret = keys_at(tmp_path / "keys", secret=SECRET_SHAPED)
    swapped = annex(pool, tmp_path, "-public-key-file", secret, "-secret-key-file", access,
                    "-lease-function-arn", aws.lease_arn, SPOT_CONFIG)
    assert swapped.returncode == 2
    line = error_line(swapped)
    assert secret in line and access in line and "swapped" in line
    assert SECRET_SHAPED not in swapped.stderr + swapped.stdout
    setup = annex(pool, tmp_path, "-setup", secret, access)
    assert setup.returncode == 2 and "swapped" in error_line(setup)


def test_an_answer_botocore_cannot_read_is_an_aws_error_not_an_internal_one(aws, pool, daemon):
    """Swapped keys sent anyway (an old client, a script): the emulator answers as another
    service and botocore's parser fails with a KeyError.  That is one line naming the call
    (-check-setup's credentials line: a problem, and nothing else is asked with such keys),
    never "internal error" (exit 7) with a traceback in the log."""
    reply = client.call(pool.socket_path, {
        "version": 1, "command": "check-setup", "region": "us-east-1",
        "credentials": {"access_key_id": SECRET_SHAPED, "secret_access_key": "AKIAEXAMPLELOCAL"}})
    assert reply["ok"] is True, reply
    [line] = reply["result"]["checks"]
    assert line["what"] == "credentials" and line["ok"] is False
    assert "STS GetCallerIdentity failed" in line["text"] and "\n" not in line["text"]
    assert "check the endpoint and the key files" in line["text"]
    with open(pool.log_file, encoding="utf-8") as handle:
        assert "Traceback" not in handle.read()


def test_a_json_array_as_config_names_the_file_and_the_problem(pool, daemon, with_keys, tmp_path):
    config = tmp_path / "array.json"
    config.write_text(json.dumps([json.load(open(SPOT_CONFIG, encoding="utf-8"))] * 3))
    result = annex(pool, tmp_path, *with_keys, "-lease-function-arn", "ARN", str(config))
    line = error_line(result)
    assert result.returncode == 2
    assert f"{config}: expected one JSON object (a Spot Fleet or EC2 Fleet config), found an " \
        "array" in line and len(line) < 200


def test_the_default_image_failing_names_the_flag_and_its_knob(aws, pool, daemon, with_keys,
                                                                tmp_path):
    """HTCondor's own default image for us-east-1 (us_east_1.ANNEX_DEFAULT_ODI_IMAGE_ID) is
    long gone from AWS, as it is from the emulator."""
    result = annex(pool, tmp_path, *with_keys, "-annex-name", "old-ami", "-count", "1",
                   "-aws-on-demand-instance-type", "m5.large", "-lease-function-arn",
                   aws.lease_arn, "-lease-duration", "600")
    assert result.returncode == 5
    line = error_line(result)
    for words in ("InvalidAMIID.NotFound", "-aws-on-demand-ami-id",
                  "us_east_1.ANNEX_DEFAULT_ODI_IMAGE_ID", "nothing was left behind"):
        assert words in line
    assert not any(aws.annex_resources("old-ami").values())


def test_permission_denied_on_the_socket_names_annexd_socket_group(aws, shared_pool):
    """A user outside ANNEXD_SOCKET_GROUP (a real other uid, in a forked child) is told that
    setting and the group, not DAEMON_LIST."""
    from localaws.pool import AnnexDaemon
    shared_pool.add_knobs("ANNEXD_SOCKET_GROUP = nogroup\n")
    with AnnexDaemon(shared_pool):
        read, write = os.pipe()
        child = os.fork()
        if child == 0:  # pragma: no cover - runs in the child
            try:
                os.setgroups([])
                os.setresgid(54321, 54321, 54321)
                os.setresuid(54321, 54321, 54321)
                client.call(shared_pool.socket_path, {"version": 1, "command": "ping"})
                message = "connected"
            except client.DaemonUnreachable as error:
                message = str(error)
            finally:
                os.write(write, message.encode())
                os._exit(0)
        os.close(write)
        os.waitpid(child, 0)
        with os.fdopen(read) as pipe:
            message = pipe.read()
    assert "Permission denied" in message and "ANNEXD_SOCKET_GROUP" in message
    assert "'nogroup'" in message and "DAEMON_LIST" not in message


def test_aws_spot_fleet_example_7_with_null_members(aws, pool, daemon, with_keys, tmp_path):
    """AWS's Spot Fleet example 7 (a console export: "SpotPrice": null, an empty
    LaunchSpecifications) with this emulator's launch template: null is absent, with a notice."""
    template_id = fixtures.create_worker_template(aws.ec2)
    config = {
        "IamFleetRole": "arn:aws:iam::123456789012:role/aws-ec2-spot-fleet-tagging-role",
        "AllocationStrategy": "lowestPrice",
        "TargetCapacity": 10,
        "SpotPrice": None,
        "ValidFrom": "2018-04-04T15:58:13Z",
        "ValidUntil": "2019-04-04T15:58:13Z",
        "TerminateInstancesWithExpiration": True,
        "LaunchSpecifications": [],
        "Type": "maintain",
        "OnDemandTargetCapacity": 1,
        "LaunchTemplateConfigs": [{
            "LaunchTemplateSpecification": {"LaunchTemplateId": template_id, "Version": "1"},
            "Overrides": [{"InstanceType": "t2.medium", "WeightedCapacity": 1}]}],
    }
    path = tmp_path / "example-7.json"
    path.write_text(json.dumps(config))
    result = annex(pool, tmp_path, *with_keys, "-annex-name", "example-7", "-count", "2",
                   "-lease-function-arn", aws.lease_arn, "-lease-duration", "600", str(path))
    assert result.returncode == 0, result.stderr
    assert "notice: " in result.stderr and \
        "treated null as absent (as the AWS CLI does): SpotPrice" in result.stderr
    [fleet] = aws.all_fleets()
    assert "SpotPrice" not in fleet["SpotFleetRequestConfig"]


HTML = ("<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head><body><center>"
        "<h1>502 Bad Gateway</h1></center><hr><center>nginx/1.22.1</center>" +
        "<p>padding</p>" * 40 + "</body></html>")


@pytest.mark.parametrize("service, operation", [("lambda", "GetFunction"),
                                                ("ec2", "RequestSpotFleet"),
                                                ("events", "PutRule")])
def test_an_html_error_page_is_summarised(service, operation):
    """What botocore makes of a proxy's HTML error page, for each protocol we use: an error
    whose message is the page (REST-JSON, JSON), or a parser error carrying it (EC2's XML)."""
    model = botocore.session.get_session().get_service_model(service)
    try:
        parsed = create_parser(model.metadata["protocol"]).parse(
            {"status_code": 502, "headers": {"content-type": "text/html"},
             "body": HTML.encode()}, model.operation_model(operation).output_shape)
        error: Exception = ClientError(parsed, operation)
    except ResponseParserError as raised:
        error = raised
    text = str(translate(f"{service} {operation}", error))
    assert "not from AWS (502 Bad Gateway): check the endpoint" in text
    if isinstance(error, ClientError):
        assert "HTTP 502 Bad Gateway" in text
    assert "<" not in text and "padding" not in text and len(text) < 200
