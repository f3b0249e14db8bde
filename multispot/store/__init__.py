"""The job store: jobs, attempts, events, controller leases, and who may do what.

``open_store()`` picks the backend from a URL: the argument, else ``$MULTISPOT_DB``, else the
SQLite file ``home()/jobs.sqlite``. ``sqlite:///abs/path`` is SQLite; ``postgresql://…`` (or
``postgresql+psycopg://…``) is PostgreSQL, whose libraries are imported only then.
"""

from __future__ import annotations

import os

from multispot.errors import StoreError
from multispot.store.base import (
    AuditEntry,
    Event,
    Group,
    GroupNotFound,
    JobRecord,
    Member,
    Store,
    User,
    WorkerInfo,
    home,
    home_path,
    new_job_id,
    owner_alive,
    owner_id,
    redact_url,
)
from multispot.store.sqlite import JobStore, SQLiteStore

DB_ENV = "MULTISPOT_DB"


def open_store(url: str | None = None, reconnect_wait: float | None = None) -> Store:
    """The job store at ``url`` (else ``$MULTISPOT_DB``, else SQLite in ``home()``).

    ``reconnect_wait``: how many seconds an operation retries a lost database before it fails
    (PostgreSQL; a SQLite file has no connection to lose), unless the operator has set
    ``$MULTISPOT_STORE_RECONNECT_WAIT``; default 120 s, so a controller rides out a failover
    (the server passes less: a person waiting on a request is better told soon)."""
    url = url or os.environ.get(DB_ENV) or ""
    if not url:
        return SQLiteStore()
    scheme = url.partition(":")[0].lower()
    if scheme == "sqlite":
        # sqlite:///abs/path (SQLAlchemy's spelling) and sqlite:////abs/path both mean /abs/path
        path = "/" + url.removeprefix("sqlite://").lstrip("/")
        if not url.startswith("sqlite:///") or path == "/":
            raise StoreError(
                f"{DB_ENV}={url!r} needs an absolute path: sqlite:///home/me/.multispot/jobs.sqlite"
            )
        return SQLiteStore(path)
    if scheme in ("postgresql", "postgres") or scheme.startswith("postgresql+"):
        from multispot.store.postgres import PostgresStore

        store: Store = PostgresStore(url, reconnect_wait)
        return store
    raise StoreError(
        f"{DB_ENV} (or --db) {redact_url(url)!r} is not a job store URL: use sqlite:///abs/path or "
        "postgresql://user:password@host:5432/dbname"
    )


__all__ = [
    "DB_ENV",
    "AuditEntry",
    "Event",
    "Group",
    "GroupNotFound",
    "JobRecord",
    "JobStore",
    "Member",
    "SQLiteStore",
    "Store",
    "User",
    "WorkerInfo",
    "home",
    "home_path",
    "new_job_id",
    "open_store",
    "owner_alive",
    "owner_id",
]
