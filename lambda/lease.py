"""The annex lease function: runs in AWS Lambda on every tick of the annex's EventBridge rule.

The rule's target hands it a constant ``Input``::

    {"AnnexID": "nightly", "S3BucketName": "bucket", "LeaseExpiration": 1790000000,
     "ClientToken": "nightly_0f9e...", "AnnexOwner": "AIDA...", ...}

Everything an annex has belongs to the one create request that made it, named by its
``ClientToken``: its fleets and instances carry it as a tag, its rule's description names it,
and its config object's key holds it.  ``AnnexOwner`` (the creating principal's aws:userid,
also the tag ``htcondor:AnnexOwner``) names the key prefix its config object lives under.  With a ``ClientToken`` in the Input the teardown ends
only what carries that token, so another request's annex of the same name (after this one was
ended and the name reused, or in another region sharing the bucket) is never touched.  An
Input without one (an annex made by an earlier release) is ended by name, as before.

Before the lease ends it does nothing (and makes no AWS call).  An event that says the lease
has ended is never taken at its word: anyone who may put a rule and a target can aim a rule at
this function with any Input (another user's AnnexID and ClientToken, ``"LeaseExpiration": 1``),
and Lambda does not say which rule called.  So first the function reads the lease the annex's
own rule holds -- :func:`confirm`: the rule named after the annex (never one the event names),
whose description names the event's request; its target ``Id`` = the AnnexID, aimed at this
very function (``context.invoked_function_arn``, version or alias aside); and that target's
stored Input, whose ClientToken must be the event's and whose LeaseExpiration must have
passed.  Only then does it end anything, and then with what the stored Input says (bucket,
annex type, token), not the event.  A forged or stale event (an old tick after
``-lease-duration`` moved the end, or after the name was reused) ends nothing and is logged
with what differed; so is an event for a rule that is gone (deleted by hand while the annex
runs: condor_annexd's lease backstop ends such an annex, the function cannot confirm it).
Called without a Lambda context (in-process, by the local EventBridge player or a test), any
target whose Id is the annex's stands for "this function".

Once confirmed, it tears the annex down, in this order, each step idempotent so that a failed
tick is simply retried by the next one (the rule, and so the confirmation, goes last):

1. cancel every live Spot Fleet request, and delete every live EC2 Fleet, tagged
   ``htcondor:AnnexName=<AnnexID>`` (and ``htcondor:AnnexClientToken=<ClientToken>``; whole
   tag values, never a prefix: expiring ``foo`` must not touch ``foobar``), terminating their
   instances (only the kinds the Input's ``AnnexType`` says the annex may have; both when it
   does not say);
2. terminate any instance still carrying the tags (on-demand instances, stragglers);
3. delete its instances' copies of the config object (:func:`instance_config_key`, every key
   under the annex's :func:`copies_prefix`), then the config object itself (:func:`config_key`);
4. remove the rule's target, then delete the rule (when its description names the request):
   the lease itself goes last, so that a tick that fails half-way leaves the lease in place and
   the next tick finishes the job.

Self-contained on purpose (standard library and boto3 only): it is shipped as a single file.
Clients are plain ``boto3.client`` calls, so ``AWS_ENDPOINT_URL`` redirects them to an emulator,
and ``now`` can be injected for tests.  ``condor_annexd`` reuses :func:`cancel_fleets` and
:func:`teardown` so that rollback and the lease share one definition of "gone".
"""
from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

ANNEX_TAG = "htcondor:AnnexName"
CLIENT_TOKEN_TAG = "htcondor:AnnexClientToken"
#: The AWS principal (its ``aws:userid``) whose keys created the annex: IAM lets only that
#: principal act on resources so tagged, and only it may write under its config key prefix.
OWNER_TAG = "htcondor:AnnexOwner"
OWNER = re.compile(r"[A-Za-z0-9:_+=,.@-]{1,128}")  # an aws:userid; whole string: fullmatch
ANNEX_ID = re.compile(r"[A-Za-z0-9-]{1,27}")  # whole string: fullmatch
CLIENT_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,64}")  # whole string: fullmatch
LIVE_FLEET_STATES = frozenset({"submitted", "active", "modifying"})
#: EC2 Fleet states that may still hold or launch instances (deleted_running: if it has any).
LIVE_EC2_FLEET_STATES = frozenset({"submitted", "active", "modifying"})
EC2_FLEET_GONE_CODES = frozenset({"fleetIdDoesNotExist", "fleetNotInDeletableState"})
DELETE_FLEETS_BATCH = 25  # AWS's limit for instant fleets (other types: 100)
#: Which fleet APIs an annex of each type (the Input's AnnexType) can have fleets in.
FLEET_KINDS = {"spot-fleet": ("spot-fleet",), "ec2-fleet": ("ec2-fleet",), "on-demand": ()}
LIVE_INSTANCE_STATES = ["pending", "running", "stopping", "stopped", "shutting-down"]
FLEET_GONE_CODES = frozenset({"fleetRequestIdDoesNotExist", "fleetRequestNotInCancellableState"})
CANCEL_BATCH = 100
TERMINATE_BATCH = 1000
CLIENT_CONFIG = Config(retries={"mode": "standard", "total_max_attempts": 8})

log = logging.getLogger("annex.lease")
log.setLevel(logging.INFO)


class LeaseError(Exception):
    """The event is malformed, or AWS refused part of the teardown (retried next tick)."""


@dataclass(frozen=True)
class Lease:
    annex_id: str
    bucket: str | None
    expiration: int
    annex_type: str | None = None
    client_token: str | None = None
    #: The creating principal's aws:userid (Input ``AnnexOwner``); None in earlier Inputs.
    owner: str | None = None

    @classmethod
    def from_event(cls, event: Any) -> "Lease":
        if not isinstance(event, dict):
            raise LeaseError("event is not a JSON object")
        annex_id, expiration = event.get("AnnexID"), event.get("LeaseExpiration")
        if not isinstance(annex_id, str) or not ANNEX_ID.fullmatch(annex_id):
            raise LeaseError(f"AnnexID {annex_id!r} is not a valid annex ID")
        if isinstance(expiration, bool) or not isinstance(expiration, int):
            raise LeaseError(f"LeaseExpiration {expiration!r} is not integer epoch seconds")
        bucket = event.get("S3BucketName")
        annex_type = event.get("AnnexType")
        token = event.get("ClientToken")
        if token is not None and (not isinstance(token, str) or
                                  not CLIENT_TOKEN.fullmatch(token)):
            raise LeaseError(f"ClientToken {token!r} is not a client token")
        owner = event.get("AnnexOwner")
        if owner is not None and (not isinstance(owner, str) or not OWNER.fullmatch(owner)):
            raise LeaseError(f"AnnexOwner {owner!r} is not an AWS user ID")
        return cls(annex_id, bucket if isinstance(bucket, str) and bucket else None, expiration,
                   annex_type if annex_type in FLEET_KINDS else None, token, owner)


@dataclass(frozen=True)
class Clients:
    ec2: Any
    events: Any
    s3: Any

    @property
    def region(self) -> str:
        return self.ec2.meta.region_name

    @classmethod
    def default(cls) -> "Clients":
        return cls(*(boto3.client(name, config=CLIENT_CONFIG) for name in ("ec2", "events", "s3")))


def _code(error: ClientError) -> str:
    return error.response.get("Error", {}).get("Code", "")


def _batches(items: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def has_annex_tag(tags: Iterable[dict[str, str]] | None, annex_id: str) -> bool:
    return any(t.get("Key") == ANNEX_TAG and t.get("Value") == annex_id for t in tags or ())


def _has_instances(ec2: Any, fleet_id: str) -> bool:
    pages = ec2.get_paginator("describe_spot_fleet_instances").paginate(
        SpotFleetRequestId=fleet_id)
    return any(page.get("ActiveInstances") for page in pages)


def _is_live(ec2: Any, fleet: dict[str, Any]) -> bool:
    """Whether the fleet may still hold or launch instances.

    ``cancelled_running`` only matters while instances remain: AWS moves an empty one on to
    ``cancelled``, but moto leaves it in ``cancelled_running`` forever.
    """
    state = fleet.get("SpotFleetRequestState")
    if state == "cancelled_running":
        return _has_instances(ec2, fleet["SpotFleetRequestId"])
    return state in LIVE_FLEET_STATES


def _has_token_tag(tags: Iterable[dict[str, str]] | None, token: str) -> bool:
    return any(t.get("Key") == CLIENT_TOKEN_TAG and t.get("Value") == token for t in tags or ())


def _has_client_token(fleet: dict[str, Any], token: str) -> bool:
    """AWS reports the ClientToken; moto does not, so the daemon also tags fleets with it."""
    if fleet.get("SpotFleetRequestConfig", {}).get("ClientToken") == token:
        return True
    return _has_token_tag(fleet.get("Tags"), token)


def find_fleets(ec2: Any, annex_id: str, client_token: str | None = None) -> list[str]:
    """IDs of the live Spot Fleet requests tagged with exactly ``annex_id``.

    With ``client_token``, only the fleets of that one create request.
    """
    found = []
    for page in ec2.get_paginator("describe_spot_fleet_requests").paginate():
        for fleet in page.get("SpotFleetRequestConfigs", []):
            if not has_annex_tag(fleet.get("Tags"), annex_id):
                continue
            if client_token is not None and not _has_client_token(fleet, client_token):
                continue
            if _is_live(ec2, fleet):
                found.append(fleet["SpotFleetRequestId"])
    return found


def _cancel(ec2: Any, fleet_ids: list[str], terminate: bool) -> None:
    reply = ec2.cancel_spot_fleet_requests(SpotFleetRequestIds=fleet_ids,
                                           TerminateInstances=terminate)
    for failure in reply.get("UnsuccessfulFleetRequests", []):
        error = failure.get("Error", {})
        if error.get("Code") not in FLEET_GONE_CODES:
            raise LeaseError(f"cannot cancel {failure.get('SpotFleetRequestId')}: "
                             f"{error.get('Code')}: {error.get('Message')}")


def cancel_fleets(ec2: Any, fleet_ids: list[str]) -> None:
    """Cancel the fleets and terminate their instances; already-gone fleets are fine.

    A fleet that never launched an instance is refused by moto (and was by old AWS API
    versions) with ``InvalidParameterCombination`` when asked to terminate instances; with
    nothing to terminate, cancelling it without termination is the same thing.
    """
    for batch in _batches(fleet_ids, CANCEL_BATCH):
        try:
            _cancel(ec2, batch, terminate=True)
        except ClientError as error:
            if _code(error) != "InvalidParameterCombination":
                raise
            for fleet_id in batch:
                try:
                    _cancel(ec2, [fleet_id], terminate=True)
                except ClientError as single:
                    if _code(single) != "InvalidParameterCombination":
                        raise
                    _cancel(ec2, [fleet_id], terminate=False)


def _has_fleet_instances(ec2: Any, fleet_id: str) -> bool:
    return bool(ec2.describe_fleet_instances(FleetId=fleet_id).get("ActiveInstances"))


def _is_live_ec2_fleet(ec2: Any, fleet: dict[str, Any]) -> bool:
    state = fleet.get("FleetState")
    if state == "deleted_running":
        return _has_fleet_instances(ec2, fleet["FleetId"])
    return state in LIVE_EC2_FLEET_STATES


def find_ec2_fleets(ec2: Any, annex_id: str, client_token: str | None = None) -> list[str]:
    """IDs of the live EC2 Fleets tagged with exactly ``annex_id`` (with ``client_token``:
    of that one create request).  DescribeFleets cannot filter by tag, so we page."""
    found = []
    for page in ec2.get_paginator("describe_fleets").paginate():
        for fleet in page.get("Fleets", []):
            if not has_annex_tag(fleet.get("Tags"), annex_id):
                continue
            if client_token is not None and not (
                    fleet.get("ClientToken") == client_token or
                    _has_token_tag(fleet.get("Tags"), client_token)):
                continue
            if _is_live_ec2_fleet(ec2, fleet):
                found.append(fleet["FleetId"])
    return found


def _delete_ec2_fleets(ec2: Any, fleet_ids: list[str], terminate: bool) -> list[str]:
    """Delete; returns the fleets AWS would not delete because they were deleted already
    with their instances left running (``deleted_running``)."""
    reply = ec2.delete_fleets(FleetIds=fleet_ids, TerminateInstances=terminate)
    left = []
    for failure in reply.get("UnsuccessfulFleetDeletions", []):
        error = failure.get("Error", {})
        if error.get("Code") == "fleetNotInDeletableState":
            left.append(failure.get("FleetId"))
        elif error.get("Code") not in EC2_FLEET_GONE_CODES:
            raise LeaseError(f"cannot delete {failure.get('FleetId')}: "
                             f"{error.get('Code')}: {error.get('Message')}")
    return left


def delete_ec2_fleets(ec2: Any, fleet_ids: list[str]) -> None:
    """Delete the EC2 Fleets, terminating their instances; already-gone fleets are fine.

    A fleet that could not be deleted any more but still runs instances (deleted earlier
    without termination) has those instances terminated directly.  A fleet without any
    instance is refused by moto with ``InvalidParameterCombination`` when asked to
    terminate them; with nothing to terminate, deleting it without termination is the same.
    """
    for batch in _batches(fleet_ids, DELETE_FLEETS_BATCH):
        try:
            left = _delete_ec2_fleets(ec2, batch, terminate=True)
        except ClientError as error:
            if _code(error) != "InvalidParameterCombination":
                raise
            left = []
            for fleet_id in batch:
                try:
                    left += _delete_ec2_fleets(ec2, [fleet_id], terminate=True)
                except ClientError as single:
                    if _code(single) != "InvalidParameterCombination":
                        raise
                    left += _delete_ec2_fleets(ec2, [fleet_id], terminate=False)
        for fleet_id in left:
            instances = [i["InstanceId"] for i in ec2.describe_fleet_instances(
                FleetId=fleet_id).get("ActiveInstances", [])]
            terminate_instances(ec2, instances)


def find_instances(ec2: Any, annex_id: str, client_token: str | None = None) -> list[str]:
    """IDs of the not-yet-terminated instances tagged with exactly ``annex_id`` (and, with
    ``client_token``, with exactly that request's token)."""
    filters = [{"Name": f"tag:{ANNEX_TAG}", "Values": [annex_id]},
               {"Name": "instance-state-name", "Values": LIVE_INSTANCE_STATES}]
    if client_token is not None:
        filters.append({"Name": f"tag:{CLIENT_TOKEN_TAG}", "Values": [client_token]})
    found = []
    for page in ec2.get_paginator("describe_instances").paginate(Filters=filters):
        for reservation in page.get("Reservations", []):
            found += [i["InstanceId"] for i in reservation.get("Instances", [])
                      if has_annex_tag(i.get("Tags"), annex_id) and
                      (client_token is None or _has_token_tag(i.get("Tags"), client_token))]
    return found


def terminate_instances(ec2: Any, instance_ids: list[str]) -> None:
    for batch in _batches(instance_ids, TERMINATE_BATCH):
        ec2.terminate_instances(InstanceIds=batch)


def remove_target(events: Any, rule: str, target_id: str) -> bool:
    """Remove the rule's target; False if the rule was already gone."""
    try:
        reply = events.remove_targets(Rule=rule, Ids=[target_id])
    except ClientError as error:
        if _code(error) == "ResourceNotFoundException":
            return False
        raise
    if reply.get("FailedEntryCount"):
        raise LeaseError(f"cannot remove target {target_id}: {reply.get('FailedEntries')}")
    return True


def delete_rule(events: Any, rule: str) -> bool:
    """Delete the rule; False if it was already gone."""
    try:
        events.describe_rule(Name=rule)
        events.delete_rule(Name=rule)
    except ClientError as error:
        if _code(error) == "ResourceNotFoundException":
            return False
        raise
    return True


def delete_config(s3: Any, bucket: str | None, key: str) -> bool:
    """Delete the annex's config object; a missing bucket or key is not an error."""
    if bucket is None:
        log.error("no S3BucketName in the lease input; cannot delete %s", key)
        return False
    try:
        s3.delete_object(Bucket=bucket, Key=key)
    except ClientError as error:
        if _code(error) in ("NoSuchBucket", "NoSuchKey"):
            return False
        raise
    return True


def delete_copies(s3: Any, bucket: str | None, key: str) -> list[str]:
    """Delete every instance's copy of the config object ``key`` (the keys under
    :func:`copies_prefix`, listed: instances replaced during the annex's life left theirs);
    the keys deleted.  A missing bucket is not an error."""
    if bucket is None:
        return []
    deleted = []
    try:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket,
                                                                  Prefix=copies_prefix(key)):
            for item in page.get("Contents", []):
                s3.delete_object(Bucket=bucket, Key=item["Key"])
                deleted.append(item["Key"])
    except ClientError as error:
        if _code(error) != "NoSuchBucket":
            raise
    return deleted


def copies_prefix(key: str) -> str:
    """Where the instances' copies of the config object ``key`` live: the key without its
    ``.tar.gz``, then ``/i/`` (annex_ec2.discover keeps a copy; a test holds them equal)."""
    return f"{key[:-len('.tar.gz')] if key.endswith('.tar.gz') else key}/i/"


def instance_config_key(key: str, user_id: str) -> str:
    """The key of one instance's copy of the config object ``key`` (issue 23 requirement 5):
    ``<copies_prefix>/<aws:userid>.tar.gz``, the instance role's credentials' ``aws:userid``
    (``<role-id>:<instance-id>``, which AWS sets and the instance cannot change).  The
    instance role may read only ``config-*/i/${aws:userid}.tar.gz``: its own copy, never
    the annex's object nor another instance's copy.  Under the owner's prefix, like the
    object: the user policy's ``config-${aws:userid}/*`` covers it."""
    return f"{copies_prefix(key)}{user_id}.tar.gz"


def config_key(annex_id: str, region: str | None = None, client_token: str | None = None,
               owner: str | None = None) -> str:
    """The key of an annex's config object: the one definition (annex_ec2.discover keeps a
    copy for the instance, which ships without this module; a test holds them equal).

    ``config-<owner>/<region>-<ClientToken>.tar.gz``: under the creating principal's own
    prefix (its ``aws:userid``), which the user policy lets only that principal write, read or
    delete (``config-${aws:userid}/*``); unique in a bucket several regions and users share.
    Without an owner (earlier releases): ``config-<region>-<ClientToken>.tar.gz``, and without
    a token either, ``config-<AnnexID>.tar.gz``.  All match the instance role's
    ``config-*.tar.gz``.
    """
    if client_token is None:
        return f"config-{annex_id}.tar.gz"
    if owner is None:
        return f"config-{region}-{client_token}.tar.gz"
    return f"config-{owner}/{region}-{client_token}.tar.gz"


def rule_description(annex_id: str, client_token: str) -> str:
    """The lease rule's description: it names the request that made the rule."""
    return f"HTCondor annex {annex_id}: enforce the lease (request {client_token})"


def old_rule_description(annex_id: str) -> str:
    """The description releases before request tokens gave the lease rule: no request named."""
    return f"HTCondor annex {annex_id}: enforce the lease"


def _describes_lease(description: str, annex_id: str, client_token: str | None) -> bool:
    """Whether a rule's description is the one condor_annexd gives this lease's rule.

    With a ClientToken: exactly :func:`rule_description`.  Without one (the Input of an annex
    made by an earlier release): the description earlier releases wrote,
    ``HTCondor annex <id>: enforce the lease``, or -- a rule this release put back on a lease
    change -- one naming a request of this annex.
    """
    if client_token is not None:
        return description == rule_description(annex_id, client_token)
    name = re.escape(annex_id)
    return description == old_rule_description(annex_id) or re.fullmatch(
        rf"HTCondor annex {name}: enforce the lease \(request {name}_[A-Za-z0-9_-]+\)",
        description) is not None


def function_of(arn: str) -> str:
    """The Lambda function an ARN names, without its version or alias qualifier."""
    parts = arn.split(":")
    return ":".join(parts[:7]) if len(parts) > 7 and parts[5] == "function" else arn


def confirm(events: Any, claimed: Lease, function_arn: str | None,
            now: float) -> tuple[Lease | None, str]:
    """Does the annex's own rule say that the lease ``claimed`` (an event) has ended?

    (the lease as that rule stores it, "") if so; (None, what differed) if not.  The rule is
    the one named after the annex, its description must name the event's request, and its
    target ``Id`` = AnnexID must be aimed at ``function_arn`` (this function; None: any
    target of that Id).  The target's stored Input must be a lease of the same annex and
    request (ClientToken, or none for an earlier release's annex), and its LeaseExpiration
    must have passed: an event carrying an end the lease has since moved away from confirms
    nothing.  Two calls: DescribeRule and ListTargetsByRule (a rule holds at most five
    targets: one page).
    """
    annex_id = claimed.annex_id
    try:
        description = events.describe_rule(Name=annex_id).get("Description", "")
        if not _describes_lease(description, annex_id, claimed.client_token):
            return None, (f"rule {annex_id} is not the lease of request "
                          f"{claimed.client_token}: its description is {description!r}")
        targets = events.list_targets_by_rule(Rule=annex_id).get("Targets", [])
    except ClientError as error:
        if _code(error) == "ResourceNotFoundException":
            return None, f"there is no rule {annex_id} (ended already, or deleted by hand)"
        raise
    mine = [target for target in targets if target.get("Id") == annex_id and (
        function_arn is None or function_of(target.get("Arn", "")) == function_of(function_arn))]
    if not mine:
        return None, (f"rule {annex_id} has no target {annex_id} aimed at "
                      f"{function_arn or 'a lease function'} (its targets: "
                      f"{[(t.get('Id'), t.get('Arn')) for t in targets]})")
    try:
        stored = Lease.from_event(json.loads(mine[0].get("Input") or "{}"))
    except (ValueError, LeaseError) as error:
        return None, f"rule {annex_id}'s target holds no lease: {error}"
    if stored.annex_id != annex_id:
        return None, f"rule {annex_id}'s lease is annex {stored.annex_id}'s"
    if stored.client_token != claimed.client_token:
        return None, (f"rule {annex_id} holds the lease of request {stored.client_token}, "
                      f"the event names request {claimed.client_token}")
    if now <= stored.expiration:
        return None, (f"rule {annex_id}'s lease ends at {stored.expiration}, "
                      f"{stored.expiration - int(now)} s from now (the event said "
                      f"{claimed.expiration})")
    return stored, ""


def _end_lease(events: Any, annex_id: str, client_token: str | None) -> tuple[bool, bool]:
    """Remove the rule's target, then the rule: (target removed, rule deleted).  With
    ``client_token``, only a rule whose description names that request: another request's
    rule of the same name is left alone."""
    if client_token is None:
        return remove_target(events, annex_id, annex_id), delete_rule(events, annex_id)
    try:
        description = events.describe_rule(Name=annex_id).get("Description", "")
    except ClientError as error:
        if _code(error) == "ResourceNotFoundException":
            return False, False
        raise
    if description != rule_description(annex_id, client_token):
        return False, False
    removed = remove_target(events, annex_id, annex_id)
    try:
        events.delete_rule(Name=annex_id)
    except ClientError as error:
        if _code(error) == "ResourceNotFoundException":
            return removed, False
        raise
    return removed, True


def teardown(annex_id: str, bucket: str | None, clients: Clients,
             annex_type: str | None = None, client_token: str | None = None,
             report: Callable[[str], None] = lambda text: None,
             owner: str | None = None) -> dict[str, Any]:
    """Remove everything of annex ``annex_id``'s request ``client_token``; safe to repeat.

    ``annex_type`` (the lease Input's AnnexType) limits the fleet look-ups to the one fleet
    API such an annex uses; None looks in both.  ``client_token`` None: everything of the
    name (an annex of an earlier release).  ``report`` hears each step as it starts
    (condor_annex -off shows them at a terminal).
    """
    kinds = FLEET_KINDS.get(annex_type or "", ("spot-fleet", "ec2-fleet"))
    report("ending its fleets (terminating their instances)")
    fleets = find_fleets(clients.ec2, annex_id, client_token) if "spot-fleet" in kinds else []
    cancel_fleets(clients.ec2, fleets)
    ec2_fleets = find_ec2_fleets(clients.ec2, annex_id, client_token) \
        if "ec2-fleet" in kinds else []
    delete_ec2_fleets(clients.ec2, ec2_fleets)
    report("terminating its other instances")
    instances = find_instances(clients.ec2, annex_id, client_token)
    terminate_instances(clients.ec2, instances)
    report("deleting its configuration object")
    key = config_key(annex_id, clients.region, client_token, owner)
    deleted_copies = delete_copies(clients.s3, bucket, key)
    deleted_config = delete_config(clients.s3, bucket, key)
    report("removing its lease (EventBridge target, then rule)")
    removed_target, deleted_rule = _end_lease(clients.events, annex_id, client_token)
    summary = {
        "AnnexID": annex_id,
        "expired": True,
        "cancelled_fleets": fleets + ec2_fleets,
        "terminated_instances": instances,
        "deleted_config": deleted_config,
        "deleted_copies": len(deleted_copies),
        "removed_target": removed_target,
        "deleted_rule": deleted_rule,
    }
    log.info("annex %s torn down: %s", annex_id, summary)
    return summary


def handler(event: Any, context: Any = None, *, now: Callable[[], float] = time.time,
            clients: Clients | None = None) -> dict[str, Any]:
    """EventBridge entry point.  ``now`` and ``clients`` are injectable for tests only.

    An unexpired event makes no AWS call.  An expired one ends the annex only once its own
    rule confirms it (:func:`confirm`), and then as that rule's stored Input says; otherwise
    it ends nothing, logs what differed and answers ``{"expired": False, "refused": why}``.
    """
    claimed = Lease.from_event(event)
    at = now()
    if at <= claimed.expiration:
        log.info("annex %s: lease has %d s left", claimed.annex_id,
                 claimed.expiration - int(at))
        return {"AnnexID": claimed.annex_id, "expired": False}
    clients = clients or Clients.default()
    function_arn = getattr(context, "invoked_function_arn", None)
    stored, differs = confirm(clients.events, claimed, function_arn, at)
    if stored is None:
        log.warning("annex %s: an event says its lease (request %s) ended at %d, but %s: "
                    "a forged or stale event; ending nothing", claimed.annex_id,
                    claimed.client_token, claimed.expiration, differs)
        return {"AnnexID": claimed.annex_id, "expired": False, "refused": differs}
    return teardown(stored.annex_id, stored.bucket, clients, stored.annex_type,
                    stored.client_token, owner=stored.owner)
