"""``cfn/setup-policy.json`` and ``cfn/setup-role.json``, generated: ``python -m
localaws.setuppolicy`` rewrites both, a test checks they are current.

``-setup`` runs its stacks through a CloudFormation service role (issue 23 finding 3: keys
that may make IAM roles, attach policies and pass roles through CloudFormation are close to
account administrator, whatever the stack's name):

* ``setup-role.json``, made once by the account administrator
  (``aws cloudformation deploy --template-file cfn/setup-role.json --stack-name
  HTCondorAnnex-SetupRole --capabilities CAPABILITY_NAMED_IAM``): the role
  ``HTCondorAnnex-SetupRole``, which CloudFormation alone may assume, with what
  CloudFormation's handlers need for the resource types ``cfn/*.yaml`` use (from the resource
  schemas cfn-lint ships); IAM only on ``HTCondorAnnex-*`` roles and instance profiles, every
  role it makes or changes bound by ``HTCondorAnnex-SetupBoundary``, roles passed only to
  Lambda and EC2.  The boundary bounds the role itself too: it allows only those actions and
  what the lease function's and the instances' roles do, and denies leaving the boundary or
  changing it or the setup role.
* ``setup-policy.json``, for the keys that run ``condor_annex -setup``: describe, create and
  update the ``HTCondorAnnex-*`` stacks -- create and update only as that role
  (``cloudformation:RoleArn``) -- pass that one role to CloudFormation, and the two direct
  calls (the lease function's code object, the function's code).  Judged against the recorded
  calls by ``tests/test_iam_calls.py`` like every other policy.
"""
from __future__ import annotations

import glob
import importlib.util
import json
import os
import sys
from typing import Any

from annexd.aws.stacks import SETUP_BOUNDARY_NAME, SETUP_ROLE_NAME
from localaws import cfntemplate

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.path.join(ROOT, "cfn", "setup-policy.json")
ROLE_TARGET = os.path.join(ROOT, "cfn", "setup-role.json")
STACKS = "arn:${Partition}:cloudformation:*:${AccountId}:stack/HTCondorAnnex-*/*"
SETUP_ROLE = f"arn:${{Partition}}:iam::${{AccountId}}:role/{SETUP_ROLE_NAME}"

DIRECT: list[dict[str, Any]] = [
    {"Sid": "SeeTheSetupStacks", "Effect": "Allow",
     "Action": ["cloudformation:DescribeStacks", "cloudformation:GetTemplate"],
     "Resource": STACKS},
    {"Sid": "MakeTheSetupStacksOnlyAsTheSetupRole", "Effect": "Allow",
     "Action": ["cloudformation:CreateStack", "cloudformation:UpdateStack"],
     "Resource": STACKS,
     "Condition": {"StringEquals": {"cloudformation:RoleArn": SETUP_ROLE}}},
    {"Sid": "PassTheSetupRoleToCloudFormation", "Effect": "Allow",
     "Action": "iam:PassRole", "Resource": SETUP_ROLE,
     "Condition": {"StringEquals": {"iam:PassedToService": "cloudformation.amazonaws.com"}}},
    {"Sid": "LeaseFunctionCode", "Effect": "Allow",
     "Action": ["s3:GetObject", "s3:PutObject"],
     "Resource": "arn:${Partition}:s3:::htcondorannex-*/lambda/lease-*.zip"},
    {"Sid": "LeaseFunction", "Effect": "Allow",
     "Action": ["lambda:GetFunction", "lambda:UpdateFunctionCode"],
     "Resource": "arn:${Partition}:lambda:*:${AccountId}:function:HTCondorAnnex-LeaseFunction"},
]

#: IAM actions whose iam:PermissionsBoundary condition must name the boundary.
BOUNDED = {"iam:CreateRole", "iam:PutRolePolicy", "iam:AttachRolePolicy",
           "iam:DetachRolePolicy", "iam:DeleteRolePolicy", "iam:PutRolePermissionsBoundary",
           "iam:UpdateAssumeRolePolicy"}
#: IAM actions the service role never gets: users and groups are not ours, and a boundary
#: is never removed.
NEVER = {"iam:DeleteRolePermissionsBoundary"}
LISTS = {"iam:ListRoles", "iam:ListInstanceProfiles"}


def _sub(text: str) -> dict[str, str]:
    return {"Fn::Sub": text.replace("${Partition}", "${AWS::Partition}")
            .replace("${AccountId}", "${AWS::AccountId}")}


BOUNDARY_ARN = _sub(f"arn:${{Partition}}:iam::${{AccountId}}:policy/{SETUP_BOUNDARY_NAME}")
ANNEX_IAM = [_sub("arn:${Partition}:iam::${AccountId}:role/HTCondorAnnex-*"),
             _sub("arn:${Partition}:iam::${AccountId}:instance-profile/HTCondorAnnex-*")]


def templates() -> list[str]:
    """The setup stacks' templates (not the service role's own)."""
    return sorted(glob.glob(os.path.join(ROOT, "cfn", "*.yaml")))


def _cfnlint_dir() -> str:
    """Where cfn-lint's data lies, found without importing it (its import is a second:
    sympy, networkx)."""
    spec = importlib.util.find_spec("cfnlint")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("cfn-lint is not installed (it is in the test environment)")
    return spec.submodule_search_locations[0]


def resource_types(paths: list[str]) -> set[str]:
    return {resource["Type"] for path in paths
            for resource in cfntemplate.load(path)["Resources"].values()}


def handler_permissions(types: set[str]) -> list[str]:
    """Every permission CloudFormation's handlers (create, read, update, delete, list) of
    ``types`` need, from the resource schemas cfn-lint ships."""
    schemas = os.path.join(_cfnlint_dir(), "data", "schemas")
    with open(os.path.join(schemas, "providers", "us-east-1.json"), encoding="utf-8") as f:
        provider = json.load(f)
    actions: set[str] = set()
    for kind in sorted(types):
        with open(os.path.join(schemas, "resources", f"{provider[kind]}.json"),
                  encoding="utf-8") as handle:
            schema = json.load(handle)
        for handler in schema.get("handlers", {}).values():
            actions |= set(handler.get("permissions", []))
    return sorted(actions)


def iam_actions(actions: list[str]) -> list[str]:
    """Only what IAM knows (cfn-lint's copy of the service map, as its W3037 checks): some
    handler permissions name no IAM action (``s3:REST.PUT.OBJECT``), which a policy must not."""
    with open(os.path.join(_cfnlint_dir(), "data", "AdditionalSpecs",
                           "Policies.json"), encoding="utf-8") as handle:
        services = json.load(handle)
    known = {f"{service}:{action}".lower() for service, entry in services.items()
             for action in entry.get("Actions", {})}
    return [a for a in actions if a.lower() in known]


def role_actions(paths: list[str]) -> set[str]:
    """What the roles the setup stacks make may do (their inline policies' actions)."""
    found: set[str] = set()
    for path in paths:
        for resource in cfntemplate.load(path)["Resources"].values():
            for policy in resource.get("Properties", {}).get("Policies", []) \
                    if resource["Type"] == "AWS::IAM::Role" else []:
                statements = policy["PolicyDocument"]["Statement"]
                for statement in statements if isinstance(statements, list) else [statements]:
                    action = statement["Action"]
                    found |= set(action if isinstance(action, list) else [action])
    return found


def service_role_statements(handled: list[str]) -> list[dict[str, Any]]:
    iam = {a for a in handled if a.startswith("iam:")}
    plain = sorted(set(handled) - iam)
    iam -= NEVER | {a for a in iam if "User" in a or "Group" in a}
    return [
        {"Sid": "WhatTheSetupStacksMake", "Effect": "Allow", "Action": plain,
         "Resource": "*"},
        {"Sid": "ListRoles", "Effect": "Allow", "Action": sorted(iam & LISTS),
         "Resource": "*"},
        {"Sid": "AnnexRolesAndProfiles", "Effect": "Allow",
         "Action": sorted(iam - LISTS - BOUNDED - {"iam:PassRole"}), "Resource": ANNEX_IAM},
        {"Sid": "AnnexRolesOnlyWithinTheBoundary", "Effect": "Allow",
         "Action": sorted(iam & BOUNDED), "Resource": ANNEX_IAM[0],
         "Condition": {"StringEquals": {"iam:PermissionsBoundary": BOUNDARY_ARN}}},
        {"Sid": "PassAnnexRolesToLambdaAndEc2Only", "Effect": "Allow",
         "Action": "iam:PassRole", "Resource": ANNEX_IAM[0],
         "Condition": {"StringEquals": {"iam:PassedToService": [
             "ec2.amazonaws.com", "lambda.amazonaws.com"]}}},
    ]


def boundary_statements(handled: list[str], roles: set[str]) -> list[dict[str, Any]]:
    setup_role = _sub(f"arn:${{Partition}}:iam::${{AccountId}}:role/{SETUP_ROLE_NAME}")
    return [
        {"Sid": "AtMostWhatSetupAndTheAnnexRolesDo", "Effect": "Allow",
         "Action": sorted((set(handled) | roles) - NEVER), "Resource": "*"},
        {"Sid": "NoRoleOutsideTheBoundary", "Effect": "Deny",
         "Action": ["iam:CreateRole", "iam:PutRolePermissionsBoundary"], "Resource": "*",
         "Condition": {"StringNotEquals": {"iam:PermissionsBoundary": BOUNDARY_ARN}}},
        {"Sid": "NoEscapeFromTheBoundary", "Effect": "Deny",
         "Action": "iam:DeleteRolePermissionsBoundary", "Resource": "*"},
        {"Sid": "TheBoundaryAndTheSetupRoleStayAsTheAdministratorMadeThem", "Effect": "Deny",
         "Action": ["iam:CreatePolicyVersion", "iam:DeletePolicy", "iam:DeletePolicyVersion",
                    "iam:SetDefaultPolicyVersion", "iam:PutRolePolicy",
                    "iam:AttachRolePolicy", "iam:DetachRolePolicy", "iam:DeleteRolePolicy",
                    "iam:UpdateAssumeRolePolicy", "iam:DeleteRole", "iam:PassRole"],
         "Resource": [BOUNDARY_ARN, setup_role]},
    ]


def service_role_template() -> dict[str, Any]:
    paths = templates()
    handled = iam_actions(handler_permissions(resource_types(paths)))
    return {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": "HTCondor annex setup: the CloudFormation service role condor_annex "
                       "-setup's stacks run as (ANNEX_SETUP_SERVICE_ROLE_ARN), and the "
                       "permissions boundary it and every role it makes carry. Made once by "
                       "the account administrator; generated by python -m "
                       "localaws.setuppolicy.",
        "Resources": {
            "Boundary": {"Type": "AWS::IAM::ManagedPolicy", "Properties": {
                "ManagedPolicyName": SETUP_BOUNDARY_NAME,
                "Description": "The most HTCondor annex setup, and any role it makes, "
                               "may do.",
                "PolicyDocument": {"Version": "2012-10-17", "Statement":
                                   boundary_statements(handled, role_actions(paths))}}},
            "SetupRole": {"Type": "AWS::IAM::Role", "Properties": {
                "RoleName": SETUP_ROLE_NAME,
                "Description": "CloudFormation makes HTCondor annex setup stacks as this "
                               "role.",
                "PermissionsBoundary": {"Ref": "Boundary"},
                "AssumeRolePolicyDocument": {"Version": "2012-10-17", "Statement": [{
                    "Effect": "Allow", "Action": "sts:AssumeRole",
                    "Principal": {"Service": "cloudformation.amazonaws.com"}}]},
                "Policies": [{"PolicyName": "HTCondorAnnexSetupStacks", "PolicyDocument": {
                    "Version": "2012-10-17",
                    "Statement": service_role_statements(handled)}}]}},
        },
        "Outputs": {"SetupRoleArn": {
            "Description": "Set ANNEX_SETUP_SERVICE_ROLE_ARN to this.",
            "Value": {"Fn::GetAtt": ["SetupRole", "Arn"]}}},
    }


def policy() -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": DIRECT}


def text() -> str:
    return json.dumps(policy(), indent=2) + "\n"


def role_text() -> str:
    return json.dumps(service_role_template(), indent=2) + "\n"


def main() -> int:
    for path, body in ((TARGET, text()), (ROLE_TARGET, role_text())):
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(body)
        print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
