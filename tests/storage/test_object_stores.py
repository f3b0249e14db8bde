"""Object stores at bandwidth, verified by their own checksums, on moto (s3), gcp-storage-emulator
(gs) and Azurite (az).

A file larger than the part size goes up through the filesystem's multipart machinery and comes
back through parallel ranged reads, byte-identical. At commit the store's own checksum of each file
(S3 CRC32, GCS CRC32C, Azure Content-MD5) is recorded next to the xxh3-128 digest, after it was
compared with the same checksum computed over the bytes written; verification, retention and a
repeated copy then ask the store instead of downloading. Every damage is done behind the store's
back, through the raw fsspec filesystem of the same URI; every read is counted where it happens.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fsspec
import pytest
from helpers.storage import CLOUDS, Backend, cleanup

from multispot.checkpoint import MANIFEST, CheckpointStore, copy_checkpoint, step_dir
from multispot.checkpoint.transfer import MiB, PartReader, Transfer
from multispot.errors import ChecksumMismatch, SaveAbandoned

# S3's smallest part, so a few MiB make several parts. A file over ``concurrency`` parts is spooled
# to a local file and uploaded with put_file; a smaller one is uploaded from memory (pipe_file).
PARTS = Transfer(part_size=5 * MiB, concurrency=2)
IN_MEMORY = Transfer(part_size=5 * MiB, concurrency=4)
BIG = 12 * MiB + 12345  # three parts, the last one short
ALGORITHMS = {"s3": "s3-crc32", "gs": "gcs-crc32c", "az": "azure-md5"}


@pytest.fixture(params=CLOUDS)
def cloud(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, str]]:
    """(backend name, a fresh URI on its emulator)."""
    backend: Backend = request.getfixturevalue(f"{request.param}_backend")
    backend.install(monkeypatch)
    uri = backend.uri()
    yield str(request.param), uri
    cleanup(uri)


def raw(uri: str) -> tuple[Any, str]:
    fs, root = fsspec.core.url_to_fs(uri)
    fs.invalidate_cache()
    return fs, root.rstrip("/")


class Reads:
    """Every way a store's bytes can be read, counted: ``open_read`` (a whole-file reader) and the
    filesystem's ``cat_file`` (a GET, ranged or not) and ``open``."""

    def __init__(self, store: CheckpointStore, monkeypatch: pytest.MonkeyPatch) -> None:
        self.opened: list[str] = []
        self.gets = 0
        self._lock = threading.Lock()
        opened, fs = store.storage.open_read, store.fs

        def open_read(path: str) -> Any:
            self.opened.append(path)
            return opened(path)

        monkeypatch.setattr(store.storage, "open_read", open_read)
        for method in ("cat_file", "open"):
            monkeypatch.setattr(fs, method, self._count(getattr(fs, method)))

    def _count(self, inner: Any) -> Any:
        def counted(*args: Any, **kwargs: Any) -> Any:
            if method_reads(args, kwargs):
                with self._lock:
                    self.gets += 1
            return inner(*args, **kwargs)

        return counted

    @property
    def data_reads(self) -> int:
        """Reads of step files (the manifest, a few hundred bytes, is read on every check)."""
        return len([p for p in self.opened if not p.endswith(MANIFEST)])


def method_reads(args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    """A cat_file, or an open for reading, of anything but a manifest or the LATEST hint."""
    path = str(args[0]) if args else str(kwargs.get("path", ""))
    mode = args[1] if len(args) > 1 else kwargs.get("mode", "rb")
    return "r" in str(mode) and not path.endswith((MANIFEST, "LATEST"))


def files(step: int) -> dict[str, bytes]:
    big = bytearray(os.urandom(BIG))
    big[:8] = step.to_bytes(8, "big")
    return {"model.bin": bytes(big), "meta/small.json": b'{"step": %d}' % step}


def save(uri: str, step: int, data: dict[str, bytes], transfer: Transfer = PARTS) -> Any:
    with CheckpointStore(uri, transfer=transfer).writer(step) as writer:
        for name, content in data.items():
            with writer.open(name) as f:  # streamed in pieces, as torch.save writes
                for at in range(0, len(content), 3 * MiB):
                    f.write(content[at : at + 3 * MiB])
    assert writer.committed is not None
    return writer.committed


@pytest.mark.parametrize("transfer", [PARTS, IN_MEMORY], ids=["spooled", "in-memory"])
def test_multipart_round_trip_records_the_store_checksum(cloud: tuple[str, str], transfer: Transfer) -> None:
    name, uri = cloud
    data = files(1)
    manifest = save(uri, 1, data, transfer)
    for file, entry in manifest.files.items():
        assert entry.store is not None and entry.store.algorithm == ALGORITHMS[name], file
    fs, root = raw(uri)
    assert bytes(fs.cat_file(f"{root}/{step_dir(1)}/model.bin")) == data["model.bin"]  # byte-identical
    if name == "s3":  # three parts: s3fs's multipart upload, and S3's composite CRC32 says so
        assert fs.info(f"{root}/{step_dir(1)}/model.bin")["ETag"].strip('"').endswith("-3")
        assert manifest.files["model.bin"].store.value.endswith("-3")
    on_disk = json.loads(fs.cat_file(f"{root}/{step_dir(1)}/{MANIFEST}"))
    assert on_disk["files"]["model.bin"]["store_checksum"]["algorithm"] == ALGORITHMS[name]

    restored = CheckpointStore(uri, transfer=PARTS).restore()
    assert {f: restored.read_bytes(f) for f in data} == data
    with restored.open("model.bin") as f:  # a zip reader's pattern: the end first, then from the start
        f.seek(-100, os.SEEK_END)
        assert f.read() == data["model.bin"][-100:]
        f.seek(0)
        assert f.read() == data["model.bin"]


def test_download_runs_parts_ahead(cloud: tuple[str, str]) -> None:
    _, uri = cloud
    data = files(1)
    save(uri, 1, data)
    fs, root = raw(uri)
    reader = PartReader(fs, f"{root}/{step_dir(1)}/model.bin", BIG, PARTS)
    first = reader.read(10)
    assert reader.requests == 2  # the part it needs and the one after it, asked before waiting
    assert first + reader.read() == data["model.bin"]
    assert reader.requests == 3  # and nothing fetched twice
    reader.close()


def test_verify_asks_the_store_and_downloads_nothing(
    cloud: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, uri = cloud
    save(uri, 1, files(1))
    save(uri, 2, files(2))
    fresh = CheckpointStore(uri, transfer=PARTS)  # a new process: it has hashed nothing
    reads = Reads(fresh, monkeypatch)
    assert fresh.verify(1).ok and fresh.verify(2).ok
    assert fresh.retain(1) == [1]  # retention's full re-check too
    assert (reads.data_reads, reads.gets) == (0, 0)


def test_copy_again_reads_nothing(clouds: dict[str, Backend], monkeypatch: pytest.MonkeyPatch) -> None:
    src, dst = clouds["s3"].uri(), clouds["gs"].uri()
    manifest = save(src, 1, files(1))
    copied = copy_checkpoint(CheckpointStore(src, transfer=PARTS), CheckpointStore(dst, transfer=PARTS))
    assert copied == manifest
    there = CheckpointStore(dst).manifest(1)
    assert there is not None and there.files["model.bin"].store is not None
    assert there.files["model.bin"].store.algorithm == "gcs-crc32c"  # the destination's own
    source, target = CheckpointStore(src), CheckpointStore(dst)
    reads = [Reads(source, monkeypatch), Reads(target, monkeypatch)]
    assert copy_checkpoint(source, target) == manifest  # the destination holds it valid already
    assert [(r.data_reads, r.gets) for r in reads] == [(0, 0), (0, 0)]


def test_an_object_replaced_behind_the_manifest_is_caught(
    cloud: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, uri = cloud
    manifest = save(uri, 1, files(1))
    fs, root = raw(uri)
    path = f"{root}/{step_dir(1)}/model.bin"
    tampered = bytearray(files(1)["model.bin"])  # same size, other bytes: only checksums can tell
    fs.pipe_file(path, bytes(tampered))
    fresh = CheckpointStore(uri, transfer=PARTS)
    assert fresh.storage.store_checksum(path) != manifest.files["model.bin"].store  # the store says so
    verdict = fresh.verify(1)
    assert not verdict.ok and "model.bin" in verdict.reason
    assert fresh.latest() is None


def test_manifests_without_store_checksums_still_verify_by_their_bytes(
    cloud: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, uri = cloud
    save(uri, 1, files(1))
    fs, root = raw(uri)
    path = f"{root}/{step_dir(1)}/{MANIFEST}"
    old = json.loads(fs.cat_file(path))  # as multispot wrote manifests before store checksums
    for entry in old["files"].values():
        del entry["store_checksum"]
    fs.pipe_file(path, json.dumps(old).encode())
    fresh = CheckpointStore(uri, transfer=PARTS)
    reads = Reads(fresh, monkeypatch)
    assert fresh.verify(1).ok
    assert reads.data_reads == 2  # no store checksum to ask: both files hashed


def test_azure_keeps_no_md5_for_a_block_list(az_backend: Backend, monkeypatch: pytest.MonkeyPatch) -> None:
    """Azurite, like Azure, keeps no Content-MD5 for a blob committed from blocks: verification of
    such a blob falls back to hashing its bytes."""
    from azure.storage.blob import BlobClient

    az_backend.install(monkeypatch)
    uri = az_backend.uri()
    try:
        data = files(1)
        save(uri, 1, data)
        _, root = raw(uri)
        container, blob = f"{root}/{step_dir(1)}/model.bin".split("/", 1)
        # The same bytes again, as staged blocks (what upload_blob does above its single-put size).
        client = BlobClient.from_connection_string(
            az_backend.conf["az"]["connection_string"],
            container,
            blob,
            max_single_put_size=4 * MiB,
            max_block_size=4 * MiB,
        )
        client.upload_blob(data["model.bin"], overwrite=True)
        fresh = CheckpointStore(uri, transfer=PARTS)
        assert fresh.storage.store_checksum(f"{container}/{blob}") is None
        reads = Reads(fresh, monkeypatch)
        assert fresh.verify(1).ok  # the same bytes: hashed, and they match
        assert reads.data_reads == 1
    finally:
        cleanup(uri)


def test_an_upload_that_arrives_damaged_is_not_committed(
    cloud: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A byte changed between multispot and the store: the store's checksum of what arrived
    differs from the one computed over the bytes written, and the save fails uncommitted."""
    _, uri = cloud
    store = CheckpointStore(uri, transfer=PARTS)
    pipe = store.fs.pipe_file

    def damaging(path: str, value: bytes, **kwargs: Any) -> Any:
        if path.endswith("small.json"):
            value = value[:-1] + bytes([value[-1] ^ 1])
        return pipe(path, value, **kwargs)

    monkeypatch.setattr(store.fs, "pipe_file", damaging)
    with pytest.raises(ChecksumMismatch, match="did not arrive intact"), store.writer(1) as writer:
        writer.write_bytes("meta/small.json", b'{"step": 1}')
    assert CheckpointStore(uri).manifest(1) is None


def test_an_abandoned_save_uploads_nothing(cloud: tuple[str, str]) -> None:
    _, uri = cloud
    spools = set(Path(tempfile.gettempdir()).glob("multispot-upload-*"))
    cancel = threading.Event()
    store = CheckpointStore(uri, transfer=PARTS)
    with (
        pytest.raises(SaveAbandoned),
        store.writer(1, cancel=cancel) as writer,
        writer.open("model.bin") as f,
    ):
        f.write(b"x" * (11 * MiB))  # past two parts: spooled to a local file
        cancel.set()
        f.write(b"y")
    fs, root = raw(uri)
    assert not fs.exists(f"{root}/{step_dir(1)}/model.bin")
    assert set(Path(tempfile.gettempdir()).glob("multispot-upload-*")) <= spools  # its spool is gone


def test_transfer_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="at least 5 MiB"):
        Transfer(part_size=MiB)
    with pytest.raises(ValueError, match="multiple of 256 KiB"):
        Transfer(part_size=5 * MiB + 1)
    with pytest.raises(ValueError, match="concurrency"):
        Transfer(concurrency=0)


def test_files_a_library_wrote_into_local_dir_go_up_as_they_are(
    cloud: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """What torch.distributed.checkpoint writes into ``writer.local_dir`` is staged locally, then
    hashed in one read and handed to the filesystem's upload by path (no second local copy)."""
    name, uri = cloud
    data = files(1)["model.bin"]
    store = CheckpointStore(uri, transfer=PARTS)
    uploaded: list[str] = []
    put_file = store.fs.put_file

    def recording(lpath: str, rpath: str, **kwargs: Any) -> Any:
        uploaded.append(lpath)
        return put_file(lpath, rpath, **kwargs)

    monkeypatch.setattr(store.fs, "put_file", recording)
    with store.writer(1) as writer:
        (writer.local_dir / "shards").mkdir()
        (writer.local_dir / "shards" / "0.distcp").write_bytes(data)
    assert writer.committed is not None
    assert [Path(p).name for p in uploaded] == ["0.distcp"]  # the staged file itself
    entry = writer.committed.files["shards/0.distcp"]
    assert entry.store is not None and entry.store.algorithm == ALGORITHMS[name]
    assert CheckpointStore(uri).restore().read_bytes("shards/0.distcp") == data


def test_s3_one_put_below_two_parts_has_a_whole_object_crc32(
    s3_backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file between one and two parts, spooled to disk (concurrency 1): s3fs sends it in one PUT,
    and S3 (moto) keeps the CRC32 of the whole object, which multispot computed the same."""
    s3_backend.install(monkeypatch)
    uri = s3_backend.uri()
    try:
        data = os.urandom(8 * MiB)
        with CheckpointStore(uri, transfer=Transfer(part_size=5 * MiB, concurrency=1)).writer(1) as writer:
            writer.write_bytes("model.bin", data)
        assert writer.committed is not None
        store = writer.committed.files["model.bin"].store
        assert store is not None and store.algorithm == "s3-crc32" and "-" not in store.value
        fs, root = raw(uri)
        assert "-" not in fs.info(f"{root}/{step_dir(1)}/model.bin")["ETag"]  # not a multipart upload
        assert CheckpointStore(uri).restore().read_bytes("model.bin") == data
    finally:
        cleanup(uri)


def test_a_save_asks_the_store_about_each_file_once(
    cloud: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """One metadata request per file gives both the store's checksum and the fingerprint the
    commit checks against; a fresh step is only listed (no manifest read, no removal)."""
    _, uri = cloud
    store = CheckpointStore(uri, transfer=PARTS)
    fs = store.fs
    asked: list[str] = []

    def counting(method: str) -> None:
        inner = getattr(fs, method)

        def counted(*args: Any, **kwargs: Any) -> Any:
            target = str(kwargs.get("Key", args[0] if args else ""))
            if method != "call_s3" or args[0] == "head_object":
                asked.append(f"{method} {target}")
            return inner(*args, **kwargs)

        monkeypatch.setattr(fs, method, counted)

    for method in ("info", "call_s3", "cat_file", "rm", "rm_file"):
        if hasattr(fs, method):  # call_s3: s3fs only
            counting(method)
    data = files(1)
    with store.writer(1) as writer:
        for file, content in data.items():
            writer.write_bytes(file, content)
    metadata = [a for a in asked if a.startswith(("info", "call_s3"))]
    assert len(metadata) == len(data), asked
    assert not [a for a in asked if a.startswith(("rm", "cat_file")) and MANIFEST in a], asked
    assert CheckpointStore(uri).verify(1).ok


def test_an_s3_save_makes_only_the_requests_it_needs(
    s3_backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every S3 request of a two-file save, counted where botocore sends it: a listing when the
    writer opens and one before the commit, a PUT and a HEAD per file, the manifest, LATEST read
    and written. No manifest GET or DELETE for a fresh step, no HEAD of the step as a file."""
    s3_backend.install(monkeypatch)
    uri = s3_backend.uri()
    try:
        store = CheckpointStore(uri, transfer=PARTS)
        sent: list[str] = []
        store.fs.s3.meta.events.register("before-call.s3.*", lambda model, **_: sent.append(model.name))
        with store.writer(1) as writer:
            writer.write_bytes("model.bin", b"m" * 1000)
            writer.write_bytes("opt/state.bin", b"o" * 1000)
        assert sorted(sent) == sorted(
            ["ListObjectsV2"] * 2 + ["PutObject"] * 4 + ["HeadObject"] * 2 + ["GetObject"]
        ), sent
        assert CheckpointStore(uri).verify(1).ok
    finally:
        cleanup(uri)
