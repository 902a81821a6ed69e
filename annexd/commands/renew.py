"""Annex tokens: short-lived, renewed by the daemon while the annex lives, and moved with its
lease.

A minted token lives at most ``ANNEX_TOKEN_LIFETIME`` past its minting, and never past the
lease end plus a grace (:func:`annexd.instance_config.idtoken.expiry`): HTCondor cannot be told
to forget a token, so a short life is what ends one after ``-off`` (finding 9 of issue 23).
So the daemon renews each live annex's token when half its life is left
(:func:`renew_due`, every renewal pass): one PutObject of the config object per annex, with
a new token (same ``jti``, same ``sub``) and the lease end the journal holds, then one
CopyObject per instance: each instance reads only its own copy of the object
(:mod:`.copies`, issue 23 requirement 5), so the renewal costs a write per instance, not per
annex.  The instances re-read their copy's metadata every minute (``condor_annex_ec2
-refresh-lease``) and install it again when its token stamp changed.  ``-off`` ends the row, and only live rows are
renewed: renewal ends at once.  If the daemon is down for longer than a token's life, the
annex's startds can no longer authenticate and leave the pool; its lease still ends it.

Renewal rewrites the object, so the bucket's lifecycle rule (``ConfigExpirationDays``, by
object age) never sees a live annex's object older than a token's life: no lease is cut
short by it (finding 10).  Annexes with the user's own token or the pool password have no
token to renew; their object is rewritten in place (CopyObject of its metadata) every
:data:`TOUCH_SECONDS` for the same reason, as is a minted one whose token lives longer.

A renewal claims the row (``active -> extending -> active``, as a lease change does) before
it writes, so it never races a lease change, an ``-off`` or the backstop: whichever claims
first acts, and the other is told, or tries at the next pass.  Every live annex whose payer
account is the daemon identity's is renewed (:func:`renewable`), whoever made it: the
daemon's identity holds ``cfn/daemon-policy.json``, which lets it read and rewrite (never
delete) every principal's ``config-*/`` object -- no new power, since it holds the signing
key and could mint any annex's token anyway.  An annex of another account is not renewable
(the daemon's identity cannot write there) and its create says so (:func:`cannot_renew`).

A lease change rewrites the object once, token and metadata together in one PutObject
(:func:`config_writer`): an instance never sees the new lease end without the new token.
"""
from __future__ import annotations

import logging
from typing import Any, Callable

from annexd.aws import AnnexAws, AwsError
from annexd.config.knobs import DaemonSettings
from annexd.instance_config import idtoken, tarball
from annexd.launch.plan import AnnexPlan, InvalidRequest
from annexd.state.journal import StateChanged
from annexd.state.lifecycle import RequestState
from annexd.commands import copies
from annexd.commands.context import Context, OperationError, claim

log = logging.getLogger("annexd.operate")

#: Mints the annex's token for a lease end, at a time (the daemon's signing key, read then).
Minter = Callable[[AnnexPlan, int, float], str]

#: Every live annex's object is rewritten at least this often (in place, without a minted
#: token to renew), so that the bucket's lifecycle -- which deletes ``config-*`` objects
#: ConfigExpirationDays (at least 1) after their last write -- never takes a live one.
TOUCH_SECONDS = 6 * 3600
#: The shortest lifecycle cfn/bucket.yaml allows (ConfigExpirationDays: at least 1).
LIFECYCLE_MIN_SECONDS = 86400


def config_writer(aws: AnnexAws, plan: AnnexPlan, lease_end: int, mint: Minter,
                  now: float) -> Callable[[], None]:
    """Everything that can fail before anything changes -- reading the object, minting the
    token -- done now; returns the one write that moves the lease end the instances read
    (with a minted token, renewed in the same write).  A lease change calls it only once the
    rule and target hold the new end: a change that fails leaves no object without a lease.
    A token that cannot be minted stops the lease change before anything changed."""
    if plan.pool_auth != "minted":
        return lambda: aws.set_config_lease_end(plan.bucket, plan.config_key, lease_end)
    try:
        token = mint(plan, lease_end, now)
    except InvalidRequest as error:
        raise OperationError("invalid-request", f"{error}; nothing was changed") from None
    payload = tarball.with_token(aws.get_config(plan.bucket, plan.config_key), plan, token)
    return lambda: aws.put_config(plan.bucket, plan.config_key, payload, plan.annex_id,
                                  lease_end, now)


def pass_interval(settings: DaemonSettings) -> float:
    """Seconds between two renewal passes: an eighth of a token's life, at most the lease
    backstop's interval."""
    return max(1.0, min(settings.lease_check_interval, settings.pool.token_lifetime / 8))


def renewable(ctx: Context, row: dict[str, Any], plan: AnnexPlan) -> bool:
    """Whether the daemon's own identity may rewrite the annex's config object: in the
    account that pays for it (journal ``payer_account``), whoever made it -- the daemon
    policy lets it write every ``config-*/`` object of its bucket."""
    return ctx.may_recover(row, plan)


def cannot_renew(ctx: Context, plan: AnnexPlan, payer: str, now: float) -> list[str]:
    """The notice of a create whose object the daemon will not be able to rewrite: one in
    an account the daemon's identity is not in (or when it has none)."""
    if ctx.identity.available and ctx.identity.account == payer:
        return []
    lifetime = ctx.settings.pool.token_lifetime
    if plan.pool_auth == "minted" and plan.lease_end - now > lifetime:
        return [f"condor_annexd cannot renew this annex's token (its identity cannot write "
                f"in the account that pays for it): its instances leave the pool {lifetime} s "
                "after the create (ANNEX_TOKEN_LIFETIME) unless -lease-duration, with keys of "
                "that account, gives them a new one"]
    if plan.lease_end - now > LIFECYCLE_MIN_SECONDS:
        return ["condor_annexd cannot rewrite this annex's config object (its identity cannot "
                "write in the account that pays for it): the bucket's lifecycle "
                "(ConfigExpirationDays) deletes it, and so ends the annex, that many days after "
                "its last write unless -lease-duration rewrites it first"]
    return []


def due(ctx: Context, row: dict[str, Any], plan: AnnexPlan, now: float) -> bool:
    """Whether the row's annex needs its object rewritten now."""
    if row["state"] != RequestState.ACTIVE or row["lease_intent"] is not None or \
            row["lease_end"] <= now:
        return False  # busy, its lease end not known, or its lease over: not ours now
    written = row["token_minted"]
    if plan.pool_auth == "minted" and now >= idtoken.renewal_due(
            written, row["lease_end"], ctx.settings.pool.token_lifetime):
        return True
    return now >= written + TOUCH_SECONDS  # whatever the token's life: the lifecycle


def renew_due(ctx: Context) -> list[str]:
    """One renewal pass: rewrite the config object of every live annex the daemon may act
    on whose token has half its life left (or, without a minted token, whose object is
    :data:`TOUCH_SECONDS` old); the names of those renewed."""
    now = ctx.clock()
    renewed = []
    for row in ctx.until_stopping(ctx.journal.live_rows()):
        plan = AnnexPlan.from_record(row["plan"])
        if due(ctx, row, plan, now) and renewable(ctx, row, plan) and \
                _renew(ctx, row, plan, now):
            renewed.append(row["annex_id"])
    return renewed


def _renew(ctx: Context, row: dict[str, Any], plan: AnnexPlan, now: float) -> bool:
    try:
        claim(ctx.journal, row, RequestState.EXTENDING)
    except OperationError as lost:  # an owner's command got there first: next pass
        log.info("token renewal: %s; leaving it", lost)
        return False
    try:
        _write(ctx, row, plan, now)
    except (AwsError, InvalidRequest, ValueError) as error:
        log.error("token renewal: annex %s: %s; it is tried again at the next pass",
                  plan.annex_id, error)
        _release(ctx, row)
        return False
    except BaseException:
        _release(ctx, row)
        raise
    try:
        ctx.journal.transition(row["id"], RequestState.ACTIVE, token_minted=now,
                               expect={RequestState.EXTENDING})
    except StateChanged:
        return False
    log.info("annex %s: token renewed (valid to %d)", plan.annex_id,
             idtoken.expiry(row["lease_end"], now, ctx.settings.pool.token_lifetime))
    copies.after_write(ctx, row["id"], None)  # each instance reads its own copy
    return True


def _write(ctx: Context, row: dict[str, Any], plan: AnnexPlan, now: float) -> None:
    """The one write of a renewal, with the lease end the journal holds."""
    aws = ctx.aws(plan.region, None)
    lease_end = int(row["lease_end"])
    if plan.pool_auth != "minted":
        aws.set_config_lease_end(plan.bucket, plan.config_key, lease_end)
        return
    token = ctx.mint(plan, lease_end, now)
    if plan.needs_request_material:  # the user's -config-dir files are only in the object
        payload = tarball.with_token(aws.get_config(plan.bucket, plan.config_key), plan, token)
    else:
        payload = tarball.build(plan, tarball.PoolMaterial(token, None, {}))
    aws.put_config(plan.bucket, plan.config_key, payload, plan.annex_id, lease_end, now)


def _release(ctx: Context, row: dict[str, Any]) -> None:
    """A renewal that failed changed no lease: the row goes back as it was."""
    try:
        ctx.journal.transition(row["id"], RequestState.ACTIVE,
                               expect={RequestState.EXTENDING})
    except StateChanged:
        pass
