"""Refresh: rebuild a provider's prices from its public price source.

- SageMaker: the AWS Price List bulk offer file of AmazonSageMaker, one per region (public).
- Azure ML: the Azure Retail Prices API (public, no auth), Linux pay-as-you-go and Low Priority meters.
- Vertex AI: the Cloud Billing Catalog API's SKUs of the Vertex AI service (needs an API key).

Each parser reads the documented JSON format and returns prices per (shape id, region); the
hardware (shapes) stays the packaged one. Only stdlib HTTP here: no cloud SDK is needed to refresh.
"""

from __future__ import annotations

import json
import re
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date
from typing import Any

from multispot.catalog.files import packaged
from multispot.errors import CatalogError

AWS_OFFER_URL = (
    "https://pricing.us-east-1.amazonaws.com/offers/v1.0/aws/AmazonSageMaker/current/{region}/index.json"
)
AZURE_PRICES_URL = "https://prices.azure.com/api/retail/prices"
GCP_SKUS_URL = "https://cloudbilling.googleapis.com/v1/services/{service}/skus"
VERTEX_SERVICE_ID = "C7E2-9256-1C43"  # "Vertex AI" in the Cloud Billing Catalog

DEFAULT_REGIONS = {
    "sagemaker": ("us-east-1", "us-west-2", "eu-west-1"),
    "vertex": ("us-central1", "us-east4", "europe-west4"),
    "azureml": ("eastus", "westus2", "westeurope"),
}

Fetch = Callable[[str], Any]  # URL -> parsed JSON


@dataclass(frozen=True)
class Price:
    on_demand: float | None
    spot: float | None
    spot_estimated: bool = False


PriceTable = dict[tuple[str, str], Price]  # (shape id, region) -> prices


def http_json(url: str, timeout: float = 60.0) -> Any:
    request = urllib.request.Request(url, headers={"User-Agent": "multispot-catalog-refresh"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.load(response)


# --------------------------------------------------------------------------- AWS


def parse_aws_offer(offer: dict[str, Any], discounts: dict[str, float]) -> PriceTable:
    """On-demand training prices from an AmazonSageMaker offer file; spot is estimated per shape.

    SageMaker publishes no spot list: managed spot bills BillableTimeInSeconds at the on-demand
    rate, so the estimate is on-demand × (1 − the family's typical discount).
    """
    products = offer.get("products")
    terms = offer.get("terms", {}).get("OnDemand")
    if not isinstance(products, dict) or not isinstance(terms, dict):
        raise CatalogError("not an AWS Price List offer file: it lacks 'products' or 'terms.OnDemand'")
    table: PriceTable = {}
    for sku, product in products.items():
        attrs = product.get("attributes", {})
        instance, region = attrs.get("instanceName"), attrs.get("regionCode")
        usage = str(attrs.get("usagetype", ""))
        training = attrs.get("component") == "Training" or "-Train:" in usage
        if not instance or not region or not training or "Spot" in usage:
            continue
        price = _aws_hourly(terms.get(sku, {}))
        if price is None or instance not in discounts:
            continue
        table[(instance, region)] = Price(price, round(price * (1 - discounts[instance]), 4), True)
    return table


def _aws_hourly(term_by_code: dict[str, Any]) -> float | None:
    for term in term_by_code.values():
        for dim in term.get("priceDimensions", {}).values():
            if dim.get("unit") in ("Hrs", "Hours", "hour") and "USD" in dim.get("pricePerUnit", {}):
                value = float(dim["pricePerUnit"]["USD"])
                if value > 0:
                    return value
    return None


# --------------------------------------------------------------------------- Azure


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


# --------------------------------------------------------------------------- GCP

_GPU_WORDS = {  # words in a Vertex SKU description -> canonical accelerator
    "A100 80GB": "A100-80GB",
    "H100 80GB": "H100",
    "H100": "H100",
    "A100": "A100",
    "Tesla V100": "V100",
    "Tesla T4": "T4",
    "L4": "L4",
}
_FAMILY = re.compile(r"\b(N1|N2|E2|A2|A3|G2)\b.*\b(Core|Ram)\b", re.IGNORECASE)


def _unit_price(sku: dict[str, Any]) -> float | None:
    for info in sku.get("pricingInfo", []):
        rates = info.get("pricingExpression", {}).get("tieredRates", [])
        for rate in reversed(rates):  # the last tier is the rate beyond any free tier
            money = rate.get("unitPrice", {})
            value = float(money.get("units", 0) or 0) + float(money.get("nanos", 0) or 0) / 1e9
            if value > 0:
                return value
    return None


def parse_gcp_skus(skus: Iterable[dict[str, Any]], doc: dict[str, Any]) -> PriceTable:
    """Vertex AI custom-training prices per machine + accelerator, from Cloud Billing Catalog SKUs.

    Machine prices are per vCPU-hour and GiB-hour of the family; accelerators per GPU-hour;
    usageType ``OnDemand`` or ``Preemptible`` (Spot).
    """
    cores: dict[tuple[str, str, str], float] = {}  # (family, region, usage) -> $/vCPU-h or $/GiB-h
    rams: dict[tuple[str, str, str], float] = {}
    gpus: dict[tuple[str, str, str], float] = {}
    for sku in skus:
        text = str(sku.get("description", ""))
        if "training" not in text.lower():
            continue  # prediction and other Vertex AI SKUs
        usage = sku.get("category", {}).get("usageType")
        price = _unit_price(sku)
        if usage not in ("OnDemand", "Preemptible") or price is None:
            continue
        regions = sku.get("serviceRegions", [])
        family = _FAMILY.search(text)
        gpu = next((name for words, name in _GPU_WORDS.items() if words.lower() in text.lower()), None)
        for region in regions:
            if gpu and "GPU" in text:
                gpus.setdefault((gpu, region, usage), price)
            elif family:
                bucket = cores if family.group(2).lower() == "core" else rams
                bucket.setdefault((family.group(1).lower(), region, usage), price)
    table: PriceTable = {}
    regions = {key[1] for key in cores}
    for shape in doc["shapes"]:
        machine_family = str(shape["instance_type"]).split("-")[0]
        for region in regions:
            prices: list[float | None] = []
            for usage in ("OnDemand", "Preemptible"):
                key = (machine_family, region, usage)
                core, ram = cores.get(key), rams.get(key)
                if core is None or ram is None:
                    prices.append(None)
                    continue
                total = core * float(shape["vcpus"]) + ram * float(shape["memory_gb"])
                if shape.get("accelerator"):
                    gpu_price = gpus.get((shape["accelerator"], region, usage))
                    if gpu_price is None:
                        prices.append(None)
                        continue
                    total += gpu_price * int(shape["accelerator_count"])
                prices.append(round(total, 4))
            if prices[0] is not None or prices[1] is not None:
                table[(str(shape["id"]), region)] = Price(prices[0], prices[1])
    return table


def gcp_skus(fetch: Fetch, api_key: str) -> list[dict[str, Any]]:
    skus: list[dict[str, Any]] = []
    token = ""
    while True:
        params = {"key": api_key, "currencyCode": "USD", "pageSize": "5000"}
        if token:
            params["pageToken"] = token
        page = fetch(f"{GCP_SKUS_URL.format(service=VERTEX_SERVICE_ID)}?{urllib.parse.urlencode(params)}")
        skus += page.get("skus", [])
        token = page.get("nextPageToken") or ""
        if not token:
            return skus


# --------------------------------------------------------------------------- assembling


def rebuild(provider: str, table: PriceTable, source: str, today: date | None = None) -> dict[str, Any]:
    """A catalog document with the packaged shapes and the refreshed prices."""
    base = packaged(provider)
    ids = {str(s["id"]) for s in base["shapes"]}
    prices = [
        {
            "id": shape_id,
            "region": region,
            "on_demand": price.on_demand,
            "spot": price.spot,
            "spot_estimated": price.spot_estimated,
        }
        for (shape_id, region), price in sorted(table.items())
        if shape_id in ids
    ]
    if not prices:
        raise CatalogError(f"the {provider} price source gave no price for any known shape: nothing written")
    return {
        **{k: v for k, v in base.items() if k not in ("prices", "date", "source")},
        "date": (today or date.today()).isoformat(),
        "source": source,
        "fetched": True,
        "prices": prices,
    }


def refresh_document(
    provider: str,
    fetch: Fetch = http_json,
    regions: tuple[str, ...] | None = None,
    api_key: str | None = None,
    raw: Any = None,
) -> dict[str, Any]:
    """Fetch (or take ``raw``, a saved response) and rebuild ``provider``'s catalog document."""
    base = packaged(provider)
    regions = regions or DEFAULT_REGIONS[provider]
    if provider == "sagemaker":
        discounts = {k: float(v) for k, v in base["spot_discount_estimate"].items()}
        offers = [raw] if raw is not None else [fetch(AWS_OFFER_URL.format(region=r)) for r in regions]
        table: PriceTable = {}
        for offer in offers:
            table.update(parse_aws_offer(offer, discounts))
        return rebuild(provider, table, "AWS Price List bulk offer file, AmazonSageMaker")
    if provider == "azureml":
        known = {str(s["instance_type"]) for s in base["shapes"]}
        if raw is not None:
            pages = raw if isinstance(raw, list) else [raw]
            items = [item for page in pages for item in page.get("Items", [])]
        else:
            items = azure_items(fetch, regions, known)
        return rebuild(provider, parse_azure_items(items, known), "Azure Retail Prices API")
    if provider == "vertex":
        if raw is not None:
            pages = raw if isinstance(raw, list) else [raw]
            skus = [sku for page in pages for sku in page.get("skus", [])]
        elif not api_key:
            raise CatalogError(
                "the Cloud Billing Catalog API needs an API key: set MULTISPOT_GCP_API_KEY "
                "(or pass --api-key); the packaged snapshot stays in use"
            )
        else:
            skus = gcp_skus(fetch, api_key)
        return rebuild(provider, parse_gcp_skus(skus, base), "Cloud Billing Catalog API, Vertex AI SKUs")
    raise CatalogError(f"no price source for provider {provider!r}")
