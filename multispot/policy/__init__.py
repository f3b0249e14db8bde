"""Placement and recovery policies: where the next attempt runs, or why the job stops.

``get(name)`` returns the one object registered under a name (``registry.py``); ``names()``
lists them. ``market.py`` holds the market policies (spot, on-demand, fallback),
``deadline.py`` the deadline-oriented ones.

One interface for the controller (live) and the simulator (replayed traces): ``decide(ctx)``
returns a ``Decision``. The controller asks when an attempt has ended (``ctx.current`` is None);
the simulator asks at every tick of a trace, with ``ctx.current`` the placement running now, so
the same answer means "stay", another placement "switch", and ``Decision.idle`` "run nothing for
now". The fields after ``submitted_at`` are optional: a policy that needs them (the deadline-aware
ones) falls back to safe behaviour when they are unknown.
"""

from __future__ import annotations

from collections.abc import Mapping
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
    any_stats: PoolStats | None = None  # the same for "some spot placement has capacity", if known
    history: Mapping[Placement, PoolStats] | None = None  # live: the job store's past attempts per pool


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
    """One recovery policy. Registered once by name (``multispot.policy.registry``): the controller,
    the simulator, the dry-run plan and the job spec's allowed names all come from that one object.
    Its settings come from ``ctx.job`` at each decision, so one object serves every job."""

    name: str
    summary: str  # one line for ``--help`` and docs

    def markets(self, job: Job) -> tuple[str, ...]:
        """The markets this policy may buy for ``job``: the plan offers it only those."""
        ...

    def preview(self, candidates: list[Placement]) -> list[Placement]:
        """``candidates`` in the order this policy would try them (what a dry run shows)."""
        ...

    def decide(self, ctx: PolicyContext) -> Decision: ...


def preemptions(attempts: list[Attempt]) -> int:
    return sum(a.interruptions + (a.state is JobState.PREEMPTED) for a in attempts)


def within_budget(ctx: PolicyContext, decision: Decision) -> Decision:
    """``decision``, or a stop when running its placement for the next step would take the spend
    past ``limits.budget``: the one budget guard every policy applies."""
    budget = ctx.job.limits.budget
    if budget is None or decision.placement is None:
        return decision
    price = decision.placement.price_per_hour or 0.0
    step_cost = price * decision.placement.count * ctx.step / 3600.0
    if ctx.spent + step_cost > budget + 1e-9:
        return Decision(None, f"the budget of ${budget:g} would be exceeded (spent ${ctx.spent:.2f})")
    return decision


def absolute_deadline(job: Job, submitted_at: float) -> float | None:
    """The job's deadline as a unix time: an ISO time as given, a duration counted from submit."""
    deadline = job.limits.deadline
    if deadline is None:
        return None
    if isinstance(deadline, datetime):
        return deadline.timestamp()
    return submitted_at + float(deadline)


def get(name: str) -> Policy:
    """The policy registered as ``name`` (see ``multispot.policy.registry``)."""
    from multispot.policy.registry import get as _get

    return _get(name)


def names() -> tuple[str, ...]:
    from multispot.policy.registry import names as _names

    return _names()
