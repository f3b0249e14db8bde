"""Building reports: the attempts of a job (from the store or given) → :class:`CostReport`."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from multispot.billing.model import BillingSource, CostLine, CostReport, MeasuredCost
from multispot.billing.pricing import OnDemandPrices, attempt_prices, billing_rule
from multispot.errors import MultispotError
from multispot.provider import BillingRule
from multispot.status import Attempt, JobState

if TYPE_CHECKING:
    from multispot.catalog import Catalog
    from multispot.store import JobRecord, Store


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
    rules: dict[str, BillingRule] = {}
    for provider in sorted({a.placement.provider for a in attempts}):
        rules[provider], assumed = billing_rule(provider)
        if assumed:
            out_notes.append(assumed)
    for attempt in attempts:
        usage = attempt.usage
        billable = usage.billable_seconds if usage else 0.0
        runtime = usage.runtime_seconds if usage else 0.0
        count = usage.count if usage else attempt.placement.count
        compute = runtime if runtime > 0 else billable
        lost = 0.0
        if attempt.state in (JobState.PREEMPTED, JobState.SWITCHED) and attempt.ended and attempt.started:
            last = checkpoint_times.get(attempt.n) or attempt.last_checkpoint or attempt.started
            lost = min(compute, max(0.0, attempt.ended - max(last, attempt.started)))
        prices = attempt_prices(
            attempt, catalog, accelerator, on_demand_price_per_hour, rules[attempt.placement.provider]
        )
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
        if rules[provider].text:
            out_notes.append(rules[provider].text)
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
    from multispot.job import Job
    from multispot.plan import offers

    try:
        job = Job.from_record(record.spec)
    except Exception:  # a spec from an older version: price it without the job's details
        return None, None, {}
    fallback: dict[tuple[str, str | None], float] = {}
    try:
        # the plan's offers hold both markets whatever the policy: on-demand prices for every pool
        placements = offers(job, record.provider, only=bool(record.options.get("only_provider")))
    except (MultispotError, ValueError):
        placements = []  # a provider no longer installed: the catalog still prices it
    for placement in placements:
        if placement.market == "on-demand" and placement.price_per_hour is not None:
            fallback.setdefault((placement.provider, placement.instance_type), placement.price_per_hour)
    return job.resources.accelerator, job.checkpoint.interval, fallback


def report_for_job(
    store: Store,
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
