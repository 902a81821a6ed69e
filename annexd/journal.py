"""The daemon's durable journal: SQLite in WAL mode, one row per request, one per step event.

Each write is its own committed transaction with ``synchronous=FULL``, so when a method
returns the fact is on disk.  A step is journaled as *started* before its AWS call, and the
plan (holding the fleet's ClientToken) is journaled when the request is accepted, before any
call.  Secrets never enter the journal: the plan has none, and credentials are not stored.
"""
from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from .plan import AnnexPlan

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
    updated REAL NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS one_request_in_flight_per_annex
    ON requests(annex_id) WHERE state IN ('creating', 'rolling-back', 'interrupted');
CREATE TABLE IF NOT EXISTS step_events (
    request_id INTEGER NOT NULL REFERENCES requests(id),
    step TEXT NOT NULL,
    event TEXT NOT NULL,
    detail TEXT,
    at REAL NOT NULL
);
"""

#: States of a request that has not reached its end; at most one per annex.
UNFINISHED_STATES = ("creating", "rolling-back", "interrupted")
# Other states: "active" (complete), "rolled-back", "rollback-incomplete", "ended" (off/lease).
#: States in which AWS may hold resources of the annex.
LIVE_STATES = ("active", "interrupted", "rollback-incomplete")


@dataclass
class Progress:
    """Where a request stands: outputs of finished steps, names of steps that were started."""

    done: dict[str, dict[str, Any]] = field(default_factory=dict)
    started: set[str] = field(default_factory=set)

    def outputs(self) -> dict[str, Any]:
        merged: dict[str, Any] = {}
        for produced in self.done.values():
            merged.update(produced)
        return merged


class AnnexBusy(Exception):
    """Another request for the same annex is still in flight."""


class Journal:
    def __init__(self, path: str):
        directory = os.path.dirname(os.path.abspath(path))
        os.makedirs(directory, mode=0o700, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        os.close(fd)
        os.chmod(path, 0o600)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SCHEMA)

    def _write(self, sql: str, args: tuple[Any, ...]) -> int:
        with self._lock:
            return self._db.execute(sql, args).lastrowid

    def begin(self, plan: AnnexPlan, *, daemon_credentials: bool) -> int:
        """Record an accepted request; raises AnnexBusy if the annex has an unfinished one."""
        now = time.time()
        try:
            return self._write(
                "INSERT INTO requests (annex_id, owner_uid, state, daemon_credentials,"
                " lease_end, plan, created, updated) VALUES (?, ?, 'creating', ?, ?, ?, ?, ?)",
                (plan.annex_id, plan.owner_uid, int(daemon_credentials), plan.lease_end,
                 plan.to_record(), now, now))
        except sqlite3.IntegrityError:
            raise AnnexBusy(plan.annex_id) from None

    def step_event(self, request_id: int, step: str, event: str, detail: Any = None) -> None:
        self._write("INSERT INTO step_events (request_id, step, event, detail, at)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (request_id, step, event, json.dumps(detail), time.time()))

    def set_state(self, request_id: int, state: str, *, outputs: dict[str, Any] | None = None,
                  error: str | None = None) -> None:
        self._write("UPDATE requests SET state = ?, outputs = COALESCE(?, outputs),"
                    " error = COALESCE(?, error), updated = ? WHERE id = ?",
                    (state, None if outputs is None else json.dumps(outputs), error,
                     time.time(), request_id))

    def set_lease_end(self, request_id: int, lease_end: int) -> None:
        self._write("UPDATE requests SET lease_end = ?, updated = ? WHERE id = ?",
                    (lease_end, time.time(), request_id))

    def _rows(self, sql: str, args: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        with self._lock:
            cursor = self._db.execute(sql, args)
            names = [column[0] for column in cursor.description]
            return [dict(zip(names, row)) for row in cursor.fetchall()]

    def request(self, request_id: int) -> dict[str, Any]:
        return self._rows("SELECT * FROM requests WHERE id = ?", (request_id,))[0]

    def unfinished(self) -> list[dict[str, Any]]:
        """Requests a crash or a shutdown left before their end, oldest first."""
        marks = ", ".join("?" * len(UNFINISHED_STATES))
        return self._rows(f"SELECT * FROM requests WHERE state IN ({marks}) ORDER BY id",
                          UNFINISHED_STATES)

    def unfinished_for(self, annex_id: str) -> dict[str, Any] | None:
        marks = ", ".join("?" * len(UNFINISHED_STATES))
        rows = self._rows(f"SELECT * FROM requests WHERE annex_id = ? AND state IN ({marks})",
                          (annex_id, *UNFINISHED_STATES))
        return rows[0] if rows else None

    def latest(self, owner_uid: int | None) -> list[dict[str, Any]]:
        """The newest request of each annex, of one owner (None: of everyone)."""
        where = "" if owner_uid is None else "WHERE owner_uid = ?"
        args = () if owner_uid is None else (owner_uid,)
        return self._rows(
            "SELECT * FROM requests WHERE id IN (SELECT MAX(id) FROM requests "
            f"{where} GROUP BY annex_id) ORDER BY annex_id", args)

    def live(self, owner_uid: int | None = None) -> list[dict[str, Any]]:
        """The newest request of each annex that may hold resources, visible to ``owner_uid``
        (None: everyone's), by annex name."""
        return [row for row in self.latest(owner_uid) if row["state"] in LIVE_STATES]

    def expired(self, now: float) -> list[dict[str, Any]]:
        """Live annexes whose recorded lease has ended."""
        return [row for row in self.live() if row["lease_end"] < now]

    def progress(self, request_id: int) -> Progress:
        """Which steps of the request were started and which finished, with their outputs."""
        progress = Progress()
        for row in self._rows("SELECT step, event, detail FROM step_events"
                              " WHERE request_id = ? ORDER BY rowid", (request_id,)):
            if row["event"] == "started":
                progress.started.add(row["step"])
            elif row["event"] == "done":
                progress.done[row["step"]] = json.loads(row["detail"]) or {}
        return progress

    def step_events(self, request_id: int) -> list[tuple[str, str]]:
        return [(row["step"], row["event"]) for row in self._rows(
            "SELECT step, event FROM step_events WHERE request_id = ? ORDER BY rowid",
            (request_id,))]

    def close(self) -> None:
        with self._lock:
            self._db.close()
