"""The PostgreSQL job store: a team's shared store, for the server and its controller workers.

SQLAlchemy 2 Core over psycopg 3; the schema is made and upgraded by the Alembic migrations in
``multispot/store/migrations/``, run when the store opens under a transaction-scoped advisory
lock, so replicas starting together migrate once. Leases are ``SELECT … FOR UPDATE SKIP LOCKED``:
two workers leasing at once never wait on, nor take, the same job.

A lost connection (PostgreSQL restarted, a failover, a network blip) is not a failed job: the
pool checks connections before use (``pool_pre_ping``) and each operation is retried on a fresh
connection, with backoff, for up to ``reconnect_wait`` seconds (``$MULTISPOT_STORE_RECONNECT_WAIT``,
default 120), then reported as a ``StoreError``. Each operation is one transaction, so a retry
never applies half of one. Caveat: when the server dies after committing but before answering,
the retry runs again; updates are idempotent, an attempt insert then answers False ("already
there"; never a second submission), an event or audit insert may appear twice.

Errors name the database with its password replaced by ``***``.
"""

from __future__ import annotations

import json
import os
import re
import socket
import time
import typing
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql import insert as pg_insert

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
    job_by_ref,
    lease_free,
    new_id,
    owner_alive,
    redact_url,
)

_T = typing.TypeVar("_T")

RECONNECT_WAIT = 120.0  # seconds to keep retrying a lost database before giving up
_MIGRATION_LOCK = 0x6D756C7469  # pg_advisory_xact_lock key: "multi"
# SQLSTATE classes worth a retry: connection exception, operator intervention (shutdown,
# starting up), transaction rollback (serialization failure, deadlock), insufficient resources.
_TRANSIENT_CLASSES = ("08", "57", "40", "53")
_NAMESPACE = re.compile(r"[a-z_][a-z0-9_]{0,62}")
_PERMANENT_CONNECT_ERRORS = ("does not exist", "authentication failed", "pg_hba.conf", "permission denied")

TIME = sa.Double
METADATA = sa.MetaData()
JOBS = sa.Table(
    "jobs",
    METADATA,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("spec", JSONB, nullable=False),
    sa.Column("provider", sa.Text, nullable=False),
    sa.Column("state", sa.Text, nullable=False),
    sa.Column("message", sa.Text, nullable=False, server_default=""),
    sa.Column("checkpoint_uri", sa.Text, nullable=False),
    sa.Column("output_uri", sa.Text, nullable=False),
    sa.Column("options", JSONB, nullable=False, server_default="{}"),
    sa.Column("created", TIME, nullable=False),
    sa.Column("updated", TIME, nullable=False),
    sa.Column("ended", TIME),
    sa.Column("cancel_requested", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("owner", sa.Text),
    sa.Column("heartbeat", TIME),
    sa.Column("team", sa.Text, nullable=False, server_default="default"),
    sa.Column("submitted_by", sa.Text, nullable=False, server_default=""),
    sa.Index("jobs_by_name", "name", "created"),
    sa.Index("jobs_by_team", "team", "created"),
    sa.Index("jobs_by_state", "state"),
)
ATTEMPTS = sa.Table(
    "attempts",
    METADATA,
    sa.Column("job_id", sa.Text, sa.ForeignKey("jobs.id"), primary_key=True),
    sa.Column("n", sa.Integer, primary_key=True),
    sa.Column("placement", JSONB, nullable=False),
    sa.Column("state", sa.Text, nullable=False),
    sa.Column("handle", JSONB),
    sa.Column("message", sa.Text, nullable=False, server_default=""),
    sa.Column("native_state", sa.Text, nullable=False, server_default=""),
    sa.Column("interruptions", sa.Integer, nullable=False, server_default="0"),
    sa.Column("submitted", TIME),
    sa.Column("started", TIME),
    sa.Column("ended", TIME),
    sa.Column("usage", JSONB),
    sa.Column("last_checkpoint", TIME),
)
EVENTS = sa.Table(
    "events",
    METADATA,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("job_id", sa.Text, sa.ForeignKey("jobs.id"), nullable=False),
    sa.Column("attempt", sa.Integer),
    sa.Column("time", TIME, nullable=False),
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("message", sa.Text, nullable=False),
    sa.Index("events_by_job", "job_id", "id"),
    sa.Index("events_by_kind", "job_id", "kind", "id"),
)
WORKERS = sa.Table(
    "workers",
    METADATA,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("host", sa.Text, nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("started", TIME, nullable=False),
    sa.Column("heartbeat", TIME, nullable=False),
)
TEAMS = sa.Table(
    "teams",
    METADATA,
    sa.Column("name", sa.Text, primary_key=True),
    sa.Column("created", TIME, nullable=False),
)
USERS = sa.Table(
    "users",
    METADATA,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("name", sa.Text, nullable=False, unique=True),
    sa.Column("team", sa.Text, sa.ForeignKey("teams.name"), nullable=False),
    sa.Column("admin", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("created", TIME, nullable=False),
)
TOKENS = sa.Table(
    "tokens",
    METADATA,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("user_id", sa.Text, sa.ForeignKey("users.id"), nullable=False),
    sa.Column("token_hash", sa.Text, nullable=False, unique=True),
    sa.Column("label", sa.Text, nullable=False, server_default=""),
    sa.Column("created", TIME, nullable=False),
    sa.Column("revoked", TIME),
)
AUDIT = sa.Table(
    "audit",
    METADATA,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("time", TIME, nullable=False),
    sa.Column("actor", sa.Text, nullable=False),
    sa.Column("action", sa.Text, nullable=False),
    sa.Column("target", sa.Text, nullable=False),
    sa.Column("detail", JSONB, nullable=False, server_default="{}"),
    sa.Column("team", sa.Text, nullable=False, server_default=""),
    sa.Index("audit_by_team", "team", "id"),
)
SWEEP_GROUPS = sa.Table(
    "sweep_groups",
    METADATA,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("spec", JSONB, nullable=False),
    sa.Column("created", TIME, nullable=False),
    sa.Column("state", sa.Text, nullable=False),
    sa.Column("message", sa.Text, nullable=False, server_default=""),
    sa.Column("ended", TIME),
    sa.Column("owner", sa.Text),
    sa.Column("heartbeat", TIME),
    sa.Index("sweep_groups_by_name", "name", "created"),
)
SWEEP_MEMBERS = sa.Table(
    "sweep_members",
    METADATA,
    sa.Column("group_id", sa.Text, sa.ForeignKey("sweep_groups.id"), primary_key=True),
    sa.Column("n", sa.Integer, primary_key=True),
    sa.Column("jobs", JSONB, nullable=False),
    sa.Column("params", JSONB, nullable=False, server_default="{}"),
    sa.Column("outcome", sa.Text, nullable=False, server_default=""),
    sa.Column("message", sa.Text, nullable=False, server_default=""),
    sa.Column("value", sa.Double),
    sa.Column("created", TIME, nullable=False),
)


def driver_url(url: str) -> sa.URL:
    """``url`` for SQLAlchemy with psycopg 3 (a bare ``postgresql://`` would mean psycopg2)."""
    scheme, sep, rest = url.partition("://")
    if scheme in ("postgresql", "postgres"):
        scheme = "postgresql+psycopg"
    try:
        return sa.make_url(f"{scheme}{sep}{rest}")
    except sa.exc.ArgumentError:
        raise StoreError(
            f"{redact_url(url)!r} is not a database URL: postgresql://user:pw@host:5432/db"
        ) from None


class PostgresStore:
    """The ``Store`` on a PostgreSQL database (``postgresql://user:password@host:port/dbname``)."""

    def __init__(self, url: str, reconnect_wait: float | None = None) -> None:
        """``reconnect_wait``: seconds to retry a lost database, when the operator has not set
        ``$MULTISPOT_STORE_RECONNECT_WAIT`` (their choice stands); default 120 s."""
        chosen = os.environ.get("MULTISPOT_STORE_RECONNECT_WAIT")
        if chosen:
            reconnect_wait = float(chosen)
        self.reconnect_wait = RECONNECT_WAIT if reconnect_wait is None else reconnect_wait
        self._url = driver_url(url)
        self.url = self._url.render_as_string(hide_password=True)  # safe to print
        self._secret = self._url.password if isinstance(self._url.password, str) else None
        self._engine = sa.create_engine(self._url, pool_pre_ping=True, pool_size=5, max_overflow=10)
        self._run(self._migrate)

    def __repr__(self) -> str:
        return f"PostgresStore({self.url!r})"

    def close(self) -> None:
        self._engine.dispose()

    # ----------------------------------------------------------------- plumbing

    def _migrate(self, conn: sa.Connection) -> None:
        """Bring the schema to Alembic's head; the advisory lock is held until this transaction
        ends, so concurrent openers migrate one after the other (the later ones find nothing to do)."""
        from pathlib import Path

        from alembic import command
        from alembic.config import Config

        conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_MIGRATION_LOCK)))
        config = Config()
        config.set_main_option("script_location", str(Path(__file__).with_name("migrations")))
        config.attributes["connection"] = conn
        command.upgrade(config, "head")

    def _run(self, fn: Callable[[sa.Connection], _T]) -> _T:
        """``fn(conn)`` in one transaction; a lost connection is retried on a fresh one."""
        deadline = time.monotonic() + self.reconnect_wait
        delay = 0.1
        while True:
            try:
                with self._engine.begin() as conn:
                    return fn(conn)
            except sa.exc.DBAPIError as exc:
                if not _transient(exc):
                    raise self._error(exc) from None
                left = deadline - time.monotonic()
                if left <= 0:
                    raise StoreError(
                        f"the job store {self.url} has been unreachable for more than "
                        f"{self.reconnect_wait:g}s ({self._text(exc)}): check that the database is up"
                    ) from None
                time.sleep(min(delay, left))
                delay = min(delay * 2, 2.0)

    def _text(self, exc: sa.exc.DBAPIError) -> str:
        text = str(exc.orig).strip().splitlines()[0] if exc.orig is not None else type(exc).__name__
        return text.replace(self._secret, "***") if self._secret else text

    def _error(self, exc: sa.exc.DBAPIError) -> StoreError:
        return StoreError(f"the job store {self.url} cannot be used: {self._text(exc)}")

    @staticmethod
    def _event(conn: sa.Connection, job_id: str, attempt: int | None, kind: str, message: str) -> None:
        conn.execute(
            EVENTS.insert().values(
                job_id=job_id, attempt=attempt, time=time.time(), kind=kind, message=message
            )
        )

    # ----------------------------------------------------------------- jobs

    def create_job(self, record: JobRecord) -> None:
        values = {
            "id": record.id,
            "name": record.name,
            "spec": record.spec,
            "provider": record.provider,
            "state": record.state.value,
            "message": record.message,
            "checkpoint_uri": record.checkpoint_uri,
            "output_uri": record.output_uri,
            "options": record.options,
            "created": record.created,
            "updated": record.updated,
            "team": record.team,
            "submitted_by": record.submitted_by,
        }

        def create(conn: sa.Connection) -> bool:
            query = pg_insert(JOBS).values(**values).on_conflict_do_nothing().returning(JOBS.c.id)
            inserted = conn.execute(query).first() is not None  # an INSERT's rowcount is not reliable here
            if inserted:
                self._event(
                    conn, record.id, None, "created", f"job {record.id} accepted for {record.provider}"
                )
            return inserted

        if not self._run(create):
            raise exists_already("job", record.id, self.url)

    def get_job(self, ref: str) -> JobRecord:
        return _job(self._run(lambda conn: job_by_ref(ref, self.url, _select(conn, JOBS))))

    def jobs(
        self, limit: int = 50, team: str | None = None, states: Collection[JobState] | None = None
    ) -> list[JobRecord]:
        query = sa.select(JOBS).order_by(JOBS.c.created.desc()).limit(limit)
        if team is not None:
            query = query.where(JOBS.c.team == team)
        if states is not None:
            query = query.where(JOBS.c.state.in_([JobState(state).value for state in states]))
        return [_job(row) for row in self._run(lambda conn: conn.execute(query).all())]

    def update_job(self, job_id: str, **fields: Any) -> None:
        if not fields:
            return
        values = {name: _column(value) for name, value in fields.items()} | {"updated": time.time()}
        self._run(lambda conn: conn.execute(JOBS.update().where(JOBS.c.id == job_id).values(**values)))

    def request_cancel(self, job_id: str) -> None:
        def cancel(conn: sa.Connection) -> None:
            conn.execute(
                JOBS.update().where(JOBS.c.id == job_id).values(cancel_requested=True, updated=time.time())
            )
            self._event(conn, job_id, None, "cancel", "cancel requested")

        self._run(cancel)

    # ----------------------------------------------------------------- controller leases

    def acquire(self, job_id: str, owner: str, stale_after: float) -> bool:
        def take(conn: sa.Connection) -> bool:
            now = time.time()
            row = conn.execute(
                sa.select(JOBS.c.owner, JOBS.c.heartbeat).where(JOBS.c.id == job_id).with_for_update()
            ).first()
            if row is None:
                raise JobNotFound(job_id)
            free = lease_free(row.owner, row.heartbeat, owner, now, stale_after)
            if free:
                conn.execute(JOBS.update().where(JOBS.c.id == job_id).values(owner=owner, heartbeat=now))
                if row.owner not in (None, owner):
                    self._event(
                        conn, job_id, None, "controller", f"took over from a dead controller ({row.owner})"
                    )
            return free

        return self._run(take)

    def heartbeat(self, job_id: str, owner: str) -> bool:
        query = JOBS.update().where(JOBS.c.id == job_id, JOBS.c.owner == owner)
        return self._run(lambda conn: conn.execute(query.values(heartbeat=time.time())).rowcount == 1)

    def release(self, job_id: str, owner: str) -> None:
        query = JOBS.update().where(JOBS.c.id == job_id, JOBS.c.owner == owner).values(owner=None)
        self._run(lambda conn: conn.execute(query))

    def controller_alive(self, job_id: str, stale_after: float) -> bool:
        query = sa.select(JOBS.c.owner, JOBS.c.heartbeat).where(JOBS.c.id == job_id)
        row = self._run(lambda conn: conn.execute(query).first())
        if row is None or row.owner is None:
            return False
        age = time.time() - (row.heartbeat or 0.0)
        return -FUTURE_SLACK <= age <= stale_after and owner_alive(row.owner)

    def lease_jobs(self, worker: str, limit: int, stale_after: float) -> list[str]:
        """Claim up to ``limit`` unfinished jobs: ``worker``'s own first, then the oldest free or
        stale ones. Rows another worker is leasing right now are skipped, not waited for."""
        if limit <= 0:
            return []
        over = [state.value for state in JobState if state.job_terminal]

        def lease(conn: sa.Connection) -> list[str]:
            now = time.time()
            unfinished = JOBS.c.state.not_in(over)
            # Leases held by processes of this host that are gone: free whatever their heartbeat says.
            local = (
                sa.select(JOBS.c.owner).distinct().where(unfinished, JOBS.c.owner.like(f"{_hostname()}:%"))
            )
            dead = [
                owner for owner in conn.execute(local).scalars() if owner != worker and not owner_alive(owner)
            ]
            # Only the rows claimed are locked (LIMIT), and rows another worker is claiming are
            # skipped: concurrent workers get disjoint sets at once instead of queueing.
            rows = conn.execute(
                sa.select(JOBS.c.id, JOBS.c.owner)
                .where(
                    unfinished,
                    sa.or_(
                        JOBS.c.owner.is_(None),
                        JOBS.c.owner == worker,
                        JOBS.c.owner.in_(dead),
                        JOBS.c.heartbeat.is_(None),
                        JOBS.c.heartbeat < now - stale_after,
                        JOBS.c.heartbeat > now + FUTURE_SLACK,
                    ),
                )
                .order_by(JOBS.c.owner.is_distinct_from(worker), JOBS.c.created)
                .limit(limit)
                .with_for_update(skip_locked=True)
            ).all()
            ids = [row.id for row in rows]
            conn.execute(JOBS.update().where(JOBS.c.id.in_(ids)).values(owner=worker, heartbeat=now))
            for row in rows:
                if row.owner not in (None, worker):
                    self._event(conn, row.id, None, "controller", f"{worker} took over from {row.owner}")
            return ids

        return self._run(lease)

    # ----------------------------------------------------------------- attempts

    def add_attempt(self, attempt: Attempt) -> bool:
        def add(conn: sa.Connection) -> bool:
            if conn.execute(sa.select(JOBS.c.id).where(JOBS.c.id == attempt.job_id)).first() is None:
                raise JobNotFound(f"no job {attempt.job_id!r} in {self.url}")
            inserted = conn.execute(
                pg_insert(ATTEMPTS)
                .values(
                    job_id=attempt.job_id,
                    n=attempt.n,
                    placement=attempt.placement.to_dict(),
                    state=attempt.state.value,
                    message=attempt.message,
                )
                .on_conflict_do_nothing()
                .returning(ATTEMPTS.c.n)
            ).first()
            if inserted is not None:
                self._event(
                    conn, attempt.job_id, attempt.n, "attempt", f"attempt {attempt.n} on {attempt.placement}"
                )
            return inserted is not None

        return self._run(add)

    def update_attempt(self, job_id: str, n: int, **fields: Any) -> None:
        if not fields:
            return
        values = {name: _column(value) for name, value in fields.items()}
        query = ATTEMPTS.update().where(ATTEMPTS.c.job_id == job_id, ATTEMPTS.c.n == n).values(**values)
        self._run(lambda conn: conn.execute(query))

    def attempts(self, job_id: str) -> list[Attempt]:
        query = sa.select(ATTEMPTS).where(ATTEMPTS.c.job_id == job_id).order_by(ATTEMPTS.c.n)
        return [_attempt(row) for row in self._run(lambda conn: conn.execute(query).all())]

    # ----------------------------------------------------------------- events

    def add_event(self, job_id: str, attempt: int | None, kind: str, message: str) -> None:
        self._run(lambda conn: self._event(conn, job_id, attempt, kind, message))

    def events(self, job_id: str, after: int = 0) -> list[tuple[int, Event]]:
        query = sa.select(EVENTS).where(EVENTS.c.job_id == job_id, EVENTS.c.id > after).order_by(EVENTS.c.id)
        return [(row.id, _event(row)) for row in self._run(lambda conn: conn.execute(query).all())]

    def events_of_kind(self, job_id: str, kind: str, attempt: int | None = None) -> list[tuple[int, Event]]:
        query = (
            sa.select(EVENTS).where(EVENTS.c.job_id == job_id, EVENTS.c.kind == kind).order_by(EVENTS.c.id)
        )
        if attempt is not None:
            query = query.where(EVENTS.c.attempt == attempt)
        return [(row.id, _event(row)) for row in self._run(lambda conn: conn.execute(query).all())]

    # ----------------------------------------------------------------- controller workers

    def register_worker(self, worker: str, host: str, pid: int) -> None:
        now = time.time()
        values = {"id": worker, "host": host, "pid": pid, "started": now, "heartbeat": now}
        query = pg_insert(WORKERS).values(**values)
        query = query.on_conflict_do_update(index_elements=[WORKERS.c.id], set_=dict(query.excluded))
        prune = WORKERS.delete().where(WORKERS.c.heartbeat < now - WORKER_ROWS_KEPT_FOR)

        def register(conn: sa.Connection) -> None:
            conn.execute(query)
            conn.execute(prune)

        self._run(register)

    def beat_worker(self, worker: str) -> None:
        query = WORKERS.update().where(WORKERS.c.id == worker)
        self._run(lambda conn: conn.execute(query.values(heartbeat=time.time())))

    def workers(self, stale_after: float) -> list[WorkerInfo]:
        now = time.time()
        query = sa.select(WORKERS).where(WORKERS.c.heartbeat >= now - stale_after).order_by(WORKERS.c.started)
        found = [
            WorkerInfo(r.id, r.host, r.pid, r.started, r.heartbeat)
            for r in self._run(lambda conn: conn.execute(query).all())
        ]
        return [
            w
            for w in found
            if w.heartbeat <= now + FUTURE_SLACK
            and (w.host != _hostname() or owner_alive(f"{w.host}:{w.pid}"))
        ]

    def remove_worker(self, worker: str) -> None:
        self._run(lambda conn: conn.execute(WORKERS.delete().where(WORKERS.c.id == worker)))

    # ----------------------------------------------------------------- identity

    def create_team(self, name: str) -> None:
        self._run(lambda conn: self._ensure_team(conn, name))

    @staticmethod
    def _ensure_team(conn: sa.Connection, name: str) -> None:
        conn.execute(pg_insert(TEAMS).values(name=name, created=time.time()).on_conflict_do_nothing())

    def create_user(self, name: str, team: str, admin: bool = False) -> User:
        user = User(new_id("user"), name, team, admin, time.time())

        def create(conn: sa.Connection) -> bool:
            self._ensure_team(conn, team)
            values = {"id": user.id, "name": name, "team": team, "admin": admin, "created": user.created}
            query = pg_insert(USERS).values(**values).on_conflict_do_nothing().returning(USERS.c.id)
            return conn.execute(query).first() is not None

        if not self._run(create):
            raise StoreError(f"a user named {name!r} exists already: pick another name")
        return user

    def add_token(self, user_id: str, token_hash: str, label: str) -> str:
        check_token_hash(token_hash)
        token_id = new_id("tok")

        def add(conn: sa.Connection) -> None:
            if conn.execute(sa.select(USERS.c.id).where(USERS.c.id == user_id)).first() is None:
                raise StoreError(f"no user {user_id!r}: `users()` lists them")
            conn.execute(
                TOKENS.insert().values(
                    id=token_id, user_id=user_id, token_hash=token_hash, label=label, created=time.time()
                )
            )

        self._run(add)
        return token_id

    def user_by_token_hash(self, token_hash: str) -> User | None:
        query = (
            sa.select(USERS)
            .join(TOKENS, TOKENS.c.user_id == USERS.c.id)
            .where(TOKENS.c.token_hash == token_hash, TOKENS.c.revoked.is_(None))
        )
        row = self._run(lambda conn: conn.execute(query).first())
        return _user(row) if row is not None else None

    def revoke_token(self, token_id: str) -> None:
        query = (
            TOKENS.update()
            .where(TOKENS.c.id == token_id)
            .values(revoked=sa.func.coalesce(TOKENS.c.revoked, time.time()))
        )
        if self._run(lambda conn: conn.execute(query).rowcount) != 1:
            raise StoreError(f"no token {token_id!r}")

    def users(self) -> list[User]:
        query = sa.select(USERS).order_by(USERS.c.created, USERS.c.name)
        return [_user(row) for row in self._run(lambda conn: conn.execute(query).all())]

    # ----------------------------------------------------------------- audit

    def audit(self, actor: str, action: str, target: str, detail: Mapping[str, Any]) -> None:
        def record(conn: sa.Connection) -> None:
            team = detail.get("team")
            if not isinstance(team, str):
                query = sa.select(USERS.c.team).where(sa.or_(USERS.c.name == actor, USERS.c.id == actor))
                team = conn.execute(query).scalar() or ""
            conn.execute(
                AUDIT.insert().values(
                    time=time.time(),
                    actor=actor,
                    action=action,
                    target=target,
                    detail=_json(detail),
                    team=team,
                )
            )

        self._run(record)

    def audit_log(self, limit: int = 100, team: str | None = None) -> list[AuditEntry]:
        query = sa.select(AUDIT).order_by(AUDIT.c.id.desc()).limit(limit)
        if team is not None:
            query = query.where(AUDIT.c.team == team)
        return [
            AuditEntry(r.id, r.time, r.actor, r.action, r.target, r.detail)
            for r in self._run(lambda conn: conn.execute(query).all())
        ]

    # ----------------------------------------------------------------- sweeps and arrays

    def create_group(self, group: Group) -> None:
        values = {
            "id": group.id,
            "kind": group.kind,
            "name": group.name,
            "spec": group.spec,
            "created": group.created,
            "state": group.state,
            "message": "",
        }
        query = pg_insert(SWEEP_GROUPS).values(**values).on_conflict_do_nothing().returning(SWEEP_GROUPS.c.id)
        if self._run(lambda conn: conn.execute(query).first()) is None:
            raise exists_already("sweep or array", group.id, self.url)

    def get_group(self, ref: str) -> Group:
        return _group(self._run(lambda conn: group_by_ref(ref, _select(conn, SWEEP_GROUPS))))

    def groups(self, limit: int = 50) -> list[Group]:
        query = sa.select(SWEEP_GROUPS).order_by(SWEEP_GROUPS.c.created.desc()).limit(limit)
        return [_group(row) for row in self._run(lambda conn: conn.execute(query).all())]

    def finish_group(self, group_id: str, state: str, message: str) -> None:
        query = (
            SWEEP_GROUPS.update()
            .where(SWEEP_GROUPS.c.id == group_id, SWEEP_GROUPS.c.ended.is_(None))
            .values(state=state, message=message, ended=time.time())
        )
        self._run(lambda conn: conn.execute(query))

    def set_group_message(self, group_id: str, message: str) -> None:
        query = SWEEP_GROUPS.update().where(SWEEP_GROUPS.c.id == group_id).values(message=message)
        self._run(lambda conn: conn.execute(query))

    def acquire_group(self, group_id: str, owner: str, stale_after: float) -> bool:
        def take(conn: sa.Connection) -> bool:
            now = time.time()
            row = conn.execute(
                sa.select(SWEEP_GROUPS.c.owner, SWEEP_GROUPS.c.heartbeat)
                .where(SWEEP_GROUPS.c.id == group_id)
                .with_for_update()
            ).first()
            if row is None:
                raise GroupNotFound(f"no sweep or array {group_id!r}")
            free = lease_free(row.owner, row.heartbeat, owner, now, stale_after)
            if free:
                conn.execute(
                    SWEEP_GROUPS.update()
                    .where(SWEEP_GROUPS.c.id == group_id)
                    .values(owner=owner, heartbeat=now)
                )
            return free

        return self._run(take)

    def heartbeat_group(self, group_id: str, owner: str) -> bool:
        query = SWEEP_GROUPS.update().where(SWEEP_GROUPS.c.id == group_id, SWEEP_GROUPS.c.owner == owner)
        return self._run(lambda conn: conn.execute(query.values(heartbeat=time.time())).rowcount == 1)

    def release_group(self, group_id: str, owner: str) -> None:
        query = (
            SWEEP_GROUPS.update()
            .where(SWEEP_GROUPS.c.id == group_id, SWEEP_GROUPS.c.owner == owner)
            .values(owner=None, heartbeat=None)
        )
        self._run(lambda conn: conn.execute(query))

    def add_member(self, member: Member) -> Member:
        values = {
            "group_id": member.group_id,
            "n": member.n,
            "jobs": list(member.jobs),
            "params": dict(member.params),
            "created": time.time(),
        }
        self._run(
            lambda conn: conn.execute(pg_insert(SWEEP_MEMBERS).values(**values).on_conflict_do_nothing())
        )
        return self.member(member.group_id, member.n)

    def member(self, group_id: str, n: int) -> Member:
        query = sa.select(SWEEP_MEMBERS).where(SWEEP_MEMBERS.c.group_id == group_id, SWEEP_MEMBERS.c.n == n)
        row = self._run(lambda conn: conn.execute(query).first())
        if row is None:
            raise JobNotFound(f"{group_id} has no member {n}")
        return _member(row)

    def members(self, group_id: str) -> list[Member]:
        query = (
            sa.select(SWEEP_MEMBERS).where(SWEEP_MEMBERS.c.group_id == group_id).order_by(SWEEP_MEMBERS.c.n)
        )
        return [_member(row) for row in self._run(lambda conn: conn.execute(query).all())]

    def add_member_job(self, group_id: str, n: int, job_id: str) -> None:
        where = (SWEEP_MEMBERS.c.group_id == group_id, SWEEP_MEMBERS.c.n == n)

        def add(conn: sa.Connection) -> None:
            jobs = conn.execute(sa.select(SWEEP_MEMBERS.c.jobs).where(*where).with_for_update()).scalar()
            if jobs is None:
                raise JobNotFound(f"{group_id} has no member {n}")
            if job_id not in jobs:
                conn.execute(SWEEP_MEMBERS.update().where(*where).values(jobs=[*jobs, job_id]))

        self._run(add)

    def set_member_outcome(
        self, group_id: str, n: int, outcome: str, message: str = "", value: float | None = None
    ) -> None:
        query = (
            SWEEP_MEMBERS.update()
            .where(SWEEP_MEMBERS.c.group_id == group_id, SWEEP_MEMBERS.c.n == n)
            .values(outcome=outcome, message=message, value=value)
        )
        self._run(lambda conn: conn.execute(query))

    def library_engine(self, namespace: str) -> tuple[str, dict[str, Any]]:
        """This database, with the schema ``namespace`` (made here if missing) first on the search
        path: the library's tables, its own ``alembic_version`` included (Optuna migrates with
        Alembic too), never meet the store's."""
        if not _NAMESPACE.fullmatch(namespace):
            raise StoreError(f"{namespace!r} is not a schema name: lowercase letters, digits and _")

        def ensure(conn: sa.Connection) -> None:
            conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_MIGRATION_LOCK)))  # one creator at a time
            conn.execute(sa.text(f'CREATE SCHEMA IF NOT EXISTS "{namespace}"'))

        self._run(ensure)
        url = self._url.render_as_string(hide_password=False)
        return url, {"pool_pre_ping": True, "connect_args": {"options": f"-csearch_path={namespace}"}}

    # ----------------------------------------------------------------- upkeep

    def check(self) -> list[str]:
        query = sa.select(
            ATTEMPTS.c.job_id, sa.func.count().label("c"), sa.func.max(ATTEMPTS.c.n).label("m")
        ).group_by(ATTEMPTS.c.job_id)
        return [
            f"{row.job_id}: attempts are not numbered 1..{row.m}"
            for row in self._run(lambda conn: conn.execute(query).all())
            if row.c != row.m
        ]


# --------------------------------------------------------------------------- row mapping


def _select(conn: sa.Connection, table: sa.Table) -> Select[sa.Row[Any]]:
    """``table``'s rows by reference, as ``by_ref`` asks for them, in the transaction of ``conn``."""

    def select(how: RefMatch, value: str) -> Sequence[sa.Row[Any]]:
        query = sa.select(table)
        if how == "id":
            query = query.where(table.c.id == value)
        elif how == "name":
            query = query.where(table.c.name == value).order_by(table.c.created.desc()).limit(1)
        else:
            query = query.where(table.c.id.like(value, escape="\\")).limit(2)
        return conn.execute(query).all()

    return select


def _transient(exc: sa.exc.DBAPIError) -> bool:
    """A lost or refused connection, a server shutting down or starting, a serialization failure."""
    if exc.connection_invalidated:
        return True
    sqlstate = getattr(exc.orig, "sqlstate", None)
    if sqlstate is not None:
        return str(sqlstate)[:2] in _TRANSIENT_CLASSES
    # A failed connect carries no SQLSTATE: the server's refusal of these names or credentials
    # will not change by waiting; anything else (refused, reset, starting up) may.
    text = str(exc.orig).lower()
    if any(marker in text for marker in _PERMANENT_CONNECT_ERRORS):
        return False
    return isinstance(exc, (sa.exc.OperationalError, sa.exc.InterfaceError))


def _hostname() -> str:
    return socket.gethostname()


def _json(value: Mapping[str, Any]) -> Any:
    """``value`` as JSON can hold it (what it cannot, as text), the same as the SQLite store."""
    return json.loads(json.dumps(dict(value), default=str))


def _column(value: Any) -> Any:
    if isinstance(value, JobState):
        return value.value
    if isinstance(value, (Handle, Placement, Usage)):
        return value.to_dict()
    return value


def _job(row: sa.Row[Any]) -> JobRecord:
    return JobRecord(
        id=row.id,
        name=row.name,
        spec=row.spec,
        provider=row.provider,
        state=JobState(row.state),
        checkpoint_uri=row.checkpoint_uri,
        output_uri=row.output_uri,
        options=row.options,
        message=row.message,
        created=row.created,
        updated=row.updated,
        ended=row.ended,
        cancel_requested=row.cancel_requested,
        owner=row.owner,
        heartbeat=row.heartbeat,
        team=row.team,
        submitted_by=row.submitted_by,
    )


def _attempt(row: sa.Row[Any]) -> Attempt:
    return Attempt(
        job_id=row.job_id,
        n=row.n,
        placement=Placement.from_dict(row.placement),
        state=JobState(row.state),
        handle=Handle.from_dict(row.handle) if row.handle else None,
        message=row.message,
        native_state=row.native_state,
        interruptions=row.interruptions,
        submitted=row.submitted,
        started=row.started,
        ended=row.ended,
        usage=Usage.from_dict(row.usage) if row.usage else None,
        last_checkpoint=row.last_checkpoint,
    )


def _event(row: sa.Row[Any]) -> Event:
    return Event(row.job_id, row.attempt, row.time, row.kind, row.message)


def _group(row: sa.Row[Any]) -> Group:
    return Group(
        id=row.id,
        kind=row.kind,
        name=row.name,
        spec=row.spec,
        created=row.created,
        state=row.state,
        message=row.message,
        ended=row.ended,
        owner=row.owner,
        heartbeat=row.heartbeat,
    )


def _member(row: sa.Row[Any]) -> Member:
    return Member(
        group_id=row.group_id,
        n=row.n,
        jobs=list(row.jobs),
        params=dict(row.params),
        outcome=row.outcome,
        message=row.message,
        value=row.value,
        created=row.created,
    )


def _user(row: sa.Row[Any]) -> User:
    return User(row.id, row.name, row.team, row.admin, row.created)
