"""``condor_annex_role_template BUCKET REGION ANNEX``: print a CloudFormation template for an
instance role and profile that may read the config objects of one annex only -- the annex
named ANNEX in REGION -- plus asking whether its object still exists, and the
self-introspection the instance bootstrap needs to find it (its instance, its Spot Fleet or
EC2 Fleet, its own role's inline policies).  For sites that give each annex an instance role
of its own instead of the setup's ``config-*.tar.gz`` profile.

An annex's config object is named after the create request that made it and the AWS principal
that made it, ``config-<owner>/<region>-<annex>_<uuid>.tar.gz``, and the uuid is made when the
annex is created, so no role made beforehand can name the object itself.  The role grants the
annex's keys, ``config-*/<region>-<annex>_*.tar.gz`` (and an earlier release's
``config-<region>-<annex>_*.tar.gz``): annex names hold no ``_`` and owners no ``/``, so the
pattern takes in every request of that annex in that region (one at a time: a name is live
once per region) and no other annex's object.  The instance finds its object in the role's inline policy, as with the
setup's profile (``annex_ec2.discover``).
"""
from __future__ import annotations

import json
import re
import sys
from typing import Any, Sequence

from annex_ec2.closedpipe import quiet_when_output_closes
from annexd.rpc.protocol import ANNEX_NAME_PATTERN, REGION_PATTERN

BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
USAGE = "usage: condor_annex_role_template BUCKET REGION ANNEX"


def annex_keys(region: str, annex: str) -> list[str]:
    """The key patterns of every config object annex ``annex`` of ``region`` may get: under
    any owner's prefix, and an earlier release's (no prefix)."""
    return [f"config-*/{region}-{annex}_*.tar.gz", f"config-{region}-{annex}_*.tar.gz"]


def template(bucket: str, region: str, annex: str) -> dict[str, Any]:
    keys = annex_keys(region, annex)
    statement = [
        {"Effect": "Allow", "Action": "s3:GetObject",
         "Resource": [{"Fn::Sub": f"arn:${{AWS::Partition}}:s3:::{bucket}/{key}"}
                      for key in keys]},
        # Without it, S3 answers a deleted object with 403, not 404 (annex_ec2.gone); the
        # instance lists exactly its own key.
        {"Effect": "Allow", "Action": "s3:ListBucket",
         "Resource": {"Fn::Sub": f"arn:${{AWS::Partition}}:s3:::{bucket}"},
         "Condition": {"StringLike": {"s3:prefix": keys}}},
        {"Effect": "Allow",
         "Action": ["ec2:DescribeInstances", "ec2:DescribeSpotFleetRequests",
                    "ec2:DescribeFleets"],
         "Resource": "*"},
    ]
    introspection = [
        {"Effect": "Allow", "Action": "iam:GetInstanceProfile",
         "Resource": {"Fn::GetAtt": ["InstanceProfile", "Arn"]}},
        {"Effect": "Allow",
         "Action": ["iam:ListRolePolicies", "iam:GetRolePolicy"],
         "Resource": {"Fn::GetAtt": ["Role", "Arn"]}},
    ]
    return {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": f"Instance role and profile of HTCondor annex {annex} in {region}: "
                       f"may read only s3://{bucket}/{keys[0]}",
        "Resources": {
            "Role": {"Type": "AWS::IAM::Role", "Properties": {
                "AssumeRolePolicyDocument": {"Version": "2012-10-17", "Statement": [
                    {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"},
                     "Action": "sts:AssumeRole"}]},
                "Policies": [{"PolicyName": "ReadOneAnnexConfiguration", "PolicyDocument": {
                    "Version": "2012-10-17", "Statement": statement}}]}},
            "InstanceProfile": {"Type": "AWS::IAM::InstanceProfile",
                                "Properties": {"Roles": [{"Ref": "Role"}]}},
            "Introspection": {"Type": "AWS::IAM::Policy", "Properties": {
                "PolicyName": "IntrospectOwnRole", "Roles": [{"Ref": "Role"}],
                "PolicyDocument": {"Version": "2012-10-17", "Statement": introspection}}},
        },
        "Outputs": {"InstanceProfileARN": {"Value": {"Fn::GetAtt": ["InstanceProfile", "Arn"]}}},
    }


@quiet_when_output_closes
def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] in (["-h"], ["-help"], ["--help"]):
        print(USAGE, file=sys.stderr)
        return 1
    if len(args) == 2:
        print(f"{USAGE}\ncondor_annex_role_template: error: it no longer takes an object key: "
              "an annex's config object is named after the request that creates it "
              "(config-<region>-<annex>_<uuid>.tar.gz), so the role is made for the annex "
              "name instead", file=sys.stderr)
        return 1
    if len(args) != 3:
        print(USAGE, file=sys.stderr)
        return 1
    bucket, region, annex = args
    if not BUCKET_NAME.match(bucket):
        print(f"condor_annex_role_template: error: {bucket!r} is not an S3 bucket name",
              file=sys.stderr)
        return 1
    if not re.match(REGION_PATTERN, region):
        print(f"condor_annex_role_template: error: {region!r} is not an AWS region",
              file=sys.stderr)
        return 1
    if not re.match(ANNEX_NAME_PATTERN, annex):
        print(f"condor_annex_role_template: error: {annex!r} is not an annex name (1 to 27 "
              "letters, digits and -)", file=sys.stderr)
        return 1
    json.dump(template(bucket, region, annex), sys.stdout, indent=2)
    print()
    return 0

if __name__ == "__main__":
    sys.exit(main())
