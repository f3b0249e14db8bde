"""The checkpoint contract: the same layout, commit and "latest" rule on every storage."""

from multispot.checkpoint.digest import ALGORITHM, LEGACY_ALGORITHM, digest_bytes, digest_stream
from multispot.checkpoint.manifest import (
    FORMAT_VERSION,
    LATEST,
    MANIFEST,
    FileEntry,
    Manifest,
    StoreChecksum,
    step_dir,
)
from multispot.checkpoint.store import (
    CheckpointStore,
    CheckpointWriter,
    RestoredCheckpoint,
    Verdict,
    copy_checkpoint,
)
from multispot.checkpoint.transfer import Transfer
from multispot.errors import CheckpointError, CheckpointExists, NoCheckpoint, SaveAbandoned

__all__ = [
    "ALGORITHM",
    "FORMAT_VERSION",
    "LATEST",
    "LEGACY_ALGORITHM",
    "MANIFEST",
    "CheckpointError",
    "CheckpointExists",
    "CheckpointStore",
    "CheckpointWriter",
    "FileEntry",
    "Manifest",
    "NoCheckpoint",
    "RestoredCheckpoint",
    "SaveAbandoned",
    "StoreChecksum",
    "Transfer",
    "Verdict",
    "copy_checkpoint",
    "digest_bytes",
    "digest_stream",
    "step_dir",
]
