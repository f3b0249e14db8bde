"""What only the PostgreSQL store has to get right: migrations, a database that goes away and
comes back, errors that never show the password, and picking the backend from a URL."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers.postgres import PostgresServer, postgres_bin

from multispot.errors import StoreError
from multispot.status import Attempt, JobState, Placement
from multispot.store import JobRecord, SQLiteStore, Store, open_store

PASSWORD = "s3cret-Pa55word"  # trust authentication ignores it; errors must never show it


def record(job_id: str) -> JobRecord:
    return JobRecord(
        id=job_id,
        name="train",
        spec={"name": "train"},
        provider="local",
        state=JobState.PENDING,
        checkpoint_uri="file:///c",
        output_uri="file:///o",
    )


def with_password(url: str) -> str:
    return url.replace("multispot@", f"multispot:{PASSWORD}@")


@pytest.fixture
def own_server() -> Iterator[PostgresServer]:
    """A server of this test's own, free to be stopped and restarted."""
    bindir = postgres_bin()
    if bindir is None:
        pytest.skip("PostgreSQL's initdb/pg_ctl not found: apt-get install postgresql (make test does)")
    server = PostgresServer(bindir)
    try:
        server.start()
        yield server
    finally:
        server.close()


def test_open_store_picks_the_backend_from_the_url(
    postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from multispot.store.postgres import PostgresStore

    monkeypatch.setenv("MULTISPOT_DB", with_password(postgres_url))
    store = open_store()
    try:
        assert isinstance(store, PostgresStore)
        assert PASSWORD not in repr(store) and PASSWORD not in store.url
    finally:
        store.close()
    sqlite = open_store(f"sqlite:///{tmp_path / 'jobs.sqlite'}")  # the argument wins over the env
    assert isinstance(sqlite, SQLiteStore) and sqlite.path == tmp_path / "jobs.sqlite"
    sqlite.close()
    with pytest.raises(StoreError, match="not a job store URL") as bad:
        open_store(f"mysql://root:{PASSWORD}@db/x")
    assert PASSWORD not in str(bad.value)
    with pytest.raises(StoreError, match="absolute path"):
        open_store("sqlite://relative.sqlite")


def test_the_migrations_make_exactly_the_tables_the_code_uses(postgres_url: str) -> None:
    import sqlalchemy as sa
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from multispot.store.postgres import METADATA, driver_url

    open_store(postgres_url).close()
    engine = sa.create_engine(driver_url(postgres_url))
    try:
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), METADATA)
            versions = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalars().all()
    finally:
        engine.dispose()
    assert diff == []
    assert versions == ["0002"]


def test_optuna_lives_in_its_own_schema_with_its_own_alembic_version(postgres_url: str) -> None:
    """Optuna migrates its tables with Alembic too: in the store's schema it would read the store's
    ``alembic_version`` as its own (and refuse it as incompatible), so it gets the schema ``optuna``."""
    import sqlalchemy as sa

    optuna = pytest.importorskip("optuna")
    from multispot.store.postgres import driver_url

    store = open_store(postgres_url)
    try:
        url, kwargs = store.library_engine("optuna")
        optuna.create_study(storage=optuna.storages.RDBStorage(url, engine_kwargs=kwargs), study_name="s")
        with pytest.raises(StoreError, match="schema name"):
            store.library_engine('x"; DROP TABLE jobs; --')
    finally:
        store.close()
    engine = sa.create_engine(driver_url(postgres_url))
    try:
        with engine.connect() as conn:
            ours = conn.execute(sa.text("SELECT version_num FROM public.alembic_version")).scalars().all()
            theirs = conn.execute(sa.text("SELECT count(*) FROM optuna.alembic_version")).scalar()
            studies = conn.execute(sa.text("SELECT study_name FROM optuna.studies")).scalars().all()
            public = set(sa.inspect(conn).get_table_names(schema="public"))
    finally:
        engine.dispose()
    assert ours == ["0002"] and theirs == 1 and studies == ["s"]
    assert "studies" not in public and {"jobs", "sweep_groups", "sweep_members"} <= public


def test_concurrent_openers_of_a_new_database_migrate_once(postgres_url: str) -> None:
    barrier = threading.Barrier(6)
    opened: list[Store] = []
    errors: list[BaseException] = []

    def open_one() -> None:
        try:
            barrier.wait(timeout=60)
            opened.append(open_store(postgres_url))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    try:
        assert errors == []
        assert len(opened) == 6
        opened[0].create_job(record("j-1"))
        assert all(store.get_job("j-1").id == "j-1" for store in opened)
    finally:
        for store in opened:
            store.close()


def test_a_restarted_database_is_waited_for_and_nothing_is_lost(own_server: PostgresServer) -> None:
    store = open_store(own_server.new_database())
    try:
        store.create_job(record("j-1"))
        assert store.lease_jobs("host-a:1:w", 5, stale_after=60) == ["j-1"]
        # Restarted between two calls: every pooled connection is dead; the next call reconnects.
        own_server.restart()
        assert store.heartbeat("j-1", "host-a:1:w") is True
        # Down while calls are made: they wait (not fail) and go through once it is back.
        own_server.stop()
        results: list[object] = []
        errors: list[BaseException] = []

        def drive() -> None:
            try:
                assert store.add_attempt(Attempt("j-1", 1, Placement(provider="local", market="spot")))
                store.add_event("j-1", 1, "progress", "step 10")
                results.append(store.heartbeat("j-1", "host-a:1:w"))
            except BaseException as exc:  # reported below
                errors.append(exc)

        worker = threading.Thread(target=drive)
        worker.start()
        worker.join(timeout=1.0)
        assert worker.is_alive() and not results  # blocked on the missing database, not failed
        own_server.start()
        worker.join(timeout=120)
        assert errors == [] and results == [True]
        assert [a.n for a in store.attempts("j-1")] == [1]
        assert [e.message for _, e in store.events_of_kind("j-1", "progress")] == ["step 10"]
        assert store.check() == []
    finally:
        store.close()


def test_a_database_gone_for_good_is_a_store_error_without_the_password(own_server: PostgresServer) -> None:
    from multispot.store.postgres import PostgresStore

    store = PostgresStore(with_password(own_server.new_database()), reconnect_wait=0.5)
    try:
        own_server.stop()
        with pytest.raises(StoreError, match=r"unreachable for more than 0\.5s") as gone:
            store.get_job("j-1")
        assert PASSWORD not in str(gone.value)
        assert "multispot:***@127.0.0.1" in str(gone.value)
    finally:
        store.close()


def test_a_wrong_database_fails_at_once_without_the_password(postgres_server: PostgresServer) -> None:
    from multispot.store.postgres import PostgresStore

    url = with_password(postgres_server.database_url("no_such_db"))
    with pytest.raises(StoreError, match="does not exist") as wrong:
        PostgresStore(url, reconnect_wait=600)  # not retried: waiting would not make it exist
    assert PASSWORD not in str(wrong.value)


@pytest.mark.slow
def test_a_preempted_local_job_runs_to_the_end_on_postgres(
    postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The API and the controller find the store through MULTISPOT_DB, as every call site does."""
    import json

    from multispot import api
    from multispot.controller import Controller
    from multispot.job import Job
    from multispot.testing.worker import expected_sum

    monkeypatch.setenv("MULTISPOT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MULTISPOT_DB", postgres_url)
    job = Job.validate_data(
        {
            "name": "pg",
            "command": "python -m multispot.testing.worker --steps 30 --step-seconds 0.05",
            "output_uri": str(tmp_path / "out"),
            "provider_options": {"local": {"time_scale": 0.02, "preemptions": "every=0.8s,max=1"}},
        },
        base_dir=tmp_path,
    )
    run = api.submit(job, start_controller=False)
    Controller(run.id, poll_interval=0.05).run()
    assert run.status is JobState.SUCCEEDED
    assert [a.state for a in run.attempts] == [JobState.PREEMPTED, JobState.SUCCEEDED]
    assert json.loads((tmp_path / "out" / "result.json").read_text())["sum"] == expected_sum(30)
    store = open_store(postgres_url)
    try:
        assert [j.id for j in store.jobs()] == [run.id]
        assert store.check() == []
    finally:
        store.close()
