"""What the daemon does with one request from one authenticated local user.

``handle`` never raises: every failure becomes an error reply with one clear line, because a
request must never take the daemon down.  Credentials arrive in the request, are used for its
AWS calls, and are dropped with it: never logged, never journaled.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

from . import protocol, steps
from .aws import AnnexAws, AwsError
from .journal import AnnexBusy, Journal
from .knobs import DaemonSettings
from .plan import InvalidRequest, build_plan

log = logging.getLogger("annexd.service")


@dataclass(frozen=True)
class Peer:
    """Who is on the other end of the socket, from the kernel (SO_PEERCRED), not the client."""

    pid: int
    uid: int
    gid: int


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
    if error.step == "check" and getattr(cause, "code", "") == "ResourceNotFoundException":
        message = f"the lease function does not exist ({cause}); nothing was created"
    return protocol.error_reply(kind, message, aws_code=aws_code, request_id=request_id,
                                notices=notices)


class AnnexService:
    def __init__(self, settings: DaemonSettings, journal: Journal,
                 clock: Callable[[], float] = time.time):
        self._settings = settings
        self._settings_lock = threading.Lock()
        self.journal = journal
        self.clock = clock

    @property
    def settings(self) -> DaemonSettings:
        with self._settings_lock:
            return self._settings

    def reconfigure(self, settings: DaemonSettings) -> None:
        """Requests in flight keep the settings they started with."""
        with self._settings_lock:
            self._settings = settings

    def handle(self, message: Any, peer: Peer) -> dict[str, Any]:
        try:
            request = protocol.validate_request(message)
            if request["command"] == "ping":
                return protocol.ok_reply({"daemon": "condor_annexd", "uid": peer.uid})
            return self.create(request, peer)
        except protocol.ProtocolError as error:
            return protocol.error_reply("invalid-request", f"bad request: {error}")
        except Exception:  # the daemon outlives any request
            log.exception("internal error while serving uid %d", peer.uid)
            return protocol.error_reply("internal", "internal error in condor_annexd; "
                                        "see its log (ANNEXD_LOG)")

    def create(self, request: dict[str, Any], peer: Peer) -> dict[str, Any]:
        settings = self.settings
        credentials = request.get("credentials")
        if credentials is None and not settings.allow_daemon_credentials:
            return protocol.error_reply(
                "invalid-request",
                "no AWS credentials: pass -public-key-file and -secret-key-file, or set "
                "ANNEX_DEFAULT_ACCESS_KEY_FILE and ANNEX_DEFAULT_SECRET_KEY_FILE")
        try:
            plan = build_plan(request["annex"], owner_uid=peer.uid, settings=settings,
                              now=self.clock())
        except InvalidRequest as error:
            return protocol.error_reply("invalid-request", str(error))
        notices = list(plan.notices)
        aws = AnnexAws(region=settings.region, endpoints=settings.endpoints,
                       credentials=credentials, max_attempts=settings.aws_max_attempts)
        try:
            request_id = self.journal.begin(plan)
        except AnnexBusy:
            return protocol.error_reply(
                "conflict", f"annex {plan.annex_id!r} is being created by another request",
                notices=notices)
        log.info("request %d: uid %d creates annex %s (lease ends %d)",
                 request_id, peer.uid, plan.annex_id, plan.lease_end)
        try:
            outputs = steps.run(steps.CREATE_SPOT_FLEET, aws, plan, self.journal, request_id)
        except steps.CreateFailed as error:
            log.warning("request %d: annex %s failed at %s: %s",
                        request_id, plan.annex_id, error.step, error.cause)
            return _failure_reply(error, notices)
        log.info("request %d: annex %s is up: %s", request_id, plan.annex_id,
                 outputs["spot_fleet_request_id"])
        return protocol.ok_reply({
            "annex_id": plan.annex_id,
            "spot_fleet_request_id": outputs["spot_fleet_request_id"],
            "lease_end": plan.lease_end,
            "rule_arn": outputs["rule_arn"],
            "config_url": outputs["config_url"],
        }, notices)
