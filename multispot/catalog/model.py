"""Offers (an instance shape in a region, with its prices) and how a Job's resources resolve to one.

Accelerator names are canonical across clouds ("V100", "A100-80GB", ...); each offer also keeps
the service's own name (Vertex's ``NVIDIA_TESLA_V100``) for the adapter to put in the request.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, replace
from datetime import date
from typing import TYPE_CHECKING, Any

from multispot.errors import NoMatchingInstance

if TYPE_CHECKING:
    from multispot.job import Resources

MARKETS = ("spot", "on-demand")

# canonical name -> spellings users and services use (compared case-insensitively, '-'/'_' alike)
_ALIASES: dict[str, tuple[str, ...]] = {
    "T4": ("TESLA_T4", "NVIDIA_TESLA_T4", "T4-16GB"),
    "V100": ("TESLA_V100", "NVIDIA_TESLA_V100", "V100-16GB"),
    "A10G": ("NVIDIA_A10G",),
    "A10": ("NVIDIA_A10",),
    "L4": ("NVIDIA_L4",),
    "A100": ("A100-40GB", "NVIDIA_TESLA_A100", "A100_40GB", "A100-40G"),
    "A100-80GB": ("NVIDIA_A100_80GB", "A100-80G", "A100_80GB"),
    "H100": ("H100-80GB", "NVIDIA_H100_80GB", "H100_80GB"),
}


def _key(name: str) -> str:
    return re.sub(r"[-_\s]", "", name).upper()


_CANONICAL = {_key(alias): name for name, aliases in _ALIASES.items() for alias in (name, *aliases)}


def canonical_accelerator(name: str) -> str:
    """``"nvidia_tesla_v100"`` → ``"V100"``; an unknown name comes back upper-cased as given."""
    return _CANONICAL.get(_key(name), name.strip().upper())


def parse_accelerator(spec: str) -> tuple[str, int]:
    """``"A100:8"`` → ``("A100", 8)``; a bare name means one."""
    name, _, count = spec.partition(":")
    if not name.strip():
        raise ValueError(f"{spec!r}: expected NAME[:COUNT], e.g. 'A100:8'")
    try:
        n = int(count) if count else 1
    except ValueError:
        raise ValueError(f"{spec!r}: the count after ':' must be a whole number") from None
    if n < 1:
        raise ValueError(f"{spec!r}: the count must be at least 1")
    return canonical_accelerator(name), n


@dataclass(frozen=True)
class Offer:
    """One instance shape in one region with its hourly prices (USD per instance)."""

    provider: str
    region: str
    instance_type: str
    accelerator: str | None = None
    accelerator_count: int = 0
    accelerator_type: str | None = None  # the service's own name for the accelerator
    vcpus: float | None = None
    memory_gb: float | None = None
    on_demand: float | None = None
    spot: float | None = None
    spot_estimated: bool = False  # the provider publishes no spot price: an estimate
    price_date: str = ""
    source: str = ""

    def price(self, market: str) -> float | None:
        if market not in MARKETS:
            raise ValueError(f"market must be one of {MARKETS}, not {market!r}")
        return self.spot if market == "spot" else self.on_demand

    @property
    def discount(self) -> float | None:
        """The spot discount as a fraction of the on-demand price."""
        if self.spot is None or not self.on_demand:
            return None
        return 1.0 - self.spot / self.on_demand

    @property
    def accelerators(self) -> str:
        return f"{self.accelerator}:{self.accelerator_count}" if self.accelerator else "-"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "discount": self.discount}


def _fmt(value: float | None) -> str:
    return "?" if value is None else f"{value:g}"


@dataclass(frozen=True)
class Wanted:
    """What a Job's ``resources`` ask of one node."""

    instance_type: str | None = None
    accelerator: str | None = None
    accelerator_count: int = 0
    cpus: float | None = None
    memory_gb: float | None = None

    @classmethod
    def from_resources(cls, resources: Resources) -> Wanted:
        name, count = parse_accelerator(resources.accelerator) if resources.accelerator else (None, 0)
        return cls(resources.instance_type, name, count, resources.cpus, resources.memory_gb)

    def fits(self, offer: Offer) -> bool:
        if self.instance_type is not None and offer.instance_type != self.instance_type:
            return False
        if self.accelerator is not None and (offer.accelerator, offer.accelerator_count) != (
            self.accelerator,
            self.accelerator_count,
        ):
            return False
        if self.accelerator is None and self.instance_type is None and offer.accelerator is not None:
            return False  # no accelerator asked for: never pick a GPU machine by accident
        if self.cpus is not None and (offer.vcpus or 0) < self.cpus:
            return False
        return not (self.memory_gb is not None and (offer.memory_gb or 0) < self.memory_gb)

    def describe(self) -> str:
        parts = []
        if self.instance_type:
            parts.append(f"instance type {self.instance_type}")
        if self.accelerator:
            parts.append(f"{self.accelerator}:{self.accelerator_count}")
        if self.cpus:
            parts.append(f">= {self.cpus:g} vCPU")
        if self.memory_gb:
            parts.append(f">= {self.memory_gb:g} GiB")
        return ", ".join(parts) or "a CPU instance"


@dataclass
class Catalog:
    """Every offer the catalog knows, with where each provider's figures came from."""

    offers: list[Offer]
    dates: dict[str, str] = field(default_factory=dict)  # provider -> date of its prices
    origins: dict[str, str] = field(default_factory=dict)  # provider -> "snapshot" | path of the user's copy
    notes: dict[str, str] = field(default_factory=dict)  # provider -> how its spot prices are billed

    def providers(self) -> list[str]:
        return sorted({o.provider for o in self.offers})

    def age_days(self, provider: str, today: date | None = None) -> int | None:
        stamp = self.dates.get(provider)
        if not stamp:
            return None
        return ((today or date.today()) - date.fromisoformat(stamp[:10])).days

    def find(
        self,
        provider: str | None = None,
        region: str | None = None,
        accelerator: str | None = None,
        count: int | None = None,
    ) -> list[Offer]:
        acc = canonical_accelerator(accelerator) if accelerator else None
        return [
            o
            for o in self.offers
            if (provider is None or o.provider == provider)
            and (region is None or o.region == region)
            and (acc is None or o.accelerator == acc)
            and (count is None or o.accelerator_count == count)
        ]

    def lookup(
        self, provider: str, instance_type: str, region: str | None, accelerator: str | None = None
    ) -> Offer | None:
        """The offer for an instance type (and, on Vertex, the accelerator attached to it)."""
        wanted_acc = parse_accelerator(accelerator) if accelerator else None
        found = [
            o
            for o in self.offers
            if o.provider == provider
            and o.instance_type == instance_type
            and (region is None or o.region == region)
            and (wanted_acc is None or (o.accelerator, o.accelerator_count) == wanted_acc)
        ]
        if wanted_acc is None and len({(o.accelerator, o.accelerator_count) for o in found}) > 1:
            bare = [o for o in found if o.accelerator is None]
            found = bare or found
        return min(found, key=_sort_key("on-demand")) if found else None

    def matches(
        self,
        provider: str,
        resources: Resources,
        regions: list[str] | None = None,
        market: str = "spot",
    ) -> list[Offer]:
        """Every offer of ``provider`` that meets ``resources``, cheapest first for ``market``."""
        wanted = Wanted.from_resources(resources)
        found = [
            o
            for o in self.offers
            if o.provider == provider and (not regions or o.region in regions) and wanted.fits(o)
        ]
        return sorted(found, key=_sort_key(market))

    def resolve(
        self, provider: str, resources: Resources, region: str | None = None, market: str = "spot"
    ) -> Offer:
        """The cheapest offer meeting ``resources``; an explicit instance type always wins."""
        found = self.matches(provider, resources, [region] if region else None, market)
        if found:
            return found[0]
        wanted = Wanted.from_resources(resources)
        if wanted.instance_type:  # not in the catalog: run it anyway, prices unknown
            return Offer(
                provider=provider,
                region=region or "",
                instance_type=wanted.instance_type,
                accelerator=wanted.accelerator,
                accelerator_count=wanted.accelerator_count,
                accelerator_type=wanted.accelerator,
                vcpus=wanted.cpus,
                memory_gb=wanted.memory_gb,
                source="not in the catalog: prices unknown",
            )
        where = f" in {region}" if region else ""
        raise NoMatchingInstance(
            f"no {provider} instance{where} has {wanted.describe()}", self.closest(provider, wanted, region)
        )

    def closest(self, provider: str, wanted: Wanted, region: str | None, limit: int = 5) -> list[Offer]:
        """Offers nearest to what was asked: same accelerator first, then more of it, then cheaper."""
        pool = [o for o in self.offers if o.provider == provider]
        in_region = [o for o in pool if region is None or o.region == region]
        pool = in_region or pool

        def distance(o: Offer) -> tuple[float, ...]:
            same_acc = o.accelerator == wanted.accelerator
            count_gap = abs(o.accelerator_count - wanted.accelerator_count)
            short = max(0.0, (wanted.cpus or 0) - (o.vcpus or 0)) + max(
                0.0, (wanted.memory_gb or 0) - (o.memory_gb or 0)
            )
            return (not same_acc, count_gap, short, o.on_demand or float("inf"))

        unique: dict[tuple[str, str | None, int], Offer] = {}
        for offer in sorted(pool, key=distance):
            unique.setdefault((offer.instance_type, offer.accelerator, offer.accelerator_count), offer)
        return list(unique.values())[:limit]

    def with_offers(self, provider: str, offers: list[Offer], date_: str, origin: str) -> Catalog:
        """A copy where ``provider``'s offers are replaced."""
        kept = [o for o in self.offers if o.provider != provider]
        return replace(
            self,
            offers=kept + offers,
            dates={**self.dates, provider: date_},
            origins={**self.origins, provider: origin},
        )


def _sort_key(market: str) -> Any:
    def key(o: Offer) -> tuple[float, float, str, str]:
        price = o.price(market)
        other = o.on_demand
        return (
            float("inf") if price is None else price,
            float("inf") if other is None else other,
            o.region,
            o.instance_type,
        )

    return key
