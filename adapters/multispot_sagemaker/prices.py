"""SageMaker's price source for ``multispot catalog refresh``: the AWS Price List bulk offer file
of AmazonSageMaker, one per region (public, no credentials). Registered under the entry-point
group ``multispot.price_sources``; standard library only."""

from __future__ import annotations

from typing import Any

from multispot.catalog.sources import Price, PriceTable, RefreshRequest
from multispot.errors import CatalogError

AWS_OFFER_URL = (
    "https://pricing.us-east-1.amazonaws.com/offers/v1.0/aws/AmazonSageMaker/current/{region}/index.json"
)


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


class AwsPriceList:
    """The ``multispot.price_sources`` entry for ``sagemaker``."""

    description = "AWS Price List bulk offer file, AmazonSageMaker"
    regions = ("us-east-1", "us-west-2", "eu-west-1")

    def prices(self, request: RefreshRequest) -> PriceTable:
        discounts = {k: float(v) for k, v in request.base["spot_discount_estimate"].items()}
        offers = (
            [request.raw]
            if request.raw is not None
            else [request.fetch(AWS_OFFER_URL.format(region=r)) for r in request.regions]
        )
        table: PriceTable = {}
        for offer in offers:
            table.update(parse_aws_offer(offer, discounts))
        return table


source = AwsPriceList()
