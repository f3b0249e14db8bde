"""Placement and recovery policies: where the next attempt runs, or why the job stops.

One interface for the controller (live) and the simulator (replayed traces): ``decide(ctx)``
returns a ``Decision``. The controller asks when an attempt has ended (``ctx.current`` is None);
the simulator asks at every tick of a trace, with ``ctx.current`` the placement running now, so
the same answer means "stay", another placement "switch", and ``Decision.idle`` "run nothing for
now". The fields after ``submitted_at`` are optional: a policy that needs them (the deadline-aware
ones) falls back to safe behaviour when they are unknown.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from multispot.job import Job
from multispot.status import Attempt, JobState, Placement


@dataclass(frozen=True)
class PolicyContext:
    job: Job
    attempts: list[Attempt]  # oldest first; the last one has ended (unless it is ``current``)
    candidates: list[Placement]  # every placement the job's targets allow, in the user's order
    now: float
    submitted_at: float
    # What the simulator knows exactly and the controller estimates (None: unknown).
    progress: float | None = None  # seconds of running the job has kept (checkpointed) so far
    work: float | None = None  # seconds of running the whole job needs (saves included)
    current: Placement | None = None  # where an attempt runs now; None: nothing runs
    overhead_left: float = 0.0  # seconds of restart overhead the current attempt still has to pay
    available: frozenset[Placement] | None = None  # spot placements with capacity now, if known
    restart_overhead: float = 180.0  # seconds from starting an attempt to useful progress
    step: float = 60.0  # seconds until the policy is asked again (the simulator's tick)
    spent: float = 0.0  # USD so far
    at_risk: float = 0.0  # seconds of progress a preemption of the current attempt would lose
    stats: dict[Placement, PoolStats] | None = None  # availability seen so far, per spot placement


@dataclass(frozen=True)
class PoolStats:
    """What has been seen of one spot pool's capacity (the trace so far, or a live history)."""

    seconds: float  # observed time in all
    available: float  # of which with capacity
    runs: int  # stretches with capacity (each ends in a preemption, or is still going)
    gaps: int  # stretches without

    @property
    def fraction(self) -> float | None:
        return self.available / self.seconds if self.seconds > 0 else None

    @property
    def mean_up(self) -> float | None:
        return self.available / self.runs if self.runs else None

    @property
    def mean_down(self) -> float | None:
        down = self.seconds - self.available
        return down / self.gaps if self.gaps else None


@dataclass(frozen=True)
class Decision:
    placement: Placement | None  # None: stop the job (or, with ``idle``, run nothing for now)
    reason: str
    final_state: JobState = JobState.FAILED  # when stopping
    delay: float = 0.0  # seconds to wait before the next attempt
    idle: bool = False  # placement None and idle: not stopping, waiting (at least ``delay``)


class Policy(Protocol):
    name: str

    def decide(self, ctx: PolicyContext) -> Decision: ...


def preemptions(attempts: list[Attempt]) -> int:
    return sum(a.interruptions + (a.state is JobState.PREEMPTED) for a in attempts)


class SpotPolicy:
    """The job's ``spot`` block: spot only, on-demand only, or spot with fallback to on-demand.

    Among candidates of the wanted market it keeps the user's order, moves away from a pool
    that just lost capacity when there is another, and never exceeds ``limits.max_price``.
    """

    name = "spot"

    def __init__(self, no_capacity_backoff: float = 5.0) -> None:
        self.no_capacity_backoff = no_capacity_backoff

    def decide(self, ctx: PolicyContext) -> Decision:
        job, attempts = ctx.job, ctx.attempts
        deadline = absolute_deadline(job, ctx.submitted_at)
        if deadline is not None and ctx.now >= deadline:
            return Decision(None, "the deadline has passed", final_state=JobState.TIMED_OUT)
        if len(attempts) >= job.spot.max_attempts:
            return Decision(None, f"gave up after {len(attempts)} attempts (spot.max_attempts)")
        market = self._market(ctx)
        pool = [c for c in ctx.candidates if c.market == market]
        if job.limits.max_price is not None:
            pool = [c for c in pool if c.price_per_hour is None or c.price_per_hour <= job.limits.max_price]
        if not pool:
            return Decision(None, f"no {market} placement within the job's targets and max_price")
        last = attempts[-1] if attempts else None
        choice = pool[0]
        if last is not None and last.placement.market == market and len(pool) > 1:
            # Diversify: start after the pool that just lost capacity, wrapping around.
            same = [i for i, c in enumerate(pool) if _same_pool(c, last.placement)]
            if same:
                choice = pool[(same[0] + 1) % len(pool)]
        delay = self.no_capacity_backoff if last and last.state is JobState.NO_CAPACITY else 0.0
        if last and last.state is JobState.NO_CAPACITY and market == "on-demand":
            delay = 0.0
        reason = "first attempt" if last is None else f"after {last.state.value.lower()}: {market}"
        return Decision(choice, reason, delay=delay)

    def _market(self, ctx: PolicyContext) -> str:
        spot = ctx.job.spot
        if spot.policy == "on-demand":
            return "on-demand"
        if spot.policy == "spot":
            return "spot"
        attempts = ctx.attempts
        if preemptions(attempts) >= spot.fallback_after:
            return "on-demand"
        if attempts and attempts[-1].state is JobState.NO_CAPACITY:
            return "on-demand"
        return "spot"


def absolute_deadline(job: Job, submitted_at: float) -> float | None:
    """The job's deadline as a unix time: an ISO time as given, a duration counted from submit."""
    deadline = job.limits.deadline
    if deadline is None:
        return None
    if isinstance(deadline, datetime):
        return deadline.timestamp()
    return submitted_at + float(deadline)


def _same_pool(a: Placement, b: Placement) -> bool:
    return (a.provider, a.region, a.instance_type) == (b.provider, b.region, b.instance_type)


def policy_for(job: Job, name: str | None = None) -> Policy:
    """The policy object for ``name`` (default: the job's ``spot.policy``).

    ``spot``, ``on-demand`` and ``fallback`` keep the ``SpotPolicy`` behaviour; the other names
    are the deadline-oriented policies of ``multispot.policy.deadline``.
    """
    name = name or job.spot.policy
    if name in ("spot", "on-demand", "fallback"):
        return SpotPolicy()
    from multispot.policy.deadline import make_policy

    return make_policy(name, job)
