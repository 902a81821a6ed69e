"""Journals as earlier releases wrote them, for the upgrade tests.

Each format's DDL is copied verbatim from ``annexd/state/journal.py`` of the release that wrote it
(``git log -- annexd/state/journal.py``), and each plan has the fields that release's
``annexd/launch/plan.py`` had.  Format 5's live index is the current one: its live states are this
release's.  They are frozen copies, never derived from ``annexd.state.journal``: that one changes.
"""
from __future__ import annotations

import json
import sqlite3
import time
import zlib
from typing import Any

#: e759e54: the first journal.
FORMAT_1 = """
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

#: 6ae3463: resumable requests (daemon_credentials, interrupted).
FORMAT_2 = FORMAT_1.replace(
    "    state TEXT NOT NULL,\n",
    "    state TEXT NOT NULL,\n    daemon_credentials INTEGER NOT NULL DEFAULT 0,\n").replace(
    "('creating', 'rolling-back')", "('creating', 'rolling-back', 'interrupted')")

#: 7650ca4: operating annexes (lease_end; active, interrupted and rollback-incomplete live,
#: but only in-flight rows unique per name).
FORMAT_3 = FORMAT_2.replace(
    "    daemon_credentials INTEGER NOT NULL DEFAULT 0,\n",
    "    daemon_credentials INTEGER NOT NULL DEFAULT 0,\n"
    "    lease_end INTEGER NOT NULL DEFAULT 0,\n")

#: 0163a3f: ownership by (region, name).
FORMAT_4 = """
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
    region TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS step_events (
    request_id INTEGER NOT NULL REFERENCES requests(id),
    step TEXT NOT NULL,
    event TEXT NOT NULL,
    detail TEXT,
    at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS step_events_of_request ON step_events(request_id);
CREATE UNIQUE INDEX IF NOT EXISTS one_live_row_per_annex_v2 ON requests(region, annex_id)
    WHERE state IN ('active', 'creating', 'interrupted', 'rollback-incomplete',
                    'rollback-interrupted', 'rolling-back');
"""

#: 9b59a6c, ce49210: every write moves ``version``; a lease change cut short is
#: ``lease_unsettled``; lease changes and teardowns are live states.
FORMAT_5 = FORMAT_4.replace(
    "    region TEXT NOT NULL DEFAULT ''\n",
    "    region TEXT NOT NULL DEFAULT '',\n    version INTEGER NOT NULL DEFAULT 0,\n"
    "    lease_unsettled INTEGER NOT NULL DEFAULT 0\n").replace(
    """CREATE UNIQUE INDEX IF NOT EXISTS one_live_row_per_annex_v2 ON requests(region, annex_id)
    WHERE state IN ('active', 'creating', 'interrupted', 'rollback-incomplete',
                    'rollback-interrupted', 'rolling-back');""",
    "CREATE UNIQUE INDEX IF NOT EXISTS one_live_row_per_annex_v3 ON requests(region, annex_id)"
    " WHERE state IN ('active', 'creating', 'ending', 'ending-interrupted', 'extending',"
    " 'interrupted', 'rollback-incomplete', 'rollback-interrupted', 'rolling-back');")

FORMATS = {1: FORMAT_1, 2: FORMAT_2, 3: FORMAT_3, 4: FORMAT_4, 5: FORMAT_5}
#: The columns each format's requests table has beyond the first one's.
EXTRA_COLUMNS = {1: (), 2: ("daemon_credentials",), 3: ("daemon_credentials", "lease_end"),
                 4: ("daemon_credentials", "lease_end", "region"),
                 5: ("daemon_credentials", "lease_end", "region", "lease_unsettled")}


def plan(fmt: int, name: str, *, uid: int, lease_end: int, region: str = "us-east-1",
         capacity: int = 1) -> dict[str, Any]:
    """A plan as release ``fmt`` journaled it (a Spot Fleet annex)."""
    token = f"{name}_00000000-0000-4000-8000-{zlib.crc32(f'{fmt}{name}{uid}'.encode()):012d}"
    config = {"IamFleetRole": "arn:aws:iam::123456789012:role/fleet", "TargetCapacity": capacity,
              "ClientToken": token, "AllocationStrategy": "priceCapacityOptimized",
              "LaunchSpecifications": [{"ImageId": "ami-12345678",
                                        "InstanceType": "m5.large"}]}
    record: dict[str, Any] = {
        "annex_id": name, "annex_type": "spot-fleet", "owner_uid": uid, "region": region,
        "lease_function_arn": f"arn:aws:lambda:{region}:123456789012:function:lease",
        "lease_end": lease_end, "bucket": "htcondor-annex-config", "client_token": token,
        "rule_schedule": "rate(1 minute)", "spot_fleet_config": config, "notices": []}
    if fmt >= 3:
        record.update(collector_host="cm.pool.example.org:9618", owners=["alice"],
                      idle_seconds=900, pool_auth="password", needs_request_material=False,
                      created_at=lease_end - 3600)
    if fmt >= 4:
        record["on_demand_request"] = {}
    if fmt >= 5:  # the launch kinds and request tokens
        record["launch_request"] = record.pop("spot_fleet_config")
        del record["on_demand_request"]
        record.update(pool_auth="minted", token_id="00" * 16, token_identity="x@y",
                      keyed_by_request=True)
    return record


def write(path: str, fmt: int, rows: list[dict[str, Any]]) -> None:
    """A journal file of format ``fmt`` holding ``rows`` (each: annex_id, owner_uid, state,
    plan, and optionally outputs and step events as ``events``)."""
    db = sqlite3.connect(path)
    db.executescript(FORMATS[fmt])
    now = time.time()
    for row in rows:
        values = {"annex_id": row["annex_id"], "owner_uid": row["owner_uid"],
                  "state": row["state"], "plan": json.dumps(row["plan"], sort_keys=True),
                  "outputs": json.dumps(row.get("outputs", {})), "created": now,
                  "updated": now}
        extra = {"daemon_credentials": 0, "lease_end": row["plan"]["lease_end"],
                 "region": row["plan"]["region"],
                 "lease_unsettled": int(row.get("lease_unsettled", False))}
        values.update({column: extra[column] for column in EXTRA_COLUMNS[fmt]})
        cursor = db.execute(f"INSERT INTO requests ({', '.join(values)}) VALUES "
                            f"({', '.join('?' for _ in values)})", tuple(values.values()))
        for step, event in row.get("events", ()):
            db.execute("INSERT INTO step_events (request_id, step, event, detail, at)"
                       " VALUES (?, ?, ?, 'null', ?)", (cursor.lastrowid, step, event, now))
    db.commit()
    db.close()
