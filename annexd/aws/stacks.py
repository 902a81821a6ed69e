"""One-time, per-region setup: the four CloudFormation stacks, as a table, and their checks.

Each stack is created if missing, updated only if its template or parameters differ from what
is deployed, and left alone otherwise -- so a second ``-setup`` changes nothing.  Templates
ship with the package (the package ``annexd_cfn``); the lease function's code is
uploaded by setup to the configuration bucket, so nothing depends on an externally hosted
artifact.
"""
from __future__ import annotations

import importlib.resources
import json
import time
from dataclasses import dataclass
from typing import Any, Callable

from annexd.aws import leasecode
from annexd.aws import AnnexAws

DONE = ("CREATE_COMPLETE", "UPDATE_COMPLETE")
FAILED_FOR_GOOD = ("ROLLBACK_COMPLETE", "ROLLBACK_FAILED", "CREATE_FAILED", "DELETE_FAILED")

Progress = Callable[[str], None]


class SetupError(Exception):
    """A stack could not be brought to a complete state; the message says which and why."""


#: What cfn/setup-role.json makes, once, for the account administrator: the CloudFormation
#: service role -setup's stacks run as, and the permissions boundary it and every role its
#: stacks make must carry (so no stack can make a role that does more).
SETUP_ROLE_NAME = "HTCondorAnnex-SetupRole"
SETUP_BOUNDARY_NAME = "HTCondorAnnex-SetupBoundary"


def boundary_of(role_arn: str) -> str:
    """The boundary policy's ARN, in the service role's partition and account."""
    partition, account = role_arn.split(":")[1], role_arn.split(":")[4]
    return f"arn:{partition}:iam::{account}:policy/{SETUP_BOUNDARY_NAME}"


@dataclass(frozen=True)
class StackSpec:
    name: str
    template: str
    what: str
    parameters: Callable[[dict[str, str]], dict[str, str]]
    #: Its template makes IAM roles, which take the boundary (PermissionsBoundary).
    makes_roles: bool = False

    def body(self) -> str:
        return importlib.resources.files("annexd_cfn").joinpath(self.template).read_text()


STACKS: tuple[StackSpec, ...] = (
    StackSpec("HTCondorAnnex-ConfigurationBucket", "bucket.yaml", "configuration bucket",
              lambda outputs: {}),
    StackSpec("HTCondorAnnex-LambdaFunctions", "lease-function.yaml", "lease function",
              lambda outputs: {"S3BucketName": outputs["S3BucketName"],
                               "CodeS3Key": leasecode.s3_key()}, makes_roles=True),
    StackSpec("HTCondorAnnex-InstanceProfile", "instance-profile.yaml", "instance profile",
              lambda outputs: {"S3BucketName": outputs["S3BucketName"]}, makes_roles=True),
    StackSpec("HTCondorAnnex-SecurityGroup", "security-group.yaml", "security group",
              lambda outputs: {}),
)


def _outputs(stack: dict[str, Any]) -> dict[str, str]:
    return {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}


def _parameters(stack: dict[str, Any]) -> dict[str, str]:
    return {p["ParameterKey"]: p.get("ParameterValue", "") for p in stack.get("Parameters", [])}


def _same_template(deployed: str, wanted: str) -> bool:
    if deployed.strip() == wanted.strip():
        return True
    try:  # some services hand the template back re-serialised as JSON
        return json.loads(deployed) == json.loads(wanted)
    except ValueError:
        return False


class Setup:
    def __init__(self, aws: AnnexAws, progress: Progress, poll_seconds: float = 5.0,
                 timeout_seconds: float = 1800.0):
        self.aws, self.progress = aws, progress
        self.poll_seconds, self.timeout_seconds = poll_seconds, timeout_seconds

    def _wait(self, spec: StackSpec, verb: str) -> dict[str, Any]:
        deadline = time.monotonic() + self.timeout_seconds
        while True:
            stack = self.aws.describe_stack(spec.name)
            status = stack["StackStatus"] if stack else "DELETE_COMPLETE"
            if status in DONE:
                self.progress(f"{verb} {spec.what} ({spec.name}): complete")
                return stack
            if not status.endswith("_IN_PROGRESS"):
                reason = (stack or {}).get("StackStatusReason") or "see the stack's events"
                raise SetupError(f"{spec.name} ended in {status}: {reason}")
            if time.monotonic() > deadline:
                raise SetupError(f"{spec.name} still {status} after {self.timeout_seconds:.0f} s")
            self.progress(f"{verb} {spec.what} ({spec.name}): {status}")
            time.sleep(self.poll_seconds)

    def _bounded(self, spec: StackSpec, parameters: dict[str, str]) -> dict[str, str]:
        """Through the service role, the roles a stack makes carry its boundary."""
        role = self.aws.setup_role_arn
        if role and spec.makes_roles:
            return {**parameters, "PermissionsBoundary": boundary_of(role)}
        return parameters

    def deploy(self, spec: StackSpec, parameters: dict[str, str]) -> dict[str, str]:
        parameters = self._bounded(spec, parameters)
        body = spec.body()
        stack = self.aws.describe_stack(spec.name)
        if stack is None:
            self.aws.create_stack(spec.name, body, parameters)
            return _outputs(self._wait(spec, "creating"))
        status = stack["StackStatus"]
        if status in FAILED_FOR_GOOD:
            raise SetupError(f"{spec.name} is in {status}; delete it (aws cloudformation "
                             f"delete-stack --stack-name {spec.name}) and run -setup again")
        if status.endswith("_IN_PROGRESS"):
            stack = self._wait(spec, "waiting for")
        # Parameters setup does not manage (SSHCidr, ...) are the admin's: compare only ours,
        # and keep theirs on update.
        deployed = _parameters(stack)
        if (all(deployed.get(key) == value for key, value in parameters.items())
                and _same_template(self.aws.stack_template(spec.name), body)):
            self.progress(f"{spec.what} ({spec.name}): up to date")
            return _outputs(stack)
        keep = sorted(set(deployed) - set(parameters))
        if not self.aws.update_stack(spec.name, body, parameters, keep):
            self.progress(f"{spec.what} ({spec.name}): up to date")
            return _outputs(stack)
        return _outputs(self._wait(spec, "updating"))

    def run(self) -> dict[str, str]:
        """Create or update every stack in order; returns all their outputs."""
        outputs: dict[str, str] = {}
        for spec in STACKS:
            if spec.template == "lease-function.yaml":
                self.aws.put_code(outputs["S3BucketName"], leasecode.s3_key(),
                                  leasecode.package())
            outputs.update(self.deploy(spec, spec.parameters(outputs)))
            if spec.template == "lease-function.yaml":
                self._repair_code(outputs["LeaseFunctionARN"], outputs["S3BucketName"])
        return outputs

    def _repair_code(self, arn: str, bucket: str) -> None:
        """Put this release's code back if someone changed the function behind the stack."""
        if self.aws.function_code_sha256(arn) != leasecode.code_sha256():
            self.aws.update_function_code(arn, bucket, leasecode.s3_key())
            self.progress(f"lease function ({arn}): code restored to this release's")

    def check(self) -> list[str]:
        """One line per stack that is not complete, each saying how to fix it; empty when
        all are (what they made is checked as a create uses it: annexd.commands.checksetup)."""
        problems = []
        setup = f"condor_annex -aws-region {self.aws.region} -setup"
        for spec in STACKS:
            stack = self.aws.describe_stack(spec.name)
            if stack is None:
                problems.append(f"the {spec.what} stack {spec.name} is missing: run {setup}")
            elif stack["StackStatus"] not in DONE:
                problems.append(f"the {spec.what} stack {spec.name} is {stack['StackStatus']}:"
                                f" wait for it, or delete it and run {setup}")
        return problems
