"""Catalog files: the dated snapshot shipped in the package and the user's refreshed copies.

One JSON document per provider: ``shapes`` (hardware, keyed by ``id``) and ``prices`` (one entry
per shape and region). ``catalog refresh`` writes ``$MULTISPOT_HOME/catalog/<provider>.json``
with a ``.sha256`` beside it; a copy whose hash no longer matches was edited by the user and is
never overwritten without ``force`` (and then a backup is kept).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from importlib import resources as package_files
from pathlib import Path
from typing import Any

from multispot.catalog.model import Catalog, Offer
from multispot.errors import CatalogError, UserEditedCatalog

SCHEMA_KEYS = ("provider", "date", "shapes", "prices")


def user_dir() -> Path:
    """``$MULTISPOT_HOME/catalog``, not created here: reading the catalog must leave no trace."""
    return Path(os.environ.get("MULTISPOT_HOME") or Path.home() / ".multispot").expanduser() / "catalog"


def catalog_providers() -> tuple[str, ...]:
    """The providers the catalog knows: one packaged snapshot ``data/<provider>.json`` each."""
    folder = package_files.files("multispot.catalog").joinpath("data")
    return tuple(sorted(f.name.removesuffix(".json") for f in folder.iterdir() if f.name.endswith(".json")))


def packaged(provider: str) -> dict[str, Any]:
    """The snapshot shipped for ``provider``; CatalogError naming the known ones when there is none."""
    path = package_files.files("multispot.catalog").joinpath("data", f"{provider}.json")
    if not path.is_file():
        raise CatalogError(
            f"no packaged catalog for provider {provider!r}: the catalog knows {', '.join(catalog_providers())}"
        )
    doc: dict[str, Any] = json.loads(path.read_text())
    return doc


def offers_of(doc: dict[str, Any]) -> list[Offer]:
    """The offers a catalog document describes; a malformed one raises CatalogError naming the entry."""
    missing = [k for k in SCHEMA_KEYS if k not in doc]
    if missing:
        raise CatalogError(f"catalog document lacks {', '.join(missing)}")
    provider, default_source = str(doc["provider"]), str(doc.get("source", ""))
    shapes = {str(s["id"]): s for s in doc["shapes"]}
    offers = []
    for i, price in enumerate(doc["prices"]):
        shape = shapes.get(str(price.get("id")))
        if shape is None:
            raise CatalogError(f"prices[{i}]: no shape with id {price.get('id')!r}")
        try:
            offers.append(
                Offer(
                    provider=provider,
                    region=str(price["region"]),
                    instance_type=str(shape["instance_type"]),
                    accelerator=shape.get("accelerator"),
                    accelerator_count=int(shape.get("accelerator_count") or 0),
                    accelerator_type=shape.get("accelerator_type"),
                    vcpus=_num(shape.get("vcpus")),
                    memory_gb=_num(shape.get("memory_gb")),
                    on_demand=_num(price.get("on_demand")),
                    spot=_num(price.get("spot")),
                    spot_estimated=bool(price.get("spot_estimated", False)),
                    price_date=str(price.get("date") or doc["date"]),
                    source=str(price.get("source") or default_source),
                )
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise CatalogError(f"prices[{i}] ({price.get('id')}): {exc}") from exc
    return offers


def _num(value: Any) -> float | None:
    return None if value is None else float(value)


def load_catalog(providers: tuple[str, ...] | None = None) -> Catalog:
    """The user's refreshed copy of each provider (default: every packaged one) where there is a
    valid one, else the snapshot."""
    catalog = Catalog([])
    for provider in catalog_providers() if providers is None else providers:
        doc, origin = packaged(provider), "snapshot"
        path = user_dir() / f"{provider}.json"
        if path.exists():
            try:
                mine = json.loads(path.read_text())
                offers_of(mine)
                doc, origin = mine, str(path)
            except (OSError, ValueError, CatalogError) as exc:
                catalog.notes[f"{provider}:error"] = f"{path} is unreadable ({exc}); using the snapshot"
        catalog = catalog.with_offers(provider, offers_of(doc), str(doc["date"]), origin)
        if doc.get("spot_note"):
            catalog.notes[provider] = str(doc["spot_note"])
    return catalog


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def edited_by_user(path: Path) -> bool:
    """True when ``path`` exists and is not exactly what refresh last wrote there."""
    if not path.exists():
        return False
    stamp = path.with_name(path.name + ".sha256")
    try:
        return stamp.read_text().strip() != _sha256(path.read_bytes())
    except OSError:
        return True  # no stamp: the user put this file there


def write_user_copy(doc: dict[str, Any], force: bool = False) -> Path:
    """Atomically write a refreshed document; refuse to replace a hand-edited copy unless ``force``."""
    offers_of(doc)  # never write something load_catalog would reject
    folder = user_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{doc['provider']}.json"
    if edited_by_user(path):
        if not force:
            raise UserEditedCatalog(
                f"{path} was edited by hand since the last refresh; not overwriting it. "
                "Move it away, or refresh with --force (the current file is kept as a .bak)."
            )
        backup = path.with_name(f"{path.name}.{time.strftime('%Y%m%dT%H%M%S')}.bak")
        path.replace(backup)
    data = (json.dumps(doc, indent=1) + "\n").encode()
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    path.with_name(path.name + ".sha256").write_text(_sha256(data) + "\n")
    return path
