"""Time to durable vs the notice: the runtime reports how long a save took to become durable, says
in the job's log when a save cannot finish inside what is left of the notice, and the interval
advice takes that figure."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from multispot.checkpoint import MANIFEST, CheckpointStore, step_dir
from multispot.policy.interval import save_seconds_from
from multispot.runtime import Checkpointer, JobEnv

pytestmark = pytest.mark.usefixtures("isolated_notice")


def job_env(uri: str) -> JobEnv:
    return JobEnv(
        job_id="durable-1",
        attempt=1,
        provider="local",
        checkpoint_uri=uri,
        output_uri=None,
        notice_seconds=30.0,
        checkpoint_interval=600.0,
        checkpoint_keep=3,
    )


def save(ckpt: Checkpointer, step: int) -> None:
    with ckpt.save(step) as writer:
        writer.write_bytes("state.bin", b"x" * 1000)


def test_the_last_save_time_is_reported_and_recorded_in_the_next_manifest(file_uri: str) -> None:
    ckpt = Checkpointer(file_uri, env=job_env(file_uri))
    assert ckpt.last_save_seconds is None
    save(ckpt, 1)
    first = ckpt.last_save_seconds
    assert first is not None and first > 0
    assert "durable_seconds" not in CheckpointStore(file_uri).manifest(1).metadata  # type: ignore[union-attr]
    save(ckpt, 2)
    metadata = CheckpointStore(file_uri).manifest(2).metadata  # type: ignore[union-attr]
    assert metadata["durable_seconds"] == round(first, 3)


def test_a_save_that_cannot_fit_the_notice_says_so(file_uri: str, capsys: pytest.CaptureFixture[str]) -> None:
    ckpt = Checkpointer(file_uri, env=job_env(file_uri))
    save(ckpt, 1)
    ckpt.save_seconds.append(500.0)  # as if the last save had taken 500 s to become durable
    ckpt.notice.fire(20)
    said = capsys.readouterr().err
    assert "cannot finish inside the preemption notice" in said and "500.0s" in said
    save(ckpt, 2)  # an emergency save anyway: it says so again, naming the step
    assert "saving step 2 cannot finish" in capsys.readouterr().err
    assert not ckpt.can_save_in_time()


def test_a_save_that_fits_says_nothing(file_uri: str, capsys: pytest.CaptureFixture[str]) -> None:
    ckpt = Checkpointer(file_uri, env=job_env(file_uri))
    save(ckpt, 1)
    ckpt.notice.fire(25)
    save(ckpt, 2)
    assert "cannot finish" not in capsys.readouterr().err


@pytest.mark.parametrize(
    ("metadata", "expected"),
    [
        ({"write_seconds": 2.0}, (2.0, "write_seconds")),
        ({"write_seconds": 2.0, "durable_seconds": 3.5}, (3.5, "durable_seconds")),
        ({"write_seconds": 4.0, "durable_seconds": 3.5}, (4.0, "write_seconds")),
        ({"durable_seconds": "soon", "write_seconds": True}, None),
        ({}, None),
    ],
)
def test_interval_advice_takes_the_time_to_durable(metadata: dict[str, object], expected: object) -> None:
    assert save_seconds_from(metadata) == expected


def test_a_local_save_fsyncs_each_thing_once_in_commit_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The file before the manifest exists, the manifest before its rename, the step folder after
    the rename (which makes the file's entry and the manifest's durable together): three fsyncs,
    and the sub-folder of a nested file before the manifest."""
    synced: list[str] = []
    real = os.fsync

    def fsync(fd: int) -> None:
        path = os.readlink(f"/proc/self/fd/{fd}")
        manifest_there = (tmp_path / "ckpt" / step_dir(1) / MANIFEST).exists()
        synced.append(f"{os.path.relpath(path, tmp_path / 'ckpt')} {'after' if manifest_there else 'before'}")
        real(fd)

    if not os.path.isdir("/proc/self/fd"):
        pytest.skip("needs /proc to name the descriptors fsynced")
    store = CheckpointStore((tmp_path / "ckpt").as_uri())
    monkeypatch.setattr(os, "fsync", fsync)
    with store.writer(1) as writer:
        writer.write_bytes("model.bin", b"m" * 1000)
        writer.write_bytes("opt/state.bin", b"o" * 1000)
    step = step_dir(1)
    assert sorted(s for s in synced if s.endswith("before") and "tmp-manifest" not in s) == sorted(
        [f"{step}/model.bin before", f"{step}/opt/state.bin before", f"{step}/opt before"]
    )
    assert [s for s in synced if "tmp-manifest" in s] == [
        f"{step}/{MANIFEST}.{os.getpid()}.tmp-manifest before"
    ]
    assert [s for s in synced if s.endswith("after")] == [f"{step} after"]


@pytest.mark.parametrize("one_write", [False, True])
def test_a_local_save_starts_writeback_of_each_stretch_as_it_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, one_write: bool
) -> None:
    """Every ``WRITEBACK`` bytes written, the kernel is asked to start writing that stretch (and
    only that stretch) to disk, right after it is written, even inside one large write; the
    stretches cover the file in order, small writes gathered; the fsync comes after all of them."""
    from multispot.checkpoint import storage

    events: list[tuple[str, int, int, int]] = []

    def start_writeback(fd: int, offset: int, count: int, flags: int) -> int:
        events.append(("wb", offset, count, os.fstat(fd).st_size))
        return 0

    monkeypatch.setattr(storage.WritebackFile, "WRITEBACK", 1000)
    monkeypatch.setattr(storage, "_sync_file_range", lambda: start_writeback)
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (events.append(("fsync", fd, 0, 0)), real(fd))[1])
    data = os.urandom(3700)
    store = CheckpointStore((tmp_path / "ckpt").as_uri())
    with store.writer(1) as writer, writer.open("state.bin") as f:
        if one_write:
            f.write(data)
        else:
            f.write(data[:2500])  # one write past two stretches
            for i in range(2500, 3700, 100):  # small writes, gathered by the buffers
                f.write(data[i : i + 100])
    kicks = [(off, n, size) for kind, off, n, size in events if kind == "wb"]
    assert [(off, n) for off, n, _ in kicks] == [(0, 1000), (1000, 1000), (2000, 1000)]
    assert all(size == off + n for off, n, size in kicks), "each stretch started as soon as written"
    first_fsync = next(i for i, e in enumerate(events) if e[0] == "fsync")
    assert all(kind == "wb" for kind, *_ in events[:first_fsync])
    assert (tmp_path / "ckpt" / step_dir(1) / "state.bin").read_bytes() == data


def test_without_sync_file_range_a_local_save_still_writes_and_commits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where the platform has no ``sync_file_range`` (macOS, or a libc without it) the writes go
    on as plain writes: the checkpoint is the same."""
    from multispot.checkpoint import storage

    monkeypatch.setattr(storage, "_sync_file_range", lambda: None)
    store = CheckpointStore((tmp_path / "ckpt").as_uri())
    data = os.urandom(3 * storage.WritebackFile.WRITEBACK + 5)
    with store.writer(1) as writer:
        writer.write_bytes("state.bin", data)
    assert store.restore(1).read_bytes("state.bin") == data


def test_sync_file_range_is_found_on_linux() -> None:
    """The lookup works where the bench measured it (Linux): a lookup that silently failed would
    leave every save to the final fsync."""
    import sys

    from multispot.checkpoint import storage

    if not sys.platform.startswith("linux"):
        pytest.skip("sync_file_range is Linux's")
    assert storage._sync_file_range() is not None
