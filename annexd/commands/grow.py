"""The same name again: a create naming a live annex of the caller's adds a launch to it,
under its lease -- the original condor_annex's behaviour (there, re-using a name added
instances and replaced the whole annex's lease; here the lease is left as it is).

An annex is one create request (one journal row, one ClientToken, one lease).  A launch
added to it is another Spot Fleet request, EC2 Fleet or set of on-demand instances of the
annex's own kind, built from the new command's config as a create would build it, and then
made the annex's:

* its resources carry the annex's tags -- ``htcondor:AnnexName``, ``htcondor:AnnexOwner``
  and the annex's ``htcondor:AnnexClientToken`` -- which is how the lease function, ``-off``
  and the daemon's backstop find (and end) everything of an annex (annexd_lambda.lease
  teardown: fleets by those tags, instances by those tags), and how its instances find the
  annex's configuration object (annex_ec2.discover);
* its EC2 idempotency ClientToken is its own, :func:`launch_token` (the annex's token and
  the launch's number), also put on what it launches as the launch tag
  (``htcondor:AnnexOrder``, the tag an auto annex's orders carry), by which a retry or a
  resumed launch finds what an earlier attempt made.

Only the annex's owner, paying with the same principal (the keys' ARN, or the daemon's
identity) as at create, may add to it, and only while it is active with its lease in force:
the annex is claimed first (``active -> extending``, the claim a lease change makes, so -off,
a lease change and the backstop wait), the launch is journaled and forced to disk with its
token, then sent, settled and the claim released.  A crash between the journal and the
call leaves the launch *sent*: the restarted daemon (with its own identity in the annex's
account) or the owner's repeat of the command looks for it by its launch tag and sends it
again with the same token only when nothing is found -- never a second launch.

The caps count the whole annex (:mod:`annexd.commands.launches`); the added instances run
under the annex's lease as it is: a ``-lease-duration`` given with them is not used (the
reply says so and names the lease-change command).
"""
from __future__ import annotations

import copy
import dataclasses
import hashlib
import logging
import time
from typing import Any, Callable

from annexd_lambda.lease import CLIENT_TOKEN_TAG

from annexd.aws import AnnexAws, AwsError, Transient
from annexd.aws.identity import Payer, short
from annexd.commands import launches
from annexd.commands.context import Caller, Context, OperationError, busy, claim
from annexd.commands import lease as lease_change  # used at call time (an import cycle)
from annexd.config.knobs import KnobError
from annexd.launch import base
from annexd.launch.plan import AnnexPlan, InvalidRequest
from annexd.launch.steps import LAUNCH_CALLS, RetryPolicy
from annexd.money import costs, daemonpaid
from annexd.rpc import protocol
from annexd.state.lifecycle import RequestState

log = logging.getLogger("annexd.grow")

#: What each added launch's resources carry besides the annex's tags: its own token.
LAUNCH_TAG = base.ORDER_TAG
#: The resources of a launch that carry the launch tag (its fleet; on-demand: instances).
LAUNCH_TAGGED = frozenset({"instance", "spot-fleet-request", "fleet"})
#: Each kind's launch call and how its request is handed to botocore's model check.
OPERATIONS: dict[str, tuple[str, Callable[[dict[str, Any]], dict[str, Any]]]] = {
    "on-demand": ("RunInstances", lambda request: request),
    "spot-fleet": ("RequestSpotFleet", lambda request: {"SpotFleetRequestConfig": request}),
    "ec2-fleet": ("CreateFleet", lambda request: request),
}
#: A lease with less than this left takes nothing more: its lease function is about to end
#: the annex (it ticks every minute).
LEASE_MARGIN_SECONDS = 120
#: A -lease-duration whose end differs from the annex's by more than this is said not used.
LEASE_SLACK_SECONDS = 60


class Refused(Exception):
    """The launch cannot be added; ``reply`` says why, and nothing was changed."""

    def __init__(self, reply: dict[str, Any]):
        super().__init__(reply["error"]["message"])
        self.reply = reply


def _refused(kind: str, message: str) -> Refused:
    return Refused(protocol.error_reply(kind, f"{message}; nothing was changed"))


def launch_token(request_token: str, number: int) -> str:
    """The EC2 ClientToken of the annex's launch ``number`` (its create's is 1): the same for
    every attempt of it, another for every launch (EC2's limit is 64 characters)."""
    digest = hashlib.sha256(f"{request_token}/launch/{number}".encode()).hexdigest()[:48]
    return f"launch{number}-{digest}"


def _retagged(value: Any, old: str, new: str, token: str) -> Any:
    """``value`` (a launch request) with the request token tag ``old`` made ``new`` wherever
    it is, and the launch tag added to every launched resource's tag specification."""
    if isinstance(value, list):
        return [_retagged(item, old, new, token) for item in value]
    if not isinstance(value, dict):
        return value
    if value.get("Key") == CLIENT_TOKEN_TAG and value.get("Value") == old:
        return {**value, "Value": new}
    out = {key: _retagged(item, old, new, token) for key, item in value.items()}
    if out.get("ResourceType") in LAUNCH_TAGGED and isinstance(out.get("Tags"), list):
        out["Tags"] = out["Tags"] + [{"Key": LAUNCH_TAG, "Value": token}]
    return out


def added_request(plan: AnnexPlan, annex: AnnexPlan, token: str) -> dict[str, Any]:
    """This command's launch request (``plan``'s, built as a create builds it), made a
    launch of ``annex``: the annex's request token on every resource, the launch's own
    ``token`` as its ClientToken and launch tag."""
    request = _retagged(copy.deepcopy(plan.launch_request), plan.client_token,
                        annex.client_token, token)
    request["ClientToken"] = token
    operation, shape = OPERATIONS[plan.annex_type]
    try:
        base.validate(operation, shape(request))
    except base.LaunchConfigError as error:
        raise InvalidRequest(f"{plan.kind.label}: {error}") from None
    return request


# -- deciding -------------------------------------------------------------------------------

def _owner_and_state(row: dict[str, Any], who: Caller, annex: AnnexPlan, now: float) -> None:
    name, region = row["annex_id"], row["region"]
    if row["owner_uid"] != who.uid:
        raise _refused("conflict", f"annex {name!r} in {region} belongs to another user; "
                       "only its owner may add instances to it (or choose another name)")
    state = RequestState(row["state"])
    if state is not RequestState.ACTIVE:
        doing = str(busy(name, state)) if state in (
            RequestState.CREATING, RequestState.ROLLING_BACK, RequestState.EXTENDING,
            RequestState.ENDING, RequestState.ENDING_INTERRUPTED) else \
            f"annex {name!r} is {state}: its lease is ending it"
        raise _refused("conflict", f"{doing}: instances can be added only to an active annex")
    if annex.auto:
        raise _refused("invalid-request", f"annex {name!r} is an -auto annex: condor_annexd "
                       "sizes it from demand, up to its -max-instances")
    if not annex.keyed_by_request or not annex.owner:
        raise _refused("invalid-request", f"annex {name!r} was made by an earlier release, "
                       "whose resources the lease knows by name only: instances cannot be "
                       "added to it; choose another -annex-name")
    if row["lease_intent"] is not None:
        raise _refused("conflict", f"a lease change of annex {name!r} was cut short and its "
                       f"lease end is unsettled: run condor_annex -annex-name {name} -status "
                       "first (it reads the end AWS holds), then add instances")
    if row["lease_end"] <= now + LEASE_MARGIN_SECONDS:
        raise _refused("conflict", f"annex {name!r}'s lease ends at {_when(row['lease_end'])}:"
                       " its lease function is about to end it, so nothing more may be "
                       "started under it; make its lease longer first (condor_annex "
                       f"-annex-name {name} -lease-duration SECONDS)")


def _payer(row: dict[str, Any], annex: AnnexPlan, plan: AnnexPlan,
           payer: Payer | None, credentials: dict[str, str] | None) -> None:
    """The same principal pays, and the added resources carry the annex's owner tag."""
    name = row["annex_id"]
    daemon_paid = bool(row["daemon_credentials"])
    if daemon_paid != (credentials is None):
        theirs = "condor_annexd's own AWS identity" if daemon_paid else "your AWS keys"
        raise _refused("invalid-request", f"annex {name!r} is paid by {theirs}; add "
                       f"instances to it with the same ({'leave out' if daemon_paid else 'give'}"
                       " -public-key-file and -secret-key-file)")
    if payer is None:  # a dry run: STS is not asked
        return
    wanted = (row["payer_account"], row["payer_principal"], annex.owner)
    have = (payer.account, payer.principal, plan.owner)
    if wanted != have:
        who = row["payer_principal"] or "condor_annexd's own AWS identity"
        them = payer.principal or "condor_annexd's own AWS identity"
        raise _refused("invalid-request", f"annex {name!r} is paid by {who} (account "
                       f"{short(row['payer_account'])}); these keys are {them} (account "
                       f"{short(payer.account)}): only the principal that pays for an annex "
                       "may add instances to it")


#: How a user asks for each kind of annex.
ASKED_AS = {"on-demand": "-count without a config file", "spot-fleet": "a Spot Fleet config",
            "ec2-fleet": "an EC2 Fleet config"}


def _kind(row: dict[str, Any], annex: AnnexPlan, plan: AnnexPlan) -> None:
    """The lease ends an annex's resources of its own kind only (its Input's AnnexType)."""
    if plan.annex_type != annex.annex_type:
        raise _refused("invalid-request", f"annex {row['annex_id']!r} is of type "
                       f"{annex.annex_type}; instances added to it must be too: give "
                       f"{ASKED_AS[annex.annex_type]}, not {ASKED_AS[plan.annex_type]}")


def _lease_in_force(ctx: Context, row: dict[str, Any], annex: AnnexPlan,
                    credentials: dict[str, str] | None) -> None:
    """AWS holds the annex's lease past the margin (annexd.commands.lease.require_in_force):
    Refused otherwise, with the row still the caller's claim."""
    try:
        lease_change.require_in_force(ctx, row, annex, credentials, LEASE_MARGIN_SECONDS)
    except OperationError as error:
        raise _refused(error.kind, str(error)) from None
    except AwsError as error:
        raise Refused(protocol.error_reply(
            "aws", f"{error}; cannot tell whether annex {row['annex_id']!r}'s lease is in "
            "force, so nothing was added", aws_code=error.code,
            request_id=error.request_id)) from None


def _when(epoch: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(epoch))


def _notices(row: dict[str, Any], annex: AnnexPlan, plan: AnnexPlan,
             request: dict[str, Any]) -> list[str]:
    """What of this command does not apply: the lease is the annex's, and so is the
    configuration its instances join with."""
    name, lease_end = row["annex_id"], row["lease_end"]
    notices = [f"annex {name!r} exists: the instances are added to it, under its lease, "
               f"which ends {_when(lease_end)}"]
    if abs(plan.lease_end - lease_end) > LEASE_SLACK_SECONDS:
        notices.append(f"this command's lease ({plan.lease_end - plan.created_at} s, "
                       "-lease-duration or its default) was not used: the annex has one lease;"
                       f" move it with condor_annex -annex-name {name} -lease-duration SECONDS")
    if plan.owners != annex.owners or plan.idle_seconds != annex.idle_seconds or \
            request.get("config_files") or request.get("idtoken"):
        notices.append("the added instances join the pool with the annex's own configuration "
                       "(its -owner, -idle, -config-dir and token, as its create set them); "
                       "this command's were not used")
    return notices


def prepare(ctx: Context, row: dict[str, Any], who: Caller, plan: AnnexPlan,
            request: dict[str, Any], payer: Payer | None,
            credentials: dict[str, str] | None) -> tuple[AnnexPlan, dict[str, Any], list[str]]:
    """Decide whether ``plan`` (this command's) may be added to the row's annex: the
    launch as a plan of the annex's (to the annex's lease end), its estimate, and notices.
    Raises Refused, changing nothing.  ``payer`` None: a dry run (STS not asked)."""
    annex = AnnexPlan.from_record(row["plan"])
    now = ctx.clock()
    _owner_and_state(row, who, annex, now)
    _payer(row, annex, plan, payer, credentials)
    _kind(row, annex, plan)
    number = 2 + len(ctx.journal.added_launches(row["id"]))
    token = launch_token(annex.client_token, number)
    caps = ctx.settings.caps
    try:
        part = dataclasses.replace(launches.as_journaled(row, annex),
                                   launch_request=added_request(plan, annex, token),
                                   created_at=int(now))
        existing = launches.parts(ctx.journal, row, annex)
        so_far, _ = costs.annex_life_cost(existing)
        if caps.max_cost is not None and so_far is not None:
            if so_far >= caps.max_cost:
                raise InvalidRequest(f"annex {row['annex_id']!r} may cost up to "
                                     f"${so_far:.2f} already, the limit of "
                                     f"${caps.max_cost:.2f} (ANNEX_MAX_COST)")
            part = costs.with_price_cap(part, caps, budget=caps.max_cost - so_far)
        if credentials is None:
            daemonpaid.check(part, ctx.settings.for_region(part.region))
        found = costs.check_added(existing, part, caps, lambda: launches.holding(
            ctx, who.uid, besides=row["id"]))
    except (InvalidRequest, KnobError) as error:
        raise _refused("invalid-request", str(error)) from None
    notices = _notices(row, annex, plan, request) + \
        [notice for notice in part.notices if notice not in annex.notices]
    return part, {**found, "number": number, "client_token": token}, notices


# -- acting ---------------------------------------------------------------------------------

def add(ctx: Context, row: dict[str, Any], who: Caller, plan: AnnexPlan,
        request: dict[str, Any], payer: Payer, credentials: dict[str, str] | None,
        report: Callable[[str], None] = lambda text: None) -> dict[str, Any]:
    """A create of a live annex's name: finish a launch a crash left sent, or add one."""
    if row["owner_uid"] == who.uid and row["state"] == RequestState.ACTIVE:
        told = _recovered(ctx, row)
        if told is not None:
            return told
    try:
        pending = _pending(ctx, row)
        if pending is not None:
            annex = AnnexPlan.from_record(row["plan"])
            _owner_and_state(row, who, annex, ctx.clock())
            _payer(row, annex, plan, payer, credentials)
            return _finish(ctx, row, pending, credentials, report)
        part, found, notices = prepare(ctx, row, who, plan, request, payer, credentials)
    except Refused as refused:
        return refused.reply
    launch = {"number": found["number"], "client_token": found["client_token"],
              "launch_request": part.launch_request, "at": part.created_at}
    try:
        claim(ctx.journal, row, RequestState.EXTENDING)
    except OperationError as error:
        return protocol.error_reply(error.kind, f"{error}; nothing was changed")
    log.info("request %d: uid %d adds launch %d to annex %s in %s", row["id"], who.uid,
             launch["number"], row["annex_id"], row["region"])
    try:
        try:
            _lease_in_force(ctx, row, AnnexPlan.from_record(row["plan"]), credentials)
        except Refused as refused:
            return refused.reply
        ctx.journal.launch_added(row["id"], launch)
        return _drive(ctx, row, part, launch, credentials, report, notices, look_first=False)
    finally:
        ctx.journal.transition(row["id"], RequestState.ACTIVE, expect={RequestState.EXTENDING})


def _pending(ctx: Context, row: dict[str, Any]) -> dict[str, Any] | None:
    """The launch a crash (or a call that may have taken effect) left sent, if any."""
    return next((launch for launch in ctx.journal.added_launches(row["id"])
                 if launch["state"] == "sent"), None)


def _finish(ctx: Context, row: dict[str, Any], launch: dict[str, Any],
            credentials: dict[str, str] | None,
            report: Callable[[str], None] = lambda text: None) -> dict[str, Any]:
    """Finish a launch left sent: claim, look for it, send it again only if nothing is
    found (the same token), settle, release."""
    part = dataclasses.replace(launches.as_journaled(row),
                               launch_request=launch["launch_request"],
                               created_at=int(launch["at"]))
    try:
        claim(ctx.journal, row, RequestState.EXTENDING)
    except OperationError as error:
        return protocol.error_reply(error.kind, f"{error}; nothing was changed")
    try:
        try:
            _lease_in_force(ctx, row, AnnexPlan.from_record(row["plan"]), credentials)
        except Refused as refused:
            return refused.reply
        notices = [f"finished launch {launch['number']} of annex {row['annex_id']!r}, which "
                   f"was interrupted at {_when(launch['at'])}; its own settings applied (run "
                   "the command again to add more)"]
        return _drive(ctx, row, part, launch, credentials, report, notices, look_first=True)
    finally:
        ctx.journal.transition(row["id"], RequestState.ACTIVE, expect={RequestState.EXTENDING})


def _drive(ctx: Context, row: dict[str, Any], part: AnnexPlan, launch: dict[str, Any],
           credentials: dict[str, str] | None, report: Callable[[str], None],
           notices: list[str], *, look_first: bool) -> dict[str, Any]:
    """Send the journaled launch (the row claimed), settle it, and reply."""
    aws = ctx.aws(part.region, credentials)
    report(f"launching: {LAUNCH_CALLS.get(part.annex_type, part.annex_type)} (launch "
           f"{launch['number']} of annex {part.annex_id}, under its lease)")
    try:
        outputs = send(ctx, aws, row["id"], part, launch, look_first=look_first)
    except Transient as error:
        return protocol.error_reply(
            "aws", f"{error}; launch {launch['number']} of annex {part.annex_id!r} may have "
            "started or not (it is under the annex's lease either way): run the same command "
            "again to finish it (it is never started twice)", aws_code=error.code,
            request_id=error.request_id, notices=notices)
    except AwsError as error:
        return protocol.error_reply(
            "aws", f"{error}; nothing was added to annex {part.annex_id!r}",
            aws_code=error.code, request_id=error.request_id, notices=notices)
    launched, more = part.kind.reply(part, outputs)
    result = {"annex_id": part.annex_id, "type": part.annex_type, "region": part.region,
              "lease_end": part.lease_end, "added_launch": launch["number"], **launched}
    log.info("request %d: annex %s: launch %d is up: %s", row["id"], part.annex_id,
             launch["number"], launched)
    return protocol.ok_reply(result, notices + more)


def send(ctx: Context, aws: AnnexAws, request_id: int, part: AnnexPlan,
         launch: dict[str, Any], *, look_first: bool) -> dict[str, Any]:
    """The launch call of a journaled launch, with retries on transient errors, looking
    first (before every retry, and before the first attempt of a resumed launch) for what
    an earlier attempt made.  Settles it: 'done', or 'failed' (AWS refused it; whatever it
    may have made is ended).  A transient failure on the last attempt leaves it sent."""
    settings = ctx.settings
    retry = RetryPolicy(settings.step_attempts, settings.retry_base_seconds,
                        settings.retry_max_seconds)
    token = launch["client_token"]
    for attempt in range(retry.attempts):
        found = find(aws, part, token) if look_first or attempt else None
        if found is not None:
            ctx.journal.launch_settled(request_id, launch["number"], "done", found)
            return found
        try:
            outputs = part.kind.launch(aws, part, {})
        except Transient as error:
            if attempt + 1 == retry.attempts:
                raise
            log.warning("annex %s: launch %d: %s; retrying", part.annex_id, launch["number"],
                        error)
            ctx.stopping.wait(retry.delay(attempt))
            continue
        except AwsError as error:
            _end(aws, part, token)
            ctx.journal.launch_settled(request_id, launch["number"], "failed", {}, str(error))
            raise
        ctx.journal.launch_settled(request_id, launch["number"], "done", outputs)
        return outputs
    raise AssertionError("unreachable")


def find(aws: AnnexAws, part: AnnexPlan, token: str) -> dict[str, Any] | None:
    """What the launch of ``token`` made, by its launch tag (and the annex's tags), in any
    state: a fleet its lease or -off already ended was made all the same."""
    tags = {CLIENT_TOKEN_TAG: part.client_token, LAUNCH_TAG: token}
    if part.annex_type == "on-demand":
        ids = [i["id"] for i in aws.annex_instances(part.annex_id, part.client_token,
                                                    {LAUNCH_TAG: token})]
        return {"instance_ids": ids} if ids else None
    if part.annex_type == "spot-fleet":
        found = base.keep_one(part, aws.tagged_fleets(part.annex_id, tags, token),
                              aws.cancel_fleets)
        return {"spot_fleet_request_id": found} if found else None
    found = base.keep_one(part, aws.tagged_ec2_fleets(part.annex_id, tags),
                          aws.delete_ec2_fleets)
    return {"fleet_id": found} if found else None


def _end(aws: AnnexAws, part: AnnexPlan, token: str) -> None:
    """End what a refused launch may have made (an instant fleet that started nothing is
    still a fleet): best effort -- it carries the annex's tags, so its lease ends it too."""
    try:
        found = find(aws, part, token)
        if found is None:
            return
        if "instance_ids" in found:
            aws.terminate_instances(found["instance_ids"])
        elif "spot_fleet_request_id" in found:
            aws.cancel_fleets([found["spot_fleet_request_id"]])
        else:
            aws.delete_ec2_fleets([found["fleet_id"]])
    except AwsError as error:
        log.warning("annex %s: could not end what the refused launch made (%s); the annex's "
                    "lease ends it", part.annex_id, error)


# -- after a crash -------------------------------------------------------------------------

def recover(ctx: Context) -> None:
    """Finish every added launch a crash left sent, where the daemon may act with its own
    identity (the annex's account, the admin's choices); the others wait for their owners'
    repeat of the command.  Nothing is sent under a lease that is over or about to be."""
    rows = [row for row in ctx.journal.live_rows() if row["state"] == RequestState.ACTIVE]
    added = ctx.journal.added_launches_of(row["id"] for row in rows)  # one query for all
    for row in rows:
        launch = next((launch for launch in added.get(row["id"], [])
                       if launch["state"] == "sent"), None)
        if launch is None:
            continue
        part = dataclasses.replace(launches.as_journaled(row),
                                   launch_request=launch["launch_request"],
                                   created_at=int(launch["at"]))
        if not ctx.may_recover(row) or not _admins(ctx, part):
            log.warning("annex %s in %s: launch %d was interrupted; it is finished when its "
                        "owner runs the same condor_annex command again", row["annex_id"],
                        row["region"], launch["number"])
            continue
        if row["lease_end"] <= ctx.clock() + LEASE_MARGIN_SECONDS:
            log.warning("annex %s: launch %d was interrupted and its lease is ending: not "
                        "sent again", row["annex_id"], launch["number"])
            continue
        try:
            reply = _finish(ctx, row, launch, None)
        except Exception:  # one annex must not stop the others' recovery, nor the daemon
            log.exception("annex %s: finishing interrupted launch %d failed", row["annex_id"],
                          launch["number"])
            continue
        log.info("annex %s: interrupted launch %d: %s", row["annex_id"], launch["number"],
                 "finished" if reply["ok"] else reply["error"]["message"])
        if reply["ok"]:
            finished_by_recovery(ctx, row["id"], launch["number"])


#: The step events that say the daemon's recovery finished a launch (its create's: 1) whose
#: owner was told "run the same command again", and that the owner's next repeat heard so.
RECOVERED, TOLD = ("recovered", "done"), ("recovered", "told")


def finished_by_recovery(ctx: Context, request_id: int, number: int) -> None:
    """Record that the restarted daemon finished launch ``number`` of the annex: its owner,
    told by the interrupted command to run it again, gets that said once instead of a
    second launch (:func:`_recovered`)."""
    ctx.journal.step_event(request_id, *RECOVERED, {"launch": number})


def _recovered(ctx: Context, row: dict[str, Any]) -> dict[str, Any] | None:
    """The owner's first repeat after the daemon finished a launch of theirs on its own:
    say so, add nothing (the repeat was what the interrupted command asked for).  None when
    there is nothing untold."""
    events = ctx.journal.step_events(row["id"])
    if RECOVERED not in events or events[::-1].index(RECOVERED) > \
            (events[::-1].index(TOLD) if TOLD in events else len(events)):
        return None
    ctx.journal.step_event(row["id"], *TOLD)
    annex = launches.as_journaled(row)
    done = [launch for launch in ctx.journal.added_launches(row["id"])
            if launch["state"] == "done"]
    number = done[-1]["number"] if done else 1
    if done:
        part = dataclasses.replace(annex, launch_request=done[-1]["launch_request"])
        launched, _ = annex.kind.reply(part, done[-1]["outputs"])
    else:
        launched, _ = annex.kind.reply(annex, launches.loads(row["outputs"]))
    return protocol.ok_reply(
        {"annex_id": annex.annex_id, "type": annex.annex_type, "region": annex.region,
         "lease_end": annex.lease_end, "recovered_launch": number, **launched},
        [f"condor_annexd finished annex {annex.annex_id!r} (launch {number}) itself after it "
         "restarted, so nothing more was added; run the command again to add instances to it"])


def _admins(ctx: Context, part: AnnexPlan) -> bool:
    try:
        daemonpaid.check(part, ctx.settings.for_region(part.region))
    except (InvalidRequest, KnobError) as error:
        log.warning("annex %s: an interrupted launch is not finished with condor_annexd's "
                    "identity: %s", part.annex_id, error)
        return False
    return True


# -- -status --------------------------------------------------------------------------------

def launch_reports(row: dict[str, Any], plan: AnnexPlan,
                   added: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each launch of the annex, its create's first: its number, capacity, state, when, and
    what it made (the fleet, or the instances it started)."""
    outputs = launches.loads(row.get("outputs"))
    reports = [_launch_report(1, plan, plan.launch_request, "done" if outputs else "pending",
                              plan.created_at or row["created"], outputs)]
    for launch in added:
        reports.append(_launch_report(launch["number"], plan, launch["launch_request"],
                                      launch["state"], launch["at"], launch["outputs"]))
    return reports


def _launch_report(number: int, plan: AnnexPlan, request: dict[str, Any], state: str,
                   at: float, outputs: dict[str, Any]) -> dict[str, Any]:
    made = {key: outputs[key] for key in ("spot_fleet_request_id", "fleet_id", "instance_ids")
            if key in outputs}
    return {"number": number, "capacity": plan.kind.capacity(request), "state": state,
            "at": int(at), **made}


def instance_tags(plan: AnnexPlan, row: dict[str, Any],
                  added: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """The tags (key, value) the annex's instances carry, one per launch where they differ
    (a launch template's fleet: the fleet's ID), for -status's count."""
    tags = []
    for request, outputs in [(plan.launch_request, launches.loads(row.get("outputs"))),
                             *((launch["launch_request"], launch["outputs"])
                               for launch in added)]:
        tag = plan.kind.instance_tag(dataclasses.replace(plan, launch_request=request),
                                     outputs)
        if tag is not None and tag not in tags:
            tags.append(tag)
    return tags

