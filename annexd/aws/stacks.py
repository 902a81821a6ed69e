"""One-time, per-region setup: the four CloudFormation stacks, as a table, and their checks.

Each stack is created if missing, updated only if its template or parameters differ from what
is deployed, and left alone otherwise -- so a second ``-setup`` changes nothing.  Templates
ship with the package (the package ``annexd_cfn``); the lease function's code is
uploaded by setup to the configuration bucket, so nothing depends on an externally hosted
artifact.

An account the original ``condor_annex`` (HTCondor 8.7-24.x) set up holds stacks of the same
four names, made from its templates (HTCondor's ``src/annex/setup/generate-*``): another
bucket, lease functions ``sfrLeaseFunction``/``odiLeaseFunction`` that its running annexes'
rules call, its own role and security group.  Updating them in place would delete those
functions (and the security group of its running instances), so setup then works *beside*
them under names of its own (:data:`BESIDE`) and never touches the original's stacks; they
can be deleted by hand once no annex of the original is left.
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


#: Suffix of our stack names in an account the original condor_annex set up.  The names stay
#: under ``HTCondorAnnex-*`` (and the role under ``HTCondorAnnex-InstanceProfile-*``), so the
#: setup and user policies (cfn/*-policy.json) cover them unchanged.
BESIDE = "-annexd"

#: What only the original's stacks have (HTCondor's src/annex/setup/generate-bucket,
#: -template, -role, -security-group): a parameter, a logical resource ID, a description.
ORIGINAL_PARAMETERS = frozenset({"S3FileName"})
ORIGINAL_RESOURCES = frozenset({"sfrLeaseFunction", "odiLeaseFunction", "ccFunction",
                                "ccFunctionRole", "SecurityGroup"})
ORIGINAL_DESCRIPTIONS = frozenset({"HTCondorAnnex: Configuration Bucket",
                                   "HTCondor Annex: Lambda Functions",
                                   "HTCondor Annex: Instance Profile",
                                   "HTCondorAnnex: Security Group"})


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


def originals_marks(stack: dict[str, Any], template: str) -> list[str]:
    """What in this deployed stack is the original condor_annex's (empty: it is not)."""
    marks = sorted(ORIGINAL_PARAMETERS & set(_parameters(stack)))
    try:  # the original's templates are JSON; ours are YAML, which json cannot read
        body = json.loads(template)
    except ValueError:
        return marks
    if not isinstance(body, dict):
        return marks
    marks += sorted(ORIGINAL_RESOURCES & set(body.get("Resources") or {}))
    if body.get("Description") in ORIGINAL_DESCRIPTIONS:
        marks.append(f"Description {body['Description']!r}")
    return marks


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
        self._suffix: str | None = None
        #: The original's stacks found in the account (name -> what marks them), if any.
        self.originals: dict[str, list[str]] = {}

    def name(self, spec: StackSpec) -> str:
        """The stack's name in this account: ours, or beside the original's."""
        if self._suffix is None:
            self._suffix = self._place()
        return spec.name + self._suffix

    def _place(self) -> str:
        """BESIDE if we set up beside the original before or its stacks are here now."""
        if any(self.aws.describe_stack(spec.name + BESIDE) for spec in STACKS):
            self._find_originals()
            return BESIDE
        return BESIDE if self._find_originals() else ""

    def _find_originals(self) -> dict[str, list[str]]:
        for spec in STACKS:
            stack = self.aws.describe_stack(spec.name)
            marks = stack and originals_marks(stack, self.aws.stack_template(spec.name))
            if marks:
                self.originals[spec.name] = marks
        return self.originals

    def beside_note(self) -> str | None:
        """One line saying that (and why) setup works beside the original's stacks."""
        if not self.originals:
            return None
        found = "; ".join(f"{name} ({', '.join(marks)})"
                          for name, marks in self.originals.items())
        return (f"the original condor_annex's setup is in this account: {found}. Its stacks, "
                f"lease functions and annexes are left as they are; this setup's stacks are "
                f"named HTCondorAnnex-*{BESIDE}. Delete the original's stacks by hand once none "
                "of its annexes is left (condor_annex -status lists annexes of both)")

    def _wait(self, spec: StackSpec, verb: str) -> dict[str, Any]:
        deadline = time.monotonic() + self.timeout_seconds
        while True:
            stack = self.aws.describe_stack(self.name(spec))
            status = stack["StackStatus"] if stack else "DELETE_COMPLETE"
            if status in DONE:
                self.progress(f"{verb} {spec.what} ({self.name(spec)}): complete")
                return stack
            if not status.endswith("_IN_PROGRESS"):
                reason = (stack or {}).get("StackStatusReason") or "see the stack's events"
                raise SetupError(f"{self.name(spec)} ended in {status}: {reason}")
            if time.monotonic() > deadline:
                raise SetupError(f"{self.name(spec)} still {status} after "
                                 f"{self.timeout_seconds:.0f} s")
            self.progress(f"{verb} {spec.what} ({self.name(spec)}): {status}")
            time.sleep(self.poll_seconds)

    def _bounded(self, spec: StackSpec, parameters: dict[str, str]) -> dict[str, str]:
        """Through the service role, the roles a stack makes carry its boundary."""
        role = self.aws.setup_role_arn
        if role and spec.makes_roles:
            return {**parameters, "PermissionsBoundary": boundary_of(role)}
        return parameters

    def deploy(self, spec: StackSpec, parameters: dict[str, str]) -> dict[str, str]:
        parameters = self._bounded(spec, parameters)
        body, name = spec.body(), self.name(spec)
        stack = self.aws.describe_stack(name)
        if stack is None:
            self.aws.create_stack(name, body, parameters)
            return _outputs(self._wait(spec, "creating"))
        status = stack["StackStatus"]
        if status in FAILED_FOR_GOOD:
            raise SetupError(f"{name} is in {status}; delete it (aws cloudformation "
                             f"delete-stack --stack-name {name}) and run -setup again")
        if status.endswith("_IN_PROGRESS"):
            stack = self._wait(spec, "waiting for")
        # Parameters setup does not manage (SSHCidr, ...) are the admin's: compare only ours,
        # and keep theirs on update.
        deployed = _parameters(stack)
        if (all(deployed.get(key) == value for key, value in parameters.items())
                and _same_template(self.aws.stack_template(name), body)):
            self.progress(f"{spec.what} ({name}): up to date")
            return _outputs(stack)
        keep = {key: value for key, value in deployed.items() if key not in parameters}
        if not self.aws.update_stack(name, body, parameters, keep):
            self.progress(f"{spec.what} ({name}): up to date")
            return _outputs(stack)
        return _outputs(self._wait(spec, "updating"))

    def run(self) -> dict[str, str]:
        """Create or update every stack in order; returns all their outputs."""
        outputs: dict[str, str] = {}
        self.name(STACKS[0])  # decides, once, whether to set up beside the original
        if note := self.beside_note():
            self.progress(f"notice: {note}")
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
            name = self.name(spec)
            stack = self.aws.describe_stack(name)
            if stack is None:
                problems.append(f"the {spec.what} stack {name} is missing: run {setup}")
            elif stack["StackStatus"] not in DONE:
                problems.append(f"the {spec.what} stack {name} is {stack['StackStatus']}:"
                                f" wait for it, or delete it and run {setup}")
        return problems
