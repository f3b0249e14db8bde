"""The market policies (spot, on-demand, fallback): which market and pool the next attempt gets, and when
the job stops."""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Any

import pytest

from multispot import policy
from multispot.job import Job
from multispot.policy import Decision, PolicyContext, absolute_deadline
from multispot.status import Attempt, JobState, Placement

SPOT_A = Placement("local", "spot", "a", "x", price_per_hour=1.0)
SPOT_B = Placement("local", "spot", "b", "x", price_per_hour=1.2)
ON_DEMAND = Placement("local", "on-demand", "a", "x", price_per_hour=3.0)


def job(**fields: Any) -> Job:
    return Job.validate_data({"name": "p", "command": "python -c pass", **fields})


def ended(n: int, placement: Placement, state: JobState, interruptions: int = 0) -> Attempt:
    return Attempt("j", n, placement, state, interruptions=interruptions, ended=time.time() - 100)


def decide(
    job: Job, attempts: list[Attempt], candidates: list[Placement] | None = None, now: float | None = None
) -> Decision:
    ctx = PolicyContext(
        job, attempts, candidates or [SPOT_A, SPOT_B, ON_DEMAND], now or time.time(), time.time()
    )
    return policy.get(job.spot.policy).decide(ctx)


def test_first_attempt_takes_the_first_spot_pool() -> None:
    assert decide(job(), []).placement == SPOT_A


def test_on_demand_policy_never_buys_spot() -> None:
    assert decide(job(spot="on-demand"), []).placement == ON_DEMAND


def test_moves_away_from_the_pool_that_was_just_preempted() -> None:
    assert decide(job(), [ended(1, SPOT_A, JobState.PREEMPTED)]).placement == SPOT_B
    assert decide(job(), [ended(1, SPOT_B, JobState.PREEMPTED)]).placement == SPOT_A  # wraps around


def test_fallback_after_n_preemptions_counts_service_interruptions_too() -> None:
    spec = job(spot={"policy": "fallback", "fallback_after": 3})
    two = [ended(1, SPOT_A, JobState.PREEMPTED), ended(2, SPOT_B, JobState.PREEMPTED)]
    assert decide(spec, two).placement.market == "spot"  # type: ignore[union-attr]
    three = [*two, ended(3, SPOT_A, JobState.PREEMPTED)]
    assert decide(spec, three).placement == ON_DEMAND
    absorbed = [ended(1, SPOT_A, JobState.PREEMPTED, interruptions=2)]
    assert decide(spec, absorbed).placement == ON_DEMAND


def test_fallback_on_no_capacity_is_immediate_but_spot_only_backs_off() -> None:
    no_cap = [ended(1, SPOT_A, JobState.NO_CAPACITY)]
    fallback = decide(job(spot="fallback"), no_cap)
    assert fallback.placement == ON_DEMAND and fallback.delay == 0
    spot_only = decide(job(spot="spot"), no_cap)
    assert spot_only.placement == SPOT_B and spot_only.delay > 0


def test_gives_up_after_max_attempts() -> None:
    attempts = [ended(n, SPOT_A, JobState.PREEMPTED) for n in (1, 2)]
    decision = decide(job(spot={"max_attempts": 2}), attempts)
    assert decision.placement is None and decision.final_state is JobState.FAILED
    assert "max_attempts" in decision.reason


def test_max_price_filters_pools() -> None:
    assert decide(job(limits={"max_price": 1.1}), []).placement == SPOT_A
    assert decide(job(limits={"max_price": 1.1}), [ended(1, SPOT_A, JobState.PREEMPTED)]).placement == SPOT_A
    decision = decide(job(limits={"max_price": 0.5}), [])
    assert decision.placement is None and "max_price" in decision.reason


def test_deadline_passed_stops_as_timed_out() -> None:
    decision = decide(job(limits={"deadline": "1h"}), [], now=time.time() + 3601)
    assert decision.placement is None and decision.final_state is JobState.TIMED_OUT
    assert decide(job(limits={"deadline": "1h"}), [], now=time.time() + 60).placement == SPOT_A


@pytest.mark.parametrize("deadline", ["2h", 7200])
def test_absolute_deadline_from_duration(deadline: str | int) -> None:
    assert absolute_deadline(job(limits={"deadline": deadline}), 1000.0) == 8200.0


def test_absolute_deadline_from_iso_time() -> None:
    when = datetime(2030, 1, 1, tzinfo=timezone.utc)
    spec = job(limits={"deadline": when.isoformat()})
    assert absolute_deadline(spec, 0.0) == when.timestamp()
    assert absolute_deadline(job(), 0.0) is None
