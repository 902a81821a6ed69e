"""``cfn/daemon-policy.json``, generated from ``cfn/user-policy.json``: ``python -m
localaws.daemonpolicy`` rewrites it, a test checks it is current.

The daemon's own identity makes the annexes it pays for with the same calls a user's keys
make, so it holds every statement of the user policy (and, like a user, may end only the
annexes it created: its recovery and lease backstop act on nothing else) -- except that it
may launch from the site's launch template only (SITE_TEMPLATE).  One statement more
lets it renew the token of **any** annex of its account (issue 23 requirement 6): read and
rewrite -- never delete -- every principal's ``config-*/`` object, with exactly the calls a
renewal makes (:mod:`annexd.commands.renew`: GetObject, and PutObject with the object's tag;
CopyObject with its tags copied for an annex without a minted token).  That grants it no
new power: the daemon holds the pool's signing key and can mint any annex's token anyway.
"""
from __future__ import annotations

import json
import os
import sys
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SOURCE = os.path.join(ROOT, "cfn", "user-policy.json")
TARGET = os.path.join(ROOT, "cfn", "daemon-policy.json")

#: What a renewal calls on another principal's config object (CopyObject needs GetObject and
#: GetObjectTagging on its source, PutObject and PutObjectTagging on its target).
RENEWAL_ACTIONS = ["s3:GetObject", "s3:GetObjectTagging", "s3:PutObject",
                   "s3:PutObjectTagging"]
RENEWAL: dict[str, Any] = {
    "Sid": "RenewEveryAnnexsConfigObject", "Effect": "Allow", "Action": RENEWAL_ACTIONS,
    "Resource": "arn:${Partition}:s3:::${S3BucketName}/config-*/*"}


#: The user policy's statement that lets a user launch from any launch template of the
#: account; the daemon's identity gets SITE_TEMPLATE instead.
USERS_TEMPLATES = "LaunchFromTheAccountsLaunchTemplates"
#: The tag (value "true") an account administrator puts on the site's launch template
#: (ANNEX_DEFAULT_LAUNCH_TEMPLATE; annexd.launch.ec2fleet.SITE_TEMPLATE_TAG).
SITE_TEMPLATE_TAG = "htcondor:AnnexSiteTemplate"
#: An annex the daemon pays for launches from the site's template only (issue 23 requirement
#: 4: a template chooses its own user data, instance profile and key pair): EC2 Fleets
#: (CreateFleet, and the RunInstances an instant fleet makes as its caller) from templates
#: the administrator tagged, never RequestSpotFleet (its daemon-paid fleets take launch
#: specifications only).  A tag rather than the template's ARN: the policy stays one
#: document for every site (no placeholder to fill in per template, nothing to redo when the
#: template is replaced), and only who may tag launch templates -- neither this policy nor
#: the user policy may (ec2:CreateTags only on what a launch creates) -- can make one the
#: site's.
SITE_TEMPLATE: dict[str, Any] = {
    "Sid": "LaunchFromTheSitesLaunchTemplateOnly", "Effect": "Allow",
    "Action": ["ec2:RunInstances", "ec2:CreateFleet"],
    "Resource": "arn:${Partition}:ec2:*:${AccountId}:launch-template/*",
    "Condition": {"StringEquals": {f"aws:ResourceTag/{SITE_TEMPLATE_TAG}": "true"}}}


def policy() -> dict[str, Any]:
    with open(SOURCE, encoding="utf-8") as handle:
        user = json.load(handle)
    statements = [SITE_TEMPLATE if s.get("Sid") == USERS_TEMPLATES else s
                  for s in user["Statement"]]
    assert SITE_TEMPLATE in statements, f"no {USERS_TEMPLATES} in {SOURCE}"
    return {"Version": user["Version"], "Statement": [*statements, RENEWAL]}


def text() -> str:
    return json.dumps(policy(), indent=2) + "\n"


def main() -> int:
    with open(TARGET, "w", encoding="utf-8") as handle:
        handle.write(text())
    print(f"wrote {TARGET}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
