"""Create in the emulator what ``condor_annex -setup`` creates in a real account."""
from __future__ import annotations

import json
from typing import Any

import boto3

from annexd import leasecode

LEASE_FUNCTION_NAME = "HTCondorAnnex-LeaseFunction"
FLEET_ROLE_ARN = "arn:aws:iam::123456789012:role/aws-ec2-spot-fleet-tagging-role"

_LAMBDA_TRUST = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"},
                   "Action": "sts:AssumeRole"}],
}


def client(service: str, endpoint_url: str, region: str) -> Any:
    return boto3.client(service, endpoint_url=endpoint_url, region_name=region,
                        aws_access_key_id="testing", aws_secret_access_key="testing")


def create_bucket(s3: Any, name: str, region: str) -> None:
    extra = {} if region == "us-east-1" else {
        "CreateBucketConfiguration": {"LocationConstraint": region}}
    s3.create_bucket(Bucket=name, **extra)


def deploy_lease_function(iam: Any, lambda_: Any, name: str = LEASE_FUNCTION_NAME) -> str:
    """Create the lease function from lambda/lease.py; returns its ARN."""
    role = iam.create_role(RoleName=f"{name}-Role",
                           AssumeRolePolicyDocument=json.dumps(_LAMBDA_TRUST))
    reply = lambda_.create_function(
        FunctionName=name, Runtime="python3.12", Role=role["Role"]["Arn"],
        Handler="lease.handler", Code={"ZipFile": leasecode.package()}, Timeout=60)
    return reply["FunctionArn"]
