"""Usage → CostReport: what each attempt was billed, the on-demand counterfactual, and the savings.

Per attempt (one :class:`CostLine`): the billable time as the provider reports it, the price that
applies to it and where that price came from, and the cost. Per job (:class:`CostReport`):

- **actual**: the sum of the attempts' costs (estimated), or the provider's billing API figure
  when ``measured`` was asked for and the source is configured (measured);
- **on-demand counterfactual**: the same useful work on on-demand capacity of the same instance —
  each attempt's compute time minus the work lost to its preemption, at the on-demand price;
- **savings**: counterfactual − actual, in money and as a fraction of the counterfactual;
- **lost work**: the share of each preempted attempt's cost spent after its last checkpoint;
- **checkpointing**: the blocking save time recorded in the checkpoints' manifests
  (``write_seconds``) at the attempt's price.

Prices: the catalog's offer for the instance (``load_catalog().lookup``), else the placement's
price recorded at submission (for the local provider: ``provider_options.local.price_per_hour``).
Which rate applies to billable time is a per-provider rule kept in one place,
:data:`BILLED_AT_ON_DEMAND`: SageMaker managed spot bills ``BillableTimeInSeconds`` (already
reduced by the spot discount) at the on-demand rate.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timezone
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from multispot.errors import MissingExtra, MultispotError
from multispot.status import Attempt, JobState, iso_time
from multispot.units import format_duration, parse_duration

if TYPE_CHECKING:
    from multispot.catalog import Catalog, Offer
    from multispot.store import JobRecord, JobStore

# Providers whose spot/low-priority billable time is charged at the on-demand rate: the discount is
# already in the billable time they report. SageMaker managed spot training reports
# BillableTimeInSeconds < TrainingTimeInSeconds and bills it at the instance's on-demand price.
BILLED_AT_ON_DEMAND: frozenset[str] = frozenset({"sagemaker"})

# How each provider's billable time is counted, shown in the reports' notes.
BILLING_RULES: dict[str, str] = {
    "sagemaker": "SageMaker bills BillableTimeInSeconds × instance count at the on-demand rate; "
    "for managed spot the discount is the billable time being shorter than the training time",
    "vertex": "Vertex AI bills running time at the machine's and accelerators' spot or on-demand "
    "rates; queued and preempted time is not billed",
    "azureml": "Azure ML bills node-hours (start to end × node count) at the VM size's "
    "low-priority/spot or dedicated rate; queueing is not billed",
    "local": "the local provider bills nothing: costs are modelled with "
    "provider_options.local.price_per_hour",
}

PLOT_HINT = "pip install 'multispot[plot]'"


class MissingPlotExtra(MissingExtra):
    """``plot()`` needs matplotlib, which is the optional ``plot`` extra."""


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
                _usd(line.price_per_hour, "/h"),
                line.price_source or "-",
                _usd(line.counterfactual),
                _usd(line.cost),
            ]
            if self._per_attempt_measured():
                row.append(_usd(line.measured_cost))
            out.append(row)
        return out

    def summary(self) -> str:
        basis = self.actual_basis
        parts = [
            f"actual {_usd(self.actual)} ({basis})",
            f"on-demand {_usd(self.on_demand)} (estimated)",
        ]
        if self.savings is not None and self.savings_fraction is not None:
            parts.append(f"saved {_usd(self.savings)} ({self.savings_fraction:.0%})")
        elif self.savings is not None:
            parts.append(f"saved {_usd(self.savings)}")
        parts.append(f"lost work {_usd(self.lost_cost)}")
        parts.append(f"checkpointing {_usd(self.checkpoint_cost)}")
        if self.measured:
            parts.append(f"estimate was {_usd(self.estimated)}")
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
        return title + _html_table(self.headers(), self.rows()) + _html_list(self.details())

    def plot(self, ax: Any = None) -> Any:
        """Cumulative actual cost vs the on-demand counterfactual, attempt by attempt (matplotlib Axes)."""
        plt = _pyplot()
        if ax is None:
            _, ax = plt.subplots(figsize=(7, 3.5))
        xs: list[Any] = []
        actual: list[float] = []
        counter: list[float] = []
        a = c = 0.0
        timed = all(line.ended or line.started for line in self.lines)
        first = self.lines[0] if self.lines else None
        if first is not None:
            xs.append(_x(first.started or first.ended, 0, timed))
            actual.append(0.0)
            counter.append(0.0)
        for i, line in enumerate(self.lines, start=1):
            a += line.cost or 0.0
            c += line.counterfactual or 0.0
            xs.append(_x(line.ended or line.started, i, timed))
            actual.append(a)
            counter.append(c)
        ax.step(xs, counter, where="post", label="on-demand counterfactual", color="tab:gray")
        ax.step(xs, actual, where="post", label="actual (estimated)", color="tab:green")
        for m in self.measured.values():
            ax.axhline(m.amount, linestyle="--", color="tab:blue", label=f"measured ({m.start}..{m.end})")
        ax.set_ylabel("USD, cumulative")
        ax.set_xlabel("time" if timed else "attempt")
        ax.set_title(f"{self.job_id}: {self.summary().split(', lost')[0]}")
        ax.legend(loc="upper left")
        return ax


def _x(stamp: float | None, index: int, timed: bool) -> Any:
    if timed and stamp is not None:
        return datetime.fromtimestamp(stamp, tz=timezone.utc)
    return index


def _pyplot() -> Any:
    try:
        import matplotlib

        if not _interactive():
            matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise MissingPlotExtra(f"plotting needs matplotlib: {PLOT_HINT}") from exc
    return plt


def _interactive() -> bool:
    """Inside IPython/Jupyter (keep its inline backend) or with a display to draw on."""
    import os
    import sys

    return "IPython" in sys.modules or bool(os.environ.get("DISPLAY") or os.environ.get("MPLBACKEND"))


def _usd(value: float | None, suffix: str = "") -> str:
    return "n/a" if value is None else f"${value:,.4f}{suffix}"


def _html_table(headers: tuple[str, ...], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _html_list(items: list[str]) -> str:
    return "<ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in items) + "</ul>" if items else ""


# ----------------------------------------------------------------------------- prices


OnDemandPrices = float | Mapping[tuple[str, str | None], float] | None


@dataclass(frozen=True)
class _Prices:
    rate: float | None  # applied to billable time
    rate_source: str
    on_demand: float | None
    on_demand_source: str


def _offer(
    catalog: Catalog | None, provider: str, instance: str | None, region: str | None, accelerator: str | None
) -> Offer | None:
    if catalog is None or not instance:
        return None
    for acc in (accelerator, None) if accelerator else (None,):
        try:
            offer = catalog.lookup(provider, instance, region, acc)
        except ValueError:
            continue
        if offer is not None:
            return offer
    return None


def attempt_prices(
    attempt: Attempt,
    catalog: Catalog | None = None,
    accelerator: str | None = None,
    on_demand_fallback: OnDemandPrices = None,
) -> _Prices:
    """The rate for the attempt's billable time and the on-demand rate of the same instance, with sources."""
    placement, usage = attempt.placement, attempt.usage
    provider = placement.provider
    # what was submitted; the provider's report where the placement left it open (a named cluster)
    instance = placement.instance_type or (usage.instance_type if usage else None)
    region = (usage.region if usage else None) or placement.region
    market = usage.market if usage else placement.market
    offer = _offer(catalog, provider, instance, region, accelerator)

    on_demand, od_source = None, "unknown"
    if offer is not None and offer.on_demand is not None:
        on_demand = offer.on_demand
        od_source = f"catalog {offer.region} {offer.price_date}".strip()
    elif market == "on-demand" and placement.market == "on-demand" and placement.price_per_hour is not None:
        on_demand, od_source = placement.price_per_hour, _placement_source(provider)
    elif isinstance(on_demand_fallback, (int, float)):
        on_demand, od_source = float(on_demand_fallback), "given"
    elif isinstance(on_demand_fallback, Mapping):
        found = on_demand_fallback.get((provider, instance))
        if found is None and usage is not None:
            found = on_demand_fallback.get((provider, usage.instance_type))
        if found is not None:
            on_demand, od_source = float(found), _placement_source(provider, "on-demand placement")

    if market == "spot" and provider in BILLED_AT_ON_DEMAND:
        # never the (estimated) spot price: the discount is already in the billable time
        return _Prices(
            on_demand,
            f"{od_source}, on-demand rate" if on_demand is not None else "unknown",
            on_demand,
            od_source,
        )
    if offer is not None and market in ("spot", "on-demand") and offer.price(market) is not None:
        estimated = " (est.)" if market == "spot" and offer.spot_estimated else ""
        return _Prices(
            offer.price(market),
            f"catalog {offer.region} {offer.price_date}{estimated}".strip(),
            on_demand,
            od_source,
        )
    if placement.price_per_hour is not None and placement.market == market:
        return _Prices(placement.price_per_hour, _placement_source(provider), on_demand, od_source)
    return _Prices(None, "unknown", on_demand, od_source)


def _placement_source(provider: str, what: str = "placement") -> str:
    return "local price_per_hour" if provider == "local" else what


# ----------------------------------------------------------------------------- building reports


def cost_report(
    job_id: str,
    attempts: list[Attempt],
    on_demand_price_per_hour: OnDemandPrices = None,
    checkpoint_times: dict[int, float] | None = None,
    *,
    catalog: Catalog | None = None,
    accelerator: str | None = None,
    checkpoint_seconds: Mapping[int, tuple[float, int]] | None = None,
    measured: Mapping[str, MeasuredCost] | None = None,
    notes: list[str] | None = None,
    name: str = "",
) -> CostReport:
    """The cost report of ``attempts``.

    ``on_demand_price_per_hour``: the on-demand price to fall back on where the catalog has none
    (one figure, or per ``(provider, instance_type)``). ``checkpoint_times``: attempt number → unix
    time of the last checkpoint that attempt committed (else ``Attempt.last_checkpoint``).
    ``checkpoint_seconds``: attempt number → (blocking save seconds, saves). ``measured``:
    provider → the billing API's figure for that provider's attempts.
    """
    checkpoint_times = checkpoint_times or {}
    checkpoint_seconds = checkpoint_seconds or {}
    measured = dict(measured or {})
    lines: list[CostLine] = []
    out_notes = list(notes or [])
    for attempt in attempts:
        usage = attempt.usage
        billable = usage.billable_seconds if usage else 0.0
        runtime = usage.runtime_seconds if usage else 0.0
        count = usage.count if usage else attempt.placement.count
        compute = runtime if runtime > 0 else billable
        lost = 0.0
        if attempt.state is JobState.PREEMPTED and attempt.ended and attempt.started:
            last = checkpoint_times.get(attempt.n) or attempt.last_checkpoint or attempt.started
            lost = min(compute, max(0.0, attempt.ended - max(last, attempt.started)))
        prices = attempt_prices(attempt, catalog, accelerator, on_demand_price_per_hour)
        cost = 0.0 if billable == 0 else None
        if prices.rate is not None:
            cost = billable * count / 3600.0 * prices.rate
        ckpt_seconds, ckpt_count = checkpoint_seconds.get(attempt.n, (0.0, 0))
        m = measured.get(attempt.placement.provider)
        lines.append(
            CostLine(
                attempt=attempt.n,
                provider=attempt.placement.provider,
                market=usage.market if usage else attempt.placement.market,
                instance_type=attempt.placement.instance_type or (usage.instance_type if usage else None),
                count=count,
                outcome=attempt.outcome,
                billable_seconds=billable,
                lost_seconds=lost,
                price_per_hour=prices.rate,
                cost=cost,
                region=(usage.region if usage else None) or attempt.placement.region,
                runtime_seconds=runtime,
                price_source=prices.rate_source,
                on_demand_price_per_hour=prices.on_demand,
                on_demand_source=prices.on_demand_source,
                checkpoint_seconds=min(ckpt_seconds, compute) if compute else 0.0,
                checkpoints=ckpt_count,
                measured_cost=m.per_attempt.get(attempt.n) if m else None,
                started=attempt.started,
                ended=attempt.ended,
                usage_source=usage.source if usage else "",
            )
        )
    if any(line.cost is None for line in lines):
        out_notes.append("some prices are unknown for this provider/instance: costs show n/a")
    if any(line.counterfactual is None for line in lines):
        out_notes.append("no on-demand price is known for some instance: the counterfactual shows n/a")
    for provider in sorted({line.provider for line in lines}):
        if provider in BILLING_RULES:
            out_notes.append(BILLING_RULES[provider])
    if any(line.price_source.endswith("(est.)") for line in lines):
        out_notes.append("'(est.)': the catalog's spot price is an estimate; the provider publishes none")
    fallback = on_demand_price_per_hour if isinstance(on_demand_price_per_hour, (int, float)) else None
    return CostReport(job_id, lines, fallback, out_notes, measured, name)


def checkpoint_save_seconds(
    checkpoint_uri: str, interval: float | None = None, runtimes: Mapping[int, float] | None = None
) -> dict[int, tuple[float, int]]:
    """Attempt → (blocking save seconds, saves) from the checkpoints' manifests (``write_seconds``).

    Retention deletes older checkpoints; with the job's ``interval`` and each attempt's runtime,
    saves no longer on storage are counted at the attempt's mean save time.
    """
    from multispot.checkpoint import CheckpointStore

    store = CheckpointStore(checkpoint_uri)
    found: dict[int, list[float]] = {}
    for step in store.steps():
        manifest = store.manifest(step)
        if manifest is None or manifest.attempt is None:
            continue
        seconds = manifest.metadata.get("write_seconds")
        if isinstance(seconds, (int, float)) and math.isfinite(seconds) and seconds >= 0:
            found.setdefault(manifest.attempt, []).append(float(seconds))
    out: dict[int, tuple[float, int]] = {}
    for attempt, values in found.items():
        saves = len(values)
        runtime = (runtimes or {}).get(attempt)
        if interval and runtime:
            saves = max(saves, int(runtime // interval))
        out[attempt] = (sum(values) / len(values) * saves, saves)
    return out


def measure(
    job_id: str, attempts: list[Attempt], get_provider: Callable[[str], object] | None = None
) -> tuple[dict[str, MeasuredCost], list[str]]:
    """Ask each provider of the job that is a :class:`BillingSource` for its billed figure."""
    if get_provider is None:
        from multispot import registry

        get_provider = registry.get
    measured: dict[str, MeasuredCost] = {}
    notes: list[str] = []
    for provider in sorted({a.placement.provider for a in attempts}):
        mine = [a for a in attempts if a.placement.provider == provider]
        try:
            source = get_provider(provider)
        except MultispotError as exc:
            notes.append(f"{provider}: no measured cost ({exc}); its figures are estimated")
            continue
        if not isinstance(source, BillingSource):
            notes.append(f"{provider} has no billing source: its figures are estimated")
            continue
        try:
            figure = source.measured_cost(job_id, mine)
        except Exception as exc:  # a cloud SDK's own errors: fall back to the estimate, say why
            notes.append(f"{provider}: measured cost unavailable ({type(exc).__name__}: {exc}); estimated")
            continue
        if figure is None:
            notes.append(f"{provider}: billing source not configured or no billed rows yet; estimated")
        else:
            measured[provider] = figure
    return measured, notes


def _job_inputs(record: JobRecord) -> tuple[str | None, float | None, Mapping[tuple[str, str | None], float]]:
    """(accelerator, checkpoint interval, on-demand prices of the job's candidates) from its spec."""
    from multispot import registry
    from multispot.controller import record_candidates
    from multispot.job import Job

    try:
        job = Job.from_record(record.spec)
    except Exception:  # a spec from an older version: price it without the job's details
        return None, None, {}
    fallback: dict[tuple[str, str | None], float] = {}
    try:
        placements = record_candidates(job, record)
        # what each provider would have placed on demand (a spot-only job lists no on-demand pool)
        on_demand_job = Job.from_record(
            {**job.to_data(), "spot": {**job.to_data().get("spot", {}), "policy": "on-demand"}}
        )
        for name in sorted({p.provider for p in placements} | {record.provider}):
            placements += registry.get(name).placements(on_demand_job)
    except (MultispotError, ValueError):
        placements = []  # a provider no longer installed: the catalog still prices it
    for placement in placements:
        if placement.market == "on-demand" and placement.price_per_hour is not None:
            fallback.setdefault((placement.provider, placement.instance_type), placement.price_per_hour)
    return job.resources.accelerator, job.checkpoint.interval, fallback


def report_for_job(
    store: JobStore,
    job_id: str,
    *,
    catalog: Catalog | None = None,
    measured: bool = False,
    read_checkpoints: bool = True,
    get_provider: Callable[[str], object] | None = None,
) -> CostReport:
    """The cost report of a job in the store; ``measured`` asks the providers' billing APIs."""
    record = store.get_job(job_id)
    attempts = store.attempts(record.id)
    if catalog is None:
        from multispot.catalog import load_catalog

        catalog = load_catalog()
    accelerator, interval, fallback = _job_inputs(record)
    notes: list[str] = []
    saves: dict[int, tuple[float, int]] = {}
    if read_checkpoints:
        runtimes = {a.n: a.usage.runtime_seconds for a in attempts if a.usage}
        try:
            saves = checkpoint_save_seconds(record.checkpoint_uri, interval, runtimes)
        except (OSError, ValueError) as exc:
            notes.append(f"checkpointing cost not counted: cannot read {record.checkpoint_uri} ({exc})")
    else:
        notes.append("checkpointing cost not counted (checkpoints not read)")
    figures: dict[str, MeasuredCost] = {}
    if measured:
        figures, more = measure(record.id, attempts, get_provider)
        notes += more
    return cost_report(
        record.id,
        attempts,
        fallback,
        catalog=catalog,
        accelerator=accelerator,
        checkpoint_seconds=saves,
        measured=figures,
        notes=notes,
        name=record.name,
    )


# ----------------------------------------------------------------------------- all jobs


def parse_since(value: str | float | datetime | date | None, now: float | None = None) -> float | None:
    """A unix time from a duration back from now (``7d``, ``12h``) or a date/time (ISO, UTC if naive)."""
    if value is None:
        return None
    import time

    now = time.time() if now is None else now
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=timezone.utc)
        return moment.timestamp()
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=timezone.utc).timestamp()
    if isinstance(value, (int, float)):
        return now - parse_duration(value)
    try:
        return now - parse_duration(value)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"{value!r}: give a duration back from now ('7d', '12h') or a date ('2026-11-01')"
        ) from None
    return parse_since(moment, now)


@dataclass
class SavingsGroup:
    """Attempts on one provider and instance type, across jobs."""

    provider: str
    instance_type: str | None
    jobs: set[str] = field(default_factory=set)
    attempts: int = 0
    instance_seconds: float = 0.0
    actual: float = 0.0
    on_demand: float = 0.0
    lost: float = 0.0
    checkpointing: float = 0.0

    @property
    def savings(self) -> float:
        return self.on_demand - self.actual

    @property
    def savings_fraction(self) -> float | None:
        return self.savings / self.on_demand if self.on_demand else None

    def add(self, line: CostLine, job_id: str) -> None:
        self.jobs.add(job_id)
        self.attempts += 1
        self.instance_seconds += line.instance_seconds
        self.actual += line.cost or 0.0
        self.on_demand += line.counterfactual or 0.0
        self.lost += line.lost_cost or 0.0
        self.checkpointing += line.checkpoint_cost or 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "instance_type": self.instance_type,
            "jobs": len(self.jobs),
            "attempts": self.attempts,
            "instance_hours": self.instance_seconds / 3600.0,
            "actual_usd": self.actual,
            "on_demand_usd": self.on_demand,
            "savings_usd": self.savings,
            "savings_fraction": self.savings_fraction,
            "lost_work_usd": self.lost,
            "checkpointing_usd": self.checkpointing,
        }


@dataclass
class SavingsReport:
    """Savings over many jobs, grouped by provider and instance type (estimated figures)."""

    since: float | None
    provider: str | None
    groups: list[SavingsGroup]
    reports: list[CostReport]
    unpriced: list[tuple[str, int]] = field(default_factory=list)  # (job, attempt) left out: price unknown
    notes: list[str] = field(default_factory=list)

    HEADERS = (
        "provider",
        "instance",
        "jobs",
        "attempts",
        "instance-hours",
        "actual",
        "on-demand",
        "saved",
        "saved %",
        "lost work",
        "checkpointing",
    )

    @property
    def total(self) -> SavingsGroup:
        total = SavingsGroup("total", None)
        for group in self.groups:
            total.jobs |= group.jobs
            total.attempts += group.attempts
            total.instance_seconds += group.instance_seconds
            total.actual += group.actual
            total.on_demand += group.on_demand
            total.lost += group.lost
            total.checkpointing += group.checkpointing
        return total

    def rows(self, with_total: bool = True) -> list[list[str]]:
        groups = [*self.groups, self.total] if with_total else self.groups
        return [
            [
                g.provider,
                g.instance_type or "-",
                str(len(g.jobs)),
                str(g.attempts),
                f"{g.instance_seconds / 3600:.3f}",
                _usd(g.actual),
                _usd(g.on_demand),
                _usd(g.savings),
                "-" if g.savings_fraction is None else f"{g.savings_fraction:.0%}",
                _usd(g.lost),
                _usd(g.checkpointing),
            ]
            for g in groups
        ]

    def summary(self) -> str:
        t = self.total
        saved = "" if t.savings_fraction is None else f" ({t.savings_fraction:.0%})"
        return (
            f"{len(t.jobs)} jobs, {t.attempts} attempts: actual {_usd(t.actual)}, "
            f"on-demand {_usd(t.on_demand)}, saved {_usd(t.savings)}{saved} (estimated)"
        )

    def details(self) -> list[str]:
        out = []
        if self.since is not None:
            out.append(f"jobs created since {iso_time(self.since)}")
        if self.unpriced:
            listed = ", ".join(f"{j}#{n}" for j, n in self.unpriced[:5])
            more = f" and {len(self.unpriced) - 5} more" if len(self.unpriced) > 5 else ""
            out.append(f"{len(self.unpriced)} attempts left out, price unknown: {listed}{more}")
        return out + self.notes

    def to_dict(self) -> dict[str, Any]:
        return {
            "since": iso_time(self.since),
            "provider": self.provider,
            "basis": "estimated",
            "groups": [g.to_dict() for g in self.groups],
            "total": self.total.to_dict(),
            "jobs": [
                {
                    "job_id": r.job_id,
                    "name": r.name,
                    "actual_usd": r.actual,
                    "on_demand_usd": r.on_demand,
                    "savings_usd": r.savings,
                }
                for r in self.reports
            ],
            "unpriced_attempts": [{"job_id": j, "attempt": n} for j, n in self.unpriced],
            "notes": self.details(),
        }

    def __repr__(self) -> str:
        return f"SavingsReport({self.summary()})"

    def _repr_html_(self) -> str:
        return (
            f"<b>Savings</b>: {html.escape(self.summary())}"
            + _html_table(self.HEADERS, self.rows())
            + _html_list(self.details())
        )

    def plot(self, ax: Any = None) -> Any:
        """Cumulative actual cost vs the on-demand counterfactual over the jobs' attempts (Axes)."""
        plt = _pyplot()
        if ax is None:
            _, ax = plt.subplots(figsize=(7, 3.5))
        lines = sorted(
            (
                line
                for r in self.reports
                for line in r.lines
                if line.cost is not None and line.counterfactual is not None
            ),
            key=lambda line: line.ended or line.started or 0.0,
        )
        xs: list[Any] = []
        actual: list[float] = []
        counter: list[float] = []
        a = c = 0.0
        for line in lines:
            a += line.cost or 0.0
            c += line.counterfactual or 0.0
            xs.append(_x(line.ended or line.started, len(xs) + 1, True))
            actual.append(a)
            counter.append(c)
        ax.step(xs, counter, where="post", label="on-demand counterfactual", color="tab:gray")
        ax.step(xs, actual, where="post", label="actual (estimated)", color="tab:green")
        ax.set_ylabel("USD, cumulative")
        ax.set_xlabel("time")
        ax.set_title(self.summary())
        ax.legend(loc="upper left")
        return ax


def savings(
    store: JobStore | None = None,
    since: str | float | datetime | date | None = None,
    provider: str | None = None,
    *,
    catalog: Catalog | None = None,
) -> SavingsReport:
    """Savings of every job in the store (created since ``since``), grouped by provider and instance.

    Figures are estimated (billing APIs are asked only by ``cost --measured``). Checkpointing cost
    is counted for jobs whose checkpoints are on this machine.
    """
    from multispot.store import JobStore

    store = store or JobStore()
    if catalog is None:
        from multispot.catalog import load_catalog

        catalog = load_catalog()
    cutoff = parse_since(since)
    groups: dict[tuple[str, str | None], SavingsGroup] = {}
    reports: list[CostReport] = []
    unpriced: list[tuple[str, int]] = []
    remote = 0
    for record in reversed(store.jobs(10**9)):
        if cutoff is not None and record.created < cutoff:
            continue
        local = record.checkpoint_uri.startswith(("file:", "/"))
        remote += not local
        report = report_for_job(store, record.id, catalog=catalog, read_checkpoints=local)
        lines = [line for line in report.lines if provider is None or line.provider == provider]
        if not lines:
            continue
        reports.append(report)
        for line in lines:
            if line.cost is None or line.counterfactual is None:
                unpriced.append((record.id, line.attempt))
                continue
            key = (line.provider, line.instance_type)
            groups.setdefault(key, SavingsGroup(*key)).add(line, record.id)
    notes = []
    if remote:
        notes.append(f"checkpointing cost not counted for {remote} jobs with remote checkpoints")
    ordered = sorted(groups.values(), key=lambda g: (g.provider, g.instance_type or ""))
    return SavingsReport(cutoff, provider, ordered, reports, unpriced, notes)
