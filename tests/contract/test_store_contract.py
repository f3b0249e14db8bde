"""The job store contract: every method of ``multispot.store.Store``, run on each backend.

SQLite runs on a file in tmp_path; PostgreSQL on a real server the tests start from the OS's
binaries (tests/helpers/postgres.py), one fresh database per test.
"""

from __future__ import annotations

import hashlib
import secrets
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers.jobs import job_record as record

from multispot.errors import JobNotFound, StoreError
from multispot.status import Attempt, Handle, JobState, Placement, Usage
from multispot.store import Group, GroupNotFound, Member, Store, open_store, owner_id
from multispot.store.base import WORKER_ROWS_KEPT_FOR

Opener = Callable[[], Store]
BACKENDS = ["sqlite", "postgres"]


@pytest.fixture(params=BACKENDS)
def opener(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Opener]:
    """Opens another handle on one empty store of the backend under test (another process's view)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'jobs.sqlite'}"
    else:
        url = request.getfixturevalue("postgres_server").new_database()
    opened: list[Store] = []

    def open_one() -> Store:
        store = open_store(url)
        opened.append(store)
        return store

    yield open_one
    for store in opened:
        store.close()


@pytest.fixture
def store(opener: Opener) -> Store:
    return opener()


PLACEMENT = Placement(
    provider="local", market="spot", region="here", instance_type="cpu", count=2, price_per_hour=0.5
)


def token_hash() -> str:
    return hashlib.sha256(secrets.token_urlsafe(32).encode()).hexdigest()


def dead_owner() -> str:
    """An owner id naming a process of this host that has exited."""
    proc = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    return f"{socket.gethostname()}:{int(proc.stdout)}:deadbeef"


def test_is_a_store(store: Store) -> None:
    assert isinstance(store, Store)


# --------------------------------------------------------------------------- jobs


def test_create_and_get(store: Store) -> None:
    job = record(
        "train-abc123",
        options={"preemptions": "every=10s"},
        message="hi",
        team="vision",
        submitted_by="ada",
    )
    store.create_job(job)
    assert store.get_job("train-abc123") == job
    assert [e.kind for _, e in store.events("train-abc123")] == ["created"]


def test_get_by_name_is_the_newest_and_by_unique_prefix(store: Store) -> None:
    store.create_job(record("train-000001", created=1.0))
    store.create_job(record("train-000002", created=2.0))
    store.create_job(record("eval-0_0003", name="eval", created=3.0))
    assert store.get_job("train").id == "train-000002"
    assert store.get_job("eval-0").id == "eval-0_0003"
    with pytest.raises(JobNotFound):
        store.get_job("train-00000")  # two jobs match: not unique
    with pytest.raises(JobNotFound):
        store.get_job("eval-0%")  # the wildcard is a literal character
    with pytest.raises(JobNotFound):
        store.get_job("t\\rain-000002")  # so is the escape character: not train-000002
    with pytest.raises(JobNotFound, match="multispot list"):
        store.get_job("nope")


def test_duplicate_job_id_is_refused(store: Store) -> None:
    store.create_job(record("j-1"))
    with pytest.raises(StoreError, match="exists already"):
        store.create_job(record("j-1"))
    assert len(store.jobs()) == 1
    assert [e.kind for _, e in store.events("j-1")] == ["created"]


def test_jobs_newest_first_by_team_and_state(store: Store) -> None:
    store.create_job(record("a-1", created=1.0, team="vision"))
    store.create_job(record("b-1", created=2.0, team="nlp", state=JobState.RUNNING))
    store.create_job(record("c-1", created=3.0, state=JobState.SUCCEEDED))
    assert [j.id for j in store.jobs()] == ["c-1", "b-1", "a-1"]
    assert [j.id for j in store.jobs(limit=2)] == ["c-1", "b-1"]
    assert [j.id for j in store.jobs(team="vision")] == ["a-1"]
    assert [j.id for j in store.jobs(team="default")] == ["c-1"]
    assert [j.id for j in store.jobs(states=[JobState.PENDING, JobState.SUCCEEDED])] == ["c-1", "a-1"]
    assert [j.id for j in store.jobs(team="nlp", states={JobState.RUNNING})] == ["b-1"]
    assert store.jobs(states=[]) == []


def test_update_job_and_cancel(store: Store) -> None:
    store.create_job(record("j-1"))
    before = store.get_job("j-1").updated
    store.update_job("j-1", state=JobState.RUNNING, message="go", options={"x": 1}, ended=5.0)
    got = store.get_job("j-1")
    assert (got.state, got.message, got.options, got.ended) == (JobState.RUNNING, "go", {"x": 1}, 5.0)
    assert got.updated >= before
    store.request_cancel("j-1")
    assert store.get_job("j-1").cancel_requested is True
    assert store.events("j-1")[-1][1].kind == "cancel"
    store.update_job("j-1", cancel_requested=False)
    assert store.get_job("j-1").cancel_requested is False


# --------------------------------------------------------------------------- attempts and events


def test_add_attempt_once_per_number(store: Store) -> None:
    store.create_job(record("j-1"))
    assert store.add_attempt(Attempt("j-1", 1, PLACEMENT)) is True
    assert store.add_attempt(Attempt("j-1", 1, Placement(provider="sagemaker", market="on-demand"))) is False
    [attempt] = store.attempts("j-1")
    assert attempt.placement == PLACEMENT  # the first one stays
    assert [e.kind for _, e in store.events("j-1")] == ["created", "attempt"]  # the refused one left none
    with pytest.raises(JobNotFound):
        store.add_attempt(Attempt("no-such-job", 1, PLACEMENT))


def test_update_attempt_round_trips_everything(store: Store) -> None:
    store.create_job(record("j-1"))
    for n in (2, 1):
        store.add_attempt(Attempt("j-1", n, PLACEMENT))
    handle = Handle(provider="local", id="pid-1", data={"pid": 1, "nested": {"a": [1, 2]}})
    usage = Usage(runtime_seconds=61.5, billable_seconds=62.0, instance_type="cpu", count=2, market="spot")
    fields: dict[str, Any] = {
        "message": "preempted",
        "native_state": "SIGTERM",
        "interruptions": 2,
        "submitted": 10.0,
    }
    store.update_attempt("j-1", 1, state=JobState.PREEMPTED, handle=handle, usage=usage, ended=72.5, **fields)
    first, second = store.attempts("j-1")
    assert first == Attempt(
        "j-1", 1, PLACEMENT, state=JobState.PREEMPTED, handle=handle, usage=usage, ended=72.5, **fields
    )
    assert second == Attempt("j-1", 2, PLACEMENT)
    assert store.attempts("other") == []


def test_events_are_ordered_resumable_and_by_kind(store: Store) -> None:
    store.create_job(record("j-1"))
    store.create_job(record("j-2"))
    store.add_attempt(Attempt("j-1", 1, PLACEMENT))
    for i in range(3):
        store.add_event("j-1", 1, "log", f"line {i}")
        store.add_event("j-1", 2, "log", f"second {i}")
        store.add_event("j-2", None, "log", f"other {i}")
    events = store.events("j-1")
    ids = [i for i, _ in events]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert store.events("j-1", after=ids[3]) == events[4:]
    logs = store.events_of_kind("j-1", "log")
    assert [e.message for _, e in logs] == ["line 0", "second 0", "line 1", "second 1", "line 2", "second 2"]
    assert logs == [(i, e) for i, e in events if e.kind == "log"]
    assert [e.message for _, e in store.events_of_kind("j-1", "log", attempt=2)] == [
        f"second {i}" for i in range(3)
    ]
    assert store.events_of_kind("j-1", "nothing") == []


def test_check_finds_a_gap_in_attempt_numbers(store: Store) -> None:
    store.create_job(record("j-1"))
    store.add_attempt(Attempt("j-1", 1, PLACEMENT))
    assert store.check() == []
    store.add_attempt(Attempt("j-1", 3, PLACEMENT))
    assert any("j-1" in problem for problem in store.check())


# --------------------------------------------------------------------------- one job's lease


def test_acquire_is_exclusive_while_fresh_and_fences(store: Store) -> None:
    store.create_job(record("j-1"))
    a, b = owner_id(), owner_id()
    assert store.acquire("j-1", a, stale_after=60) is True
    assert store.acquire("j-1", a, stale_after=60) is True  # re-entrant for its holder
    assert store.acquire("j-1", b, stale_after=60) is False
    assert store.controller_alive("j-1", stale_after=60)
    assert store.heartbeat("j-1", a) is True
    assert store.heartbeat("j-1", b) is False
    store.release("j-1", b)  # not the holder: no effect
    assert store.get_job("j-1").owner == a
    store.release("j-1", a)
    assert not store.controller_alive("j-1", stale_after=60)
    with pytest.raises(JobNotFound):
        store.acquire("nope", a, stale_after=1)


def test_a_stale_or_dead_holder_is_taken_over(store: Store) -> None:
    store.create_job(record("j-1"))
    store.create_job(record("j-2"))
    a, b = owner_id(), owner_id()
    assert store.acquire("j-1", a, stale_after=60)
    time.sleep(0.05)
    assert store.acquire("j-1", b, stale_after=0.01) is True
    assert store.heartbeat("j-1", a) is False  # A learns it lost the job
    assert any(e.kind == "controller" and a in e.message for _, e in store.events("j-1"))
    dead = dead_owner()
    assert store.acquire("j-2", dead, stale_after=3600)
    assert not store.controller_alive("j-2", stale_after=3600)
    assert store.acquire("j-2", b, stale_after=3600) is True  # heartbeat fresh, but the pid is gone


# --------------------------------------------------------------------------- worker leases


def test_lease_jobs_claims_free_unfinished_jobs_own_ones_first(store: Store) -> None:
    for i in range(5):
        store.create_job(record(f"j-{i}", created=float(i)))
    store.create_job(record("done", created=9.0, state=JobState.SUCCEEDED))
    w1, w2 = "host-a:1:w1", "host-b:2:w2"  # other hosts: only heartbeats tell if they live
    assert store.lease_jobs(w1, 2, stale_after=60) == ["j-0", "j-1"]
    assert store.get_job("j-0").owner == w1 and store.get_job("j-0").heartbeat is not None
    assert store.lease_jobs(w2, 10, stale_after=60) == ["j-2", "j-3", "j-4"]  # never a finished job
    store.update_job("j-0", state=JobState.SUCCEEDED)
    store.create_job(record("j-5", created=0.5))
    assert store.lease_jobs(w1, 10, stale_after=60) == ["j-1", "j-5"]  # its own first, then the new one
    assert store.lease_jobs(w1, 0, stale_after=60) == []


def test_lease_jobs_takes_over_stale_leases_and_fences_the_old_holder(store: Store) -> None:
    store.create_job(record("j-1"))
    store.create_job(record("j-2"))
    old, new = "host-a:1:old", "host-b:2:new"
    assert store.lease_jobs(old, 10, stale_after=60) == ["j-1", "j-2"]
    assert store.lease_jobs(new, 10, stale_after=60) == []
    time.sleep(0.05)
    assert store.heartbeat("j-2", old) is True  # j-2's holder is alive; j-1's went silent
    assert store.lease_jobs(new, 10, stale_after=0.04) == ["j-1"]
    assert store.heartbeat("j-1", old) is False
    assert store.heartbeat("j-1", new) is True
    assert any(e.kind == "controller" and old in e.message for _, e in store.events("j-1"))


def test_lease_jobs_takes_over_a_dead_local_process(store: Store) -> None:
    store.create_job(record("j-1"))
    dead = dead_owner()
    assert store.lease_jobs(dead, 1, stale_after=3600) == ["j-1"]
    assert store.lease_jobs(owner_id(), 1, stale_after=3600) == ["j-1"]


def test_concurrent_workers_never_lease_the_same_job(opener: Opener) -> None:
    setup = opener()
    for i in range(40):
        setup.create_job(record(f"j-{i:02}", created=float(i)))
    workers = [f"host-{w}:1:w{w}" for w in range(4)]
    handles = [opener() for _ in workers]
    barrier = threading.Barrier(len(workers))
    won: dict[str, list[str]] = {}
    errors: list[BaseException] = []

    def lease(worker: str, store: Store) -> None:
        try:
            barrier.wait(timeout=60)
            got: list[str] = []
            for _ in range(3):  # a worker's own leases count towards its limit: 4 x 10 covers all 40
                got += [j for j in store.lease_jobs(worker, 10, stale_after=600) if j not in got]
            won[worker] = got
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=lease, args=(w, s)) for w, s in zip(workers, handles, strict=True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    claimed = [job for jobs in won.values() for job in jobs]
    assert len(claimed) == len(set(claimed)) == 40  # each job to exactly one worker
    for worker, jobs in won.items():
        assert all(setup.get_job(j).owner == worker for j in jobs)


# --------------------------------------------------------------------------- controller workers


def test_workers_register_beat_and_go(store: Store) -> None:
    store.register_worker("w-remote", "host-b.invalid", 42)
    store.register_worker("w-dead", socket.gethostname(), int(dead_owner().split(":")[1]))
    [live] = store.workers(stale_after=60)  # the dead local process does not count
    assert (live.id, live.host, live.pid) == ("w-remote", "host-b.invalid", 42)
    assert live.started <= live.heartbeat
    time.sleep(0.05)
    assert store.workers(stale_after=0.04) == []
    store.beat_worker("w-remote")
    assert [w.id for w in store.workers(stale_after=0.04)] == ["w-remote"]
    store.register_worker("w-remote", "host-b.invalid", 43)  # a restart under the same name
    assert [w.pid for w in store.workers(stale_after=60)] == [43]
    store.remove_worker("w-remote")
    assert store.workers(stale_after=60) == []


def test_rows_of_workers_gone_for_a_day_are_pruned(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    now = time.time()
    monkeypatch.setattr(time, "time", lambda: now - 2 * WORKER_ROWS_KEPT_FOR)
    store.register_worker("w-killed", "host-b.invalid", 7)  # kill -9'd: it never removed its row
    monkeypatch.setattr(time, "time", lambda: now)
    assert [w.id for w in store.workers(stale_after=3 * WORKER_ROWS_KEPT_FOR)] == ["w-killed"]
    store.register_worker("w-new", "host-b.invalid", 8)
    assert [w.id for w in store.workers(stale_after=3 * WORKER_ROWS_KEPT_FOR)] == ["w-new"]


# --------------------------------------------------------------------------- identity and audit


def test_teams_users_and_tokens(store: Store) -> None:
    store.create_team("vision")
    store.create_team("vision")  # idempotent
    ada = store.create_user("ada", "vision")
    root = store.create_user("root", "ops", admin=True)  # its team is created on the way
    assert (ada.name, ada.team, ada.admin) == ("ada", "vision", False)
    assert root.admin and root.team == "ops"
    assert [u.name for u in store.users()] == ["ada", "root"]
    with pytest.raises(StoreError, match="exists already"):
        store.create_user("ada", "nlp")

    digest = token_hash()
    token_id = store.add_token(ada.id, digest, "laptop")
    assert store.user_by_token_hash(digest) == ada
    assert store.user_by_token_hash(token_hash()) is None
    second = token_hash()
    store.add_token(ada.id, second, "ci")
    store.revoke_token(token_id)
    assert store.user_by_token_hash(digest) is None
    assert store.user_by_token_hash(second) == ada  # the other token still works
    with pytest.raises(StoreError):
        store.revoke_token("tok-nope")
    with pytest.raises(StoreError):
        store.add_token("user-nope", token_hash(), "x")


def test_a_plain_token_is_never_stored(store: Store) -> None:
    user = store.create_user("ada", "vision")
    token = secrets.token_urlsafe(32)
    with pytest.raises(StoreError, match="sha256"):
        store.add_token(user.id, token, "laptop")
    assert store.user_by_token_hash(token) is None


def test_audit_log_newest_first_by_team(store: Store) -> None:
    ada = store.create_user("ada", "vision")
    store.create_user("bob", "nlp")
    store.audit("ada", "submit", "train-1", {"spec": {"name": "train"}})
    store.audit("bob", "cancel", "eval-1", {})
    store.audit(ada.id, "cancel", "train-1", {"reason": "oops"})
    store.audit("server", "create_user", "carol", {"team": "vision"})
    log = store.audit_log()
    assert [(e.actor, e.action, e.target) for e in log] == [
        ("server", "create_user", "carol"),
        (ada.id, "cancel", "train-1"),
        ("bob", "cancel", "eval-1"),
        ("ada", "submit", "train-1"),
    ]
    assert log[-1].detail == {"spec": {"name": "train"}}
    assert log[0].time >= log[-1].time and log[0].id > log[-1].id
    assert [e.target for e in store.audit_log(team="vision")] == ["carol", "train-1", "train-1"]
    assert [e.target for e in store.audit_log(team="nlp")] == ["eval-1"]
    assert len(store.audit_log(limit=2)) == 2


# --------------------------------------------------------------------------- SQLite: older files


def test_a_version_1_sqlite_file_is_upgraded_in_place(tmp_path: Path) -> None:
    from helpers.store_v1 import write_v1_store

    path = tmp_path / "jobs.sqlite"
    write_v1_store(path, ["old-1", "old-2"])
    first, second = open_store(f"sqlite:///{path}"), open_store(f"sqlite:///{path}")  # both see v1 first
    try:
        old = first.get_job("old-1")
        assert (old.state, old.team, old.submitted_by) == (JobState.RUNNING, "default", "")
        assert [a.n for a in second.attempts("old-2")] == [1]
        assert [e.kind for _, e in second.events("old-2")] == ["created", "attempt"]
        # everything new works on the upgraded file, from either handle
        assert second.lease_jobs("host-a:1:w", 10, stale_after=60) == ["old-1", "old-2"]
        second.create_user("ada", "vision")
        first.audit("ada", "submit", "old-1", {})
        assert [e.action for e in second.audit_log(team="vision")] == ["submit"]
        assert first.check() == []
    finally:
        first.close()
        second.close()
    import sqlite3

    db = sqlite3.connect(path)
    try:
        assert db.execute("PRAGMA user_version").fetchone()[0] == 3
    finally:
        db.close()


def test_a_version_2_sqlite_file_keeps_the_sweeps_it_made_itself(tmp_path: Path) -> None:
    """Before schema 3 the sweep module created its tables in the file on its own: a version-2 file
    may have them (with rows) or not; either way it is upgraded, and the rows are the store's."""
    import sqlite3

    with_rows, without = tmp_path / "with.sqlite", tmp_path / "without.sqlite"
    for path in (with_rows, without):
        open_store(f"sqlite:///{path}").close()
        db = sqlite3.connect(path, isolation_level=None)
        if path == with_rows:
            db.execute(
                "INSERT INTO sweep_groups (id, kind, name, spec, created, state) VALUES (?,?,?,?,?,?)",
                ("s-old", "sweep", "s", '{"k": 1}', 1.0, "running"),
            )
            db.execute(
                "INSERT INTO sweep_members (group_id, n, jobs, params, created) VALUES (?,?,?,?,?)",
                ("s-old", 0, '["s-0-abc"]', '{"lr": 0.1}', 1.0),
            )
        else:
            db.execute("DROP TABLE sweep_members")
            db.execute("DROP TABLE sweep_groups")
        db.execute("PRAGMA user_version = 2")
        db.close()
    store = open_store(f"sqlite:///{with_rows}")
    try:
        assert store.get_group("s-old").spec == {"k": 1}
        assert store.members("s-old")[0].params == {"lr": 0.1}
    finally:
        store.close()
    store = open_store(f"sqlite:///{without}")
    try:
        store.create_group(group("s-new"))
        assert [g.id for g in store.groups()] == ["s-new"]
    finally:
        store.close()


def test_one_handle_is_safe_to_share_between_threads(store: Store) -> None:
    """A server shares one store between its request threads."""
    store.create_job(record("j-1"))
    errors: list[BaseException] = []

    def write(t: int) -> None:
        try:
            for i in range(25):
                store.add_event("j-1", None, "progress", f"{t}-{i}")
                store.heartbeat("j-1", "nobody")
                store.get_job("j-1")
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    assert len(store.events_of_kind("j-1", "progress")) == 100


# --------------------------------------------------------------------------- sweeps and arrays


def group(group_id: str, name: str = "sweep", created: float | None = None, kind: str = "sweep") -> Group:
    spec = {"job": {"name": name}, "section": {"trials": 3, "lr": [0.1, 1e-3]}, "team": "vision"}
    return Group(group_id, kind, name, spec, time.time() if created is None else created, "running")


def test_groups_by_id_name_and_unique_prefix(store: Store) -> None:
    store.create_group(group("sw-aaa1", created=1.0))
    store.create_group(group("sw-aaa2", created=2.0))
    store.create_group(group("arr_x%1", name="arr", created=3.0, kind="array"))
    got = store.get_group("sw-aaa1")
    assert (got.kind, got.name, got.state, got.message, got.ended, got.owner) == (
        "sweep",
        "sweep",
        "running",
        "",
        None,
        None,
    )
    assert got.spec == group("x").spec  # JSON round trip, nested lists and floats included
    assert store.get_group("sweep").id == "sw-aaa2"  # by name: the newest
    assert store.get_group("sw-aaa1").id == "sw-aaa1"
    assert store.get_group("arr_").id == "arr_x%1"  # LIKE's wildcards in a ref are plain characters
    with pytest.raises(GroupNotFound, match="several"):
        store.get_group("sw-aaa")
    with pytest.raises(GroupNotFound, match="no sweep or array"):
        store.get_group("sw_")  # '_' must not match the '-'
    with pytest.raises(StoreError, match="exists already"):
        store.create_group(group("sw-aaa1"))
    assert [g.id for g in store.groups()] == ["arr_x%1", "sw-aaa2", "sw-aaa1"]
    assert [g.id for g in store.groups(limit=1)] == ["arr_x%1"]


def test_a_group_finishes_once(store: Store) -> None:
    store.create_group(group("sw-1"))
    store.set_group_message("sw-1", "budget: next trial would exceed it")
    assert store.get_group("sw-1").message.startswith("budget")
    store.finish_group("sw-1", "stopped", "cancelled")
    first = store.get_group("sw-1")
    store.finish_group("sw-1", "done", "all 3 trials ended")  # a late driver cannot rewrite it
    again = store.get_group("sw-1")
    assert (again.state, again.message, again.ended) == ("stopped", "cancelled", first.ended)
    assert first.ended is not None


def test_the_driver_lease_is_exclusive_fences_and_is_taken_from_the_dead(store: Store) -> None:
    store.create_group(group("sw-1"))
    a, b = owner_id(), owner_id()
    assert store.acquire_group("sw-1", a, stale_after=60) is True
    assert store.acquire_group("sw-1", a, stale_after=60) is True  # re-entrant for its holder
    assert store.acquire_group("sw-1", b, stale_after=60) is False
    assert store.heartbeat_group("sw-1", a) is True
    assert store.heartbeat_group("sw-1", b) is False
    store.release_group("sw-1", b)  # not the holder: no effect
    assert store.get_group("sw-1").owner == a
    time.sleep(0.05)
    assert store.acquire_group("sw-1", b, stale_after=0.01) is True  # a silent holder
    assert store.heartbeat_group("sw-1", a) is False  # A learns it lost the group
    store.release_group("sw-1", b)
    released = store.get_group("sw-1")
    assert (released.owner, released.heartbeat) == (None, None)
    dead = dead_owner()
    assert store.acquire_group("sw-1", dead, stale_after=3600)
    assert store.acquire_group("sw-1", a, stale_after=3600) is True  # fresh beat, but the pid is gone
    with pytest.raises(GroupNotFound):
        store.acquire_group("nope", a, stale_after=1)


def test_members_are_inserted_once_and_record_their_jobs_and_outcome(opener: Opener) -> None:
    store, other = opener(), opener()
    store.create_group(group("sw-1"))
    first = store.add_member(Member("sw-1", 1, ["sw-1-aaa"], {"lr": 0.01, "layers": 3, "act": "relu"}))
    assert (first.jobs, first.params, first.outcome, first.value) == (
        ["sw-1-aaa"],
        {"lr": 0.01, "layers": 3, "act": "relu"},
        "",
        None,
    )
    assert first.created > 0
    # a replaced driver that asks again gets the stored member, not its own
    assert other.add_member(Member("sw-1", 1, ["sw-1-bbb"], {"lr": 0.5})) == first
    other.add_member(Member("sw-1", 0, ["sw-0-ccc"]))
    assert [m.n for m in store.members("sw-1")] == [0, 1]
    assert store.members("nope") == []
    store.add_member_job("sw-1", 1, "sw-1-ddd")
    other.add_member_job("sw-1", 1, "sw-1-ddd")  # recorded once, from whichever handle
    assert store.member("sw-1", 1).jobs == ["sw-1-aaa", "sw-1-ddd"]
    assert store.member("sw-1", 1).job_id == "sw-1-ddd"
    other.set_member_outcome("sw-1", 1, "succeeded", "loss=0.25 at step 30", 0.25)
    other.set_member_outcome("sw-1", 0, "abandoned", "lost its capacity")
    one, zero = store.member("sw-1", 1), store.member("sw-1", 0)
    assert (one.outcome, one.message, one.value) == ("succeeded", "loss=0.25 at step 30", 0.25)
    assert (zero.outcome, zero.value) == ("abandoned", None)
    with pytest.raises(JobNotFound):
        store.member("sw-1", 7)
    with pytest.raises(JobNotFound):
        store.add_member_job("sw-1", 7, "x")


def test_optuna_keeps_its_study_in_the_store_database(opener: Opener) -> None:
    """Optuna's RDB storage on the URL the store gives, beside (PostgreSQL: apart from) the store's
    own tables: both go on working, each with its own migrations."""
    optuna = pytest.importorskip("optuna")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    store = opener()
    store.create_group(group("sw-1"))

    def storage(handle: Store) -> object:
        url, kwargs = handle.library_engine("optuna")
        return optuna.storages.RDBStorage(url, engine_kwargs=kwargs)

    study = optuna.create_study(storage=storage(store), study_name="sw-1")
    trial = study.ask({"lr": optuna.distributions.FloatDistribution(0.1, 0.3)})
    study.tell(trial, 0.5)
    again = optuna.load_study(storage=storage(opener()), study_name="sw-1")
    assert [t.value for t in again.trials] == [0.5]
    store.create_job(record("j-1"))  # the store's own tables are untouched
    assert store.get_group("sw-1").id == "sw-1" and store.check() == []
    assert opener().get_job("j-1").id == "j-1"  # and a new handle's migrations still agree
