"""What the daemon does with one request from one authenticated local user, and at start-up.

``handle`` never raises: every failure becomes an error reply with one clear line, because a
request must never take the daemon down.  Credentials arrive in the request, are used for its
AWS calls, and are dropped with it: never logged, never journaled.  That is also why recovery
can finish by itself only the requests made with the daemon's own AWS identity; a request
made with a user's keys is parked as *interrupted* until that user repeats the command.
Either way nothing is unprotected meanwhile: the lease rule is in place before any instance.
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

from . import costs, operate, protocol, stacks, steps, tarball
from .aws import AnnexAws, AwsError
from .journal import AnnexBusy, Journal, Progress
from .knobs import DaemonSettings, KnobError
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
        return protocol.error_reply(
            "rollback-incomplete",
            f"{cause}; rolling back also failed, these may be left over: {leftovers}",
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
                 clock: Callable[[], float] = time.time):
        self._settings = settings
        self._settings_lock = threading.Lock()
        self.journal = journal
        self.clock = clock
        #: Set when the daemon is asked to stop: requests pause at their next step boundary.
        self.stopping = threading.Event()

    @property
    def settings(self) -> DaemonSettings:
        with self._settings_lock:
            return self._settings

    def reconfigure(self, settings: DaemonSettings) -> None:
        """Requests in flight keep the settings they started with."""
        with self._settings_lock:
            self._settings = settings

    # -- plumbing shared by requests and recovery ------------------------------------------

    def _aws(self, settings: DaemonSettings, region: str,
             credentials: dict[str, str] | None) -> AnnexAws:
        return AnnexAws(region=region, endpoints=settings.for_region(region).endpoints,
                        credentials=credentials, max_attempts=settings.aws_max_attempts,
                        timeout_seconds=settings.aws_timeout_seconds)

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
                            request_id, retry=retry, stop=self.stopping)

    def _drive(self, driver: steps.Driver, progress: Progress | None,
               state: str = "creating") -> steps.Outputs | None:
        """Finish a request: forward, or back when it was rolling back or its lease is over.

        Returns the outputs, or None when it was rolled back because of its state or lease.
        Raises CreateFailed or Paused like Driver.forward.
        """
        plan = driver.plan
        if progress is not None and (state == "rolling-back" or plan.lease_end <= self.clock()):
            reason = ("resuming an interrupted rollback" if state == "rolling-back"
                      else "the lease ended before the annex was complete")
            log.warning("annex %s: %s; rolling back", plan.annex_id, reason)
            driver.rollback_progress(progress, reason)
            return None
        return driver.forward(progress)

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
        """The annexes the caller may see: their own, or all for root and the daemon's user."""
        rows = self.journal.latest(None if peer.is_admin else peer.uid)
        return protocol.ok_reply({"annexes": [{
            "name": row["annex_id"],
            "owner": row["owner_uid"],
            "state": row["state"],
            "lease_end": AnnexPlan.from_record(row["plan"]).lease_end,
        } for row in rows]})

    def _live_instances(self, uid: int) -> int:
        """Instances the user's live annexes asked for (for ANNEX_MAX_INSTANCES)."""
        return sum(costs.capacity(AnnexPlan.from_record(row["plan"]))
                   for row in self.journal.live(uid))

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
            self.journal, lambda region, creds: self._aws(settings, region, creds), self.clock)

    def operate(self, command: str, request: dict[str, Any], peer: Peer) -> dict[str, Any]:
        """status / off / extend: on the caller's own annexes (root and the daemon: all)."""
        refusal = self._missing_credentials(request)
        if refusal:
            return refusal
        ops, creds, name = self.operations(), request.get("credentials"), request.get("name")
        try:
            if command == "status":
                return protocol.ok_reply({"annexes": ops.status(peer.uid, peer.is_admin, name,
                                                                creds)})
            if command == "off":
                return protocol.ok_reply(ops.off(peer.uid, peer.is_admin, name, creds))
            return protocol.ok_reply(ops.extend(peer.uid, peer.is_admin, name,
                                                request["lease_duration"], creds,
                                                self.settings.caps.max_lease_duration))
        except operate.OperationError as error:
            return protocol.error_reply(error.kind, str(error))
        except AwsError as error:
            return protocol.error_reply("aws", str(error), aws_code=error.code,
                                        request_id=error.request_id)

    def enforce_leases(self) -> None:
        """The daemon's lease backstop, run every ANNEXD_LEASE_CHECK_INTERVAL seconds."""
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
        try:
            region = settings.for_region(annex.get("region"))
            plan = build_plan(annex, owner_uid=peer.uid, settings=region,
                              lease_rate_minutes=settings.lease_rate_minutes, now=self.clock(),
                              pool=settings.pool, user_name=_user_name(peer.uid, annex))
            unfinished = self.journal.unfinished_for(plan.annex_id)
            if unfinished is not None:
                return self._resume(unfinished, peer, credentials, annex)
            estimate = costs.check(plan, settings.caps, self._live_instances(peer.uid))
            if request.get("dry_run"):
                return protocol.ok_reply({"annex_id": plan.annex_id, "estimate": estimate},
                                         list(plan.notices))
            payload = self._payload(settings, plan, annex)
        except (InvalidRequest, KnobError) as error:
            return protocol.error_reply("invalid-request", str(error))
        try:
            request_id = self.journal.begin(plan, daemon_credentials=credentials is None)
        except AnnexBusy:
            return protocol.error_reply(
                "conflict", f"annex {plan.annex_id!r} is being created by another request")
        log.info("request %d: uid %d creates annex %s (lease ends %d)",
                 request_id, peer.uid, plan.annex_id, plan.lease_end)
        driver = self._driver(settings, plan, request_id, credentials, payload)
        return self._reply(driver, None, "creating", list(plan.notices))

    def _resume(self, row: dict[str, Any], peer: Peer, credentials: dict[str, str] | None,
                annex: dict[str, Any]) -> dict[str, Any]:
        """The same annex again while an earlier request for it is unfinished."""
        annex_id = row["annex_id"]
        if not peer.may_act_on(row["owner_uid"]):
            return protocol.error_reply(
                "conflict", f"annex {annex_id!r} belongs to another user")
        if row["state"] != "interrupted":
            return protocol.error_reply(
                "conflict", f"annex {annex_id!r} is being created by another request")
        plan = AnnexPlan.from_record(row["plan"])
        payload = self._payload(self.settings, plan, annex)
        progress = self.journal.progress(row["id"])
        self.journal.set_state(row["id"], "creating")
        log.info("request %d: uid %d resumes interrupted annex %s", row["id"], peer.uid, annex_id)
        notices = [f"resumed the interrupted request for annex {annex_id!r} of "
                   f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(row['created']))}; "
                   "its original settings apply"]
        driver = self._driver(self.settings, plan, row["id"], credentials, payload)
        return self._reply(driver, progress, "interrupted", notices)

    def _reply(self, driver: steps.Driver, progress: Progress | None, state: str,
               notices: list[str]) -> dict[str, Any]:
        plan = driver.plan
        try:
            outputs = self._drive(driver, progress, state)
        except steps.CreateFailed as error:
            log.warning("request %d: annex %s failed at %s: %s",
                        driver.request_id, plan.annex_id, error.step, error.cause)
            return _failure_reply(error, notices)
        except steps.Paused as paused:
            log.info("request %d: annex %s paused before %s for shutdown",
                     driver.request_id, plan.annex_id, paused.step)
            return _paused_reply(plan, paused.step, notices)
        if outputs is None:
            return protocol.error_reply(
                "aws", f"the lease of annex {plan.annex_id!r} ended before it was complete; "
                "it was rolled back", notices=notices)
        result = {
            "annex_id": plan.annex_id,
            "type": plan.annex_type,
            "lease_end": plan.lease_end,
            "rule_arn": outputs["rule_arn"],
            "config_url": outputs["config_url"],
        }
        if plan.on_demand_request:
            result["instance_ids"] = outputs["instance_ids"]
            wanted = plan.on_demand_request["MaxCount"]
            if len(outputs["instance_ids"]) < wanted:
                notices.append(f"EC2 started only {len(outputs['instance_ids'])} of the "
                               f"{wanted} instances asked for")
        else:
            result["spot_fleet_request_id"] = outputs["spot_fleet_request_id"]
        log.info("request %d: annex %s is up: %s", driver.request_id, plan.annex_id, result)
        return protocol.ok_reply(result, notices)

    # -- start-up --------------------------------------------------------------------------

    def recover(self, workers: int = 8) -> None:
        """Drive every request a crash or shutdown left unfinished to a clean end if we can.

        Requests made with the daemon's own credentials are finished (or rolled back) now, a
        few at a time: they belong to different annexes and do not interfere.  Those made with
        a user's keys wait, parked as *interrupted*, for the user.
        """
        rows = self.journal.unfinished()
        for row in rows:
            if not row["daemon_credentials"]:
                self._park(row)
        mine = [row for row in rows if row["daemon_credentials"]]
        if mine:
            with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
                list(pool.map(self._recover_one, mine))

    def _park(self, row: dict[str, Any]) -> None:
        if row["state"] != "interrupted":
            self.journal.set_state(row["id"], "interrupted")
        log.warning("request %d: annex %s (uid %d) is interrupted; it resumes when its owner "
                    "runs the same condor_annex command again",
                    row["id"], row["annex_id"], row["owner_uid"])

    def _recover_one(self, row: dict[str, Any]) -> None:
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
            self._drive(driver, self.journal.progress(row["id"]), row["state"])
        except steps.CreateFailed as error:
            log.error("request %d: recovery of annex %s failed at %s: %s",
                      row["id"], plan.annex_id, error.step, error.cause)
        except steps.Paused:
            log.info("request %d: recovery of annex %s paused for shutdown",
                     row["id"], plan.annex_id)
        except Exception:  # one broken request must not stop the others' recovery
            log.exception("request %d: recovery of annex %s failed", row["id"], plan.annex_id)
