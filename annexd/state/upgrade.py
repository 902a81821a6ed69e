"""Opening a journal written by any earlier release, and repairing what earlier releases allowed.

An upgrade must never stop the daemon: a daemon that cannot open its journal serves no one,
recovers nothing and enforces no lease.  So the journal is brought to this release's shape at
every start, in one transaction (a crash half-way leaves the old journal as it was), and each
row this release could not act on safely is *quarantined*: moved, with its step events, into
the ``quarantine`` table, where the admin can read it, and named in a log line that says what
was done and why.  Nothing is ever silently dropped.

The formats of earlier releases (``tests/old_journals.py`` builds each one):

1. no ``daemon_credentials``, ``lease_end`` or ``region`` column; one in-flight row per name;
2. ``daemon_credentials`` added;
3. ``lease_end`` added; ``active``, ``interrupted`` and ``rollback-incomplete`` were live, but
   only in-flight rows were unique per name, so a name could have two live rows (a
   ``rollback-incomplete`` one beside the ``active`` one made after it);
4. ``region`` added; one live row per (region, name), enforced by a unique index;
5. ``version`` (moved by every write) and ``lease_unsettled`` (a lease change cut short: its
   end unknown) added; ``extending``, ``ending`` and ``ending-interrupted`` live.

This release adds:

- ``payer_account``, ``payer_principal`` and ``token_minted`` (issue 23): the account that pays
  is fixed at create.  An earlier row's payer is taken to be its lease function's account --
  the account earlier releases' recovery and backstop took it to be -- and its principal is
  unknown; its token's minting time is unknown (0), so it is renewed at the daemon's first
  renewal pass.
- ``lease_intent`` (issue 24): a lease change's intent, the end it sets out to put in force,
  recorded before the change's first AWS call.  A row an earlier release marked
  ``lease_unsettled`` gets the intent :data:`annexd.state.journal.INTENT_UNRECORDED` (the end
  it was after is not known; the rule's Input in AWS says what is in force all the same), and
  the flag's column is dropped.
- the ``added_launches`` table (issue 25: the launches the same name again adds to a live
  annex, :mod:`annexd.commands.grow`), made empty by the schema itself (``CREATE TABLE IF NOT
  EXISTS``) for a journal of any earlier release: their annexes have none.

What is done, in order: missing columns are added (with their defaults) and ``region`` and
``lease_end`` are filled from each row's plan; ``lease_unsettled`` becomes ``lease_intent``; a row whose state this release does not know,
or whose plan cannot be read, is quarantined; of several live rows of one (region, name) the
one holding the annex (an active one, else one still being created, else the newest) keeps it
and the others are quarantined; then the index of live rows is (re)built.
"""
from __future__ import annotations

import dataclasses
import json
import sqlite3
import time
from typing import Any, Iterable

from annexd_lambda.lease import CLIENT_TOKEN_TAG

from annexd.state import lifecycle
from annexd.state.lifecycle import RequestState
from annexd.launch.plan import AnnexPlan

QUARANTINE_SCHEMA = """
CREATE TABLE IF NOT EXISTS quarantine (
    request_id INTEGER NOT NULL,
    reason TEXT NOT NULL,
    request TEXT NOT NULL,
    step_events TEXT NOT NULL,
    at REAL NOT NULL
)"""

KNOWN_STATES = frozenset(state.value for state in RequestState)


def upgrade(db: sqlite3.Connection, schema: str, live_index: str) -> list[str]:
    """Bring ``db`` to ``schema`` with ``live_index``; return what was done, one line each.

    ``db`` must be in autocommit mode (``isolation_level=None``): this opens its own
    transaction.  Raises sqlite3.Error only for a journal that cannot be read at all.
    """
    done: list[str] = []
    db.execute("BEGIN IMMEDIATE")
    try:
        db.execute(QUARANTINE_SCHEMA)
        done += _add_columns(db, schema)
        done += _unsettled_to_intent(db)
        done += _quarantine(db, _unreadable(db))
        _fill_from_plans(db)
        done += _quarantine(db, _unknown_states(db))
        done += _quarantine(db, _bad_live_plans(db))
        done += _quarantine(db, _second_live_rows(db))
        done += _rebuild_live_index(db, live_index)
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    return done


def _columns(db: sqlite3.Connection, table: str) -> dict[str, tuple[Any, ...]]:
    return {row[1]: row for row in db.execute(f"PRAGMA table_info({table})")}


def _add_columns(db: sqlite3.Connection, schema: str) -> list[str]:
    """Add the columns ``schema`` has and the journal lacks, as ``schema`` declares them."""
    model = sqlite3.connect(":memory:")
    model.executescript(schema)
    done = []
    for table in ("requests", "step_events"):
        have = _columns(db, table)
        for name, (_, _, kind, not_null, default, _) in _columns(model, table).items():
            if name in have:
                continue
            if not_null and default is None:
                raise sqlite3.DatabaseError(f"cannot add column {table}.{name}: no default")
            declared = f"{name} {kind}" + (" NOT NULL" if not_null else "") + \
                ("" if default is None else f" DEFAULT {default}")
            db.execute(f"ALTER TABLE {table} ADD COLUMN {declared}")
            done.append(f"added column {table}.{name} (an earlier release's journal)")
    model.close()
    return done


#: The intent of a change cut short that an earlier release left unsettled without recording
#: the end it was after (annexd.state.journal.INTENT_UNRECORDED; a copy: journal imports this).
INTENT_UNRECORDED = 0


def _unsettled_to_intent(db: sqlite3.Connection) -> list[str]:
    """The previous release's ``lease_unsettled`` flag, as this release's ``lease_intent``."""
    if "lease_unsettled" not in _columns(db, "requests"):
        return []
    count = db.execute("UPDATE requests SET lease_intent = ? WHERE lease_unsettled != 0"
                       " AND lease_intent IS NULL", (INTENT_UNRECORDED,)).rowcount
    db.execute("ALTER TABLE requests DROP COLUMN lease_unsettled")
    return [f"column requests.lease_unsettled became lease_intent ({count} lease change(s) "
            "cut short, their lease end read from AWS's rule when next acted on)"]


def _fill_from_plans(db: sqlite3.Connection) -> None:
    """Region and lease end of rows written before those columns, from their plans."""
    db.execute("UPDATE requests SET region = COALESCE(json_extract(plan, '$.region'), '')"
               " WHERE region = ''")
    db.execute("UPDATE requests SET lease_end ="
               " COALESCE(CAST(json_extract(plan, '$.lease_end') AS INTEGER), 0)"
               " WHERE lease_end = 0")
    # arn:aws:lambda:REGION:ACCOUNT:function:NAME -> ACCOUNT (an earlier release's payer)
    for row_id, arn in db.execute("SELECT id, json_extract(plan, '$.lease_function_arn')"
                                  " FROM requests WHERE payer_account = ''").fetchall():
        parts = str(arn or "").split(":")
        if len(parts) > 4 and parts[4].isdigit():
            db.execute("UPDATE requests SET payer_account = ? WHERE id = ?",
                       (parts[4], row_id))


def _rows(db: sqlite3.Connection, sql: str, args: Iterable[Any] = ()) -> list[dict[str, Any]]:
    cursor = db.execute(sql, tuple(args))
    names = [column[0] for column in cursor.description]
    return [dict(zip(names, row)) for row in cursor.fetchall()]


def _unreadable(db: sqlite3.Connection) -> list[tuple[dict[str, Any], str]]:
    return [(row, "its plan is not valid JSON") for row in
            _rows(db, "SELECT * FROM requests WHERE NOT json_valid(plan)")]


def _unknown_states(db: sqlite3.Connection) -> list[tuple[dict[str, Any], str]]:
    known = ", ".join("?" for _ in KNOWN_STATES)
    return [(row, f"its state {row['state']!r} is unknown to this release") for row in
            _rows(db, f"SELECT * FROM requests WHERE state NOT IN ({known})", KNOWN_STATES)]


def _live(db: sqlite3.Connection) -> list[dict[str, Any]]:
    live = sorted(state.value for state in lifecycle.LIVE)
    return _rows(db, f"SELECT * FROM requests WHERE state IN ({', '.join('?' for _ in live)})"
                 " ORDER BY id", live)


def _bad_live_plans(db: sqlite3.Connection) -> list[tuple[dict[str, Any], str]]:
    """Live rows the daemon would act on but cannot: a plan of unknown shape, or no region."""
    return [(row, problem) for row in _live(db) if (problem := plan_problem(row))]


def plan_problem(row: dict[str, Any]) -> str:
    """Why this release cannot read the row's plan (a newer release's fields, a field of
    the wrong kind, no region); "" if it can."""
    try:
        plan = AnnexPlan.from_record(row["plan"])
    except (TypeError, ValueError, KeyError, AttributeError) as error:
        return f"its plan cannot be read ({error})"
    return _shape_problem(plan) or ("" if plan.region else "its plan names no region")


#: What each kind of plan field must hold (by its annotation's start), so that no code acting
#: on a live row meets, say, a number where it splits an ARN.
_TYPES = {"str": str, "int": int, "bool": bool, "dict": dict, "tuple": tuple}


def _shape_problem(plan: AnnexPlan) -> str:
    for spec in dataclasses.fields(plan):
        wanted = _TYPES.get(str(spec.type).split("[")[0])
        value = getattr(plan, spec.name)
        if wanted is not None and (not isinstance(value, wanted) or
                                   (wanted is int and isinstance(value, bool))):
            return f"its plan's {spec.name} is not a {wanted.__name__} ({value!r})"
    return ""


def _holder_rank(row: dict[str, Any]) -> tuple[int, int]:
    """Which of several live rows of one annex keeps it: lowest rank wins."""
    state = RequestState(row["state"])
    order = 0 if state is RequestState.ACTIVE else 1 if state in lifecycle.UNFINISHED else 2
    return order, -row["id"]


def _second_live_rows(db: sqlite3.Connection) -> list[tuple[dict[str, Any], str]]:
    by_annex: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in _live(db):
        by_annex.setdefault((row["region"], row["annex_id"]), []).append(row)
    found = []
    for rows in by_annex.values():
        keeper, *others = sorted(rows, key=_holder_rank)
        for row in others:
            found.append((row, f"request {keeper['id']} ({keeper['state']}) holds the same "
                               "annex; only one live row per (region, name) is allowed now"))
    return found


def _quarantine(db: sqlite3.Connection,
                rows: list[tuple[dict[str, Any], str]]) -> list[str]:
    """Move each row and its step events into the quarantine table; say so, with what the
    admin needs to find anything of it left in AWS (its ClientToken)."""
    done = []
    now = time.time()
    for row, reason in rows:
        events = _rows(db, "SELECT step, event, detail, at FROM step_events"
                           " WHERE request_id = ? ORDER BY rowid", (row["id"],))
        db.execute("INSERT INTO quarantine (request_id, reason, request, step_events, at)"
                   " VALUES (?, ?, ?, ?, ?)",
                   (row["id"], reason, json.dumps(row), json.dumps(events), now))
        db.execute("DELETE FROM step_events WHERE request_id = ?", (row["id"],))
        db.execute("DELETE FROM requests WHERE id = ?", (row["id"],))
        done.append(
            f"QUARANTINED request {row['id']} (annex {row['annex_id']!r}"
            f"{' in ' + row['region'] if row.get('region') else ''}, uid {row['owner_uid']}, "
            f"state {row['state']!r}, ClientToken {_client_token(row)}): {reason}. It is kept "
            "in the journal's quarantine table and no longer acted on; check AWS for "
            f"resources tagged {CLIENT_TOKEN_TAG} with that ClientToken")
    return done


def _client_token(row: dict[str, Any]) -> str:
    try:
        return str(json.loads(row["plan"]).get("client_token") or "unknown")
    except (ValueError, AttributeError):
        return "unknown"


def _rebuild_live_index(db: sqlite3.Connection, live_index: str) -> list[str]:
    """(Re)build the unique index of live rows when its definition changed (new live
    states), dropping the one-row-per-name indexes of earlier releases."""
    wanted = live_index.replace(" IF NOT EXISTS", "")
    name = wanted.split(" ON ")[0].split()[-1]
    done, current = [], False
    for other, sql in db.execute("SELECT name, sql FROM sqlite_master WHERE type = 'index'"
                                 " AND tbl_name = 'requests' AND name LIKE 'one_%'").fetchall():
        if other == name and sql == wanted:
            current = True
            continue
        db.execute(f"DROP INDEX {other}")
        if other != name:
            done.append(f"dropped index {other} of an earlier release")
    if not current:
        db.execute(wanted)
    return done
