"""Synthetic spot traces from simple generative models, seeded: the out-of-sample stress set.

Nothing here is fitted to the shared traces. A pool is a two-state Markov chain at the tick: up
(capacity) for a geometric number of ticks with mean ``up`` seconds, then down with mean
``up·(1 - a)/a``, so the long-run availability is ``a``. The ``nodes`` variant is an 8-node pool
that has capacity only while all its nodes are up (each node its own chain, with the per-node
availability chosen so that all eight are up a fraction ``a`` of the time, and the same mean
up-time per node): short, frequent gaps, as multi-node training sees them.

``python bench/synthetic.py`` prints the grid it generates (availability, mean up, mean down,
measured availability of each generated trace).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

AVAILABILITIES = (0.1, 0.25, 0.5, 0.75, 0.9)
MEAN_UPS = (600.0, 3600.0, 4 * 3600.0, 10 * 3600.0)  # 10 min … 10 h


@dataclass(frozen=True)
class Model:
    availability: float  # long-run fraction of time with capacity
    mean_up: float  # seconds
    nodes: int = 1  # >1: capacity only while all nodes are up

    @property
    def label(self) -> str:
        kind = f"{self.nodes}-node" if self.nodes > 1 else "markov"
        return f"{kind} a={self.availability:g} up={self.mean_up / 3600:g}h"


def markov(n: int, tick: float, availability: float, mean_up: float, rng: random.Random) -> list[bool]:
    """``n`` ticks of a two-state chain with the given availability and mean up-time (seconds),
    started from its stationary distribution."""
    if not 0.0 < availability < 1.0:
        raise ValueError("availability is in (0, 1)")
    mean_down = mean_up * (1.0 - availability) / availability
    leave_up = min(1.0, tick / mean_up)  # per-tick probability of losing capacity
    leave_down = min(1.0, tick / mean_down)
    up = rng.random() < availability
    out = []
    for _ in range(n):
        out.append(up)
        if rng.random() < (leave_up if up else leave_down):
            up = not up
    return out


def generate(model: Model, n: int, tick: float, seed: int) -> list[int]:
    """``n`` ticks of ``model`` (instances with capacity per tick: 1 or 0), reproducible by ``seed``."""
    rng = random.Random(f"{model.label}/{seed}")
    if model.nodes == 1:
        return [int(x) for x in markov(n, tick, model.availability, model.mean_up, rng)]
    per_node = model.availability ** (1.0 / model.nodes)
    series = [markov(n, tick, per_node, model.mean_up, rng) for _ in range(model.nodes)]
    return [int(all(s[i] for s in series)) for i in range(n)]


def models(nodes: bool = True) -> list[Model]:
    grid = [Model(a, u) for a in AVAILABILITIES for u in MEAN_UPS]
    if nodes:
        grid += [Model(a, u, nodes=8) for a in (0.25, 0.5, 0.75) for u in (3600.0, 10 * 3600.0)]
    return grid


def main() -> None:
    tick, n = 60.0, 14 * 24 * 60
    for m in models():
        data = generate(m, n, tick, seed=0)
        runs = sum(1 for i, v in enumerate(data) if v and (i == 0 or not data[i - 1]))
        up = sum(data)
        print(
            f"{m.label:32} measured a={up / n:.2f} up={up * tick / 3600 / max(runs, 1):.2f}h "
            f"down={(n - up) * tick / 3600 / max(runs, 1):.2f}h"
        )


if __name__ == "__main__":
    main()
