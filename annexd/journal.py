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
from typing import Any

from .plan import AnnexPlan

SCHEMA = """
CREATE TABLE IF NOT EXISTS requests (
    id INTEGER PRIMARY KEY,
    annex_id TEXT NOT NULL,
    owner_uid INTEGER NOT NULL,
    state TEXT NOT NULL,
    plan TEXT NOT NULL,
    outputs TEXT NOT NULL DEFAULT '{}',
    error TEXT,
    created REAL NOT NULL,
    updated REAL NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS one_request_in_flight_per_annex
    ON requests(annex_id) WHERE state IN ('creating', 'rolling-back');
CREATE TABLE IF NOT EXISTS step_events (
    request_id INTEGER NOT NULL REFERENCES requests(id),
    step TEXT NOT NULL,
    event TEXT NOT NULL,
    detail TEXT,
    at REAL NOT NULL
);
"""

IN_FLIGHT_STATES = ("creating", "rolling-back")
FINAL_STATES = ("active", "rolled-back", "rollback-incomplete")


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

    def begin(self, plan: AnnexPlan) -> int:
        """Record an accepted request; raises AnnexBusy if the annex has one in flight."""
        now = time.time()
        try:
            return self._write(
                "INSERT INTO requests (annex_id, owner_uid, state, plan, created, updated)"
                " VALUES (?, ?, 'creating', ?, ?, ?)",
                (plan.annex_id, plan.owner_uid, plan.to_record(), now, now))
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

    def request(self, request_id: int) -> dict[str, Any]:
        with self._lock:
            cursor = self._db.execute("SELECT * FROM requests WHERE id = ?", (request_id,))
            row = cursor.fetchone()
            names = [column[0] for column in cursor.description]
        return dict(zip(names, row))

    def step_events(self, request_id: int) -> list[tuple[str, str]]:
        with self._lock:
            return self._db.execute(
                "SELECT step, event FROM step_events WHERE request_id = ? ORDER BY rowid",
                (request_id,)).fetchall()

    def close(self) -> None:
        with self._lock:
            self._db.close()
