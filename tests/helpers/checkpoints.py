"""Checkpoint test helpers: an independent checksum and fresh memory:// locations."""

from __future__ import annotations

import hashlib
import io
import uuid
from typing import Any

import fsspec
import xxhash


def reference_digest(data: bytes) -> str:
    """The checkpoint checksum computed the simple way, independent of the streaming code: the
    xxh3-128 of the whole file, in one call."""
    return xxhash.xxh3_128(data).hexdigest()


def legacy_reference_digest(data: bytes) -> str:
    """The former checksum (``sha256-chunked-8MiB``): sha256 of the concatenated sha256 digests of
    consecutive 8 MiB chunks."""
    chunk = 8 * 1024 * 1024
    parts = [hashlib.sha256(data[i : i + chunk]).digest() for i in range(0, len(data), chunk)]
    return hashlib.sha256(b"".join(parts)).hexdigest()


def memory_uri() -> str:
    """A fresh memory:// location: the memory filesystem is process-global, so never share one."""
    return f"memory://multispot-tests/{uuid.uuid4().hex}"


def forget_memory(uri: str) -> None:
    fs = fsspec.filesystem("memory")
    root = uri[len("memory://") :]
    try:
        fs.rm(root, recursive=True)
    except FileNotFoundError:
        pass


class CountingFile(io.RawIOBase):
    """A storage file that counts the bytes read through it (to prove a restore reads them once)."""

    def __init__(self, inner: Any, counter: list[int]) -> None:
        self.inner, self.counter = inner, counter

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        return int(self.inner.seek(offset, whence))

    def tell(self) -> int:
        return int(self.inner.tell())

    def readinto(self, buffer: Any) -> int:
        n = int(self.inner.readinto(buffer) or 0)
        self.counter[0] += n
        return n

    def read(self, size: int = -1) -> bytes:
        data: bytes = self.inner.read(size)
        self.counter[0] += len(data)
        return data

    def close(self) -> None:
        self.inner.close()
        super().close()
