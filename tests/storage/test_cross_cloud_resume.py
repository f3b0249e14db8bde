"""A job can resume on another cloud: save on s3://, copy to gs:// and az://, restore there.

All three emulators run at once (moto, gcp-storage-emulator, Azurite); the copy streams through
this process with ``copy_checkpoint`` and must arrive byte-identical, with the source manifest
verbatim (but for each file's store checksum, which is the destination store's own), or not be
committed at all.
"""

from __future__ import annotations

import json
from typing import Any

import fsspec
import pytest

from multispot.checkpoint import MANIFEST, CheckpointStore, copy_checkpoint, digest_bytes, step_dir
from multispot.errors import NoCheckpoint


def raw_bytes(uri: str, rel: str) -> bytes:
    fs, root = fsspec.core.url_to_fs(uri)
    fs.invalidate_cache()
    return bytes(fs.cat_file(f"{root.rstrip('/')}/{rel}"))


def raw_put(uri: str, rel: str, data: bytes) -> None:
    fs, root = fsspec.core.url_to_fs(uri)
    fs.pipe_file(f"{root.rstrip('/')}/{rel}", data)
    fs.invalidate_cache()


def without_store_checksums(manifest_json: bytes) -> dict[str, Any]:
    data = json.loads(manifest_json)
    for entry in data["files"].values():
        entry.pop("store_checksum", None)
    return dict(data)


STORE_ALGORITHMS = {"s3": "s3-crc32", "gs": "gcs-crc32c", "az": "azure-md5"}


def state(step: int) -> dict[str, bytes]:
    return {
        "model.pt": bytes(range(256)) * 3 + step.to_bytes(4, "big"),
        "optim/adam.pt": f"moments at {step}".encode() * 20,
        "rng.json": b'{"seed": %d}' % step,
    }


def save(uri: str, step: int, attempt: int) -> Any:
    with CheckpointStore(uri).writer(step, total_steps=100, attempt=attempt, job_id="xcloud") as writer:
        for name, data in state(step).items():
            writer.write_bytes(name, data)
    return writer.committed


@pytest.mark.slow  # ~4 s here, more on 2 CI cores: three clouds, three copies
def test_resume_on_another_cloud(clouds: dict[str, Any]) -> None:
    src = clouds["s3"].uri()
    save(src, 10, attempt=1)
    source_manifest = save(src, 20, attempt=1)
    source_json = raw_bytes(src, f"{step_dir(20)}/{MANIFEST}")

    for name in ("gs", "az"):
        dst = clouds[name].uri()
        copied = copy_checkpoint(src, dst)  # plain URIs: what a controller moving a job would call
        assert copied == source_manifest
        restored = CheckpointStore(dst).restore()  # a fresh attempt on the other cloud
        assert restored.step == 20
        assert restored.manifest == source_manifest
        copied_json = raw_bytes(dst, f"{step_dir(20)}/{MANIFEST}")
        assert without_store_checksums(copied_json) == without_store_checksums(source_json)  # verbatim
        for entry in json.loads(copied_json)["files"].values():  # small files: every store keeps one
            assert entry["store_checksum"]["algorithm"] == STORE_ALGORITHMS[name]
        for file, data in state(20).items():
            assert restored.read_bytes(file) == data, (name, file)
            assert restored.manifest.files[file].digest == digest_bytes(data)
        assert CheckpointStore(dst).steps() == [20]  # only the newest valid one was copied
        assert CheckpointStore(dst).latest_hint() == 20
        # copying again is a no-op once the destination holds it valid
        assert copy_checkpoint(src, dst) == source_manifest

        # the job goes on on the new cloud, then moves again (gs/az -> s3 back home)
        save(dst, 30, attempt=2)
        home = clouds["s3"].uri()
        moved = copy_checkpoint(CheckpointStore(dst), CheckpointStore(home))
        assert moved.step == 30 and moved.attempt == 2
        back = CheckpointStore(home).restore()
        assert {f: back.read_bytes(f) for f in back.files} == state(30)


def test_corrupt_source_is_not_copied_as_valid(clouds: dict[str, Any]) -> None:
    src = clouds["s3"].uri()
    save(src, 1, attempt=1)
    save(src, 2, attempt=1)
    data = bytearray(raw_bytes(src, f"{step_dir(2)}/optim/adam.pt"))
    data[5] ^= 0x01  # same size: only the checksums can tell
    raw_put(src, f"{step_dir(2)}/optim/adam.pt", bytes(data))

    for name in ("gs", "az"):
        dst = clouds[name].uri()
        with pytest.raises(NoCheckpoint):
            copy_checkpoint(src, dst, step=2)  # asked for the corrupt step: refused
        assert CheckpointStore(dst).manifest(2) is None
        assert CheckpointStore(dst).latest() is None

        copied = copy_checkpoint(src, dst)  # newest by default: falls back past the corrupt one
        assert copied.step == 1
        store = CheckpointStore(dst)
        assert store.manifest(2) is None
        assert [s for s in store.steps() if store.verify(s).ok] == [1]
        restored = CheckpointStore(dst).restore()
        assert restored.step == 1
        assert {f: restored.read_bytes(f) for f in restored.files} == state(1)


@pytest.mark.parametrize("name", ["gs", "az"])
def test_damaged_destination_copy_is_replaced(clouds: dict[str, Any], name: str) -> None:
    """A destination that holds the step's manifest but damaged files is rewritten, not trusted."""
    src, dst = clouds["s3"].uri(), clouds[name].uri()
    manifest = save(src, 5, attempt=1)
    copy_checkpoint(src, dst)
    data = bytearray(raw_bytes(dst, f"{step_dir(5)}/model.pt"))
    data[0] ^= 0xFF
    raw_put(dst, f"{step_dir(5)}/model.pt", bytes(data))
    assert not CheckpointStore(dst).verify(5).ok

    assert copy_checkpoint(src, dst) == manifest
    restored = CheckpointStore(dst).restore()
    assert restored.read_bytes("model.pt") == state(5)["model.pt"]
