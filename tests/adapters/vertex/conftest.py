"""Fixtures for the Vertex tests: a GCS emulator, the fake JobService, the REST fake.

Servers start once per session on 127.0.0.1 with free ports; the environment that points the
real clients at them is set per test (monkeypatch), so nothing leaks into other test folders.
"""

from __future__ import annotations

import json
import os
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers.net import free_port

pytest.importorskip("google.cloud.aiplatform_v1", reason="needs the vertex extra")

os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")  # before gcsfs is imported (notes/gcp.md)

BUCKET = "multispot-test"
MULTI_REGION_BUCKET = "multispot-us"


@pytest.fixture(scope="session")
def gcs_endpoint() -> Iterator[str]:
    from gcp_storage_emulator.server import create_server

    port = free_port()
    server = create_server("127.0.0.1", port, in_memory=True)
    server.start()
    try:
        endpoint = f"http://127.0.0.1:{port}"
        # Vertex wants the job's buckets in its region: the test bucket is in us-central1, the
        # other one is a multi-region bucket (the emulator's default location, US).
        # (The emulator's insert ignores "location"; its PATCH sets it, as a one-off setup step.)
        for name, location in ((BUCKET, "US-CENTRAL1"), (MULTI_REGION_BUCKET, None)):
            _call(endpoint, "POST", "/storage/v1/b?project=test-project", {"name": name})
            if location:
                _call(
                    endpoint,
                    "PATCH",
                    f"/storage/v1/b/{name}",
                    {"location": location, "locationType": "region"},
                )
        yield endpoint
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


def _call(endpoint: str, method: str, path: str, body: dict[str, Any]) -> None:
    request = urllib.request.Request(
        endpoint + path,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method=method,
    )
    urllib.request.urlopen(request, timeout=10).close()
