"""The payer is fixed at create (issue 23, requirement 4): the AWS account whose keys created an
annex is in its journal row before the first call that makes anything, and every later
operation acts only with keys of that account -- otherwise it says so and changes nothing.

"Another account" is the emulator's: keys from STS AssumeRole into a role of account
222222222222 act there (moto keeps one backend per account), the daemon's own keys and the
pool's key files act in 123456789012.
"""
from __future__ import annotations

import json
import os
import sqlite3
from dataclasses import dataclass

import boto3
import pytest

from localaws import fixtures
from localaws.pool import REGION, AnnexDaemon, LocalPool

from conftest import SECRET
from test_recovery import DAEMON_CREDENTIALS, KNOBS, annex, crash, live_fleets

OTHER_ACCOUNT = "222222222222"
OTHER_BUCKET = "other-accounts-bucket"


@dataclass
class OtherAccount:
    """Keys of account 222222222222 in files condor_annex can be given, and its clients."""

    access_file: str
    secret_file: str
    ec2: object
    events: object
    lease_arn: str

    @property
    def key_args(self) -> list[str]:
        return ["-public-key-file", self.access_file, "-secret-key-file", self.secret_file]


def other_account(url: str, root: str) -> OtherAccount:
    sts = boto3.client("sts", endpoint_url=url, region_name=REGION,
                       aws_access_key_id="testing", aws_secret_access_key="testing")
    keys = sts.assume_role(RoleArn=f"arn:aws:iam::{OTHER_ACCOUNT}:role/payer",
                           RoleSessionName="payer")["Credentials"]
    session = boto3.session.Session(aws_access_key_id=keys["AccessKeyId"],
                                    aws_secret_access_key=keys["SecretAccessKey"],
                                    region_name=REGION)
    clients = {name: session.client(name, endpoint_url=url)
               for name in ("ec2", "events", "s3", "iam", "lambda")}
    fixtures.create_bucket(clients["s3"], OTHER_BUCKET, REGION)
    lease_arn = fixtures.deploy_lease_function(clients["iam"], clients["lambda"])
    assert f":{OTHER_ACCOUNT}:" in lease_arn
    folder = os.path.join(root, "other-keys")
    os.makedirs(folder, exist_ok=True)
    files = []
    for name, text in (("access", keys["AccessKeyId"]), ("secret", keys["SecretAccessKey"])):
        path = os.path.join(folder, name)
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(text + "\n")
        os.chmod(path, 0o600)
        files.append(path)
    return OtherAccount(files[0], files[1], clients["ec2"], clients["events"], lease_arn)


@pytest.fixture
def payer_pool(aws, moto_server, tmp_path) -> LocalPool:
    return LocalPool(str(tmp_path)).write(moto_server.url, secret=SECRET, extra="\n".join([
        KNOBS, f"ANNEX_DEFAULT_LEASE_FUNCTION_ARN = {aws.lease_arn}"]))


def rows(pool: LocalPool) -> list[tuple[str, str, str, str]]:
    with sqlite3.connect(pool.journal_file) as db:
        return db.execute("SELECT annex_id, state, payer_account, payer_principal"
                          " FROM requests ORDER BY id").fetchall()


def test_the_payer_is_journaled_before_anything_is_made(aws, payer_pool, moto_server):
    other = other_account(moto_server.url, payer_pool.root)
    with open(payer_pool.user_config_file, "w", encoding="utf-8") as handle:
        handle.write(f"ANNEX_DEFAULT_S3_BUCKET = {OTHER_BUCKET}\n")
    crash(payer_pool, "EventBridge PutRule:before", "-lease-duration", "3600",
          "-lease-function-arn", other.lease_arn, *other.key_args)
    [(name, state, account, principal)] = rows(payer_pool)
    assert (name, account) == ("phoenix", OTHER_ACCOUNT)
    assert principal == f"arn:aws:sts::{OTHER_ACCOUNT}:assumed-role/payer/payer"


def test_a_resumed_create_without_keys_stays_in_the_account_that_pays(aws, payer_pool,
                                                                        moto_server):
    """Finding 5: Alice created with keys of account B, B's lease function and her own
    bucket; the daemon died at PutRule; she repeated the create without keys.  Was: the
    resume ran with the daemon's identity -- the fleet and its instances in the site's
    account, the rule there aimed at B's function, the backstop never covering it."""
    other = other_account(moto_server.url, payer_pool.root)
    with open(payer_pool.user_config_file, "w", encoding="utf-8") as handle:
        handle.write(f"ANNEX_DEFAULT_S3_BUCKET = {OTHER_BUCKET}\n")
    crash(payer_pool, "EventBridge PutRule:before", "-lease-duration", "3600",
          "-lease-function-arn", other.lease_arn, *other.key_args)
    with AnnexDaemon(payer_pool, DAEMON_CREDENTIALS):  # recovery leaves it to its owner
        assert [row[:2] for row in rows(payer_pool)] == [("phoenix", "interrupted")]
        # The repeat names only the admin's choices (what a daemon-paid create may): the
        # parked request's own plan is what a resume would use.
        os.remove(payer_pool.user_config_file)
        again = annex(payer_pool, "-lease-duration", "3600")
        assert again.returncode == 4, again.stderr
        assert ("annex 'phoenix' lives in account 2222…; condor_annexd's own AWS identity "
                "is for 1234…: use keys of that account; nothing was changed") in again.stderr
        # Nothing in the daemon's account, the request still parked for its owner.
        assert aws.all_fleets() == [] and aws.events.list_rules()["Rules"] == []
        assert [row[:2] for row in rows(payer_pool)] == [("phoenix", "interrupted")]
        # With keys of the account that pays, it resumes there.
        resumed = annex(payer_pool, "-lease-duration", "3600", "-lease-function-arn",
                        other.lease_arn, *other.key_args)
        assert resumed.returncode == 0, resumed.stderr
    assert aws.all_fleets() == []
    assert len(other.ec2.describe_spot_fleet_requests()["SpotFleetRequestConfigs"]) == 1
    assert [rule["Name"] for rule in other.events.list_rules()["Rules"]] == ["phoenix"]


def status_json(pool: LocalPool, *keys: str):
    shown = pool.condor_annex("-annex-name", "alpha", "-status", "-json", *keys, keys=not keys)
    return shown, json.loads(shown.stdout) if shown.stdout.strip() else None


def test_another_accounts_keys_neither_see_nor_end_an_annex(aws, payer_pool, moto_server):
    """Finding 6: with keys of another account, -status showed `lease: missing` and 0
    instances for an annex running 2, and -off exited 0, marked the row ended, and left its
    fleet, instances and rule running."""
    other = other_account(moto_server.url, payer_pool.root)
    with AnnexDaemon(payer_pool, DAEMON_CREDENTIALS):
        made = annex(payer_pool, "-lease-duration", "3600", keys=True, name="alpha")
        assert made.returncode == 0, made.stderr
        shown, [report] = status_json(payer_pool, *other.key_args)
        assert shown.returncode == 0, shown.stderr
        assert report["lease"] == "unknown" and report["instances"] is None, report
        assert "annex 'alpha' lives in account 1234…; these keys are for 2222…" in shown.stderr
        off = payer_pool.condor_annex("-annex-name", "alpha", "-off", *other.key_args,
                                      keys=False)
        assert off.returncode == 4, off.stderr
        assert "annex 'alpha' lives in account 1234…; these keys are for 2222…" in off.stderr
        extend = payer_pool.condor_annex("-annex-name", "alpha", "-lease-duration", "7200",
                                         *other.key_args, keys=False)
        assert extend.returncode == 4 and "lives in account 1234…" in extend.stderr
        assert [row[:2] for row in rows(payer_pool)] == [("alpha", "active")]
        held = aws.annex_resources("alpha")
        assert len(live_fleets(aws, "alpha")) == 1 and len(held["instances"]) == 2
        assert held["rules"] == ["alpha"] and held["targets"] == ["alpha"]
        # The owner's own keys still see it as it is.
        shown, [report] = status_json(payer_pool)
        assert report["lease"] == "enforced" and report["instances"] == {"running": 2}
