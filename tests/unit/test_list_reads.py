"""A job listing (``multispot list``, the server's list) reads each job's checkpoint store (its
progress, the step each attempt restored) for several jobs at once, not one after another: on an
object store each of those is a request."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from multispot import api
from multispot.checkpoint import CheckpointStore
from multispot.status import Attempt, JobState, Placement
from multispot.store import JobRecord, Store, open_store

JOBS = 4


def _jobs(store: Store, tmp_path: Path) -> list[str]:
    ids = []
    for n in range(JOBS):
        job_id = f"job-{n:06d}"
        uri = (tmp_path / "ckpt" / job_id).as_uri()
        now = time.time() + n
        store.create_job(
            JobRecord(
                id=job_id,
                name="job",
                spec={"name": "job", "command": ["true"]},
                provider="local",
                state=JobState.SUCCEEDED,
                checkpoint_uri=uri,
                output_uri=(tmp_path / "out" / job_id).as_uri(),
                created=now,
                updated=now,
            )
        )
        for attempt in (1, 2):
            store.add_attempt(Attempt(job_id, attempt, Placement("local", "spot"), JobState.SUCCEEDED))
        with CheckpointStore(uri).writer(10 * (n + 1), total_steps=100) as writer:
            writer.write_bytes("state.bin", b"s" * 100)
        ids.append(job_id)
    return ids


def test_a_listing_reads_the_jobs_checkpoint_stores_side_by_side(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every job's checkpoint read waits until all of them have started: one after another, the
    first would wait alone and the barrier would break."""
    store = open_store(f"sqlite:///{tmp_path / 'jobs.sqlite'}")
    try:
        ids = _jobs(store, tmp_path)
        runs = api.runs(JOBS, store)
        expected = [run.to_dict() for run in api.runs(JOBS, store)]
        together = threading.Barrier(JOBS, timeout=60)  # a hang guard: passing needs no waiting
        real = api._progress

        def progress(record: JobRecord) -> tuple[int, int | None] | None:
            together.wait()
            return real(record)

        monkeypatch.setattr(api, "_progress", progress)
        listed = api.run_dicts(runs)
        assert [row["id"] for row in listed] == list(reversed(ids))
        assert listed == expected, "the same rows as each run's own to_dict, in the same order"
        assert [row["progress"] for row in listed] == [
            {"step": 10 * (n + 1), "total_steps": 100} for n in reversed(range(JOBS))
        ]
        assert all(len(row["attempts"]) == 2 for row in listed)
    finally:
        store.close()


def test_multispot_list_reads_each_jobs_row_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The age column comes from the listed row: it used to read every job's row once more."""
    from click.testing import CliRunner

    from multispot.cli import cli
    from multispot.store.sqlite import SQLiteStore

    url = f"sqlite:///{tmp_path / 'jobs.sqlite'}"
    store = open_store(url)
    try:
        _jobs(store, tmp_path)
    finally:
        store.close()
    reads: list[str] = []
    real = SQLiteStore.get_job

    def get_job(self: SQLiteStore, job_id: str) -> JobRecord:
        reads.append(job_id)
        return real(self, job_id)

    monkeypatch.setattr(SQLiteStore, "get_job", get_job)
    monkeypatch.setenv("MULTISPOT_DB", url)
    result = CliRunner().invoke(cli, ["list", "--wide"])
    assert result.exit_code == 0, result.output
    assert sorted(set(reads)) == [f"job-{n:06d}" for n in range(JOBS)]
    assert len(reads) == JOBS, f"one read of each job's row, not {len(reads)}"
    assert all(f"job-{n:06d}" in result.output for n in range(JOBS))
