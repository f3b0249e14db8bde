"""Checkpoint layout names and the MANIFEST that commits a step."""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from multispot.checkpoint.digest import ALGORITHM, ALGORITHMS
from multispot.errors import ManifestError

FORMAT_VERSION = 1
MANIFEST = "MANIFEST.json"
MANIFEST_PART_PREFIX = "MANIFEST.rank-"  # one per rank while several ranks save one step
LATEST = "LATEST"
_STEP_DIR = re.compile(r"^step-(\d{12})$")
_RESERVED = {MANIFEST, LATEST}


def step_dir(step: int) -> str:
    """``step-000000001200``: zero-padded so names sort as numbers on every store."""
    if step < 0 or step >= 10**12:
        raise ValueError(f"step {step} is out of range 0..999999999999")
    return f"step-{step:012d}"


def parse_step_dir(name: str) -> int | None:
    match = _STEP_DIR.match(name.rstrip("/").rsplit("/", 1)[-1])
    return int(match.group(1)) if match else None


def check_file_name(name: str) -> str:
    """A relative, normalised name inside a step directory."""
    parts = name.replace("\\", "/").split("/")
    if not name or name.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"{name!r} is not a plain relative file name inside a checkpoint")
    if name in _RESERVED or name.endswith(".tmp-manifest") or name.startswith(MANIFEST_PART_PREFIX):
        raise ValueError(f"{name!r} is reserved by the checkpoint contract")
    return "/".join(parts)


@dataclass(frozen=True)
class StoreChecksum:
    """The checksum an object store keeps for an object itself (``s3-crc32``, ``gcs-crc32c``,
    ``azure-md5``; see ``multispot.checkpoint.s3``/``gcs``/``azure_blob``), base64 as the store
    reports it. Recorded at commit only when multispot computed the same value over the bytes it
    hashed, so the store can later vouch for those bytes without a download."""

    algorithm: str
    value: str

    @classmethod
    def from_json(cls, data: Any) -> StoreChecksum | None:
        """Lenient: a shape this version does not know is ignored (the bytes are hashed instead),
        so a manifest from a later version stays a checkpoint."""
        if (
            isinstance(data, dict)
            and isinstance(data.get("algorithm"), str)
            and isinstance(data.get("value"), str)
        ):
            return cls(data["algorithm"], data["value"])
        return None


@dataclass(frozen=True)
class FileEntry:
    size: int
    digest: str  # see multispot.checkpoint.digest
    # Not part of equality: the same bytes on another store (a copy) have another store checksum.
    store: StoreChecksum | None = field(default=None, compare=False)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"size": self.size, "digest": self.digest}
        if self.store is not None:
            out["store_checksum"] = {"algorithm": self.store.algorithm, "value": self.store.value}
        return out

    @classmethod
    def from_json(cls, data: Any) -> FileEntry:
        return cls(
            int(data["size"]), str(data["digest"]), StoreChecksum.from_json(data.get("store_checksum"))
        )


@dataclass(frozen=True)
class Manifest:
    """Written last: a checkpoint exists iff its manifest exists and every file matches it."""

    step: int
    files: dict[str, FileEntry]
    time: str  # ISO 8601, UTC
    total_steps: int | None = None
    attempt: int | None = None
    job_id: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    format: int = FORMAT_VERSION
    hash: str = ALGORITHM  # the checksum of every file's ``digest`` (multispot.checkpoint.digest)

    @property
    def size(self) -> int:
        return sum(entry.size for entry in self.files.values())

    def to_json(self) -> str:
        data = asdict(self)
        data["files"] = {name: entry.to_json() for name, entry in self.files.items()}
        return json.dumps(data, indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> Manifest:
        try:
            data = json.loads(text)
            if not isinstance(data, dict):
                raise ManifestError("manifest is not a JSON object")
            if data.get("format") != FORMAT_VERSION:
                raise ManifestError(f"manifest format {data.get('format')!r}, expected {FORMAT_VERSION}")
            if data.get("hash") not in ALGORITHMS:
                raise ManifestError(
                    f"manifest hash {data.get('hash')!r} is not one of {', '.join(ALGORITHMS)}"
                )
            files = {check_file_name(name): FileEntry.from_json(e) for name, e in data["files"].items()}
            if not files:
                raise ManifestError("manifest lists no files")
            return cls(
                step=int(data["step"]),
                files=files,
                time=str(data["time"]),
                total_steps=None if data.get("total_steps") is None else int(data["total_steps"]),
                attempt=None if data.get("attempt") is None else int(data["attempt"]),
                job_id=data.get("job_id"),
                metadata=dict(data.get("metadata") or {}),
                hash=str(data["hash"]),
            )
        except ManifestError:
            raise
        except RecursionError:
            raise ManifestError("unreadable manifest: nested too deeply") from None
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ManifestError(f"unreadable manifest: {exc}") from exc
