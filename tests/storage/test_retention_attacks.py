"""Retention against other writers on every backend (issue 14 item 1): a store re-lists the steps
it keeps and re-hashes only those whose fingerprint (size, ETag, generation, checksum, mtime)
changed since it hashed them, so bytes replaced behind its back never make it delete good steps."""

from __future__ import annotations

from typing import Any

import fsspec

from multispot.checkpoint import CheckpointStore, step_dir


def save(store: CheckpointStore, step: int) -> None:
    with store.writer(step) as writer:
        writer.write_bytes("model.bin", f"weights {step:04d}".encode() * 50)


def test_retention_rechecks_a_step_replaced_behind_the_store(store_uri: str) -> None:
    store = CheckpointStore(store_uri)
    for step in (1, 2, 3):
        save(store, step)
    reads: list[str] = []
    inner = store.storage.open_read

    def counting(path: str) -> Any:
        reads.append(path)
        return inner(path)

    store.storage.open_read = counting  # type: ignore[method-assign]
    assert store.retain(3) == []
    assert reads == [], "untouched steps this store wrote are not read again"

    fs, root = fsspec.core.url_to_fs(store_uri)
    path = f"{root.rstrip('/')}/{step_dir(3)}/model.bin"
    data = bytearray(fs.cat_file(path))
    data[0] ^= 0xFF  # same size, other bytes: what a second writer on step 3 leaves
    fs.pipe_file(path, bytes(data))

    assert store.retain(1) == [1]
    assert [p.rsplit("/", 2)[-2] for p in reads] == [step_dir(3)]
    assert store.steps() == [2, 3]
    assert CheckpointStore(store_uri).latest().step == 2  # type: ignore[union-attr]
    found = CheckpointStore(store_uri).restore_with(lambda r: [r.read_bytes(n) for n in r.files])
    assert found is not None and found[0].step == 2  # one-pass restore falls back past step 3
