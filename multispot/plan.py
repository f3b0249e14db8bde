"""The one place that answers "which placements, in what order, at what price".

::

    job.targets (or the provider asked for)
      × each provider's offers (both markets: ``Provider.placements``)        offers()
      → the markets the job's policy may buy (``Policy.markets``)             candidates()
      → prices the provider did not give, from the catalog, with sources      priced()
      → the order the policy would try them (``Policy.preview``)              plan()

The controller gives ``candidates`` to the policy at each decision; the dry run, ``ms.plan``, the
cost plan, the simulator and billing all ask here. Providers never read ``spot.policy``.
"""

from __future__ import annotations

import html
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from multispot import registry
from multispot.errors import MultispotError, ProviderNotFound
from multispot.policy import get as policy_get
from multispot.status import Placement

if TYPE_CHECKING:
    from multispot.job import Job

DEFAULT_PROVIDER = "local"


def provider_name(job: Job, provider: str | None = None) -> str:
    """The provider asked for, else the first target's, else the local provider."""
    return provider or (job.targets[0].provider if job.targets else DEFAULT_PROVIDER)


def offers(job: Job, provider: str | None = None, *, only: bool = False) -> list[Placement]:
    """Every placement the job's targets allow, in both markets, in the user's order.

    Without targets: the provider's own offers. ``only``: the user named ``provider``
    (``--provider``), so targets on other providers are left out.
    """
    name = provider_name(job, provider)
    targets = [t for t in job.targets if not only or t.provider == name]
    if not targets:
        return registry.get(name).placements(job)
    out: list[Placement] = []
    for target in targets:
        for placement in registry.get(target.provider).placements(job):
            if target.market and placement.market != target.market:
                continue
            out.append(
                replace(
                    placement,
                    region=target.region or placement.region,
                    instance_type=target.instance_type or placement.instance_type,
                )
            )
    return out


def candidates(job: Job, provider: str | None = None, *, only: bool = False) -> list[Placement]:
    """``offers`` in the markets the job's policy may buy: what the controller gives the policy."""
    markets = policy_get(job.spot.policy).markets(job)
    return [p for p in offers(job, provider, only=only) if p.market in markets]


# --------------------------------------------------------------------------- prices


def price_of(job: Job, placement: Placement, region_hint: str | None = None) -> tuple[float, str] | None:
    """The catalog's price for ``placement`` (USD per instance-hour) and a line saying which offer,
    from which source and of which date; None when the catalog cannot say.

    A cloud placement is looked up by its instance type (else resolved from the job's resources).
    A placement of a provider the catalog does not price (the local provider) is priced as the
    cloud it stands for: the job's first cloud target, else what the provider says it plays
    (``priced_as(job)``, an optional provider method: the local provider's ``emulate`` option).
    The region is the placement's own when the catalog knows it, else the one ``region_hint``
    (a trace's name: ``us-east-1c_v100_1``) starts with, else the cheapest anywhere.
    """
    from multispot.catalog import load_catalog

    try:
        cat = load_catalog()
    except (MultispotError, OSError, ValueError):
        return None
    known = set(cat.providers())
    provider: str | None = placement.provider if placement.provider in known else None
    if provider is None:
        clouds = [t.provider for t in job.targets if t.provider in known]
        if clouds:
            provider = clouds[0]
        else:
            try:
                priced_as = getattr(registry.get(placement.provider), "priced_as", None)
            except ProviderNotFound:
                priced_as = None
            provider = priced_as(job) if priced_as is not None else None
    if provider is None:
        return None
    regions = sorted({o.region for o in cat.offers if o.provider == provider}, key=len, reverse=True)
    region = placement.region if placement.region in regions and provider == placement.provider else None
    if region is None and region_hint:
        region = next((r for r in regions if region_hint.startswith(r)), None)
    offer = None
    try:
        if provider == placement.provider and placement.instance_type:
            offer = cat.lookup(
                provider, placement.instance_type, region, accelerator=job.resources.accelerator
            )
        if offer is None:
            offer = cat.resolve(provider, job.resources, region=region, market=placement.market)
    except (MultispotError, ValueError):
        return None
    price = offer.price(placement.market)
    if price is None:
        return None
    estimated = " (estimated)" if placement.market == "spot" and offer.spot_estimated else ""
    origin = cat.origins.get(provider, "snapshot")
    date = offer.price_date or cat.dates.get(provider, "?")
    return price, (
        f"catalog: {offer.provider} {offer.region} {offer.instance_type} {placement.market} "
        f"${price:g}/h{estimated}, prices of {date} ({origin}) from {offer.source}"
    )


def priced(
    job: Job, placements: Sequence[Placement], region_hint: str | None = None
) -> tuple[list[Placement], list[str | None]]:
    """``placements`` with the prices their providers did not give taken from the catalog, and
    where each price came from ("the provider", a catalog line, or None when nobody knows)."""
    out: list[Placement] = []
    sources: list[str | None] = []
    for p in placements:
        if p.price_per_hour is not None:
            out.append(p)
            sources.append("the provider")
            continue
        found = price_of(job, p, region_hint)
        out.append(p if found is None else replace(p, price_per_hour=found[0]))
        sources.append(None if found is None else found[1])
    return out, sources


# --------------------------------------------------------------------------- the plan


@dataclass(frozen=True)
class Plan(Sequence[Placement]):
    """The placements a job may run on, priced, in the order its policy would try them."""

    policy: str
    placements: tuple[Placement, ...]
    sources: tuple[str | None, ...]  # where each placement's price came from

    def __len__(self) -> int:
        return len(self.placements)

    def __getitem__(self, index: Any) -> Any:
        return self.placements[index]

    def __iter__(self) -> Iterator[Placement]:
        return iter(self.placements)

    def source(self, placement: Placement) -> str | None:
        return self.sources[self.placements.index(placement)]

    def to_dict(self) -> dict[str, Any]:
        return {
            "policy": self.policy,
            "placements": [
                {**p.to_dict(), "price_source": s} for p, s in zip(self.placements, self.sources, strict=True)
            ],
        }

    def __repr__(self) -> str:
        lines = [f"Plan({self.policy!r}, {len(self)} placements)"]
        lines += [f"  {i + 1}. {p}" for i, p in enumerate(self.placements)]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><td>{i + 1}</td><td>{html.escape(p.provider)}</td><td>{p.market}</td>"
            f"<td>{html.escape(p.region or '')}</td><td>{html.escape(p.instance_type or '')}</td>"
            f"<td>{'' if p.price_per_hour is None else f'${p.price_per_hour:.4g}/h'}</td></tr>"
            for i, p in enumerate(self.placements)
        )
        return (
            f"<b>plan</b> ({html.escape(self.policy)})<table><tr><th>#</th><th>provider</th><th>market</th>"
            f"<th>region</th><th>instance</th><th>price</th></tr>{rows}</table>"
        )


def plan(
    job: Job, provider: str | None = None, *, only: bool = False, region_hint: str | None = None
) -> Plan:
    """The job's candidates, priced, in the order the job's policy would try them."""
    chosen = policy_get(job.spot.policy)
    placements, sources = priced(job, candidates(job, provider, only=only), region_hint)
    source = dict(zip(placements, sources, strict=True))
    order = chosen.preview(placements)
    return Plan(chosen.name, tuple(order), tuple(source[p] for p in order))


def both_markets(job: Job) -> list[Placement]:
    """The job's offers in both markets, for comparisons (the simulator, billing's counterfactual).

    A provider that is not installed cannot say what it offers: then the targets as written (the
    catalog prices them), or the provider's name alone.
    """
    name = provider_name(job)
    try:
        return offers(job, name)
    except ProviderNotFound:
        if job.targets:
            return [
                Placement(t.provider, market, t.region, t.instance_type, job.resources.nodes)
                for t in job.targets
                for market in ("spot", "on-demand")
                if t.market in (None, market)
            ]
        return [Placement(name, "spot"), Placement(name, "on-demand")]
