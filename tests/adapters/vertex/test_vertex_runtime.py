"""Inside Vertex: environment detection, the metadata-server notice source, gs:// checkpoints."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from multispot_vertex.notice import PATH, MetadataPreemptionSource, sources

from multispot.checkpoint import CheckpointStore
from multispot.runtime.env import detect


class Metadata:
    """A loopback GCE metadata server: ``instance/preempted`` answers FALSE until flipped."""

    def __init__(self) -> None:
        self.preempted = False
        self.requests: list[tuple[str, str | None]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                outer.requests.append((self.path, self.headers.get("Metadata-Flavor")))
                if self.path != PATH or self.headers.get("Metadata-Flavor") != "Google":
                    self.send_error(403)
                    return
                body = b"TRUE" if outer.preempted else b"FALSE"
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.host = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def metadata() -> Iterator[Metadata]:
    server = Metadata()
    try:
        yield server
    finally:
        server.server.shutdown()
        server.server.server_close()


def test_metadata_source_reports_the_preemption_flag(metadata: Metadata) -> None:
    source = MetadataPreemptionSource(30.0, host=metadata.host)
    assert source.poll() is None
    metadata.preempted = True
    assert source.poll() == 30.0
    assert metadata.requests[-1] == (PATH, "Google")


def test_metadata_source_is_silent_without_a_server() -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert MetadataPreemptionSource(host=f"127.0.0.1:{port}").poll() is None


def test_address_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch, metadata: Metadata) -> None:
    monkeypatch.setenv("GCE_METADATA_HOST", metadata.host)
    env = detect({"MULTISPOT_PROVIDER": "vertex", "MULTISPOT_NOTICE_SECONDS": "12"})
    (source,) = sources(env)
    assert isinstance(source, MetadataPreemptionSource) and source.url == f"http://{metadata.host}{PATH}"
    metadata.preempted = True
    assert source.poll() == 12.0


def test_runtime_fires_the_notice_from_the_metadata_server(metadata: Metadata, tmp_path: Path) -> None:
    """A script on 'Vertex' (entry point multispot.notice_sources → vertex) sees the flag flip."""
    script = textwrap.dedent(
        """
        import time
        from multispot.runtime import Checkpointer
        ckpt = Checkpointer()
        print("ready", flush=True)
        deadline = time.time() + 20
        while not ckpt.preempted and time.time() < deadline:
            time.sleep(0.05)
        print("preempted" if ckpt.preempted else "no notice", round(ckpt.notice.seconds_left() or -1), flush=True)
        """
    )
    env = {
        **os.environ,
        "MULTISPOT_PROVIDER": "vertex",
        "MULTISPOT_NOTICE_SECONDS": "30",
        "MULTISPOT_CHECKPOINT_DIR": str(tmp_path / "ckpt"),
        "GCE_METADATA_HOST": metadata.host,
    }
    proc = subprocess.Popen(
        [sys.executable, "-c", script], env=env, stdout=subprocess.PIPE, text=True, cwd=tmp_path
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    metadata.preempted = True
    out = proc.stdout.read()
    assert proc.wait(timeout=30) == 0
    assert out.startswith("preempted"), out
    assert 25 <= int(out.split()[1]) <= 30  # the 30 s budget, minus the poll delay


def test_vertex_environment_detection(tmp_path: Path) -> None:
    (tmp_path / "gcs").mkdir()
    env = {
        "CLOUD_ML_JOB_ID": "1234",
        "AIP_CHECKPOINT_DIR": "gs://bkt/base/checkpoints/",
        "AIP_MODEL_DIR": "gs://bkt/base/model/",
        "MULTISPOT_GCS_FUSE_ROOT": str(tmp_path / "gcs"),
    }
    job = detect(env)
    assert (job.provider, job.job_id, job.notice_seconds) == ("vertex", "1234", 30.0)
    assert job.checkpoint_uri == (tmp_path / "gcs" / "bkt/base/checkpoints").as_uri()  # the FUSE path
    assert job.output_uri == "gs://bkt/base/model/"
    no_mount = detect({**env, "MULTISPOT_GCS_FUSE_ROOT": str(tmp_path / "absent")})
    assert no_mount.checkpoint_uri == "gs://bkt/base/checkpoints/"  # gcsfs then
    by_multispot = detect(
        {**env, "MULTISPOT_CHECKPOINT_DIR": "/gcs/bkt/ckpt", "MULTISPOT_PROVIDER": "vertex"}
    )
    assert by_multispot.checkpoint_uri == "file:///gcs/bkt/ckpt"


def test_checkpoint_contract_on_gs(vertex_env: dict[str, str], gcs: Any, tmp_path: Path) -> None:
    """Save, retention, torn save and restore on gs:// through gcsfs against the emulator."""
    uri = f"gs://multispot-test/contract-{tmp_path.name}"
    store = CheckpointStore(uri)
    for step in (1, 2, 3, 4):
        with store.writer(step) as writer:
            writer.write_bytes("state.bin", bytes([step]) * 1000)
        store.retain(2)
    gcs.invalidate_cache()
    names = sorted(p.rsplit("/", 1)[-1] for p in gcs.ls(uri.removeprefix("gs://"), detail=False))
    assert [n for n in names if n.startswith("step-")] == ["step-000000000003", "step-000000000004"]
    # a torn save (files without a manifest) newer than the last commit is never restored
    gcs.pipe_file(f"{uri.removeprefix('gs://')}/step-000000000005/state.bin", b"torn")
    restored = CheckpointStore(uri).restore()
    assert restored is not None and restored.step == 4
    assert restored.read_bytes("state.bin") == bytes([4]) * 1000
