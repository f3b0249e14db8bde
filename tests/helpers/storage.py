"""The storage backends of the checkpoint contract tests: names, and how fsspec reaches each."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fsspec
import pytest

REPO = Path(__file__).resolve().parents[2]
AZURITE_BIN = REPO / ".venv" / "azurite" / "node_modules" / ".bin" / "azurite-blob"
BUCKET = "multispot-storage-tests"
AZURITE_ACCOUNT = "devstoreaccount1"
# Azurite's published development key (public, documented; it opens nothing but the emulator).
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="

BACKENDS = ("file", "memory", "s3", "gs", "az")
CLOUDS = ("s3", "gs", "az")


@dataclass(frozen=True)
class Backend:
    """One storage backend: where its test URIs live and the fsspec options that reach it."""

    name: str
    root: str  # e.g. "s3://multispot-storage-tests"
    conf: dict[str, dict[str, Any]] = field(default_factory=dict)  # fsspec.config.conf entries

    def uri(self) -> str:
        return f"{self.root}/{uuid.uuid4().hex[:12]}"

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        for protocol, options in self.conf.items():
            monkeypatch.setitem(fsspec.config.conf, protocol, dict(options))


def cleanup(uri: str) -> None:
    """Remove everything under ``uri`` (emulators keep objects in RAM for the whole session)."""
    fs, root = fsspec.core.url_to_fs(uri)
    try:
        fs.rm(root, recursive=True)
    except (FileNotFoundError, OSError):
        pass
