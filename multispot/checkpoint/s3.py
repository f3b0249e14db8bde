"""S3 through s3fs: the checksum S3 keeps for an object, and the arguments of its parallel upload.

S3 stores an object's CRC32 when the upload carries one (botocore sends ``x-amz-checksum-crc32``
on every PutObject and UploadPart by default since 1.36; CRC32C and CRC64NVME would need the
``awscrt`` package, which a job's image may lack). A single PUT gets the CRC32 of the whole object
(``ChecksumType`` FULL_OBJECT); a multipart upload created with ``ChecksumAlgorithm=CRC32`` gets a
COMPOSITE one: the CRC32 of the parts' big-endian CRC32s, reported as ``<base64>-<parts>``
(https://docs.aws.amazon.com/AmazonS3/latest/userguide/checking-object-integrity.html).
moto's server keeps both kinds but reports a composite value without its ``-<parts>``; the part
count is then taken from the multipart ETag (``"<md5>-<parts>"``).

s3fs uploads a file of at least two parts as a multipart upload, ``max_concurrency`` parts at a
time (``S3FileSystem.pipe_file`` from memory, ``put_file`` from a local file); smaller files in one
PUT.
"""

from __future__ import annotations

import base64
import zlib
from collections.abc import Mapping
from typing import Any

from multispot.checkpoint.manifest import StoreChecksum
from multispot.checkpoint.storage import ObjectStore, fingerprint

ALGORITHM = "s3-crc32"
MAX_PARTS = 10_000  # S3's limit; s3fs does not grow an explicit part size to stay under it


def _b64(crc: int) -> str:
    return base64.b64encode(crc.to_bytes(4, "big")).decode()


class Crc32Parts:
    """S3's CRC32 of an object uploaded by s3fs with ``chunksize=part_size``: whole-object while
    it can still be a single PUT (under two parts), composite over the parts otherwise."""

    def __init__(self, part_size: int) -> None:
        self.part_size = part_size
        self.size = 0
        self.whole = 0
        self.parts: list[int] = []
        self.current = 0

    def update(self, data: memoryview) -> None:
        single = 2 * self.part_size - self.size
        if single > 0:
            self.whole = zlib.crc32(data[:single], self.whole)
        while len(data):
            room = self.part_size - self.size % self.part_size
            piece, data = data[:room], data[room:]
            self.current = zlib.crc32(piece, self.current)
            self.size += len(piece)
            if self.size % self.part_size == 0:
                self.parts.append(self.current)
                self.current = 0

    def result(self, size: int) -> StoreChecksum | None:
        if size < 2 * self.part_size:
            return StoreChecksum(ALGORITHM, _b64(self.whole))
        parts = self.parts + ([self.current] if self.size % self.part_size else [])
        if len(parts) > MAX_PARTS:
            return None
        joined = b"".join(crc.to_bytes(4, "big") for crc in parts)
        return StoreChecksum(ALGORITHM, f"{_b64(zlib.crc32(joined))}-{len(parts)}")


class S3Storage(ObjectStore):
    def store_hasher(self) -> Crc32Parts:
        return Crc32Parts(self.transfer.part_size)

    def put_options(self) -> dict[str, Any]:
        return {
            "chunksize": self.transfer.part_size,
            "max_concurrency": self.transfer.concurrency,
            "ChecksumAlgorithm": "CRC32",
        }

    def find(self, path: str) -> dict[str, dict[str, Any]]:
        """One listing of ``path/``: s3fs's ``find`` of an empty prefix (a step not saved yet) would
        add a HEAD and a listing of ``path`` as a file; with a ``prefix`` it neither does that nor
        caches the (partial) listing."""
        base = path.rstrip("/")
        parent, _, name = base.rpartition("/")
        if not parent:  # a bucket itself
            return super().find(path)
        found = self.fs.find(parent, prefix=f"{name}/", detail=True)
        return {
            str(p): dict(info)
            for p, info in found.items()
            if info.get("type") == "file" and str(p).startswith(f"{base}/")
        }

    def describe(self, path: str) -> tuple[StoreChecksum | None, dict[str, str] | None]:
        """One HEAD with ``ChecksumMode=ENABLED``: the CRC32 and the fields s3fs's own ``info``
        takes from the same HEAD (size, ETag, LastModified, VersionId), so the fingerprint compares
        with a listing's as ``info``'s would."""
        bucket, key, version = self.fs.split_path(path)
        self.fs.invalidate_cache(path)
        try:
            head = self.fs.call_s3(
                "head_object",
                Bucket=bucket,
                Key=key,
                ChecksumMode="ENABLED",
                **({"VersionId": version} if version else {}),
            )
        except FileNotFoundError:
            return None, None
        info = {
            "size": head["ContentLength"],
            "ETag": head.get("ETag", ""),
            "LastModified": head.get("LastModified", ""),
            "VersionId": head.get("VersionId"),
        }
        return _crc32_of(head), fingerprint(info)


def _crc32_of(head: Mapping[str, Any]) -> StoreChecksum | None:
    value = head.get("ChecksumCRC32")
    if not isinstance(value, str):
        return None  # uploaded without a CRC32 (or with another algorithm): hash the bytes
    etag = str(head.get("ETag", "")).strip('"')
    composite = head.get("ChecksumType") == "COMPOSITE" or (head.get("ChecksumType") is None and "-" in etag)
    if composite and "-" not in value and "-" in etag:
        value = f"{value}-{etag.rsplit('-', 1)[1]}"
    return StoreChecksum(ALGORITHM, value)
