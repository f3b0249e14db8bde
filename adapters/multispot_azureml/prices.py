"""Azure ML's price source for ``multispot catalog refresh``: the Azure Retail Prices API (public,
no auth), Linux pay-as-you-go and Low Priority meters of the VM sizes (Azure ML adds no
surcharge). Registered under the entry-point group ``multispot.price_sources``; standard library only."""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterable
from typing import Any

from multispot.catalog.sources import Fetch, Price, PriceTable, RefreshRequest

AZURE_PRICES_URL = "https://prices.azure.com/api/retail/prices"


def parse_azure_items(items: Iterable[dict[str, Any]], known: set[str]) -> PriceTable:
    """Linux pay-as-you-go and Low Priority (else Spot) hourly prices per VM size and region."""
    on_demand: dict[tuple[str, str], float] = {}
    low: dict[tuple[str, str], float] = {}
    spot: dict[tuple[str, str], float] = {}
    for item in items:
        sku, region = item.get("armSkuName"), item.get("armRegionName")
        if sku not in known or not region:
            continue
        if item.get("type") != "Consumption" or item.get("unitOfMeasure") != "1 Hour":
            continue
        if "Windows" in str(item.get("productName", "")) or item.get("currencyCode", "USD") != "USD":
            continue
        name = f"{item.get('skuName', '')} {item.get('meterName', '')}"
        bucket = low if "Low Priority" in name else spot if "Spot" in name else on_demand
        bucket[(sku, region)] = float(item["retailPrice"])
    return {
        key: Price(on_demand.get(key), low.get(key, spot.get(key)))
        for key in set(on_demand) | set(low) | set(spot)
    }


def azure_items(fetch: Fetch, regions: Iterable[str], skus: Iterable[str]) -> list[dict[str, Any]]:
    """Every Virtual Machines price item for these sizes and regions, following NextPageLink."""
    sku_filter = " or ".join(f"armSkuName eq '{s}'" for s in sorted(skus))
    region_filter = " or ".join(f"armRegionName eq '{r}'" for r in regions)
    query = f"serviceName eq 'Virtual Machines' and ({region_filter}) and ({sku_filter})"
    url: str | None = f"{AZURE_PRICES_URL}?{urllib.parse.urlencode({'$filter': query})}"
    items: list[dict[str, Any]] = []
    while url:
        page = fetch(url)
        items += page.get("Items", [])
        url = page.get("NextPageLink")
    return items


class AzureRetailPrices:
    """The ``multispot.price_sources`` entry for ``azureml``."""

    description = "Azure Retail Prices API"
    regions = ("eastus", "westus2", "westeurope")

    def prices(self, request: RefreshRequest) -> PriceTable:
        known = {str(s["instance_type"]) for s in request.base["shapes"]}
        if request.raw is not None:
            pages = request.raw if isinstance(request.raw, list) else [request.raw]
            items = [item for page in pages for item in page.get("Items", [])]
        else:
            items = azure_items(request.fetch, request.regions, known)
        return parse_azure_items(items, known)


source = AzureRetailPrices()
