"""Refresh: rebuild a provider's prices from its public price source.

The parsers live with the adapters: each registers a :class:`PriceSource` under the entry-point
group ``multispot.price_sources`` (name = provider), exactly as a third-party adapter would, and
:func:`refresh_document` dispatches to it by the provider's name. A source reads its service's
documented price format and returns prices per (shape id, region); the hardware (shapes) stays
the packaged one (:func:`rebuild`). Only stdlib HTTP here: no cloud SDK is needed to refresh.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from importlib.metadata import entry_points
from typing import Any, Protocol, runtime_checkable

from multispot.catalog.files import packaged
from multispot.errors import CatalogError

GROUP = "multispot.price_sources"

Fetch = Callable[[str], Any]  # URL -> parsed JSON


@dataclass(frozen=True)
class Price:
    on_demand: float | None
    spot: float | None
    spot_estimated: bool = False


PriceTable = dict[tuple[str, str], Price]  # (shape id, region) -> prices


@dataclass(frozen=True)
class RefreshRequest:
    """What a price source is asked for."""

    base: dict[str, Any]  # the packaged catalog document: shapes, and hints such as discount estimates
    regions: tuple[str, ...]  # the source's default regions unless the user named some
    fetch: Fetch  # URL -> parsed JSON (stdlib HTTP; a test's fake)
    api_key: str | None = None  # for sources that need one
    raw: Any = None  # a saved response of the source, used instead of fetching


@runtime_checkable
class PriceSource(Protocol):
    """A provider's public price source; the entry point names an object with these members."""

    description: str  # recorded as the refreshed document's ``source``
    regions: tuple[str, ...]  # fetched when the user names none

    def prices(self, request: RefreshRequest) -> PriceTable:
        """Prices per (shape id, region); CatalogError with the reason when it cannot."""
        ...


def http_json(url: str, timeout: float = 60.0) -> Any:
    request = urllib.request.Request(url, headers={"User-Agent": "multispot-catalog-refresh"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.load(response)


def registered() -> list[str]:
    """Providers with a registered price source, without importing any of them."""
    return sorted({ep.name for ep in entry_points(group=GROUP)})


def price_source(provider: str) -> PriceSource:
    """The price source registered for ``provider``; CatalogError listing the registered ones if none."""
    found = [ep for ep in entry_points(group=GROUP) if ep.name == provider]
    if not found:
        known = ", ".join(registered()) or "none"
        raise CatalogError(f"no price source for provider {provider!r}: registered price sources are {known}")
    try:
        source = found[0].load()
    except ImportError as exc:
        raise CatalogError(f"the price source of {provider!r} cannot be loaded ({exc})") from exc
    if isinstance(source, type) or not isinstance(source, PriceSource):
        raise CatalogError(f"{found[0].value} is not a multispot PriceSource (description, regions, prices)")
    return source


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
    source = price_source(provider)
    request = RefreshRequest(packaged(provider), regions or source.regions, fetch, api_key, raw)
    return rebuild(provider, source.prices(request), source.description)
