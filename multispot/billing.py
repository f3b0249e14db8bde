"""Usage → CostReport: what was billed, the on-demand counterfactual, and the savings.

The counterfactual is what the same useful work would have cost on on-demand capacity: the
billable time of every attempt minus the work lost to preemptions (time since the attempt's
last committed checkpoint), at the on-demand price of the same instance.
"""

from __future__ import annotations

import html
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, runtime_checkable

from multispot.status import Attempt, JobState
from multispot.units import format_duration


@dataclass(frozen=True)
class MeasuredCost:
    """What a provider's billing API says a job cost: a measured figure, not an estimate."""

    amount: float  # USD, credits and discounts applied as the source reports them
    source: str  # e.g. "AWS Cost Explorer, tag multispot-job-id=abc, UnblendedCost"
    start: str  # ISO dates (inclusive start, exclusive end) the figure covers
    end: str
    per_attempt: dict[int, float] = field(default_factory=dict)  # when the source can split it


@runtime_checkable
class BillingSource(Protocol):
    """Optional provider method: the billed cost of a job's attempts from the cloud's billing API.

    Returns None when the source is not configured (no tag activated, no billing export), so
    the report falls back to the estimate and says so. Never called by tests against a real cloud.
    """

    def measured_cost(self, job_id: str, attempts: list[Attempt]) -> MeasuredCost | None: ...


@dataclass(frozen=True)
class CostLine:
    attempt: int
    provider: str
    market: str
    instance_type: str | None
    count: int
    outcome: str | None
    billable_seconds: float
    lost_seconds: float  # work redone by the next attempt
    price_per_hour: float | None
    cost: float | None

    @property
    def instance_seconds(self) -> float:
        return self.billable_seconds * self.count


@dataclass(frozen=True)
class CostReport:
    job_id: str
    lines: list[CostLine]
    on_demand_price_per_hour: float | None
    notes: list[str] = field(default_factory=list)

    @property
    def billable_seconds(self) -> float:
        return sum(line.instance_seconds for line in self.lines)

    @property
    def lost_seconds(self) -> float:
        return sum(line.lost_seconds * line.count for line in self.lines)

    @property
    def actual(self) -> float | None:
        costs = [line.cost for line in self.lines]
        return None if any(c is None for c in costs) else sum(c for c in costs if c is not None)

    @property
    def on_demand(self) -> float | None:
        if self.on_demand_price_per_hour is None:
            return None
        useful = self.billable_seconds - self.lost_seconds
        return max(0.0, useful) / 3600.0 * self.on_demand_price_per_hour

    @property
    def savings(self) -> float | None:
        actual, on_demand = self.actual, self.on_demand
        return None if actual is None or on_demand is None else on_demand - actual

    @property
    def savings_fraction(self) -> float | None:
        savings, on_demand = self.savings, self.on_demand
        return None if savings is None or not on_demand else savings / on_demand

    def to_dict(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "attempts": [asdict(line) for line in self.lines],
            "billable_instance_seconds": self.billable_seconds,
            "lost_instance_seconds": self.lost_seconds,
            "actual_usd": self.actual,
            "on_demand_usd": self.on_demand,
            "savings_usd": self.savings,
            "savings_fraction": self.savings_fraction,
            "notes": self.notes,
        }

    def rows(self) -> list[list[str]]:
        return [
            [
                str(line.attempt),
                line.provider,
                line.market,
                line.instance_type or "-",
                line.outcome or "running",
                format_duration(line.billable_seconds),
                format_duration(line.lost_seconds),
                _usd(line.price_per_hour, "/h"),
                _usd(line.cost),
            ]
            for line in self.lines
        ]

    HEADERS = ("attempt", "provider", "market", "instance", "outcome", "billed", "lost", "price", "cost")

    def summary(self) -> str:
        parts = [f"actual {_usd(self.actual)}", f"on-demand {_usd(self.on_demand)}"]
        if self.savings is not None and self.savings_fraction is not None:
            parts.append(f"saved {_usd(self.savings)} ({self.savings_fraction:.0%})")
        return ", ".join(parts)

    def __repr__(self) -> str:
        return f"CostReport({self.job_id!r}: {self.summary()})"

    def _repr_html_(self) -> str:
        head = "".join(f"<th>{h}</th>" for h in self.HEADERS)
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in self.rows()
        )
        notes = "".join(f"<li>{html.escape(n)}</li>" for n in self.notes)
        return (
            f"<b>Cost of {html.escape(self.job_id)}</b>: {html.escape(self.summary())}"
            f"<table><tr>{head}</tr>{body}</table>" + (f"<ul>{notes}</ul>" if notes else "")
        )


def _usd(value: float | None, suffix: str = "") -> str:
    return "n/a" if value is None else f"${value:,.4f}{suffix}"


def cost_report(
    job_id: str,
    attempts: list[Attempt],
    on_demand_price_per_hour: float | None,
    checkpoint_times: dict[int, float] | None = None,
) -> CostReport:
    """``checkpoint_times``: attempt number → unix time of the last checkpoint that attempt committed."""
    checkpoint_times = checkpoint_times or {}
    lines, notes = [], []
    for attempt in attempts:
        usage = attempt.usage
        billable = usage.billable_seconds if usage else 0.0
        lost = 0.0
        if attempt.state is JobState.PREEMPTED and attempt.ended and attempt.started:
            last = checkpoint_times.get(attempt.n, attempt.started)
            lost = min(billable, max(0.0, attempt.ended - max(last, attempt.started)))
        price = attempt.placement.price_per_hour
        lines.append(
            CostLine(
                attempt=attempt.n,
                provider=attempt.placement.provider,
                market=attempt.placement.market,
                instance_type=usage.instance_type if usage else attempt.placement.instance_type,
                count=usage.count if usage else attempt.placement.count,
                outcome=attempt.outcome,
                billable_seconds=billable,
                lost_seconds=lost,
                price_per_hour=price,
                cost=None if price is None else billable * (usage.count if usage else 1) / 3600.0 * price,
            )
        )
    if any(line.price_per_hour is None for line in lines) or on_demand_price_per_hour is None:
        notes.append("some prices are unknown for this provider/instance: costs show n/a")
    return CostReport(job_id, lines, on_demand_price_per_hour, notes)
