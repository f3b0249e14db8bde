"""Fixtures for the Vertex tests: a GCS emulator, the fake JobService, the REST fake.

Servers start once per session on 127.0.0.1 with free ports; the environment that points the
real clients at them is set per test (monkeypatch), so nothing leaks into other test folders.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers.net import free_port

pytest.importorskip("google.cloud.aiplatform_v1", reason="needs the vertex extra")

os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")  # before gcsfs is imported (notes/gcp.md)

BUCKET = "multispot-test"


@pytest.fixture(scope="session")
def gcs_endpoint() -> Iterator[str]:
    from gcp_storage_emulator.server import create_server

    port = free_port()
    server = create_server("127.0.0.1", port, in_memory=True, default_bucket=BUCKET)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture(scope="session")
def gcs(gcs_endpoint: str) -> Any:
    import gcsfs

    return gcsfs.GCSFileSystem(token="anon", endpoint_url=gcs_endpoint, skip_instance_cache=True)


@pytest.fixture(scope="session")
def rest() -> Iterator[Any]:
    from fake_gcp import RestState, start_rest

    state = RestState()
    server, _ = start_rest(state)
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="session")
def fake_vertex(tmp_path_factory: pytest.TempPathFactory, rest: Any, gcs: Any) -> Iterator[Any]:
    from fake_gcp import FakeJobService

    service = FakeJobService(tmp_path_factory.mktemp("fake-vertex"), rest, gcs)
    service.start()
    try:
        yield service
    finally:
        service.stop()


@pytest.fixture
def vertex_env(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, gcs_endpoint: str, rest: Any, fake_vertex: Any
) -> dict[str, str]:
    """Point every client (aiplatform, logging, bigquery, gcsfs) at the local fakes for one test."""
    values = {
        "MULTISPOT_VERTEX_EMULATOR_HOST": fake_vertex.address,
        "MULTISPOT_VERTEX_LOGGING_EMULATOR_HOST": rest.url,
        "MULTISPOT_VERTEX_BIGQUERY_ENDPOINT": rest.url,
        "STORAGE_EMULATOR_HOST": gcs_endpoint,
        "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false",
        "MULTISPOT_HOME": str(tmp_path / "home"),
        "GOOGLE_CLOUD_PROJECT": "test-project",
    }
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    return values
