"""Hostile files and other writers under a checkpoint URI (issue 14, items 1 and 5).

Each test is one attack a hostile tester found, on a local folder and on memory:// (the object-store
code path). The retention attack runs on the cloud emulators too (tests/storage).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import fsspec
import pytest

from multispot.checkpoint import LATEST, MANIFEST, CheckpointStore, Manifest, copy_checkpoint, step_dir
from multispot.checkpoint import store as store_module
from multispot.checkpoint.store import iter_checkpoints
from multispot.errors import CheckpointError, CheckpointExists, ManifestError


def raw(uri: str) -> tuple[Any, str]:
    fs, root = fsspec.core.url_to_fs(uri)
    return fs, root.rstrip("/")


def put(uri: str, rel: str, data: bytes) -> None:
    fs, root = raw(uri)
    path = f"{root}/{rel}"
    fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
    fs.pipe_file(path, data)


def flip_a_byte(uri: str, rel: str) -> None:
    """Change one byte and keep the size: in place on a local folder (same inode, and usually the
    same mtime tick as the write), as a new object elsewhere (an object cannot be edited)."""
    fs, root = raw(uri)
    path = f"{root}/{rel}"
    if uri.startswith("file://"):
        with open(path, "r+b") as f:
            first = f.read(1)
            f.seek(0)
            f.write(bytes([first[0] ^ 0xFF]))
        return
    data = bytearray(fs.cat_file(path))
    data[0] ^= 0xFF
    fs.pipe_file(path, bytes(data))


def save(store: CheckpointStore, step: int, data: bytes | None = None) -> Manifest:
    with store.writer(step) as writer:
        writer.write_bytes("model.bin", data if data is not None else f"weights {step:04d}".encode() * 50)
    assert writer.committed is not None
    return writer.committed


class CountingReads:
    """Counts the files a store opens for reading (to prove re-checks do not re-read everything)."""

    def __init__(self, store: CheckpointStore) -> None:
        self.paths: list[str] = []
        inner = store.storage.open_read

        def open_read(path: str) -> Any:
            self.paths.append(path)
            return inner(path)

        store.storage.open_read = open_read  # type: ignore[method-assign]


# --------------------------------------------------------------------------- item 1: other writers


def test_retention_rechecks_a_step_flipped_after_this_store_wrote_it(ckpt_uri: str) -> None:
    store = CheckpointStore(ckpt_uri)
    for step in (1, 2, 3):
        save(store, step)
    flip_a_byte(ckpt_uri, f"{step_dir(3)}/model.bin")
    deleted = store.retain(1)
    # step 3 no longer holds what its manifest says: step 2 is the newest valid one and stays
    assert deleted == [1]
    assert store.steps() == [2, 3]
    assert CheckpointStore(ckpt_uri).latest().step == 2  # type: ignore[union-attr]
    assert restored_step(ckpt_uri) == 2


def test_retention_rechecks_a_step_another_writer_replaced(ckpt_uri: str) -> None:
    store = CheckpointStore(ckpt_uri)
    for step in (1, 2, 3):
        save(store, step)
    put(ckpt_uri, f"{step_dir(3)}/model.bin", b"another writer's bytes, same size?"[:10] * 50)
    assert store.retain(1) == [1]
    assert CheckpointStore(ckpt_uri).latest().step == 2  # type: ignore[union-attr]
    assert restored_step(ckpt_uri) == 2


def test_retention_reads_only_the_files_whose_fingerprint_changed(ckpt_uri: str) -> None:
    store = CheckpointStore(ckpt_uri)
    for step in (1, 2, 3):
        save(store, step)
    reads = CountingReads(store)
    assert store.retain(2) == [1]
    assert reads.paths == [], "steps this store wrote and nobody touched are not read again"
    flip_a_byte(ckpt_uri, f"{step_dir(2)}/model.bin")
    assert store.retain(2) == [2], "a torn step older than the newest valid one goes"
    assert [p.rsplit("/", 2)[-2] for p in reads.paths] == [step_dir(2)], "only the changed step was read"
    assert store.steps() == [3]


def test_a_second_writer_on_the_same_step_keeps_the_first_from_committing(ckpt_uri: str) -> None:
    first, second = CheckpointStore(ckpt_uri), CheckpointStore(ckpt_uri)
    save(first, 1)
    writer_a = first.writer(2)
    writer_a.write_bytes("model.bin", b"A" * 1000)
    writer_b = second.writer(2)  # clears what it takes for leftovers: A's file
    writer_b.write_bytes("model.bin", b"B" * 1000)
    with pytest.raises(CheckpointError, match="changed while it was being saved"):
        writer_a.commit()
    assert writer_a.committed is None
    writer_b.commit()
    # whoever looks now finds B's bytes, and A's store does not vouch for A's
    assert first.restore().read_bytes("model.bin") == b"B" * 1000
    assert first.retain(1) == [1]
    assert CheckpointStore(ckpt_uri).latest().step == 2  # type: ignore[union-attr]
    assert restored_step(ckpt_uri) == 2


def test_a_file_removed_under_a_writer_keeps_it_from_committing(ckpt_uri: str) -> None:
    store = CheckpointStore(ckpt_uri)
    writer = store.writer(5)
    writer.write_bytes("model.bin", b"x" * 100)
    writer.write_bytes("extra.bin", b"y" * 100)
    fs, root = raw(ckpt_uri)
    fs.rm_file(f"{root}/{step_dir(5)}/extra.bin")
    with pytest.raises(CheckpointError, match=r"extra\.bin"):
        writer.commit()
    assert CheckpointStore(ckpt_uri).latest() is None


# --------------------------------------------------------------------------- item 5: hostile files


def test_a_deeply_nested_manifest_is_a_torn_step(ckpt_uri: str) -> None:
    save(CheckpointStore(ckpt_uri), 4)
    put(ckpt_uri, f"{step_dir(5)}/{MANIFEST}", b"[" * 200_000 + b"]" * 200_000)
    put(ckpt_uri, f"{step_dir(6)}/{MANIFEST}", b'{"a":' * 100_000 + b"1" + b"}" * 100_000)
    with pytest.raises(ManifestError):
        Manifest.from_json(b"[" * 200_000 + b"]" * 200_000)
    store = CheckpointStore(ckpt_uri)
    assert store.restore().step == 4
    assert store.newest_manifest() is not None and store.newest_manifest().step == 4  # type: ignore[union-attr]
    verdicts = dict(iter_checkpoints(store))
    assert not verdicts[5].ok and not verdicts[6].ok and verdicts[4].ok


def test_an_oversized_manifest_is_a_torn_step(ckpt_uri: str, monkeypatch: pytest.MonkeyPatch) -> None:
    save(CheckpointStore(ckpt_uri), 1)
    manifest = save(CheckpointStore(ckpt_uri), 2)
    monkeypatch.setattr(store_module, "MANIFEST_LIMIT", len(manifest.to_json()) - 1)
    assert CheckpointStore(ckpt_uri).manifest(2) is None
    monkeypatch.setattr(store_module, "MANIFEST_LIMIT", 64 * 1024 * 1024)
    assert CheckpointStore(ckpt_uri).manifest(2) == manifest


def test_a_manifest_without_files_is_a_torn_step(ckpt_uri: str) -> None:
    good = save(CheckpointStore(ckpt_uri), 6)
    empty = Manifest(step=7, files={}, time=good.time)
    put(ckpt_uri, f"{step_dir(7)}/{MANIFEST}", empty.to_json().encode())
    with pytest.raises(ManifestError, match="no files"):
        Manifest.from_json(empty.to_json())
    assert CheckpointStore(ckpt_uri).restore().step == 6
    # and a save with nothing in it is refused, not committed as an empty checkpoint
    with pytest.raises(CheckpointError, match="no files"):
        with CheckpointStore(ckpt_uri).writer(8):
            pass
    assert CheckpointStore(ckpt_uri).restore().step == 6


def test_a_file_named_like_a_step_is_skipped(ckpt_uri: str) -> None:
    put(ckpt_uri, step_dir(9), b"not a folder")
    store = CheckpointStore(ckpt_uri)
    for step in (10, 11, 12):
        save(store, step)
        store.retain(1)
    assert store.steps() == [12]
    assert CheckpointStore(ckpt_uri).restore().step == 12
    fs, root = raw(ckpt_uri)
    assert fs.cat_file(f"{root}/{step_dir(9)}") == b"not a folder", "a stray entry is not ours to delete"


def test_latest_as_a_folder_does_not_break_saves(ckpt_uri: str) -> None:
    put(ckpt_uri, f"{LATEST}/inside", b"x")
    if ckpt_uri.startswith("file://"):
        assert Path(raw(ckpt_uri)[1], LATEST).is_dir()
    store = CheckpointStore(ckpt_uri)
    save(store, 1)
    save(store, 2)
    assert CheckpointStore(ckpt_uri).latest().step == 2  # type: ignore[union-attr]
    assert restored_step(ckpt_uri) == 2
    assert store.retain(1) == [1]


def test_latest_as_a_fifo_does_not_hang_saves(file_uri: str) -> None:
    root = Path(raw(file_uri)[1])
    root.mkdir(parents=True)
    os.mkfifo(root / LATEST)
    done = threading.Event()

    def saves() -> None:
        store = CheckpointStore(file_uri)
        save(store, 1)
        save(store, 2)
        done.set()

    thread = threading.Thread(target=saves, daemon=True)
    thread.start()
    thread.join(60)
    if not done.is_set():  # unblock the reader so the thread can end, then fail
        fd = os.open(root / LATEST, os.O_WRONLY | os.O_NONBLOCK)
        os.close(fd)
        pytest.fail("a save blocked on a FIFO named LATEST")
    assert CheckpointStore(file_uri).restore().step == 2
    assert CheckpointStore(file_uri).latest_hint() == 2  # the FIFO was replaced by the hint


def test_a_fifo_named_like_a_checkpoint_file_is_missing_not_read(file_uri: str) -> None:
    store = CheckpointStore(file_uri)
    save(store, 1)
    with store.writer(2) as writer:
        writer.write_bytes("model.bin", b"")
        writer.write_bytes("other.bin", b"o")
    step = Path(raw(file_uri)[1], step_dir(2))
    (step / "model.bin").unlink()
    os.mkfifo(step / "model.bin")
    verdict = CheckpointStore(file_uri).verify(2)
    assert not verdict.ok and "model.bin is missing" in verdict.reason
    assert CheckpointStore(file_uri).restore().step == 1


def test_copy_refuses_a_destination_with_a_different_step_of_the_same_number(
    ckpt_uri: str, tmp_path: Path
) -> None:
    source = (tmp_path / "source").as_uri()
    save(CheckpointStore(source), 3, b"the source's weights" * 20)
    theirs = save(CheckpointStore(ckpt_uri), 3, b"someone else's step" * 20)
    with pytest.raises(CheckpointExists, match="different checkpoint at step 3"):
        copy_checkpoint(source, ckpt_uri)
    assert CheckpointStore(ckpt_uri).restore().manifest == theirs  # untouched
    # the same step already there: success without copying anything
    copy_checkpoint(source, (tmp_path / "copy").as_uri())
    assert copy_checkpoint(source, (tmp_path / "copy").as_uri()).step == 3


def restored_step(uri: str) -> int | None:
    """The step a one-pass restore settles on, with a fresh store (reading every file)."""
    found = CheckpointStore(uri).restore_with(lambda r: [r.read_bytes(name) for name in r.files])
    return None if found is None else found[0].step
