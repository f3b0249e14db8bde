"""Vertex AI's price source for ``multispot catalog refresh``: the Cloud Billing Catalog API's SKUs
of the Vertex AI service (needs an API key). Registered under the entry-point group
``multispot.price_sources``; standard library only."""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Iterable
from typing import Any

from multispot.catalog.sources import Fetch, Price, PriceTable, RefreshRequest
from multispot.errors import CatalogError

GCP_SKUS_URL = "https://cloudbilling.googleapis.com/v1/services/{service}/skus"
VERTEX_SERVICE_ID = "C7E2-9256-1C43"  # "Vertex AI" in the Cloud Billing Catalog

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


class CloudBillingCatalog:
    """The ``multispot.price_sources`` entry for ``vertex``."""

    description = "Cloud Billing Catalog API, Vertex AI SKUs"
    regions = ("us-central1", "us-east4", "europe-west4")

    def prices(self, request: RefreshRequest) -> PriceTable:
        if request.raw is not None:
            pages = request.raw if isinstance(request.raw, list) else [request.raw]
            skus = [sku for page in pages for sku in page.get("skus", [])]
        elif not request.api_key:
            raise CatalogError(
                "the Cloud Billing Catalog API needs an API key: set MULTISPOT_GCP_API_KEY "
                "(or pass --api-key); the packaged snapshot stays in use"
            )
        else:
            skus = gcp_skus(request.fetch, request.api_key)
        return parse_gcp_skus(skus, request.base)


source = CloudBillingCatalog()
