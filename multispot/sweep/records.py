"""Sweeps and arrays in the job store: one row per group, one per member (a trial or a task).

The rows live in the job store's own SQLite file, in two tables of their own, written through
the job store's public ``transaction()`` and ``query()`` (its short ``BEGIN IMMEDIATE``
transactions and its waiting out of other processes' locks). Sweeps need the SQLite store: with
a PostgreSQL one (``$MULTISPOT_DB``) they are refused with a clear error. A member row names the multispot job(s) it ran: it is inserted *before*
its job is created, with the job id already chosen, so a driver killed at any point is replaced
by one that finds the member and creates (or just follows) that same job, never a second one.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from multispot.errors import JobNotFound, MultispotError, StoreError
from multispot.store import SQLiteStore, Store, open_store, owner_alive, owner_id

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sweep_groups (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    spec TEXT NOT NULL,
    created REAL NOT NULL,
    state TEXT NOT NULL,
    message TEXT NOT NULL DEFAULT '',
    ended REAL,
    owner TEXT,
    heartbeat REAL
);
CREATE TABLE IF NOT EXISTS sweep_members (
    group_id TEXT NOT NULL REFERENCES sweep_groups (id),
    n INTEGER NOT NULL,
    jobs TEXT NOT NULL,
    params TEXT NOT NULL DEFAULT '{}',
    outcome TEXT NOT NULL DEFAULT '',
    message TEXT NOT NULL DEFAULT '',
    value REAL,
    created REAL NOT NULL,
    PRIMARY KEY (group_id, n)
);
"""

RUNNING, DONE, STOPPED = "running", "done", "stopped"
STALE_AFTER = 10.0  # seconds without a driver heartbeat before another may take the group over


class GroupNotFound(MultispotError):
    """No sweep or array of that id or name."""


@dataclass
class Group:
    id: str
    kind: str
    name: str
    spec: dict[str, Any]
    created: float
    state: str
    message: str = ""
    ended: float | None = None
    owner: str | None = None
    heartbeat: float | None = None


@dataclass
class Member:
    group_id: str
    n: int
    jobs: list[str]
    params: dict[str, Any] = field(default_factory=dict)
    outcome: str = ""  # '' while open; succeeded, failed, pruned, abandoned, cancelled, stopped
    message: str = ""
    value: float | None = None
    created: float = 0.0

    @property
    def job_id(self) -> str:
        return self.jobs[-1]


class GroupStore:
    def __init__(self, store: Store | None = None) -> None:
        self.store = sqlite_store(store or open_store())
        with self.store.transaction() as db:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)

    # ----------------------------------------------------------------- groups

    def create(self, group: Group) -> None:
        with self.store.transaction() as db:
            db.execute(
                "INSERT INTO sweep_groups (id, kind, name, spec, created, state, message) VALUES (?,?,?,?,?,?,?)",
                (group.id, group.kind, group.name, json.dumps(group.spec), group.created, group.state, ""),
            )

    def get(self, ref: str) -> Group:
        rows = self.store.query("SELECT * FROM sweep_groups WHERE id = ?", (ref,))
        if not rows:
            rows = self.store.query(
                "SELECT * FROM sweep_groups WHERE name = ? ORDER BY created DESC LIMIT 1", (ref,)
            )
        if not rows:
            rows = self.store.query("SELECT * FROM sweep_groups WHERE id LIKE ? || '%'", (ref,))
            if len(rows) > 1:
                raise GroupNotFound(f"{ref!r} matches {len(rows)} sweeps/arrays: give more of the id")
        if not rows:
            raise GroupNotFound(f"no sweep or array {ref!r} (multispot sweeps lists them)")
        return _group(rows[0])

    def groups(self, limit: int = 50) -> list[Group]:
        rows = self.store.query("SELECT * FROM sweep_groups ORDER BY created DESC LIMIT ?", (limit,))
        return [_group(r) for r in rows]

    def finish(self, group_id: str, state: str, message: str) -> None:
        with self.store.transaction() as db:
            db.execute(
                "UPDATE sweep_groups SET state = ?, message = ?, ended = ? WHERE id = ? AND ended IS NULL",
                (state, message, time.time(), group_id),
            )

    def set_message(self, group_id: str, message: str) -> None:
        with self.store.transaction() as db:
            db.execute("UPDATE sweep_groups SET message = ? WHERE id = ?", (message, group_id))

    # ----------------------------------------------------------------- the driver's lease

    def acquire(self, group_id: str, owner: str, stale_after: float = STALE_AFTER) -> bool:
        now = time.time()
        with self.store.transaction() as db:
            row = db.execute("SELECT owner, heartbeat FROM sweep_groups WHERE id = ?", (group_id,)).fetchone()
            if row is None:
                raise GroupNotFound(f"no sweep or array {group_id!r}")
            holder, beat = row["owner"], row["heartbeat"]
            if holder and holder != owner and beat and now - beat < stale_after and owner_alive(holder):
                return False
            db.execute(
                "UPDATE sweep_groups SET owner = ?, heartbeat = ? WHERE id = ?", (owner, now, group_id)
            )
            return True

    def heartbeat(self, group_id: str, owner: str) -> bool:
        with self.store.transaction() as db:
            cur = db.execute(
                "UPDATE sweep_groups SET heartbeat = ? WHERE id = ? AND owner = ?",
                (time.time(), group_id, owner),
            )
            return cur.rowcount == 1

    def release(self, group_id: str, owner: str) -> None:
        with self.store.transaction() as db:
            db.execute(
                "UPDATE sweep_groups SET owner = NULL, heartbeat = NULL WHERE id = ? AND owner = ?",
                (group_id, owner),
            )

    def driver_alive(self, group_id: str, stale_after: float = STALE_AFTER) -> bool:
        group = self.get(group_id)
        return bool(
            group.owner
            and group.heartbeat
            and time.time() - group.heartbeat < stale_after
            and owner_alive(group.owner)
        )

    # ----------------------------------------------------------------- members

    def add_member(self, member: Member) -> Member:
        """Insert ``member``; if (group, n) exists already, the stored one is returned unchanged."""
        with self.store.transaction() as db:
            db.execute(
                "INSERT OR IGNORE INTO sweep_members (group_id, n, jobs, params, created) VALUES (?,?,?,?,?)",
                (member.group_id, member.n, json.dumps(member.jobs), json.dumps(member.params), time.time()),
            )
        return self.member(member.group_id, member.n)

    def member(self, group_id: str, n: int) -> Member:
        rows = self.store.query("SELECT * FROM sweep_members WHERE group_id = ? AND n = ?", (group_id, n))
        if not rows:
            raise JobNotFound(f"{group_id} has no member {n}")
        return _member(rows[0])

    def members(self, group_id: str) -> list[Member]:
        rows = self.store.query("SELECT * FROM sweep_members WHERE group_id = ? ORDER BY n", (group_id,))
        return [_member(r) for r in rows]

    def add_job(self, group_id: str, n: int, job_id: str) -> None:
        """A member's next job (a trial restarted from scratch), recorded before it is created."""
        with self.store.transaction() as db:
            row = db.execute(
                "SELECT jobs FROM sweep_members WHERE group_id = ? AND n = ?", (group_id, n)
            ).fetchone()
            jobs = json.loads(row["jobs"])
            if job_id not in jobs:
                jobs.append(job_id)
            db.execute(
                "UPDATE sweep_members SET jobs = ? WHERE group_id = ? AND n = ?",
                (json.dumps(jobs), group_id, n),
            )

    def set_outcome(
        self, group_id: str, n: int, outcome: str, message: str = "", value: float | None = None
    ) -> None:
        with self.store.transaction() as db:
            db.execute(
                "UPDATE sweep_members SET outcome = ?, message = ?, value = ? WHERE group_id = ? AND n = ?",
                (outcome, message, value, group_id, n),
            )


def sqlite_store(store: Store) -> SQLiteStore:
    """``store`` if it is the SQLite one: sweeps keep their rows (and Optuna's) in its file."""
    if not isinstance(store, SQLiteStore):
        raise StoreError(
            "sweeps and job arrays need the SQLite job store for now: unset MULTISPOT_DB (or point "
            "it at sqlite:///abs/path) to run them"
        )
    return store


def _group(row: Any) -> Group:
    return Group(
        id=row["id"],
        kind=row["kind"],
        name=row["name"],
        spec=json.loads(row["spec"]),
        created=row["created"],
        state=row["state"],
        message=row["message"],
        ended=row["ended"],
        owner=row["owner"],
        heartbeat=row["heartbeat"],
    )


def _member(row: Any) -> Member:
    return Member(
        group_id=row["group_id"],
        n=row["n"],
        jobs=json.loads(row["jobs"]),
        params=json.loads(row["params"]),
        outcome=row["outcome"],
        message=row["message"],
        value=row["value"],
        created=row["created"],
    )


__all__ = ["DONE", "RUNNING", "STOPPED", "Group", "GroupNotFound", "GroupStore", "Member", "owner_id"]
