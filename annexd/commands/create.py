"""``condor_annex`` create: plan, check the caps, take the name in the journal, and drive the
create sequence (lease first).  A repeat of a parked request's command resumes it instead
(:mod:`.resume`)."""
from __future__ import annotations

import logging
import pwd
from typing import Any, Callable

from annexd.aws import AwsError
from annexd.aws.session import owner_id
from annexd.money import costs
from annexd.money import daemonpaid
from annexd.rpc import protocol
from annexd.state.journal import NameTaken
from annexd.config.knobs import KnobError
from annexd.launch.plan import AnnexPlan, InvalidRequest, build_plan
from annexd.commands import copies, grow, renew, resume
from annexd.commands.launches import as_journaled, holding  # noqa: F401 (their old home)
from annexd.commands.context import Caller, Context
from annexd.commands.replies import outcome_reply, resumable, taken_reply

log = logging.getLogger("annexd.rpc.service")


#: Why an auto annex cannot be paid with the user's keys.
AUTO_WITH_KEYS = (
    "-auto annexes are paid by condor_annexd's own AWS identity: the daemon orders their "
    "instances for as long as they live, and it never keeps your keys to do that. Leave out "
    "-public-key-file and -secret-key-file (and ANNEX_DEFAULT_ACCESS_KEY_FILE / "
    "ANNEX_DEFAULT_SECRET_KEY_FILE), or size the annex yourself with -count")


def _user_name(uid: int, annex: dict[str, Any]) -> str:
    """The caller's login name, the default START owner."""
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        if "owners" in annex:
            return str(uid)
        raise InvalidRequest(f"uid {uid} has no user name to restrict START to; pass "
                             "-owner NAMES or -no-owner") from None


def create(ctx: Context, request: dict[str, Any], who: Caller,
           report: Callable[[str], None] = lambda text: None) -> dict[str, Any]:
    """``report`` hears each step of the create sequence as it starts."""
    settings = ctx.settings
    credentials = request.get("credentials")
    annex = dict(request["annex"])
    notices: list[str] = []
    try:
        region = settings.for_region(annex.get("region"))
        if "auto" in annex and credentials is not None:
            raise InvalidRequest(AUTO_WITH_KEYS)
        # Who pays -- the account, the principal and the owner its resources are tagged
        # with -- is fixed now, before anything is made: every later operation acts only
        # with keys of this account (Context.check_payer).  STS is asked once per key pair.
        payer = None if request.get("dry_run") else ctx.payer_of(region.region, credentials)
        owner = owner_id(payer.owner) if payer is not None else ""
        plan = build_plan(annex, owner_uid=who.uid, settings=region, owner=owner,
                          lease_rate_minutes=settings.lease_rate_minutes, now=ctx.clock(),
                          pool=settings.pool, user_name=_user_name(who.uid, annex))
        plan = costs.with_price_cap(plan, settings.caps)
        held = ctx.journal.live_row(plan.region, plan.annex_id)
        if request.get("dry_run"):  # the confirmation prompt: look, never act
            if held is not None and not resumable(held, who):
                return _grow_estimate(ctx, held, who, plan, annex, credentials)
            if held is None and credentials is None:
                daemonpaid.check(plan, region)
            estimate = costs.check(plan, settings.caps, lambda: holding(ctx, who.uid))
            return protocol.ok_reply({"annex_id": plan.annex_id, "estimate": estimate},
                                     list(plan.notices))
        if held is not None and not resumable(held, who):  # the same name again
            assert payer is not None  # only a dry run has none, and it has returned
            return grow.add(ctx, held, who, plan, annex, payer, credentials, report)
        if held is not None:  # a resume: the row's plan, payer and choices apply
            answer = resume.name_held(ctx, held, who, credentials, annex, notices)
            if answer is not None:
                return answer
        if credentials is None:  # paid by the daemon's identity: the admin's choices only
            daemonpaid.check(plan, region)
        costs.check(plan, settings.caps, lambda: holding(ctx, who.uid))
        assert payer is not None  # only a dry run has none, and it has returned
        minted_at = ctx.clock()
        payload = ctx.payload(plan, annex, minted_at)
    except (InvalidRequest, KnobError) as error:
        return protocol.error_reply("invalid-request", str(error))
    except AwsError as error:
        return protocol.error_reply("aws", str(error), aws_code=error.code,
                                    request_id=error.request_id)
    try:
        # Committed now, forced to disk while the check step looks: before any call that
        # changes AWS (annexd.launch.steps).
        request_id = ctx.journal.begin(
            plan, daemon_credentials=credentials is None, durable=False,
            payer=(payer.account, payer.principal),
            token_minted=minted_at)
    except NameTaken as taken:
        return taken_reply(taken.row, who)
    notices += renew.cannot_renew(ctx, plan, payer.account, minted_at)
    notices += copies.cannot_copy(ctx, plan, payer.account)
    log.info("request %d: uid %d creates annex %s in %s (lease ends %d)",
             request_id, who.uid, plan.annex_id, plan.region, plan.lease_end)
    driver = ctx.driver(plan, request_id, credentials, payload, report, on_disk=False)
    return outcome_reply(ctx.journal, driver,
                         lambda: copies.launched(ctx, request_id, credentials, driver.forward()),
                         notices + list(plan.notices))


def _grow_estimate(ctx: Context, held: dict[str, Any], who: Caller, plan: AnnexPlan,
                   annex: dict[str, Any], credentials: dict[str, str] | None) -> dict[str, Any]:
    """The confirmation prompt of the same name again: what would be added to the live
    annex (to its lease end), or why nothing can be (:mod:`.grow`)."""
    try:
        _, estimate, notices = grow.prepare(ctx, held, who, plan, annex, None, credentials)
    except grow.Refused as refused:
        return refused.reply
    estimate.pop("client_token", None)
    return protocol.ok_reply({"annex_id": plan.annex_id, "estimate": estimate}, notices)
