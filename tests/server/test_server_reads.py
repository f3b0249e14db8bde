"""How many times the server's job list reads the store: the list itself once, and per job only
what its answer needs (its attempts; an unfinished job's row again, to see whether a controller
drives it). In process, on SQLite, with every store call counted."""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from multispot.server.app import create_app
from multispot.status import Attempt, JobState, Placement
from multispot.store import JobRecord, Store, owner_id

TOKEN = "reads-test-token"


class Counting:
    """``store``, counting each call of each of its methods."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.calls: Counter[str] = Counter()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.store, name)
        if not callable(attr):
            return attr

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] += 1
            return attr(*args, **kwargs)

        return counted


def _job(store: Store, tmp_path: Path, n: int, state: JobState) -> str:
    now = time.time() + n  # newest last: the list is newest first
    job_id = f"job-{n:06d}"
    store.create_job(
        JobRecord(
            id=job_id,
            name="job",
            spec={"name": "job", "command": ["true"]},
            provider="local",
            state=state,
            checkpoint_uri=(tmp_path / "ckpt" / job_id).as_uri(),
            output_uri=(tmp_path / "out" / job_id).as_uri(),
            created=now,
            updated=now,
            team="t",
        )
    )
    store.add_attempt(Attempt(job_id, 1, Placement("local", "spot"), state))
    return job_id


def test_a_list_reads_each_jobs_row_at_most_once_more(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MULTISPOT_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MULTISPOT_DB", raising=False)
    app = create_app(f"sqlite:///{tmp_path / 'jobs.sqlite'}")
    store: Store = app.state.store
    user = store.create_user("ada", "t")
    store.add_token(user.id, hashlib.sha256(TOKEN.encode()).hexdigest(), "test")
    done = [_job(store, tmp_path, n, JobState.SUCCEEDED) for n in range(3)]
    running = [_job(store, tmp_path, n, JobState.RUNNING) for n in range(3, 5)]
    for job_id in running:  # driven by a live controller (this process): nothing is started
        assert store.acquire(job_id, owner_id(), 60)
    counting = Counting(store)
    app.state.store = counting
    try:
        with TestClient(app) as http:
            answer = http.get("/api/v1/jobs", headers={"Authorization": f"Bearer {TOKEN}"})
        assert answer.status_code == 200, answer.text
        assert [(row["id"], row["state"]) for row in answer.json()] == [
            *((job_id, JobState.RUNNING.value) for job_id in reversed(running)),
            *((job_id, JobState.SUCCEEDED.value) for job_id in reversed(done)),
        ]
        assert all(len(row["attempts"]) == 1 for row in answer.json())
        calls = counting.calls
        assert calls["jobs"] == 1
        assert calls["attempts"] == len(done) + len(running)
        assert calls["get_job"] == len(running)  # whether a controller drives it: finished jobs need not
    finally:
        store.close()
