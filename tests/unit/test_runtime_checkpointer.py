"""The Checkpointer a training script holds: save on a schedule, retention, restore, the notice."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from multispot.checkpoint import CheckpointStore, step_dir
from multispot.checkpoint.transfer import MiB, Transfer
from multispot.runtime import Checkpointer, JobEnv
from multispot.runtime.checkpointer import resumed_from_step

pytestmark = pytest.mark.usefixtures("isolated_notice")


def job_env(uri: str, **kwargs: object) -> JobEnv:
    fields: dict[str, object] = {
        "job_id": "train-abc123",
        "attempt": 2,
        "provider": "local",
        "checkpoint_uri": uri,
        "output_uri": None,
        "notice_seconds": 30.0,
        "checkpoint_interval": 600.0,
        "checkpoint_keep": 3,
    }
    fields.update(kwargs)
    return JobEnv(**fields)  # type: ignore[arg-type]


def save(ckpt: Checkpointer, step: int, total: int | None = None) -> None:
    with ckpt.save(step, total_steps=total, metadata={"epoch": step // 10}) as writer:
        writer.write_bytes("state.bin", f"state {step}".encode())


def test_explicit_uri_wins_over_the_environment(tmp_path: Path) -> None:
    uri = (tmp_path / "explicit").as_uri()
    ckpt = Checkpointer(uri, env=job_env("memory://not/used"))
    assert ckpt.store.uri == uri
    assert ckpt.interval == 600.0 and ckpt.keep == 3
    assert uri in repr(ckpt)


def test_settings_come_from_the_environment(file_uri: str) -> None:
    ckpt = Checkpointer(env=job_env(file_uri, checkpoint_interval=42.0, checkpoint_keep=5))
    assert ckpt.store.uri == file_uri
    assert (ckpt.interval, ckpt.keep) == (42.0, 5)


def test_transfer_settings_come_from_the_job_or_the_caller(file_uri: str) -> None:
    env = job_env(file_uri, checkpoint_transfer={"part_size_mib": 64, "concurrency": 3})
    assert Checkpointer(env=env).store.transfer == Transfer(part_size=64 * MiB, concurrency=3)
    given = Transfer(part_size=16 * MiB)
    assert Checkpointer(env=env, transfer=given).store.transfer == given
    assert Checkpointer(env=job_env(file_uri)).store.transfer == Transfer()
    with pytest.raises(ValueError, match=r"MULTISPOT_CHECKPOINT_TRANSFER: part_size .* at least 5 MiB"):
        Checkpointer(env=job_env(file_uri, checkpoint_transfer={"part_size_mib": 1}))
    with pytest.raises(ValueError, match="unknown setting parts"):
        Checkpointer(env=job_env(file_uri, checkpoint_transfer={"parts": 1}))


def test_should_save_by_interval(file_uri: str) -> None:
    ckpt = Checkpointer(file_uri, interval=0.5, keep=2, env=job_env(file_uri))
    assert not ckpt.should_save(1)
    time.sleep(0.55)
    assert ckpt.should_save(1)
    save(ckpt, 1)
    assert not ckpt.should_save(1)  # that step is saved
    assert not ckpt.should_save(2)  # the interval starts again
    time.sleep(0.55)
    assert ckpt.should_save(2)
    assert not ckpt.should_save(1)


def test_notice_makes_the_next_step_due(file_uri: str) -> None:
    ckpt = Checkpointer(file_uri, interval=3600, env=job_env(file_uri))
    save(ckpt, 10)
    assert not ckpt.should_save(11)
    assert not ckpt.preempted and ckpt.seconds_left() is None
    ckpt.notice.fire(12)
    assert ckpt.preempted
    left = ckpt.seconds_left()
    assert left is not None and 11 < left <= 12
    assert ckpt.should_save(11)
    assert not ckpt.should_save(10)  # already saved: nothing to do but exit


def test_save_commits_with_job_details(file_uri: str) -> None:
    ckpt = Checkpointer(file_uri, env=job_env(file_uri))
    save(ckpt, 30, total=100)
    manifest = CheckpointStore(file_uri).manifest(30)
    assert manifest is not None
    assert (manifest.attempt, manifest.job_id, manifest.total_steps) == (2, "train-abc123", 100)
    assert manifest.metadata["epoch"] == 3 and manifest.metadata["write_seconds"] >= 0
    assert ckpt.last_saved_step == 30
    assert len(ckpt.save_seconds) == 1 and ckpt.save_seconds[0] >= 0
    committed = ckpt.committed()
    assert committed is not None and committed.step == 30


def test_save_runs_retention(ckpt_uri: str) -> None:
    ckpt = Checkpointer(ckpt_uri, keep=2, env=job_env(ckpt_uri))
    for step in range(1, 6):
        save(ckpt, step)
        assert CheckpointStore(ckpt_uri).steps() == list(range(max(1, step - 1), step + 1))
    assert CheckpointStore(ckpt_uri).steps() == [4, 5]


def test_retention_keeps_the_restored_step(file_uri: str) -> None:
    first = Checkpointer(file_uri, keep=5, env=job_env(file_uri))
    for step in (1, 2):
        save(first, step)
    resumed = Checkpointer(file_uri, keep=1, env=job_env(file_uri, attempt=3))
    restored = resumed.restore()
    assert restored is not None and restored.step == 2
    for step in (3, 4, 5):
        save(resumed, step)
    assert CheckpointStore(file_uri).steps() == [2, 5]


def test_no_retention_after_the_notice(file_uri: str) -> None:
    ckpt = Checkpointer(file_uri, keep=1, env=job_env(file_uri))
    save(ckpt, 1)
    save(ckpt, 2)
    assert CheckpointStore(file_uri).steps() == [2]
    ckpt.notice.fire(5)
    save(ckpt, 3)
    assert CheckpointStore(file_uri).steps() == [2, 3]  # the budget is for committing, not deleting


def test_failed_save_commits_nothing(file_uri: str) -> None:
    ckpt = Checkpointer(file_uri, keep=1, env=job_env(file_uri))
    save(ckpt, 1)
    with pytest.raises(OSError):
        with ckpt.save(2) as writer:
            writer.write_bytes("state.bin", b"partial")
            raise OSError("disk full")
    assert ckpt.last_saved_step == 1
    assert CheckpointStore(file_uri).steps() == [1]
    assert len(ckpt.save_seconds) == 1  # only the successful save was measured


def test_restore_returns_the_newest_valid(ckpt_uri: str) -> None:
    writer = Checkpointer(ckpt_uri, keep=10, env=job_env(ckpt_uri))
    for step in (10, 20, 30):
        save(writer, step)
    # step 30 got damaged after its commit (e.g. a torn upload)
    store = CheckpointStore(ckpt_uri)
    store.fs.pipe_file(f"{store.root}/{step_dir(30)}/state.bin", b"state 3!")

    resumed = Checkpointer(ckpt_uri, env=job_env(ckpt_uri))
    restored = resumed.restore()
    assert restored is not None
    assert restored.step == 20
    assert restored.read_bytes("state.bin") == b"state 20"
    assert resumed.restored is restored
    assert resumed.last_saved_step == 20
    assert not resumed.should_save(20)


def test_restore_waits_for_no_fsync(file_uri: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The record of what an attempt restored is written whole but not fsynced: two fsyncs were
    10-15 ms of a 64 MB torch.load here, the first save waits for the record, and readers
    already take a missing or torn record as "not restored yet"."""
    save(Checkpointer(file_uri, env=job_env(file_uri)), 10)
    synced: list[int] = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real(fd))[1])
    resumed = Checkpointer(file_uri, env=job_env(file_uri))
    assert resumed.restore_with(lambda r: r.read_bytes("state.bin")) == b"state 10"
    resumed.finish_pending()  # the record is written on a thread; saves wait for it
    assert synced == []
    assert resumed_from_step(file_uri, 2, "train-abc123") == 10


def test_restore_returns_before_its_record_is_written_and_a_save_waits_for_it(
    file_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The restore record is off the restore's path (an object-store round trip after the load),
    but never behind a save: a kill inside the save must find the record there."""
    save(Checkpointer(file_uri, env=job_env(file_uri)), 10)
    resumed = Checkpointer(file_uri, env=job_env(file_uri))
    release, writes = threading.Event(), []
    real = resumed.store.write_record

    def slow_write(relpath: str, data: bytes, durable: bool = True) -> None:
        assert release.wait(60)
        real(relpath, data, durable)
        writes.append(relpath)

    monkeypatch.setattr(resumed.store, "write_record", slow_write)
    assert resumed.restore_with(lambda r: r.read_bytes("state.bin")) == b"state 10"
    assert writes == [] and resumed_from_step(file_uri, 2, "train-abc123") is None
    threading.Timer(0.2, release.set).start()  # the save below blocks until then
    with resumed.save(11) as writer:
        assert writes == [".multispot/attempt-2.json"]  # the save began only once it was written
        writer.write_bytes("state.bin", b"state 11")
    assert resumed_from_step(file_uri, 2, "train-abc123") == 10


def test_restore_on_a_fresh_start(ckpt_uri: str) -> None:
    ckpt = Checkpointer(ckpt_uri, env=job_env(ckpt_uri))
    assert ckpt.restore() is None
    assert ckpt.restored is None
    assert ckpt.last_saved_step is None
    assert ckpt.committed() is None


def test_the_notice_is_shared_by_every_checkpointer(file_uri: str) -> None:
    a = Checkpointer(file_uri, env=job_env(file_uri))
    b = Checkpointer(file_uri, env=job_env(file_uri))
    calls: list[float] = []
    b.on_preemption(calls.append)
    a.notice.fire(3)
    assert b.preempted and calls == [3]
