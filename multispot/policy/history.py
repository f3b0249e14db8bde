"""What the job store's past attempts say of each spot pool: prior evidence for a live policy.

Live, a policy sees a pool only through attempts: a spot attempt that ran was a stretch with
capacity, a preemption or a refusal the start of a gap. ``PoolHistory.from_store`` reads those of
the store's recent jobs (its public ``jobs()`` and ``attempts()`` only, so any store with those
two methods serves) and sums them per pool into the same sufficient statistics the simulator
gives from a trace (``PoolStats``). ``DeadlineAware`` adds them to what the job itself sees:
for a two-state chain the evidence is additive (time up, time down, drops, recoveries), so past
jobs act as the prior and this job's attempts update it — with no evidence at all it is greedy.

Stretches and gaps a job stopped watching are *censored*: an attempt that succeeded, was moved
or cancelled was still up when it ended, and a pool a job left after a preemption was still
down when the job started something else. Their time counts, but only a seen drop counts as
the end of a stretch and only a seen return (a later start there) as the end of a gap, which is
the maximum-likelihood estimate of an exponential mean under censoring.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from multispot.policy import PoolStats
from multispot.status import Attempt, JobState, Placement

# How many of the store's newest jobs are read: a bounded read (two queries per job) on every
# refresh; older jobs say little of a pool's capacity now.
JOBS_READ = 200
# Seconds between re-reads of the store: other jobs add attempts at the pace of restarts
# (minutes), the same pace at which the simulator refreshes what a policy has seen.
REFRESH_EVERY = 600.0

PoolKey = tuple[str, str | None, str | None, int]  # provider, region, instance type, count


def pool_key(p: Placement) -> PoolKey:
    """One spot pool: a multi-node placement needs every node up, so its count is part of it."""
    return (p.provider, p.region, p.instance_type, p.count)


class AttemptHistory(Protocol):
    """The two public methods of the job store that the history reads."""

    def jobs(self, limit: int = ...) -> list[Any]: ...

    def attempts(self, job_id: str) -> list[Attempt]: ...


@dataclass(frozen=True)
class PoolHistory:
    """Evidence per spot pool (``PoolStats``), summed over past jobs' attempts."""

    pools: dict[PoolKey, PoolStats] = field(default_factory=dict)

    @classmethod
    def from_attempts(cls, jobs: Iterable[list[Attempt]]) -> PoolHistory:
        totals: dict[PoolKey, PoolStats] = {}
        for attempts in jobs:
            for key, stats in observed(attempts).items():
                totals[key] = merge(totals.get(key), stats)
        return cls(totals)

    @classmethod
    def from_store(
        cls, store: AttemptHistory, *, exclude: str | None = None, limit: int = JOBS_READ
    ) -> PoolHistory:
        """The history of the store's ``limit`` newest jobs, leaving out ``exclude`` (the job being
        decided for: its own attempts are already what the policy sees)."""
        ids = [getattr(r, "id", None) for r in store.jobs(limit=limit)]
        return cls.from_attempts(store.attempts(i) for i in ids if isinstance(i, str) and i != exclude)

    def prior(self, candidates: Iterable[Placement]) -> dict[Placement, PoolStats]:
        """The evidence for each spot candidate that has any."""
        return {
            p: self.pools[pool_key(p)] for p in candidates if p.market == "spot" and pool_key(p) in self.pools
        }


class HistoryReader:
    """A ``PoolHistory`` of a store for one job, re-read at most every ``REFRESH_EVERY`` seconds
    (the controller consults its policy every few seconds; the store's history moves slower)."""

    def __init__(self, store: AttemptHistory, job_id: str) -> None:
        self.store = store
        self.job_id = job_id
        self._read_at: float | None = None
        self._history = PoolHistory()

    def prior(self, candidates: Iterable[Placement], now: float | None = None) -> dict[Placement, PoolStats]:
        now = time.time() if now is None else now
        if self._read_at is None or now - self._read_at >= REFRESH_EVERY:
            self._history = PoolHistory.from_store(self.store, exclude=self.job_id)
            self._read_at = now
        return self._history.prior(candidates)

    def lazy_prior(self, candidates: list[Placement], now: float) -> LazyPrior:
        """``prior(candidates, now)``, asked of the store only when a policy first looks at it."""
        return LazyPrior(self, candidates, now)


class LazyPrior(Mapping[Placement, PoolStats]):
    """A reader's ``prior`` that reads the store on first use. Reading is two queries for each of
    the store's JOBS_READ newest jobs; only the deadline-aware policies look at ``ctx.history``,
    so a controller of any other policy (a service worker starting hundreds of jobs) never reads."""

    def __init__(self, reader: HistoryReader, candidates: list[Placement], now: float) -> None:
        self._reader, self._candidates, self._now = reader, candidates, now
        self._value: dict[Placement, PoolStats] | None = None

    def _read(self) -> dict[Placement, PoolStats]:
        if self._value is None:
            self._value = self._reader.prior(self._candidates, self._now)
        return self._value

    def __getitem__(self, key: Placement) -> PoolStats:
        return self._read()[key]

    def __iter__(self) -> Iterator[Placement]:
        return iter(self._read())

    def __len__(self) -> int:
        return len(self._read())


def observed(attempts: list[Attempt], now: float | None = None) -> dict[PoolKey, PoolStats]:
    """What one job's attempts saw of each spot pool up to ``now`` (default: its last recorded
    time), censoring as the module docstring says: ``runs`` counts the drops seen (stretches
    that ended in a preemption) and ``gaps`` the returns seen (a gap that ended in a later start
    there)."""
    out: dict[PoolKey, list[float]] = {}  # seconds, up, drops, returns
    ends = [t for a in attempts for t in (a.started, a.ended, a.submitted) if t is not None]
    last = now if now is not None else max(ends, default=0.0)
    for i, a in enumerate(attempts):
        if a.placement.market != "spot":
            continue
        key = pool_key(a.placement)
        c = out.setdefault(key, [0.0, 0.0, 0.0, 0.0])
        if a.started is not None:
            up = max(0.0, (a.ended if a.ended is not None else last) - a.started)
            c[0] += up
            c[1] += up
            c[2] += a.state is JobState.PREEMPTED
        if a.state not in (JobState.PREEMPTED, JobState.NO_CAPACITY) or a.ended is None:
            continue
        later = attempts[i + 1 :]
        back = next(
            (
                b.started
                for b in later
                if b.placement.market == "spot" and pool_key(b.placement) == key and b.started is not None
            ),
            None,
        )
        if back is not None:
            c[0] += max(0.0, back - a.ended)
            c[3] += 1
            continue
        # censored: the pool was down at least until the job turned elsewhere (or ended)
        elsewhere = next((b.submitted or b.started for b in later if (b.submitted or b.started)), None)
        c[0] += max(0.0, (elsewhere if elsewhere is not None else last) - a.ended)
    return {k: PoolStats(c[0], c[1], int(c[2]), int(c[3])) for k, c in out.items()}


def merge(a: PoolStats | None, b: PoolStats | None) -> PoolStats:
    """Both bodies of evidence about one pool (they are additive for a two-state chain)."""
    if a is None or b is None:
        found = a or b
        return found if found is not None else PoolStats(0.0, 0.0, 0, 0)
    return PoolStats(a.seconds + b.seconds, a.available + b.available, a.runs + b.runs, a.gaps + b.gaps)
