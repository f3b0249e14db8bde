"""The DP optimum equals the cheapest schedule found by brute force over every schedule."""

from __future__ import annotations

import itertools
import random

import pytest

from multispot.job import Job
from multispot.policy import Decision, PolicyContext
from multispot.policy.optimum import optimum
from multispot.simulation import Scenario, run_policy
from multispot.status import Placement

JOB = Job.validate_data({"name": "opt", "command": "python -c pass"})


class Script:
    """Plays a fixed schedule: one choice (a placement, or None for idle) per tick."""

    name = "script"

    def __init__(self, plan: tuple[Placement | None, ...]) -> None:
        self.plan = plan

    def decide(self, ctx: PolicyContext) -> Decision:
        tick = round(ctx.now / ctx.step)
        choice = self.plan[tick] if tick < len(self.plan) else None
        return Decision(choice, "scripted", idle=choice is None)


def scenario(avail: list[list[bool]], work: int, deadline: int, d: int, period: int | None) -> Scenario:
    pools = [
        Placement("p", "spot", f"r{i}", price_per_hour=60.0 * (0.3 + 0.1 * i)) for i in range(len(avail))
    ]
    return Scenario(
        tick=60.0,
        pools=pools,
        avail=[a[:deadline] for a in avail],
        on_demand=[Placement("p", "on-demand", "r0", price_per_hour=60.0)],
        work_ticks=work,
        deadline_ticks=deadline,
        overhead_ticks=d,
        period_ticks=period,
        history=[(0.0, 0.0, 0, 0, None) for _ in avail],
        extra_ticks=[[False] * 20 for _ in avail],
    )


def brute_force(sc: Scenario) -> float | None:
    choices: list[Placement | None] = [None, *sc.pools, *sc.on_demand]
    best = None
    for plan in itertools.product(choices, repeat=sc.deadline_ticks):
        outcome = run_policy(sc, Script(plan), JOB)
        if outcome.deadline_met and (best is None or outcome.cost < best - 1e-9):
            best = outcome.cost
    return best


CASES = [
    # (pools, work, deadline, overhead ticks, checkpoint period or None, seed)
    (1, 3, 7, 1, None, 1),
    (1, 3, 7, 2, None, 2),
    (1, 4, 7, 0, None, 3),
    (1, 3, 7, 1, 2, 4),  # preemptions lose work back to the last checkpoint
    (1, 5, 7, 1, None, 5),  # tight: on-demand nearly all the way
    (2, 3, 6, 1, None, 6),
    (2, 2, 6, 1, 1, 7),
    (1, 7, 7, 1, None, 8),  # infeasible: work + restart > deadline
    (3, 2, 5, 1, None, 9),  # three spot pools at three prices, and on-demand
]


@pytest.mark.slow
@pytest.mark.parametrize(("pools", "work", "deadline", "d", "period", "seed"), CASES)
def test_dp_matches_brute_force(
    pools: int, work: int, deadline: int, d: int, period: int | None, seed: int
) -> None:
    rng = random.Random(seed)
    avail = [[rng.random() < 0.6 for _ in range(deadline)] for _ in range(pools)]
    sc = scenario(avail, work, deadline, d, period)
    expected = brute_force(sc)
    got = optimum(sc).cost
    if expected is None:
        assert got is None
    else:
        assert got is not None and got == pytest.approx(expected)


def test_optimum_prefers_spot_and_fills_the_gap_on_demand() -> None:
    # spot up, down 2 ticks, up: with work 5 in 7 ticks and d=1 the optimum idles nothing it can't afford
    sc = scenario([[True, True, False, False, True, True, True]], work=4, deadline=7, d=1, period=None)
    result = optimum(sc)
    # spot: tick 0 restart + 1 work, ticks 4-6: restart + 2 work = 3 work -> 1 short; on-demand must
    # fill a gap: restart + 1 work in ticks 2-3. Cost: 5 spot ticks at 0.3 + 2 on-demand ticks at 1.
    assert result.cost == pytest.approx(5 * 0.3 + 2 * 1.0)
