"""Storage backends for the checkpoint contract: local files, memory, and three cloud emulators.

Each emulator starts once per session, on 127.0.0.1 and a free port, only when a test asks for
it: moto's S3 server (s3fs), gcp-storage-emulator (gcsfs) and Azurite (adlfs, from the npm
package `make test` installs under .venv/azurite). The emulators' endpoints and fake credentials
reach fsspec through ``fsspec.config.conf``, set for one test at a time (monkeypatch) and keyed by
protocol, so a plain ``CheckpointStore("s3://...")`` or ``copy_checkpoint("s3://...", "gs://...")``
talks to the emulator and nothing leaks into other test folders (explicit options also win over
any AWS_ENDPOINT_URL or STORAGE_EMULATOR_HOST another folder's session fixture left set).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import fsspec
import pytest

# gcsfs 2026.x otherwise calls a gRPC Storage Control API the emulator lacks and hangs 60 s per
# call; it reads this once, at import (notes/gcp.md).
os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")

from helpers.net import free_port, wait_for_port
from helpers.storage import (
    AZURITE_ACCOUNT,
    AZURITE_BIN,
    AZURITE_KEY,
    BACKENDS,
    BUCKET,
    CLOUDS,
    Backend,
    cleanup,
)

# ----------------------------------------------------------------------------- emulators


@pytest.fixture(scope="session")
def s3_backend() -> Iterator[Backend]:
    pytest.importorskip("s3fs", reason="s3fs is not installed (the sagemaker/dev extra): no s3:// backend")
    pytest.importorskip("moto.server", reason="moto[server] is not installed (dev extra): no S3 emulator")
    import boto3
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    try:
        # s3fs's mkdir sends a LocationConstraint moto refuses in us-east-1: create it with boto3.
        boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        ).create_bucket(Bucket=BUCKET)
        options = {
            "endpoint_url": endpoint,
            "key": "testing",
            "secret": "testing",
            "client_kwargs": {"region_name": "us-east-1"},
            "config_kwargs": {"retries": {"max_attempts": 1}},
        }
        yield Backend("s3", f"s3://{BUCKET}", {"s3": options})
    finally:
        server.stop()


@pytest.fixture(scope="session")
def gs_backend() -> Iterator[Backend]:
    pytest.importorskip("gcsfs", reason="gcsfs is not installed (the vertex/dev extra): no gs:// backend")
    pytest.importorskip(
        "gcp_storage_emulator.server",
        reason="gcp-storage-emulator is not installed (dev extra): no GCS emulator",
    )
    from gcp_storage_emulator.server import create_server

    port = free_port()
    server = create_server("127.0.0.1", port, in_memory=True, default_bucket=BUCKET)
    server.start()  # its thread is no daemon: always stop it
    try:
        options = {"endpoint_url": f"http://127.0.0.1:{port}", "token": "anon"}
        yield Backend("gs", f"gs://{BUCKET}", {"gs": options, "gcs": options})
    finally:
        server.stop()


@pytest.fixture(scope="session")
def az_backend() -> Iterator[Backend]:
    pytest.importorskip("adlfs", reason="adlfs is not installed (the azureml/dev extra): no az:// backend")
    if not AZURITE_BIN.exists():
        if shutil.which("npm") is None:
            pytest.skip("npm is not installed, so Azurite (the Azure Blob emulator) cannot be installed")
        pytest.fail(f"Azurite is missing at {AZURITE_BIN}: run `make test` (it installs it with npm)")
    from azure.storage.blob import BlobServiceClient

    port = free_port()
    flags = ["--inMemoryPersistence", "--skipApiVersionCheck", "--loose", "--disableTelemetry", "--silent"]
    proc = subprocess.Popen(
        [str(AZURITE_BIN), "--blobHost", "127.0.0.1", "--blobPort", str(port), *flags],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, lambda: proc.poll() is None, "Azurite")
        connection_string = (
            f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
            f"BlobEndpoint=http://127.0.0.1:{port}/{AZURITE_ACCOUNT};"
        )
        BlobServiceClient.from_connection_string(connection_string).create_container(BUCKET)
        options = {"connection_string": connection_string}
        yield Backend("az", f"az://{BUCKET}", {"az": options, "abfs": options})
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# ----------------------------------------------------------------------------- per-test URIs


@pytest.fixture(params=BACKENDS)
def store_uri(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """A fresh, empty checkpoint URI on one backend, with fsspec pointed at its emulator."""
    name = str(request.param)
    if name == "file":
        yield (tmp_path / "ckpt").as_uri()
        return
    if name == "memory":
        uri = f"memory://multispot-storage-tests/{uuid.uuid4().hex[:12]}"
    else:
        backend: Backend = request.getfixturevalue(f"{name}_backend")
        backend.install(monkeypatch)
        uri = backend.uri()
    yield uri
    cleanup(uri)  # moto and Azurite keep objects in RAM for the whole session


@pytest.fixture
def clouds(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Backend]]:
    """All three cloud emulators at once, for copies between them; emptied after the test."""
    backends: dict[str, Backend] = {name: request.getfixturevalue(f"{name}_backend") for name in CLOUDS}
    for backend in backends.values():
        backend.install(monkeypatch)
    yield backends
    for backend in backends.values():
        fs, bucket = fsspec.core.url_to_fs(backend.root)
        fs.invalidate_cache()
        for entry in fs.ls(bucket, detail=False):
            cleanup(f"{backend.name}://{entry}")
