"""An annex paid by the daemon's AWS identity uses the admin's lease function and bucket only:
another one is refused with the reason, and nothing is made (issue 17, finding 5)."""
from __future__ import annotations

import json

import pytest

from localaws import fixtures
from localaws.pool import REGION, AnnexDaemon, LocalPool

from conftest import BUCKET, SECRET, SPOT_CONFIG
from test_recovery import FLEET_ROLE, KNOBS, annex, crash, unfinished

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


# -- finding 7 of issue 23: everything that decides what the instances may do is the admin's

USERS_PROFILE = "arn:aws:iam::123456789012:instance-profile/users-own"
CHOICES = {  # what the user's fleet config chooses -> what the refusal names
    "IamInstanceProfile": ({"Arn": USERS_PROFILE}, f"the instance profile '{USERS_PROFILE}'"),
    "KeyName": ("users-own-key", "the key pair 'users-own-key'"),
    "UserData": ("IyEvYmluL3NoCmN1cmwgMTY5LjI1NC4xNjkuMjU0", "the user data '40 base64"),
}


def fleet_config(tmp_path, **spec) -> str:
    with open(SPOT_CONFIG, encoding="utf-8") as handle:
        config = json.load(handle)
    config["LaunchSpecifications"][0].update(spec)
    path = str(tmp_path / "fleet.json")
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(config, handle)
    return path


@pytest.mark.parametrize("field", sorted(CHOICES))
def test_a_user_chosen_profile_key_pair_or_user_data_is_refused(aws, daemon_paid, tmp_path,
                                                               field):
    """Was: a daemon-paid annex took the user's instance profile, key pair and user data:
    user data that reads the instance's credentials gives a local user root on an instance
    with whatever role the site passes."""
    value, named = CHOICES[field]
    config = fleet_config(tmp_path, **{field: value})
    result = daemon_paid.condor_annex("-annex-name", "mine", "-count", "1", config, keys=False)
    assert result.returncode == 4, result.stderr
    assert named in result.stderr and "is not the admin's" in result.stderr
    assert nothing_made(aws)


def test_a_user_chosen_fleet_role_is_refused(aws, daemon_paid, tmp_path):
    with open(SPOT_CONFIG, encoding="utf-8") as handle:
        config = json.load(handle)
    config["IamFleetRole"] = "arn:aws:iam::123456789012:role/users-own-fleet-role"
    path = tmp_path / "fleet.json"
    path.write_text(json.dumps(config), encoding="utf-8")
    result = daemon_paid.condor_annex("-annex-name", "mine", "-count", "1", str(path),
                                      keys=False)
    assert result.returncode == 4, result.stderr
    assert "the Spot Fleet role (IamFleetRole) 'arn:aws:iam::123456789012:role/users-own-" \
           "fleet-role' is not the admin's (ANNEX_DEFAULT_FLEET_ROLE_ARN = " in result.stderr
    assert nothing_made(aws)


def test_a_users_choice_is_refused_on_resume_too(aws, moto_server, tmp_path):
    """A create made with the user's keys (their instance profile), cut short, and repeated
    without keys: was resumed with the daemon's identity, the user's profile with it -- by
    the repeat, or by the daemon's own recovery at start-up."""
    pool = LocalPool(str(tmp_path)).write(moto_server.url, secret=SECRET, extra="\n".join([
        KNOBS, f"ANNEX_DEFAULT_LEASE_FUNCTION_ARN = {aws.lease_arn}"]))
    config = fleet_config(tmp_path, IamInstanceProfile={"Arn": USERS_PROFILE})
    crash(pool, "EventBridge PutRule:before", "-lease-duration", "3600", keys=True,
          config=config)
    with AnnexDaemon(pool, DAEMON_CREDENTIALS):  # recovery: not with the daemon's identity
        assert unfinished(pool) == [("phoenix", "interrupted")]
        again = annex(pool, "-lease-duration", "3600", config=config)
        assert again.returncode == 4, again.stderr
        assert f"the instance profile '{USERS_PROFILE}' is not the admin's" in again.stderr
        assert unfinished(pool) == [("phoenix", "interrupted")]
        assert nothing_made(aws)
    with open(pool.log_file, encoding="utf-8") as handle:
        assert "annex phoenix: not resumed with condor_annexd's identity: the instance " \
               "profile" in handle.read()
