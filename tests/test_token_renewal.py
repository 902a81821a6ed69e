"""Short tokens, renewed (issue 23, requirement 6; findings 9 and 10).

A token lives at most ANNEX_TOKEN_LIFETIME past its minting and never past the lease end plus
the grace; the daemon renews each live annex's token when half its life is left, with one
PutObject; -off ends renewal at once; and no live annex's config object gets old enough for
the bucket's lifecycle to delete it.  The daemon's service runs in this process against the
emulator, on a clock the test moves: no test sleeps.
"""
from __future__ import annotations

import dataclasses
import io
import json
import os
import tarfile
import time

import jwt
import pytest
import yaml

from annexd.aws.identity import DaemonIdentity
from annexd.commands import renew
from annexd.config import knobs
from annexd.config.knobs import DaemonSettings, KnobError
from annexd.instance_config import idtoken
from annexd.rpc.service import AnnexService, Peer
from annexd.state.journal import Journal
from localaws import fixtures
from localaws.iamactions import Resources, requests_of
from localaws.iampolicy import as_principal
from localaws.pool import BUCKET, REGION, LocalPool
from localaws.recorder import Recorder

from conftest import SECRET, SPOT_CONFIG
from test_annex_tokens import TRUST_DOMAIN, htcondor_jwt_key
from iam_scenarios import ACCOUNT, Facts
from test_iam_calls import daemon_policy, principal_keys, refused, user_policy
from test_recovery import FLEET_ROLE

LIFETIME = 600
KEYS = {"access_key_id": "testing", "secret_access_key": "testing"}
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Clock:
    """The daemon's clock, moved by the test."""

    def __init__(self) -> None:
        self.now = float(int(time.time()))

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def daemon(aws, moto_server, tmp_path, monkeypatch):
    """The daemon's service on a test clock, with an identity of the emulator's account."""
    pool = LocalPool(str(tmp_path)).write(moto_server.url, secret=SECRET, extra="\n".join([
        f"TRUST_DOMAIN = {TRUST_DOMAIN}", f"ANNEX_TOKEN_LIFETIME = {LIFETIME}",
        "ANNEXD_ALLOW_DAEMON_CREDENTIALS = true", FLEET_ROLE,
        f"ANNEX_DEFAULT_LEASE_FUNCTION_ARN = {aws.lease_arn}"]))
    monkeypatch.setenv("CONDOR_CONFIG", pool.config_file)
    knobs.reload()
    clock = Clock()
    journal = Journal(str(tmp_path / "journal.sqlite"))
    service = AnnexService(DaemonSettings.load(), journal, clock=clock,
                           daemon_identity=DaemonIdentity("test", "123456789012", KEYS))
    service.pool, service.test_clock = pool, clock
    yield service
    journal.close()
    monkeypatch.undo()
    knobs.reload()


def create(service: AnnexService, name: str, lease: int, **keys: dict) -> dict:
    """A create paid by the daemon (``credentials=KEYS``: with a user's keys)."""
    with open(SPOT_CONFIG, encoding="utf-8") as handle:
        config = json.load(handle)
    reply = service.handle({"version": 1, "command": "create", **keys, "annex": {
        "name": name, "lease_duration": lease, "count": 1, "fleet_config": config}},
        Peer(pid=1, uid=os.getuid(), gid=os.getgid()))
    assert reply["ok"], reply
    return reply


def stored(aws, name: str) -> tuple[dict, dict]:
    """(the token's claims, the object's metadata) of the annex's config object now."""
    key = aws.config_key(name)
    reply = aws.s3.get_object(Bucket=BUCKET, Key=key)
    with tarfile.open(fileobj=io.BytesIO(reply["Body"].read()), mode="r:gz") as archive:
        token = archive.extractfile(f".annex-{name}/tokens.d/annex").read().decode()
    return token, reply["Metadata"]


def claims(service: AnnexService, token: str) -> dict:
    return jwt.decode(token, htcondor_jwt_key(service.pool.password_file, "POOL"),
                      algorithms=["HS256"], issuer=TRUST_DOMAIN,
                      options={"verify_exp": False, "verify_iat": False})


def test_a_token_lives_at_most_its_lifetime(aws, daemon):
    """Finding 9: a token's exp was the lease end + 900 s; a 30-day annex's token verified
    30 days after -off."""
    create(daemon, "month", 30 * 86400)
    token, _ = stored(aws, "month")
    minted = claims(daemon, token)
    assert minted["iat"] == int(daemon.test_clock.now)
    assert minted["exp"] <= minted["iat"] + LIFETIME
    # Never past the lease end plus the grace, either.
    assert idtoken.expiry(lease_end=1000, now=0, lifetime=7200) == 1000 + idtoken.GRACE_SECONDS
    assert idtoken.expiry(lease_end=10**6, now=0, lifetime=7200) == 7200


def test_the_token_is_renewed_at_half_its_life_with_one_write(aws, daemon):
    create(daemon, "renewing", 4 * 3600)
    start = daemon.test_clock.now
    first, metadata = stored(aws, "renewing")
    assert "annex-token-minted" not in metadata
    daemon.test_clock.now = start + LIFETIME / 2 - 1
    assert renew.renew_due(daemon.context()) == []
    assert stored(aws, "renewing")[0] == first  # not yet: nothing written
    daemon.test_clock.now = start + LIFETIME / 2
    assert renew.renew_due(daemon.context()) == ["renewing"]
    second, metadata = stored(aws, "renewing")
    renewed = claims(daemon, second)
    old = claims(daemon, first)
    assert renewed["iat"] == int(start + LIFETIME / 2) and \
        renewed["exp"] == renewed["iat"] + LIFETIME > old["exp"]
    assert (renewed["jti"], renewed["sub"], renewed["scope"]) == \
        (old["jti"], old["sub"], old["scope"])
    assert metadata == {"annex-lease-expiration": str(int(start) + 4 * 3600),
                        "annex-token-minted": str(renewed["iat"])}
    assert renew.renew_due(daemon.context()) == []  # one write per renewal
    [row] = daemon.journal.live_rows()
    assert row["state"] == "active" and row["token_minted"] == start + LIFETIME / 2


def test_off_ends_renewal_at_once(aws, daemon):
    create(daemon, "ending", 4 * 3600)
    reply = daemon.handle({"version": 1, "command": "off", "name": "ending"}, Peer(pid=1, uid=os.getuid(), gid=os.getgid()))
    assert reply["ok"], reply
    daemon.test_clock.now += LIFETIME
    assert renew.renew_due(daemon.context()) == []
    assert aws.annex_resources("ending")["objects"] == []


def test_a_token_that_reaches_the_lease_end_is_not_renewed():
    grace = idtoken.GRACE_SECONDS
    assert idtoken.renewal_due(minted=0, lease_end=10**6, lifetime=600) == 300
    assert idtoken.renewal_due(minted=0, lease_end=600 - grace, lifetime=600) == float("inf")


def test_no_lease_is_cut_short_by_the_buckets_lifecycle(aws, daemon):
    """Finding 10: leases longer than 7 days ended on day 7, when the bucket's lifecycle
    deleted config-* objects older than ConfigExpirationDays.  Renewal rewrites each live
    annex's object: over an 8-day lease, passes as the daemon makes them, the object is never
    older (in the daemon's clock) than the shortest lifecycle the bucket template allows."""
    with open(os.path.join(ROOT, "cfn", "bucket.yaml"), encoding="utf-8") as handle:
        days = yaml.load(handle, Loader=yaml.BaseLoader)["Parameters"]["ConfigExpirationDays"]
    shortest = int(days["MinValue"]) * 86400
    lifetime = 7200  # the default: a renewal an hour
    daemon.reconfigure(dataclasses.replace(daemon.settings, pool=dataclasses.replace(
        daemon.settings.pool, token_lifetime=lifetime), lease_check_interval=900))
    create(daemon, "long", 8 * 86400)
    key = aws.config_key("long")  # the request's key: every renewal rewrites that object
    start = written = daemon.test_clock.now
    step = renew.pass_interval(daemon.settings)
    assert step == 900
    oldest = 0.0
    while daemon.test_clock.now < start + 8 * 86400 - step:
        daemon.test_clock.now += step
        if renew.renew_due(daemon.context()):
            metadata = aws.s3.head_object(Bucket=BUCKET, Key=key)["Metadata"]
            written = float(metadata["annex-token-minted"])
        oldest = max(oldest, daemon.test_clock.now - written)
    assert oldest <= lifetime / 2 + step < shortest


def test_without_a_minted_token_the_object_is_still_rewritten(aws, daemon):
    with open(SPOT_CONFIG, encoding="utf-8") as handle:
        config = json.load(handle)
    reply = daemon.handle({"version": 1, "command": "create", "annex": {
        "name": "own", "lease_duration": 3 * 86400, "count": 1, "fleet_config": config,
        "idtoken": "users-own-token"}}, Peer(pid=1, uid=os.getuid(), gid=os.getgid()))
    assert reply["ok"], reply
    daemon.test_clock.now += renew.TOUCH_SECONDS - 1
    assert renew.renew_due(daemon.context()) == []
    daemon.test_clock.now += 1
    assert renew.renew_due(daemon.context()) == ["own"]
    assert stored(aws, "own")[0] == "users-own-token"  # the user's token, untouched


def user_keys(moto_server, name: str) -> dict[str, str]:
    """Keys of an IAM user of the emulator's account: another principal than the daemon's
    identity (STS names it with its own aws:userid, its objects' prefix)."""
    iam = fixtures.client("iam", moto_server.url, REGION)
    iam.create_user(UserName=name)
    made = iam.create_access_key(UserName=name)["AccessKey"]
    return {"access_key_id": made["AccessKeyId"], "secret_access_key": made["SecretAccessKey"]}


def test_an_annex_made_with_a_users_keys_is_renewed_by_the_daemon(aws, daemon, moto_server):
    """Requirement 6: the common case.  The daemon's identity, holding cfn/daemon-policy.json,
    renews the token of an annex made with a user's own keys -- an object under that user's
    prefix, which the user policy would refuse it -- and its create has no notice about it.
    The renewal's calls, as recorded by the emulator, are judged against the daemon policy
    with the daemon identity's own aws:userid (the emulator enforces no IAM)."""
    keys = user_keys(moto_server, "alice-renew")
    reply = create(daemon, "alices", 4 * 3600, credentials=keys)
    assert not any("cannot renew" in n or "cannot rewrite" in n for n in reply["notices"])
    key = aws.config_key("alices")
    mine = principal_keys(moto_server.url, KEYS["access_key_id"])
    assert key.startswith("config-") and f"config-{mine['aws:userid']}/" not in key
    first, _ = stored(aws, "alices")
    daemon.test_clock.now += LIFETIME / 2
    with Recorder(moto_server.url) as recorder:
        assert renew.renew_due(daemon.context()) == ["alices"]
    renewed = claims(daemon, stored(aws, "alices")[0])
    assert renewed["iat"] == int(daemon.test_clock.now) and \
        renewed["exp"] > claims(daemon, first)["exp"]
    calls = [call for call in recorder.calls() if call.key_id == KEYS["access_key_id"]]
    requests = as_principal([r for _, r in requests_of(calls, Resources(ACCOUNT, {}, {}))],
                            mine)
    assert {r.action for r in requests} >= {"s3:PutObject"}
    assert refused(daemon_policy(Facts()), requests) == []
    assert refused(user_policy(Facts()), requests)  # what it was: never renewed


def test_an_annex_of_another_account_is_not_renewed_and_its_create_says_so(aws, daemon):
    """Only an annex whose payer account is the daemon identity's is renewable: the daemon's
    identity cannot write in another account.  (The emulator has one account: here the
    daemon's identity says it is in another.)"""
    daemon.reconfigure(daemon.settings, daemon_identity=DaemonIdentity(
        "test", "210987654321", KEYS))
    reply = create(daemon, "foreign", 4 * 3600, credentials=KEYS)
    assert any("condor_annexd cannot renew this annex's token" in notice
               for notice in reply["notices"]), reply
    # Nor can it copy the object for the fleet's instances (issue 23 req 5), and it says so.
    assert any("cannot give this annex's instances their own copies" in notice
               for notice in reply["notices"]), reply
    first = stored(aws, "foreign")[0]
    daemon.test_clock.now += LIFETIME
    assert renew.renew_due(daemon.context()) == []
    assert stored(aws, "foreign")[0] == first


@pytest.mark.parametrize("value", ["59", "0", "-5", "two hours"])
def test_a_token_lifetime_under_a_minute_is_refused(condor_config, value):
    condor_config(f"ANNEX_TOKEN_LIFETIME = {value}")
    with pytest.raises(KnobError, match="ANNEX_TOKEN_LIFETIME"):
        knobs.PoolSettings.load()


def test_each_instance_gets_its_own_copy_and_a_renewal_rewrites_it(aws, daemon, moto_server):
    """Issue 23 requirement 5: each instance reads only its own copy of the object.  A pass
    copies the object for the instance it sees (once: the next pass copies nothing), and a
    renewal rewrites the object and then each instance's copy -- one write per instance,
    not per annex.  Every call is the daemon policy's, as the daemon's own aws:userid."""
    from annexd.commands import copies
    made = create(daemon, "copied", 4 * 3600)
    assert not any("their own copies" in notice for notice in made.get("notices", [])), made
    [instance] = aws.annex_resources("copied")["instances"]
    assert aws.annex_resources("copied")["copies"] == []  # moto shows a fleet's profile late
    aws.ec2.associate_iam_instance_profile(  # as AWS shows it: the launch's profile
        IamInstanceProfile={"Arn": fixtures.JOIN_PROFILE_ARN}, InstanceId=instance)
    mine = principal_keys(moto_server.url, KEYS["access_key_id"])
    with Recorder(moto_server.url) as recorder:
        assert copies.copy_due(daemon.context()) == 1
        assert copies.copy_due(daemon.context()) == 0  # nothing new: no copy
    key, copy = aws.config_key("copied"), aws.copy_key("copied", instance)
    role = aws.iam.get_instance_profile(InstanceProfileName=fixtures.JOIN_PROFILE_NAME)[
        "InstanceProfile"]["Roles"][0]["RoleId"]
    assert copy == key[:-len(".tar.gz")] + f"/i/{role}:{instance}.tar.gz"
    calls = [call for call in recorder.calls() if call.key_id == KEYS["access_key_id"]]
    assert [call.operation for call in calls].count("CopyObject") == 1
    requests = as_principal([r for _, r in requests_of(calls, Resources(ACCOUNT, {}, {}))], mine)
    assert refused(daemon_policy(Facts()), requests) == []

    daemon.test_clock.now += LIFETIME / 2
    with Recorder(moto_server.url) as recorder:
        assert renew.renew_due(daemon.context()) == ["copied"]
        assert copies.copy_due(daemon.context()) == 0  # the renewal rewrote it already
    operations = [call.operation for call in recorder.calls()
                  if call.key_id == KEYS["access_key_id"]]
    assert operations.count("PutObject") == 1 and operations.count("CopyObject") == 1
    written = aws.s3.get_object(Bucket=BUCKET, Key=key)
    copied = aws.s3.get_object(Bucket=BUCKET, Key=copy)
    assert copied["Metadata"] == written["Metadata"] and \
        "annex-token-minted" in copied["Metadata"]
    assert copied["Body"].read() == written["Body"].read()

    reply = daemon.handle({"version": 1, "command": "off", "name": "copied"},
                          Peer(pid=1, uid=os.getuid(), gid=os.getgid()))
    assert reply["ok"], reply
    assert aws.annex_resources("copied")["copies"] == []  # -off deletes the copies too


def test_the_instances_the_same_name_again_added_get_their_copies_too(aws, daemon):
    """A launch added to a live annex (the same name again, issue 25) carries the annex's
    tags: its instances get their copies in the next pass, and -off deletes them all."""
    from annexd.commands import copies
    create(daemon, "grown", 4 * 3600)
    create(daemon, "grown", 4 * 3600)  # the same name again: a second launch
    instances = aws.annex_resources("grown")["instances"]
    assert len(instances) == 2
    for instance in instances:  # as AWS shows them: the launch's profile
        aws.ec2.associate_iam_instance_profile(
            IamInstanceProfile={"Arn": fixtures.JOIN_PROFILE_ARN}, InstanceId=instance)
    assert copies.copy_due(daemon.context()) == 2
    assert sorted(key.rsplit(":", 1)[1] for key in aws.annex_resources("grown")["copies"]) == \
        sorted(f"{instance}.tar.gz" for instance in instances)
    reply = daemon.handle({"version": 1, "command": "off", "name": "grown"},
                          Peer(pid=1, uid=os.getuid(), gid=os.getgid()))
    assert reply["ok"], reply
    assert aws.annex_resources("grown")["copies"] == []
