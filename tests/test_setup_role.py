"""Issue 23 requirement 3: ``cfn/setup-role.json``, the CloudFormation service role -setup's
stacks run as, bounded by ``HTCondorAnnex-SetupBoundary``.  Judged by the evaluator as IAM
judges a role with a permissions boundary: allowed only if both its policy and the boundary
allow, and neither denies."""
from __future__ import annotations


import pytest

from annexd.aws.stacks import boundary_of
from localaws import setuppolicy
from localaws.iampolicy import Policy, Request, resolve, role_statements

from test_cfn import SETUP_ROLE
from test_iam_calls import template

ACCOUNT = "123456789012"
CONTEXT = {"AWS::Partition": "aws", "AWS::AccountId": ACCOUNT, "AWS::Region": "us-east-1"}
ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/HTCondorAnnex-SetupRole"
BOUNDARY = boundary_of(ROLE_ARN)
LEASE_ROLE = f"arn:aws:iam::{ACCOUNT}:role/HTCondorAnnex-LambdaFunctions-LeaseFunctionRole-1"


class Bounded:
    """A role's policy within its permissions boundary."""

    def __init__(self) -> None:
        parsed = template("setup-role.json")
        self.role = Policy(role_statements(parsed, "SetupRole", CONTEXT), "setup role")
        boundary = parsed["Resources"]["Boundary"]["Properties"]["PolicyDocument"]
        self.boundary = Policy(resolve(boundary, CONTEXT)["Statement"], "boundary")

    def allows(self, action: str, resource: str, **context: str) -> bool:
        request = Request(action, resource, context)
        return self.role.allows(request) and self.boundary.allows(request)


@pytest.fixture(scope="module")
def setup_role() -> Bounded:
    return Bounded()


def test_the_role_template_is_cfn_lint_clean_and_names_the_boundary(cfn_lint):
    assert cfn_lint.findings[SETUP_ROLE] == []
    parsed = template("setup-role.json")
    assert parsed["Resources"]["SetupRole"]["Properties"]["PermissionsBoundary"] == \
        {"Ref": "Boundary"}
    assert BOUNDARY == f"arn:aws:iam::{ACCOUNT}:policy/HTCondorAnnex-SetupBoundary"


def test_it_makes_annex_roles_only_within_the_boundary(setup_role):
    assert setup_role.allows("iam:CreateRole", LEASE_ROLE, **{"iam:PermissionsBoundary":
                                                              BOUNDARY})
    assert not setup_role.allows("iam:CreateRole", LEASE_ROLE)
    assert not setup_role.allows("iam:CreateRole", LEASE_ROLE, **{
        "iam:PermissionsBoundary": f"arn:aws:iam::{ACCOUNT}:policy/Other"})
    assert not setup_role.allows("iam:CreateRole", f"arn:aws:iam::{ACCOUNT}:role/Admin", **{
        "iam:PermissionsBoundary": BOUNDARY})
    assert not setup_role.allows("iam:DeleteRolePermissionsBoundary", LEASE_ROLE, **{
        "iam:PermissionsBoundary": BOUNDARY})


@pytest.mark.parametrize("action, resource", [
    ("iam:CreateUser", f"arn:aws:iam::{ACCOUNT}:user/HTCondorAnnex-x"),
    ("iam:PutUserPolicy", f"arn:aws:iam::{ACCOUNT}:user/HTCondorAnnex-x"),
    ("iam:CreateAccessKey", f"arn:aws:iam::{ACCOUNT}:user/HTCondorAnnex-x"),
    ("iam:CreatePolicyVersion", BOUNDARY),
    ("iam:PutRolePolicy", ROLE_ARN),
    ("iam:AttachRolePolicy", ROLE_ARN),
    ("iam:PassRole", ROLE_ARN),
    ("sts:AssumeRole", LEASE_ROLE),
])
def test_it_cannot_escalate(setup_role, action, resource):
    assert not setup_role.allows(action, resource, **{"iam:PermissionsBoundary": BOUNDARY,
                                                      "iam:PassedToService":
                                                      "lambda.amazonaws.com"})


def test_it_passes_annex_roles_to_lambda_and_ec2_only(setup_role):
    for service in ("lambda.amazonaws.com", "ec2.amazonaws.com"):
        assert setup_role.allows("iam:PassRole", LEASE_ROLE, **{"iam:PassedToService": service})
    assert not setup_role.allows("iam:PassRole", LEASE_ROLE, **{
        "iam:PassedToService": "cloudformation.amazonaws.com"})


def test_what_the_stacks_need_and_what_their_roles_do_fit_the_boundary(setup_role):
    """Every handler permission of the setup stacks' resource types is the role's (IAM's on
    annex roles), and every action the lease function's and instances' roles use is inside
    the boundary they carry."""
    handled = setuppolicy.iam_actions(setuppolicy.handler_permissions(
        setuppolicy.resource_types(setuppolicy.templates())))
    assert "iam:CreateRole" in handled and "lambda:CreateFunction" in handled
    bounded = {"iam:PermissionsBoundary": BOUNDARY,
               "iam:PassedToService": "lambda.amazonaws.com"}
    missing = [a for a in handled if a not in setuppolicy.NEVER | {"iam:PutUserPolicy",
                                                                   "iam:DeleteUserPolicy",
                                                                   "iam:GetUserPolicy",
                                                                   "iam:PutGroupPolicy",
                                                                   "iam:DeleteGroupPolicy",
                                                                   "iam:GetGroupPolicy"}
               and not setup_role.allows(a, LEASE_ROLE if a.startswith("iam:") else "*",
                                         **bounded)]
    assert missing == []
    for action in setuppolicy.role_actions(setuppolicy.templates()):
        assert setup_role.boundary.allows(Request(action, "*")), action
