"""The omniscient optimum: the cheapest schedule that meets the deadline, knowing the whole trace.

Exact for the simulator's discrete model (``multispot.simulation.Scenario``): time in ticks of the
trace, a restart overhead of whole ticks paid at every start or switch, progress in running
ticks, and, when preemptions lose work, progress falling back to the last checkpoint (a multiple
of the checkpoint period). A dynamic programme over ticks with the state (where the job runs:
nothing / pool o with k restart ticks still to pay, progress q) is solved forward, one numpy
vector over q per state, so a week of 32-second ticks with two pools takes about a second.
Several pools (spot per trace, on-demand) are just more states: the multi-pool optimum is exact
too. ``tests/unit/test_optimum.py`` checks it against brute force over every schedule.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from multispot.simulation import Scenario


@dataclass(frozen=True)
class Optimum:
    cost: float | None  # USD; None: no schedule meets the deadline
    finish_ticks: int | None  # when the cheapest schedule finishes (the earliest among equals)
    kind: str = "exact"


def optimum(scenario: Scenario) -> Optimum:
    import numpy as np

    work, horizon, d = scenario.work_ticks, scenario.deadline_ticks, scenario.overhead_ticks
    period = scenario.period_ticks
    options: list[tuple[float, list[bool] | None]] = [
        (scenario.tick_price(p), avail) for p, avail in zip(scenario.pools, scenario.avail, strict=True)
    ]
    options += [(scenario.tick_price(p), None) for p in scenario.on_demand]
    inf = np.inf
    size = work + 1
    # value[o][j]: cheapest cost of being on option o with j restart ticks still to pay (after
    # this tick), progress as the index; j == 0 means running. idle: running nothing.
    idle = np.full(size, inf)
    idle[0] = 0.0
    value = [[np.full(size, inf) for _ in range(max(d, 1))] for _ in options]
    best, best_at = inf, None
    if period is not None and period > 0:
        floor_index = (np.arange(size) // period) * period
    for t in range(horizon):
        # Preemptions at the start of tick t: spot options without capacity drop to idle.
        for o, (_, avail) in enumerate(options):
            if avail is None or avail[t]:
                continue
            for j in range(len(value[o])):
                source = value[o][j]
                if period is None:
                    idle = np.minimum(idle, source)
                else:
                    lost = np.full(size, inf)
                    np.minimum.at(lost, floor_index, source)
                    idle = np.minimum(idle, lost)
                value[o][j] = np.full(size, inf)
        anywhere = idle.copy()
        for o in range(len(options)):
            for j in range(len(value[o])):
                anywhere = np.minimum(anywhere, value[o][j])
        new_value = []
        for o, (price, avail) in enumerate(options):
            states = value[o]
            fresh = [np.full(size, inf) for _ in states]
            if avail is None or avail[t]:
                if d == 0:
                    running = np.minimum(states[0], anywhere)  # a start pays nothing
                    fresh[0][1:] = running[:-1] + price
                else:
                    # running: from running (progress +1) or from the last restart tick (no progress)
                    fresh[0][1:] = states[0][:-1] + price
                    if d > 1:
                        fresh[0] = np.minimum(fresh[0], states[1] + price)
                        for j in range(1, d - 1):
                            fresh[j] = states[j + 1] + price
                        fresh[d - 1] = anywhere + price  # a start: d - 1 restart ticks left after this one
                    else:
                        fresh[0] = np.minimum(fresh[0], anywhere + price)  # d == 1: the start is the restart
            done = fresh[0][work]
            if done < best:
                best, best_at = float(done), t + 1
            fresh[0][work] = inf  # finished: no further cost, no further state
            new_value.append(fresh)
        value = new_value
        idle = anywhere
        idle[work] = inf
    if best == inf:
        return Optimum(None, None)
    return Optimum(best, best_at)
