"""The job store's past attempts as prior evidence for ``deadline-aware`` (multispot/policy/history.py)."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from multispot.job import Job
from multispot.policy import PolicyContext, PoolStats
from multispot.policy.deadline import DeadlineAware, GreedySpot
from multispot.policy.history import HistoryReader, PoolHistory, merge, observed, pool_key
from multispot.status import Attempt, JobState, Placement
from multispot.store import JobRecord, JobStore

H = 3600.0
A = Placement("local", "spot", "a", "x", price_per_hour=1.0)
A8 = replace(A, count=8)
OD = Placement("local", "on-demand", "a", "x", price_per_hour=3.0)


def record(job_id: str, created: float) -> JobRecord:
    return JobRecord(
        id=job_id,
        name=job_id,
        spec={"name": job_id, "command": ["python", "train.py"]},
        provider="local",
        state=JobState.SUCCEEDED,
        checkpoint_uri="file:///tmp/ckpt",
        output_uri="file:///tmp/out",
        created=created,
        updated=created,
    )


def past_job(store: JobStore, job_id: str, t0: float, gap: float) -> None:
    """A job that ran 1h on A, was preempted, waited ``gap`` for A to come back, ran 1h more, and
    finished: one drop and one return seen."""
    store.create_job(record(job_id, t0))
    for a in (
        Attempt(job_id, 1, A, JobState.PREEMPTED, started=t0, ended=t0 + H),
        Attempt(
            job_id,
            2,
            A,
            JobState.SUCCEEDED,
            submitted=t0 + H + gap,
            started=t0 + H + gap,
            ended=t0 + 2 * H + gap,
        ),
    ):
        assert store.add_attempt(a)
        store.update_attempt(job_id, a.n, submitted=a.submitted, started=a.started, ended=a.ended)


@pytest.fixture
def store(tmp_path: Path) -> Any:
    s = JobStore(tmp_path / "jobs.sqlite")
    yield s
    s.close()


def test_observed_censors_what_the_job_stopped_watching() -> None:
    attempts = [
        # up 2h, dropped; the job went on-demand and never looked back: a censored gap of 1h
        Attempt("j", 1, A, JobState.PREEMPTED, started=0.0, ended=2 * H),
        Attempt("j", 2, OD, JobState.SUCCEEDED, submitted=3 * H, started=3 * H, ended=5 * H),
    ]
    s = observed(attempts)[pool_key(A)]
    assert (s.seconds, s.available, s.runs, s.gaps) == (3 * H, 2 * H, 1, 0)
    # a refusal, then capacity 30 min later, a run that was moved away (not a drop)
    attempts = [
        Attempt("j", 1, A, JobState.NO_CAPACITY, submitted=0.0, ended=0.0),
        Attempt("j", 2, A, JobState.SWITCHED, submitted=0.5 * H, started=0.5 * H, ended=1.5 * H),
    ]
    s = observed(attempts)[pool_key(A)]
    assert (s.seconds, s.available, s.runs, s.gaps) == (1.5 * H, 1 * H, 0, 1)
    # an 8-node pool is another pool than the same machine alone
    assert set(observed([replace(attempts[1], placement=A8)])) == {pool_key(A8)}


def test_history_from_the_store_sums_past_jobs_and_leaves_out_the_current_one(store: JobStore) -> None:
    now = time.time()
    past_job(store, "old1", now - 20 * H, gap=3 * H)
    past_job(store, "old2", now - 10 * H, gap=5 * H)
    store.create_job(record("current", now))
    assert store.add_attempt(Attempt("current", 1, A, JobState.PREEMPTED))
    store.update_attempt("current", 1, started=now, ended=now + 100.0)
    history = PoolHistory.from_store(store, exclude="current")
    s = history.pools[pool_key(A)]
    assert (s.seconds, s.available, s.runs, s.gaps) == (12 * H, 4 * H, 2, 2)
    prior = history.prior([A, A8, OD])
    assert set(prior) == {A}  # no evidence on the 8-node pool, and none is kept for on-demand
    with_current = PoolHistory.from_store(store)
    assert with_current.pools[pool_key(A)].runs == 3


def ctx(**fields: Any) -> PolicyContext:
    spec = Job.validate_data({"name": "p", "command": "python -c pass", "limits": {"deadline": 20 * H}})
    base = PolicyContext(
        spec, [], [A, OD], 0.0, 0.0, progress=0.0, work=10 * H, restart_overhead=300.0, step=60.0
    )
    return replace(base, **fields)


def test_deadline_aware_learns_a_pool_from_the_store_before_its_first_attempt() -> None:
    # live, 12 min of slack, nothing running, A just refused: greedy waits for A (it needs one
    # restart of 5 min). Without history deadline-aware knows nothing of A either and waits too.
    refused = [Attempt("j", 1, A, JobState.NO_CAPACITY, submitted=9.8 * H - 10, ended=9.8 * H - 10)]
    late = ctx(now=9.8 * H, attempts=refused)
    assert GreedySpot().decide(late).idle
    da = DeadlineAware()
    assert da.decide(late).idle
    # the store has seen A's gaps last 9h: on-demand now keeps the slack to come back to spot
    seconds = 3 * 86400.0
    long_gaps = PoolStats(seconds, 0.1 * seconds, 7, 7)
    assert da.decide(replace(late, history={A: long_gaps})).placement == OD
    # gaps of 6 min seen before: waiting is the cheaper bet
    short_gaps = PoolStats(seconds, 0.5 * seconds, 360, 360)
    assert da.decide(replace(late, history={A: short_gaps})).idle


def test_history_and_the_runs_own_evidence_add_up() -> None:
    a, b = PoolStats(10.0, 4.0, 2, 1), PoolStats(5.0, 5.0, 1, 0)
    assert merge(a, b) == PoolStats(15.0, 9.0, 3, 1)
    assert merge(None, b) == b and merge(a, None) == a
    da = DeadlineAware()
    c = ctx(stats={A: a}, history={A: b})
    assert da.seen(c) == {A: PoolStats(15.0, 9.0, 3, 1)}


def count_job_reads(store: JobStore, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The ``limit`` of every ``store.jobs`` call from now on."""
    reads: list[int] = []
    real = store.jobs

    def counting(limit: int = 50) -> list[JobRecord]:
        reads.append(limit)
        return real(limit=limit)

    monkeypatch.setattr(store, "jobs", counting)
    return reads


def test_reader_rereads_the_store_only_every_refresh(
    store: JobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    from multispot.policy import history

    reads = count_job_reads(store, monkeypatch)
    reader = HistoryReader(store, "current")
    assert reader.prior([A], now=0.0) == {}
    past_job(store, "old", 100.0, gap=H)
    assert reader.prior([A], now=history.REFRESH_EVERY - 1) == {}  # not re-read yet
    assert A in reader.prior([A], now=history.REFRESH_EVERY)
    assert len(reads) == 2


def test_the_prior_a_controller_passes_reads_the_store_only_when_a_policy_looks(
    store: JobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    from multispot import policy

    past_job(store, "old", time.time() - 10 * H, gap=H)
    expected = PoolHistory.from_store(store, exclude="current").pools[pool_key(A)]
    reads = count_job_reads(store, monkeypatch)
    lazy = HistoryReader(store, "current").lazy_prior([A, OD], now=time.time())
    c = ctx(history=lazy)
    for name in ("spot", "on-demand", "fallback"):
        assert policy.get(name).decide(c).placement is not None
    assert reads == [], "a policy that never looks at ctx.history made the controller read the store"
    assert DeadlineAware().seen(c)[A] == expected
    assert len(reads) == 1
    assert dict(lazy) == {A: expected} and len(reads) == 1  # read once
    # and the controller passes it so: building its policy context reads nothing
    from multispot.controller import Controller

    store.create_job(record("current", time.time()))
    current = store.get_job("current")
    live = Controller("current", store)._context(current, Job.from_record(current.spec), [], time.time())
    assert len(reads) == 1, "the controller read the store's history before any policy looked"
    assert live.history is not None
    len(live.history)  # a policy looks
    assert len(reads) == 2
