"""The SQLite job store: jobs, attempts, events, the controller lease, concurrent writers."""

from __future__ import annotations

import multiprocessing
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers.jobs import job_record as record

from multispot.errors import JobNotFound, StoreError
from multispot.status import Attempt, Handle, JobState, Placement, Usage
from multispot.store import JobStore, home, new_job_id, owner_id


@pytest.fixture
def store(tmp_path: Path) -> JobStore:
    s = JobStore(tmp_path / "jobs.sqlite")
    yield s  # type: ignore[misc]
    s.close()


PLACEMENT = Placement(
    provider="local", market="spot", region="here", instance_type="cpu", count=2, price_per_hour=0.5
)


# --------------------------------------------------------------------------- jobs


def test_create_and_get_by_id(store: JobStore) -> None:
    job = record("train-abc123", options={"preemptions": "every=10s"}, message="hi")
    store.create_job(job)
    got = store.get_job("train-abc123")
    assert got == job
    assert got.spec["env"] == {"TOKEN": "${HF_TOKEN}"}


def test_get_by_name_is_the_newest(store: JobStore) -> None:
    store.create_job(record("train-000001", created=1000.0))
    store.create_job(record("train-000003", created=3000.0))
    store.create_job(record("train-000002", created=2000.0))
    store.create_job(record("other-000009", name="other", created=9000.0))
    assert store.get_job("train").id == "train-000003"
    assert store.get_job("other").id == "other-000009"
    assert [j.id for j in store.jobs()] == ["other-000009", "train-000003", "train-000002", "train-000001"]
    assert len(store.jobs(limit=2)) == 2


def test_get_by_unique_prefix(store: JobStore) -> None:
    store.create_job(record("train-abc123"))
    store.create_job(record("train-abd456"))
    assert store.get_job("train-abc").id == "train-abc123"
    assert store.get_job("train-abd4").id == "train-abd456"
    with pytest.raises(JobNotFound):
        store.get_job("train-ab")  # ambiguous


def test_prefix_wildcards_are_literal(store: JobStore) -> None:
    store.create_job(record("trainXabc", name="trainx"))
    for ref in ("train_", "train%", "%", "_rain"):
        with pytest.raises(JobNotFound):
            store.get_job(ref)


def test_job_not_found_message(store: JobStore) -> None:
    with pytest.raises(JobNotFound) as info:
        store.get_job("nope")
    message = str(info.value)
    assert "'nope'" in message
    assert str(store.path) in message
    assert "multispot list" in message


def test_update_job(store: JobStore) -> None:
    store.create_job(record("j-1"))
    before = store.get_job("j-1").updated
    store.update_job("j-1", state=JobState.RUNNING, message="running", options={"a": 1}, ended=5.0)
    store.request_cancel("j-1")
    got = store.get_job("j-1")
    assert got.state is JobState.RUNNING
    assert (got.message, got.options, got.ended) == ("running", {"a": 1}, 5.0)
    assert got.cancel_requested is True
    assert got.updated >= before
    store.update_job("j-1", cancel_requested=False)
    assert store.get_job("j-1").cancel_requested is False


def test_duplicate_job_id_is_refused(store: JobStore) -> None:
    store.create_job(record("j-1"))
    with pytest.raises(StoreError, match="exists already"):
        store.create_job(record("j-1"))
    assert len(store.jobs()) == 1
    assert [e.kind for _, e in store.events("j-1")] == ["created"]


def test_new_job_ids_are_unique_and_named() -> None:
    ids = {new_job_id("train") for _ in range(200)}
    assert len(ids) == 200
    assert all(i.startswith("train-") for i in ids)


def test_home_honours_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MULTISPOT_HOME", str(tmp_path / "msh"))
    assert home() == tmp_path / "msh"
    assert (tmp_path / "msh").is_dir()
    store = JobStore()
    try:
        assert store.path == tmp_path / "msh" / "jobs.sqlite"
    finally:
        store.close()


def test_store_reopens_with_its_data(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite"
    first = JobStore(path)
    first.create_job(record("j-1"))
    first.add_attempt(Attempt("j-1", 1, PLACEMENT))
    first.close()
    second = JobStore(path)
    try:
        assert second.get_job("j-1").id == "j-1"
        assert [a.n for a in second.attempts("j-1")] == [1]
    finally:
        second.close()


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite"
    JobStore(path).close()
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version = 99")
    db.commit()
    db.close()
    with pytest.raises(StoreError, match="newer"):
        JobStore(path)


# --------------------------------------------------------------------------- attempts


def test_add_attempt_once_per_number(store: JobStore) -> None:
    store.create_job(record("j-1"))
    assert store.add_attempt(Attempt("j-1", 1, PLACEMENT)) is True
    other = Placement(provider="sagemaker", market="on-demand")
    assert store.add_attempt(Attempt("j-1", 1, other)) is False
    [attempt] = store.attempts("j-1")
    assert attempt.placement == PLACEMENT  # the first one stays
    # the refused insert left no event behind
    assert [e.kind for _, e in store.events("j-1")] == ["created", "attempt"]


def test_attempt_needs_an_existing_job(store: JobStore) -> None:
    # not False ("another controller got there first"): there is no such job at all
    with pytest.raises(JobNotFound):
        store.add_attempt(Attempt("no-such-job", 1, PLACEMENT))
    assert store.attempts("no-such-job") == []


def test_update_attempt_round_trips_everything(store: JobStore) -> None:
    store.create_job(record("j-1"))
    store.add_attempt(Attempt("j-1", 1, PLACEMENT, message="queued"))
    store.add_attempt(Attempt("j-1", 2, Placement(provider="local", market="on-demand")))
    handle = Handle(
        provider="local", id="pid-123", data={"pid": 123, "dir": "/tmp/x", "nested": {"a": [1, 2]}}
    )
    usage = Usage(
        runtime_seconds=61.5,
        billable_seconds=62.0,
        instance_type="cpu",
        count=2,
        market="spot",
        region="here",
        source="local clock",
    )
    store.update_attempt(
        "j-1",
        1,
        state=JobState.PREEMPTED,
        handle=handle,
        usage=usage,
        placement=Placement(provider="local", market="spot", price_per_hour=0.25),
        message="preempted",
        native_state="SIGTERM",
        interruptions=2,
        submitted=10.0,
        started=11.0,
        ended=72.5,
        last_checkpoint=70.0,
    )
    first, second = store.attempts("j-1")
    assert first == Attempt(
        job_id="j-1",
        n=1,
        placement=Placement(provider="local", market="spot", price_per_hour=0.25),
        state=JobState.PREEMPTED,
        handle=handle,
        message="preempted",
        native_state="SIGTERM",
        interruptions=2,
        submitted=10.0,
        started=11.0,
        ended=72.5,
        usage=usage,
        last_checkpoint=70.0,
    )
    assert first.outcome == "PREEMPTED"
    # the other attempt is untouched
    assert second == Attempt("j-1", 2, Placement(provider="local", market="on-demand"))
    assert second.outcome is None


def test_attempts_are_ordered_by_number(store: JobStore) -> None:
    store.create_job(record("j-1"))
    for n in (3, 1, 2):
        store.add_attempt(Attempt("j-1", n, PLACEMENT))
    assert [a.n for a in store.attempts("j-1")] == [1, 2, 3]
    assert store.attempts("other") == []


# --------------------------------------------------------------------------- events


def test_events_are_ordered_and_resumable(store: JobStore) -> None:
    store.create_job(record("j-1"))
    store.create_job(record("j-2"))
    store.add_attempt(Attempt("j-1", 1, PLACEMENT))
    for i in range(5):
        store.add_event("j-1", 1, "log", f"line {i}")
        store.add_event("j-2", None, "log", f"other {i}")
    events = store.events("j-1")
    ids = [i for i, _ in events]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert [e.kind for _, e in events] == ["created", "attempt"] + ["log"] * 5
    assert [e.message for _, e in events][2:] == [f"line {i}" for i in range(5)]
    assert all(e.job_id == "j-1" for _, e in events)
    assert events[1][1].attempt == 1 and events[0][1].attempt is None
    times = [e.time for _, e in events]
    assert times == sorted(times)
    # after= gives only the newer ones (what `logs --follow` polls with)
    assert store.events("j-1", after=ids[3]) == events[4:]
    assert store.events("j-1", after=ids[-1]) == []


# --------------------------------------------------------------------------- lease


def test_lease_is_exclusive_while_fresh(store: JobStore) -> None:
    store.create_job(record("j-1"))
    a, b = owner_id(), owner_id()
    assert a != b
    assert store.acquire("j-1", a, stale_after=60) is True
    assert store.acquire("j-1", a, stale_after=60) is True  # re-entrant for its holder
    assert store.acquire("j-1", b, stale_after=60) is False
    assert store.get_job("j-1").owner == a
    assert store.controller_alive("j-1", stale_after=60)
    assert store.heartbeat("j-1", a) is True
    assert store.heartbeat("j-1", b) is False


def test_stale_lease_is_taken_over(store: JobStore) -> None:
    store.create_job(record("j-1"))
    a, b = owner_id(), owner_id()
    assert store.acquire("j-1", a, stale_after=60)
    time.sleep(0.05)
    assert not store.controller_alive("j-1", stale_after=0.01)
    assert store.acquire("j-1", b, stale_after=0.01) is True
    assert store.get_job("j-1").owner == b
    assert store.heartbeat("j-1", a) is False  # A learns it lost the job
    assert store.heartbeat("j-1", b) is True
    assert store.acquire("j-1", a, stale_after=60) is False
    assert any(e.kind == "controller" and a in e.message for _, e in store.events("j-1"))


def test_lease_of_a_dead_process_is_taken_over(store: JobStore) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    dead = f"{socket.gethostname()}:{int(proc.stdout)}:deadbeef"
    store.create_job(record("j-1"))
    assert store.acquire("j-1", dead, stale_after=3600)
    assert not store.controller_alive("j-1", stale_after=3600)
    b = owner_id()
    assert store.acquire("j-1", b, stale_after=3600) is True  # heartbeat fresh, but the pid is gone
    assert store.heartbeat("j-1", dead) is False
    assert store.get_job("j-1").owner == b


def test_lease_of_another_host_waits_for_its_heartbeat(store: JobStore) -> None:
    store.create_job(record("j-1"))
    remote = "some-other-host.invalid:1:abc"
    assert store.acquire("j-1", remote, stale_after=3600)
    assert store.acquire("j-1", owner_id(), stale_after=3600) is False
    assert store.controller_alive("j-1", stale_after=3600)


def test_release_frees_the_lease(store: JobStore) -> None:
    store.create_job(record("j-1"))
    a, b = owner_id(), owner_id()
    store.acquire("j-1", a, stale_after=60)
    store.release("j-1", b)  # not the holder: no effect
    assert store.get_job("j-1").owner == a
    store.release("j-1", a)
    assert store.get_job("j-1").owner is None
    assert not store.controller_alive("j-1", stale_after=60)
    assert store.acquire("j-1", b, stale_after=60) is True


def test_acquire_unknown_job(store: JobStore) -> None:
    with pytest.raises(JobNotFound):
        store.acquire("nope", owner_id(), stale_after=1)


# --------------------------------------------------------------------------- integrity


def test_check_is_empty_on_a_consistent_store(store: JobStore) -> None:
    store.create_job(record("j-1"))
    store.create_job(record("j-2"))
    for n in (1, 2, 3):
        store.add_attempt(Attempt("j-1", n, PLACEMENT))
    store.add_attempt(Attempt("j-2", 1, PLACEMENT))
    assert store.check() == []


def test_check_finds_a_gap_in_attempt_numbers(store: JobStore) -> None:
    store.create_job(record("j-1"))
    store.add_attempt(Attempt("j-1", 1, PLACEMENT))
    store.add_attempt(Attempt("j-1", 3, PLACEMENT))
    problems = store.check()
    assert len(problems) == 1 and "j-1" in problems[0]


# --------------------------------------------------------------------------- several processes


def test_concurrent_processes_lose_nothing(tmp_path: Path) -> None:
    from store_worker import hammer  # a plain module beside this one: importable in spawned children

    path = tmp_path / "jobs.sqlite"
    workers, attempts, events = 4, 30, 120
    job_ids = ["shared-000000"] + [f"own{w}-000000" for w in range(workers)]
    setup = JobStore(path)
    for job_id in job_ids:
        setup.create_job(record(job_id, name=job_id.split("-")[0]))
    setup.close()

    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(workers), ctx.Queue()
    procs = [
        ctx.Process(target=hammer, args=(str(path), w, job_ids, attempts, events, barrier, results))
        for w in range(workers)
    ]
    for proc in procs:
        proc.start()
    won = [results.get(timeout=60)[1] for _ in procs]
    assert all(isinstance(w, list) for w in won), won
    for proc in procs:
        proc.join(timeout=60)
        assert proc.exitcode == 0

    # every attempt number of the shared job went to exactly one process
    assert sorted(n for w in won for n in w) == list(range(1, attempts + 1))
    store = JobStore(path)
    try:
        assert [a.n for a in store.attempts(job_ids[0])] == list(range(1, attempts + 1))
        for w in range(workers):
            own = job_ids[w + 1]
            assert [a.n for a in store.attempts(own)] == list(range(1, attempts + 1))
            progress = [e for _, e in store.events(own) if e.kind == "progress"]
            assert len(progress) == events
            assert len({e.message for e in progress}) == events
        assert store.check() == []
    finally:
        store.close()
