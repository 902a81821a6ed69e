"""End to end: each kind of bad input gets its own clear error, and nothing is left behind."""
from __future__ import annotations

import json
import os
import socket

import pytest

from annexd.rpc import protocol
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


def edited(tmp_path, change) -> str:
    """The example config with ``change(config)`` applied."""
    with open(SPOT_CONFIG, encoding="utf-8") as handle:
        config = json.load(handle)
    change(config)
    return write(tmp_path, "edited.json", json.dumps(config))


def fifo(tmp_path, name: str = "fifo") -> str:
    path = tmp_path / name
    os.mkfifo(path)
    return str(path)


def loose_secret(tmp_path) -> str:
    path = tmp_path / "loose.key"
    path.write_text("token\n")
    os.chmod(path, 0o644)
    return str(path)


def set_field(**fields):
    return lambda config: config.update(fields)


def set_spec(**fields):
    return lambda config: config["LaunchSpecifications"][0].update(fields)


LONG = "x" * 100_000  # near the kernel's limit for one argument (128 KiB)
DEEP = "[" * 100_000 + "]" * 100_000
OTHER_REGION_ARN = "arn:aws:lambda:eu-west-1:123456789012:function:HTCondorAnnex-LeaseFunction"

# (id, extra args, config file maker, exit status, words the error must contain).  Every
# case: one error line, no traceback, the secret nowhere, nothing in AWS, the daemon serving.
CASES = [
    ("no-lease-arn", [], None, 4,
     ["-lease-function-arn", "ANNEX_DEFAULT_LEASE_FUNCTION_ARN",
      "condor_annex -aws-region us-east-1 -setup"]),
    ("nonexistent-function", ["-lease-function-arn", NO_SUCH_FUNCTION], None, 5,
     ["lease function does not exist", "ResourceNotFoundException"]),
    ("truncated-json", ["-lease-function-arn", "ARN"], truncated_config, 2,
     ["truncated.json: not valid JSON", "line"]),
    ("no-iam-fleet-role", ["-lease-function-arn", "ARN"], config_without_fleet_role, 4,
     ["no-role.json: invalid Spot Fleet config", 'Missing required parameter', "IamFleetRole"]),
    ("negative-duration", ["-lease-function-arn", "ARN", "-lease-duration", "-5"], None, 1,
     ["-lease-duration: expected a positive whole number of seconds", "got '-5'"]),
    ("non-numeric-duration", ["-lease-function-arn", "ARN", "-lease-duration", "1h"], None, 1,
     ["-lease-duration: expected a positive whole number of seconds", "got '1h'"]),
    ("missing-file", ["-lease-function-arn", "ARN"],
     lambda tmp_path: str(tmp_path / "absent.json"), 2, ["absent.json: No such file"]),
    ("invalid-name", ["-lease-function-arn", "ARN", "-annex-name", "bad_name"], None, 1,
     ["-annex-name: 'bad_name' is not valid", "letters, digits or dashes"]),
    ("name-too-long", ["-lease-function-arn", "ARN", "-annex-name", "a" * 28], None, 1,
     ["-annex-name", "is not valid"]),
    ("malformed-arn", ["-lease-function-arn", "not-an-arn"], None, 4,
     ["'not-an-arn' is not a Lambda function ARN"]),
    ("zero-count", ["-lease-function-arn", "ARN", "-count", "0"], None, 1,
     ["-count: expected a positive whole number of instances", "got '0'"]),
    # names and other words: the whole string, shortened when echoed
    ("name-trailing-newline", ["-lease-function-arn", "ARN", "-annex-name", "bad\n"], None, 1,
     ["-annex-name", "is not valid"]),
    ("name-900k", ["-lease-function-arn", "ARN", "-annex-name", LONG], None, 1,
     ["-annex-name", "(100000 characters)"]),
    ("arn-trailing-newline", ["-lease-function-arn", "ARN\n"], None, 4,
     ["is not a Lambda function ARN"]),
    ("arn-other-region", ["-lease-function-arn", OTHER_REGION_ARN], None, 4,
     ["the function is in eu-west-1", "us-east-1"]),
    ("region-trailing-newline", ["-lease-function-arn", "ARN", "-aws-region", "us-east-1\n"],
     None, 1, ["-aws-region", "is not an AWS region name"]),
    ("region-garbage", ["-lease-function-arn", "ARN", "-aws-region", "mars"], None, 1,
     ["-aws-region: 'mars' is not an AWS region name"]),
    ("owner-not-names", ["-lease-function-arn", "ARN", "-owner", "bad name!"], None, 1,
     ["-owner", "is not a list of user names"]),
    ("owner-900k", ["-lease-function-arn", "ARN", "-owner", LONG + "!"], None, 1,
     ["-owner", "(100001 characters)"]),
    ("reserved-tag", ["-lease-function-arn", "ARN", "-tag", "aws:x", "y"], None, 1,
     ["-tag", "reserved"]),
    # numbers: ASCII decimal, finite, in bounds
    ("huge-lease", ["-lease-function-arn", "ARN", "-lease-duration", "1" + "0" * 20], None, 1,
     ["-lease-duration", "at most 31622400"]),
    ("zero-lease", ["-lease-function-arn", "ARN", "-lease-duration", "0"], None, 1,
     ["-lease-duration", "got '0'"]),
    ("plus-sign-lease", ["-lease-function-arn", "ARN", "-lease-duration", "+5"], None, 1,
     ["-lease-duration", "got '+5'"]),
    ("unicode-digit-lease", ["-lease-function-arn", "ARN", "-lease-duration", "\u0661\u0662"],
     None, 1, ["-lease-duration", "expected a positive whole number"]),
    ("underscore-count", ["-lease-function-arn", "ARN", "-count", "1_000"], None, 1,
     ["-count", "got '1_000'"]),
    ("unicode-digit-count", ["-lease-function-arn", "ARN", "-count", "\u0663"], None, 1,
     ["-count", "expected a positive whole number"]),
    ("count-over-bound", ["-lease-function-arn", "ARN", "-count", "10001"], None, 1,
     ["-count", "at most 10000"]),
    ("duration-inf", ["-lease-function-arn", "ARN", "-duration", "inf"], None, 1,
     ["-duration: expected a number of hours", "got 'inf'"]),
    ("duration-nan", ["-lease-function-arn", "ARN", "-duration", "nan"], None, 1,
     ["-duration", "got 'nan'"]),
    ("duration-exponent", ["-lease-function-arn", "ARN", "-duration", "1e400"], None, 1,
     ["-duration", "got '1e400'"]),
    ("duration-too-long", ["-lease-function-arn", "ARN", "-duration", "100000"], None, 1,
     ["-duration", "is not between 1 second and 8784 hours"]),
    ("both-durations", ["-lease-function-arn", "ARN", "-duration", "1"], None, 1,
     ["give -lease-duration or -duration, not both"]),
    ("idle-inf", ["-lease-function-arn", "ARN", "-idle", "inf"], None, 1, ["-idle"]),
    ("idle-negative", ["-lease-function-arn", "ARN", "-idle", "-1"], None, 1, ["-idle"]),
    # the config's values
    ("capacity-zero", ["-lease-function-arn", "ARN"],
     lambda t: edited(t, set_field(TargetCapacity=0)), 4, ["TargetCapacity", "got 0"]),
    ("capacity-negative", ["-lease-function-arn", "ARN"],
     lambda t: edited(t, set_field(TargetCapacity=-1)), 4, ["TargetCapacity"]),
    ("capacity-huge", ["-lease-function-arn", "ARN"],
     lambda t: write(t, "huge.json", open(SPOT_CONFIG, encoding="utf-8").read().replace(
         '"TargetCapacity": 2', '"TargetCapacity": 1' + "0" * 400)), 4,
     ["TargetCapacity", "characters)"]),
    ("spot-price-words", ["-lease-function-arn", "ARN"],
     lambda t: edited(t, set_field(SpotPrice="abc")), 4, ["SpotPrice", "got 'abc'"]),
    ("spot-price-negative", ["-lease-function-arn", "ARN"],
     lambda t: edited(t, set_spec(SpotPrice="-1")), 4,
     ["LaunchSpecifications[0].SpotPrice", "got '-1'"]),
    ("weight-zero", ["-lease-function-arn", "ARN"],
     lambda t: edited(t, set_spec(WeightedCapacity=0)), 4, ["WeightedCapacity"]),
    ("on-demand-over-target", ["-lease-function-arn", "ARN"],
     lambda t: edited(t, set_field(OnDemandTargetCapacity=50)), 4, ["OnDemandTargetCapacity"]),
    ("unknown-field", ["-lease-function-arn", "ARN"],
     lambda t: edited(t, set_field(Bogus=1)), 4, ["Unknown parameter", "Bogus"]),
    ("config-not-object", ["-lease-function-arn", "ARN"],
     lambda t: write(t, "list.json", "[]"), 2,
     ["list.json: expected one JSON object (a Spot Fleet or EC2 Fleet config), found an array"]),
    # the files themselves
    ("config-too-deep", ["-lease-function-arn", "ARN"], lambda t: write(t, "deep.json", DEEP),
     2, ["deep.json: JSON nested deeper than 64 levels"]),
    ("config-50mb", ["-lease-function-arn", "ARN"],
     lambda t: write(t, "big.json", " " * 50_000_000 + "{}"), 2,
     ["big.json: larger than the limit of 256 KiB"]),
    ("config-fifo", ["-lease-function-arn", "ARN"], fifo, 2, ["not a regular file"]),
    ("config-directory", ["-lease-function-arn", "ARN"], lambda t: str(t), 2,
     ["not a regular file"]),
    ("config-empty", ["-lease-function-arn", "ARN"], lambda t: write(t, "empty.json", ""), 2,
     ["empty.json: not valid JSON"]),
    ("config-not-utf8", ["-lease-function-arn", "ARN"],
     lambda t: (t / "latin.json").write_bytes(b'{"\xff": 1}') and str(t / "latin.json"), 2,
     ["latin.json: not UTF-8"]),
    ("config-5000-digit-number", ["-lease-function-arn", "ARN"],
     lambda t: write(t, "digits.json", '{"TargetCapacity": ' + "9" * 5000 + "}"), 2,
     ["digits.json: not usable JSON"]),
]

#: Cases whose flags need files made first: (id, flags maker, status, words).
FILE_FLAG_CASES = [
    ("secret-key-fifo", lambda t: ["-secret-key-file", fifo(t)], 2,
     ["-secret-key-file", "not a regular file"]),
    ("access-key-fifo", lambda t: ["-public-key-file", fifo(t)], 2,
     ["-public-key-file", "not a regular file"]),
    ("secret-key-directory", lambda t: ["-secret-key-file", str(t)], 2,
     ["-secret-key-file", "not a regular file"]),
    ("secret-key-missing", lambda t: ["-secret-key-file", str(t / "none")], 2,
     ["-secret-key-file", "No such file"]),
    ("idtoken-fifo", lambda t: ["-idtoken-file", fifo(t)], 2,
     ["-idtoken-file", "not a regular file"]),
    ("idtoken-world-readable", lambda t: ["-idtoken-file", loose_secret(t)], 2,
     ["-idtoken-file", "accessible only by you"]),
    ("config-dir-missing", lambda t: ["-config-dir", str(t / "none")], 2,
     ["-config-dir", "No such file"]),
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


def check_refusal(result, status: int, words: list[str], aws, pool, daemon) -> None:
    assert result.returncode == status, result.stderr[:2000]
    assert result.stdout == ""
    error_lines = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(error_lines) == 1, result.stderr[:2000]
    for word in words:
        assert word in error_lines[0], error_lines[0][:2000]
    assert len(error_lines[0]) < 1000
    assert "Traceback" not in result.stderr and SECRET not in result.stderr
    assert_nothing_created(aws)
    assert_daemon_serving(pool, daemon)


@pytest.mark.parametrize("case_id, args, make_config, status, words", CASES,
                         ids=[case[0] for case in CASES])
def test_bad_input(case_id, args, make_config, status, words, aws, pool, daemon, run_annex,
                   with_keys, tmp_path):
    args = [arg.replace("ARN", aws.lease_arn) if arg.startswith("ARN") else arg
            for arg in args]
    config = make_config(tmp_path) if make_config else SPOT_CONFIG
    duration = [] if "-duration" in args and "both" not in case_id else \
        ["-lease-duration", "600"]
    result = run_annex("-annex-name", "bad", *duration, *with_keys, *args, config)
    check_refusal(result, status, words, aws, pool, daemon)


@pytest.mark.parametrize("case_id, make_flags, status, words", FILE_FLAG_CASES,
                         ids=[case[0] for case in FILE_FLAG_CASES])
def test_bad_input_files(case_id, make_flags, status, words, aws, pool, daemon, run_annex,
                         with_keys, tmp_path):
    result = run_annex("-annex-name", "bad", "-lease-duration", "600",
                       "-lease-function-arn", aws.lease_arn, *with_keys, *make_flags(tmp_path),
                       SPOT_CONFIG)
    check_refusal(result, status, words, aws, pool, daemon)


def test_the_table_is_at_least_forty_bad_inputs():
    assert len(CASES) + len(FILE_FLAG_CASES) >= 40


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
    b'"fleet_config": {}}}\n',
    b"\n",
    b"[" * 500_000 + b"]" * 500_000 + b"\n",
    b'{"version": 1, "command": "status", "name": "x\\n"}\n',
    b'{"version": 1, "command": "extend", "name": "x", "lease_duration": 100000000000000000000}\n',
    b'{"version": 1, "command": "ping", "n": ' + b"9" * 5000 + b"}\n",
    b'{"version": 1, "command": "status", "name": "' + b"y" * 200_000 + b'"}\n',
], ids=["garbage", "wrong-version", "no-annex", "schema", "empty-line", "500k-deep",
        "name-newline", "huge-lease", "5000-digits", "200k-name"])
def test_daemon_survives_malformed_messages(payload, pool, daemon):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(pool.socket_path)
        sock.sendall(payload)
        reply = protocol.validate_reply(protocol.receive(sock))
    assert reply["ok"] is False
    assert reply["error"]["kind"] in ("protocol", "invalid-request")
    assert len(reply["error"]["message"]) < 1000
    assert_daemon_serving(pool, daemon)


def test_client_hanging_up_does_not_hurt_the_daemon(pool, daemon):
    for _ in range(5):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.connect(pool.socket_path)
            sock.sendall(b'{"version": 1, "comm')
    assert_daemon_serving(pool, daemon)
