"""The IAM evaluator the permission tests rely on: IAM's own semantics, case by case."""
from __future__ import annotations

import pytest

from localaws.iampolicy import Policy, Request, Unsupported, arn_matches, resolve

INSTANCE = "arn:aws:ec2:us-east-1:123456789012:instance/i-1"


def allow(action, resource, condition=None, effect="Allow") -> dict:
    statement = {"Effect": effect, "Action": action, "Resource": resource}
    if condition:
        statement["Condition"] = condition
    return statement


@pytest.mark.parametrize("pattern, arn, matches", [
    ("*", INSTANCE, True),
    ("arn:aws:ec2:us-east-1:123456789012:instance/*", INSTANCE, True),
    ("arn:aws:ec2:*:123456789012:instance/*", INSTANCE, True),
    ("arn:aws:ec2:us-east-1:123456789012:volume/*", INSTANCE, False),
    ("arn:aws:ec2:us-east-1:*:instance/i-?", INSTANCE, True),
    ("arn:aws:ec2:us-east-1:*:instance/i-??", INSTANCE, False),
    ("arn:aws:s3:::b/config-*.tar.gz", "arn:aws:s3:::b/config-x.tar.gz", True),
    ("arn:aws:s3:::b/config-*.tar.gz", "arn:aws:s3:::b/home/config-x.tar.gz", False),
    ("arn:aws:s3:::b/config-*.tar.gz", "arn:aws:s3:::b/config-x.tar.gz.bak", False),
    ("arn:aws:s3:::b/config-[x].tar.gz", "arn:aws:s3:::b/config-x.tar.gz", False),
    ("arn:aws:ec2:us-east-1:123456789012:instance/*", "*", False),
])
def test_arn_wildcards(pattern, arn, matches):
    assert arn_matches(pattern, arn) is matches


def test_actions_match_case_insensitively_with_wildcards():
    policy = Policy([allow("ec2:Describe*", "*")])
    assert policy.allows(Request("ec2:describeinstances", "*"))
    assert not policy.allows(Request("ec2:TerminateInstances", "*"))


def test_an_explicit_deny_wins():
    policy = Policy([allow("s3:*", "*"), allow("s3:DeleteObject", "*", effect="Deny")])
    assert policy.allows(Request("s3:GetObject", "arn:aws:s3:::b/k"))
    assert not policy.allows(Request("s3:DeleteObject", "arn:aws:s3:::b/k"))


TAG = "aws:ResourceTag/htcondor:AnnexName"


@pytest.mark.parametrize("condition, context, allowed", [
    ({"Null": {TAG: "false"}}, {TAG: "x"}, True),
    ({"Null": {TAG: "false"}}, {}, False),
    ({"Null": {TAG: "true"}}, {}, True),
    ({"StringEquals": {TAG: ["a", "b"]}}, {TAG: "b"}, True),
    ({"StringEquals": {TAG: "a"}}, {TAG: "A"}, False),
    ({"StringEquals": {TAG: "a"}}, {}, False),
    ({"StringNotEquals": {TAG: "a"}}, {}, True),
    ({"StringNotEquals": {TAG: "a"}}, {TAG: "a"}, False),
    ({"StringEqualsIfExists": {TAG: "a"}}, {}, True),
    ({"StringEqualsIfExists": {TAG: "a"}}, {TAG: "b"}, False),
    ({"StringLike": {"s3:prefix": "config-*.tar.gz"}}, {"s3:prefix": "config-a.tar.gz"}, True),
    ({"StringLike": {"s3:prefix": "config-*.tar.gz"}}, {"s3:prefix": "config-"}, False),
    ({"StringLike": {"s3:prefix": "config-*.tar.gz"}}, {}, False),
    ({"ForAllValues:StringEquals": {"aws:TagKeys": ["a", "b"]}}, {"aws:TagKeys": ["a"]}, True),
    ({"ForAllValues:StringEquals": {"aws:TagKeys": ["a"]}}, {"aws:TagKeys": ["a", "c"]}, False),
    ({"ForAllValues:StringEquals": {"aws:TagKeys": ["a"]}}, {}, True),
    ({"ForAnyValue:StringEquals": {"aws:TagKeys": ["a"]}}, {"aws:TagKeys": ["c", "a"]}, True),
    ({"ForAnyValue:StringEquals": {"aws:TagKeys": ["a"]}}, {}, False),
    ({"ArnLike": {"aws:SourceArn": "arn:aws:events:*:1:rule/*"}},
     {"aws:SourceArn": "arn:aws:events:us-east-1:1:rule/x"}, True),
    ({"Bool": {"aws:SecureTransport": "false"}}, {"aws:SecureTransport": "False"}, True),
    # Two keys, two operators: all must hold.
    ({"Null": {TAG: "false"}, "StringEquals": {"ec2:CreateAction": "RunInstances"}},
     {TAG: "x", "ec2:CreateAction": "CreateFleet"}, False),
])
def test_condition_operators(condition, context, allowed):
    policy = Policy([allow("ec2:TerminateInstances", "*", condition)])
    assert policy.allows(Request("ec2:TerminateInstances", INSTANCE, context)) is allowed


def test_condition_key_names_ignore_case_but_tag_keys_do_not():
    policy = Policy([allow("ec2:TerminateInstances", "*", {"Null": {TAG: "false"}})])
    assert policy.allows(Request("ec2:TerminateInstances", INSTANCE,
                                 {"AWS:resourcetag/htcondor:AnnexName": "x"}))
    assert not policy.allows(Request("ec2:TerminateInstances", INSTANCE,
                                     {"aws:ResourceTag/HTCONDOR:ANNEXNAME": "x"}))


@pytest.mark.parametrize("condition", [{"NumericLessThan": {"k": "1"}},
                                       {"StringEquals": {"aws:TagKeys": "a"}}])
def test_what_the_evaluator_does_not_model_is_an_error(condition):
    policy = Policy([allow("a:B", "*", condition)])
    with pytest.raises(Unsupported):
        policy.allows(Request("a:B", "*", {"k": "0", "aws:TagKeys": ["a", "b"]}))
    with pytest.raises(Unsupported):
        resolve({"Fn::Join": ["", []]}, {})


def test_unused_grants_and_mutation_helpers():
    policy = Policy([allow(["s3:GetObject", "s3:PutObject"], "*"), allow("ec2:Describe*", "*")])
    assert policy.grants_unused({"s3:GetObject", "ec2:DescribeFleets"}) == ["s3:PutObject"]
    smaller = policy.without_action("s3:GetObject")
    assert not smaller.allows(Request("s3:GetObject", "arn:aws:s3:::b/k"))
    assert smaller.allows(Request("s3:PutObject", "arn:aws:s3:::b/k"))
