"""End to end: each kind of bad input gets its own clear error, and nothing is left behind."""
from __future__ import annotations

import json
import os
import socket

import pytest

from annexd import protocol
from condor_annex import client

from conftest import SECRET, SPOT_CONFIG

NO_SUCH_FUNCTION = "arn:aws:lambda:us-east-1:123456789012:function:NoSuchLeaseFunction"


def write(tmp_path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def truncated_config(tmp_path) -> str:
    with open(SPOT_CONFIG, encoding="utf-8") as handle:
        return write(tmp_path, "truncated.json", handle.read()[:120])


def config_without_fleet_role(tmp_path) -> str:
    with open(SPOT_CONFIG, encoding="utf-8") as handle:
        config = json.load(handle)
    del config["IamFleetRole"]
    return write(tmp_path, "no-role.json", json.dumps(config))


# (id, extra args, config file maker, exit status, words the error must contain)
CASES = [
    ("no-lease-arn", [], None, 4,
     ["-lease-function-arn", "ANNEX_DEFAULT_LEASE_FUNCTION_ARN", "condor_annex -setup"]),
    ("nonexistent-function", ["-lease-function-arn", NO_SUCH_FUNCTION], None, 5,
     ["lease function does not exist", "ResourceNotFoundException"]),
    ("truncated-json", ["-lease-function-arn", "ARN"], truncated_config, 2,
     ["truncated.json: not valid JSON", "line"]),
    ("no-iam-fleet-role", ["-lease-function-arn", "ARN"], config_without_fleet_role, 4,
     ["no-role.json: invalid Spot Fleet config", 'Missing required parameter', "IamFleetRole"]),
    ("negative-duration", ["-lease-function-arn", "ARN", "-lease-duration", "-5"], None, 1,
     ["-lease-duration: expected a positive whole number of seconds, got '-5'"]),
    ("non-numeric-duration", ["-lease-function-arn", "ARN", "-lease-duration", "1h"], None, 1,
     ["-lease-duration: expected a positive whole number of seconds, got '1h'"]),
    ("missing-file", ["-lease-function-arn", "ARN"],
     lambda tmp_path: str(tmp_path / "absent.json"), 2, ["absent.json: No such file"]),
    ("invalid-name", ["-lease-function-arn", "ARN", "-annex-name", "bad_name"], None, 1,
     ["-annex-name: 'bad_name' is not valid", "letters, digits or dashes"]),
    ("name-too-long", ["-lease-function-arn", "ARN", "-annex-name", "a" * 28], None, 1,
     ["-annex-name", "is not valid"]),
    ("malformed-arn", ["-lease-function-arn", "not-an-arn"], None, 4,
     ["'not-an-arn' is not a Lambda function ARN"]),
    ("zero-count", ["-lease-function-arn", "ARN", "-count", "0"], None, 1,
     ["-count: expected a positive whole number of instances, got '0'"]),
]


def assert_nothing_created(aws) -> None:
    assert aws.all_fleets() == []
    assert aws.ec2.describe_instances()["Reservations"] == []
    assert aws.events.list_rules()["Rules"] == []
    assert aws.s3.list_objects_v2(Bucket="htcondor-annex-config").get("KeyCount", 0) == 0


def assert_daemon_serving(pool, daemon) -> None:
    assert daemon.process.poll() is None
    reply = client.call(pool.socket_path, {"version": protocol.VERSION, "command": "ping"})
    assert reply["ok"]


@pytest.mark.parametrize("case_id, args, make_config, status, words", CASES,
                         ids=[case[0] for case in CASES])
def test_bad_input(case_id, args, make_config, status, words, aws, pool, daemon, run_annex,
                   with_keys, tmp_path):
    args = [aws.lease_arn if a == "ARN" else a for a in args]
    config = make_config(tmp_path) if make_config else SPOT_CONFIG
    result = run_annex("-annex-name", "bad", "-lease-duration", "600", *with_keys, *args, config)
    assert result.returncode == status, result.stderr
    assert result.stdout == ""
    error_lines = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(error_lines) == 1, result.stderr
    for word in words:
        assert word in error_lines[0]
    assert "Traceback" not in result.stderr and SECRET not in result.stderr
    assert_nothing_created(aws)
    assert_daemon_serving(pool, daemon)


def test_secret_key_file_readable_by_others_is_refused(aws, pool, run_annex, tmp_path):
    loose = tmp_path / "secret.key"
    loose.write_text("not-so-secret\n")
    os.chmod(loose, 0o644)
    result = run_annex("-annex-name", "loose", "-lease-function-arn", aws.lease_arn,
                       "-public-key-file", pool.access_key_file, "-secret-key-file", str(loose),
                       SPOT_CONFIG)
    assert result.returncode == 2
    assert "accessible only by you" in result.stderr and "chmod 600" in result.stderr
    assert_nothing_created(aws)


def test_ambiguous_flag_is_a_usage_error(run_annex):
    result = run_annex("-lease", "600", SPOT_CONFIG)
    assert result.returncode == 1
    assert "-lease is ambiguous" in result.stderr
    assert "-lease-duration" in result.stderr and "-lease-function-arn" in result.stderr


def test_no_credentials_is_refused_by_default(aws, run_annex):
    result = run_annex("-annex-name", "nokeys", "-lease-function-arn", aws.lease_arn,
                       SPOT_CONFIG)
    assert result.returncode == 4
    assert "no AWS credentials" in result.stderr and "-public-key-file" in result.stderr
    assert_nothing_created(aws)


@pytest.mark.parametrize("payload", [
    b"this is not json\n",
    b'{"version": 99, "command": "ping"}\n',
    b'{"version": 1, "command": "create"}\n',
    b'{"version": 1, "command": "create", "annex": {"lease_duration": -1, '
    b'"spot_fleet_config": {}}}\n',
    b"\n",
], ids=["garbage", "wrong-version", "no-annex", "schema", "empty-line"])
def test_daemon_survives_malformed_messages(payload, pool, daemon):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(pool.socket_path)
        sock.sendall(payload)
        reply = protocol.validate_reply(protocol.receive(sock))
    assert reply["ok"] is False
    assert reply["error"]["kind"] in ("protocol", "invalid-request")
    assert_daemon_serving(pool, daemon)


def test_client_hanging_up_does_not_hurt_the_daemon(pool, daemon):
    for _ in range(5):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.connect(pool.socket_path)
            sock.sendall(b'{"version": 1, "comm')
    assert_daemon_serving(pool, daemon)
