"""The server gives up on a lost PostgreSQL sooner than the client gives up on the server, so a
person reads "the job store … unreachable" (503), not "cannot reach the multispot server"."""

from __future__ import annotations

import pytest

from multispot.client import TIMEOUT
from multispot.server import app as server_app
from multispot.store.postgres import RECONNECT_WAIT, PostgresStore


def test_the_server_waits_less_than_the_client_for_a_lost_database(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MULTISPOT_STORE_RECONNECT_WAIT", raising=False)
    store = PostgresStore(postgres_url)
    try:
        assert store.reconnect_wait == RECONNECT_WAIT  # controllers ride out a failover
        server_app._answer_soon_while_the_database_is_down(store)
        assert store.reconnect_wait == server_app.STORE_RECONNECT_WAIT < TIMEOUT
    finally:
        store.close()


def test_an_operators_choice_stands(postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MULTISPOT_STORE_RECONNECT_WAIT", "45")
    store = PostgresStore(postgres_url)
    try:
        server_app._answer_soon_while_the_database_is_down(store)
        assert store.reconnect_wait == 45.0
    finally:
        store.close()
