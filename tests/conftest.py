"""Fixtures for every test folder (fixtures only: helpers live in tests/helpers/)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from helpers.postgres import PostgresServer, postgres_bin


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One real PostgreSQL server for the session, from the OS's binaries (``make test`` installs
    them); skipped, saying so, on a machine without them."""
    bindir = postgres_bin()
    if bindir is None:
        pytest.skip("PostgreSQL's initdb/pg_ctl not found: apt-get install postgresql (make test does)")
    server = PostgresServer(bindir)
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    """A new, empty database on the session's server."""
    return postgres_server.new_database()
