"""A small, fast version of the out-of-sample acceptance check (``bench/stress.py`` is the full one).

Synthetic pools from a two-state Markov chain (seeded; nothing fitted), a few availabilities and
up-times, tight and loose deadlines, one and two pools: ``deadline-aware`` misses no deadline,
stays within a bound of the exact optimum and is never worse than greedy by more than 2 %.
"""

from __future__ import annotations

import random

import pytest

from multispot.job import Job
from multispot.policy import get
from multispot.policy.optimum import optimum
from multispot.simulation import Trace, build_scenario, run_policy

JOB = Job.validate_data({"name": "stress", "command": "python -c pass"})
TICK, H = 180.0, 3600.0
HISTORY = 2 * 86400.0


def markov(n: int, availability: float, mean_up: float, seed: int) -> tuple[int, ...]:
    rng = random.Random(seed)
    mean_down = mean_up * (1 - availability) / availability
    up, out = rng.random() < availability, []
    for _ in range(n):
        out.append(int(up))
        if rng.random() < TICK / (mean_up if up else mean_down):
            up = not up
    return tuple(out)


# (pools as (availability, mean up-time h), work h, slack) — chosen before looking at any result
CASES = [
    ([(0.25, 4.0)], 8.0, 1.3),
    ([(0.5, 1.0)], 8.0, 2.0),
    ([(0.75, 10.0)], 8.0, 1.3),
    ([(0.9, 1.0)], 8.0, 1.3),
    ([(0.5, 4.0)], 8.0, 1.6),
    ([(0.25, 1.0), (0.5, 4.0)], 8.0, 1.3),
]


@pytest.mark.parametrize(("pools", "work", "slack"), CASES)
@pytest.mark.parametrize("seed", [1, 2])
def test_deadline_aware_out_of_sample(
    pools: list[tuple[float, float]], work: float, slack: float, seed: int
) -> None:
    n = int((HISTORY + work * slack * H + 86400) // TICK)
    traces = [Trace(f"p{i}", TICK, markov(n, a, up * H, seed * 100 + i)) for i, (a, up) in enumerate(pools)]
    sc, _ = build_scenario(
        JOB,
        traces,
        work * slack * H,
        work * H,
        restart_overhead=180.0,
        start=int(HISTORY // TICK),
        spot_prices=[0.918 * (1 - 0.15 * i) for i in range(len(pools))],
        on_demand_price=3.06,
    )
    best = optimum(sc).cost
    assert best is not None
    da = run_policy(sc, get("deadline-aware"), JOB)
    greedy = run_policy(sc, get("greedy"), JOB)
    assert da.deadline_met and da.min_slack_hours is not None and da.min_slack_hours >= 0
    assert da.cost <= 1.25 * best
    assert da.cost <= 1.02 * greedy.cost
