"""The checkpoint checksum: sha256 over the sha256 digests of each consecutive 8 MiB chunk.

A plain sha256 of a whole file is one sequential stream, so saving and verifying a checkpoint
would run at one core's hashing speed (about 1 GB/s) whatever the storage can do. Chunk digests
are independent: they are computed on a small thread pool (hashlib releases the GIL) while the
file streams, so a save or a verification runs at the storage's bandwidth on a machine with a
few cores. The file's digest is ``sha256(sha256(chunk_0) || sha256(chunk_1) || ...)``; an empty
file has no chunks and the digest of the empty string.
"""

from __future__ import annotations

import hashlib
import os
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import IO, Any

ALGORITHM = "sha256-chunked-8MiB"
CHUNK = 8 * 1024 * 1024

_POOL: ThreadPoolExecutor | None = None


def _pool() -> ThreadPoolExecutor:
    global _POOL
    if _POOL is None:
        _POOL = ThreadPoolExecutor(
            max_workers=min(8, os.cpu_count() or 2), thread_name_prefix="multispot-hash"
        )
    return _POOL


def _chunk_digest(chunk: bytes) -> bytes:
    return hashlib.sha256(chunk).digest()


class ChunkedDigest:
    """Feed bytes in order with ``update``; chunks are hashed in the background as they fill."""

    def __init__(self) -> None:
        self.size = 0
        self._partial = bytearray()
        self._done: list[bytes] = []
        self._in_flight: deque[Future[bytes]] = deque()
        self._borrowed: list[Future[bytes]] = []  # chunks still reading the caller's buffer
        self._limit = 2 * (os.cpu_count() or 2)  # bounds the memory held by chunks not yet hashed

    def _submit(self, chunk: Any) -> Future[bytes]:
        if len(self._in_flight) >= self._limit:
            self._done.append(self._in_flight.popleft().result())
        try:
            future = _pool().submit(_chunk_digest, chunk)
        except RuntimeError:  # the interpreter is shutting down (an atexit save): hash right here
            future = Future()
            future.set_result(_chunk_digest(chunk))
        self._in_flight.append(future)
        return future

    def update(self, data: Any, settle: bool = True) -> None:
        """Add ``data``. Whole chunks are hashed straight from the caller's buffer (no copy), so
        with ``settle=False`` the caller must call ``settle()`` before it reuses the buffer — a
        writer does so after writing the same bytes, which then overlaps the hashing."""
        view = memoryview(data).cast("B")
        immutable = isinstance(data, bytes)
        self.size += len(view)
        start = 0
        if self._partial:
            take = min(CHUNK - len(self._partial), len(view))
            self._partial += view[:take]
            start = take
            if len(self._partial) == CHUNK:
                self._submit(bytes(self._partial))
                self._partial.clear()
        while len(view) - start >= CHUNK:
            future = self._submit(view[start : start + CHUNK])
            if not immutable:
                self._borrowed.append(future)
            start += CHUNK
        if start < len(view):
            self._partial += view[start:]
        if settle:
            self.settle()

    def settle(self) -> None:
        """Wait until no chunk still reads a buffer the caller passed to ``update``."""
        for future in self._borrowed:
            future.result()
        self._borrowed.clear()

    def hexdigest(self) -> str:
        if self._partial:
            self._submit(bytes(self._partial))
            self._partial.clear()
        digests = self._done + [future.result() for future in self._in_flight]
        self._done, self._in_flight = digests, deque()
        return hashlib.sha256(b"".join(digests)).hexdigest()


def digest_bytes(data: bytes) -> str:
    digest = ChunkedDigest()
    digest.update(data)
    return digest.hexdigest()


def digest_stream(stream: IO[bytes]) -> tuple[int, str]:
    """Size and digest of a stream read to its end."""
    digest = ChunkedDigest()
    while chunk := stream.read(CHUNK):
        digest.update(chunk)
    return digest.size, digest.hexdigest()
