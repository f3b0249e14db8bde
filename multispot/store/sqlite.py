"""The SQLite job store (the embedded default): one file in WAL mode under ``$MULTISPOT_HOME``
(default ``~/.multispot``).

Jobs, their attempts and events. Several CLI processes and controllers may use it at once:
writes are short ``BEGIN IMMEDIATE`` transactions, and an attempt row is inserted (under a
primary key of job and attempt number) *before* the provider is asked to start it, so a
controller that dies and is replaced can never start the same attempt twice.

Another process holding the database locked (SQLITE_BUSY / "database is locked") is waited out
with backoff for up to ``LOCK_WAIT`` seconds (``$MULTISPOT_STORE_LOCK_WAIT``), then reported as a
``StoreError``. A store file that is empty or not a SQLite database is refused with a
``StoreError`` that says what happened: it is never silently replaced by a new, empty store.
A new store is created whole (schema included) under a temporary name and linked into place, so
no other process ever sees a half-made one, and it is readable by its owner only (0600).
A file of an older schema is upgraded in place, in one transaction, by the first process that opens it.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import threading
import time
import typing
import uuid
from collections.abc import Collection, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from multispot.errors import JobNotFound, StoreError
from multispot.status import Attempt, Handle, JobState, Placement, Usage
from multispot.store.base import (
    FUTURE_SLACK,
    WORKER_ROWS_KEPT_FOR,
    AuditEntry,
    Event,
    Group,
    GroupNotFound,
    JobRecord,
    Member,
    RefMatch,
    Select,
    User,
    WorkerInfo,
    check_token_hash,
    exists_already,
    group_by_ref,
    home,
    job_by_ref,
    lease_free,
    new_id,
    owner_alive,
)

_T = typing.TypeVar("_T")

SCHEMA_VERSION = 3
_SCHEMA_V1 = """
CREATE TABLE IF NOT EXISTS jobs (
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
CREATE INDEX IF NOT EXISTS jobs_by_name ON jobs (name, created);
CREATE TABLE IF NOT EXISTS attempts (
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
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id TEXT NOT NULL REFERENCES jobs (id),
    attempt INTEGER,
    time REAL NOT NULL,
    kind TEXT NOT NULL,
    message TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_job ON events (job_id, id);
"""
# Version 2 (team scale): who submitted a job and for which team; controller workers; teams,
# users and their tokens (sha256 digests only); the audit log.
_UPGRADE_V2 = """
ALTER TABLE jobs ADD COLUMN team TEXT NOT NULL DEFAULT 'default';
ALTER TABLE jobs ADD COLUMN submitted_by TEXT NOT NULL DEFAULT '';
CREATE INDEX IF NOT EXISTS jobs_by_team ON jobs (team, created);
CREATE INDEX IF NOT EXISTS events_by_kind ON events (job_id, kind, id);
CREATE TABLE IF NOT EXISTS workers (
    id TEXT PRIMARY KEY,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    started REAL NOT NULL,
    heartbeat REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS teams (
    name TEXT PRIMARY KEY,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS users (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    team TEXT NOT NULL REFERENCES teams (name),
    admin INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS tokens (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users (id),
    token_hash TEXT NOT NULL UNIQUE,
    label TEXT NOT NULL DEFAULT '',
    created REAL NOT NULL,
    revoked REAL
);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time REAL NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT '{}',
    team TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS audit_by_team ON audit (team, id);
"""
# Version 3: sweeps and arrays (a row per group, one per member). Files of version 2 may hold these
# tables already (the sweep module made them itself before they were the store's), hence IF NOT EXISTS.
_UPGRADE_V3 = """
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
CREATE INDEX IF NOT EXISTS sweep_groups_by_name ON sweep_groups (name, created);
"""
# Each step takes the schema from version n - 1 to n (index n - 1 is unused: a new file gets v1 first).
_UPGRADES: dict[int, str] = {2: _UPGRADE_V2, 3: _UPGRADE_V3}
# The WHERE clause of each way ``by_ref`` looks a row up (jobs and sweep_groups alike).
_BY_REF: dict[RefMatch, str] = {
    "id": "id = ?",
    "name": "name = ? ORDER BY created DESC LIMIT 1",
    "prefix": "id LIKE ? ESCAPE '\\' LIMIT 2",
}


LOCK_WAIT = 300.0  # seconds to wait out another process's lock before giving up
_BUSY_TIMEOUT_MS = 2000  # SQLite's own wait per try; the retry loop below does the rest


class SQLiteStore:
    """The ``Store`` on one SQLite file (``path``, default ``home()/jobs.sqlite``)."""

    def __init__(self, path: str | os.PathLike[str] | None = None, lock_wait: float | None = None) -> None:
        self.path = Path(path) if path else home() / "jobs.sqlite"
        if lock_wait is None:
            lock_wait = float(os.environ.get("MULTISPOT_STORE_LOCK_WAIT") or LOCK_WAIT)
        self.lock_wait = lock_wait
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if not self.path.exists():
                self._create()
            self._check_file()
            self._db = sqlite3.connect(
                self.path, timeout=_BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise self._error(exc) from None
        except OSError as exc:
            raise StoreError(f"cannot open the job store {self.path}: {exc.strerror or exc}") from None
        self._db.row_factory = sqlite3.Row
        # One connection for the handle, shared by its threads (a server's request threads) in turn;
        # reentrant because a transaction's body may read through query().
        self._lock = threading.RLock()
        self._retry(self._setup)

    def _setup(self) -> None:
        self._db.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
        self._db.execute("PRAGMA journal_mode = WAL")
        self._db.execute("PRAGMA synchronous = NORMAL")  # durable across process crashes in WAL mode
        self._db.execute("PRAGMA foreign_keys = ON")
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        tables = {row[0] for row in self._db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if version > SCHEMA_VERSION:
            raise StoreError(f"{self.path} was written by a newer multispot (schema {version}); upgrade")
        if version == 0 or not {"jobs", "attempts", "events"} <= tables:
            raise StoreError(
                f"{self.path} is a SQLite file but not a multispot job store (no schema): move it away "
                "if it is not yours, or restore the job store from a backup"
            )
        if version < SCHEMA_VERSION:
            self._upgrade()

    def _upgrade(self) -> None:
        """Bring an older file to ``SCHEMA_VERSION`` in one transaction; the version is read again
        under the write lock, so two processes opening the same old file upgrade it once."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            for target in range(version + 1, SCHEMA_VERSION + 1):
                for statement in _UPGRADES[target].split(";"):
                    if statement.strip():
                        self._db.execute(statement)
            self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except BaseException:
            self._rollback()
            raise
        self._db.execute("COMMIT")

    def _create(self) -> None:
        """A new store, schema and all, made under a temporary name and linked into place: another
        process either sees no file or a complete store, never an empty one."""
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        try:
            db = sqlite3.connect(tmp, isolation_level=None)
            try:
                upgrades = "".join(_UPGRADES[v] for v in range(2, SCHEMA_VERSION + 1))
                db.executescript(
                    f"BEGIN; {_SCHEMA_V1} {upgrades} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
                )
                db.execute("PRAGMA journal_mode = WAL")
            finally:
                db.close()
            try:
                os.link(tmp, self.path)
            except FileExistsError:
                pass  # another process created it first: use theirs
        finally:
            for suffix in ("", "-wal", "-shm", "-journal"):
                Path(f"{tmp}{suffix}").unlink(missing_ok=True)

    def _check_file(self) -> None:
        # os.stat, never open(): closing any descriptor of the file drops every POSIX lock this
        # process holds on it (fcntl semantics), those of another open store's connection included;
        # another process then takes itself for the last user, removes the WAL, and that connection
        # goes on reading an old snapshot. A file that is not a database is reported by SQLite itself
        # on first use ("file is not a database"), which ``_error`` explains.
        if os.stat(self.path).st_size == 0:
            raise StoreError(
                f"the job store {self.path} is empty (0 bytes): it was truncated, and every job record "
                "in it is gone. Restore it from a backup, or move it away to start a new, empty store "
                "(multispot never replaces it on its own)"
            )

    def _error(self, exc: sqlite3.Error) -> StoreError:
        text = str(exc)
        if "readonly" in text or "unable to open" in text:
            hint = "check that you own it and its folder (another user's home cannot be shared)"
        elif "malformed" in text or "not a database" in text or "corrupt" in text:
            hint = (
                "it is corrupt or not a SQLite database (overwritten): restore it from a backup, or "
                "move it away to start a new, empty store"
            )
        else:
            hint = "check the file and the disk it is on"
        return StoreError(f"the job store {self.path} cannot be used ({text}): {hint}")

    def _retry(self, fn: typing.Callable[[], _T]) -> _T:
        """``fn()``, waiting out another process's lock with backoff for up to ``lock_wait`` s."""
        deadline = time.monotonic() + self.lock_wait
        delay = 0.05
        while True:
            try:
                return fn()
            except sqlite3.OperationalError as exc:
                if not _busy(exc):
                    raise self._error(exc) from None
                left = deadline - time.monotonic()
                if left <= 0:
                    raise StoreError(
                        f"the job store {self.path} has been locked by another process for more than "
                        f"{self.lock_wait:g}s: try again once it is done (nothing was changed)"
                    ) from None
                time.sleep(min(delay, left))
                delay = min(delay * 2, 1.0)
            except sqlite3.IntegrityError:
                raise
            except sqlite3.DatabaseError as exc:
                raise self._error(exc) from None

    def query(self, sql: str, args: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        """Rows of one read; for modules that keep tables of their own in this file (sweeps)."""
        with self._lock:
            return self._retry(lambda: self._db.execute(sql, args).fetchall())

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One ``BEGIN IMMEDIATE`` write transaction (another process's lock waited out); for this
        class and for modules that keep tables of their own in this file (sweeps)."""
        with self._lock:  # one connection: threads of this process take turns
            self._retry(lambda: self._db.execute("BEGIN IMMEDIATE"))
            try:
                yield self._db
            except sqlite3.IntegrityError:
                self._db.execute("ROLLBACK")
                raise
            except sqlite3.Error as exc:
                self._rollback()
                raise self._error(exc) from None
            except BaseException:
                self._rollback()
                raise
            self._retry(lambda: self._db.execute("COMMIT"))

    def _rollback(self) -> None:
        try:
            self._db.execute("ROLLBACK")
        except sqlite3.Error:
            pass  # no transaction left to roll back

    # ----------------------------------------------------------------- jobs

    def create_job(self, record: JobRecord) -> None:
        try:
            with self.transaction() as db:
                db.execute(
                    "INSERT INTO jobs (id, name, spec, provider, state, message, checkpoint_uri, output_uri,"
                    " options, created, updated, team, submitted_by) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    (
                        record.id,
                        record.name,
                        json.dumps(record.spec),
                        record.provider,
                        record.state.value,
                        record.message,
                        record.checkpoint_uri,
                        record.output_uri,
                        json.dumps(record.options),
                        record.created,
                        record.updated,
                        record.team,
                        record.submitted_by,
                    ),
                )
                self._event(db, record.id, None, "created", f"job {record.id} accepted for {record.provider}")
        except sqlite3.IntegrityError:
            raise exists_already("job", record.id, str(self.path)) from None

    def get_job(self, ref: str) -> JobRecord:
        """By id, by name (the newest job of that name), or by a unique id prefix."""
        return _job(job_by_ref(ref, str(self.path), self._select("jobs")))

    def _select(self, table: str) -> Select[sqlite3.Row]:
        """``table``'s rows by reference, as ``by_ref`` asks for them."""
        return lambda how, value: self.query(f"SELECT * FROM {table} WHERE {_BY_REF[how]}", (value,))

    def jobs(
        self, limit: int = 50, team: str | None = None, states: Collection[JobState] | None = None
    ) -> list[JobRecord]:
        where, args = ["1 = 1"], list[Any]()
        if team is not None:
            where.append("team = ?")
            args.append(team)
        if states is not None:
            values = [JobState(state).value for state in states]
            where.append(f"state IN ({','.join('?' * len(values))})" if values else "0 = 1")
            args.extend(values)
        rows = self.query(
            f"SELECT * FROM jobs WHERE {' AND '.join(where)} ORDER BY created DESC LIMIT ?", (*args, limit)
        )
        return [_job(row) for row in rows]

    def update_job(self, job_id: str, **fields: Any) -> None:
        if not fields:
            return
        fields["updated"] = time.time()
        values = [_column(v) for v in fields.values()]
        sets = ", ".join(f"{name} = ?" for name in fields)
        with self.transaction() as db:
            db.execute(f"UPDATE jobs SET {sets} WHERE id = ?", (*values, job_id))

    def request_cancel(self, job_id: str) -> None:
        with self.transaction() as db:
            db.execute(
                "UPDATE jobs SET cancel_requested = 1, updated = ? WHERE id = ?", (time.time(), job_id)
            )
            self._event(db, job_id, None, "cancel", "cancel requested")

    # ----------------------------------------------------------------- controller lease

    def acquire(self, job_id: str, owner: str, stale_after: float) -> bool:
        """Become the job's controller if nobody is, or the holder is dead or silent for ``stale_after``."""
        now = time.time()
        with self.transaction() as db:
            row = db.execute("SELECT owner, heartbeat FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None:
                raise JobNotFound(job_id)
            holder = row["owner"]
            free = lease_free(holder, row["heartbeat"], owner, now, stale_after)
            if free:
                db.execute("UPDATE jobs SET owner = ?, heartbeat = ? WHERE id = ?", (owner, now, job_id))
                if holder not in (None, owner):
                    self._event(
                        db, job_id, None, "controller", f"took over from a dead controller ({holder})"
                    )
            return free

    def heartbeat(self, job_id: str, owner: str) -> bool:
        """Refresh the lease; False if another controller has taken it."""
        with self.transaction() as db:
            cur = db.execute(
                "UPDATE jobs SET heartbeat = ? WHERE id = ? AND owner = ?", (time.time(), job_id, owner)
            )
            return cur.rowcount == 1

    def release(self, job_id: str, owner: str) -> None:
        with self.transaction() as db:
            db.execute("UPDATE jobs SET owner = NULL WHERE id = ? AND owner = ?", (job_id, owner))

    def controller_alive(self, job_id: str, stale_after: float) -> bool:
        rows = self.query("SELECT owner, heartbeat FROM jobs WHERE id = ?", (job_id,))
        if not rows or rows[0]["owner"] is None:
            return False
        age = time.time() - (rows[0]["heartbeat"] or 0.0)
        return -FUTURE_SLACK <= age <= stale_after and owner_alive(rows[0]["owner"])

    def lease_jobs(self, worker: str, limit: int, stale_after: float) -> list[str]:
        """Claim up to ``limit`` unfinished jobs in one write transaction: ``worker``'s own first,
        then the oldest free or stale ones."""
        if limit <= 0:
            return []
        over = [state.value for state in JobState if state.job_terminal]
        now = time.time()
        claimed: list[str] = []
        with self.transaction() as db:
            rows = db.execute(
                f"SELECT id, owner, heartbeat FROM jobs WHERE state NOT IN ({','.join('?' * len(over))})"
                " ORDER BY owner IS NOT ?, created",
                (*over, worker),
            ).fetchall()
            for row in rows:
                if len(claimed) == limit:
                    break
                holder = row["owner"]
                if not lease_free(holder, row["heartbeat"], worker, now, stale_after):
                    continue
                db.execute("UPDATE jobs SET owner = ?, heartbeat = ? WHERE id = ?", (worker, now, row["id"]))
                if holder not in (None, worker):
                    self._event(db, row["id"], None, "controller", f"{worker} took over from {holder}")
                claimed.append(row["id"])
        return claimed

    # ----------------------------------------------------------------- attempts

    def add_attempt(self, attempt: Attempt) -> bool:
        """Insert attempt ``n``; False if it already exists (another controller got there first)."""
        try:
            with self.transaction() as db:
                db.execute(
                    "INSERT INTO attempts (job_id, n, placement, state, message) VALUES (?,?,?,?,?)",
                    (
                        attempt.job_id,
                        attempt.n,
                        json.dumps(attempt.placement.to_dict()),
                        attempt.state.value,
                        attempt.message,
                    ),
                )
                self._event(
                    db, attempt.job_id, attempt.n, "attempt", f"attempt {attempt.n} on {attempt.placement}"
                )
        except sqlite3.IntegrityError as exc:
            if "FOREIGN KEY" in str(exc):  # no such job: not "someone else got there first"
                raise JobNotFound(f"no job {attempt.job_id!r} in {self.path}") from exc
            return False
        return True

    def update_attempt(self, job_id: str, n: int, **fields: Any) -> None:
        if not fields:
            return
        values = [_column(v) for v in fields.values()]
        sets = ", ".join(f"{name} = ?" for name in fields)
        with self.transaction() as db:
            db.execute(f"UPDATE attempts SET {sets} WHERE job_id = ? AND n = ?", (*values, job_id, n))

    def attempts(self, job_id: str) -> list[Attempt]:
        rows = self.query("SELECT * FROM attempts WHERE job_id = ? ORDER BY n", (job_id,))
        return [_attempt(row) for row in rows]

    # ----------------------------------------------------------------- events

    def add_event(self, job_id: str, attempt: int | None, kind: str, message: str) -> None:
        with self.transaction() as db:
            self._event(db, job_id, attempt, kind, message)

    def events(self, job_id: str, after: int = 0) -> list[tuple[int, Event]]:
        rows = self.query("SELECT * FROM events WHERE job_id = ? AND id > ? ORDER BY id", (job_id, after))
        return [(row["id"], _event(row)) for row in rows]

    def events_of_kind(self, job_id: str, kind: str, attempt: int | None = None) -> list[tuple[int, Event]]:
        sql, args = "SELECT * FROM events WHERE job_id = ? AND kind = ?", list[Any]([job_id, kind])
        if attempt is not None:
            sql += " AND attempt = ?"
            args.append(attempt)
        return [(row["id"], _event(row)) for row in self.query(sql + " ORDER BY id", tuple(args))]

    @staticmethod
    def _event(db: sqlite3.Connection, job_id: str, attempt: int | None, kind: str, message: str) -> None:
        db.execute(
            "INSERT INTO events (job_id, attempt, time, kind, message) VALUES (?,?,?,?,?)",
            (job_id, attempt, time.time(), kind, message),
        )

    # ----------------------------------------------------------------- controller workers

    def register_worker(self, worker: str, host: str, pid: int) -> None:
        now = time.time()
        with self.transaction() as db:
            db.execute(
                "INSERT INTO workers (id, host, pid, started, heartbeat) VALUES (?,?,?,?,?)"
                " ON CONFLICT (id) DO UPDATE SET host = excluded.host, pid = excluded.pid,"
                " started = excluded.started, heartbeat = excluded.heartbeat",
                (worker, host, pid, now, now),
            )
            db.execute("DELETE FROM workers WHERE heartbeat < ?", (now - WORKER_ROWS_KEPT_FOR,))

    def beat_worker(self, worker: str) -> None:
        with self.transaction() as db:
            db.execute("UPDATE workers SET heartbeat = ? WHERE id = ?", (time.time(), worker))

    def workers(self, stale_after: float) -> list[WorkerInfo]:
        now = time.time()
        rows = self.query("SELECT * FROM workers WHERE heartbeat >= ? ORDER BY started", (now - stale_after,))
        found = [WorkerInfo(r["id"], r["host"], r["pid"], r["started"], r["heartbeat"]) for r in rows]
        return [w for w in found if w.heartbeat <= now + FUTURE_SLACK and _process_alive(w)]

    def remove_worker(self, worker: str) -> None:
        with self.transaction() as db:
            db.execute("DELETE FROM workers WHERE id = ?", (worker,))

    # ----------------------------------------------------------------- identity

    def create_team(self, name: str) -> None:
        with self.transaction() as db:
            db.execute("INSERT OR IGNORE INTO teams (name, created) VALUES (?, ?)", (name, time.time()))

    def create_user(self, name: str, team: str, admin: bool = False) -> User:
        user = User(new_id("user"), name, team, admin, time.time())
        with self.transaction() as db:
            if db.execute("SELECT 1 FROM users WHERE name = ?", (name,)).fetchone():
                raise StoreError(f"a user named {name!r} exists already: pick another name")
            db.execute("INSERT OR IGNORE INTO teams (name, created) VALUES (?, ?)", (team, user.created))
            db.execute(
                "INSERT INTO users (id, name, team, admin, created) VALUES (?,?,?,?,?)",
                (user.id, name, team, int(admin), user.created),
            )
        return user

    def add_token(self, user_id: str, token_hash: str, label: str) -> str:
        check_token_hash(token_hash)
        token_id = new_id("tok")
        with self.transaction() as db:
            if not db.execute("SELECT 1 FROM users WHERE id = ?", (user_id,)).fetchone():
                raise StoreError(f"no user {user_id!r}: `users()` lists them")
            db.execute(
                "INSERT INTO tokens (id, user_id, token_hash, label, created) VALUES (?,?,?,?,?)",
                (token_id, user_id, token_hash, label, time.time()),
            )
        return token_id

    def user_by_token_hash(self, token_hash: str) -> User | None:
        rows = self.query(
            "SELECT users.* FROM tokens JOIN users ON users.id = tokens.user_id"
            " WHERE tokens.token_hash = ? AND tokens.revoked IS NULL",
            (token_hash,),
        )
        return _user(rows[0]) if rows else None

    def revoke_token(self, token_id: str) -> None:
        with self.transaction() as db:
            cur = db.execute(
                "UPDATE tokens SET revoked = COALESCE(revoked, ?) WHERE id = ?", (time.time(), token_id)
            )
            if cur.rowcount != 1:
                raise StoreError(f"no token {token_id!r}")

    def users(self) -> list[User]:
        return [_user(row) for row in self.query("SELECT * FROM users ORDER BY created, name")]

    # ----------------------------------------------------------------- audit

    def audit(self, actor: str, action: str, target: str, detail: Mapping[str, Any]) -> None:
        with self.transaction() as db:
            team = detail.get("team")
            if not isinstance(team, str):
                row = db.execute("SELECT team FROM users WHERE name = ? OR id = ?", (actor, actor)).fetchone()
                team = row["team"] if row else ""
            db.execute(
                "INSERT INTO audit (time, actor, action, target, detail, team) VALUES (?,?,?,?,?,?)",
                (time.time(), actor, action, target, json.dumps(dict(detail), default=str), team),
            )

    def audit_log(self, limit: int = 100, team: str | None = None) -> list[AuditEntry]:
        if team is None:
            rows = self.query("SELECT * FROM audit ORDER BY id DESC LIMIT ?", (limit,))
        else:
            rows = self.query("SELECT * FROM audit WHERE team = ? ORDER BY id DESC LIMIT ?", (team, limit))
        return [
            AuditEntry(r["id"], r["time"], r["actor"], r["action"], r["target"], json.loads(r["detail"]))
            for r in rows
        ]

    # ----------------------------------------------------------------- sweeps and arrays

    def create_group(self, group: Group) -> None:
        try:
            with self.transaction() as db:
                db.execute(
                    "INSERT INTO sweep_groups (id, kind, name, spec, created, state, message)"
                    " VALUES (?,?,?,?,?,?,?)",
                    (
                        group.id,
                        group.kind,
                        group.name,
                        json.dumps(group.spec),
                        group.created,
                        group.state,
                        "",
                    ),
                )
        except sqlite3.IntegrityError:
            raise exists_already("sweep or array", group.id, str(self.path)) from None

    def get_group(self, ref: str) -> Group:
        return _group(group_by_ref(ref, self._select("sweep_groups")))

    def groups(self, limit: int = 50) -> list[Group]:
        rows = self.query("SELECT * FROM sweep_groups ORDER BY created DESC LIMIT ?", (limit,))
        return [_group(row) for row in rows]

    def finish_group(self, group_id: str, state: str, message: str) -> None:
        with self.transaction() as db:
            db.execute(
                "UPDATE sweep_groups SET state = ?, message = ?, ended = ? WHERE id = ? AND ended IS NULL",
                (state, message, time.time(), group_id),
            )

    def set_group_message(self, group_id: str, message: str) -> None:
        with self.transaction() as db:
            db.execute("UPDATE sweep_groups SET message = ? WHERE id = ?", (message, group_id))

    def acquire_group(self, group_id: str, owner: str, stale_after: float) -> bool:
        now = time.time()
        with self.transaction() as db:
            row = db.execute("SELECT owner, heartbeat FROM sweep_groups WHERE id = ?", (group_id,)).fetchone()
            if row is None:
                raise GroupNotFound(f"no sweep or array {group_id!r}")
            free = lease_free(row["owner"], row["heartbeat"], owner, now, stale_after)
            if free:
                db.execute(
                    "UPDATE sweep_groups SET owner = ?, heartbeat = ? WHERE id = ?", (owner, now, group_id)
                )
            return free

    def heartbeat_group(self, group_id: str, owner: str) -> bool:
        with self.transaction() as db:
            cur = db.execute(
                "UPDATE sweep_groups SET heartbeat = ? WHERE id = ? AND owner = ?",
                (time.time(), group_id, owner),
            )
            return cur.rowcount == 1

    def release_group(self, group_id: str, owner: str) -> None:
        with self.transaction() as db:
            db.execute(
                "UPDATE sweep_groups SET owner = NULL, heartbeat = NULL WHERE id = ? AND owner = ?",
                (group_id, owner),
            )

    def add_member(self, member: Member) -> Member:
        with self.transaction() as db:
            db.execute(
                "INSERT OR IGNORE INTO sweep_members (group_id, n, jobs, params, created) VALUES (?,?,?,?,?)",
                (member.group_id, member.n, json.dumps(member.jobs), json.dumps(member.params), time.time()),
            )
        return self.member(member.group_id, member.n)

    def member(self, group_id: str, n: int) -> Member:
        rows = self.query("SELECT * FROM sweep_members WHERE group_id = ? AND n = ?", (group_id, n))
        if not rows:
            raise JobNotFound(f"{group_id} has no member {n}")
        return _member(rows[0])

    def members(self, group_id: str) -> list[Member]:
        rows = self.query("SELECT * FROM sweep_members WHERE group_id = ? ORDER BY n", (group_id,))
        return [_member(row) for row in rows]

    def add_member_job(self, group_id: str, n: int, job_id: str) -> None:
        with self.transaction() as db:
            row = db.execute(
                "SELECT jobs FROM sweep_members WHERE group_id = ? AND n = ?", (group_id, n)
            ).fetchone()
            if row is None:
                raise JobNotFound(f"{group_id} has no member {n}")
            jobs = json.loads(row["jobs"])
            if job_id not in jobs:
                jobs.append(job_id)
            db.execute(
                "UPDATE sweep_members SET jobs = ? WHERE group_id = ? AND n = ?",
                (json.dumps(jobs), group_id, n),
            )

    def set_member_outcome(
        self, group_id: str, n: int, outcome: str, message: str = "", value: float | None = None
    ) -> None:
        with self.transaction() as db:
            db.execute(
                "UPDATE sweep_members SET outcome = ?, message = ?, value = ? WHERE group_id = ? AND n = ?",
                (outcome, message, value, group_id, n),
            )

    def library_engine(self, namespace: str) -> tuple[str, dict[str, Any]]:
        """This file (SQLite has no schemas: the library's tables sit beside the store's), with a
        long lock timeout: the store's writers hold the lock briefly, and waiting beats failing."""
        return f"sqlite:///{self.path}", {"connect_args": {"timeout": 120}}

    # ----------------------------------------------------------------- upkeep

    def check(self) -> list[str]:
        """Integrity problems, if any (used by the chaos tests and ``multispot doctor``)."""
        problems = [row[0] for row in self.query("PRAGMA integrity_check") if row[0] != "ok"]
        for row in self.query("SELECT job_id, COUNT(*) AS c, MAX(n) AS m FROM attempts GROUP BY job_id"):
            if row["c"] != row["m"]:
                problems.append(f"{row['job_id']}: attempts are not numbered 1..{row['m']}")
        return problems


# --------------------------------------------------------------------------- row mapping


def _column(value: Any) -> Any:
    if isinstance(value, JobState):
        return value.value
    if isinstance(value, (Handle, Placement, Usage)):
        return json.dumps(value.to_dict())
    if isinstance(value, dict):
        return json.dumps(value)
    if isinstance(value, bool):
        return int(value)
    return value


def _job(row: sqlite3.Row) -> JobRecord:
    return JobRecord(
        id=row["id"],
        name=row["name"],
        spec=json.loads(row["spec"]),
        provider=row["provider"],
        state=JobState(row["state"]),
        checkpoint_uri=row["checkpoint_uri"],
        output_uri=row["output_uri"],
        options=json.loads(row["options"]),
        message=row["message"],
        created=row["created"],
        updated=row["updated"],
        ended=row["ended"],
        cancel_requested=bool(row["cancel_requested"]),
        owner=row["owner"],
        heartbeat=row["heartbeat"],
        team=row["team"],
        submitted_by=row["submitted_by"],
    )


def _event(row: sqlite3.Row) -> Event:
    return Event(row["job_id"], row["attempt"], row["time"], row["kind"], row["message"])


def _user(row: sqlite3.Row) -> User:
    return User(row["id"], row["name"], row["team"], bool(row["admin"]), row["created"])


def _group(row: sqlite3.Row) -> Group:
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


def _member(row: sqlite3.Row) -> Member:
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


def _process_alive(worker: WorkerInfo) -> bool:
    """A worker of this host whose process is gone is dead whatever its heartbeat says."""
    return worker.host != socket.gethostname() or owner_alive(f"{worker.host}:{worker.pid}")


def _attempt(row: sqlite3.Row) -> Attempt:
    return Attempt(
        job_id=row["job_id"],
        n=row["n"],
        placement=Placement.from_dict(json.loads(row["placement"])),
        state=JobState(row["state"]),
        handle=Handle.from_dict(json.loads(row["handle"])) if row["handle"] else None,
        message=row["message"],
        native_state=row["native_state"],
        interruptions=row["interruptions"],
        submitted=row["submitted"],
        started=row["started"],
        ended=row["ended"],
        usage=Usage.from_dict(json.loads(row["usage"])) if row["usage"] else None,
        last_checkpoint=row["last_checkpoint"],
    )


def _busy(exc: sqlite3.OperationalError) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text


JobStore = SQLiteStore  # the name before there were two backends
