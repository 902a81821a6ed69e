"""What the daemon does with one request from one authenticated local user, and at start-up.

``handle`` never raises: every failure becomes an error reply with one clear line, because a
request must never take the daemon down.  Credentials arrive in the request, are used for its
AWS calls, and are dropped with it: never logged, never journaled.  That is also why recovery
can finish by itself only the requests it can act on with its own AWS identity (those made
with that identity, or with a user's keys in the same AWS account); any other is parked until
its owner repeats the command.  Either way nothing is unprotected meanwhile: the lease is in
place before the config object and before any instance.

An annex is (region, name), held by its one live journal row; only that row's owner (and root
or the daemon's own user) may see, resume, change or end it.
"""
from __future__ import annotations

import base64
import binascii
import concurrent.futures
import logging
import os
import pwd
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

from . import costs, identity, idtoken, lifecycle, operate, protocol, stacks, steps, tarball
from .aws import AnnexAws, AwsError
from .journal import Journal, NameTaken, StateChanged
from .knobs import DaemonSettings, KnobError
from .lifecycle import RequestState
from .plan import AnnexPlan, InvalidRequest, build_plan

log = logging.getLogger("annexd.service")


@dataclass(frozen=True)
class Peer:
    """Who is on the other end of the socket, from the kernel (SO_PEERCRED), not the client."""

    pid: int
    uid: int
    gid: int

    @property
    def is_admin(self) -> bool:
        """root and the daemon's own user may see and act on every annex."""
        return self.uid in (0, os.geteuid())

    def may_act_on(self, owner_uid: int) -> bool:
        return self.is_admin or self.uid == owner_uid


def _failure_reply(error: steps.CreateFailed, notices: list[str]) -> dict[str, Any]:
    cause = error.cause
    aws_code = getattr(cause, "code", None)
    request_id = getattr(cause, "request_id", None)
    if isinstance(cause, steps.AnnexExists):
        return protocol.error_reply("conflict", str(cause), notices=notices)
    if error.undo_errors:
        leftovers = "; ".join(f"{name}: {err}" for name, err in error.undo_errors)
        kept = " Its lease is kept and now ends at once: the lease function removes what " \
            "is left within minutes." if error.lease_kept else ""
        return protocol.error_reply(
            "rollback-incomplete",
            f"{cause}; rolling back also failed, these may be left over: {leftovers}.{kept}",
            aws_code=aws_code, request_id=request_id, notices=notices)
    kind = "aws" if isinstance(cause, AwsError) else "internal"
    message = f"{cause}; nothing was left behind"
    if error.step == "check" and aws_code == "ResourceNotFoundException":
        message = f"the lease function does not exist ({cause}); nothing was created"
    return protocol.error_reply(kind, message, aws_code=aws_code, request_id=request_id,
                                notices=notices)


def _paused_reply(plan: AnnexPlan, step: str, notices: list[str]) -> dict[str, Any]:
    return protocol.error_reply(
        "interrupted",
        f"condor_annexd is shutting down; annex {plan.annex_id!r} stopped safely before its "
        f"{step} step (its lease is in force). Run the same condor_annex command again to "
        "finish it.", notices=notices)


def _read(path: str | None) -> bytes:
    if path is None:
        raise FileNotFoundError(2, "not configured", "(unset)")
    with open(path, "rb") as handle:
        return handle.read()


def mint_token(settings: DaemonSettings, plan: AnnexPlan, lease_end: int) -> str:
    """The annex's own IDTOKEN, valid to ``lease_end`` (plus a grace); InvalidRequest, saying
    what to configure, when the signing key cannot be used."""
    token_settings = settings.pool.token
    try:
        if token_settings is None:
            raise idtoken.TokenKeyError("no token signing key is configured")
        return idtoken.for_annex(token_settings, plan.token_identity, plan.token_id,
                                 lease_end, time.time())
    except idtoken.TokenKeyError as error:
        raise InvalidRequest(
            f"annex instances could not authenticate to the pool: condor_annexd {error}. "
            "Make that key readable by condor_annexd's user (the central manager must hold "
            "the same key), or name another with ANNEX_TOKEN_SIGNING_KEY (a file in "
            "SEC_PASSWORD_DIRECTORY); or pass -idtoken-file") from None


def _user_name(uid: int, annex: dict[str, Any]) -> str:
    """The caller's login name, the default START owner."""
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        if "owners" in annex:
            return str(uid)
        raise InvalidRequest(f"uid {uid} has no user name to restrict START to; pass "
                             "-owner NAMES or -no-owner") from None


class AnnexService:
    def __init__(self, settings: DaemonSettings, journal: Journal,
                 clock: Callable[[], float] = time.time,
                 daemon_identity: identity.DaemonIdentity = identity.NONE):
        self._settings = settings
        self._settings_lock = threading.Lock()
        self.journal = journal
        self.clock = clock
        self.identity = daemon_identity
        #: Set when the daemon is asked to stop: requests pause at their next step boundary.
        self.stopping = threading.Event()

    @property
    def settings(self) -> DaemonSettings:
        with self._settings_lock:
            return self._settings

    def reconfigure(self, settings: DaemonSettings,
                    daemon_identity: identity.DaemonIdentity | None = None) -> None:
        """Requests in flight keep the settings they started with."""
        with self._settings_lock:
            self._settings = settings
            if daemon_identity is not None:
                self.identity = daemon_identity

    # -- plumbing shared by requests and recovery ------------------------------------------

    def _aws(self, settings: DaemonSettings, region: str,
             credentials: dict[str, str] | None) -> AnnexAws:
        """Clients for ``region``: the user's ``credentials``, else the daemon's identity."""
        return AnnexAws(region=region, endpoints=settings.for_region(region).endpoints,
                        credentials=credentials or self.identity.credentials,
                        max_attempts=settings.aws_max_attempts,
                        timeout_seconds=settings.aws_timeout_seconds,
                        function_check_seconds=settings.function_check_seconds)

    def account_of(self, credentials: dict[str, str] | None) -> str:
        """The AWS account of ``credentials`` (None: botocore's own sources)."""
        settings = self.settings
        return AnnexAws(region=settings.region, endpoints=settings.home.endpoints,
                        credentials=credentials, max_attempts=2,
                        timeout_seconds=min(10.0, settings.aws_timeout_seconds)).account()

    def may_recover(self, row: dict[str, Any]) -> bool:
        """Whether the daemon can drive this request with its own identity: made with it, or
        with a user's keys of the same AWS account (the lease function's)."""
        if not self.identity.available:
            return False
        plan = AnnexPlan.from_record(row["plan"])
        return bool(row["daemon_credentials"]) or \
            self.identity.same_account(plan.lease_function_arn)

    @staticmethod
    def _payload(settings: DaemonSettings, plan: AnnexPlan,
                 annex: dict[str, Any] | None) -> bytes | None:
        """The annex's config tarball; None when only the (gone) request could supply it.

        Raises InvalidRequest if the daemon's own pool secret cannot be read.
        """
        if annex is None and plan.needs_request_material:
            return None
        annex = annex or {}
        pool = settings.pool
        try:
            token = annex.get("idtoken") or (_read(pool.idtoken_file).decode().strip()
                                             if plan.pool_auth == "idtoken" else None)
            if plan.pool_auth == "minted":
                token = mint_token(settings, plan, plan.lease_end)
            password = _read(pool.password_file) if plan.pool_auth == "password" else None
        except OSError as error:
            raise InvalidRequest(f"condor_annexd cannot read the pool's secret "
                                 f"({error.filename}: {error.strerror})") from None
        try:
            files = {name: base64.b64decode(text, validate=True)
                     for name, text in annex.get("config_files", {}).items()}
        except binascii.Error:
            raise InvalidRequest("config_files: not base64") from None
        return tarball.build(plan, tarball.PoolMaterial(token, password, files))

    def _driver(self, settings: DaemonSettings, plan: AnnexPlan, request_id: int,
                credentials: dict[str, str] | None, payload: bytes | None) -> steps.Driver:
        aws = self._aws(settings, plan.region, credentials)
        retry = steps.RetryPolicy(settings.step_attempts, settings.retry_base_seconds,
                                  settings.retry_max_seconds)
        return steps.Driver(steps.create_sequence(plan, payload), aws, plan, self.journal,
                            request_id, retry=retry, stop=self.stopping, clock=self.clock)

    def _continue(self, driver: steps.Driver, state: RequestState) -> steps.Outputs | None:
        """Resume a parked request in the direction it was going.

        Returns the outputs of a finished create, or None when it was rolled back (a parked
        rollback, or a create whose lease ended meanwhile).  Raises CreateFailed or Paused
        like Driver.forward, and CreateFailed for a rollback that could not finish.
        """
        plan, request_id = driver.plan, driver.request_id
        progress = self.journal.progress(request_id)
        if state is RequestState.ROLLBACK_INTERRUPTED:
            self.journal.transition(request_id, RequestState.ROLLING_BACK, expect={state})
            reason = "resuming an interrupted rollback"
        elif plan.lease_end <= self.clock():
            reason = "the lease ended before the annex was complete"
            self.journal.transition(request_id, RequestState.ROLLING_BACK, expect={state},
                                    error=reason)
        elif "target" in progress.done and driver.aws.lease_target(plan.annex_id) is None:
            # The journal says the lease was put in force, but AWS no longer has it: its
            # lease function (whose clock is AWS's, not ours) or someone else ended it.
            # Never go on to launch without a lease: finish it off instead.
            reason = "its lease was ended while it was interrupted"
            self.journal.transition(request_id, RequestState.ROLLING_BACK, expect={state},
                                    error=reason)
        else:
            self.journal.transition(request_id, RequestState.CREATING, expect={state})
            return driver.forward(progress)
        log.warning("annex %s: %s; rolling back", plan.annex_id, reason)
        outcome = driver.rollback(progress, reason, resumed=True)
        if outcome.errors:
            raise steps.CreateFailed("rollback", RuntimeError(reason), outcome.errors,
                                     outcome.lease_kept)
        return None

    # -- requests --------------------------------------------------------------------------

    def handle(self, message: Any, peer: Peer,
               progress: Callable[[str], None] = lambda text: None) -> dict[str, Any]:
        try:
            request = protocol.validate_request(message)
            command = request["command"]
            if command == "ping":
                return protocol.ok_reply({"daemon": "condor_annexd", "uid": peer.uid})
            if command == "list":
                return self.list_annexes(peer)
            if command in ("setup", "check-setup"):
                return self.setup(request, progress, check_only=command == "check-setup")
            if command in ("status", "off", "extend"):
                return self.operate(command, request, peer)
            return self.create(request, peer)
        except protocol.ProtocolError as error:
            return protocol.error_reply("invalid-request", f"bad request: {error}")
        except Exception:  # the daemon outlives any request
            log.exception("internal error while serving uid %d", peer.uid)
            return protocol.error_reply("internal", "internal error in condor_annexd; "
                                        "see its log (ANNEXD_LOG)")

    def list_annexes(self, peer: Peer) -> dict[str, Any]:
        """The live annexes the caller may see: their own, or all for root and the daemon."""
        rows = self.journal.live_rows(owner_uid=None if peer.is_admin else peer.uid)
        return protocol.ok_reply({"annexes": [{
            "name": row["annex_id"],
            "region": row["region"],
            "owner": row["owner_uid"],
            "state": row["state"],
            "lease_end": row["lease_end"],
        } for row in rows]})

    def _live_instances(self, uid: int) -> int:
        """Instances the user's live annexes asked for (for ANNEX_MAX_INSTANCES)."""
        return sum(costs.capacity(AnnexPlan.from_record(row["plan"]))
                   for row in self.journal.live_rows(owner_uid=uid))

    def _missing_credentials(self, request: dict[str, Any]) -> dict[str, Any] | None:
        if request.get("credentials") is None and not self.settings.allow_daemon_credentials:
            return protocol.error_reply(
                "invalid-request",
                "no AWS credentials: pass -public-key-file and -secret-key-file, or set "
                "ANNEX_DEFAULT_ACCESS_KEY_FILE and ANNEX_DEFAULT_SECRET_KEY_FILE")
        return None

    def operations(self) -> operate.Operations:
        settings = self.settings
        return operate.Operations(
            self.journal, lambda region, creds: self._aws(settings, region, creds), self.clock,
            may_act_alone=self.may_recover,
            mint=lambda plan, lease_end: mint_token(settings, plan, lease_end))

    def operate(self, command: str, request: dict[str, Any], peer: Peer) -> dict[str, Any]:
        """status / off / extend: on the caller's own annexes (root and the daemon: all)."""
        refusal = self._missing_credentials(request)
        if refusal:
            return refusal
        ops, creds = self.operations(), request.get("credentials")
        name, region = request.get("name"), request.get("region")
        who = operate.Caller(peer.uid, peer.is_admin)
        try:
            if command == "status":
                return protocol.ok_reply({"annexes": ops.status(who, name, region, creds)})
            if command == "off":
                return protocol.ok_reply(ops.off(who, name, region, creds))
            return protocol.ok_reply(ops.extend(who, name, region, request["lease_duration"],
                                                creds, self.settings.caps.max_lease_duration))
        except operate.OperationError as error:
            return protocol.error_reply(error.kind, str(error))
        except InvalidRequest as error:  # a lease change could not renew the annex's token
            return protocol.error_reply("invalid-request", f"{error}; nothing was changed")
        except AwsError as error:
            return protocol.error_reply("aws", str(error), aws_code=error.code,
                                        request_id=error.request_id)

    def enforce_leases(self) -> None:
        """The daemon's lease backstop, run every ANNEXD_LEASE_CHECK_INTERVAL seconds."""
        if not self.identity.available:
            return
        try:
            self.operations().enforce_expired()
        except Exception:  # the backstop must keep running
            log.exception("lease backstop failed")

    def setup(self, request: dict[str, Any], progress: Callable[[str], None],
              check_only: bool) -> dict[str, Any]:
        """Create or update (or only check) the region's setup stacks, with the caller's keys."""
        refusal = self._missing_credentials(request)
        if refusal:
            return refusal
        settings = self.settings
        try:
            region = settings.for_region(request.get("region")).region
        except KnobError as error:
            return protocol.error_reply("invalid-request", str(error))
        work = stacks.Setup(self._aws(settings, region, request.get("credentials")), progress,
                            poll_seconds=settings.setup_poll_seconds)
        try:
            if check_only:
                return protocol.ok_reply({"region": region, "problems": work.check()})
            outputs = work.run()
        except (stacks.SetupError, AwsError) as error:
            return protocol.error_reply("aws", f"setup of {region} failed: {error}",
                                        aws_code=getattr(error, "code", None))
        log.info("setup of %s complete: %s", region, outputs)
        return protocol.ok_reply({"region": region, "outputs": outputs})

    def create(self, request: dict[str, Any], peer: Peer) -> dict[str, Any]:
        settings = self.settings
        credentials = request.get("credentials")
        refusal = self._missing_credentials(request)
        if refusal:
            return refusal
        annex = dict(request["annex"])
        if credentials is None:
            annex.pop("bucket", None)  # with the daemon's identity, only the admin's bucket
        notices: list[str] = []
        try:
            region = settings.for_region(annex.get("region"))
            plan = build_plan(annex, owner_uid=peer.uid, settings=region,
                              lease_rate_minutes=settings.lease_rate_minutes, now=self.clock(),
                              pool=settings.pool, user_name=_user_name(peer.uid, annex))
            plan = costs.with_price_cap(plan, settings.caps)
            held = self.journal.live_row(plan.region, plan.annex_id)
            if request.get("dry_run"):  # the confirmation prompt: look, never act
                if held is not None and not _resumable(held, peer):
                    return _taken_reply(held, peer)
                estimate = costs.check(plan, settings.caps,
                                       lambda: self._live_instances(peer.uid))
                return protocol.ok_reply({"annex_id": plan.annex_id, "estimate": estimate},
                                         list(plan.notices))
            if held is not None:
                answer = self._name_held(held, peer, credentials, annex, notices)
                if answer is not None:
                    return answer
            costs.check(plan, settings.caps, lambda: self._live_instances(peer.uid))
            payload = self._payload(settings, plan, annex)
        except (InvalidRequest, KnobError) as error:
            return protocol.error_reply("invalid-request", str(error))
        try:
            request_id = self.journal.begin(plan, daemon_credentials=credentials is None)
        except NameTaken as taken:
            return _taken_reply(taken.row, peer)
        log.info("request %d: uid %d creates annex %s in %s (lease ends %d)",
                 request_id, peer.uid, plan.annex_id, plan.region, plan.lease_end)
        driver = self._driver(settings, plan, request_id, credentials, payload)
        return self._reply(driver, lambda: driver.forward(), notices + list(plan.notices))

    def _name_held(self, row: dict[str, Any], peer: Peer, credentials: dict[str, str] | None,
                   annex: dict[str, Any], notices: list[str]) -> dict[str, Any] | None:
        """The (region, name) is held by a live row: resume it, finish its rollback, or say
        no.  None: its rollback was finished and the new request may go ahead."""
        state = RequestState(row["state"])
        if not _resumable(row, peer):
            return _taken_reply(row, peer)
        plan = AnnexPlan.from_record(row["plan"])
        # Only a create still to finish needs the config tarball; a rollback does not.
        payload = self._payload(self.settings, plan, annex) \
            if state is RequestState.INTERRUPTED else None
        log.info("request %d: uid %d resumes %s annex %s", row["id"], peer.uid, state,
                 row["annex_id"])
        driver = self._driver(self.settings, plan, row["id"], credentials, payload)
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(row["created"]))
        if state is RequestState.ROLLBACK_INTERRUPTED:
            try:
                self._continue(driver, state)
            except steps.CreateFailed as error:
                return _failure_reply(error, [])
            except StateChanged:
                return _taken_reply(self.journal.request(row["id"]), peer)
            notices.append(f"first finished rolling back the failed request for annex "
                           f"{row['annex_id']!r} of {when}")
            return None
        try:
            return self._reply(driver, lambda: self._continue(driver, state), [
                f"resumed the interrupted request for annex {row['annex_id']!r} of {when}; "
                "its original settings apply"])
        except StateChanged:  # another request resumed it (or the backstop ended it) first
            return _taken_reply(self.journal.request(row["id"]), peer)

    def _reply(self, driver: steps.Driver, run: Callable[[], steps.Outputs | None],
               notices: list[str]) -> dict[str, Any]:
        plan = driver.plan
        try:
            outputs = run()
        except steps.CreateFailed as error:
            log.warning("request %d: annex %s failed at %s: %s",
                        driver.request_id, plan.annex_id, error.step, error.cause)
            return _failure_reply(error, notices)
        except steps.Paused as paused:
            log.info("request %d: annex %s paused before %s for shutdown",
                     driver.request_id, plan.annex_id, paused.step)
            return _paused_reply(plan, paused.step, notices)
        except AwsError as error:  # checking the lease before resuming: nothing changed
            return protocol.error_reply(
                "aws", f"cannot resume annex {plan.annex_id!r}: {error}; nothing was changed, "
                "run the same command again", aws_code=error.code,
                request_id=error.request_id, notices=notices)
        if outputs is None:
            why = self.journal.request(driver.request_id)["error"]
            return protocol.error_reply(
                "aws", f"annex {plan.annex_id!r} could not be finished ({why}); it was rolled "
                "back", notices=notices)
        result = {
            "annex_id": plan.annex_id,
            "type": plan.annex_type,
            "region": plan.region,
            "lease_end": plan.lease_end,
            "rule_arn": outputs["rule_arn"],
            "config_url": outputs["config_url"],
        }
        launched, more = plan.kind.reply(plan, outputs)
        result.update(launched)
        notices = notices + more
        log.info("request %d: annex %s is up: %s", driver.request_id, plan.annex_id, result)
        return protocol.ok_reply(result, notices)

    # -- start-up --------------------------------------------------------------------------

    def recover(self, workers: int = 8) -> None:
        """Drive every request a crash or shutdown left unfinished to a clean end if we can.

        No thread of this process drives any of them, so each is first parked in its
        direction (a rollback stays a rollback).  Those the daemon may act on with its own
        identity are then resumed, a few at a time: they belong to different annexes and do
        not interfere.  The others wait, parked, for their owners.
        """
        rows = self.journal.unfinished()
        for row in rows:
            state = RequestState(row["state"])
            if state in lifecycle.DRIVEN:
                self.journal.transition(row["id"], lifecycle.PARK[state])
        mine = [row for row in rows if self.may_recover(row)]
        for row in rows:
            if row not in mine:
                log.warning("request %d: annex %s in %s (uid %d) is parked; it resumes when "
                            "its owner runs the same condor_annex command again",
                            row["id"], row["annex_id"], row["region"], row["owner_uid"])
        if mine:
            with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
                list(pool.map(self._recover_one, [row["id"] for row in mine]))

    def _recover_one(self, request_id: int) -> None:
        row = self.journal.request(request_id)
        plan = AnnexPlan.from_record(row["plan"])
        log.info("request %d: recovering annex %s from state %s",
                 row["id"], plan.annex_id, row["state"])
        try:
            try:
                payload = self._payload(self.settings, plan, None)
            except InvalidRequest as error:  # the config step, if still to do, rolls back
                log.error("request %d: %s", row["id"], error)
                payload = None
            driver = self._driver(self.settings, plan, row["id"], None, payload)
            self._continue(driver, RequestState(row["state"]))
        except steps.CreateFailed as error:
            log.error("request %d: recovery of annex %s failed at %s: %s",
                      row["id"], plan.annex_id, error.step, error.cause)
        except steps.Paused:
            log.info("request %d: recovery of annex %s paused for shutdown",
                     row["id"], plan.annex_id)
        except Exception:  # one broken request must not stop the others' recovery
            log.exception("request %d: recovery of annex %s failed", row["id"], plan.annex_id)


def _resumable(row: dict[str, Any], peer: Peer) -> bool:
    """Whether the caller's repeat of the command resumes this live row (a parked request
    of theirs), rather than being refused."""
    return peer.may_act_on(row["owner_uid"]) and \
        RequestState(row["state"]) in lifecycle.PARKED


def _taken_reply(row: dict[str, Any], peer: Peer) -> dict[str, Any]:
    """Why a live row's (region, name) cannot be created again by this caller."""
    name, region = row["annex_id"], row["region"]
    state = RequestState(row["state"])
    if not peer.may_act_on(row["owner_uid"]):
        message = f"annex {name!r} in {region} belongs to another user; choose another name"
    elif state in lifecycle.DRIVEN:
        doing = "created" if state is RequestState.CREATING else "rolled back"
        message = f"annex {name!r} is being {doing} by another request"
    else:
        message = (f"annex {name!r} already exists in {region} ({state}); choose another "
                   "-annex-name, or end it first with -off")
    return protocol.error_reply("conflict", message)
