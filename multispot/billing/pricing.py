"""The prices of one attempt: the rate its billable time is charged at, and the on-demand rate of
the same instance (the counterfactual), each with where it came from.

Which rate applies to spot billable time is the provider's own :class:`~multispot.provider.BillingRule`
(``Provider.billing``), looked up through the registry: this module names no cloud.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from multispot.errors import MultispotError
from multispot.provider import BillingRule
from multispot.status import Attempt

if TYPE_CHECKING:
    from multispot.catalog import Catalog, Offer

OnDemandPrices = float | Mapping[tuple[str, str | None], float] | None

# For a provider that is not installed (a job store row from a removed plugin): spot time at the
# spot rate, which is how every provider but one bills; the report says the rule is assumed.
NEUTRAL_RULE = BillingRule("", spot_rate="spot")


def billing_rule(provider: str) -> tuple[BillingRule, str | None]:
    """The provider's billing rule, or the neutral one with a note saying why it is assumed."""
    from multispot import registry

    try:
        rule = registry.get(provider).billing
    except (MultispotError, ImportError, AttributeError) as exc:
        return NEUTRAL_RULE, (
            f"{provider}: no installed provider states how it bills ({exc}); "
            "its spot time is priced at the spot rate"
        )
    if not isinstance(rule, BillingRule):
        return NEUTRAL_RULE, (
            f"{provider}: its provider gives no BillingRule; its spot time is priced at the spot rate"
        )
    return rule, None


@dataclass(frozen=True)
class AttemptPrices:
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
    rule: BillingRule | None = None,
) -> AttemptPrices:
    """The rate for the attempt's billable time and the on-demand rate of the same instance, with sources.

    ``rule``: the provider's billing rule (looked up in the registry when not given).
    """
    placement, usage = attempt.placement, attempt.usage
    provider = placement.provider
    if rule is None:
        rule, _ = billing_rule(provider)
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

    if market == "spot" and rule.spot_rate == "on-demand":
        # never the (estimated) spot price: the discount is already in the billable time
        return AttemptPrices(
            on_demand,
            f"{od_source}, on-demand rate" if on_demand is not None else "unknown",
            on_demand,
            od_source,
        )
    if offer is not None and market in ("spot", "on-demand") and offer.price(market) is not None:
        estimated = " (est.)" if market == "spot" and offer.spot_estimated else ""
        return AttemptPrices(
            offer.price(market),
            f"catalog {offer.region} {offer.price_date}{estimated}".strip(),
            on_demand,
            od_source,
        )
    if placement.price_per_hour is not None and placement.market == market:
        return AttemptPrices(placement.price_per_hour, _placement_source(provider), on_demand, od_source)
    return AttemptPrices(None, "unknown", on_demand, od_source)


def _placement_source(provider: str, what: str = "placement") -> str:
    return "local price_per_hour" if provider == "local" else what
