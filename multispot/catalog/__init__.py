"""Prices and instance shapes of the managed ML services: a dated snapshot shipped in the package,
refreshable from the providers' public price sources (``multispot catalog refresh``)."""

from multispot.catalog.files import load_catalog
from multispot.catalog.model import Catalog, Offer, canonical_accelerator, parse_accelerator
from multispot.catalog.prices import PriceTable, compare
from multispot.errors import CatalogError, NoMatchingInstance, UserEditedCatalog

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
