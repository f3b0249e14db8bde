"""The checkpoint contract, the same tests on every backend: file, memory, s3 (moto), gs
(gcp-storage-emulator) and az (Azurite).

Every "what a resuming attempt sees" check goes through a fresh ``CheckpointStore`` (a new
process has no verification cache), and every damage is done behind the store's back, through
the raw fsspec filesystem of the same URI.
"""

from __future__ import annotations

import threading
from typing import Any

import fsspec
import pytest
import xxhash

from multispot.checkpoint import LATEST, MANIFEST, CheckpointStore, Manifest, step_dir
from multispot.errors import CheckpointExists, ChecksumMismatch, NoCheckpoint, SaveAbandoned

# ----------------------------------------------------------------------------- raw access


def raw(uri: str) -> tuple[Any, str]:
    fs, root = fsspec.core.url_to_fs(uri)
    fs.invalidate_cache()
    return fs, root.rstrip("/")


def put(uri: str, rel: str, data: bytes) -> None:
    fs, root = raw(uri)
    path = f"{root}/{rel}"
    fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
    fs.pipe_file(path, data)


def get(uri: str, rel: str) -> bytes:
    fs, root = raw(uri)
    return bytes(fs.cat_file(f"{root}/{rel}"))


def exists(uri: str, rel: str) -> bool:
    fs, root = raw(uri)
    return bool(fs.exists(f"{root}/{rel}"))


def flip_byte(uri: str, rel: str, at: int = 3) -> None:
    """Silent corruption: same size, one byte different (a cheap size check cannot see it)."""
    data = bytearray(get(uri, rel))
    data[at] ^= 0xFF
    put(uri, rel, bytes(data))
    assert len(get(uri, rel)) == len(data)


def reference_digest(data: bytes) -> str:
    """The checksum the simple way: the xxh3-128 of the whole file, in one call."""
    return xxhash.xxh3_128(data).hexdigest()


def files_for(step: int) -> dict[str, bytes]:
    return {
        "model.bin": f"weights of step {step};".encode() * 40,
        "optim/state.bin": bytes([step % 256, 7, 1, 9]) * 25,
    }


def commit(uri: str, step: int, **meta: Any) -> Manifest:
    with CheckpointStore(uri).writer(step, **meta) as writer:
        for name, data in files_for(step).items():
            writer.write_bytes(name, data)
    assert writer.committed is not None
    return writer.committed


def newest(uri: str) -> int | None:
    manifest = CheckpointStore(uri).latest()
    return None if manifest is None else manifest.step


# ----------------------------------------------------------------------------- commit and restore


def test_commit_restore_round_trip(store_uri: str) -> None:
    store = CheckpointStore(store_uri)
    with store.writer(1200, total_steps=3000, attempt=2, job_id="job-x", metadata={"epoch": 4}) as writer:
        writer.write_bytes("model.bin", files_for(1200)["model.bin"])
        with writer.open("optim/state.bin") as f:  # streamed, in two writes
            data = files_for(1200)["optim/state.bin"]
            f.write(data[:30])
            f.write(data[30:])

    fresh = CheckpointStore(store_uri)
    assert fresh.steps() == [1200]
    assert fresh.verify(1200).ok
    assert get(store_uri, LATEST).decode().strip() == step_dir(1200)
    restored = fresh.restore()
    assert restored.step == 1200
    assert sorted(restored.files) == ["model.bin", "optim/state.bin"]
    manifest = restored.manifest
    assert (manifest.total_steps, manifest.attempt, manifest.job_id) == (3000, 2, "job-x")
    assert manifest.metadata["epoch"] == 4
    for name, data in files_for(1200).items():
        assert restored.read_bytes(name) == data
        assert manifest.files[name].size == len(data)
        assert manifest.files[name].digest == reference_digest(data)
        assert (restored.local_dir / name).read_bytes() == data
    # the manifest on storage is the one the writer committed, byte for byte parseable
    assert Manifest.from_json(get(store_uri, f"{step_dir(1200)}/{MANIFEST}")) == manifest
    assert fresh.progress() == (1200, 3000)


def test_empty_location_has_no_checkpoint(store_uri: str) -> None:
    store = CheckpointStore(store_uri)
    assert store.steps() == []
    assert store.latest() is None
    with pytest.raises(NoCheckpoint):
        store.restore()


# ----------------------------------------------------------------------------- manifest last


def test_files_without_manifest_are_a_torn_step(store_uri: str) -> None:
    for name, data in files_for(5).items():
        put(store_uri, f"{step_dir(5)}/{name}", data)
    store = CheckpointStore(store_uri)
    assert store.steps() == [5]
    verdict = store.verify(5)
    assert not verdict.ok and "MANIFEST" in verdict.reason
    assert store.latest() is None
    with pytest.raises(NoCheckpoint):
        store.restore()
    with pytest.raises(NoCheckpoint):
        store.restore(step=5)


def test_newer_torn_step_is_skipped_for_the_older_committed_one(store_uri: str) -> None:
    commit(store_uri, 10)
    commit(store_uri, 20)
    # step 30: a save cut short before its manifest (one file written, one never arrived)
    put(store_uri, f"{step_dir(30)}/model.bin", files_for(30)["model.bin"])
    # step 40: a manifest that was cut mid-write is no manifest either
    good = commit(store_uri, 40).to_json().encode()
    put(store_uri, f"{step_dir(40)}/{MANIFEST}", good[: len(good) // 2])

    store = CheckpointStore(store_uri)
    assert store.steps() == [10, 20, 30, 40]
    assert not store.verify(30).ok and not store.verify(40).ok
    restored = store.restore()
    assert restored.step == 20
    assert restored.read_bytes("model.bin") == files_for(20)["model.bin"]


def test_manifest_listing_a_missing_file_is_not_a_checkpoint(store_uri: str) -> None:
    commit(store_uri, 1)
    commit(store_uri, 2)
    fs, root = raw(store_uri)
    fs.rm_file(f"{root}/{step_dir(2)}/optim/state.bin")
    store = CheckpointStore(store_uri)
    verdict = store.verify(2, full=False)
    assert not verdict.ok and "optim/state.bin is missing" in verdict.reason
    assert store.restore().step == 1


# ----------------------------------------------------------------------------- LATEST is a hint


@pytest.mark.parametrize("hint", ["missing", "torn", "older", "garbage"])
def test_latest_hint_is_never_trusted_alone(store_uri: str, hint: str) -> None:
    commit(store_uri, 100)
    commit(store_uri, 200)
    put(store_uri, f"{step_dir(300)}/model.bin", b"half a save")  # torn
    target = {"missing": step_dir(999), "torn": step_dir(300), "older": step_dir(100), "garbage": "??"}[hint]
    put(store_uri, LATEST, target.encode())

    store = CheckpointStore(store_uri)
    assert store.latest_hint() == {"missing": 999, "torn": 300, "older": 100, "garbage": None}[hint]
    restored = store.restore()
    assert restored.step == 200
    assert restored.read_bytes("model.bin") == files_for(200)["model.bin"]


def test_latest_hint_missing_altogether(store_uri: str) -> None:
    commit(store_uri, 7)
    fs, root = raw(store_uri)
    fs.rm_file(f"{root}/{LATEST}")
    store = CheckpointStore(store_uri)
    assert store.latest_hint() is None
    assert store.restore().step == 7
    commit(store_uri, 8)  # a later commit writes the hint again
    assert CheckpointStore(store_uri).latest_hint() == 8


# ----------------------------------------------------------------------------- corruption


def test_flipped_byte_is_detected_and_previous_step_restored(store_uri: str) -> None:
    commit(store_uri, 1)
    commit(store_uri, 2)
    flip_byte(store_uri, f"{step_dir(2)}/optim/state.bin")

    store = CheckpointStore(store_uri)
    assert store.verify(2, full=False).ok  # same size: the cheap check cannot tell
    verdict = store.verify(2)
    assert not verdict.ok and "checksum mismatch in optim/state.bin" in verdict.reason
    with pytest.raises(NoCheckpoint, match="checksum"):
        store.restore(step=2)  # this store found it corrupt
    # a fresh store picks step 2 on the cheap check; the bytes are checked as they are read (one
    # pass): the flipped byte raises before read_bytes returns, and the next restore falls back
    fresh = CheckpointStore(store_uri)
    with pytest.raises(ChecksumMismatch):
        fresh.restore().read_bytes("optim/state.bin")
    restored = fresh.restore()
    assert restored.step == 1
    assert restored.read_bytes("optim/state.bin") == files_for(1)["optim/state.bin"]
    found = CheckpointStore(store_uri).restore_with(lambda r: r.read_bytes("optim/state.bin"))
    assert found is not None and found[0].step == 1


def test_corrupt_manifest_naming_another_step_is_refused(store_uri: str) -> None:
    commit(store_uri, 1)
    other = commit(store_uri, 2)
    # step 3's directory holds step 2's manifest (e.g. a botched manual copy)
    for name, data in files_for(2).items():
        put(store_uri, f"{step_dir(3)}/{name}", data)
    put(store_uri, f"{step_dir(3)}/{MANIFEST}", other.to_json().encode())
    store = CheckpointStore(store_uri)
    assert store.manifest(3) is None
    assert store.restore().step == 2


# ----------------------------------------------------------------------------- retention


def test_retention_keeps_newest_valid(store_uri: str) -> None:
    for step in (1, 2, 3, 4, 5):
        commit(store_uri, step)
    flip_byte(store_uri, f"{step_dir(4)}/model.bin")  # corrupt: must not count as one of the kept
    put(store_uri, f"{step_dir(6)}/model.bin", b"a save in progress")  # newer torn: left alone

    store = CheckpointStore(store_uri)
    deleted = store.retain(2)
    assert sorted(deleted) == [1, 2, 4]
    fresh = CheckpointStore(store_uri)
    assert fresh.steps() == [3, 5, 6]
    assert [s for s in fresh.steps() if fresh.verify(s).ok] == [3, 5]
    assert not exists(store_uri, f"{step_dir(1)}/model.bin")
    assert fresh.restore().step == 5


def test_retention_protects_the_restored_step(store_uri: str) -> None:
    for step in (1, 2, 3):
        commit(store_uri, step)
    CheckpointStore(store_uri).retain(1, protect={1})
    assert CheckpointStore(store_uri).steps() == [1, 3]


# ----------------------------------------------------------------------------- cancel, abort, overwrite


def test_cancelled_save_leaves_no_committed_step(store_uri: str) -> None:
    commit(store_uri, 1)
    cancel = threading.Event()
    store = CheckpointStore(store_uri)
    writer = store.writer(2, cancel=cancel)
    with pytest.raises(SaveAbandoned):
        with writer:
            writer.write_bytes("model.bin", b"x" * 500)
            cancel.set()  # the preemption notice left too little time
            writer.write_bytes("optim/state.bin", b"y" * 500)
    assert writer.committed is None
    fresh = CheckpointStore(store_uri)
    assert fresh.manifest(2) is None
    assert 2 not in fresh.steps()  # abort removed the leftovers
    assert fresh.restore().step == 1
    assert get(store_uri, LATEST).decode().strip() == step_dir(1)


def test_save_that_raises_is_aborted_and_can_be_retried(store_uri: str) -> None:
    store = CheckpointStore(store_uri)
    with pytest.raises(RuntimeError, match="boom"):
        with store.writer(3) as writer:
            writer.write_bytes("model.bin", b"partial")
            raise RuntimeError("boom")
    assert CheckpointStore(store_uri).latest() is None
    commit(store_uri, 3)  # the same step saves cleanly afterwards
    restored = CheckpointStore(store_uri).restore()
    assert restored.step == 3 and restored.read_bytes("model.bin") == files_for(3)["model.bin"]
    with pytest.raises(CheckpointExists):
        CheckpointStore(store_uri).writer(3)


def test_leftovers_of_an_uncommitted_save_are_replaced(store_uri: str) -> None:
    put(store_uri, f"{step_dir(9)}/stale.bin", b"from a dead attempt")
    commit(store_uri, 9)
    store = CheckpointStore(store_uri)
    restored = store.restore()
    assert sorted(restored.files) == ["model.bin", "optim/state.bin"]
    assert not exists(store_uri, f"{step_dir(9)}/stale.bin")


# ----------------------------------------------------------------------------- several ranks


def test_ranks_commit_only_when_every_part_is_posted(store_uri: str) -> None:
    rank1 = CheckpointStore(store_uri).writer(50, rank=1, world_size=2, attempt=1, job_id="j")
    rank1.write_bytes("rank1.bin", b"one" * 50)
    assert rank1.commit() is None  # posts its part, never the manifest
    assert CheckpointStore(store_uri).latest() is None

    rank0 = CheckpointStore(store_uri).writer(50, rank=0, world_size=2, attempt=1, job_id="j")
    rank0.write_bytes("rank0.bin", b"zero" * 50)
    manifest = rank0.commit()
    assert manifest is not None and sorted(manifest.files) == ["rank0.bin", "rank1.bin"]
    assert manifest.metadata["ranks"] == 2

    restored = CheckpointStore(store_uri).restore()
    assert restored.step == 50
    assert restored.read_bytes("rank1.bin") == b"one" * 50
    fs, root = raw(store_uri)
    leftovers = [
        p for p in fs.find(f"{root}/{step_dir(50)}") if "MANIFEST." in p and not p.endswith(MANIFEST)
    ]
    assert leftovers == []  # the partial manifests are gone once the step is committed


def test_missing_rank_leaves_the_step_torn(store_uri: str) -> None:
    commit(store_uri, 10)
    cancel = threading.Event()
    rank0 = CheckpointStore(store_uri).writer(20, rank=0, world_size=2, attempt=3, job_id="j", cancel=cancel)
    rank0.write_bytes("rank0.bin", b"zero" * 50)
    # rank 1 of an *earlier* attempt posted a part for the same step: it must not count
    stale = CheckpointStore(store_uri).writer(20, rank=1, world_size=2, attempt=2, job_id="j")
    stale.write_bytes("rank1.bin", b"old")
    stale.commit()
    cancel.set()  # rank 1 of this attempt never posts; the notice ends the wait
    with pytest.raises(SaveAbandoned):
        rank0.commit()
    store = CheckpointStore(store_uri)
    assert store.manifest(20) is None
    assert store.restore().step == 10
