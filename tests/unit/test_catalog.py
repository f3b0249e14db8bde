"""The price catalog: the shipped snapshot, resolution of resources, comparison, refresh parsers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from multispot_azureml.prices import azure_items, parse_azure_items
from multispot_sagemaker.prices import parse_aws_offer
from multispot_vertex.prices import gcp_skus, parse_gcp_skus

from multispot.catalog import canonical_accelerator, compare, load_catalog, parse_accelerator, sources
from multispot.catalog.files import catalog_providers, write_user_copy
from multispot.catalog.sources import Price, PriceTable, RefreshRequest, refresh_document
from multispot.errors import CatalogError, NoMatchingInstance, UserEditedCatalog
from multispot.job import Resources

PROVIDERS = ("sagemaker", "vertex", "azureml")  # the packaged snapshots


@pytest.fixture(autouse=True)
def _home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MULTISPOT_HOME", str(tmp_path / "home"))


# --------------------------------------------------------------------------- the snapshot


def test_snapshot_covers_the_common_shapes_with_dated_prices() -> None:
    cat = load_catalog()
    assert list(catalog_providers()) == cat.providers() == sorted(PROVIDERS)
    for provider in PROVIDERS:
        offers = cat.find(provider=provider)
        assert len({o.region for o in offers}) >= 2, provider
        assert any(o.accelerator is None for o in offers), f"{provider}: no CPU shape"
        for o in offers:
            assert o.price_date and o.source, o
            assert o.on_demand and o.on_demand > 0, o
            assert o.spot is not None and 0 < o.spot < o.on_demand, o
            assert o.vcpus and o.memory_gb, o
    accelerators = {o.accelerator for o in cat.offers}
    assert {"T4", "V100", "A10G", "A10", "L4", "A100", "A100-80GB", "H100"} <= accelerators
    for name in ("T4", "V100", "A100", "H100"):  # on every cloud
        assert {o.provider for o in cat.find(accelerator=name)} == set(PROVIDERS), name
    assert all(o.spot_estimated for o in cat.find(provider="sagemaker")), "SageMaker has no spot list"
    assert all(
        o.accelerator_type and o.accelerator_type.startswith("NVIDIA")
        for o in cat.find("vertex")
        if o.accelerator
    )


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("V100", ("V100", 1)),
        ("nvidia_tesla_v100:4", ("V100", 4)),
        ("a100-40gb:8", ("A100", 8)),
        ("A100_80GB:2", ("A100-80GB", 2)),
        ("H100-80GB", ("H100", 1)),
        ("mi300x:8", ("MI300X", 8)),  # unknown names pass through, upper-cased
    ],
)
def test_accelerator_names_are_canonical(spec: str, expected: tuple[str, int]) -> None:
    assert parse_accelerator(spec) == expected


@pytest.mark.parametrize("spec", ["", ":2", "V100:x", "V100:0"])
def test_bad_accelerator_specs_are_rejected(spec: str) -> None:
    with pytest.raises(ValueError):
        parse_accelerator(spec)


def test_canonical_is_idempotent() -> None:
    for name in ("T4", "V100", "A100", "A100-80GB", "H100", "L4", "A10G", "A10"):
        assert canonical_accelerator(name) == name
        assert canonical_accelerator(name.lower()) == name


# --------------------------------------------------------------------------- resolution


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("market", ["spot", "on-demand"])
def test_resolve_picks_the_cheapest_matching_offer(provider: str, market: str) -> None:
    cat = load_catalog()
    offer = cat.resolve(provider, Resources(accelerator="V100:1"), market=market)
    candidates = [
        o
        for o in cat.offers
        if o.provider == provider and (o.accelerator, o.accelerator_count) == ("V100", 1)
    ]
    assert candidates
    assert offer.price(market) == min(o.price(market) or float("inf") for o in candidates)


def test_resolve_honours_region_cpu_and_memory_minimums() -> None:
    cat = load_catalog()
    big = cat.resolve("sagemaker", Resources(cpus=10, memory_gb=50), region="us-west-2")
    assert big.region == "us-west-2" and big.accelerator is None
    assert (big.vcpus or 0) >= 10 and (big.memory_gb or 0) >= 50
    cheaper = [
        o
        for o in cat.find("sagemaker", "us-west-2")
        if o.accelerator is None and (o.vcpus or 0) >= 10 and (o.memory_gb or 0) >= 50
    ]
    assert big.spot == min(o.spot or 0 for o in cheaper)


def test_no_accelerator_never_picks_a_gpu_machine() -> None:
    cat = load_catalog()
    for provider in PROVIDERS:
        assert cat.resolve(provider, Resources()).accelerator is None


def test_explicit_instance_type_wins_even_outside_the_catalog() -> None:
    cat = load_catalog()
    pinned = cat.resolve("sagemaker", Resources(instance_type="ml.p3.8xlarge", accelerator="T4:1"))
    # the explicit type wins over the accelerator only when nothing fits both: here nothing does
    assert pinned.instance_type == "ml.p3.8xlarge" and pinned.on_demand is None
    known = cat.resolve("sagemaker", Resources(instance_type="ml.p3.8xlarge"), region="us-east-1")
    assert known.accelerator == "V100" and known.accelerator_count == 4 and known.on_demand
    odd = cat.resolve("azureml", Resources(instance_type="Standard_XYZ"), region="eastus")
    assert odd.instance_type == "Standard_XYZ" and odd.price("spot") is None


def test_no_match_lists_the_closest_options() -> None:
    with pytest.raises(NoMatchingInstance) as info:
        load_catalog().resolve("azureml", Resources(accelerator="V100:2"), region="eastus")
    closest = info.value.closest
    assert closest and all(o.accelerator == "V100" for o in closest[:3])
    assert "V100:1" in str(info.value) and "V100:4" in str(info.value)


def test_vertex_lookup_separates_accelerators_on_one_machine_type() -> None:
    cat = load_catalog()
    t4 = cat.lookup("vertex", "n1-standard-16", "us-central1", accelerator="T4:4")
    v100 = cat.lookup("vertex", "n1-standard-16", "us-central1", accelerator="V100:2")
    bare = cat.lookup("vertex", "n1-standard-16", "us-central1")
    assert t4 and t4.accelerator_type == "NVIDIA_TESLA_T4" and t4.accelerator_count == 4
    assert v100 and v100.accelerator_type == "NVIDIA_TESLA_V100"
    assert (
        bare
        and bare.accelerator is None
        and bare.on_demand
        and t4.on_demand
        and bare.on_demand < t4.on_demand
    )
    assert cat.lookup("vertex", "n1-standard-16", "us-central1", accelerator="H100:8") is None


# --------------------------------------------------------------------------- comparison


def test_compare_sorts_by_the_chosen_market_and_filters() -> None:
    cat = load_catalog()
    for market in ("spot", "on-demand"):
        table = compare(cat, "V100:1", market=market)
        prices = [o.price(market) or 0 for o in table.offers]
        assert prices == sorted(prices) and len({o.provider for o in table.offers}) == 3
        assert all((o.accelerator, o.accelerator_count) == ("V100", 1) for o in table.offers)
    any_count = compare(cat, "V100")
    assert {o.accelerator_count for o in any_count.offers} >= {1, 4, 8}
    only = compare(cat, "A100:8", providers=["vertex"], regions=["us-central1"])
    assert {(o.provider, o.region) for o in only.offers} == {("vertex", "us-central1")}
    data = json.loads(json.dumps(only.to_dict()))
    assert data["catalog"]["vertex"]["date"] and data["offers"][0]["discount"] > 0
    assert "<table>" in only._repr_html_()


# --------------------------------------------------------------------------- refresh parsers


def _aws_offer() -> dict[str, Any]:
    def product(sku: str, instance: str, region: str, component: str, usage: str) -> dict[str, Any]:
        return {
            "sku": sku,
            "productFamily": "ML Instance",
            "attributes": {
                "instanceName": instance,
                "regionCode": region,
                "component": component,
                "usagetype": usage,
            },
        }

    def term(sku: str, usd: str, unit: str = "Hrs") -> dict[str, Any]:
        return {
            f"{sku}.JRTCKXETXF": {
                "offerTermCode": "JRTCKXETXF",
                "priceDimensions": {
                    f"{sku}.JRTCKXETXF.6YS6EN2CT7": {"unit": unit, "pricePerUnit": {"USD": usd}}
                },
            }
        }

    return {
        "formatVersion": "v1.0",
        "offerCode": "AmazonSageMaker",
        "products": {
            "A": product("A", "ml.p3.2xlarge", "us-east-1", "Training", "USE1-Train:ml.p3.2xlarge"),
            "B": product("B", "ml.p3.2xlarge", "us-east-1", "Hosting", "USE1-Host:ml.p3.2xlarge"),
            "C": product("C", "ml.g5.xlarge", "us-west-2", "Training", "USW2-Train:ml.g5.xlarge"),
            "D": product("D", "ml.unknown.xlarge", "us-east-1", "Training", "USE1-Train:ml.unknown.xlarge"),
        },
        "terms": {
            "OnDemand": {
                "A": term("A", "4.0000000000"),
                "B": term("B", "9.9900000000"),
                "C": term("C", "1.5000000000"),
                "D": term("D", "1.0"),
            }
        },
    }


def test_aws_offer_file_parser_keeps_training_prices_and_estimates_spot() -> None:
    table = parse_aws_offer(_aws_offer(), {"ml.p3.2xlarge": 0.7, "ml.g5.xlarge": 0.6})
    assert set(table) == {("ml.p3.2xlarge", "us-east-1"), ("ml.g5.xlarge", "us-west-2")}
    p3 = table[("ml.p3.2xlarge", "us-east-1")]
    assert p3.on_demand == 4.0 and p3.spot == pytest.approx(1.2) and p3.spot_estimated
    with pytest.raises(Exception, match="offer file"):
        parse_aws_offer({"products": {}}, {})


def _azure_item(sku: str, region: str, price: float, name: str, **extra: Any) -> dict[str, Any]:
    return {
        "currencyCode": "USD",
        "retailPrice": price,
        "unitPrice": price,
        "armRegionName": region,
        "armSkuName": sku,
        "skuName": name,
        "meterName": name,
        "productName": extra.pop("productName", "Virtual Machines NCSv3 Series"),
        "serviceName": "Virtual Machines",
        "unitOfMeasure": "1 Hour",
        "type": extra.pop("type", "Consumption"),
        **extra,
    }


def test_azure_retail_parser_separates_pay_as_you_go_low_priority_and_windows() -> None:
    items = [
        _azure_item("Standard_NC6s_v3", "eastus", 3.0, "NC6s v3"),
        _azure_item("Standard_NC6s_v3", "eastus", 0.6, "NC6s v3 Low Priority"),
        _azure_item("Standard_NC6s_v3", "eastus", 0.5, "NC6s v3 Spot"),
        _azure_item(
            "Standard_NC6s_v3", "eastus", 4.5, "NC6s v3", productName="Virtual Machines NCSv3 Series Windows"
        ),
        _azure_item("Standard_NC6s_v3", "eastus", 1.9, "NC6s v3", type="Reservation"),
        _azure_item("Standard_NC6s_v3", "westus2", 3.1, "NC6s v3"),
        _azure_item("Standard_NC6s_v3", "westus2", 0.4, "NC6s v3 Spot"),
        _azure_item("Standard_Other", "eastus", 1.0, "Other"),
    ]
    table = parse_azure_items(items, {"Standard_NC6s_v3"})
    assert table[("Standard_NC6s_v3", "eastus")].on_demand == 3.0
    assert table[("Standard_NC6s_v3", "eastus")].spot == 0.6, "low priority wins over spot for Azure ML"
    assert table[("Standard_NC6s_v3", "westus2")].spot == 0.4, "spot when there is no low-priority meter"
    assert ("Standard_Other", "eastus") not in table


def test_azure_pages_follow_next_page_link() -> None:
    seen: list[str] = []
    pages = {
        "first": {
            "Items": [_azure_item("Standard_NC6s_v3", "eastus", 3.0, "NC6s v3")],
            "NextPageLink": "second",
        },
        "second": {
            "Items": [_azure_item("Standard_NC6s_v3", "eastus", 0.6, "NC6s v3 Low Priority")],
            "NextPageLink": None,
        },
    }

    def fetch(url: str) -> Any:
        seen.append(url)
        return pages["second" if url == "second" else "first"]

    items = azure_items(fetch, ["eastus"], ["Standard_NC6s_v3"])
    assert len(items) == 2 and seen[1] == "second"
    assert "armSkuName+eq+%27Standard_NC6s_v3%27" in seen[0] and "serviceName" in seen[0]


def _gcp_sku(description: str, usage: str, units: int, nanos: int, regions: list[str]) -> dict[str, Any]:
    return {
        "name": "services/C7E2-9256-1C43/skus/X",
        "description": description,
        "category": {"serviceDisplayName": "Vertex AI", "usageType": usage},
        "serviceRegions": regions,
        "pricingInfo": [
            {
                "pricingExpression": {
                    "usageUnit": "h",
                    "tieredRates": [
                        {
                            "startUsageAmount": 0,
                            "unitPrice": {"currencyCode": "USD", "units": "0", "nanos": 0},
                        },
                        {
                            "startUsageAmount": 1,
                            "unitPrice": {"currencyCode": "USD", "units": str(units), "nanos": nanos},
                        },
                    ],
                }
            }
        ],
    }


def test_gcp_billing_catalog_parser_builds_machine_plus_accelerator_prices() -> None:
    skus = [
        _gcp_sku(
            "Custom Training N1 Predefined Instance Core running in Americas",
            "OnDemand",
            0,
            40_000_000,
            ["us-central1"],
        ),
        _gcp_sku(
            "Custom Training N1 Predefined Instance Ram running in Americas",
            "OnDemand",
            0,
            5_000_000,
            ["us-central1"],
        ),
        _gcp_sku(
            "Custom Training Nvidia Tesla V100 GPU running in Americas",
            "OnDemand",
            2,
            500_000_000,
            ["us-central1"],
        ),
        _gcp_sku(
            "Custom Training Spot Preemptible N1 Instance Core running in Americas",
            "Preemptible",
            0,
            10_000_000,
            ["us-central1"],
        ),
        _gcp_sku(
            "Custom Training Spot Preemptible N1 Instance Ram running in Americas",
            "Preemptible",
            0,
            1_000_000,
            ["us-central1"],
        ),
        _gcp_sku(
            "Custom Training Spot Preemptible Nvidia Tesla V100 GPU running in Americas",
            "Preemptible",
            0,
            800_000_000,
            ["us-central1"],
        ),
        _gcp_sku(
            "Online Prediction Nvidia Tesla V100 GPU running in Americas", "OnDemand", 9, 0, ["us-central1"]
        ),
    ]
    from multispot.catalog.files import packaged

    table = parse_gcp_skus(skus, packaged("vertex"))
    v100 = table[("n1-standard-8/V100:1", "us-central1")]
    assert v100.on_demand == pytest.approx(8 * 0.04 + 30 * 0.005 + 2.5)
    assert v100.spot == pytest.approx(8 * 0.01 + 30 * 0.001 + 0.8)
    assert table[("n1-standard-4", "us-central1")].on_demand == pytest.approx(4 * 0.04 + 15 * 0.005)
    assert ("a2-highgpu-1g/A100:1", "us-central1") not in table, "no A2 SKUs in the sample: no price"


def test_gcp_pages_follow_next_page_token() -> None:
    urls: list[str] = []

    def fetch(url: str) -> Any:
        urls.append(url)
        return {"skus": [{"n": len(urls)}], "nextPageToken": "t2" if len(urls) == 1 else ""}

    assert len(gcp_skus(fetch, "KEY")) == 2
    assert "key=KEY" in urls[0] and "pageToken=t2" in urls[1] and "C7E2-9256-1C43" in urls[0]


def test_vertex_refresh_without_a_key_says_how() -> None:
    with pytest.raises(Exception, match="API key"):
        refresh_document("vertex", fetch=lambda url: pytest.fail("must not fetch without a key"))


# --------------------------------------------------------------------------- the user's copy


def test_refreshed_copy_is_used_and_hand_edits_are_never_overwritten(tmp_path: Path) -> None:
    doc = refresh_document(
        "azureml", raw={"Items": [_azure_item("Standard_NC6s_v3", "eastus", 2.5, "NC6s v3")]}
    )
    path = write_user_copy(doc)
    cat = load_catalog()
    assert cat.origins["azureml"] == str(path) and cat.origins["vertex"] == "snapshot"
    assert [(o.instance_type, o.on_demand) for o in cat.find("azureml")] == [("Standard_NC6s_v3", 2.5)]
    write_user_copy(doc)  # refresh over its own output: fine
    edited = json.loads(path.read_text())
    edited["prices"][0]["on_demand"] = 2.0
    path.write_text(json.dumps(edited))
    with pytest.raises(UserEditedCatalog):
        write_user_copy(doc)
    assert json.loads(path.read_text())["prices"][0]["on_demand"] == 2.0
    write_user_copy(doc, force=True)
    backups = list(path.parent.glob("azureml.json.*.bak"))
    assert len(backups) == 1 and json.loads(backups[0].read_text())["prices"][0]["on_demand"] == 2.0


def test_unreadable_user_copy_falls_back_to_the_snapshot(tmp_path: Path) -> None:
    folder = tmp_path / "home" / "catalog"
    folder.mkdir(parents=True)
    (folder / "sagemaker.json").write_text('{"provider": "sagemaker"')
    cat = load_catalog()
    assert cat.origins["sagemaker"] == "snapshot" and cat.find("sagemaker")
    assert "unreadable" in cat.notes["sagemaker:error"]


def test_refresh_that_finds_no_known_shape_writes_nothing() -> None:
    with pytest.raises(Exception, match="no price"):
        refresh_document("azureml", raw={"Items": [_azure_item("Standard_Other", "eastus", 1.0, "x")]})


# --------------------------------------------------------------------------- price sources


class _EntryPoint:
    """An installed plugin's entry point, as ``importlib.metadata`` lists it (name, value, load)."""

    def __init__(self, name: str, loaded: object) -> None:
        self.name, self.value, self._loaded = name, f"acme_prices:{name}", loaded

    def load(self) -> object:
        return self._loaded


class _FlatPrices:
    """A third party's price source: one price for every packaged shape, in the regions asked."""

    description = "Acme price sheet"
    regions = ("acme-north",)

    def __init__(self) -> None:
        self.requests: list[RefreshRequest] = []

    def prices(self, request: RefreshRequest) -> PriceTable:
        self.requests.append(request)
        return {(str(s["id"]), r): Price(2.0, 0.5) for s in request.base["shapes"] for r in request.regions}


def _register(monkeypatch: pytest.MonkeyPatch, name: str, loaded: object) -> None:
    from importlib.metadata import entry_points as installed

    def entry_points(group: str) -> list[object]:
        found: list[object] = list(installed(group=group))
        return [*found, _EntryPoint(name, loaded)] if group == sources.GROUP else found

    monkeypatch.setattr(sources, "entry_points", entry_points)


def test_first_party_price_sources_are_registered_like_a_third_partys() -> None:
    assert sources.registered() == sorted(PROVIDERS)
    for provider in PROVIDERS:
        assert isinstance(sources.price_source(provider), sources.PriceSource)


def test_refresh_uses_the_price_source_registered_for_the_provider(monkeypatch: pytest.MonkeyPatch) -> None:
    # a third-party adapter "acme": its snapshot (data file) and its price source, found by name
    snapshot = {
        "provider": "acme",
        "date": "2026-01-01",
        "shapes": [{"id": "a1", "instance_type": "a1.big", "vcpus": 8, "memory_gb": 32}],
        "prices": [{"id": "a1", "region": "acme-north", "on_demand": 3.0, "spot": 1.0}],
    }
    source = _FlatPrices()
    _register(monkeypatch, "acme", source)
    monkeypatch.setattr(sources, "packaged", lambda provider: snapshot if provider == "acme" else {})
    assert "acme" in sources.registered()
    doc = refresh_document("acme", fetch=lambda url: pytest.fail("the source fetches, not the core"))
    [request] = source.requests
    assert request.regions == ("acme-north",) and request.base is snapshot
    assert doc["source"] == "Acme price sheet" and doc["fetched"] is True
    assert doc["prices"] == [
        {"id": "a1", "region": "acme-north", "on_demand": 2.0, "spot": 0.5, "spot_estimated": False}
    ]
    refresh_document("acme", regions=("r1", "r2"), api_key="K")
    assert source.requests[1].regions == ("r1", "r2") and source.requests[1].api_key == "K"


def test_refresh_without_a_price_source_lists_the_registered_ones() -> None:
    with pytest.raises(CatalogError, match="no price source for provider 'acme'") as info:
        refresh_document("acme")
    assert "azureml, sagemaker, vertex" in str(info.value)


def test_a_price_source_entry_that_is_not_one_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    _register(monkeypatch, "acme", _FlatPrices)  # the class, not an instance
    with pytest.raises(CatalogError, match="not a multispot PriceSource"):
        refresh_document("acme")
