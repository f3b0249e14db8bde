"""The controller service's worker, in this process, on a real SQLite store: leasing, fencing,
draining, and ``ensure_controller`` standing back while a worker is live. (Replicas as processes,
killed, paused and drained mid-run: tests/chaos/test_service.py.)"""

from __future__ import annotations

import io
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from multispot import api, controller
from multispot.job import Job
from multispot.service import Worker
from multispot.store import Store, open_store

JOB = "name: unit\ncommand: sh -c 'exit 0'\n"
ELSEWHERE = "other-host:1:0000"  # a controller on another machine: only its heartbeat tells


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Store]:
    monkeypatch.setenv("MULTISPOT_HOME", str(tmp_path))
    opened = open_store(f"sqlite:///{tmp_path / 'jobs.sqlite'}")
    yield opened
    opened.close()


def submit(store: Store, count: int) -> list[str]:
    job = Job.from_yaml_text(JOB)
    return [api.submit(job, "local", store=store, start_controller=False).id for _ in range(count)]


def worker(store: Store, concurrency: int = 4) -> Worker:
    return Worker(store, concurrency, stale_after=30.0, log=io.StringIO())


def test_a_worker_leases_no_more_than_its_concurrency(store: Store) -> None:
    jobs = submit(store, 5)
    w = worker(store, concurrency=2)
    w.keep_up()
    held = [j for j in jobs if store.get_job(j).owner == w.id]
    assert sorted(held) == sorted(w.driving) and len(held) == 2
    w.keep_up()  # renewing asks again: still two
    assert len([j for j in jobs if store.get_job(j).owner == w.id]) == 2


def test_a_taken_over_job_is_dropped_before_any_step_and_never_driven_again(store: Store) -> None:
    (job,) = submit(store, 1)
    w = worker(store)
    w.keep_up()
    assert job in w.driving
    assert store.acquire(job, ELSEWHERE, stale_after=0.0)  # as if w had been silent too long
    w.tick()
    assert job not in w.driving and job in w.fenced
    assert store.attempts(job) == [], "the fenced worker stepped the job"
    fenced = store.events_of_kind(job, "fenced")
    assert len(fenced) == 1 and w.id in fenced[0][1].message
    store.release(job, ELSEWHERE)  # the other controller lets go: the job is free again
    w._next_lease = 0.0
    w.tick()
    assert job not in w.driving and store.get_job(job).owner is None  # leased, and let go at once
    assert store.attempts(job) == []


def test_drain_releases_every_lease_and_deregisters(store: Store) -> None:
    jobs = submit(store, 3)
    w = worker(store)
    store.register_worker(w.id, socket.gethostname(), os.getpid())
    w.keep_up()
    assert {store.get_job(j).owner for j in jobs} == {w.id}
    assert [x.id for x in store.workers(30.0)] == [w.id]
    w.drain()
    assert {store.get_job(j).owner for j in jobs} == {None}
    assert store.workers(30.0) == []


def test_no_per_job_controller_is_started_while_a_worker_is_live(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    spawned: list[str] = []
    monkeypatch.setattr(controller, "spawn", lambda job_id, workdir=None: spawned.append(job_id) or 0)
    (job,) = submit(store, 1)
    store.register_worker("this-host:1:w", socket.gethostname(), os.getpid())
    assert not controller.ensure_controller(store, job)
    assert spawned == []
    store.remove_worker("this-host:1:w")
    assert controller.ensure_controller(store, job)
    assert spawned == [job]


def test_a_job_missing_a_variable_is_parked_not_retried_every_round(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SERVICE_TEST_TOKEN", "x")
    job = Job.from_yaml_text(JOB + "env:\n  TOKEN: ${SERVICE_TEST_TOKEN}\n")
    job_id = api.submit(job, "local", store=store, start_controller=False).id
    monkeypatch.delenv("SERVICE_TEST_TOKEN")  # the worker's environment lacks it
    w = worker(store)
    store.register_worker(w.id, socket.gethostname(), os.getpid())
    w.tick()
    assert job_id not in w.driving and job_id in w.parked
    assert store.get_job(job_id).owner is None  # released: not held while it cannot go on
    blocked = store.events_of_kind(job_id, "blocked")
    assert len(blocked) == 1 and "environment of `multispot controller`" in blocked[0][1].message
    w._next_lease = 0.0
    w.tick()  # leased again, and let go at once while parked
    assert job_id not in w.driving and store.get_job(job_id).owner is None
    assert len(store.events_of_kind(job_id, "blocked")) == 1
    assert [a.handle for a in store.attempts(job_id)] == [None]  # the attempt waits, never submitted
