"""The calls of the one-time setup (condor_annex -setup): stacks and function code."""
from __future__ import annotations

import json
from typing import Any

from annexd.aws.errors import InvalidInput, NotFound
from annexd.aws.session import AwsSession


class SetupCalls(AwsSession):
    """What -setup and -check-setup ask of AWS (CloudFormation, S3, Lambda)."""

    #: The CloudFormation service role stacks are created and updated as (RoleARN); None:
    #: with the caller's own permissions.
    setup_role_arn: str | None = None

    def _as_role(self) -> dict[str, str]:
        return {"RoleARN": self.setup_role_arn} if self.setup_role_arn else {}

    def describe_stack(self, name: str) -> dict[str, Any] | None:
        """The stack, or None if it does not exist."""
        try:
            with self._call("CloudFormation DescribeStacks"):
                return self.cloudformation.describe_stacks(StackName=name)["Stacks"][0]
        except InvalidInput as error:
            if "does not exist" in error.message:
                return None
            raise

    def stack_template(self, name: str) -> str:
        with self._call("CloudFormation GetTemplate"):
            body = self.cloudformation.get_template(StackName=name)["TemplateBody"]
        return body if isinstance(body, str) else json.dumps(body)

    def create_stack(self, name: str, body: str, parameters: dict[str, str]) -> None:
        with self._call("CloudFormation CreateStack"):
            self.cloudformation.create_stack(
                StackName=name, TemplateBody=body, Parameters=_stack_parameters(parameters),
                Capabilities=["CAPABILITY_IAM"], OnFailure="DELETE",
                Tags=[{"Key": "htcondor:AnnexSetup", "Value": name}], **self._as_role())

    def update_stack(self, name: str, body: str, parameters: dict[str, str],
                     keep: dict[str, str]) -> bool:
        """Update the stack, keeping the ``keep`` parameters' values (as deployed, sent as
        they are: no template of ours has a NoEcho parameter; UsePreviousValue is refused
        by moto for a parameter the stack holds at its default); False if no change."""
        previous = [{"ParameterKey": key, "ParameterValue": value}
                    for key, value in sorted(keep.items())]
        try:
            with self._call("CloudFormation UpdateStack"):
                self.cloudformation.update_stack(
                    StackName=name, TemplateBody=body,
                    Parameters=_stack_parameters(parameters) + previous,
                    Capabilities=["CAPABILITY_IAM"], **self._as_role())
        except InvalidInput as error:
            if "No updates are to be performed" in error.message:
                return False
            raise
        return True

    def put_code(self, bucket: str, key: str, body: bytes) -> None:
        """Upload the lease function's code unless that exact key is already there."""
        try:
            with self._call("S3 HeadObject"):
                self.s3.head_object(Bucket=bucket, Key=key)
            return
        except NotFound:
            pass
        except InvalidInput as error:  # HEAD errors carry no body: 404 comes back as "404"
            if error.code != "404":
                raise
        with self._call("S3 PutObject"):
            self.s3.put_object(Bucket=bucket, Key=key, Body=body, ServerSideEncryption="AES256")

    def update_function_code(self, arn: str, bucket: str, key: str) -> None:
        with self._call("Lambda UpdateFunctionCode"):
            self.lambda_.update_function_code(FunctionName=arn, S3Bucket=bucket, S3Key=key)

    def function_code_sha256(self, arn: str) -> str:
        with self._call("Lambda GetFunction"):
            return self.lambda_.get_function(FunctionName=arn)["Configuration"]["CodeSha256"]


    # -- what -check-setup reads of the resources a create will use ------------------------
    def bucket_region(self, bucket: str) -> str:
        """The region the bucket is in (S3 GetBucketLocation: us-east-1 answers none)."""
        with self._call("S3 GetBucketLocation"):
            found = self.s3.get_bucket_location(Bucket=bucket).get("LocationConstraint")
        return found or "us-east-1"

    def function_policy(self, arn: str) -> dict[str, Any] | None:
        """The lease function's resource policy, or None when it has none."""
        try:
            with self._call("Lambda GetPolicy"):
                return json.loads(self.lambda_.get_policy(FunctionName=arn)["Policy"])
        except NotFound:
            return None

    def instance_profile_roles(self, arn: str) -> list[str]:
        """The role names of the instance profile ``arn`` (IAM GetInstanceProfile)."""
        name = arn.rsplit("/", 1)[-1]
        with self._call("IAM GetInstanceProfile"):
            found = self.iam.get_instance_profile(InstanceProfileName=name)["InstanceProfile"]
        return [role["RoleName"] for role in found.get("Roles", [])]

    def security_groups(self, group_ids: list[str]) -> list[dict[str, Any]]:
        with self._call("EC2 DescribeSecurityGroups"):
            return self.ec2.describe_security_groups(GroupIds=group_ids)["SecurityGroups"]


def _stack_parameters(parameters: dict[str, str]) -> list[dict[str, str]]:
    return [{"ParameterKey": key, "ParameterValue": value}
            for key, value in sorted(parameters.items())]

