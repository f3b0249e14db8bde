"""Chaos and load: ``multispot controller`` replicas leasing local jobs from one store.

Each test starts the service (a supervisor and its replicas, subprocesses under the test's own
``MULTISPOT_HOME``) and submits jobs through the public API while it runs, so no per-job
controller is ever started (``controllers.log`` stays absent). Replicas are killed with
SIGKILL, paused with SIGSTOP or drained with SIGTERM mid-run; jobs whose command waits for a
gate file are still running when that happens, however fast or slow the machine. At the end
every job SUCCEEDED in exactly one attempt whose command started exactly once
(``check_each_ran_once``). The numbers each test prints (jobs/min, takeover seconds) are for
docs/performance.md; nothing is asserted on them.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers.postgres import PostgresServer
from helpers.service import (
    STALE_AFTER,
    Bench,
    check_each_ran_once,
    live_workers,
    owners,
    service,
    wait_for,
)

from multispot.controller import STALE_AFTER as STALE_WINDOW
from multispot.status import JobState
from multispot.store import Store

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds processes through /proc")


@pytest.fixture(params=["sqlite", "postgres"])
def bench(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Bench]:
    """A home for the test's jobs and a store: a SQLite file in it, or a new database on the
    session's real PostgreSQL server (skipped, saying why, where its binaries are missing)."""
    home = tmp_path / "home"
    home.mkdir()
    url = request.getfixturevalue("postgres_url") if request.param == "postgres" else ""
    made = Bench(home, url or f"sqlite:///{home / 'jobs.sqlite'}")
    yield made
    made.gate.touch()  # a test that failed mid-run leaves no job waiting for its gate


@pytest.fixture
def store(bench: Bench, monkeypatch: pytest.MonkeyPatch) -> Iterator[Store]:
    monkeypatch.setenv("MULTISPOT_HOME", str(bench.home))
    monkeypatch.setenv("MULTISPOT_DB", bench.url)
    opened = bench.store()
    yield opened
    opened.close()


def terminal(store: Store, job_ids: list[str]) -> bool:
    return all(store.get_job(j).state.job_terminal for j in job_ids)


def running(store: Store, job_ids: list[str]) -> bool:
    return all(store.get_job(j).state is JobState.RUNNING for j in job_ids)


def not_locked(bench: Bench) -> bool:
    """SQLite: nobody holds the write lock (a process stopped inside a write transaction would
    keep every other writer waiting; a row lock in Postgres does not block SKIP LOCKED leases)."""
    if not bench.url.startswith("sqlite"):
        return True
    db = sqlite3.connect(bench.url.removeprefix("sqlite:///"), timeout=3, isolation_level=None)
    try:
        db.execute("BEGIN IMMEDIATE")
        db.execute("ROLLBACK")
        return True
    except sqlite3.OperationalError:
        return False
    finally:
        db.close()


def test_300_jobs_across_3_replicas_each_run_once(bench: Bench, store: Store) -> None:
    # The stale window is the default one here: under load, a replica that falls behind by a few
    # seconds must not lose its leases (each is renewed in the middle of a long round too).
    with service(bench, replicas=3, concurrency=40, stale_after=STALE_WINDOW) as svc:
        wait_for("3 live replicas", lambda: len(live_workers(store)) == 3)
        start = time.monotonic()
        job_ids = bench.submit(store, 300, gated=False)
        wait_for("300 jobs to end", lambda: terminal(store, job_ids), timeout=900, every=0.5)
        seconds = time.monotonic() - start
        assert svc.stop() == 0, svc.output()
    kinds = check_each_ran_once(bench, store, job_ids)
    assert kinds["submitted"] == 300
    assert kinds["fenced"] == 0, "nobody paused: no replica lost a lease"
    assert not (bench.home / "controllers.log").exists(), "a per-job controller was started"
    assert store.workers(STALE_AFTER) == [], "every replica deregistered when drained"
    print(f"\nservice load: 300 jobs, 3 replicas x 40: {300 / seconds * 60:.0f} jobs/min ({seconds:.1f}s)")


def test_a_replica_killed_mid_run_is_replaced_and_its_jobs_taken_over(bench: Bench, store: Store) -> None:
    # The jobs are there before the service starts, so its replicas lease them all at once and
    # each submits its share in a row: the polling below has time to catch one inside a submit.
    job_ids = bench.submit(store, 30, gated=True, start_controller=False)
    with service(bench, replicas=3, concurrency=12) as svc:
        # Kill a replica inside a provider submit if the polling catches one there (an attempt
        # row without a handle yet), else the first replica seen holding a job.
        victim: tuple[int, str] = (0, "")
        inside_submit = False

        def aim() -> bool:
            nonlocal victim, inside_submit
            workers = {w: pid for pid, w in live_workers(store).items()}
            deadline_passed = time.monotonic() - aiming > 20
            for job_id in job_ids:
                owner = store.get_job(job_id).owner
                if owner not in workers:
                    continue
                attempts = store.attempts(job_id)
                inside_submit = bool(attempts) and attempts[-1].handle is None
                if inside_submit or deadline_passed:
                    victim = (workers[owner], owner)
                    return True
            return False

        aiming = time.monotonic()
        wait_for("a replica to lease a job", aim, every=0.0)
        pid, worker = victim
        os.kill(pid, signal.SIGKILL)
        killed = time.monotonic()
        held = [j for j, o in owners(store, job_ids).items() if o == worker]
        unstarted = sum(1 for j in held if not (a := store.attempts(j)) or a[-1].handle is None)
        taken = wait_for(
            "the killed replica's jobs to be taken over",
            lambda: all(o not in (None, worker) for o in owners(store, held).values()),
        )
        replaced = wait_for(
            "the supervisor to start a replacement replica",
            lambda: len(live_workers(store)) == 3 and pid not in live_workers(store),
        )
        wait_for("every job running", lambda: running(store, job_ids))
        bench.gate.touch()
        wait_for("every job to end", lambda: terminal(store, job_ids))
        assert svc.stop() == 0, svc.output()
        assert "exited" in svc.output() and "restarting" in svc.output()
    check_each_ran_once(bench, store, job_ids)
    print(
        f"\nkill -9 of a replica holding {len(held)} jobs ({'inside' if inside_submit else 'not inside'} a "
        f"provider submit; {unstarted} not yet started): "
        f"taken over in {taken:.2f}s, replica replaced in {time.monotonic() - killed:.2f}s ({replaced:.2f}s after the takeover)"
    )


def test_a_paused_replica_is_fenced_when_it_wakes(bench: Bench, store: Store) -> None:
    # 16 jobs, 3 replicas of 8: none holds them all, and the two that stay up have room for all.
    with service(bench, replicas=3, concurrency=8) as svc:
        wait_for("3 live replicas", lambda: len(live_workers(store)) == 3)
        job_ids = bench.submit(store, 16, gated=True)
        wait_for("every job running", lambda: running(store, job_ids))
        wait_for("every job leased", lambda: None not in owners(store, job_ids).values())
        workers = live_workers(store)
        holders = set(owners(store, job_ids).values())
        pid, worker = next((p, w) for p, w in workers.items() if w in holders)
        for _ in range(50):  # stop it outside a write transaction (see not_locked)
            os.kill(pid, signal.SIGSTOP)
            if not_locked(bench):
                break
            os.kill(pid, signal.SIGCONT)
            time.sleep(0.05)
        else:
            pytest.fail("the replica was stopped inside a write transaction 50 times in a row")
        held = [j for j, o in owners(store, job_ids).items() if o == worker]
        assert held
        stopped = time.monotonic()
        try:
            taken = wait_for(
                "the paused replica's jobs to be taken over",
                lambda: all(o not in (None, worker) for o in owners(store, held).values()),
            )
        finally:
            os.kill(pid, signal.SIGCONT)
        wait_for(
            "the woken replica to drop every job it lost",
            lambda: all(any(worker in e.message for _, e in store.events_of_kind(j, "fenced")) for j in held),
        )
        assert pid in live_workers(store), "the woken replica serves on"
        bench.gate.touch()
        wait_for("every job to end", lambda: terminal(store, job_ids))
        assert svc.stop() == 0, svc.output()
    kinds = check_each_ran_once(bench, store, job_ids)
    assert kinds["fenced"] == len(held)
    print(
        f"\nSIGSTOP of a replica holding {len(held)} jobs: taken over {taken:.2f}s after the pause (stale window {STALE_AFTER:g}s); {time.monotonic() - stopped:.1f}s in all"
    )


def test_sigterm_drains_and_releases_every_lease(bench: Bench, store: Store) -> None:
    with service(bench, replicas=2, concurrency=40) as svc:
        wait_for("2 live replicas", lambda: len(live_workers(store)) == 2)
        job_ids = bench.submit(store, 10, gated=True)
        wait_for("every job running", lambda: running(store, job_ids))
        assert svc.stop() == 0, svc.output()
    assert set(owners(store, job_ids).values()) == {None}, "a drained replica let go of its jobs"
    assert store.workers(3600) == []
    assert not terminal(store, job_ids)  # the jobs run on without a controller, like cloud jobs
    with service(bench, replicas=1, concurrency=40) as svc:
        wait_for("the jobs to be leased again", lambda: None not in owners(store, job_ids).values())
        bench.gate.touch()
        wait_for("every job to end", lambda: terminal(store, job_ids))
        assert svc.stop() == 0, svc.output()
    check_each_ran_once(bench, store, job_ids)


def test_postgres_restarted_mid_run(
    tmp_path: Path, postgres_server: PostgresServer, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The database goes away under running replicas and comes back: they wait it out (the store
    reconnects and retries; a ``StoreError`` that gets through makes a replica back off, not exit),
    and every job still runs once."""
    home = tmp_path / "home"
    home.mkdir()
    bench = Bench(home, postgres_url)
    monkeypatch.setenv("MULTISPOT_HOME", str(home))
    store = bench.store()
    try:
        with service(bench, replicas=2, concurrency=20) as svc:
            wait_for("2 live replicas", lambda: len(live_workers(store)) == 2)
            job_ids = bench.submit(store, 12, gated=True)
            wait_for("every job running", lambda: running(store, job_ids))
            postgres_server.restart(down_for=3.0)
            bench.gate.touch()
            wait_for("every job to end", lambda: terminal(store, job_ids))
            assert svc.stop() == 0, svc.output()
            assert "exited" not in svc.output(), svc.output()
        check_each_ran_once(bench, store, job_ids)
    finally:
        store.close()


def test_replicas_of_a_killed_supervisor_drain_and_exit(bench: Bench, store: Store) -> None:
    """kill -9 of the supervisor alone: its replicas notice they are orphans, release their leases
    and exit, so nothing keeps leasing jobs that no supervisor watches over."""
    with service(bench, replicas=2, concurrency=10) as svc:
        wait_for("2 live replicas", lambda: len(live_workers(store)) == 2)
        replicas = svc.replica_pids()
        assert len(replicas) == 2
        job_ids = bench.submit(store, 4, gated=True)
        wait_for("every job running", lambda: running(store, job_ids))
        os.kill(svc.proc.pid, signal.SIGKILL)
        svc.proc.wait()
        wait_for("the orphaned replicas to exit", lambda: not any(alive(pid) for pid in replicas))
    assert set(owners(store, job_ids).values()) == {None}
    assert store.workers(3600) == []
    with service(bench, replicas=1, concurrency=10) as svc:
        bench.gate.touch()
        wait_for("every job to end", lambda: terminal(store, job_ids))
        assert svc.stop() == 0, svc.output()
    check_each_ran_once(bench, store, job_ids)


def alive(pid: int) -> bool:
    """Running, and not a zombie waiting to be reaped."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"
