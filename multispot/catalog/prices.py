"""The cross-cloud price comparison behind ``multispot prices`` and ``ms.prices``."""

from __future__ import annotations

import html
from dataclasses import dataclass
from datetime import date
from typing import Any

from multispot.catalog.model import Catalog, Offer, parse_accelerator


@dataclass(frozen=True)
class PriceTable:
    """Offers for one accelerator request, cheapest first for ``market``, with each catalog's date."""

    query: str
    market: str
    offers: list[Offer]
    dates: dict[str, str]  # provider -> date of its prices
    ages: dict[str, int | None]  # provider -> days since that date
    origins: dict[str, str]

    HEADERS = (
        "provider",
        "region",
        "instance",
        "accelerators",
        "vCPU",
        "GiB",
        "spot",
        "on-demand",
        "discount",
    )

    def rows(self) -> list[list[str]]:
        return [
            [
                o.provider,
                o.region,
                o.instance_type,
                o.accelerators,
                _num(o.vcpus),
                _num(o.memory_gb),
                _usd(o.spot) + (" (est.)" if o.spot_estimated and o.spot is not None else ""),
                _usd(o.on_demand),
                "-" if o.discount is None else f"{o.discount:.0%}",
            ]
            for o in self.offers
        ]

    def freshness(self) -> list[str]:
        return [
            f"{p}: prices of {d} ({self.ages.get(p)} days old, {self.origins.get(p, 'snapshot')})"
            for p, d in sorted(self.dates.items())
        ]

    def to_dict(self) -> dict[str, Any]:
        return {
            "query": self.query,
            "market": self.market,
            "catalog": {
                p: {"date": d, "age_days": self.ages.get(p), "origin": self.origins.get(p)}
                for p, d in sorted(self.dates.items())
            },
            "offers": [o.to_dict() for o in self.offers],
        }

    def _repr_html_(self) -> str:
        head = "".join(f"<th>{h}</th>" for h in self.HEADERS)
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in self.rows()
        )
        notes = "<br>".join(html.escape(line) for line in self.freshness())
        return (
            f"<b>{html.escape(self.query)}</b>, {self.market} prices per instance-hour (USD)"
            f"<table><tr>{head}</tr>{body}</table><small>{notes}</small>"
        )


def _usd(value: float | None) -> str:
    return "-" if value is None else f"${value:,.4f}"


def _num(value: float | None) -> str:
    return "?" if value is None else f"{value:g}"


def compare(
    catalog: Catalog,
    accelerator: str | None,
    providers: list[str] | None = None,
    regions: list[str] | None = None,
    market: str = "spot",
    today: date | None = None,
) -> PriceTable:
    """Every offer with ``accelerator`` (``NAME[:COUNT]``; None: CPU shapes), sorted by ``market`` price."""
    name, count = parse_accelerator(accelerator) if accelerator else (None, None)
    exact_count = count if accelerator and ":" in accelerator else None
    offers = [
        o
        for o in catalog.offers
        if (not providers or o.provider in providers)
        and (not regions or o.region in regions)
        and (o.accelerator == name)
        and (exact_count is None or o.accelerator_count == exact_count)
    ]

    def key(o: Offer) -> tuple[float, str, str]:
        price = o.price(market)
        return (float("inf") if price is None else price, o.provider, o.region)

    offers.sort(key=key)
    shown = {o.provider for o in offers} or set(providers or catalog.providers())
    return PriceTable(
        query=accelerator or "CPU",
        market=market,
        offers=offers,
        dates={p: catalog.dates[p] for p in shown if p in catalog.dates},
        ages={p: catalog.age_days(p, today) for p in shown},
        origins={p: catalog.origins.get(p, "snapshot") for p in shown},
    )
