"""How often to checkpoint: Young's and Daly's first-order optimum.

With a save taking δ seconds and preemptions arriving every M seconds on average, checkpointing
every τ seconds costs δ/τ of the time in saves and, per preemption, about τ/2 of lost work. Young
(1974) minimises the sum at τ = √(2δM); Daly (2006) adds the higher-order terms:
τ = √(2δM)·(1 + ⅓√(δ/2M) + (1/9)(δ/2M)) − δ for δ < 2M, else τ = M.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from multispot.units import format_duration


def young(save_seconds: float, mtbp: float) -> float:
    return math.sqrt(2.0 * save_seconds * mtbp)


def daly(save_seconds: float, mtbp: float) -> float:
    if save_seconds >= 2.0 * mtbp:
        return mtbp
    ratio = save_seconds / (2.0 * mtbp)
    return young(save_seconds, mtbp) * (1.0 + math.sqrt(ratio) / 3.0 + ratio / 9.0) - save_seconds


def expected_overhead(interval: float, save_seconds: float, mtbp: float) -> float:
    """Fraction of time lost to saving plus re-doing work after preemptions, first order."""
    return save_seconds / interval + (interval + save_seconds) / (2.0 * mtbp)


@dataclass(frozen=True)
class IntervalAdvice:
    interval: float  # seconds, Daly's optimum
    young: float
    save_seconds: float
    mtbp: float  # mean time between preemptions, seconds
    overhead: float  # expected fraction lost at that interval
    save_source: str
    mtbp_source: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        return (
            f"checkpoint every {format_duration(self.interval)} (Daly; Young: {format_duration(self.young)}): "
            f"a save takes {self.save_seconds:.2f}s ({self.save_source}), preemptions come every "
            f"{format_duration(self.mtbp)} on average ({self.mtbp_source}); expected overhead {self.overhead:.1%}"
        )


def advise(
    save_seconds: float, mtbp: float, save_source: str = "given", mtbp_source: str = "given"
) -> IntervalAdvice:
    if save_seconds <= 0 or mtbp <= 0:
        raise ValueError("save time and time between preemptions must be positive")
    interval = daly(save_seconds, mtbp)
    return IntervalAdvice(
        interval=interval,
        young=young(save_seconds, mtbp),
        save_seconds=save_seconds,
        mtbp=mtbp,
        overhead=expected_overhead(interval, save_seconds, mtbp),
        save_source=save_source,
        mtbp_source=mtbp_source,
    )


def save_seconds_from(metadata: dict[str, Any]) -> tuple[float, str] | None:
    """The save time δ a checkpoint's manifest metadata implies, and where it came from.

    ``durable_seconds`` (written by the runtime: how long the save before this one took to become
    durable, manifest commit included) is preferred; ``write_seconds`` (how long this save's files
    took, without the commit) is the fallback for checkpoints written without the runtime or by
    older versions. The larger of the two when both are there: the advice must not undercount δ.
    """
    found = []
    for key in ("durable_seconds", "write_seconds"):
        value = metadata.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
            found.append((float(value), key))
    if not found:
        return None
    return max(found)


def mtbp_from_trace(data: list[int], gap_seconds: float) -> float | None:
    """Mean length of the stretches with capacity in a spot trace: how long an instance lives."""
    runs, current = [], 0
    for value in data:
        if value > 0:
            current += 1
        elif current:
            runs.append(current)
            current = 0
    if current:
        runs.append(current)
    if not runs or (len(runs) == 1 and runs[0] == len(data)):
        return None  # never preempted within the trace: no estimate
    return sum(runs) / len(runs) * gap_seconds
