"""Which annex is this instance in, and which S3 object holds its configuration?

The annex comes from the instance's ``htcondor:AnnexName`` tag, or, when the instance does
not carry it, from its fleet's: instances a Spot Fleet launches from a launch template carry
only the template's tags, but AWS tags each with the fleet that launched it
(``aws:ec2spot:fleet-request-id`` for a Spot Fleet, ``aws:ec2:fleet-id`` for an EC2 Fleet),
and the daemon tags the fleet itself with ``htcondor:AnnexName``.  The object comes from the
instance's own role: the inline policy statement that lets it ``s3:GetObject`` an annex
config (``arn:aws:s3:::<bucket>/config-*.tar.gz``, or the keys of one annex,
``config-<region>-<annex>_*.tar.gz``, from ``condor_annex_role_template``) names the bucket,
and the annex names the key: ``config-<region>-<ClientToken>.tar.gz``, the token read from
the same place as the annex (its ``htcondor:AnnexClientToken`` tag), or
``config-<annex>.tar.gz`` for an annex of an earlier release.  So the instance needs no
configuration of its own beyond its role.

The setup's role (issue 23 requirement 5) grants no annex's object: only this instance's own
copy of it, ``arn:aws:s3:::<bucket>/config-*/i/${aws:userid}.tar.gz``, which condor_annexd
writes for each instance it sees in the annex (:func:`instance_config_key`).  IAM fills in
``${aws:userid}`` from the caller's credentials -- for an instance role,
``<role-id>:<instance-id>``, set by AWS -- so the instance asks STS who it is
(GetCallerIdentity, which needs no permission) and reads the copy under that name.  A role
that grants the object itself (an earlier setup's, ``condor_annex_role_template``'s) is read
as before.

Only the role's inline policies are read (ListRolePolicies, GetRolePolicy): the setup's
profile and the role template grant the object there.  Managed policies a site attaches to
the role (SSM, CloudWatch agent, ...) are never read -- reading them takes ``iam:GetPolicy``
and ``iam:GetPolicyVersion``, which the instance role is not given, so an attached policy
used to stop the boot -- and a grant of the config object in a managed policy is not found.
"""
from __future__ import annotations

import ast
import fnmatch
import json
import re
import urllib.parse
from typing import Any, Callable, Iterator

ANNEX_TAG = "htcondor:AnnexName"
CLIENT_TOKEN_TAG = "htcondor:AnnexClientToken"
OWNER_TAG = "htcondor:AnnexOwner"
#: The tags AWS puts on every instance a Spot Fleet (RequestSpotFleet) or an EC2 Fleet
#: (CreateFleet) launches, naming the fleet.
SPOT_FLEET_TAG = "aws:ec2spot:fleet-request-id"
EC2_FLEET_TAG = "aws:ec2:fleet-id"
#: The policy variable of the instance role's grant of its own copy (IAM fills it in).
USER_ID = "${aws:userid}"
S3_OBJECT_ARN = re.compile(r"^arn:aws[a-z-]*:s3:::(?P<bucket>[^/]+)/(?P<key>.+)$")


class NotYet(Exception):
    """Not there (yet): worth waiting for, e.g. a tag AWS has not applied so far."""


class Permanent(Exception):
    """Waiting cannot help: misconfiguration, or the annex is gone."""


def _tag(tags: list[dict[str, str]], key: str) -> str | None:
    return next((tag["Value"] for tag in tags if tag.get("Key") == key and tag.get("Value")),
                None)


def _instance_tags(ec2: Any, instance_id: str) -> list[dict[str, str]]:
    reply = ec2.describe_instances(InstanceIds=[instance_id])
    return [tag for reservation in reply.get("Reservations", [])
            for instance in reservation.get("Instances", [])
            for tag in instance.get("Tags", [])]


def _spot_fleets(ec2: Any, fleet_id: str) -> list[dict[str, Any]]:
    reply = ec2.describe_spot_fleet_requests(SpotFleetRequestIds=[fleet_id])
    return reply.get("SpotFleetRequestConfigs", [])


def _ec2_fleets(ec2: Any, fleet_id: str) -> list[dict[str, Any]]:
    return ec2.describe_fleets(FleetIds=[fleet_id]).get("Fleets", [])


#: Where to look when the instance is not tagged itself: its fleet's tag, what kind of fleet
#: that is, and how to read the fleet (with its tags).
FLEET_LOOKUPS: tuple[tuple[str, str, Callable[[Any, str], list[dict[str, Any]]]], ...] = (
    (SPOT_FLEET_TAG, "Spot Fleet request", _spot_fleets),
    (EC2_FLEET_TAG, "EC2 Fleet", _ec2_fleets),
)


def _fleet_tags(kind: str, fleet_id: str, fleets: list[dict[str, Any]]) -> list[dict[str, str]]:
    if not fleets:  # AWS is eventually consistent: a new fleet may not be visible yet
        raise NotYet(f"{kind} {fleet_id}, which launched this instance, is not visible (yet)")
    tags = fleets[0].get("Tags", [])
    if _tag(tags, ANNEX_TAG) is None:
        raise Permanent(f"{kind} {fleet_id}, which launched this instance, has no {ANNEX_TAG} "
                        "tag: it is not an annex's fleet")
    return tags


def annex_identity(ec2: Any, instance_id: str) -> tuple[str, str | None, str | None]:
    """(annex, ClientToken of the request that made it, the principal that made it) of
    ``instance_id`` (None for a tag an earlier release did not set): from its own tags, else
    its fleet's."""
    tags = _instance_tags(ec2, instance_id)
    if _tag(tags, ANNEX_TAG) is None:
        for fleet_tag, kind, describe in FLEET_LOOKUPS:
            fleet_id = _tag(tags, fleet_tag)
            if fleet_id is not None:
                tags = _fleet_tags(kind, fleet_id, describe(ec2, fleet_id))
                break
        else:
            raise NotYet(f"instance {instance_id} has no {ANNEX_TAG} tag, nor a fleet's "
                         f"({SPOT_FLEET_TAG} or {EC2_FLEET_TAG}) (yet)")
    return str(_tag(tags, ANNEX_TAG)), _tag(tags, CLIENT_TOKEN_TAG), _tag(tags, OWNER_TAG)


def _listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _document(raw: Any) -> dict[str, Any]:
    """A policy document as a dict.

    IAM hands documents out URL-encoded JSON, which botocore decodes; moto returns inline
    policies created through CloudFormation as a Python literal.  Accept all three, and
    evaluate nothing (``ast.literal_eval`` reads literals only).
    """
    if isinstance(raw, str):
        text = urllib.parse.unquote(raw)
        try:
            raw = json.loads(text)
        except ValueError:
            try:
                raw = ast.literal_eval(text)
            except (ValueError, SyntaxError):
                raise Permanent(f"unreadable policy document: {text[:80]!r}") from None
    return raw if isinstance(raw, dict) else {}


def _documents(iam: Any, role: str) -> Iterator[dict[str, Any]]:
    """Every inline policy document of ``role`` (managed policies are not read: see above)."""
    for page in iam.get_paginator("list_role_policies").paginate(RoleName=role):
        for name in page.get("PolicyNames", []):
            yield _document(iam.get_role_policy(RoleName=role, PolicyName=name)[
                "PolicyDocument"])


def readable_objects(iam: Any, profile_arn: str) -> list[tuple[str, str]]:
    """(bucket, key pattern) of every object the instance profile's roles may GetObject."""
    profile = profile_arn.rsplit("/", 1)[-1]
    roles = iam.get_instance_profile(InstanceProfileName=profile)["InstanceProfile"]["Roles"]
    found = []
    for role in roles:
        for document in _documents(iam, role["RoleName"]):
            for statement in _listed(document.get("Statement", [])):
                actions = _listed(statement.get("Action", []))
                if statement.get("Effect") != "Allow" or not any(
                        fnmatch.fnmatchcase("s3:GetObject", a) for a in actions):
                    continue
                for resource in _listed(statement.get("Resource", [])):
                    match = S3_OBJECT_ARN.match(resource)
                    if match:
                        found.append((match.group("bucket"), match.group("key")))
    return found


def config_key(annex: str, region: str | None = None, client_token: str | None = None,
               owner: str | None = None) -> str:
    """The config object's key, as ``condor_annexd`` names it: a copy of lambda/lease.py's
    ``config_key`` (the instance's bundle ships this package only; a test holds them equal)."""
    if client_token is None:
        return f"config-{annex}.tar.gz"
    if owner is None:
        return f"config-{region}-{client_token}.tar.gz"
    return f"config-{owner}/{region}-{client_token}.tar.gz"


def copies_prefix(key: str) -> str:
    """A copy of lambda/lease.py's ``copies_prefix`` (a test holds them equal)."""
    return f"{key[:-len('.tar.gz')] if key.endswith('.tar.gz') else key}/i/"


def instance_config_key(key: str, user_id: str) -> str:
    """A copy of lambda/lease.py's ``instance_config_key``: this instance's copy of the
    config object ``key``, named after its credentials' ``aws:userid``."""
    return f"{copies_prefix(key)}{user_id}.tar.gz"


def config_object(iam: Any, profile_arn: str, annex: str, region: str | None = None,
                  client_token: str | None = None, owner: str | None = None,
                  user_id: Callable[[], str] | None = None) -> tuple[str, str, bool]:
    """The (bucket, key) of this annex's configuration, and whether it is this instance's
    own copy (which condor_annexd may not have written yet: worth waiting for).
    ``user_id``: asks STS for this instance's ``aws:userid``, only when the role grants
    per-instance copies (a pattern with ``${aws:userid}``), which are preferred."""
    wanted = config_key(annex, region, client_token, owner)
    candidates = readable_objects(iam, profile_arn)
    copies = [(bucket, pattern) for bucket, pattern in candidates if USER_ID in pattern]
    if copies and user_id is not None and client_token is not None and owner is not None:
        me = user_id()
        mine = instance_config_key(wanted, me)
        for bucket, pattern in copies:
            if fnmatch.fnmatchcase(mine, pattern.replace(USER_ID, me)):
                return bucket, mine, True
    for bucket, pattern in candidates:
        if USER_ID not in pattern and fnmatch.fnmatchcase(wanted, pattern):
            return bucket, wanted, False
    # No guessing: a role granting some other key (an earlier role template's one object)
    # would have this instance read an object that is not its annex's, and take the 404 for
    # "the lease has ended".
    if copies and (client_token is None or owner is None):
        raise Permanent(f"annex {annex} was made by an earlier release (its resources carry "
                        "no owner): condor_annexd makes it no per-instance copy, and the "
                        f"instance profile {profile_arn} grants only those; set the instance "
                        "profile stack's ShareEveryAnnexsConfig to true until it has ended")
    raise Permanent(f"the instance profile {profile_arn} grants no s3:GetObject on {wanted} "
                    f"in an inline policy of its role (it grants {candidates or 'nothing'}; "
                    "managed policies are not read)")
