"""An annex paid by the daemon's AWS identity uses the admin's lease function and bucket only:
another one is refused with the reason, and nothing is made (issue 17, finding 5)."""
from __future__ import annotations

import pytest

from localaws import fixtures
from localaws.pool import REGION, AnnexDaemon, LocalPool

from conftest import BUCKET, SECRET, SPOT_CONFIG
from test_recovery import FLEET_ROLE

DAEMON_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


@pytest.fixture
def daemon_paid(aws, moto_server, tmp_path):
    pool = LocalPool(str(tmp_path)).write(moto_server.url, secret=SECRET, extra="\n".join([
        "ANNEXD_ALLOW_DAEMON_CREDENTIALS = true", FLEET_ROLE,
        f"ANNEX_DEFAULT_LEASE_FUNCTION_ARN = {aws.lease_arn}"]))
    with AnnexDaemon(pool, DAEMON_CREDENTIALS):
        yield pool


def other_function(aws) -> str:
    """A function of the user's choosing (say, one that never ends anything)."""
    role = aws.iam.get_role(RoleName="HTCondorAnnex-LeaseFunction-Role")["Role"]["Arn"]
    return aws.lambda_.create_function(FunctionName="never-ends-anything",
                                       Runtime="python3.12", Role=role,
                                       Handler="lease.handler",
                                       Code={"ZipFile": b"PK"})["FunctionArn"]


def nothing_made(aws) -> bool:
    return aws.all_fleets() == [] and aws.events.list_rules()["Rules"] == [] and \
        aws.s3.list_objects_v2(Bucket=BUCKET).get("KeyCount", 0) == 0


def test_a_user_chosen_lease_function_is_refused(aws, daemon_paid):
    """Was: any -lease-function-arn was accepted; the daemon's account then had only the
    backstop to end the annex."""
    arn = other_function(aws)
    result = daemon_paid.condor_annex("-annex-name", "mine", "-count", "1",
                                      "-lease-function-arn", arn, SPOT_CONFIG, keys=False)
    assert result.returncode == 4, result.stderr
    assert f"-lease-function-arn {arn!r} is not the admin's " \
           f"(ANNEX_DEFAULT_LEASE_FUNCTION_ARN = {aws.lease_arn} for {REGION})" in result.stderr
    assert "uses only the admin's lease function, bucket, instance profile, key pair, Spot " \
        "Fleet role and user data" in result.stderr
    assert nothing_made(aws)


def test_a_user_chosen_bucket_is_refused(aws, daemon_paid):
    """Was: the user's bucket was dropped without a word."""
    fixtures.create_bucket(aws.s3, "users-own-bucket", REGION)
    with open(daemon_paid.user_config_file, "w", encoding="utf-8") as handle:
        handle.write("ANNEX_DEFAULT_S3_BUCKET = users-own-bucket\n")
    result = daemon_paid.condor_annex("-annex-name", "mine", "-count", "1", SPOT_CONFIG,
                                      keys=False)
    assert result.returncode == 4, result.stderr
    assert f"the configuration bucket 'users-own-bucket' is not the admin's " \
           f"(ANNEX_DEFAULT_S3_BUCKET = {BUCKET} for {REGION})" in result.stderr
    assert nothing_made(aws)
    assert aws.s3.list_objects_v2(Bucket="users-own-bucket").get("KeyCount", 0) == 0


def test_the_admins_choices_pass_and_own_keys_may_choose(aws, daemon_paid):
    paid = daemon_paid.condor_annex("-annex-name", "paid", "-count", "1", SPOT_CONFIG,
                                    keys=False)
    assert paid.returncode == 0, paid.stderr
    [target] = aws.events.list_targets_by_rule(Rule="paid")["Targets"]
    assert target["Arn"] == aws.lease_arn
    arn = other_function(aws)
    own = daemon_paid.condor_annex("-annex-name", "own", "-count", "1", "-lease-function-arn",
                                   arn, SPOT_CONFIG)  # the user's keys, the user's choice
    assert own.returncode == 0, own.stderr
    [target] = aws.events.list_targets_by_rule(Rule="own")["Targets"]
    assert target["Arn"] == arn
