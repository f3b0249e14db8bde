"""The server gives up on a lost PostgreSQL sooner than the client gives up on the server, so a
person reads "the job store … unreachable" (503), not "cannot reach the multispot server"."""

from __future__ import annotations

import pytest

from multispot.client import TIMEOUT
from multispot.server import app as server_app
from multispot.store import open_store
from multispot.store.postgres import RECONNECT_WAIT, PostgresStore


def _server_store(url: str) -> PostgresStore:
    store = server_app.create_app(url).state.store
    assert isinstance(store, PostgresStore)
    return store


def test_the_server_waits_less_than_the_client_for_a_lost_database(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MULTISPOT_STORE_RECONNECT_WAIT", raising=False)
    controllers, server = open_store(postgres_url), _server_store(postgres_url)
    try:
        assert isinstance(controllers, PostgresStore)
        assert controllers.reconnect_wait == RECONNECT_WAIT  # controllers ride out a failover
        assert server.reconnect_wait == server_app.STORE_RECONNECT_WAIT < TIMEOUT
    finally:
        controllers.close()
        server.close()


def test_an_operators_choice_stands(postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MULTISPOT_STORE_RECONNECT_WAIT", "45")
    controllers, server = open_store(postgres_url), _server_store(postgres_url)
    try:
        assert isinstance(controllers, PostgresStore)
        assert controllers.reconnect_wait == server.reconnect_wait == 45.0
    finally:
        controllers.close()
        server.close()
