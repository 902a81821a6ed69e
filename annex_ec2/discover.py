"""Which annex is this instance in, and which S3 object holds its configuration?

The annex comes from the instance's ``htcondor:AnnexName`` tag.  The object comes from the
instance's own role: the policy statement that lets it ``s3:GetObject`` an annex config
(``arn:aws:s3:::<bucket>/config-*.tar.gz``, or one exact object) names the bucket, and the
annex ID names the key.  So the instance needs no configuration of its own beyond its role.
"""
from __future__ import annotations

import ast
import fnmatch
import json
import re
import urllib.parse
from typing import Any, Iterator

ANNEX_TAG = "htcondor:AnnexName"
S3_OBJECT_ARN = re.compile(r"^arn:aws[a-z-]*:s3:::(?P<bucket>[^/]+)/(?P<key>.+)$")


class NotYet(Exception):
    """Not there (yet): worth waiting for, e.g. a tag AWS has not applied so far."""


class Permanent(Exception):
    """Waiting cannot help: misconfiguration, or the annex is gone."""


def annex_id(ec2: Any, instance_id: str) -> str:
    reply = ec2.describe_instances(InstanceIds=[instance_id])
    for reservation in reply.get("Reservations", []):
        for instance in reservation.get("Instances", []):
            for tag in instance.get("Tags", []):
                if tag.get("Key") == ANNEX_TAG and tag.get("Value"):
                    return tag["Value"]
    raise NotYet(f"instance {instance_id} has no {ANNEX_TAG} tag (yet)")


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
    """Every policy document of ``role``, inline and attached (default versions)."""
    for name in iam.list_role_policies(RoleName=role).get("PolicyNames", []):
        yield _document(iam.get_role_policy(RoleName=role, PolicyName=name)["PolicyDocument"])
    for attached in iam.list_attached_role_policies(RoleName=role).get("AttachedPolicies", []):
        arn = attached["PolicyArn"]
        version = iam.get_policy(PolicyArn=arn)["Policy"]["DefaultVersionId"]
        yield _document(iam.get_policy_version(PolicyArn=arn, VersionId=version)[
            "PolicyVersion"]["Document"])


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


def config_object(iam: Any, profile_arn: str, annex: str) -> tuple[str, str]:
    """The (bucket, key) of this annex's configuration."""
    wanted = f"config-{annex}.tar.gz"
    candidates = readable_objects(iam, profile_arn)
    for bucket, pattern in candidates:
        if fnmatch.fnmatchcase(wanted, pattern):
            return bucket, wanted
    exact = [(bucket, key) for bucket, key in candidates if not any(c in key for c in "*?")]
    if len(exact) == 1:
        return exact[0]
    raise Permanent(f"the instance profile {profile_arn} grants no s3:GetObject on {wanted} "
                    f"(it grants {candidates or 'nothing'})")
