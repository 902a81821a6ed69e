"""Each annex instance's own copy of its annex's config object (issue 23 requirement 5).

The setup's instance role may read no annex's config object, only
``config-*/i/${aws:userid}.tar.gz``: AWS sets an instance role's ``aws:userid`` to
``<role-id>:<instance-id>``, so each instance reads the copy made for it and nothing else,
whatever it learns from ``Describe*`` (see docs/instance-isolation.md).  The daemon makes the
copies: it lists the annex's instances the way the instance side finds its annex (its own
tags, or for instances a fleet launched from a launch template, the fleet tag AWS puts on
them, the fleet being one the journal recorded: the create's, or a launch the same name
again added, :func:`annexd.commands.grow.instance_tags`), and copies the object server-side
(CopyObject: body, lease end and token stamp) to
``<config key without .tar.gz>/i/<role-id>:<instance-id>.tar.gz``, the role ID read from the
instance's profile (:meth:`annexd.aws.AnnexAws.role_id`, once per profile and pass that
copies anything).

When: right after a create launched (on-demand instances exist then), whenever the object is
rewritten (a lease change, a token renewal), and in every pass of the renewal thread for the
instances that appeared since (a fleet's, a Spot replacement, an auto annex's orders).  A
copy is made again only when the object changed since (:func:`stamp`), so a pass with no new
instance costs one DescribeInstances per region and tag key, and a renewal one CopyObject
per instance.  What was copied is remembered in memory only: after a restart the first pass
copies each live instance's once more.

Only annexes whose resources carry their owner (this release's) get copies: an instance
claims an annex by its tags, and the owner tag -- which only the owner's keys can set, and
only at launch -- is what keeps another principal's instance, tagged with this annex's name
and ClientToken, from being handed its object.  A copy is never deleted here (the daemon's
policy deletes nothing of other principals'); the lease function deletes the annex's copies
with its object, and a copy that stops being rewritten (its instance gone) expires with the
bucket's lifecycle.
"""
from __future__ import annotations

import logging
import threading
from typing import Any, Iterable, NamedTuple

from annexd_lambda import lease
from annexd_lambda.lease import ANNEX_TAG, CLIENT_TOKEN_TAG, OWNER_TAG

from annexd.aws import AnnexAws, AwsError, Denied
from annexd.commands import grow
from annexd.commands.context import Context
from annexd.launch.plan import AnnexPlan
from annexd.state.lifecycle import RequestState

log = logging.getLogger("annexd.operate")


class Annex(NamedTuple):
    """What a copy needs of a journal row."""

    row_id: int
    plan: AnnexPlan
    #: The tags (key, value) its instances carry, one per launch where they differ (a
    #: launch template's fleet: the fleet's ID), the same name again's launches too.
    tags: list[tuple[str, str]]
    stamp: str


#: row ID -> instance ID -> the stamp of the object its copy was made from.
_COPIED: dict[int, dict[str, str]] = {}
_LOCK = threading.Lock()


def stamp(row: dict[str, Any]) -> str:
    """Which write of the config object the row describes: every write moves the lease end
    or the token's minting time (a renewal, a lease change, a touch)."""
    return f"{row['lease_end']}:{row.get('token_minted') or ''}"


def annex_of(row: dict[str, Any], added: list[dict[str, Any]]) -> Annex:
    """The row's annex, with ``added``: the launches the same name again added to it."""
    plan = AnnexPlan.from_record(row["plan"])
    return Annex(row["id"], plan, grow.instance_tags(plan, row, added), stamp(row))


def isolable(plan: AnnexPlan) -> bool:
    """Whether the annex's instances can be told apart from another principal's: its
    resources carry its request's token and its owner (plans of earlier releases: not)."""
    return bool(plan.owner) and plan.request_token is not None


def members(annex: Annex, instances: Iterable[dict[str, Any]]) -> list[tuple[str, str]]:
    """(instance ID, instance profile ARN) of the annex's instances among ``instances``."""
    plan = annex.plan
    if not isolable(plan):
        return []
    found = []
    for instance in instances:
        tags = {t.get("Key"): t.get("Value") for t in instance.get("Tags") or ()}
        hit = [key for key, value in annex.tags if tags.get(key) == value]
        if not hit:
            continue
        if hit == [ANNEX_TAG] and (tags.get(CLIENT_TOKEN_TAG) != plan.request_token or
                                   tags.get(OWNER_TAG) != plan.owner):
            continue  # another request's instance, or someone else's tagged like this one
        profile = (instance.get("IamInstanceProfile") or {}).get("Arn")
        if profile:
            found.append((instance["InstanceId"], profile))
    return found


def sync(aws: AnnexAws, annexes: list[Annex], *, rewrite: bool = False) -> int:
    """Copy each annex's object to its instances (in ``aws``'s region) whose copy is older
    than the object (``rewrite``: to every one); the number of copies made.  A failed copy
    is logged and left for the next pass; AwsError only when the instances cannot be
    listed."""
    wanted: dict[str, list[str]] = {}
    for annex in annexes:
        for key, value in (annex.tags if isolable(annex.plan) else ()):
            wanted.setdefault(key, []).append(value)
    if not wanted:
        return 0
    instances = aws.instances_tagged(wanted)
    roles: dict[str, str] = {}  # profile -> its role's ID, asked once a pass (a stack
    made = 0                    # update may give a profile a new role)
    for annex in annexes:
        with _LOCK:
            copied = dict(_COPIED.get(annex.row_id, {}))
        for instance_id, profile in members(annex, instances):
            if not rewrite and copied.get(instance_id) == annex.stamp:
                continue
            try:
                made += _copy(aws, annex, instance_id, profile, roles)
            except AwsError as error:  # not remembered: the next pass tries again
                log.warning("annex %s: no copy of its configuration for instance %s yet: "
                            "%s", annex.plan.annex_id, instance_id, error)
                continue
            copied[instance_id] = annex.stamp  # copied, or denied: again when it changes
        with _LOCK:
            _COPIED[annex.row_id] = copied
    return made


def _copy(aws: AnnexAws, annex: Annex, instance_id: str, profile: str,
          roles: dict[str, str]) -> int:
    """Copy the annex's object for one instance: 1 if copied, 0 if the instance's profile
    is one these keys may not look at (a site's own role: condor_annex_role_template's
    reads the object itself) or has no role.  AwsError for anything else."""
    plan = annex.plan
    try:
        if profile not in roles:
            roles[profile] = aws.role_id(profile)
    except Denied as error:
        log.warning("annex %s: no copy of its configuration for instance %s: %s",
                    plan.annex_id, instance_id, error)
        roles[profile] = ""
    if not roles[profile]:
        return 0
    aws.copy_config(plan.bucket, plan.config_key, lease.instance_config_key(
        plan.config_key, f"{roles[profile]}:{instance_id}"))
    return 1


def after_write(ctx: Context, row_id: int, credentials: dict[str, str] | None) -> None:
    """Bring every copy of the row's annex in step with its object, just rewritten (a lease
    change, a renewal) or made (a create), with the keys that wrote it.  Never fails: what
    is left undone, the next pass does (with the daemon's identity)."""
    row = ctx.journal.request(row_id)
    if row is None or row["state"] != RequestState.ACTIVE:
        return
    annex = annex_of(row, ctx.journal.added_launches(row_id))
    try:
        sync(ctx.aws(annex.plan.region, credentials), [annex], rewrite=True)
    except AwsError as error:
        log.warning("annex %s: its instances' copies of its configuration were not "
                    "rewritten now (%s); the next pass does it", annex.plan.annex_id, error)


def copy_due(ctx: Context) -> int:
    """One pass: the copies every live annex the daemon's identity may act on is missing
    (new instances, or an object written since); the number made."""
    now = ctx.clock()
    by_region: dict[str, list[Annex]] = {}
    rows = ctx.journal.live_rows()
    mine = [row for row in rows if row["state"] == RequestState.ACTIVE and
            row["lease_end"] > now and ctx.may_recover(row)]
    added = ctx.journal.added_launches_of(row["id"] for row in mine)  # one query for all
    for row in mine:
        annex = annex_of(row, added.get(row["id"], []))
        if isolable(annex.plan):
            by_region.setdefault(annex.plan.region, []).append(annex)
    with _LOCK:  # forget the annexes that ended
        live = {row["id"] for row in rows}
        for row_id in set(_COPIED) - live:
            del _COPIED[row_id]
    made = 0
    for region, annexes in ctx.until_stopping(sorted(by_region.items())):
        try:
            made += sync(ctx.aws(region, None), annexes)
        except AwsError as error:
            log.warning("instance copies in %s: %s; tried again at the next pass", region,
                        error)
    return made


def cannot_copy(ctx: Context, plan: AnnexPlan, payer: str) -> list[str]:
    """The notice of a create whose later instances the daemon cannot give their copies:
    a fleet's or an auto annex's (they come after the create has answered), in an account
    the daemon's identity is not in (or when it has none).  Under the setup's instance role
    such instances wait for a copy that never comes, give up and power off, and a fleet
    that maintains its capacity launches others, until the lease ends."""
    if ctx.identity.available and ctx.identity.account == payer:
        return []
    if not isolable(plan) or (plan.annex_type == "on-demand" and not plan.auto):
        return []
    return ["condor_annexd cannot give this annex's instances their own copies of its "
            "configuration (its identity cannot write in the account that pays for it), and "
            "a fleet's instances start after this command: under the setup's instance role "
            "they cannot join, and power off when they give up waiting. Give condor_annexd "
            "an identity in that account, or see docs/instance-isolation.md "
            "(ShareEveryAnnexsConfig)"]


def launched(ctx: Context, row_id: int, credentials: dict[str, str] | None,
             outputs: dict[str, Any]) -> dict[str, Any]:
    """Right after a create launched on-demand instances: their copies, with the keys that
    launched them (a fleet's instances come later, on AWS after the create has answered,
    and an auto annex's with its orders: the next pass copies theirs, so a create of those
    makes no more calls than before); ``outputs`` unchanged."""
    row = ctx.journal.request(row_id)
    plan = AnnexPlan.from_record(row["plan"])
    if plan.annex_type == "on-demand" and not plan.auto:
        after_write(ctx, row_id, credentials)
    return outputs
