"""TEMPORARY shim until the store helper's ``multispot.store.open_store`` lands (issue 19).

It gives the server the identity/audit part of the ``Store`` protocol on today's SQLite
``JobStore``: users, teams, hashed tokens and the audit log in a side file next to the job
store, and a job's team in its ``options``. Removed when ``git merge store`` brings the real one.
"""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from multispot.status import JobState
from multispot.store import JobRecord, JobStore


@dataclass(frozen=True)
class User:
    id: str
    name: str
    team: str
    admin: bool
    created: float


@dataclass(frozen=True)
class AuditEntry:
    id: int
    time: float
    actor: str
    action: str
    target: str
    detail: dict[str, Any]


_SCHEMA = """
CREATE TABLE IF NOT EXISTS teams (name TEXT PRIMARY KEY, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS users (id TEXT PRIMARY KEY, name TEXT UNIQUE NOT NULL, team TEXT NOT NULL,
    admin INTEGER NOT NULL, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS tokens (id TEXT PRIMARY KEY, user_id TEXT NOT NULL, hash TEXT UNIQUE NOT NULL,
    label TEXT NOT NULL, created REAL NOT NULL, revoked REAL);
CREATE TABLE IF NOT EXISTS audit (id INTEGER PRIMARY KEY AUTOINCREMENT, time REAL NOT NULL, actor TEXT NOT NULL,
    action TEXT NOT NULL, target TEXT NOT NULL, detail TEXT NOT NULL);
"""


class ShimStore(JobStore):
    def __init__(self, path: str | None = None) -> None:
        super().__init__(path)
        self._side = sqlite3.connect(
            Path(self.path).with_suffix(".identity.sqlite"), isolation_level=None, check_same_thread=False
        )
        self._side.execute("PRAGMA busy_timeout = 5000")
        self._side.executescript(_SCHEMA)

    def create_job(self, record: JobRecord) -> None:
        record.options.setdefault("team", getattr(record, "team", "default"))
        record.options.setdefault("submitted_by", getattr(record, "submitted_by", ""))
        super().create_job(record)

    def jobs(
        self, limit: int = 50, team: str | None = None, states: Collection[JobState] | None = None
    ) -> list[JobRecord]:
        out = [
            r
            for r in super().jobs(10**9 if team or states else limit)
            if (team is None or r.options.get("team", "default") == team)
            and (not states or r.state in states)
        ]
        return out[:limit]

    def create_team(self, name: str) -> None:
        self._side.execute("INSERT OR IGNORE INTO teams VALUES (?, ?)", (name, time.time()))

    def create_user(self, name: str, team: str, admin: bool = False) -> User:
        self.create_team(team)
        user = User(uuid.uuid4().hex[:12], name, team, admin, time.time())
        self._side.execute(
            "INSERT INTO users VALUES (?,?,?,?,?)", (user.id, name, team, int(admin), user.created)
        )
        return user

    def add_token(self, user_id: str, token_hash: str, label: str) -> str:
        token_id = uuid.uuid4().hex[:12]
        self._side.execute(
            "INSERT INTO tokens VALUES (?,?,?,?,?,NULL)", (token_id, user_id, token_hash, label, time.time())
        )
        return token_id

    def user_by_token_hash(self, token_hash: str) -> User | None:
        row = self._side.execute(
            "SELECT u.* FROM tokens t JOIN users u ON u.id = t.user_id WHERE t.hash = ? AND t.revoked IS NULL",
            (token_hash,),
        ).fetchone()
        return None if row is None else User(row[0], row[1], row[2], bool(row[3]), row[4])

    def revoke_token(self, token_id: str) -> None:
        self._side.execute("UPDATE tokens SET revoked = ? WHERE id = ?", (time.time(), token_id))

    def users(self) -> list[User]:
        rows = self._side.execute("SELECT * FROM users ORDER BY created").fetchall()
        return [User(r[0], r[1], r[2], bool(r[3]), r[4]) for r in rows]

    def audit(self, actor: str, action: str, target: str, detail: Mapping[str, Any]) -> None:
        self._side.execute(
            "INSERT INTO audit (time, actor, action, target, detail) VALUES (?,?,?,?,?)",
            (time.time(), actor, action, target, json.dumps(dict(detail), default=str)),
        )

    def audit_log(self, limit: int = 100, team: str | None = None) -> list[AuditEntry]:
        rows = self._side.execute("SELECT * FROM audit ORDER BY id DESC LIMIT ?", (limit,)).fetchall()
        return [AuditEntry(r[0], r[1], r[2], r[3], r[4], json.loads(r[5])) for r in rows]


def open_store(url: str | None = None) -> Any:
    """The real ``open_store`` once merged; until then the shim (SQLite only)."""
    try:
        from multispot.store import open_store as real  # type: ignore[attr-defined]
    except ImportError:
        path = url[len("sqlite:///") - 1 :] if url and url.startswith("sqlite:///") else None
        return ShimStore(path)
    return real(url)
