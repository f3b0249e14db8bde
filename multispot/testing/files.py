"""Helpers for fakes of a cloud service that sync a running job's folders to emulated storage."""

from __future__ import annotations

import os
from pathlib import Path


def files_under(root: Path) -> list[Path]:
    """The files below ``root`` now, sorted; a folder the job deletes meanwhile (checkpoint
    retention) is skipped instead of failing the listing, as ``Path.rglob`` would."""
    return sorted(Path(folder) / name for folder, _, names in os.walk(root) for name in names)
