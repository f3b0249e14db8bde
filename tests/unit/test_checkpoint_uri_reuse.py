"""A submit never silently shares a checkpoint URI: one in use by a live job is refused, and one
that holds another job's checkpoints needs an explicit choice (resume from them, or a new URI)."""

from __future__ import annotations

from pathlib import Path

import pytest

from multispot import api
from multispot.checkpoint import CheckpointStore
from multispot.errors import ValidationFailed
from multispot.job import Job
from multispot.status import JobState
from multispot.store import JobStore


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> JobStore:
    monkeypatch.setenv("MULTISPOT_HOME", str(tmp_path / "home"))
    return JobStore(tmp_path / "jobs.sqlite")


def job(uri: str) -> Job:
    return Job.validate_data({"name": "shared", "command": "python -c pass", "checkpoint": {"uri": uri}})


def commit(uri: str, job_id: str, step: int) -> None:
    with CheckpointStore(uri).writer(step, job_id=job_id, attempt=1) as writer:
        writer.write_bytes("state.json", b"{}")


def test_a_uri_in_use_by_a_live_job_is_refused(tmp_path: Path, store: JobStore) -> None:
    uri = (tmp_path / "ckpt").as_uri()
    first = api.submit(job(uri), store=store, start_controller=False)
    with pytest.raises(ValidationFailed, match=f"in use by the live job {first.id}") as info:
        api.submit(job(uri), store=store, start_controller=False, resume_checkpoints=True)
    assert info.value.problems[0].path == "checkpoint.uri"
    assert len(store.jobs(10)) == 1  # nothing recorded, nothing started


def test_another_jobs_checkpoints_need_an_explicit_choice(tmp_path: Path, store: JobStore) -> None:
    uri = (tmp_path / "ckpt").as_uri()
    first = api.submit(job(uri), store=store, start_controller=False)
    commit(uri, first.id, 7)
    store.update_job(first.id, state=JobState.SUCCEEDED)
    with pytest.raises(ValidationFailed, match=rf"holds checkpoints of job {first.id} \(newest: step 7\)"):
        api.submit(job(uri), store=store, start_controller=False)
    second = api.submit(job(uri), store=store, start_controller=False, resume_checkpoints=True)
    assert second.record.checkpoint_uri == uri and CheckpointStore(uri).steps() == [7]  # nothing lost
    fresh = api.submit(job((tmp_path / "other").as_uri()), store=store, start_controller=False)
    assert fresh.record.checkpoint_uri.endswith("/other")


def test_a_chosen_job_id_and_extra_options_are_recorded_once(tmp_path: Path, store: JobStore) -> None:
    """What a sweep's driver passes: its own id (chosen before the member row) and its options
    beside multispot's, which keep their meaning whatever the caller sends."""
    from multispot.errors import StoreError

    uri = (tmp_path / "ckpt").as_uri()
    extra = {"group": "sw-1", "member": 3, "workdir": "/elsewhere"}
    run = api.submit(
        job(uri),
        store=store,
        start_controller=False,
        job_id="sw-1-3-abc",
        options=extra,
        workdir=str(tmp_path),
    )
    assert run.id == "sw-1-3-abc" and store.get_job("sw-1-3-abc").checkpoint_uri == uri
    assert store.get_job(run.id).options == {
        "group": "sw-1",
        "member": 3,
        "workdir": str(tmp_path),
        "only_provider": False,
    }
    with pytest.raises(StoreError, match="exists already"):
        api.submit(job((tmp_path / "other").as_uri()), store=store, start_controller=False, job_id=run.id)
    assert len(store.jobs(10)) == 1
