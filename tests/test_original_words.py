"""Issue 25 finding 5 and 6: the original condor_annex's words -- its manual's synopsis forms,
its subcommands, every flag of its manual, its -classads, its ~/.condor/user_config."""
from __future__ import annotations

import pytest

from annexd.usage.options import UsageError, parse
from condor_annex.cli import OPTIONS, subcommand
from localaws import fixtures

import original_stacks
from conftest import BUCKET, SPOT_CONFIG

#: Every flag of the original's manual (HTCondor 24.0 docs/man-pages/condor_annex.rst) and the
#: ones only its annex.cpp reads, -> the option it is here, or ("refused", the name the
#: message must give instead).
ORIGINAL_MANUAL = {
    "-help": "help", "-setup": "setup", "-check-setup": "check_setup", "-status": "status",
    "-classad": "classad", "-classads": "classad", "-annex-name": "annex_name",
    "-count": "count", "-slots": "slots", "-duration": "duration", "-idle": "idle",
    "-yes": "yes", "-tag": "tags", "-config-dir": "config_dir", "-owner": "owner",
    "-no-owner": "no_owner", "-aws-region": "region",
    "-aws-on-demand": "on_demand", "-aws-spot-fleet": "spot_fleet",
    "-aws-user-data": "user_data", "-aws-user-data-file": "user_data_file",
    "-aws-on-demand-instance-type": "odi_instance_type",
    "-aws-on-demand-ami-id": "odi_image_id",
    "-aws-on-demand-security-group-ids": "odi_security_group_ids",
    "-aws-on-demand-key-name": "odi_key_name",
    "-aws-on-demand-instance-profile-arn": "odi_instance_profile_arn",
    "-aws-spot-fleet-config-file": "config_file",
    "-aws-access-key-file": "access_key_file", "-aws-public-key-file": "access_key_file",
    "-aws-secret-key-file": "secret_key_file", "-aws-private-key-file": "secret_key_file",
    "-aws-spot-fleet-lease-function-arn": "lease_function_arn",
    "-aws-on-demand-lease-function-arn": "lease_function_arn",
    "-aws-default-user-data": ("refused", "-aws-user-data DATA"),
    "-aws-default-user-data-file": ("refused", "-aws-user-data-file FILE"),
    "-aws-ec2-url": ("refused", "ANNEX_DEFAULT_EC2_URL"),
    "-aws-events-url": ("refused", "ANNEX_DEFAULT_CWE_URL"),
    "-aws-lambda-url": ("refused", "ANNEX_DEFAULT_LAMBDA_URL"),
    "-aws-s3-url": ("refused", "ANNEX_DEFAULT_S3_URL"),
    "-aws-s3-config-path": ("refused", "ANNEX_DEFAULT_S3_BUCKET"),
}
ARGUMENTS = {"tags": ["n", "v"]}


@pytest.mark.parametrize("flag, wanted", ORIGINAL_MANUAL.items())
def test_every_flag_of_the_originals_manual_is_an_alias_or_refused_naming_the_new(flag, wanted):
    dest = wanted if isinstance(wanted, str) else None
    option = next((o for o in OPTIONS.values() if flag in o.all_names), None)
    assert option is not None, f"{flag} is unknown here"
    takes = [] if option.metavar is None else ARGUMENTS.get(option.dest, ["x"])
    if dest is not None:
        values, _ = parse([flag, *takes], tuple(OPTIONS.values()))
        assert list(values) == [dest]
    else:
        with pytest.raises(UsageError) as refused:
            parse([flag, *takes], tuple(OPTIONS.values()))
        assert wanted[1] in str(refused.value) and "original condor_annex" in str(refused.value)


def test_the_synopsis_switches_are_no_longer_taken_for_longer_flags():
    """-aws-on-demand was "ambiguous"; -aws-spot-fleet ate the next word as a config file."""
    values, positionals = parse(["-aws-spot-fleet", "-annex-name", "x", "-slots", "2"],
                                tuple(OPTIONS.values()))
    assert values == {"spot_fleet": True, "annex_name": "x", "slots": "2"} and not positionals
    values, _ = parse(["-aws-on-demand", "-count", "1"], tuple(OPTIONS.values()))
    assert values == {"on_demand": True, "count": "1"}


@pytest.mark.parametrize("argv, verb", [(["status"], "status"),
                                        (["-annex-name", "x", "off"], "off"),
                                        (["-annex-name", "x", "status", "-classads"], "status")])
def test_the_originals_subcommands_are_its_verbs(argv, verb):
    values, positionals = parse(argv, tuple(OPTIONS.values()))
    assert subcommand(values, positionals) == [] and values[verb] is True


def test_both_synopsis_forms_and_the_subcommands_end_to_end(aws, run_annex, with_keys):
    on_demand = run_annex("-aws-on-demand", "-annex-name", "odi-words", "-count", "1",
                          "-aws-on-demand-ami-id", fixtures.WORKER_IMAGE, "-duration", "0.5",
                          "-aws-on-demand-lease-function-arn", aws.lease_arn, *with_keys)
    assert on_demand.returncode == 0, on_demand.stderr
    assert len(aws.annex_resources("odi-words")["instances"]) == 1
    spot = run_annex("-aws-spot-fleet", "-annex-name", "sfr-words", "-slots", "1",
                     "-aws-spot-fleet-config-file", SPOT_CONFIG, "-duration", "0.5",
                     "-aws-spot-fleet-lease-function-arn", aws.lease_arn, *with_keys)
    assert spot.returncode == 0, spot.stderr
    assert len(aws.annex_resources("sfr-words")["fleets"]) == 1
    mixed = run_annex("-aws-on-demand", "-annex-name", "mixed", SPOT_CONFIG, *with_keys)
    assert mixed.returncode == 1 and "-aws-on-demand starts on-demand instances" in mixed.stderr
    no_config = run_annex("-aws-spot-fleet", "-annex-name", "nc", "-slots", "1", *with_keys)
    # Without a config file, -slots takes the one ANNEX_DEFAULT_SFR_CONFIG_FILE names (none
    # here), never on-demand instances (issue 25 finding 3: test_join_defaults).
    assert no_config.returncode == 1 and "-slots N starts a Spot Fleet, which needs its " \
        "config" in no_config.stderr and "ANNEX_DEFAULT_SFR_CONFIG_FILE" in no_config.stderr

    shown = run_annex("status", *with_keys)
    assert shown.returncode == 0, shown.stderr
    assert "odi-words" in shown.stdout and "sfr-words" in shown.stdout
    off = run_annex("-annex-name", "odi-words", "off", "-yes", *with_keys)
    assert off.returncode == 0, off.stderr
    assert "Annex odi-words is off" in off.stdout
    passed_on = run_annex("status", "-compact", *with_keys)
    assert passed_on.returncode == 1 and "unknown option -compact" in passed_on.stderr


def test_the_originals_lease_function_is_refused_by_the_daemon(aws, run_annex, with_keys):
    """Its functions take another input: a rule of ours calling one would end nothing."""
    arn = ("arn:aws:lambda:us-east-1:123456789012:function:"
           "HTCondorAnnex-LambdaFunctions-sfrLeaseFunction-Q2MMPRC9VNC5")
    refused = run_annex("-annex-name", "old-fn", "-aws-spot-fleet-lease-function-arn", arn,
                        "-lease-duration", "600", *with_keys, SPOT_CONFIG)
    assert refused.returncode == 4
    assert "is the original condor_annex's lease function" in refused.stderr
    assert aws.all_fleets() == [] and aws.events.list_rules()["Rules"] == []


def test_the_same_name_again_adds_instances_as_the_original_did(aws, run_annex, with_keys):
    """As the original's -slots on a live annex: another fleet, under the annex's lease
    (which, unlike there, is not moved: tests/test_grow.py)."""
    first = run_annex("-annex-name", "again", "-lease-duration", "600", "-lease-function-arn",
                      aws.lease_arn, *with_keys, SPOT_CONFIG)
    assert first.returncode == 0, first.stderr
    lease = aws.target_input("again")
    second = run_annex("-annex-name", "again", "-slots", "1", "-aws-spot-fleet-config-file",
                       SPOT_CONFIG, "-yes", "-lease-function-arn", aws.lease_arn, *with_keys)
    assert second.returncode == 0, second.stderr
    assert "added launch 2 to annex again" in second.stderr
    assert len(aws.annex_resources("again")["fleets"]) == 2
    assert aws.target_input("again") == lease


def test_an_old_user_config_is_named_not_silently_half_read(aws, pool, run_annex, with_keys):
    """The original's -setup block: its bucket does not override the admin's (which the daemon
    then uses), and its SFR/ODI lease function knobs are named as not used."""
    theirs = {"S3BucketName": "htcondorannex-configurationbuc-configurationbucket-old",
              "sfrLeaseFunctionARN": "arn:aws:lambda:us-east-1:123456789012:function:"
                                     "HTCondorAnnex-LambdaFunctions-sfrLeaseFunction-X",
              "odiLeaseFunctionARN": "arn:aws:lambda:us-east-1:123456789012:function:"
                                     "HTCondorAnnex-LambdaFunctions-odiLeaseFunction-X",
              "InstanceProfileARN": "arn:aws:iam::123456789012:instance-profile/old",
              "SecurityGroupID": "sg-0123456789abcdef0"}
    block = original_stacks.user_config_block(theirs, (pool.access_key_file,
                                                       pool.secret_key_file))
    with open(pool.user_config_file, "w", encoding="utf-8") as handle:
        handle.write(block)
    try:
        created = run_annex("-annex-name", "old-config", "-lease-duration", "600",
                            *with_keys, SPOT_CONFIG)
        assert created.returncode == 4  # no lease function: the old knobs are not it
        for knob in ("ANNEX_DEFAULT_SFR_LEASE_FUNCTION_ARN",
                     "ANNEX_DEFAULT_ODI_LEASE_FUNCTION_ARN"):
            assert f"notice: {knob} (the original condor_annex's lease function) is not used" \
                in created.stderr
        assert f"not using us_east_1.ANNEX_DEFAULT_S3_BUCKET = {theirs['S3BucketName']}" \
            in created.stderr
        created = run_annex("-annex-name", "old-config", "-lease-duration", "600",
                            "-lease-function-arn", aws.lease_arn, *with_keys, SPOT_CONFIG)
        assert created.returncode == 0, created.stderr
        held = aws.annex_resources("old-config", bucket=BUCKET)
        assert len(held["objects"]) == 1  # in the admin's bucket
    finally:
        with open(pool.user_config_file, "w", encoding="utf-8") as handle:
            handle.write("")


def test_a_users_own_bucket_is_said_to_override_the_admins(aws, pool, run_annex, with_keys):
    fixtures.create_bucket(aws.s3, "users-own-bucket", "us-east-1")
    with open(pool.user_config_file, "w", encoding="utf-8") as handle:
        handle.write("ANNEX_DEFAULT_S3_BUCKET = users-own-bucket\n")
    try:
        created = run_annex("-annex-name", "own-bucket", "-lease-duration", "600",
                            "-lease-function-arn", aws.lease_arn, *with_keys, SPOT_CONFIG)
    finally:
        with open(pool.user_config_file, "w", encoding="utf-8") as handle:
            handle.write("")
    assert created.returncode == 0, created.stderr
    assert f"the configuration bucket is yours, users-own-bucket (your ANNEX_DEFAULT_S3_BUCKET)" \
           f", not the admin's {BUCKET}" in created.stderr
