"""The job store under faults: another process's lock, a corrupt or emptied file, clock skew, file
modes; and the CLI's one handler for them (issue 14)."""

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from multispot.errors import StoreError
from multispot.status import JobState
from multispot.store import JobRecord, JobStore, home


def record(job_id: str) -> JobRecord:
    return JobRecord(
        id=job_id,
        name="train",
        spec={"name": "train", "command": ["x"]},
        provider="local",
        state=JobState.PENDING,
        checkpoint_uri="file:///tmp/c",
        output_uri="file:///tmp/o",
    )


class Holder:
    """Another process's write lock on the store, held until ``release()``."""

    def __init__(self, path: Path) -> None:
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.execute("BEGIN IMMEDIATE")

    def release(self) -> None:
        self.db.execute("COMMIT")
        self.db.close()


@pytest.fixture
def path(tmp_path: Path) -> Iterator[Path]:
    store = JobStore(tmp_path / "jobs.sqlite")
    store.create_job(record("j-1"))
    store.close()
    yield tmp_path / "jobs.sqlite"


def test_a_lock_is_waited_out_and_nothing_is_lost(path: Path) -> None:
    store = JobStore(path, lock_wait=600)
    holder = Holder(path)
    done = threading.Event()
    errors: list[BaseException] = []

    def cancel() -> None:
        try:
            store.request_cancel("j-1")
            store.heartbeat("j-1", "nobody")
        except BaseException as exc:  # reported below
            errors.append(exc)
        done.set()

    worker = threading.Thread(target=cancel)
    worker.start()
    # The cancel is blocked (not failed) while the lock is held: past SQLite's own busy timeout.
    assert not done.wait(3.0)
    holder.release()
    worker.join(timeout=600)
    assert errors == []
    assert store.get_job("j-1").cancel_requested
    store.close()


def test_a_lock_held_past_the_wait_is_a_store_error_and_changes_nothing(path: Path) -> None:
    store = JobStore(path, lock_wait=0.3)
    holder = Holder(path)
    try:
        with pytest.raises(StoreError, match="locked by another process"):
            store.request_cancel("j-1")
    finally:
        holder.release()
    assert not store.get_job("j-1").cancel_requested
    store.close()


def test_an_emptied_store_is_refused_never_recreated(path: Path) -> None:
    path.write_bytes(b"")
    for suffix in ("-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    with pytest.raises(StoreError, match="empty"):
        JobStore(path)
    assert path.stat().st_size == 0  # left as found, for the user to restore


@pytest.mark.parametrize(
    "content", [b"this is not a database at all" * 10, b"SQLite format 3\x00" + b"\xff" * 5000]
)
def test_a_corrupt_store_is_a_store_error(path: Path, content: bytes) -> None:
    path.write_bytes(content)
    for suffix in ("-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    with pytest.raises(StoreError) as info:
        store = JobStore(path)
        store.jobs()
    assert str(path) in str(info.value)


def test_a_heartbeat_in_the_future_is_stale(path: Path) -> None:
    store = JobStore(path)
    store.update_job("j-1", owner="otherhost:1:abc", heartbeat=time.time() + 3600)
    assert not store.controller_alive("j-1", stale_after=10)
    assert store.acquire("j-1", "me:2:def", stale_after=10)
    store.close()


def test_home_is_0700_and_the_store_0600(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MULTISPOT_HOME", str(tmp_path / "new-home"))
    old = os.umask(0o022)
    try:
        assert stat.S_IMODE(home().stat().st_mode) == 0o700
        store = JobStore()
        store.create_job(record("j-2"))
        store.close()
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "new-home" / "jobs.sqlite").stat().st_mode) == 0o600


def test_stores_created_at_once_are_one_store(tmp_path: Path) -> None:
    target = tmp_path / "jobs.sqlite"
    stores: list[JobStore] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def make() -> None:
        barrier.wait()
        try:
            stores.append(JobStore(target))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=make) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    stores[0].create_job(record("j-3"))
    assert all(s.get_job("j-3").id == "j-3" for s in stores)
    for s in stores:
        s.close()


def run_cli(home_dir: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "multispot.cli", *args],
        env={**os.environ, "MULTISPOT_HOME": str(home_dir), **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_cli_reports_an_emptied_store_cleanly(tmp_path: Path) -> None:
    (tmp_path / "jobs.sqlite").write_bytes(b"")
    result = run_cli(tmp_path, "list")
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "empty" in result.stderr


def test_cli_reports_a_held_lock_cleanly(path: Path) -> None:
    holder = Holder(path)
    try:
        result = run_cli(path.parent, "cancel", "j-1", MULTISPOT_STORE_LOCK_WAIT="0.5")
    finally:
        holder.release()
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "locked" in result.stderr


def test_opening_a_second_store_keeps_the_first_ones_view(path: Path) -> None:
    """Opening (and closing) another handle on the same file in this process must not drop the
    first handle's SQLite locks: another process would then take itself for the last user, remove
    the WAL, and the first handle would go on reading an old snapshot (a revoked token that still
    worked in the server). Found with a header check that open()ed and closed the file."""
    first = JobStore(path)
    assert {r.id for r in first.jobs()} == {"j-1"}
    JobStore(path).close()
    writer = (
        "import sys; from multispot.store import JobRecord, JobStore; from multispot.status import JobState; "
        "s = JobStore(sys.argv[1]); s.create_job(JobRecord(sys.argv[2], 'train', {}, 'local', JobState.PENDING, "
        "'file:///tmp/c', 'file:///tmp/o')); s.close()"
    )
    for job_id in ("j-2", "j-3"):  # the second writer is the one an old snapshot would miss
        subprocess.run([sys.executable, "-c", writer, str(path), job_id], check=True)
    assert Path(f"{path}-wal").exists(), "a writer took itself for the last user and removed the WAL"
    assert {r.id for r in first.jobs()} == {"j-1", "j-2", "j-3"}
    first.close()
