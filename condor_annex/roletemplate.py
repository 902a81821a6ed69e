"""``condor_annex_role_template BUCKET KEY``: print a CloudFormation template for an instance
role and profile that may read exactly one S3 object (plus asking whether it still exists,
and the self-introspection the instance bootstrap needs to find it: its instance, its Spot
Fleet or EC2 Fleet, its own role's policies).  For sites that hand out one config object per
role instead of the setup's ``config-*.tar.gz`` profile.
"""
from __future__ import annotations

import json
import re
import sys
from typing import Any, Sequence

from annex_ec2.closedpipe import quiet_when_output_closes

BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


def template(bucket: str, key: str) -> dict[str, Any]:
    statement = [
        {"Effect": "Allow", "Action": "s3:GetObject",
         "Resource": {"Fn::Sub": f"arn:${{AWS::Partition}}:s3:::{bucket}/{key}"}},
        # Without it, S3 answers a deleted object with 403, not 404 (annex_ec2.gone).
        {"Effect": "Allow", "Action": "s3:ListBucket",
         "Resource": {"Fn::Sub": f"arn:${{AWS::Partition}}:s3:::{bucket}"},
         "Condition": {"StringEquals": {"s3:prefix": key}}},
        {"Effect": "Allow",
         "Action": ["ec2:DescribeInstances", "ec2:DescribeSpotFleetRequests",
                    "ec2:DescribeFleets"],
         "Resource": "*"},
    ]
    introspection = [
        {"Effect": "Allow", "Action": "iam:GetInstanceProfile",
         "Resource": {"Fn::GetAtt": ["InstanceProfile", "Arn"]}},
        {"Effect": "Allow",
         "Action": ["iam:ListRolePolicies", "iam:GetRolePolicy", "iam:ListAttachedRolePolicies"],
         "Resource": {"Fn::GetAtt": ["Role", "Arn"]}},
    ]
    return {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": f"Instance role and profile that may read only s3://{bucket}/{key}",
        "Resources": {
            "Role": {"Type": "AWS::IAM::Role", "Properties": {
                "AssumeRolePolicyDocument": {"Version": "2012-10-17", "Statement": [
                    {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"},
                     "Action": "sts:AssumeRole"}]},
                "Policies": [{"PolicyName": "ReadOneObject", "PolicyDocument": {
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
    if len(args) != 2 or args[0] in ("-h", "-help", "--help"):
        print("usage: condor_annex_role_template BUCKET KEY", file=sys.stderr)
        return 1
    bucket, key = args
    if not BUCKET_NAME.match(bucket):
        print(f"condor_annex_role_template: error: {bucket!r} is not an S3 bucket name",
              file=sys.stderr)
        return 1
    if not key or key.startswith("/") or any(c in key for c in "*?${}"):
        print(f"condor_annex_role_template: error: {key!r} is not a plain object key",
              file=sys.stderr)
        return 1
    json.dump(template(bucket, key), sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
