"""``cfn/setup-policy.json``: the policy for the keys that run ``condor_annex -setup``,
generated: ``python -m localaws.setuppolicy`` rewrites it, a test checks it is current.

Two parts:

* what ``-setup`` itself calls (CloudFormation on the four ``HTCondorAnnex-*`` stacks, the
  lease function's code object, the lease function): written here, and judged against the
  recorded calls by ``tests/test_iam_calls.py`` like every other policy;
* what CloudFormation does with the caller's permissions to make the stacks' resources:
  derived from the handler permissions of each resource type the templates use (the
  CloudFormation resource schemas cfn-lint ships), and allowed only through CloudFormation
  (``aws:CalledVia``), so these keys cannot, say, create an IAM role directly.
"""
from __future__ import annotations

import glob
import json
import os
import sys
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.path.join(ROOT, "cfn", "setup-policy.json")

DIRECT: list[dict[str, Any]] = [
    {"Sid": "SetupStacks", "Effect": "Allow",
     "Action": ["cloudformation:DescribeStacks", "cloudformation:CreateStack",
                "cloudformation:UpdateStack", "cloudformation:GetTemplate"],
     "Resource": "arn:${Partition}:cloudformation:*:${AccountId}:stack/HTCondorAnnex-*/*"},
    {"Sid": "LeaseFunctionCode", "Effect": "Allow",
     "Action": ["s3:GetObject", "s3:PutObject"],
     "Resource": "arn:${Partition}:s3:::htcondorannex-*/lambda/lease-*.zip"},
    {"Sid": "LeaseFunction", "Effect": "Allow",
     "Action": ["lambda:GetFunction", "lambda:UpdateFunctionCode"],
     "Resource": "arn:${Partition}:lambda:*:${AccountId}:function:HTCondorAnnex-LeaseFunction"},
]


def resource_types(templates: list[str]) -> set[str]:
    from cfnlint.decode import decode_str
    found: set[str] = set()
    for path in templates:
        with open(path, encoding="utf-8") as handle:
            template, errors = decode_str(handle.read())
        if errors:
            raise ValueError(f"{path}: {errors}")
        found |= {resource["Type"] for resource in template["Resources"].values()}
    return found


def handler_permissions(types: set[str]) -> list[str]:
    """Every permission CloudFormation's handlers (create, read, update, delete, list) of
    ``types`` need, from the resource schemas cfn-lint ships."""
    import cfnlint
    schemas = os.path.join(os.path.dirname(cfnlint.__file__), "data", "schemas")
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


def policy() -> dict[str, Any]:
    templates = sorted(glob.glob(os.path.join(ROOT, "cfn", "*.yaml")))
    through_cloudformation = {
        "Sid": "OnlyThroughCloudFormation", "Effect": "Allow",
        "Action": handler_permissions(resource_types(templates)), "Resource": "*",
        "Condition": {"ForAnyValue:StringEquals": {
            "aws:CalledVia": "cloudformation.amazonaws.com"}}}
    return {"Version": "2012-10-17", "Statement": DIRECT + [through_cloudformation]}


def text() -> str:
    return json.dumps(policy(), indent=2) + "\n"


def main() -> int:
    with open(TARGET, "w", encoding="utf-8") as handle:
        handle.write(text())
    print(f"wrote {TARGET}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
