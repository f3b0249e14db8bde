"""A job store file as multispot wrote it before team scale (SQLite schema version 1).

The schema below is version 1 as it shipped, kept here so the upgrade test starts from the real
old layout rather than from whatever the current code would write.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

V1_SCHEMA = """
CREATE TABLE jobs (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    spec TEXT NOT NULL,
    provider TEXT NOT NULL,
    state TEXT NOT NULL,
    message TEXT NOT NULL DEFAULT '',
    checkpoint_uri TEXT NOT NULL,
    output_uri TEXT NOT NULL,
    options TEXT NOT NULL DEFAULT '{}',
    created REAL NOT NULL,
    updated REAL NOT NULL,
    ended REAL,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    owner TEXT,
    heartbeat REAL
);
CREATE INDEX jobs_by_name ON jobs (name, created);
CREATE TABLE attempts (
    job_id TEXT NOT NULL REFERENCES jobs (id),
    n INTEGER NOT NULL,
    placement TEXT NOT NULL,
    state TEXT NOT NULL,
    handle TEXT,
    message TEXT NOT NULL DEFAULT '',
    native_state TEXT NOT NULL DEFAULT '',
    interruptions INTEGER NOT NULL DEFAULT 0,
    submitted REAL,
    started REAL,
    ended REAL,
    usage TEXT,
    last_checkpoint REAL,
    PRIMARY KEY (job_id, n)
);
CREATE TABLE events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id TEXT NOT NULL REFERENCES jobs (id),
    attempt INTEGER,
    time REAL NOT NULL,
    kind TEXT NOT NULL,
    message TEXT NOT NULL
);
CREATE INDEX events_by_job ON events (job_id, id);
"""

PLACEMENT = {"provider": "local", "market": "spot", "region": "here", "instance_type": "cpu"}


def write_v1_store(path: Path, job_ids: list[str]) -> None:
    """A version-1 file at ``path`` holding ``job_ids`` (RUNNING, one attempt and two events each)."""
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.executescript(f"BEGIN; {V1_SCHEMA} PRAGMA user_version = 1; COMMIT;")
        db.execute("PRAGMA journal_mode = WAL")
        for i, job_id in enumerate(job_ids):
            db.execute(
                "INSERT INTO jobs (id, name, spec, provider, state, checkpoint_uri, output_uri, created, updated)"
                " VALUES (?,?,?,?,?,?,?,?,?)",
                (
                    job_id,
                    "old",
                    json.dumps({"name": "old"}),
                    "local",
                    "RUNNING",
                    "file:///c",
                    "file:///o",
                    i,
                    i,
                ),
            )
            db.execute(
                "INSERT INTO attempts (job_id, n, placement, state) VALUES (?,?,?,?)",
                (job_id, 1, json.dumps(PLACEMENT), "RUNNING"),
            )
            for kind in ("created", "attempt"):
                db.execute(
                    "INSERT INTO events (job_id, attempt, time, kind, message) VALUES (?,?,?,?,?)",
                    (job_id, 1 if kind == "attempt" else None, float(i), kind, kind),
                )
    finally:
        db.close()
