"""Issue 23 requirement 5: an annex instance can read only its own annex's secret.

Two annexes, A and B, made by the daemon with the setup's instance profile; A's instance is
compromised (root: the role's credentials).  Every action the instance role allows is tried
the way an attacker would -- with whatever ``Describe*`` reveals (B's owner, ClientToken and
instance IDs, so B's object key and its instances' copy keys), and with B's real keys too --
and each call is judged by the IAM evaluator as IAM judges A's instance: its role session's
``aws:userid``, ``<role-id>:<instance-id>``.  No allowed reply may hold B's token, and no
GetObject of B's object or of any copy of it may be allowed.  A itself still boots and
refreshes its lease, with only what its role allows.

On main the role granted ``s3:GetObject`` on every ``config-*.tar.gz``: DescribeInstances
gave B's tags, the tags gave B's key, and GetObject gave B's token (finding 8).
"""
from __future__ import annotations

import gzip
import io
import json
import tarfile
from typing import Any, Callable

import boto3
import pytest
from botocore.exceptions import ClientError

from annexd_lambda import lease
from localaws import fixtures
from localaws.fakeimds import FakeImds
from localaws.iamactions import Resources, requests_of
from localaws.iampolicy import Policy, Request, as_principal, assumed_role_keys, role_statements
from localaws.pool import BUCKET, REGION
from localaws.recorder import Recorder

from iam_scenarios import ACCOUNT
from instance_side import instance_env, on_demand_annex, run_annex_ec2
from test_cfn import CONTEXT
from test_iam_calls import template

Attempt = tuple[str, str, Callable[[], Any]]


def create(aws, run_annex, with_keys, name: str, profile: str) -> str:
    return on_demand_annex(aws, run_annex, with_keys, name, profile)[0]


def token_of(aws, annex: str) -> str:
    """The annex's token, read from its config object (as the daemon wrote it)."""
    body = aws.s3.get_object(Bucket=BUCKET, Key=aws.config_key(annex))["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(body), mode="r:gz") as archive:
        return archive.extractfile(f".annex-{annex}/tokens.d/annex").read().decode().strip()


def shown(reply: Any) -> str:
    """Everything a reply holds, as text (an object's body unpacked: a tarball's files)."""
    if isinstance(reply, (bytes, bytearray)):
        try:
            reply = gzip.decompress(reply)
        except OSError:
            pass
        return reply.decode(errors="replace")
    return json.dumps(reply, default=str)


def tags_seen(replies: list[Any]) -> list[dict[str, str]]:
    """Every tag set in the Describe replies: what an attacker learns of other annexes."""
    found = []

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            if isinstance(value.get("Tags"), list):
                found.append({t.get("Key"): t.get("Value") for t in value["Tags"]})
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)
    for reply in replies:
        walk(reply)
    return found


def playbook(clients: dict[str, Any], profile: str, role: str, me: str, mine: str,
             theirs: list[str]) -> tuple[list[Attempt], Callable[[list[Any]], list[Attempt]]]:
    """What a compromised instance tries, by the action each call needs: first the looks,
    then (from what they showed) the reads.  ``theirs``: B's real object and copy keys."""
    ec2, iam, s3 = clients["ec2"], clients["iam"], clients["s3"]
    role_name = role.rsplit("/", 1)[1]
    looks: list[Attempt] = [
        ("ec2:DescribeInstances", "every instance", lambda: ec2.describe_instances()),
        ("ec2:DescribeSpotFleetRequests", "every Spot Fleet",
         lambda: ec2.describe_spot_fleet_requests()),
        ("ec2:DescribeFleets", "every EC2 Fleet", lambda: ec2.describe_fleets()),
        ("iam:GetInstanceProfile", "its profile", lambda: iam.get_instance_profile(
            InstanceProfileName=profile.rsplit("/", 1)[1])),
        ("iam:ListRolePolicies", "its role's policies",
         lambda: iam.list_role_policies(RoleName=role_name)),
        ("iam:GetRolePolicy", "its role's policy", lambda: iam.get_role_policy(
            RoleName=role_name, PolicyName="ReadOwnAnnexConfiguration")),
    ]

    def reads(replies: list[Any]) -> list[Attempt]:
        keys = set(theirs) | {mine}
        for tags in tags_seen(replies):
            owner, token = tags.get(lease.OWNER_TAG), tags.get(lease.CLIENT_TOKEN_TAG)
            if owner and token:
                key = lease.config_key(tags[lease.ANNEX_TAG], REGION, token, owner)
                keys.add(key)
                role_id = me.split(":", 1)[0]
                for reply in replies:
                    for reservation in (reply.get("Reservations") or []):
                        for instance in reservation["Instances"]:
                            keys.add(lease.instance_config_key(
                                key, f"{role_id}:{instance['InstanceId']}"))
        found: list[Attempt] = []
        for key in sorted(keys):
            found.append(("s3:GetObject", f"GetObject {key}",
                          lambda key=key: s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()))
            found.append(("s3:GetObject", f"HeadObject {key}",
                          lambda key=key: s3.head_object(Bucket=BUCKET, Key=key)))
        prefixes = {"", "config-", mine} | {k.split("/", 1)[0] + "/" for k in keys} | \
            {lease.copies_prefix(k) for k in keys if "/i/" not in k} | keys
        for prefix in sorted(prefixes):
            found.append(("s3:ListBucket", f"ListObjectsV2 {prefix!r}",
                          lambda prefix=prefix: s3.list_objects_v2(Bucket=BUCKET,
                                                                   Prefix=prefix)))
        return found
    return looks, reads


def test_an_instance_reads_only_its_own_annexs_secret(aws, run_annex, with_keys, tmp_path):
    profile, role = fixtures.create_instance_profile_stack(aws.cloudformation, aws.iam, BUCKET)
    mine_id = create(aws, run_annex, with_keys, "iso-a", profile)
    create(aws, run_annex, with_keys, "iso-b", profile)
    theirs = aws.annex_resources("iso-b")["objects"] + aws.annex_resources("iso-b")["copies"]
    assert len(theirs) == 2, theirs  # B's object, and its instance's copy
    secret = token_of(aws, "iso-b")
    assert secret and secret != token_of(aws, "iso-a")

    credentials = fixtures.instance_role_credentials(aws.url, REGION, mine_id)
    key_id = credentials["AWS_ACCESS_KEY_ID"]
    role_id = aws.iam.get_role(RoleName=role.rsplit("/", 1)[1])["Role"]["RoleId"]
    me = f"{role_id}:{mine_id}"
    principal = assumed_role_keys(role_id, mine_id)
    sts = boto3.client("sts", endpoint_url=aws.url, region_name=REGION,
                       aws_access_key_id=key_id,
                       aws_secret_access_key=credentials["AWS_SECRET_ACCESS_KEY"],
                       aws_session_token=credentials["AWS_SESSION_TOKEN"])
    assert sts.get_caller_identity()["UserId"] == me == principal["aws:userid"]
    context = {**CONTEXT, "S3BucketName": BUCKET, "InstanceConfigurationProfile.Arn": profile,
               "InstanceConfigurationRole.Arn": role}
    policy = Policy(role_statements(template("instance-profile.yaml"),
                                    "InstanceConfigurationRole", context, {"Shared": False}))
    mine = aws.copy_key("iso-a", mine_id)
    clients = {name: boto3.client(name, endpoint_url=aws.url, region_name=REGION,
                                  aws_access_key_id=key_id,
                                  aws_secret_access_key=credentials["AWS_SECRET_ACCESS_KEY"],
                                  aws_session_token=credentials["AWS_SESSION_TOKEN"])
               for name in ("ec2", "iam", "s3")}
    resources = Resources(ACCOUNT, {}, {})

    def attempt(action: str, what: str, call: Callable[[], Any]) -> tuple[bool, Any]:
        """Make the call (moto does not judge it) and judge what it needed as IAM would:
        (allowed, the reply)."""
        with Recorder(aws.url) as recorder:
            try:
                reply = call()
            except ClientError as error:
                reply = error.response
        made = [c for c in recorder.calls() if c.key_id == key_id]
        needed = as_principal([r for _, r in requests_of(made, resources)], principal)
        assert needed and action in {r.action for r in needed}, (what, needed)
        return all(policy.allows(r) for r in needed), reply

    looks, reads = playbook(clients, profile, role, me, mine, theirs)
    tried, allowed = set(), []
    for action, what, call in looks:
        ok, reply = attempt(action, what, call)
        tried.add(action)
        if ok:
            allowed.append((what, reply))
    assert any(lease.OWNER_TAG in shown(reply) for _, reply in allowed)  # B's tags were seen
    for action, what, call in reads(list(reply for _, reply in allowed)):
        ok, reply = attempt(action, what, call)
        tried.add(action)
        if ok:
            allowed.append((what, reply))
    # Every action the role grants was tried; the role grants nothing else.
    assert policy.granted_actions() == tried
    leaked = [what for what, reply in allowed if secret in shown(reply)]
    assert leaked == [], f"annex B's token reached annex A's instance through {leaked}"
    for key in theirs:
        for action in ("s3:GetObject",):
            assert not policy.allows(Request(action, f"arn:aws:s3:::{BUCKET}/{key}", principal))
    assert f"GetObject {mine}" in {what for what, _ in allowed}  # its own copy: readable

    # ... and A's instance still boots and refreshes its lease with only what its role allows.
    imds = FakeImds(mine_id, REGION, profile)
    env = instance_env(imds.url, AWS_ENDPOINT_URL=aws.url, **credentials)
    common = ["-config-dir", str(tmp_path / "config.d"), "-retry-base", "0.05", "-max-wait",
              "10", "-no-shutdown"]
    try:
        with Recorder(aws.url) as recorder:
            booted = run_annex_ec2(*common, env=env)
            refreshed = run_annex_ec2(*common, "-refresh-lease", "-reconfig-command", "true",
                                      env=env)
    finally:
        imds.close()
    assert booted.returncode == 0 and "retrying" not in booted.stderr, booted.stderr
    assert refreshed.returncode == 0, refreshed.stderr
    made = [c for c in recorder.calls() if c.key_id == key_id]
    needed = as_principal([r for _, r in requests_of(made, resources)], principal)
    assert needed and [str(r) for r in needed if not policy.allows(r)] == []
    assert (tmp_path / "config.d" / ".annex-iso-a" / "tokens.d" / "annex").read_text().strip() \
        == token_of(aws, "iso-a")


def test_the_transition_grant_is_what_shares_every_annexs_secret():
    """ShareEveryAnnexsConfig=true keeps the earlier grant (images that predate the copies):
    then, and only then, another annex's object is readable -- as the README says."""
    context = {**CONTEXT, "S3BucketName": BUCKET}
    theirs = f"arn:aws:s3:::{BUCKET}/{lease.config_key('b', REGION, 'b_1', 'AIDAB')}"
    copy = f"arn:aws:s3:::{BUCKET}/" + lease.instance_config_key(
        lease.config_key("a", REGION, "a_1", "AIDAA"), "AROAR:i-a")
    me = assumed_role_keys("AROAR", "i-a")
    for shared, readable in ((False, False), (True, True)):
        policy = Policy(role_statements(template("instance-profile.yaml"),
                                        "InstanceConfigurationRole", context,
                                        {"Shared": shared}))
        assert policy.allows(Request("s3:GetObject", theirs, me)) is readable
        assert policy.allows(Request("s3:GetObject", copy, me))
        assert policy.allows(Request("s3:GetObject", copy, assumed_role_keys(
            "AROAR", "i-b"))) is readable  # another instance's copy
    with pytest.raises(Exception, match="ShareEveryAnnexsConfig|Shared"):
        role_statements(template("instance-profile.yaml"), "InstanceConfigurationRole",
                        context)
