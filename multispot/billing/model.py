"""What a job cost: one :class:`CostLine` per attempt, one :class:`CostReport` per job, and the
billing API's :class:`MeasuredCost` where one was asked for (see the package docstring)."""

from __future__ import annotations

import html
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, runtime_checkable

from multispot.billing.render import html_report, usd
from multispot.status import Attempt, iso_time
from multispot.units import format_duration


@dataclass(frozen=True)
class MeasuredCost:
    """What a provider's billing API says a job cost: a measured figure, not an estimate."""

    amount: float  # USD, credits and discounts applied as the source reports them
    source: str  # e.g. "AWS Cost Explorer, tag multispot-job-id=abc, UnblendedCost"
    start: str  # ISO dates (inclusive start, exclusive end) the figure covers
    end: str
    per_attempt: dict[int, float] = field(default_factory=dict)  # when the source can split it

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@runtime_checkable
class BillingSource(Protocol):
    """Optional provider method: the billed cost of a job's attempts from the cloud's billing API.

    Returns None when the source is not configured (no tag activated, no billing export), so
    the report falls back to the estimate and says so. Never called by tests against a real cloud.
    """

    def measured_cost(self, job_id: str, attempts: list[Attempt]) -> MeasuredCost | None: ...


# ----------------------------------------------------------------------------- one attempt


@dataclass(frozen=True)
class CostLine:
    """One attempt: what it ran on, what it was billed, at which price and why."""

    attempt: int
    provider: str
    market: str
    instance_type: str | None
    count: int
    outcome: str | None
    billable_seconds: float  # per instance, as the provider bills it
    lost_seconds: float  # work redone by the next attempt (wall time since the last checkpoint)
    price_per_hour: float | None  # the rate applied to billable time, per instance
    cost: float | None
    region: str | None = None
    runtime_seconds: float = 0.0  # wall time the attempt ran (compute done), per instance
    price_source: str = ""
    on_demand_price_per_hour: float | None = None  # the same instance on demand (counterfactual)
    on_demand_source: str = ""
    checkpoint_seconds: float = 0.0  # blocking save time of this attempt's checkpoints
    checkpoints: int = 0  # how many saves that time covers
    measured_cost: float | None = None  # this attempt's billed figure, when the source splits it
    started: float | None = None
    ended: float | None = None
    usage_source: str = ""

    @property
    def instance_seconds(self) -> float:
        return self.billable_seconds * self.count

    @property
    def compute_seconds(self) -> float:
        """Per instance: the time the attempt computed (the runtime; the billable time if none)."""
        return self.runtime_seconds if self.runtime_seconds > 0 else self.billable_seconds

    @property
    def useful_seconds(self) -> float:
        """Per instance: compute time that was not redone."""
        return max(0.0, self.compute_seconds - self.lost_seconds)

    @property
    def counterfactual(self) -> float | None:
        """The useful work of this attempt on on-demand capacity of the same instance."""
        if self.useful_seconds == 0:
            return 0.0
        if self.on_demand_price_per_hour is None:
            return None
        return self.useful_seconds * self.count / 3600.0 * self.on_demand_price_per_hour

    def _share(self, seconds: float) -> float | None:
        """The cost of ``seconds`` of this attempt's compute (billing may compress time, e.g. SageMaker)."""
        if self.cost is None:
            return None
        if self.compute_seconds <= 0:
            return 0.0
        return self.cost * min(1.0, seconds / self.compute_seconds)

    @property
    def lost_cost(self) -> float | None:
        return self._share(self.lost_seconds) if self.lost_seconds else 0.0

    @property
    def checkpoint_cost(self) -> float | None:
        return self._share(self.checkpoint_seconds) if self.checkpoint_seconds else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "started": iso_time(self.started),
            "ended": iso_time(self.ended),
            "instance_seconds": self.instance_seconds,
            "useful_seconds": self.useful_seconds,
            "cost_basis": "estimated",
            "counterfactual_usd": self.counterfactual,
            "lost_work_usd": self.lost_cost,
            "checkpointing_usd": self.checkpoint_cost,
        }


# ----------------------------------------------------------------------------- one job


def _sum(values: list[float | None]) -> float | None:
    return None if any(v is None for v in values) else float(sum(v for v in values if v is not None))


@dataclass(frozen=True)
class CostReport:
    """A job's cost: per attempt, and actual vs the on-demand counterfactual; measured where possible."""

    job_id: str
    lines: list[CostLine]
    on_demand_price_per_hour: float | None = None  # the fallback on-demand price, when one was given
    notes: list[str] = field(default_factory=list)
    measured: dict[str, MeasuredCost] = field(default_factory=dict)  # provider -> billed figure
    name: str = ""

    HEADERS = (
        "attempt",
        "provider",
        "region",
        "instance",
        "market",
        "outcome",
        "runtime",
        "billed",
        "lost",
        "price",
        "price source",
        "on-demand",
        "cost",
    )

    # -- totals
    @property
    def billable_seconds(self) -> float:
        return sum(line.instance_seconds for line in self.lines)

    @property
    def lost_seconds(self) -> float:
        return sum(line.lost_seconds * line.count for line in self.lines)

    @property
    def checkpoint_seconds(self) -> float:
        return sum(line.checkpoint_seconds * line.count for line in self.lines)

    @property
    def estimated(self) -> float | None:
        """The sum of the attempts' estimated costs."""
        return _sum([line.cost for line in self.lines])

    @property
    def actual_basis(self) -> str:
        """``measured``, ``partly measured`` (some providers of the job) or ``estimated``."""
        if not self.measured:
            return "estimated"
        billed = {line.provider for line in self.lines}
        return "measured" if billed <= set(self.measured) else "partly measured"

    @property
    def actual(self) -> float | None:
        """The measured figure where a billing source gave one, the estimate elsewhere."""
        if not self.measured:
            return self.estimated
        rest = [line.cost for line in self.lines if line.provider not in self.measured]
        estimated = _sum(rest)
        return None if estimated is None else sum(m.amount for m in self.measured.values()) + estimated

    @property
    def on_demand(self) -> float | None:
        """The on-demand counterfactual: the useful work at on-demand prices (always estimated)."""
        return _sum([line.counterfactual for line in self.lines])

    @property
    def savings(self) -> float | None:
        actual, on_demand = self.actual, self.on_demand
        return None if actual is None or on_demand is None else on_demand - actual

    @property
    def savings_fraction(self) -> float | None:
        savings, on_demand = self.savings, self.on_demand
        return None if savings is None or not on_demand else savings / on_demand

    @property
    def lost_cost(self) -> float | None:
        return _sum([line.lost_cost for line in self.lines])

    @property
    def checkpoint_cost(self) -> float | None:
        return _sum([line.checkpoint_cost for line in self.lines])

    def figures(self) -> dict[str, str]:
        """Which figure is measured and which estimated, with the measured source and period."""
        if self.measured:
            sources = "; ".join(
                f"{p}: {m.source}, {m.start}..{m.end} (${m.amount:,.4f})"
                for p, m in sorted(self.measured.items())
            )
            actual = f"{self.actual_basis} ({sources})"
        else:
            actual = "estimated (billable time × price per attempt)"
        return {
            "actual_usd": actual,
            "on_demand_usd": "estimated (useful compute time × catalog on-demand price)",
            "savings_usd": "measured actual vs estimated counterfactual"
            if self.actual_basis == "measured"
            else "estimated",
            "lost_work_usd": "estimated",
            "checkpointing_usd": "estimated (manifests' write_seconds × price)",
        }

    # -- output
    def to_dict(self) -> dict[str, Any]:
        fraction = self.savings_fraction
        return {
            "job_id": self.job_id,
            "name": self.name,
            "attempts": [line.to_dict() for line in self.lines],
            "billable_instance_seconds": self.billable_seconds,
            "lost_instance_seconds": self.lost_seconds,
            "checkpoint_instance_seconds": self.checkpoint_seconds,
            "actual_usd": self.actual,
            "actual_basis": self.actual_basis,
            "estimated_usd": self.estimated,
            "measured": {p: m.to_dict() for p, m in sorted(self.measured.items())} or None,
            "on_demand_usd": self.on_demand,
            "savings_usd": self.savings,
            "savings_fraction": fraction,
            "savings_percent": None if fraction is None else round(100 * fraction, 2),
            "lost_work_usd": self.lost_cost,
            "checkpointing_usd": self.checkpoint_cost,
            "figures": self.figures(),
            "notes": self.notes,
        }

    def headers(self) -> tuple[str, ...]:
        return (*self.HEADERS, "measured") if self._per_attempt_measured() else self.HEADERS

    def _per_attempt_measured(self) -> bool:
        return any(line.measured_cost is not None for line in self.lines)

    def rows(self) -> list[list[str]]:
        out = []
        for line in self.lines:
            row = [
                str(line.attempt),
                line.provider,
                line.region or "-",
                (line.instance_type or "-") + (f" ×{line.count}" if line.count != 1 else ""),
                line.market,
                line.outcome or "running",
                format_duration(line.runtime_seconds),
                format_duration(line.billable_seconds),
                format_duration(line.lost_seconds),
                usd(line.price_per_hour, "/h"),
                line.price_source or "-",
                usd(line.counterfactual),
                usd(line.cost),
            ]
            if self._per_attempt_measured():
                row.append(usd(line.measured_cost))
            out.append(row)
        return out

    def summary(self) -> str:
        basis = self.actual_basis
        parts = [
            f"actual {usd(self.actual)} ({basis})",
            f"on-demand {usd(self.on_demand)} (estimated)",
        ]
        if self.savings is not None and self.savings_fraction is not None:
            parts.append(f"saved {usd(self.savings)} ({self.savings_fraction:.0%})")
        elif self.savings is not None:
            parts.append(f"saved {usd(self.savings)}")
        parts.append(f"lost work {usd(self.lost_cost)}")
        parts.append(f"checkpointing {usd(self.checkpoint_cost)}")
        if self.measured:
            parts.append(f"estimate was {usd(self.estimated)}")
        return ", ".join(parts)

    def details(self) -> list[str]:
        """What is measured and what estimated, then the notes."""
        lines = []
        for provider, m in sorted(self.measured.items()):
            lines.append(f"measured ({provider}): ${m.amount:,.4f} from {m.source}, {m.start} to {m.end}")
        if not self.measured:
            lines.append(
                "every figure is estimated (billable time × price); `--measured` asks the billing APIs"
            )
        return lines + self.notes

    def __repr__(self) -> str:
        return f"CostReport({self.job_id!r}: {self.summary()})"

    def _repr_html_(self) -> str:
        title = f"<b>Cost of {html.escape(self.job_id)}</b>: {html.escape(self.summary())}"
        return html_report(title, self.headers(), self.rows(), self.details())

    def plot(self, ax: Any = None) -> Any:
        """Cumulative actual cost vs the on-demand counterfactual, attempt by attempt (matplotlib Axes)."""
        from multispot.billing.plots import cumulative

        return cumulative(
            self.lines,
            f"{self.job_id}: {self.summary().split(', lost')[0]}",
            ax,
            timed=all(line.ended or line.started for line in self.lines),
            from_zero=True,
            measured=self.measured.values(),
        )
