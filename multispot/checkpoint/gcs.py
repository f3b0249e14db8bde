"""Google Cloud Storage through gcsfs: the CRC32C GCS keeps for every object.

GCS computes a CRC32C (and, for non-composite objects, an MD5) of every object it stores and
reports it in the object's metadata (``crc32c``, base64 of the big-endian value), whatever way the
object was uploaded (https://cloud.google.com/storage/docs/hashes-etags). gcp-storage-emulator
computes it too. The local computation needs ``google-crc32c``'s C extension (a dependency of
gcsfs through google-cloud-storage); without it (pure Python would run at a few MB/s) nothing is
recorded and verification hashes the bytes.

gcsfs uploads a large file as a resumable upload, one chunk after another: GCS's JSON API has no
parallel parts (a parallel composite upload would leave temporary objects and an object without
MD5), so uploads to GCS run as one stream; downloads use parallel ranged reads.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

from multispot.checkpoint.manifest import StoreChecksum
from multispot.checkpoint.storage import ObjectStore

ALGORITHM = "gcs-crc32c"


class Crc32c:
    def __init__(self, crc32c: Any) -> None:
        self._module, self._crc = crc32c, 0

    def update(self, data: memoryview) -> None:
        # The C extension takes bytes only (not even a read-only memoryview): a copy unless it is.
        whole = isinstance(data.obj, bytes) and len(data) == len(data.obj)
        self._crc = self._module.extend(self._crc, data.obj if whole else bytes(data))

    def result(self, size: int) -> StoreChecksum:
        return StoreChecksum(ALGORITHM, base64.b64encode(self._crc.to_bytes(4, "big")).decode())


class GcsStorage(ObjectStore):
    def store_hasher(self) -> Crc32c | None:
        try:
            import google_crc32c
        except ImportError:
            return None
        return Crc32c(google_crc32c) if google_crc32c.implementation == "c" else None

    def put_options(self) -> dict[str, Any]:
        return {"chunksize": self.transfer.part_size}

    def checksum_in(self, info: Mapping[str, Any]) -> StoreChecksum | None:
        value = info.get("crc32c")
        return StoreChecksum(ALGORITHM, value) if isinstance(value, str) else None
