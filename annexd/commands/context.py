"""What every command path shares: the settings a request started with, the journal, the
daemon's identity, and the plumbing built from them (AWS clients, the create driver, the
config tarball).

A :class:`Context` is a snapshot taken when a request arrives: a reconfiguration meanwhile
never changes a request in flight.
"""
from __future__ import annotations

import base64
import binascii
import pwd
import threading
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, TypeVar

from annexd.aws import identity
from annexd.process import privileges
from annexd.instance_config import idtoken
from annexd.launch import steps
from annexd.instance_config import tarball
from annexd.aws import AnnexAws, AwsError
from annexd.state.journal import Journal, StateChanged
from annexd.config.knobs import DaemonSettings
from annexd.state.lifecycle import RequestState
from annexd.launch.plan import AnnexPlan, InvalidRequest

T = TypeVar("T")


class OperationError(Exception):
    """The operation cannot be done; ``kind`` is the protocol error kind."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class Caller:
    """Who asks: the uid the kernel named, and whether it may act on every annex."""

    uid: int
    is_admin: bool

    def sees(self, row: dict[str, Any]) -> bool:
        return self.may_act_on(row["owner_uid"])

    def may_act_on(self, owner_uid: int) -> bool:
        return self.is_admin or self.uid == owner_uid


def user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _read(path: str | None) -> bytes:
    if path is None:
        raise FileNotFoundError(2, "not configured", "(unset)")
    with privileges.as_root():  # the admin's pool password or token: root's files
        handle = open(path, "rb")
    with handle:
        return handle.read()


@dataclass(frozen=True)
class Context:
    settings: DaemonSettings
    journal: Journal
    clock: Callable[[], float]
    identity: identity.DaemonIdentity
    #: Set when the daemon is asked to stop: requests pause at their next step boundary.
    stopping: threading.Event

    def aws(self, region: str, credentials: dict[str, str] | None) -> AnnexAws:
        """Clients for ``region``: the user's ``credentials``, else the daemon's identity."""
        settings = self.settings
        return AnnexAws(region=region, endpoints=settings.for_region(region).endpoints,
                        credentials=credentials or self.identity.credentials,
                        max_attempts=settings.aws_max_attempts,
                        timeout_seconds=settings.aws_timeout_seconds,
                        function_check_seconds=settings.function_check_seconds)

    def until_stopping(self, items: Iterable[T]) -> Iterator[T]:
        """``items`` one by one until the daemon is asked to stop: a periodic pass (backstop,
        renewal, copies, auto annexes) finishes the annex it is on and takes no other; the
        next start's pass goes on (annexd.process.main.Passes waits for it)."""
        for item in items:
            if self.stopping.is_set():
                return
            yield item

    def may_recover(self, row: dict[str, Any], plan: AnnexPlan | None = None) -> bool:
        """Whether the daemon can drive this request with its own identity: only in the
        account that pays for it (fixed in its row at create).  ``plan``: unused, kept for
        callers that have it."""
        return self.identity.available and self.identity.account is not None and \
            payer_account(row) == self.identity.account

    def payer_of(self, region: str, credentials: dict[str, str] | None) -> identity.Payer:
        """Whose account ``credentials`` (None: the daemon's identity) act in: STS, asked
        once per key pair for the daemon's life (identity.ACCOUNTS).  Raises AwsError when
        STS cannot say."""
        if credentials is None:  # the daemon's: its source may change on reconfiguration
            account, _, user_id = self.aws(region, None).caller()
            return identity.Payer(account, "", user_id)
        account, principal, user_id = identity.ACCOUNTS.of(
            credentials, lambda: self.aws(region, credentials).caller())
        return identity.Payer(account, principal, user_id)

    def check_payer(self, row: dict[str, Any], credentials: dict[str, str] | None) -> None:
        """Refuse, changing nothing, to act on the row's annex with keys of another account
        than the one that pays for it (see :func:`payer_mismatch`)."""
        wrong = self.payer_mismatch(row, credentials)
        if wrong:
            raise OperationError("invalid-request", f"{wrong}: use keys of that account; "
                                 "nothing was changed")

    def payer_mismatch(self, row: dict[str, Any],
                       credentials: dict[str, str] | None) -> str:
        """Why ``credentials`` (None: the daemon's identity) may not act on the row's annex,
        or "": an annex lives in the account that paid for it at create, and any call made
        with another account's keys would see nothing of it, end nothing, or make things
        there."""
        wanted = payer_account(row)
        try:
            have = self.identity.account if credentials is None and self.identity.account \
                else self.payer_of(row["region"], credentials).account
        except AwsError as error:
            return (f"cannot tell which AWS account these keys are for ({error}); annex "
                    f"{row['annex_id']!r} lives in account {identity.short(wanted)}")
        if not wanted or have == wanted:
            return ""
        whose = "condor_annexd's own AWS identity is" if credentials is None else \
            "these keys are"
        return (f"annex {row['annex_id']!r} lives in account {identity.short(wanted)}; "
                f"{whose} for {identity.short(have)}")

    def payload(self, plan: AnnexPlan, annex: dict[str, Any] | None,
                now: float | None = None) -> bytes | None:
        """The annex's config tarball, a minted token made at ``now`` (default: the clock);
        None when only the (gone) request could supply it.

        Raises InvalidRequest if the daemon's own pool secret cannot be read.
        """
        now = self.clock() if now is None else now
        if annex is None and plan.needs_request_material:
            return None
        annex = annex or {}
        pool = self.settings.pool
        try:
            token = annex.get("idtoken") or (_read(pool.idtoken_file).decode().strip()
                                             if plan.pool_auth == "idtoken" else None)
            if plan.pool_auth == "minted":
                token = self.mint(plan, plan.lease_end, now)
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

    def mint(self, plan: AnnexPlan, lease_end: int, now: float | None = None) -> str:
        """The annex's own IDTOKEN, made at ``now`` (default: the clock), valid for
        ANNEX_TOKEN_LIFETIME and never past ``lease_end`` plus a grace; InvalidRequest,
        saying what to configure, when the signing key cannot be used."""
        token_settings = self.settings.pool.token
        try:
            if token_settings is None:
                raise idtoken.TokenKeyError("no token signing key is configured")
            return idtoken.for_annex(token_settings, plan.token_identity, plan.token_id,
                                     lease_end, self.clock() if now is None else now,
                                     self.settings.pool.token_lifetime)
        except idtoken.TokenKeyError as error:
            raise InvalidRequest(
                f"annex instances could not authenticate to the pool: {error}. "
                "Make that key readable by condor_annexd's user (the central manager must "
                "hold the same key), or name another with ANNEX_TOKEN_SIGNING_KEY (a file in "
                "SEC_PASSWORD_DIRECTORY); or pass -idtoken-file") from None

    def driver(self, plan: AnnexPlan, request_id: int, credentials: dict[str, str] | None,
               payload: bytes | None,
               report: Callable[[str], None] = lambda text: None,
               on_disk: bool = True) -> steps.Driver:
        """``on_disk=False``: a new request, committed but not yet forced to disk."""
        settings = self.settings
        retry = steps.RetryPolicy(settings.step_attempts, settings.retry_base_seconds,
                                  settings.retry_max_seconds)
        return steps.Driver(steps.create_sequence(plan, payload),
                            self.aws(plan.region, credentials), plan, self.journal,
                            request_id, retry=retry, stop=self.stopping, clock=self.clock,
                            report=report, on_disk=on_disk)

    def live(self, who: Caller, name: str, region: str | None) -> dict[str, Any] | None:
        """The caller's one live annex of this name (in ``region``, if given)."""
        rows = [row for row in self.journal.live_rows(annex_id=name, region=region)
                if who.sees(row)]
        if len(rows) > 1:
            regions = ", ".join(row["region"] for row in rows)
            raise OperationError("invalid-request", f"you have annexes named {name!r} in "
                                 f"{regions}; say which with -aws-region")
        return rows[0] if rows else None


def payer_account(row: dict[str, Any]) -> str:
    """The account that pays for the row's annex: fixed at create; for a row of an earlier
    release (the upgrade fills it), its lease function's account."""
    if row.get("payer_account"):
        return str(row["payer_account"])
    parts = AnnexPlan.from_record(row["plan"]).lease_function_arn.split(":")
    return parts[4] if len(parts) > 4 else ""


def unknown(name: str) -> OperationError:
    return OperationError("invalid-request", f"you have no annex named {name!r}")


#: What another operation is doing to an annex, by the state its claim wrote.
DOING = {
    RequestState.CREATING: "is being created by another request",
    RequestState.ROLLING_BACK: "is being rolled back by another request",
    RequestState.EXTENDING: "is having its lease or its size changed by another request",
    RequestState.ENDING: "is being turned off",
    RequestState.ENDING_INTERRUPTED: "was being turned off when that stopped half-way; run "
                                     "condor_annex -off again to finish it",
}


class Moved(OperationError):
    """The row was written by another operation after it was read, and is back in the state
    it was read in (``active -> extending -> active``): what was decided from the old read
    may be wrong now.  The operation reads the row again and decides again."""


def busy(name: str, state: RequestState | str) -> OperationError:
    """The answer of an operation that lost its claim on the annex (or never had a chance)."""
    doing = DOING.get(RequestState(state), f"is {state}")
    return OperationError("conflict", f"annex {name!r} {doing}")


def claim(journal: Journal, row: dict[str, Any], new: RequestState, **changes: Any) -> None:
    """Move the row from the state and version it was read in to ``new``, in one
    compare-and-set: the claim every operation makes before its first AWS call.  Raises
    :func:`busy`'s error if another operation wrote the row first -- even one that put it
    back in the same state (a lease change: ``active -> extending -> active``)."""
    try:
        journal.transition(row["id"], new, expect={RequestState(row["state"])},
                           expect_version=row.get("version"), **changes)
    except StateChanged as changed:
        if changed.state == row["state"]:  # written and put back meanwhile: decide again
            raise Moved("conflict", f"annex {row['annex_id']!r} was changed by another "
                        "request while this one was deciding; run the command again") from None
        raise busy(row["annex_id"], changed.state) from None
