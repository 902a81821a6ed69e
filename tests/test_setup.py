"""End to end: condor_annex -setup / -check-setup against moto's CloudFormation over HTTP."""
from __future__ import annotations

import json
import os
import subprocess

import pytest

from annexd.aws import leasecode
from annexd.aws.stacks import STACKS
from localaws.pool import AnnexDaemon, LocalPool, run_program, script

from conftest import SECRET, SPOT_CONFIG

STACK_NAMES = [spec.name for spec in STACKS]
USERS_OWN = "# my own settings\nMY_FAVOURITE_KNOB = 42\n"


@pytest.fixture
def setup_pool(empty_aws, moto_server, tmp_path):
    """A pool whose admin configured no bucket and no lease function: -setup must."""
    pool = LocalPool(str(tmp_path)).write(moto_server.url, secret=SECRET, bucket=None)
    with open(pool.user_config_file, "w", encoding="utf-8") as handle:
        handle.write(USERS_OWN)
    with AnnexDaemon(pool) as daemon:
        yield pool
    assert daemon.process.returncode == 0


def annex(pool: LocalPool, *args: str) -> subprocess.CompletedProcess:
    return run_program([script("condor_annex"), *args], pool.env(), timeout=300)


def setup(pool: LocalPool) -> subprocess.CompletedProcess:
    return annex(pool, "-setup", pool.access_key_file, pool.secret_key_file)


def read(path: str) -> str:
    with open(path, encoding="utf-8") as handle:
        return handle.read()


def test_setup_then_create_without_a_lease_arn(empty_aws, setup_pool):
    aws = empty_aws
    first = setup(setup_pool)
    assert first.returncode == 0, first.stderr
    assert "creating configuration bucket (HTCondorAnnex-ConfigurationBucket): complete" \
        in first.stdout
    assert "Setup successful" in first.stdout
    stacks = {s["StackName"]: s for s in aws.cloudformation.describe_stacks()["Stacks"]}
    assert sorted(stacks) == sorted(STACK_NAMES)
    assert {s["StackStatus"] for s in stacks.values()} == {"CREATE_COMPLETE"}

    written = read(setup_pool.user_config_file)
    assert written.startswith(USERS_OWN)
    bucket = next(o["OutputValue"] for o in stacks[STACK_NAMES[0]]["Outputs"])
    for line in ("ANNEX_DEFAULT_AWS_REGION = us-east-1",
                 f"us_east_1.ANNEX_DEFAULT_S3_BUCKET = {bucket}",
                 "us_east_1.ANNEX_DEFAULT_LEASE_FUNCTION_ARN = arn:aws:lambda:us-east-1:",
                 "us_east_1.ANNEX_DEFAULT_ODI_INSTANCE_PROFILE_ARN = arn:aws:iam::",
                 "us_east_1.ANNEX_DEFAULT_ODI_SECURITY_GROUP_IDS = sg-",
                 f"us_east_1.ANNEX_DEFAULT_SECRET_KEY_FILE = {setup_pool.secret_key_file}"):
        assert line in written
    assert SECRET not in written + first.stdout + first.stderr

    arn = aws.lambda_.list_functions()["Functions"][0]["FunctionArn"]
    assert aws.lambda_.get_function(FunctionName=arn)["Configuration"]["CodeSha256"] == \
        leasecode.code_sha256()

    again = setup(setup_pool)
    assert again.returncode == 0, again.stderr
    assert again.stdout.count(": up to date") == len(STACKS)
    assert "nothing to change" in again.stdout
    assert read(setup_pool.user_config_file) == written
    assert all("LastUpdatedTime" not in s
               for s in aws.cloudformation.describe_stacks()["Stacks"])

    created = annex(setup_pool, "-annex-name", "after-setup", "-lease-duration", "3600",
                    "-count", "1", SPOT_CONFIG)
    assert created.returncode == 0, created.stderr
    held = aws.annex_resources("after-setup", bucket=bucket)
    assert len(held["fleets"]) == 1 and len(held["objects"]) == 1
    [target] = aws.events.list_targets_by_rule(Rule="after-setup")["Targets"]
    assert target["Arn"] == arn

    checked = annex(setup_pool, "-check-setup")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "Your setup of us-east-1 looks OK." in checked.stdout

    aws.cloudformation.delete_stack(StackName="HTCondorAnnex-SecurityGroup")
    broken = annex(setup_pool, "-check-setup")
    assert broken.returncode == 9
    problems = [line for line in broken.stdout.splitlines() if "problem:" in line]
    assert len(problems) == 2, broken.stdout  # the group instances would get, and its stack
    assert problems[0].startswith("condor_annex: problem: security group: sg-")
    assert "HTCondorAnnex-SecurityGroup is missing: run condor_annex -aws-region us-east-1 -setup" in problems[1]


def test_setup_keeps_the_users_own_settings(empty_aws, setup_pool):
    with open(setup_pool.user_config_file, "a", encoding="utf-8") as handle:
        handle.write("us_east_1.ANNEX_DEFAULT_ODI_SECURITY_GROUP_IDS = sg-mine\n")
    result = setup(setup_pool)
    assert result.returncode == 0, result.stderr
    assert "keeping your own us_east_1.ANNEX_DEFAULT_ODI_SECURITY_GROUP_IDS" in result.stderr
    written = read(setup_pool.user_config_file)
    assert written.count("ANNEX_DEFAULT_ODI_SECURITY_GROUP_IDS") == 1
    assert "us_east_1.ANNEX_DEFAULT_ODI_SECURITY_GROUP_IDS = sg-mine" in written


def test_check_setup_finds_stale_code_missing_knobs_and_loose_keys(empty_aws, setup_pool):
    assert annex(setup_pool, "-check-setup").returncode == 9  # nothing set up yet
    assert setup(setup_pool).returncode == 0
    arn = empty_aws.lambda_.list_functions()["Functions"][0]["FunctionArn"]
    empty_aws.lambda_.update_function_code(FunctionName=arn, ZipFile=b"PK-not-our-code")
    os.chmod(setup_pool.secret_key_file, 0o644)
    result = annex(setup_pool, "-check-setup")
    os.chmod(setup_pool.secret_key_file, 0o600)
    assert result.returncode == 9
    assert "accessible only by you" in result.stdout
    result = annex(setup_pool, "-check-setup")
    assert result.returncode == 9
    assert "runs other code than this release ships" in result.stdout
    assert setup(setup_pool).returncode == 0  # -setup brings the code back
    assert annex(setup_pool, "-check-setup").returncode == 0


def test_setup_usage_errors(setup_pool):
    result = annex(setup_pool, "-setup", "only-one-file")
    assert result.returncode == 1 and "takes no arguments or two" in result.stderr
    result = annex(setup_pool, "-setup", "-count", "3")
    assert result.returncode == 1 and "-count cannot be used here" in result.stderr
    result = annex(setup_pool, "-aws-region", "moon-base", "-check-setup")
    assert result.returncode == 1 and "not an AWS region name" in result.stderr


def test_an_unwritable_user_config_gets_the_lines_printed(empty_aws, setup_pool, tmp_path):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    setup_pool.add_knobs(f"USER_CONFIG_FILE = {blocker}/user_config\n")
    result = setup(setup_pool)
    assert result.returncode == 2
    assert "setup succeeded but" in result.stderr and "cannot be written" in result.stderr
    assert "us_east_1.ANNEX_DEFAULT_LEASE_FUNCTION_ARN = arn:aws:lambda:" in result.stdout
    assert "Traceback" not in result.stderr


def test_check_setup_is_right_for_a_user_set_up_as_readme_says(empty_aws, moto_server,
                                                                tmp_path):
    """Finding 7: the admin runs -setup and copies the region's block, without the two
    key-file knobs, into 81annexd-site (README, install step 9); the user's keys are in
    ~/.condor/publicKeyFile and privateKeyFile.  -check-setup then exited 9 ("…KEY_FILE is
    not set … run -setup", which the user's policy cannot run) and looked at none of what a
    create uses.  Now it checks each thing, one line each, and says OK; and the create
    works."""
    pool = LocalPool(str(tmp_path / "site")).write(moto_server.url, secret=SECRET,
                                                   bucket=None, join=False)
    with AnnexDaemon(pool):
        assert setup(pool).returncode == 0
        block = [line for line in read(pool.user_config_file).splitlines()
                 if "KEY_FILE" not in line]
        with open(os.path.join(pool.config_dir, "81annexd-site"), "w",
                  encoding="utf-8") as site:
            site.write("\n".join(block) + "\n")
        os.remove(pool.user_config_file)  # that was the admin's; the user has none
        home = tmp_path / "alice"
        (home / ".condor").mkdir(parents=True)
        for name, source in (("publicKeyFile", pool.access_key_file),
                             ("privateKeyFile", pool.secret_key_file)):
            (home / ".condor" / name).write_text(read(source))
            os.chmod(home / ".condor" / name, 0o600)

        def as_user(*args: str) -> subprocess.CompletedProcess:
            return run_program([script("condor_annex"), *args], {**pool.env(), "HOME": str(home)}, timeout=300)

        checked = as_user("-check-setup")
        assert checked.returncode == 0, checked.stdout + checked.stderr
        lines = checked.stdout.splitlines()
        assert [line.split(":")[2].strip() for line in lines[:-1]] == [
            "credentials", "bucket", "lease function", "instance profile", "security group",
            "signing key", "setup stacks"]
        assert all(line.startswith("condor_annex: ok: ") for line in lines[:-1])
        assert f"{home}/.condor/publicKeyFile" in lines[0] and "123456789012" in lines[0]
        assert "EventBridge rules may invoke it" in lines[2]
        assert lines[-1] == "Your setup of us-east-1 looks OK."

        created = as_user("-annex-name", "checked", "-lease-duration", "600", "-count", "1",
                          SPOT_CONFIG)
        assert created.returncode == 0, created.stderr

        # What it finds when the lease function could not be called by its rules.
        [function] = empty_aws.lambda_.list_functions()["Functions"]
        policy = json.loads(empty_aws.lambda_.get_policy(
            FunctionName=function["FunctionArn"])["Policy"])
        for statement in policy["Statement"]:
            empty_aws.lambda_.remove_permission(FunctionName=function["FunctionArn"],
                                                StatementId=statement["Sid"])
        broken = as_user("-check-setup")
        assert broken.returncode == 9
        [problem] = [line for line in broken.stdout.splitlines() if "problem:" in line]
        assert problem.startswith("condor_annex: problem: lease function: arn:aws:lambda:")
        assert "does not let EventBridge rules invoke it" in problem


def test_setup_runs_its_stacks_as_the_service_role_and_bounds_their_roles(
        empty_aws, moto_server, tmp_path):
    """Issue 23 requirement 3: with ANNEX_SETUP_SERVICE_ROLE_ARN every stack is made as that
    role (RoleARN), and the stacks that make IAM roles get its boundary for them."""
    role = "arn:aws:iam::123456789012:role/HTCondorAnnex-SetupRole"
    pool = LocalPool(str(tmp_path)).write(moto_server.url, secret=SECRET, bucket=None,
                                          extra=f"ANNEX_SETUP_SERVICE_ROLE_ARN = {role}")
    with AnnexDaemon(pool):
        done = setup(pool)
    assert done.returncode == 0, done.stderr
    boundary = "arn:aws:iam::123456789012:policy/HTCondorAnnex-SetupBoundary"
    bounded = {}
    for name in STACK_NAMES:
        [stack] = empty_aws.cloudformation.describe_stacks(StackName=name)["Stacks"]
        assert stack.get("RoleARN") == role, (name, stack.get("RoleARN"))
        parameters = {p["ParameterKey"]: p["ParameterValue"] for p in stack["Parameters"]}
        bounded[name] = parameters.get("PermissionsBoundary")
    assert bounded == {"HTCondorAnnex-ConfigurationBucket": None,
                       "HTCondorAnnex-LambdaFunctions": boundary,
                       "HTCondorAnnex-InstanceProfile": boundary,
                       "HTCondorAnnex-SecurityGroup": None}

