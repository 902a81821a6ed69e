"""What the daemon does with one request from one authenticated local user, and at start-up:
who may ask what, and which command path (:mod:`annexd.commands`) answers.

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

import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

from annexd.config import hints
from annexd.aws import identity
from annexd.rpc import protocol
from annexd.aws import AnnexAws, AwsError
from annexd.commands import (auto, backstop, copies, create, lease, off, renew, resume, setup,
                             status)
from annexd.commands.context import Caller, Context, OperationError
from annexd.state.journal import Journal
from annexd.config.knobs import DaemonSettings

log = logging.getLogger("annexd.rpc.service")


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

    @property
    def caller(self) -> Caller:
        return Caller(self.uid, self.is_admin)


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

    def context(self) -> Context:
        """What one request (or one start-up or backstop pass) may use, fixed as it starts."""
        with self._settings_lock:
            return Context(self._settings, self.journal, self.clock, self.identity,
                           self.stopping)

    def account_of(self, credentials: dict[str, str] | None) -> str:
        """The AWS account of ``credentials`` (None: botocore's own sources)."""
        settings = self.settings
        return AnnexAws(region=settings.region, endpoints=settings.home.endpoints,
                        credentials=credentials, max_attempts=2,
                        timeout_seconds=min(10.0, settings.aws_timeout_seconds)).account()

    # -- requests --------------------------------------------------------------------------

    def handle(self, message: Any, peer: Peer,
               progress: Callable[[str], None] = lambda text: None) -> dict[str, Any]:
        try:
            request = protocol.validate_request(message)
            return self._dispatch(request, peer, progress)
        except protocol.ProtocolError as error:
            return protocol.error_reply("invalid-request", f"bad request: {error}")
        except Exception:  # the daemon outlives any request
            log.exception("internal error while serving uid %d", peer.uid)
            return protocol.error_reply("internal", "internal error in condor_annexd; "
                                        "see its log (ANNEXD_LOG)")

    def _dispatch(self, request: dict[str, Any], peer: Peer,
                  progress: Callable[[str], None]) -> dict[str, Any]:
        command = request["command"]
        ctx, who = self.context(), peer.caller
        if command == "ping":
            return protocol.ok_reply({"daemon": "condor_annexd", "uid": peer.uid})
        if command == "list":
            return protocol.ok_reply({"annexes": status.list_annexes(ctx, who)})
        refusal = None if command == "status" and who.is_admin else \
            self._missing_credentials(ctx, request)  # root lists every annex without keys
        if refusal:
            return refusal
        if command in ("setup", "check-setup"):
            return self._setup_refusal(command, request, who) or \
                setup.setup(ctx, request, progress, check_only=command == "check-setup")
        # create and -off tell a user at a terminal each step as it starts
        report = progress if request.get("progress") else (lambda text: None)
        if command in ("status", "off", "extend"):
            return self._operate(ctx, command, request, who, report)
        return create.create(ctx, request, who, report)

    @staticmethod
    def _missing_credentials(ctx: Context, request: dict[str, Any]) -> dict[str, Any] | None:
        """Users act with their own AWS keys unless the admin lets the daemon's be used."""
        if request.get("credentials") is None and not ctx.settings.allow_daemon_credentials:
            return protocol.error_reply("invalid-request", hints.no_credentials(request))
        return None

    @staticmethod
    def _setup_refusal(command: str, request: dict[str, Any],
                       who: Caller) -> dict[str, Any] | None:
        """-setup makes stacks in the account that pays: with the daemon's own identity only
        for root and the daemon's user (issue 23 finding 4); anyone else brings setup keys.
        -check-setup only reads, and stays open to all."""
        if command == "setup" and request.get("credentials") is None and not who.is_admin:
            return protocol.error_reply(
                "invalid-request", f"uid {who.uid} may not run -setup with condor_annexd's own "
                "AWS identity (only root and the daemon's user may); give the setup keys: "
                "condor_annex -setup ACCESS_KEY_FILE SECRET_KEY_FILE")
        return None

    @staticmethod
    def _operate(ctx: Context, command: str, request: dict[str, Any], who: Caller,
                 report: Callable[[str], None]) -> dict[str, Any]:
        """status / off / extend: on the caller's own annexes (root and the daemon: all)."""
        creds = request.get("credentials")
        name, region = request.get("name"), request.get("region")
        try:
            if command == "status":
                annexes = status.status(ctx, who, name, region, creds,
                                        bool(request.get("instance_ids")))
                return protocol.ok_reply({"annexes": annexes},
                                        status.unknown_counts(ctx, annexes, creds))
            if command == "off":
                return protocol.ok_reply(off.off(ctx, who, name, region, creds, report))
            return protocol.ok_reply(lease.extend(ctx, who, name, region,
                                                  request["lease_duration"], creds))
        except OperationError as error:
            return protocol.error_reply(error.kind, str(error))
        except AwsError as error:
            return protocol.error_reply("aws", str(error), aws_code=error.code,
                                        request_id=error.request_id)

    # -- the daemon's own work ---------------------------------------------------------------

    def enforce_leases(self) -> None:
        """The daemon's lease backstop, run every ANNEXD_LEASE_CHECK_INTERVAL seconds."""
        if not self.identity.available:
            return
        try:
            backstop.enforce_expired(self.context())
        except Exception:  # the backstop must keep running
            log.exception("lease backstop failed")

    def steer_auto(self) -> None:
        """Size the auto annexes, run every ANNEX_DEMAND_INTERVAL seconds."""
        if not self.identity.available:
            return
        try:
            auto.steer_all(self.context())
        except Exception:  # the loop must keep running
            log.exception("auto annexes: cycle failed")

    def renew_tokens(self) -> None:
        """Renew live annexes' tokens at half their life (annexd.commands.renew)."""
        if not self.identity.available:
            return
        try:
            renew.renew_due(self.context())
        except Exception:  # renewal must keep running
            log.exception("token renewal failed")
        try:  # the new instances' copies of their annex's config (annexd.commands.copies)
            copies.copy_due(self.context())
        except Exception:
            log.exception("copying the annexes' config for their instances failed")

    def recover(self, workers: int = 8) -> None:
        """At start-up: drive every request a crash or shutdown left unfinished (see
        :func:`annexd.commands.resume.recover`)."""
        resume.recover(self.context(), workers)
