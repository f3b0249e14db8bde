"""The PostgreSQL job store (placeholder until its backend lands on this branch)."""

from __future__ import annotations

from multispot.errors import StoreError
from multispot.store.base import redact_url


class PostgresStore:
    def __init__(self, url: str) -> None:
        raise StoreError(f"the PostgreSQL job store ({redact_url(url)}) is not available in this build yet")
