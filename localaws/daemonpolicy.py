"""``cfn/daemon-policy.json``, generated from ``cfn/user-policy.json``: ``python -m
localaws.daemonpolicy`` rewrites it, a test checks it is current.

The daemon's own identity makes the annexes it pays for with the same calls a user's keys
make, so it holds every statement of the user policy (and, like a user, may end only the
annexes it created: its recovery and lease backstop act on nothing else).  One statement more
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


def policy() -> dict[str, Any]:
    with open(SOURCE, encoding="utf-8") as handle:
        user = json.load(handle)
    return {"Version": user["Version"], "Statement": [*user["Statement"], RENEWAL]}


def text() -> str:
    return json.dumps(policy(), indent=2) + "\n"


def main() -> int:
    with open(TARGET, "w", encoding="utf-8") as handle:
        handle.write(text())
    print(f"wrote {TARGET}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
