"""Prices and instance shapes of the managed ML services: a dated snapshot shipped in the package,
refreshable from the providers' public price sources (``multispot catalog refresh``)."""

from multispot.catalog.files import CatalogError, UserEditedCatalog, load_catalog
from multispot.catalog.model import (
    Catalog,
    NoMatchingInstance,
    Offer,
    canonical_accelerator,
    parse_accelerator,
)
from multispot.catalog.prices import PriceTable, compare

__all__ = [
    "Catalog",
    "CatalogError",
    "NoMatchingInstance",
    "Offer",
    "PriceTable",
    "UserEditedCatalog",
    "canonical_accelerator",
    "compare",
    "load_catalog",
    "parse_accelerator",
]
