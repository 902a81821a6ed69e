"""The IAM evaluator the permission tests rely on: IAM's own semantics, case by case."""
from __future__ import annotations

import pytest

from localaws.iampolicy import Policy, Request, Unsupported, arn_matches, as_principal, resolve

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


# -- policy variables and operators on the IAM User Guide's own examples --------------------
# ("IAM policy elements: Variables and tags", "IAM JSON policy elements: Condition operators")

DAVID = {"aws:username": "David", "aws:userid": "AIDAJQABLZS4A3QDU576Q"}
ADELE = {"aws:username": "Adele", "aws:userid": "AIDAADELEADELEADELE00"}
ROLE_SESSION = {"aws:userid": "AROADBQP57FF2AEXAMPLE:i-0123"}  # a role: no aws:username

HOME_DIRECTORY = [  # the guide's per-user "home directory" policy
    {"Action": ["s3:ListBucket"], "Effect": "Allow", "Resource": ["arn:aws:s3:::mybucket"],
     "Condition": {"StringLike": {"s3:prefix": ["${aws:username}/*"]}}},
    {"Action": ["s3:GetObject", "s3:PutObject"], "Effect": "Allow",
     "Resource": ["arn:aws:s3:::mybucket/${aws:username}/*"]},
]


@pytest.mark.parametrize("principal, key, allowed", [
    (DAVID, "David/notes.txt", True),
    (DAVID, "Adele/notes.txt", False),
    (ADELE, "Adele/notes.txt", True),
    (DAVID, "DavidX/notes.txt", False),
    (DAVID, "David", False),
    (ROLE_SESSION, "David/notes.txt", False),  # not present: the statement does not match
])
def test_the_guides_home_directory_example(principal, key, allowed):
    policy = Policy(HOME_DIRECTORY)
    [get] = as_principal([Request("s3:GetObject", f"arn:aws:s3:::mybucket/{key}")], principal)
    assert policy.allows(get) is allowed
    [listing] = as_principal([Request("s3:ListBucket", "arn:aws:s3:::mybucket",
                                      {"s3:prefix": key})], principal)
    assert policy.allows(listing) is allowed


def test_the_guides_queue_and_principal_tag_examples():
    queues = Policy([{"Effect": "Allow", "Action": "sqs:*",
                      "Resource": "arn:aws:sqs:us-east-2:*:${aws:username}-queue"}])
    mine = "arn:aws:sqs:us-east-2:123456789012:David-queue"
    assert queues.allows(as_principal([Request("sqs:SendMessage", mine)], DAVID)[0])
    assert not queues.allows(as_principal([Request("sqs:SendMessage", mine)], ADELE)[0])
    assert not queues.allows(as_principal([Request(
        "sqs:SendMessage", "arn:aws:sqs:us-west-2:123456789012:David-queue")], DAVID)[0])
    department = Policy([{"Effect": "Allow", "Action": "s3:*",
                          "Resource": ["arn:aws:s3:::bucket/${aws:PrincipalTag/department}"]}])
    hr = {"aws:PrincipalTag/department": "hr"}
    assert department.allows(Request("s3:GetObject", "arn:aws:s3:::bucket/hr", hr))
    assert not department.allows(Request("s3:GetObject", "arn:aws:s3:::bucket/it", hr))
    assert not department.allows(Request("s3:GetObject", "arn:aws:s3:::bucket/hr"))


def test_default_values_and_the_fixed_variables():
    """The guide's ``${aws:userid, 'anonymous'}``, and ``${*}`` as a literal asterisk."""
    policy = Policy([allow("s3:GetObject", "*", {"StringEquals": {
        "aws:Resource": "arn:aws:s3:::/bucket/${aws:userid, 'anonymous'}"}})])
    anonymous = Request("s3:GetObject", "*", {"aws:Resource": "arn:aws:s3:::/bucket/anonymous"})
    assert policy.allows(anonymous)
    assert not policy.allows(Request("s3:GetObject", "*", {
        **anonymous.context, "aws:userid": "AIDAJQABLZS4A3QDU576Q"}))
    star = Policy([allow("s3:GetObject", "arn:aws:s3:::b/a${*}")])
    assert star.allows(Request("s3:GetObject", "arn:aws:s3:::b/a*"))
    assert not star.allows(Request("s3:GetObject", "arn:aws:s3:::b/ab"))


def test_a_variables_value_is_never_a_wildcard():
    policy = Policy([allow("s3:GetObject", "arn:aws:s3:::b/${aws:PrincipalTag/team}/*")])
    assert not policy.allows(Request("s3:GetObject", "arn:aws:s3:::b/red/x",
                                     {"aws:PrincipalTag/team": "*"}))


def test_an_unresolved_variable_voids_a_deny_too():
    """"Any attempt to match it fails and causes the statement to be invalid": a Deny whose
    variable has no value does not apply (which is why the user policy's Denies name only
    keys every principal has)."""
    policy = Policy([allow("s3:*", "*"),
                     allow("s3:DeleteObject", "arn:aws:s3:::b/${aws:username}/*",
                           effect="Deny")])
    assert not policy.allows(Request("s3:DeleteObject", "arn:aws:s3:::b/David/x", DAVID))
    assert policy.allows(Request("s3:DeleteObject", "arn:aws:s3:::b/David/x", ROLE_SESSION))


def test_the_guides_if_exists_and_null_examples():
    instance_types = Policy([allow("ec2:RunInstances", "*", {
        "StringLikeIfExists": {"ec2:InstanceType": ["t1.*", "t2.*", "m3.*"]}})])
    run = "ec2:RunInstances"
    assert instance_types.allows(Request(run, INSTANCE, {"ec2:InstanceType": "t2.micro"}))
    assert not instance_types.allows(Request(run, INSTANCE, {"ec2:InstanceType": "m5.large"}))
    assert instance_types.allows(Request(run, "arn:aws:ec2:us-east-1::image/ami-1"))
    own_keys_only = Policy([allow("ec2:*", "*", {"Null": {"aws:TokenIssueTime": "true"}})])
    assert own_keys_only.allows(Request(run, INSTANCE))
    assert not own_keys_only.allows(Request(run, INSTANCE,
                                            {"aws:TokenIssueTime": "2026-12-07T12:00:00Z"}))


@pytest.mark.parametrize("condition", [{"Null": {"aws:username": "${aws:username}"}},
                                       {"Bool": {"aws:SecureTransport": "${aws:username}"}}])
def test_variables_outside_string_and_arn_conditions_are_not_modelled(condition):
    with pytest.raises(Unsupported):
        Policy([allow("a:B", "*", condition)]).allows(
            Request("a:B", "*", {**DAVID, "aws:SecureTransport": "true"}))
    with pytest.raises(Unsupported):
        Policy([allow("a:B", "arn:aws:sqs:${aws:username}:1:q")]).allows(
            Request("a:B", "arn:aws:sqs:David:1:q", DAVID))


def test_an_assumed_role_sessions_userid_is_role_id_colon_session_name():
    """IAM User Guide ("AWS global condition context keys", aws:userid): for a role session
    it is ``<role-id>:<role-session-name>``; EC2 names an instance role's session after the
    instance.  So ``${aws:userid}`` in a resource reaches one instance's key only."""
    from localaws.iampolicy import assumed_role_keys
    policy = Policy([{"Effect": "Allow", "Action": "s3:GetObject",
                      "Resource": "arn:aws:s3:::b/config-*/i/${aws:userid}.tar.gz"}])
    me = assumed_role_keys("AROAEXAMPLEROLE", "i-0abc")
    assert me == {"aws:userid": "AROAEXAMPLEROLE:i-0abc"}
    mine = "arn:aws:s3:::b/config-AIDAOWNER/us-east-1-a_1/i/AROAEXAMPLEROLE:i-0abc.tar.gz"
    assert policy.allows(Request("s3:GetObject", mine, me))
    for other in (mine.replace("i-0abc", "i-0def"), mine.replace("AROAEXAMPLEROLE", "AROAOTHER"),
                  "arn:aws:s3:::b/config-AIDAOWNER/us-east-1-a_1.tar.gz"):
        assert not policy.allows(Request("s3:GetObject", other, me)), other
    assert not policy.allows(Request("s3:GetObject", mine, assumed_role_keys(
        "AROAEXAMPLEROLE", "i-0def")))
