"""Azure Blob Storage through adlfs: the Content-MD5 Azure keeps for blobs put in one request.

Azure computes and stores a blob's Content-MD5 when the blob is written by one Put Blob; a blob
committed from blocks (Put Block List) keeps none unless the client sets one, which Azure does not
check (https://learn.microsoft.com/rest/api/storageservices/put-block-list); the CRC64 of a block
is checked in transit and not kept. So only blobs of at most ``SINGLE_PUT_LIMIT`` (the
azure-storage-blob ``max_single_put_size`` default, below which ``upload_blob`` sends one Put Blob)
get a store checksum; larger ones are verified by hashing their bytes. Azurite behaves the same
way (Content-MD5 on Put Blob, none on a block list: tested in tests/storage/test_object_stores.py).

adlfs uploads larger blobs as blocks staged ``max_concurrency`` at a time (``upload_blob``).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from typing import Any

from multispot.checkpoint.manifest import StoreChecksum
from multispot.checkpoint.storage import ObjectStore

ALGORITHM = "azure-md5"
SINGLE_PUT_LIMIT = 64 * 1024 * 1024


class SinglePutMd5:
    """MD5 of the bytes while the blob can still go in one Put Blob; nothing beyond."""

    def __init__(self) -> None:
        self._md5: Any = hashlib.md5(usedforsecurity=False)
        self._size = 0

    def update(self, data: memoryview) -> None:
        self._size += len(data)
        if self._size <= SINGLE_PUT_LIMIT:
            self._md5.update(data)
        else:
            self._md5 = None

    def result(self, size: int) -> StoreChecksum | None:
        if self._md5 is None or size > SINGLE_PUT_LIMIT:
            return None
        return StoreChecksum(ALGORITHM, base64.b64encode(self._md5.digest()).decode())


class AzureBlobStorage(ObjectStore):
    def store_hasher(self) -> SinglePutMd5:
        return SinglePutMd5()

    def put_options(self) -> dict[str, Any]:
        return {"max_concurrency": self.transfer.concurrency}

    def checksum_in(self, info: Mapping[str, Any]) -> StoreChecksum | None:
        settings = info.get("content_settings")
        md5 = (
            settings.get("content_md5")
            if isinstance(settings, dict)
            else getattr(settings, "content_md5", None)
        )
        if not md5:
            return None
        return StoreChecksum(ALGORITHM, base64.b64encode(bytes(md5)).decode())
