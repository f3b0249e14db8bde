"""The checkpoint contract: commit order, "latest" = newest valid, torn steps, retention, copy."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import fsspec
import pytest
from helpers.checkpoints import memory_uri, reference_digest

from multispot.checkpoint import (
    FORMAT_VERSION,
    LATEST,
    MANIFEST,
    CheckpointStore,
    Manifest,
    Verdict,
    copy_checkpoint,
    step_dir,
)
from multispot.checkpoint.manifest import FileEntry, check_file_name, parse_step_dir
from multispot.errors import CheckpointExists, ManifestError, NoCheckpoint

# --------------------------------------------------------------------------- raw access, bypassing the store


def raw(uri: str) -> tuple[Any, str]:
    fs, root = fsspec.core.url_to_fs(uri)
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
    fs.invalidate_cache()
    return bool(fs.exists(f"{root}/{rel}"))


def remove(uri: str, rel: str) -> None:
    fs, root = raw(uri)
    fs.rm_file(f"{root}/{rel}")


def commit(uri: str, step: int, files: dict[str, bytes], **meta: Any) -> Manifest:
    store = CheckpointStore(uri)
    with store.writer(step, **meta) as writer:
        for name, data in files.items():
            writer.write_bytes(name, data)
    assert writer.committed is not None
    return writer.committed


def files_for(step: int) -> dict[str, bytes]:
    return {"model.bin": f"weights of step {step}".encode() * 10, "sub/opt.bin": bytes([step % 256]) * 7}


def newest(uri: str) -> int | None:
    """What a fresh process (no cached verification) sees as the newest valid checkpoint."""
    manifest = CheckpointStore(uri).latest()
    return None if manifest is None else manifest.step


# --------------------------------------------------------------------------- names


def test_step_dir_names_sort_as_numbers() -> None:
    assert step_dir(1200) == "step-000000001200"
    steps = [0, 7, 10, 99, 100, 1200, 999_999_999_999]
    assert sorted(step_dir(s) for s in steps) == [step_dir(s) for s in sorted(steps)]
    for s in steps:
        assert parse_step_dir(step_dir(s)) == s
        assert parse_step_dir(f"/some/root/{step_dir(s)}/") == s
    for bad in (-1, 10**12):
        with pytest.raises(ValueError):
            step_dir(bad)
    for name in ("step-12", "LATEST", "step-00000000120a", "xstep-000000001200"):
        assert parse_step_dir(name) is None


@pytest.mark.parametrize(
    "name", ["", "/abs", "../up", "a/../b", "a//b", "./a", MANIFEST, LATEST, "x.tmp-manifest"]
)
def test_file_names_inside_a_step_are_checked(name: str) -> None:
    with pytest.raises(ValueError):
        check_file_name(name)


def test_plain_file_names_are_accepted() -> None:
    assert check_file_name("model.pt") == "model.pt"
    assert check_file_name("a/b/c.bin") == "a/b/c.bin"
    assert check_file_name("a\\b") == "a/b"
    assert check_file_name("sub/MANIFEST.json") == "sub/MANIFEST.json"


def test_manifest_json_round_trip() -> None:
    manifest = Manifest(
        step=12,
        files={"model.bin": FileEntry(size=3, digest="ab" * 32)},
        time="2026-01-01T00:00:00+00:00",
        total_steps=100,
        attempt=2,
        job_id="j",
        metadata={"a": 1},
    )
    assert Manifest.from_json(manifest.to_json()) == manifest
    assert Manifest.from_json(manifest.to_json().encode()) == manifest


@pytest.mark.parametrize(
    "text",
    [
        "",
        "not json",
        "[]",
        "{}",
        json.dumps({"format": FORMAT_VERSION + 1, "step": 1, "files": {}, "time": "t"}),
        json.dumps({"format": FORMAT_VERSION, "hash": "md5", "step": 1, "files": {}, "time": "t"}),
        json.dumps({"format": FORMAT_VERSION, "step": "x", "files": {}, "time": "t"}),
        json.dumps({"format": FORMAT_VERSION, "step": 1, "files": [], "time": "t"}),
        json.dumps(
            {"format": FORMAT_VERSION, "step": 1, "files": {"../x": {"size": 1, "digest": "a"}}, "time": "t"}
        ),
        json.dumps({"format": FORMAT_VERSION, "step": 1, "files": {"x": {"size": 1}}, "time": "t"}),
    ],
)
def test_unreadable_manifests_raise_manifest_error(text: str) -> None:
    with pytest.raises(ManifestError):
        Manifest.from_json(text)


# --------------------------------------------------------------------------- commit


def test_commit_writes_files_manifest_and_latest(ckpt_uri: str) -> None:
    files = {"model.bin": os.urandom(1000), "nested/dir/opt.bin": b"", "meta.json": b"{}"}
    manifest = commit(
        ckpt_uri, 1200, files, total_steps=5000, attempt=3, job_id="job-1", metadata={"epoch": 2}
    )

    for name, data in files.items():
        assert get(ckpt_uri, f"step-000000001200/{name}") == data
    on_disk = json.loads(get(ckpt_uri, f"step-000000001200/{MANIFEST}"))
    assert on_disk["step"] == 1200
    assert on_disk["format"] == FORMAT_VERSION
    assert on_disk["total_steps"] == 5000
    assert on_disk["attempt"] == 3
    assert on_disk["job_id"] == "job-1"
    assert on_disk["metadata"]["epoch"] == 2 and on_disk["metadata"]["write_seconds"] >= 0
    assert on_disk["time"]
    assert on_disk["files"] == {
        name: {"size": len(data), "digest": reference_digest(data)} for name, data in files.items()
    }
    assert get(ckpt_uri, LATEST).decode().strip() == "step-000000001200"
    assert manifest == Manifest.from_json(get(ckpt_uri, f"step-000000001200/{MANIFEST}"))
    assert manifest.size == sum(len(d) for d in files.values())


class _Spy:
    """Wraps an fsspec filesystem and logs, in order, when each write becomes visible."""

    def __init__(self, fs: Any, log: list[str]) -> None:
        self._fs, self._log = fs, log

    def __getattr__(self, name: str) -> Any:
        return getattr(self._fs, name)

    def pipe_file(self, path: str, data: bytes, **kwargs: Any) -> Any:
        result = self._fs.pipe_file(path, data, **kwargs)
        self._log.append(path.rsplit("/", 1)[-1])
        return result

    def open(self, path: str, mode: str = "rb", **kwargs: Any) -> Any:
        handle = self._fs.open(path, mode, **kwargs)
        if "w" in mode:
            close, log = handle.close, self._log

            def logged_close() -> None:
                close()
                log.append(path.rsplit("/", 1)[-1])

            handle.close = logged_close
        return handle


def test_commit_order_on_an_object_store(mem_uri: str) -> None:
    log: list[str] = []
    store = CheckpointStore(mem_uri)
    store.storage.fs = _Spy(store.storage.fs, log)
    with store.writer(1) as writer:
        writer.write_bytes("a.bin", b"a")
        writer.write_bytes("b.bin", b"b")
        with open(writer.local_dir / "c.bin", "wb") as f:  # a library that wants a path
            f.write(b"c")
    finished = [name for name in log if name in ("a.bin", "b.bin", "c.bin", MANIFEST, LATEST)]
    assert sorted(finished[:3]) == ["a.bin", "b.bin", "c.bin"]
    assert finished[3:] == [MANIFEST, LATEST]


def test_commit_order_on_local_files(file_uri: str) -> None:
    commit(file_uri, 3, {"a.bin": b"a" * 100, "b/c.bin": b"c"})
    root = Path(file_uri[len("file://") :])
    step = root / "step-000000000003"
    manifest_time = (step / MANIFEST).stat().st_mtime_ns
    for name in ("a.bin", "b/c.bin"):
        assert (step / name).stat().st_mtime_ns <= manifest_time
    assert manifest_time <= (root / LATEST).stat().st_mtime_ns
    # no temporary names are left behind
    assert not [p for p in root.rglob("*") if "tmp" in p.name]


def test_latest_hint_never_goes_backwards(ckpt_uri: str) -> None:
    commit(ckpt_uri, 20, files_for(20))
    commit(ckpt_uri, 10, files_for(10))  # an older step committed later (e.g. a copy)
    assert get(ckpt_uri, LATEST).decode().strip() == step_dir(20)
    assert newest(ckpt_uri) == 20


def test_committing_a_committed_step_raises(ckpt_uri: str) -> None:
    commit(ckpt_uri, 5, files_for(5))
    with pytest.raises(CheckpointExists):
        CheckpointStore(ckpt_uri).writer(5)
    # and the committed one is untouched
    assert CheckpointStore(ckpt_uri).restore(5).read_bytes("model.bin") == files_for(5)["model.bin"]


def test_failed_with_block_leaves_no_committed_step(ckpt_uri: str) -> None:
    commit(ckpt_uri, 1, files_for(1))
    store = CheckpointStore(ckpt_uri)
    with pytest.raises(RuntimeError, match="boom"):
        with store.writer(2) as writer:
            writer.write_bytes("model.bin", b"half")
            with open(writer.local_dir / "extra.bin", "wb") as f:
                f.write(b"x")
            raise RuntimeError("boom")
    assert writer.committed is None
    assert 2 not in CheckpointStore(ckpt_uri).steps()
    assert not exists(ckpt_uri, f"step-000000000002/{MANIFEST}")
    assert newest(ckpt_uri) == 1
    assert get(ckpt_uri, LATEST).decode().strip() == step_dir(1)
    # the step can be written again afterwards
    commit(ckpt_uri, 2, files_for(2))
    assert newest(ckpt_uri) == 2


def test_writer_replaces_leftovers_of_an_uncommitted_save(ckpt_uri: str) -> None:
    put(ckpt_uri, "step-000000000004/model.bin", b"stale bytes from a crashed save")
    put(ckpt_uri, "step-000000000004/stray.bin", b"stray")
    commit(ckpt_uri, 4, {"model.bin": b"fresh"})
    restored = CheckpointStore(ckpt_uri).restore()
    assert restored.step == 4
    assert restored.files == ["model.bin"]
    assert restored.read_bytes("model.bin") == b"fresh"
    assert not exists(ckpt_uri, "step-000000000004/stray.bin")


def test_local_dir_files_join_the_manifest(ckpt_uri: str) -> None:
    store = CheckpointStore(ckpt_uri)
    with store.writer(7) as writer:
        writer.write_bytes("direct.bin", b"direct")
        local = writer.local_dir
        (local / "deep" / "er").mkdir(parents=True)
        (local / "lib.ckpt").write_bytes(b"from a library" * 100)
        (local / "deep" / "er" / "shard-0").write_bytes(b"\x00\x01" * 50)
    manifest = writer.committed
    assert manifest is not None
    assert set(manifest.files) == {"direct.bin", "lib.ckpt", "deep/er/shard-0"}
    assert manifest.files["lib.ckpt"].digest == reference_digest(b"from a library" * 100)
    restored = CheckpointStore(ckpt_uri).restore()
    assert restored.read_bytes("lib.ckpt") == b"from a library" * 100
    assert restored.read_bytes("deep/er/shard-0") == b"\x00\x01" * 50
    # a restored checkpoint offers a local folder too, with every file in it
    folder = restored.local_dir
    assert (folder / "deep" / "er" / "shard-0").read_bytes() == b"\x00\x01" * 50
    assert (folder / "direct.bin").read_bytes() == b"direct"
    if not store.local:
        assert not local.exists(), "the staging folder of a remote store is removed after commit"


def test_restore_open_refuses_names_outside_the_manifest(ckpt_uri: str) -> None:
    commit(ckpt_uri, 1, files_for(1))
    put(ckpt_uri, "step-000000000001/not-listed.bin", b"x")
    restored = CheckpointStore(ckpt_uri).restore()
    with pytest.raises(FileNotFoundError):
        restored.open("not-listed.bin")
    assert "step=1" in repr(restored)


# --------------------------------------------------------------------------- latest / restore


def test_empty_store(ckpt_uri: str) -> None:
    store = CheckpointStore(ckpt_uri)
    assert store.steps() == []
    assert store.latest() is None
    assert store.progress() is None
    with pytest.raises(NoCheckpoint):
        store.restore()


def test_latest_is_the_newest_committed(ckpt_uri: str) -> None:
    for step in (100, 300, 200):
        commit(ckpt_uri, step, files_for(step))
    store = CheckpointStore(ckpt_uri)
    assert store.steps() == [100, 200, 300]
    latest = store.latest()
    assert latest is not None and latest.step == 300
    restored = store.restore()
    assert restored.step == 300
    assert restored.read_bytes("model.bin") == files_for(300)["model.bin"]
    assert store.restore(200).read_bytes("sub/opt.bin") == files_for(200)["sub/opt.bin"]


def _truncate(uri: str, rel: str) -> None:
    put(uri, rel, get(uri, rel)[:-3])


def _modify_same_size(uri: str, rel: str) -> None:
    data = bytearray(get(uri, rel))
    data[len(data) // 2] ^= 0xFF
    put(uri, rel, bytes(data))


def _append(uri: str, rel: str) -> None:
    put(uri, rel, get(uri, rel) + b"!")


def _delete(uri: str, rel: str) -> None:
    remove(uri, rel)


@pytest.mark.parametrize("damage", [_truncate, _modify_same_size, _append, _delete])
def test_damaged_newest_step_falls_back_to_the_older_one(ckpt_uri: str, damage: Any) -> None:
    commit(ckpt_uri, 1, files_for(1))
    commit(ckpt_uri, 2, files_for(2))
    damage(ckpt_uri, "step-000000000002/model.bin")

    store = CheckpointStore(ckpt_uri)
    verdict = store.verify(2)
    assert not verdict.ok and "model.bin" in verdict.reason
    assert store.verify(1).ok
    assert newest(ckpt_uri) == 1
    restored = store.restore()
    assert restored.step == 1
    assert restored.read_bytes("model.bin") == files_for(1)["model.bin"]
    with pytest.raises(NoCheckpoint):
        store.restore(2)


def test_files_without_manifest_are_not_a_checkpoint(ckpt_uri: str) -> None:
    commit(ckpt_uri, 1, files_for(1))
    for name, data in files_for(2).items():
        put(ckpt_uri, f"{step_dir(2)}/{name}", data)  # a save that died before its manifest
    store = CheckpointStore(ckpt_uri)
    assert store.steps() == [1, 2]
    assert not store.verify(2).ok
    assert newest(ckpt_uri) == 1


def test_a_manifest_without_its_files_is_not_a_checkpoint(ckpt_uri: str) -> None:
    """A synced folder may upload the manifest first (SageMaker's order is not guaranteed)."""
    commit(ckpt_uri, 1, files_for(1))
    commit(ckpt_uri, 2, files_for(2))
    manifest = get(ckpt_uri, f"{step_dir(2)}/{MANIFEST}")
    put(ckpt_uri, f"{step_dir(3)}/{MANIFEST}", manifest.replace(b'"step": 2', b'"step": 3'))
    assert Manifest.from_json(get(ckpt_uri, f"{step_dir(3)}/{MANIFEST}")).step == 3
    assert newest(ckpt_uri) == 2


@pytest.mark.parametrize(
    "garbage", [b"", b"{", b"null", b"\xff\xfe garbage", b'{"format": 1, "step": 3}', b'{"format": 99}']
)
def test_garbage_manifest_means_not_committed(ckpt_uri: str, garbage: bytes) -> None:
    commit(ckpt_uri, 2, files_for(2))
    put(ckpt_uri, f"{step_dir(3)}/model.bin", b"x")
    put(ckpt_uri, f"{step_dir(3)}/{MANIFEST}", garbage)
    store = CheckpointStore(ckpt_uri)
    assert store.manifest(3) is None
    assert newest(ckpt_uri) == 2
    # not committed, so the step can still be written
    commit(ckpt_uri, 3, files_for(3))
    assert newest(ckpt_uri) == 3


def test_a_manifest_copied_from_another_step_does_not_commit(ckpt_uri: str) -> None:
    commit(ckpt_uri, 1, files_for(1))
    commit(ckpt_uri, 2, {"model.bin": b"two"})
    # step 3 holds step 2's manifest and files: the manifest names step 2, so it is not step 3's
    put(ckpt_uri, f"{step_dir(3)}/model.bin", b"two")
    put(ckpt_uri, f"{step_dir(3)}/{MANIFEST}", get(ckpt_uri, f"{step_dir(2)}/{MANIFEST}"))
    assert CheckpointStore(ckpt_uri).manifest(3) is None
    assert newest(ckpt_uri) == 2


@pytest.mark.parametrize("hint", [b"step-000000000003", b"step-000000000001", b"garbage", b""])
def test_latest_file_is_only_a_hint(ckpt_uri: str, hint: bytes) -> None:
    commit(ckpt_uri, 1, files_for(1))
    commit(ckpt_uri, 2, files_for(2))
    put(ckpt_uri, f"{step_dir(3)}/model.bin", b"torn")  # LATEST may point at a torn step
    put(ckpt_uri, LATEST, hint)
    store = CheckpointStore(ckpt_uri)
    assert newest(ckpt_uri) == 2
    assert store.restore().step == 2


def test_latest_without_hint_file(ckpt_uri: str) -> None:
    commit(ckpt_uri, 1, files_for(1))
    commit(ckpt_uri, 2, files_for(2))
    remove(ckpt_uri, LATEST)
    assert newest(ckpt_uri) == 2


def test_no_valid_step_at_all(ckpt_uri: str) -> None:
    commit(ckpt_uri, 1, files_for(1))
    _truncate(ckpt_uri, f"{step_dir(1)}/model.bin")
    store = CheckpointStore(ckpt_uri)
    assert store.latest() is None
    with pytest.raises(NoCheckpoint):
        store.restore()


def test_extra_files_do_not_invalidate_a_step(ckpt_uri: str) -> None:
    commit(ckpt_uri, 1, files_for(1))
    put(ckpt_uri, f"{step_dir(1)}/.DS_Store", b"junk")
    assert newest(ckpt_uri) == 1


def test_progress_reports_step_and_total(ckpt_uri: str) -> None:
    commit(ckpt_uri, 40, files_for(40), total_steps=100)
    commit(ckpt_uri, 60, files_for(60), total_steps=100)
    assert CheckpointStore(ckpt_uri).progress() == (60, 100)
    commit(ckpt_uri, 70, files_for(70))
    assert CheckpointStore(ckpt_uri).progress() == (70, None)


def test_a_store_uri_with_trailing_slash(tmp_path: Path) -> None:
    uri = (tmp_path / "ck").as_uri()
    commit(uri + "/", 1, files_for(1))
    assert newest(uri) == 1
    assert CheckpointStore(uri + "/").uri == uri


# --------------------------------------------------------------------------- large files


@pytest.mark.parametrize("size_mb", [50])
def test_large_file_streams_and_verifies(ckpt_uri: str, size_mb: int) -> None:
    chunk = os.urandom(1 << 20)
    written = bytearray()
    store = CheckpointStore(ckpt_uri)
    with store.writer(1) as writer:
        with writer.open("big.bin") as f:
            for i in range(size_mb):
                piece = i.to_bytes(4, "little") + chunk[4:]  # every MiB differs
                f.write(piece)
                written += piece
    assert writer.committed is not None
    assert writer.committed.files["big.bin"].size == size_mb << 20
    assert writer.committed.files["big.bin"].digest == reference_digest(bytes(written))
    digest = hashlib.sha256(written)

    fresh = CheckpointStore(ckpt_uri)
    assert fresh.verify(1).ok
    back = hashlib.sha256()
    total = 0
    with fresh.restore().open("big.bin") as f:
        while block := f.read(3 << 20):
            back.update(block)
            total += len(block)
    assert total == size_mb << 20
    assert back.hexdigest() == digest.hexdigest()


# --------------------------------------------------------------------------- retention


def _valid_steps(uri: str) -> list[int]:
    store = CheckpointStore(uri)
    return [s for s in store.steps() if store.verify(s).ok]


def test_retain_keeps_the_newest_n_valid(ckpt_uri: str) -> None:
    for step in range(1, 6):
        commit(ckpt_uri, step, files_for(step))
    deleted = CheckpointStore(ckpt_uri).retain(2)
    assert sorted(deleted) == [1, 2, 3]
    assert CheckpointStore(ckpt_uri).steps() == [4, 5]
    assert _valid_steps(ckpt_uri) == [4, 5]
    assert CheckpointStore(ckpt_uri).retain(2) == []


def test_retain_never_deletes_a_protected_step(ckpt_uri: str) -> None:
    for step in range(1, 6):
        commit(ckpt_uri, step, files_for(step))
    CheckpointStore(ckpt_uri).retain(1, protect={2})
    assert CheckpointStore(ckpt_uri).steps() == [2, 5]
    assert _valid_steps(ckpt_uri) == [2, 5]


def test_retain_with_fewer_steps_than_keep(ckpt_uri: str) -> None:
    commit(ckpt_uri, 1, files_for(1))
    assert CheckpointStore(ckpt_uri).retain(3) == []
    assert CheckpointStore(ckpt_uri).retain(3) == []
    assert _valid_steps(ckpt_uri) == [1]


def test_retain_rejects_keep_below_one(ckpt_uri: str) -> None:
    with pytest.raises(ValueError):
        CheckpointStore(ckpt_uri).retain(0)


def test_retain_deletes_torn_steps_older_than_the_newest_valid_only(ckpt_uri: str) -> None:
    put(ckpt_uri, f"{step_dir(1)}/model.bin", b"torn, older")  # no manifest
    commit(ckpt_uri, 2, files_for(2))
    commit(ckpt_uri, 3, files_for(3))
    _truncate(ckpt_uri, f"{step_dir(3)}/model.bin")  # newer than valid 2, corrupt: left alone
    put(ckpt_uri, f"{step_dir(4)}/model.bin", b"maybe still being written")  # newer, no manifest
    CheckpointStore(ckpt_uri).retain(1)
    assert CheckpointStore(ckpt_uri).steps() == [2, 3, 4]
    assert _valid_steps(ckpt_uri) == [2]


def test_a_corrupt_step_never_pushes_out_the_last_good_one(ckpt_uri: str) -> None:
    commit(ckpt_uri, 1, files_for(1))
    commit(ckpt_uri, 2, files_for(2))
    commit(ckpt_uri, 3, files_for(3))
    commit(ckpt_uri, 4, files_for(4))
    _modify_same_size(ckpt_uri, f"{step_dir(3)}/model.bin")
    _modify_same_size(ckpt_uri, f"{step_dir(4)}/sub/opt.bin")
    CheckpointStore(ckpt_uri).retain(1)
    assert _valid_steps(ckpt_uri) == [2]
    assert newest(ckpt_uri) == 2
    assert 1 not in CheckpointStore(ckpt_uri).steps()


def test_retain_counts_only_valid_steps(ckpt_uri: str) -> None:
    for step in (1, 2, 3):
        commit(ckpt_uri, step, files_for(step))
    _truncate(ckpt_uri, f"{step_dir(2)}/model.bin")
    deleted = CheckpointStore(ckpt_uri).retain(2)
    assert deleted == [2]
    assert CheckpointStore(ckpt_uri).steps() == [1, 3]


# --------------------------------------------------------------------------- copy


@pytest.fixture
def src_dst(request: pytest.FixtureRequest, file_uri: str, mem_uri: str) -> tuple[str, str]:
    return (file_uri, mem_uri) if request.param == "file->memory" else (mem_uri, file_uri)


def _all_bytes(uri: str, step: int) -> dict[str, bytes]:
    restored = CheckpointStore(uri).restore(step)
    return {name: restored.read_bytes(name) for name in restored.files}


@pytest.mark.parametrize("src_dst", ["file->memory", "memory->file"], indirect=True)
def test_copy_round_trips_bytes_exactly(src_dst: tuple[str, str]) -> None:
    src, dst = src_dst
    commit(src, 1, files_for(1))
    payload = {"model.bin": os.urandom(3 << 20), "nested/a/b.bin": os.urandom(17), "empty": b""}
    original = commit(src, 2, payload, total_steps=10, attempt=1, job_id="j", metadata={"k": "v"})

    copied = copy_checkpoint(src, dst)
    assert copied == original
    assert newest(dst) == 2
    assert CheckpointStore(dst).manifest(2) == original
    assert _all_bytes(dst, 2) == payload
    assert get(dst, LATEST).decode().strip() == step_dir(2)
    # only the newest is copied by default; an explicit step copies that one
    assert CheckpointStore(dst).steps() == [2]
    copy_checkpoint(CheckpointStore(src), CheckpointStore(dst), step=1)
    assert _all_bytes(dst, 1) == files_for(1)
    assert get(dst, LATEST).decode().strip() == step_dir(2)
    # and back again
    copy_checkpoint(dst, src + "-again")
    assert _all_bytes(src + "-again", 2) == payload


@pytest.mark.parametrize("damage", [_truncate, _modify_same_size, _delete])
@pytest.mark.parametrize("src_dst", ["file->memory", "memory->file"], indirect=True)
def test_copy_skips_a_corrupt_newest_source_step(src_dst: tuple[str, str], damage: Any) -> None:
    src, dst = src_dst
    commit(src, 1, files_for(1))
    commit(src, 2, files_for(2))
    damage(src, f"{step_dir(2)}/model.bin")
    copied = copy_checkpoint(src, dst)
    assert copied.step == 1
    assert newest(dst) == 1
    assert _all_bytes(dst, 1) == files_for(1)
    assert not CheckpointStore(dst).verify(2).ok
    assert CheckpointStore(dst).manifest(2) is None  # nothing committed for the bad step


def test_copy_of_an_explicit_bad_step_fails(file_uri: str, mem_uri: str) -> None:
    commit(file_uri, 1, files_for(1))
    _truncate(file_uri, f"{step_dir(1)}/model.bin")
    with pytest.raises(NoCheckpoint):
        copy_checkpoint(file_uri, mem_uri, step=1)
    with pytest.raises(NoCheckpoint):
        copy_checkpoint(file_uri, mem_uri)
    assert newest(mem_uri) is None


def test_copy_is_idempotent(file_uri: str, mem_uri: str) -> None:
    commit(file_uri, 5, files_for(5))
    first = copy_checkpoint(file_uri, mem_uri)
    second = copy_checkpoint(file_uri, mem_uri)
    assert first == second
    assert _all_bytes(mem_uri, 5) == files_for(5)


def test_copy_repairs_a_damaged_copy_at_the_destination(file_uri: str, mem_uri: str) -> None:
    """A destination whose manifest arrived but whose files did not (or got damaged) is rewritten."""
    commit(file_uri, 5, files_for(5))
    copy_checkpoint(file_uri, mem_uri)
    _truncate(mem_uri, f"{step_dir(5)}/model.bin")
    assert newest(mem_uri) is None
    copy_checkpoint(file_uri, mem_uri)
    assert newest(mem_uri) == 5
    assert _all_bytes(mem_uri, 5) == files_for(5)


# A manifest as multispot wrote it before xxh3-128 (``sha256-chunked-8MiB``), stored verbatim: such
# checkpoints still verify and restore, and a copy keeps their checksums.
OLD_FORMAT_FILE = b"old format checkpoint\n" * 1000
OLD_FORMAT_MANIFEST = """{
 "attempt": 2,
 "files": {
  "state.bin": {
   "digest": "9521df0ad5c0b5fb971da4e55e6aac2f4cb7dec82c46ba5415544d30cdfbf86f",
   "size": 22000
  }
 },
 "format": 1,
 "hash": "sha256-chunked-8MiB",
 "job_id": "old-job",
 "metadata": {"write_seconds": 0.01},
 "step": 40,
 "time": "2026-01-02T03:04:05.678+00:00",
 "total_steps": 100
}"""


def test_a_stored_old_format_manifest_still_verifies(ckpt_uri: str) -> None:
    put(ckpt_uri, "step-000000000040/state.bin", OLD_FORMAT_FILE)
    put(ckpt_uri, "step-000000000040/MANIFEST.json", OLD_FORMAT_MANIFEST.encode())
    store = CheckpointStore(ckpt_uri)
    assert store.verify(40) == Verdict(40, True)
    restored = store.restore()
    assert restored.step == 40 and restored.manifest.hash == "sha256-chunked-8MiB"
    assert restored.read_bytes("state.bin") == OLD_FORMAT_FILE
    # a new save next to it uses the new checksum
    commit(ckpt_uri, 41, {"state.bin": b"new"})
    assert CheckpointStore(ckpt_uri).manifest(41).hash == "xxh3-128"  # type: ignore[union-attr]
    # a copy keeps the old checksums verbatim, and verifies
    copied = copy_checkpoint(store, memory_uri(), step=40)
    assert copied.hash == "sha256-chunked-8MiB"
    # a flipped byte is still caught with the old checksum
    put(ckpt_uri, "step-000000000040/state.bin", b"X" + OLD_FORMAT_FILE[1:])
    fresh = CheckpointStore(ckpt_uri)
    assert not fresh.verify(40).ok and "checksum mismatch" in fresh.verify(40).reason


def test_a_step_removed_while_it_is_verified_is_not_valid(
    ckpt_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Retention may delete a step between the listing and the reads of a verification (a server
    listing a running job's checkpoints): that step is reported gone, never an error."""
    commit(ckpt_uri, 3, files_for(3))
    store = CheckpointStore(ckpt_uri)
    listed = store.file_prints

    def then_removed(step: int) -> Any:
        prints = listed(step)
        for name in files_for(step):
            remove(ckpt_uri, f"{step_dir(step)}/{name}")
        return prints

    monkeypatch.setattr(store, "file_prints", then_removed)
    verdict = store.verify(3)
    assert not verdict.ok and "removed while it was being checked" in verdict.reason
