"""Async saves (snapshot, background write, finish-or-abandon on notice) and multi-rank commits."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from multispot.checkpoint import CheckpointStore, CheckpointWriter
from multispot.errors import CheckpointError, SaveAbandoned
from multispot.runtime import Checkpointer
from multispot.runtime.env import JobEnv


@pytest.fixture(autouse=True)
def _fresh_notice(isolated_notice: None) -> None:
    """Each test gets its own process-wide notice (some fire it)."""


def env(uri: str, rank: int = 0, world_size: int = 1, attempt: int = 1) -> JobEnv:
    return JobEnv(
        job_id="j",
        attempt=attempt,
        provider="manual",
        checkpoint_uri=uri,
        output_uri=None,
        notice_seconds=30.0,
        rank=rank,
        world_size=world_size,
    )


def slow_writer(chunks: int, pause: float, gate: threading.Event | None = None):  # type: ignore[no-untyped-def]
    def write(writer: CheckpointWriter) -> None:
        with writer.open("blob.bin") as f:
            for i in range(chunks):
                if gate is not None:
                    gate.wait()
                f.write(bytes([i % 256]) * (9 * 1024 * 1024))  # > the buffer: every chunk reaches storage
                time.sleep(pause)

    return write


def test_async_save_commits_in_the_background(tmp_path: Path) -> None:
    ckpt = Checkpointer(tmp_path.as_uri(), env=env(tmp_path.as_uri()))
    gate = threading.Event()
    future = ckpt.save_async(5, slow_writer(2, 0.0, gate), total_steps=10)
    assert not future.done()  # the caller got control back while the write waits
    assert ckpt.store.latest() is None
    gate.set()
    manifest = future.result(timeout=30)
    assert manifest is not None and manifest.step == 5
    assert ckpt.store.latest().step == 5  # type: ignore[union-attr]
    assert ckpt.last_saved_step == 5 and len(ckpt.blocked_seconds) == 1


def test_next_save_waits_for_the_one_in_flight_and_order_is_kept(tmp_path: Path) -> None:
    ckpt = Checkpointer(tmp_path.as_uri(), env=env(tmp_path.as_uri()), keep=5)
    first = ckpt.save_async(1, slow_writer(2, 0.05))
    second = ckpt.save_async(2, slow_writer(1, 0.0))
    assert first.done()  # the second call waited for the first
    second.result(timeout=30)
    assert ckpt.store.steps() == [1, 2]


def test_in_flight_save_past_the_budget_is_abandoned_and_nothing_is_committed(tmp_path: Path) -> None:
    ckpt = Checkpointer(tmp_path.as_uri(), env=env(tmp_path.as_uri()))
    with ckpt.save(1) as w:
        w.write_bytes("a", b"1")
    future = ckpt.save_async(2, slow_writer(50, 0.1))
    assert ckpt.finish_pending(timeout=0.2) is False
    with pytest.raises(SaveAbandoned):
        future.result()
    store = CheckpointStore(tmp_path.as_uri())
    assert store.latest().step == 1  # type: ignore[union-attr]
    assert store.manifest(2) is None


def test_in_flight_save_within_the_budget_commits(tmp_path: Path) -> None:
    ckpt = Checkpointer(tmp_path.as_uri(), env=env(tmp_path.as_uri()))
    ckpt.save_async(3, slow_writer(2, 0.05))
    assert ckpt.finish_pending(timeout=30) is True
    assert CheckpointStore(tmp_path.as_uri()).latest().step == 3  # type: ignore[union-attr]


def test_emergency_save_is_skipped_when_it_cannot_fit_the_notice(tmp_path: Path) -> None:
    ckpt = Checkpointer(tmp_path.as_uri(), env=env(tmp_path.as_uri()))
    assert ckpt.can_save_in_time()
    ckpt.save_seconds.append(5.0)
    ckpt.notice.fire(3.0)
    assert not ckpt.can_save_in_time()
    ckpt.save_seconds.append(0.1)
    ckpt.save_seconds[:] = [0.1]
    assert ckpt.can_save_in_time()


@pytest.mark.parametrize(("budget", "committed"), [("0.3", False), ("60", True)])
def test_exit_on_notice_finishes_or_abandons_the_save_in_flight(
    tmp_path: Path, budget: str, committed: bool
) -> None:
    script = textwrap.dedent(f"""
        import time
        from multispot.runtime import Checkpointer
        ckpt = Checkpointer({tmp_path.as_uri()!r})
        def write(w):
            with w.open("blob.bin") as f:
                for i in range(12):
                    f.write(bytes([i]) * (9 * 1024 * 1024))
                    time.sleep(0.1)
        ckpt.save_async(7, write)
        ckpt.notice.fire({budget} + 1.0)  # NOTICE_MARGIN is kept back
        ckpt.exit_preempted()
    """)
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 143, result.stderr
    store = CheckpointStore(tmp_path.as_uri())
    assert (store.manifest(7) is not None) is committed
    if not committed:
        assert time.monotonic() - started < 1.2 + 5  # the save was cut short, not run to its end
        assert store.steps() == []  # the abandoned step left nothing behind


def test_a_normal_exit_lets_the_last_async_save_commit(tmp_path: Path) -> None:
    script = textwrap.dedent(f"""
        from multispot.runtime import Checkpointer
        ckpt = Checkpointer({tmp_path.as_uri()!r})
        ckpt.save_async(9, lambda w: w.write_bytes("x", b"final"))
    """)
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
    assert CheckpointStore(tmp_path.as_uri()).restore().read_bytes("x") == b"final"


def test_torch_snapshot_is_isolated_from_later_training(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    from multispot.runtime.pytorch import TrainingState

    model = torch.nn.Linear(4, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    state = TrainingState(model, optimizer)
    model(torch.ones(1, 4)).sum().backward()
    optimizer.step()
    state.step = 1
    expected = {k: v.clone() for k, v in model.state_dict().items()}
    ckpt = Checkpointer(tmp_path.as_uri(), env=env(tmp_path.as_uri()))
    future = state.save_async(ckpt)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(100.0)  # training goes on while the save is written
    assert future is not None
    future.result(timeout=30)
    fresh = TrainingState(torch.nn.Linear(4, 2), None)
    assert fresh.restore(Checkpointer(tmp_path.as_uri(), env=env(tmp_path.as_uri())))
    for key, value in fresh.model.state_dict().items():
        assert torch.equal(value, expected[key])


# --------------------------------------------------------------------------- several ranks


def _rank_save(uri: str, rank: int, world: int, step: int, attempt: int = 1, delay: float = 0.0) -> None:
    time.sleep(delay)
    store = CheckpointStore(uri)
    writer = store.writer(step, attempt=attempt, job_id="j", rank=rank, world_size=world)
    writer.write_bytes(f"shard-{rank}.bin", bytes([rank]) * 1000)
    writer.commit()


def test_step_commits_only_after_every_rank_posted(tmp_path: Path) -> None:
    uri = tmp_path.as_uri()
    rank0 = threading.Thread(target=_rank_save, args=(uri, 0, 3, 10))
    rank0.start()
    _rank_save(uri, 1, 3, 10)
    time.sleep(0.3)
    store = CheckpointStore(uri)
    assert store.manifest(10) is None, "committed before rank 2 finished"
    _rank_save(uri, 2, 3, 10)
    rank0.join(timeout=30)
    manifest = store.latest()
    assert manifest is not None and manifest.step == 10
    assert sorted(manifest.files) == ["shard-0.bin", "shard-1.bin", "shard-2.bin"]
    assert manifest.metadata["ranks"] == 3
    assert not [p for p in (tmp_path / "step-000000000010").iterdir() if p.name.startswith("MANIFEST.rank-")]


def test_a_missing_rank_means_no_commit(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path.as_uri())
    _rank_save(tmp_path.as_uri(), 1, 2, 4)
    writer = CheckpointWriter(store, 4, None, 2, "j", {}, rank=0, world_size=2, commit_timeout=0.3)
    writer.write_bytes("shard-0.bin", b"0")
    with pytest.raises(CheckpointError, match=r"ranks \[1\] did not finish"):
        writer.commit()  # rank 1's part is from attempt 1: stale, not this attempt's
    assert store.manifest(4) is None and store.latest() is None


def test_torn_rank_part_is_not_taken_for_a_finished_rank(tmp_path: Path) -> None:
    step_dir = tmp_path / "step-000000000006"
    step_dir.mkdir()
    (step_dir / "MANIFEST.rank-00001.json").write_text('{"rank": 1, "attempt": 1, "job_id": "j", "fi')
    store = CheckpointStore(tmp_path.as_uri())
    writer = CheckpointWriter(store, 6, None, 1, "j", {}, rank=0, world_size=2, commit_timeout=0.3)
    writer.write_bytes("shard-0.bin", b"0")
    with pytest.raises(CheckpointError):
        writer.commit()
    assert store.manifest(6) is None


def test_files_no_rank_claimed_are_hashed_by_rank_zero(tmp_path: Path) -> None:
    uri = tmp_path.as_uri()
    store = CheckpointStore(uri)
    other = store.writer(3, attempt=1, job_id="j", rank=1, world_size=2)
    (other.local_dir / "__1_0.distcp").write_bytes(b"rank one data")  # as DCP writes it
    other.commit()
    zero = store.writer(3, attempt=1, job_id="j", rank=0, world_size=2)
    (zero.local_dir / "__0_0.distcp").write_bytes(b"rank zero data")
    (zero.local_dir / ".metadata").write_bytes(b"meta")
    manifest = zero.commit()
    assert manifest is not None
    assert sorted(manifest.files) == [".metadata", "__0_0.distcp", "__1_0.distcp"]
    assert store.verify(3).ok
    assert (
        json.loads((tmp_path / "step-000000000003" / "MANIFEST.json").read_text())["metadata"]["ranks"] == 2
    )


def test_checkpointer_ranks_other_than_zero_do_not_run_retention(tmp_path: Path) -> None:
    uri = tmp_path.as_uri()
    for step in (1, 2, 3):
        with CheckpointStore(uri).writer(step) as w:
            w.write_bytes("a", b"x")
    rank1 = Checkpointer(uri, env=env(uri, rank=1, world_size=2), keep=1)
    rank0 = Checkpointer(uri, env=env(uri, rank=0, world_size=2), keep=1)

    def save(ckpt: Checkpointer, name: str) -> None:
        with ckpt.save(4) as w:
            w.write_bytes(name, b"x")

    t = threading.Thread(target=save, args=(rank1, "r1"))
    t.start()
    t.join(timeout=30)
    assert CheckpointStore(uri).steps() == [1, 2, 3, 4]  # rank 1 posted and deleted nothing
    save(rank0, "r0")
    assert CheckpointStore(uri).steps() == [4]  # rank 0 committed, then kept the newest one


# --------------------------------------------------------------------------- verify while loading


def test_restore_with_verifies_while_loading_and_falls_back(tmp_path: Path) -> None:
    uri = tmp_path.as_uri()
    for step, payload in ((1, b"old" * 1000), (2, b"new" * 1000)):
        with CheckpointStore(uri).writer(step) as w:
            w.write_bytes("a", payload)
    ckpt = Checkpointer(uri, env=env(uri))
    assert ckpt.restore_with(lambda r: r.read_bytes("a")) == b"new" * 1000
    assert ckpt.restored is not None and ckpt.restored.step == 2 and ckpt.last_saved_step == 2

    path = tmp_path / "step-000000000002" / "a"
    path.write_bytes(b"bad" * 1000)  # same size: only the checksum can tell
    fresh = Checkpointer(uri, env=env(uri))
    loaded = fresh.restore_with(lambda r: r.read_bytes("a"))
    assert loaded == b"old" * 1000, "what was loaded from the corrupt step must be thrown away"
    assert fresh.restored is not None and fresh.restored.step == 1


def test_restore_with_a_loader_error(tmp_path: Path) -> None:
    uri = tmp_path.as_uri()
    for step in (1, 2):
        with CheckpointStore(uri).writer(step) as w:
            w.write_bytes("a", b"%d" % step)
    ckpt = Checkpointer(uri, env=env(uri))

    def broken_loader(restored: object) -> None:
        raise KeyError("the script's own bug")

    with pytest.raises(KeyError):  # valid files: the error is the loader's, not hidden by a fallback
        ckpt.restore_with(broken_loader)
    (tmp_path / "step-000000000002" / "a").write_bytes(b"x")  # corrupt (same size) and unloadable

    def picky(restored: Any) -> bytes:
        data: bytes = restored.read_bytes("a")
        if data == b"x":
            raise ValueError("cannot parse")
        return data

    assert Checkpointer(uri, env=env(uri)).restore_with(picky) == b"1"
    assert Checkpointer((tmp_path / "none").as_uri(), env=env(uri)).restore_with(picky) is None
