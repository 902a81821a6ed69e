"""The daemon's durable journal: SQLite in WAL mode, one row per request, one per step event.

Each write is a committed transaction, in order; a create commits a step's *done* together
with the next step's *started* (or with its last state change), one commit where there were
two.  Only what exactly-once needs is forced to disk (``synchronous=FULL``, one fsync): the
accepted request with its plan, which holds the ClientToken, before any AWS call that changes
anything (a new create's is forced with its check step's *started*, on the journal's own
thread while the check's look-ups run: :meth:`Journal.record_steps_soon`); the launch step's
*started*, before the launch call; a launch added to a live annex (``added_launches``: the
same name again), before its call; and lease-end changes.  Every other event is
committed with ``synchronous=NORMAL``: in WAL mode a power loss may forget the last of them,
never reorder them, and the next forced commit makes all earlier ones durable too.  What such
a loss can forget is recovered from AWS: the lease and config steps are idempotent puts; a
resumed create knows its own lease rule by the ClientToken in the rule's description; and the
launch step, journaled durably as started, looks for what it launched by ClientToken before
launching again.  (A process crash loses nothing: a committed transaction survives it either
way.)
Secrets never enter the journal: the plan has none, and credentials are not stored.

An annex is identified by (region, name).  A *live* row (see :mod:`annexd.state.lifecycle`) owns its
(region, name): the database itself refuses a second one.  Every state change goes through
:meth:`Journal.transition`, which checks it against the lifecycle's table.
"""
from __future__ import annotations

import concurrent.futures
import contextlib
import json
import logging
import os
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Sequence

from annexd.state import lifecycle
from annexd.state import upgrade
from annexd.state.lifecycle import RequestState
from annexd.launch.plan import AnnexPlan

log = logging.getLogger("annexd.state.journal")


def _in(states: Iterable[RequestState]) -> str:
    return "(" + ", ".join(f"'{state.value}'" for state in sorted(states)) + ")"


LIVE_SQL = _in(lifecycle.LIVE)
#: How long an auto annex's new instance may be missing from EC2's listing.
LISTING_LAG_SECONDS = 60

SCHEMA = """
CREATE TABLE IF NOT EXISTS requests (
    id INTEGER PRIMARY KEY,
    annex_id TEXT NOT NULL,
    owner_uid INTEGER NOT NULL,
    state TEXT NOT NULL,
    daemon_credentials INTEGER NOT NULL DEFAULT 0,
    lease_end INTEGER NOT NULL DEFAULT 0,
    plan TEXT NOT NULL,
    outputs TEXT NOT NULL DEFAULT '{}',
    error TEXT,
    created REAL NOT NULL,
    updated REAL NOT NULL,
    region TEXT NOT NULL DEFAULT '',
    version INTEGER NOT NULL DEFAULT 0,
    payer_account TEXT NOT NULL DEFAULT '',
    payer_principal TEXT NOT NULL DEFAULT '',
    token_minted REAL NOT NULL DEFAULT 0,
    lease_intent INTEGER
);
CREATE TABLE IF NOT EXISTS step_events (
    request_id INTEGER NOT NULL REFERENCES requests(id),
    step TEXT NOT NULL,
    event TEXT NOT NULL,
    detail TEXT,
    at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS step_events_of_request ON step_events(request_id);
CREATE TABLE IF NOT EXISTS auto_orders (
    request_id INTEGER NOT NULL REFERENCES requests(id),
    number INTEGER NOT NULL,
    client_token TEXT NOT NULL,
    instance_type TEXT NOT NULL,
    count INTEGER NOT NULL,
    hourly REAL,
    why TEXT NOT NULL,
    state TEXT NOT NULL,
    instance_ids TEXT NOT NULL DEFAULT '[]',
    at REAL NOT NULL,
    PRIMARY KEY (request_id, number)
);
CREATE TABLE IF NOT EXISTS auto_instances (
    request_id INTEGER NOT NULL REFERENCES requests(id),
    instance_id TEXT NOT NULL,
    hourly REAL,
    since REAL NOT NULL,
    until REAL,
    PRIMARY KEY (request_id, instance_id)
);
CREATE TABLE IF NOT EXISTS added_launches (
    request_id INTEGER NOT NULL REFERENCES requests(id),
    number INTEGER NOT NULL,
    client_token TEXT NOT NULL,
    launch_request TEXT NOT NULL,
    state TEXT NOT NULL,
    outputs TEXT NOT NULL DEFAULT '{}',
    error TEXT,
    at REAL NOT NULL,
    PRIMARY KEY (request_id, number)
);
CREATE TABLE IF NOT EXISTS auto_status (
    request_id INTEGER PRIMARY KEY REFERENCES requests(id),
    last_demand REAL,
    report TEXT NOT NULL DEFAULT '{}',
    at REAL NOT NULL
);
"""

#: One live row per (region, name); the upgrade (annexd.state.upgrade) rebuilds it whenever its
#: definition changes (another set of live states), and drops the names earlier releases gave it.
LIVE_INDEX_NAME = "one_live_row_per_annex_v3"
LIVE_INDEX = (f"CREATE UNIQUE INDEX IF NOT EXISTS {LIVE_INDEX_NAME} "
              f"ON requests(region, annex_id) WHERE state IN {LIVE_SQL}")


@dataclass
class Progress:
    """Where a request stands: steps started, finished (with their outputs), and undone."""

    done: dict[str, dict[str, Any]] = field(default_factory=dict)
    started: set[str] = field(default_factory=set)
    undone: set[str] = field(default_factory=set)

    def outputs(self) -> dict[str, Any]:
        merged: dict[str, Any] = {}
        for name, produced in self.done.items():
            if name not in self.undone:
                merged.update(produced)
        return merged

    def touched(self) -> set[str]:
        """Steps that may have changed something in AWS and have not been undone."""
        return (self.started | set(self.done)) - self.undone


#: One step event, as :meth:`Journal.step_event` takes it: (step, event, detail).
StepEvent = tuple[str, str, Any]


class NameTaken(Exception):
    """A live row already holds this (region, name)."""

    def __init__(self, row: dict[str, Any]):
        super().__init__(row["annex_id"])
        self.row = row


class StateChanged(Exception):
    """The row was not in an expected state: another request or the backstop got there
    first.  A benign race, unlike an illegal transition."""

    def __init__(self, state: str):
        super().__init__(state)
        self.state = state


#: ``lease_intent`` as it was (transition's default): not written.
KEEP: Any = object()
#: ``lease_intent`` of a change cut short whose end an earlier release did not record
#: (its ``lease_unsettled`` flag): AWS's rule says what is in force all the same.
INTENT_UNRECORDED = upgrade.INTENT_UNRECORDED


class Journal:
    def __init__(self, path: str):
        directory = os.path.dirname(os.path.abspath(path))
        os.makedirs(directory, mode=0o700, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        os.close(fd)
        os.chmod(path, 0o600)
        self._lock = threading.Lock()
        #: The thread that forces new requests to disk (record_steps_soon), made on first use.
        self._sync: concurrent.futures.ThreadPoolExecutor | None = None
        self._sync_lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)
        self._migrate()

    def _migrate(self) -> None:
        """A journal of any earlier release opens: see :mod:`annexd.state.upgrade`."""
        for done in upgrade.upgrade(self._db, SCHEMA, LIVE_INDEX):
            log.warning("journal upgrade: %s", done)

    def _write(self, sql: str, args: tuple[Any, ...], durable: bool = False) -> int:
        with self._lock, self._durability(durable):
            return self._db.execute(sql, args).lastrowid

    @contextlib.contextmanager
    def _durability(self, durable: bool) -> Iterator[None]:
        """Force this commit (and so every earlier one) to disk; the caller holds the lock."""
        if not durable:
            yield
            return
        self._db.execute("PRAGMA synchronous=FULL")
        try:
            yield
        finally:
            self._db.execute("PRAGMA synchronous=NORMAL")

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        """One transaction of several statements (the connection otherwise commits each one
        by itself); the caller holds the lock."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def _insert_events(self, request_id: int, events: Sequence[StepEvent]) -> None:
        """The caller holds the lock."""
        now = time.time()
        self._db.executemany(
            "INSERT INTO step_events (request_id, step, event, detail, at)"
            " VALUES (?, ?, ?, ?, ?)",
            [(request_id, step, event, json.dumps(detail), now)
             for step, event, detail in events])

    def _rows(self, sql: str, args: Sequence[Any] = ()) -> list[dict[str, Any]]:
        with self._lock:
            cursor = self._db.execute(sql, tuple(args))
            names = [column[0] for column in cursor.description]
            return [dict(zip(names, row)) for row in cursor.fetchall()]

    # -- writes ----------------------------------------------------------------------------

    def begin(self, plan: AnnexPlan, *, daemon_credentials: bool, durable: bool = True,
              payer: tuple[str, str] = ("", ""), token_minted: float = 0) -> int:
        """Record an accepted request as *creating*; raises NameTaken if a live row holds
        its (region, name).  ``durable=False``: committed, not yet forced to disk -- the
        caller forces it (:meth:`record_steps_soon`) before any call that changes AWS.
        ``payer``: (account, principal ARN) of the keys that pay, fixed for the annex's life;
        ``token_minted``: when the token in its config object was minted (without a minted
        token: when the object was written), for its renewal (annexd.commands.renew)."""
        now = time.time()
        with self._lock, self._durability(durable):
            try:
                return self._db.execute(
                    "INSERT INTO requests (annex_id, region, owner_uid, state,"
                    " daemon_credentials, lease_end, plan, created, updated, payer_account,"
                    " payer_principal, token_minted)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (plan.annex_id, plan.region, plan.owner_uid, RequestState.CREATING.value,
                     int(daemon_credentials), plan.lease_end, plan.to_record(), now,
                     now, payer[0], payer[1], token_minted)).lastrowid
            except sqlite3.IntegrityError:
                pass
        row = self.live_row(plan.region, plan.annex_id)
        if row is None:  # ended between the insert and the look-up: try once more
            return self.begin(plan, daemon_credentials=daemon_credentials, durable=durable,
                              payer=payer, token_minted=token_minted)
        raise NameTaken(row)

    def transition(self, request_id: int, new: RequestState, *,
                   outputs: dict[str, Any] | None = None, error: str | None = None,
                   lease_end: int | None = None,
                   lease_intent: int | None = KEEP,
                   expect: Iterable[RequestState] | None = None,
                   expect_version: int | None = None,
                   token_minted: float | None = None,
                   events: Sequence[StepEvent] = (), durable: bool = False) -> None:
        """Change the request's state, if the lifecycle allows it (else IllegalTransition).

        ``expect``: change it only from one of these states, atomically; else StateChanged.
        ``expect_version``: only if the row was not written since it was read at that
        version (every write moves it, so ``active -> extending -> active`` is a change too,
        which comparing states alone would miss); else StateChanged.
        ``lease_intent``: the lease end a lease change sets out to put in force, recorded
        before its first AWS call; None once the row's ``lease_end`` is what AWS holds.
        While it is set, ``lease_end`` may differ from AWS's (a change cut short): the rule's
        Input is the truth, read by whoever acts next -- never a guess from either end.
        ``events``: step events recorded first, in the same commit -- and recorded all the
        same if the change is refused: what happened in AWS is never lost with it.
        ``token_minted``: when the token now in the annex's config object was minted.
        ``durable``: on disk when this returns (see the module).
        """
        with self._lock, self._durability(durable):
            if not events:
                self._transition(request_id, new, outputs=outputs, error=error,
                                 lease_end=lease_end, lease_intent=lease_intent,
                                 expect=expect, expect_version=expect_version,
                                 token_minted=token_minted)
                return
            refused: Exception | None = None
            with self._transaction():
                self._insert_events(request_id, events)
                try:
                    self._transition(request_id, new, outputs=outputs, error=error,
                                     lease_end=lease_end, lease_intent=lease_intent,
                                     expect=expect, expect_version=expect_version,
                                     token_minted=token_minted)
                except (StateChanged, lifecycle.IllegalTransition) as refusal:
                    refused = refusal  # the events are committed all the same
            if refused is not None:
                raise refused

    def _transition(self, request_id: int, new: RequestState, *,
                    outputs: dict[str, Any] | None, error: str | None, lease_end: int | None,
                    expect: Iterable[RequestState] | None, expect_version: int | None,
                    lease_intent: int | None = KEEP,
                    token_minted: float | None = None) -> None:
        """:meth:`transition`, the lock held."""
        (current, version) = self._db.execute(
            "SELECT state, version FROM requests WHERE id = ?", (request_id,)).fetchone()
        if expect is not None and RequestState(current) not in set(expect):
            raise StateChanged(current)
        if expect_version is not None and version != expect_version:
            raise StateChanged(current)
        try:
            lifecycle.check(current, new)
        except lifecycle.IllegalTransition:
            log.error("BUG: request %d: %s -> %s refused", request_id, current, new)
            raise
        self._db.execute(
            "UPDATE requests SET state = ?, outputs = COALESCE(?, outputs),"
            " error = COALESCE(?, error), lease_end = COALESCE(?, lease_end), updated = ?,"
            " lease_intent = CASE WHEN ? THEN lease_intent ELSE ? END,"
            " token_minted = COALESCE(?, token_minted), version = version + 1"
            " WHERE id = ?",
            (RequestState(new).value, None if outputs is None else json.dumps(outputs),
             error, lease_end, time.time(), lease_intent is KEEP,
             None if lease_intent is KEEP else lease_intent, token_minted, request_id))

    def settle_ended(self, request_id: int, version: int) -> None:
        """Record that the annex ended without us (its lease function ended it): the row goes
        through ``ending`` to ``ended`` in one transaction, only if it was not written since
        it was read at ``version`` (else StateChanged).  No AWS call goes with it."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._transition(request_id, RequestState.ENDING, outputs=None, error=None,
                                 lease_end=None, expect=lifecycle.ENDABLE,
                                 expect_version=version)
                self._transition(request_id, RequestState.ENDED, outputs=None, error=None,
                                 lease_end=None, expect={RequestState.ENDING},
                                 expect_version=None)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def step_event(self, request_id: int, step: str, event: str, detail: Any = None, *,
                   durable: bool = False) -> None:
        """Record a step event; ``durable``: on disk when this returns (see the module)."""
        self.record_steps(request_id, [(step, event, detail)], durable=durable)

    def record_steps(self, request_id: int, events: Sequence[StepEvent], *,
                     durable: bool = False) -> None:
        """Record step events, in order, in one commit (a step's *done* and the next step's
        *started*: one commit, not two); ``durable``: as :meth:`step_event`."""
        if not events:
            return
        with self._lock, self._durability(durable):
            if len(events) == 1:  # one statement: its own transaction
                self._insert_events(request_id, events)
                return
            with self._transaction():
                self._insert_events(request_id, events)

    def record_steps_soon(self, request_id: int,
                          events: Sequence[StepEvent]) -> concurrent.futures.Future:
        """:meth:`record_steps`, forced to disk, on the journal's own thread: the forced
        commit (an fsync, which also makes every earlier commit durable) is waited for there,
        while the caller goes on with calls that change nothing.  The caller waits for the
        returned future before anything that needs it on disk (its ``result()`` raises the
        journal's failure, if it failed)."""
        with self._sync_lock:
            if self._sync is None:
                self._sync = concurrent.futures.ThreadPoolExecutor(
                    max_workers=1, thread_name_prefix="journal-sync")
            return self._sync.submit(self.record_steps, request_id, events, durable=True)

    def settle_lease(self, request_id: int, version: int, lease_end: int) -> None:
        """Take the lease end AWS holds (the rule's Input) as the row's, and forget the
        intent of a change cut short, if the row was not written since it was read at
        ``version`` (else StateChanged).  Forced to disk, as every lease-end change."""
        with self._lock, self._durability(True):
            (state, now_version) = self._db.execute(
                "SELECT state, version FROM requests WHERE id = ?", (request_id,)).fetchone()
            if now_version != version:
                raise StateChanged(state)
            self._db.execute("UPDATE requests SET lease_end = ?, lease_intent = NULL,"
                             " updated = ?, version = version + 1 WHERE id = ?",
                             (lease_end, time.time(), request_id))

    def set_lease_end(self, request_id: int, lease_end: int) -> None:
        self._write("UPDATE requests SET lease_end = ?, updated = ?, version = version + 1"
                    " WHERE id = ?",
                    (lease_end, time.time(), request_id), durable=True)

    # -- reads -----------------------------------------------------------------------------

    def request(self, request_id: int) -> dict[str, Any]:
        return self._rows("SELECT * FROM requests WHERE id = ?", (request_id,))[0]

    def unfinished(self) -> list[dict[str, Any]]:
        """Requests a crash or a shutdown left before their end, oldest first."""
        return self._rows(f"SELECT * FROM requests WHERE state IN {_in(lifecycle.UNFINISHED)}"
                          " ORDER BY id")

    def live_row(self, region: str, annex_id: str) -> dict[str, Any] | None:
        """The one live row holding (region, name), whoever owns it."""
        rows = self._rows(f"SELECT * FROM requests WHERE region = ? AND annex_id = ?"
                          f" AND state IN {LIVE_SQL}", (region, annex_id))
        return rows[0] if rows else None

    def live_rows(self, *, owner_uid: int | None = None, annex_id: str | None = None,
                  region: str | None = None) -> list[dict[str, Any]]:
        """Every live row (of one owner, name, region when given), by name then region."""
        where, args = [f"state IN {LIVE_SQL}"], []
        for column, value in (("owner_uid", owner_uid), ("annex_id", annex_id),
                              ("region", region)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        return self._rows(f"SELECT * FROM requests WHERE {' AND '.join(where)}"
                          " ORDER BY annex_id, region", args)

    def last_final(self, owner_uid: int, annex_id: str,
                   region: str | None = None) -> dict[str, Any] | None:
        """The owner's newest finished row for this name: history, never a handle on AWS."""
        rows = self._rows(
            f"SELECT * FROM requests WHERE owner_uid = ? AND annex_id = ?"
            f" AND state IN {_in(lifecycle.FINAL)}"
            + (" AND region = ?" if region else "") + " ORDER BY id DESC LIMIT 1",
            (owner_uid, annex_id, *([region] if region else [])))
        return rows[0] if rows else None

    def quarantined(self, *, owner_uid: int | None = None,
                    annex_id: str | None = None) -> list[dict[str, Any]]:
        """Rows the upgrade set aside (see :mod:`annexd.state.upgrade`), as they were written,
        each with its ``quarantine_reason``, oldest first."""
        found = []
        for held in self._rows("SELECT reason, request FROM quarantine ORDER BY rowid"):
            row = json.loads(held["request"])
            if (owner_uid is None or row.get("owner_uid") == owner_uid) and \
                    (annex_id is None or row.get("annex_id") == annex_id):
                found.append({**row, "quarantine_reason": held["reason"]})
        return found

    def expired(self, now: float) -> list[dict[str, Any]]:
        """Live rows nobody is driving whose recorded lease has ended, and teardowns left
        half-way: the backstop's work."""
        return [row for row in self.live_rows() if row["state"] in lifecycle.ENDABLE and (
            row["lease_end"] < now or row["state"] == RequestState.ENDING_INTERRUPTED
            or row["lease_intent"] is not None)]

    def progress(self, request_id: int) -> Progress:
        """Which steps of the request were started, finished and undone, with outputs."""
        progress = Progress()
        for row in self._rows("SELECT step, event, detail FROM step_events"
                              " WHERE request_id = ? ORDER BY rowid", (request_id,)):
            if row["event"] == "started":
                progress.started.add(row["step"])
            elif row["event"] == "done":
                progress.done[row["step"]] = json.loads(row["detail"]) or {}
            elif row["event"] == "undone":
                progress.undone.add(row["step"])
        return progress

    def with_step_done(self, request_ids: Iterable[int], step: str) -> set[int]:
        """Which of these requests finished ``step`` (as :meth:`progress` counts it: done
        at some point, undone or not): one query per 500 requests, not one each."""
        ids, found = sorted(set(request_ids)), set()
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            found.update(row["request_id"] for row in self._rows(
                "SELECT DISTINCT request_id FROM step_events WHERE step = ? AND event = 'done'"
                f" AND request_id IN ({', '.join('?' * len(chunk))})", (step, *chunk)))
        return found

    def step_events(self, request_id: int) -> list[tuple[str, str]]:
        return [(row["step"], row["event"]) for row in self._rows(
            "SELECT step, event FROM step_events WHERE request_id = ? ORDER BY rowid",
            (request_id,))]

    # -- the same name again (annexd.commands.grow) ----------------------------------------

    def launch_added(self, request_id: int, launch: dict[str, Any]) -> None:
        """A launch added to a live annex, on disk before its call (``state`` 'sent'), with
        its own ClientToken: a crash after the call is followed by a look for what it
        launched, then the same token again -- never a second launch."""
        self._write("INSERT INTO added_launches (request_id, number, client_token,"
                    " launch_request, state, at) VALUES (?, ?, ?, ?, 'sent', ?)",
                    (request_id, launch["number"], launch["client_token"],
                     json.dumps(launch["launch_request"], sort_keys=True), launch["at"]),
                    durable=True)

    def launch_settled(self, request_id: int, number: int, state: str,
                       outputs: dict[str, Any], error: str | None = None) -> None:
        """An added launch's outcome: 'done' (with what it made) or 'failed'."""
        self._write("UPDATE added_launches SET state = ?, outputs = ?, error = ?"
                    " WHERE request_id = ? AND number = ?",
                    (state, json.dumps(outputs), error, request_id, number))

    def added_launches(self, request_id: int) -> list[dict[str, Any]]:
        """The launches added to the annex after its create, in order, each with its
        ``launch_request`` and ``outputs`` parsed."""
        return self.added_launches_of([request_id]).get(request_id, [])

    def added_launches_of(self, request_ids: Iterable[int]) -> dict[int, list[dict[str, Any]]]:
        """:meth:`added_launches` of many requests (-status): one query per 500 requests."""
        ids, found = sorted(set(request_ids)), {}
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            for row in self._rows(
                    "SELECT * FROM added_launches WHERE request_id IN"
                    f" ({', '.join('?' * len(chunk))}) ORDER BY request_id, number", chunk):
                found.setdefault(row["request_id"], []).append(
                    {**row, "launch_request": json.loads(row["launch_request"]),
                     "outputs": json.loads(row["outputs"])})
        return found

    # -- auto annexes (annexd.commands.auto) -------------------------------------------------

    def order_sent(self, request_id: int, order: dict[str, Any]) -> None:
        """An order of an auto annex, on disk before its launch call (``state`` 'sent'): a
        crash after the call is followed by a look for what it launched, then the same
        ClientToken again -- never a second order."""
        self._write("INSERT INTO auto_orders (request_id, number, client_token, instance_type,"
                    " count, hourly, why, state, at) VALUES (?, ?, ?, ?, ?, ?, ?, 'sent', ?)",
                    (request_id, order["number"], order["client_token"],
                     order["instance_type"], order["count"], order["hourly"], order["why"],
                     order["at"]), durable=True)

    def order_settled(self, request_id: int, number: int, state: str,
                      instance_ids: Sequence[str], hourly: float | None, at: float) -> None:
        """The order's outcome ('done' or 'failed'), with its instances counted from ``at``."""
        with self._lock, self._transaction():
            self._db.execute("UPDATE auto_orders SET state = ?, instance_ids = ?"
                             " WHERE request_id = ? AND number = ?",
                             (state, json.dumps(list(instance_ids)), request_id, number))
            self._db.executemany(
                "INSERT OR IGNORE INTO auto_instances (request_id, instance_id, hourly, since)"
                " VALUES (?, ?, ?, ?)",
                [(request_id, instance, hourly, at) for instance in instance_ids])

    def orders(self, request_id: int) -> list[dict[str, Any]]:
        return self._rows("SELECT * FROM auto_orders WHERE request_id = ? ORDER BY number",
                          (request_id,))

    def instances_seen(self, request_id: int, listed: dict[str, float | None], now: float,
                       since: float) -> None:
        """The instances AWS lists now (id -> hourly price): one not known yet counts from
        ``since``; a known one no longer listed ended at the latest ``now``."""
        with self._lock, self._transaction():
            self._db.executemany(
                "INSERT OR IGNORE INTO auto_instances (request_id, instance_id, hourly, since)"
                " VALUES (?, ?, ?, ?)",
                [(request_id, instance, hourly, since) for instance, hourly in listed.items()])
            self._db.executemany("UPDATE auto_instances SET until = NULL"
                                 " WHERE request_id = ? AND instance_id = ?",
                                 [(request_id, instance) for instance in listed])
            known = self._db.execute("SELECT instance_id, since FROM auto_instances"
                                     " WHERE request_id = ? AND until IS NULL", (request_id,))
            # One ordered this last minute may not be listed yet (EC2's listing is
            # eventually consistent): it is not taken for gone.
            gone = [(now, request_id, instance) for (instance, at) in known.fetchall()
                    if instance not in listed and at < now - LISTING_LAG_SECONDS]
            self._db.executemany("UPDATE auto_instances SET until = ?"
                                 " WHERE request_id = ? AND instance_id = ?", gone)

    def spent(self, request_id: int, now: float) -> float | None:
        """What the annex's instances may have cost so far, at worst (each from its order to
        the first look that no longer listed it); None when one cannot be priced."""
        total = 0.0
        for hourly, since, until in self._db_rows(
                "SELECT hourly, since, until FROM auto_instances WHERE request_id = ?",
                (request_id,)):
            if hourly is None:
                return None
            total += hourly * max(0.0, (until if until is not None else now) - since) / 3600
        return total

    def running_hourly(self, request_id: int) -> list[float | None]:
        """The hourly price of each instance the annex may be running: those not seen gone,
        those of orders sent but not yet settled (a crash between), and those an open order
        (a one-time fleet still filling) may still launch."""
        prices = [hourly for (hourly,) in self._db_rows(
            "SELECT hourly FROM auto_instances WHERE request_id = ? AND until IS NULL",
            (request_id,))]
        for hourly, count, state, ids in self._db_rows(
                "SELECT hourly, count, state, instance_ids FROM auto_orders"
                " WHERE request_id = ? AND state IN ('sent', 'open')", (request_id,)):
            seen = len(json.loads(ids or "[]")) if state == "open" else 0
            prices += [hourly] * max(0, count - seen)
        return prices

    def _db_rows(self, sql: str, args: Sequence[Any]) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._db.execute(sql, tuple(args)).fetchall()

    def auto_report(self, request_id: int, last_demand: float | None,
                    report: dict[str, Any], at: float) -> None:
        self._write("INSERT INTO auto_status (request_id, last_demand, report, at)"
                    " VALUES (?, ?, ?, ?) ON CONFLICT(request_id) DO UPDATE SET"
                    " last_demand = excluded.last_demand, report = excluded.report,"
                    " at = excluded.at", (request_id, last_demand, json.dumps(report), at))

    def auto_status(self, request_id: int) -> dict[str, Any] | None:
        rows = self._rows("SELECT last_demand, report, at FROM auto_status"
                          " WHERE request_id = ?", (request_id,))
        if not rows:
            return None
        return {**rows[0], "report": json.loads(rows[0]["report"])}

    def close(self) -> None:
        with self._sync_lock:
            if self._sync is not None:
                self._sync.shutdown(wait=True)
        with self._lock:
            self._db.close()
