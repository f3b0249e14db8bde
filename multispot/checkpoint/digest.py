"""Checkpoint checksums: xxh3-128 for new checkpoints; the former chunked sha256 still verifies.

A checkpoint checksum guards against accidental corruption (a torn upload, a flipped bit, another
writer's bytes), not against an adversary: it has to cost nothing next to the storage, or every
save and restore runs at the hash's speed instead of the disk's. xxh3-128 hashes at 10+ GB/s on
one core (about ten times a fast disk and 25 times sha256 here), so it runs inline, as the bytes
stream; 128 bits make an accidental collision as unlikely as sha256's. A large write is hashed on
a helper thread while the caller's thread writes the same bytes (``write_hashed``), so the
checksum overlaps the I/O instead of adding to it.

``sha256-chunked-8MiB`` is the format manifests were written in before (sha256 over the sha256
digests of each consecutive 8 MiB chunk, hashed on a small thread pool): such manifests are still
read and verified with it, and a copy of such a checkpoint keeps it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import IO, Any, Protocol

try:
    import xxhash
except ImportError:  # a job's image without it: multispot ships pure-Python wheels only
    xxhash = None  # type: ignore[assignment]

XXH3 = "xxh3-128"
LEGACY_ALGORITHM = "sha256-chunked-8MiB"
ALGORITHMS = (XXH3, LEGACY_ALGORITHM)
# What new checkpoints are written with: xxh3-128 where xxhash is installed (a core dependency,
# so everywhere multispot was installed by pip); inside a job whose image lacks it (the shipped
# wheels are pure Python), the standard library's chunked sha256, which every reader verifies.
ALGORITHM = XXH3 if xxhash is not None else LEGACY_ALGORITHM
CHUNK = 8 * 1024 * 1024  # the legacy algorithm's chunk (and a good streaming size)

# A write of this size or more (``write_hashed``) is hashed on a helper thread while the caller's
# thread writes it; a smaller one is written and hashed on the caller's thread (a thread hop costs
# more than it saves there).
PIECE = 4 * 1024 * 1024

_POOL: ThreadPoolExecutor | None = None
_PIPE: ThreadPoolExecutor | None = None


class Hasher(Protocol):
    """What a checkpoint checksum offers: bytes in order, then the hex digest."""

    size: int

    def update(self, data: Any) -> None: ...

    def hexdigest(self) -> str: ...


class Xxh3:
    """xxh3-128 of the whole stream, hex."""

    def __init__(self) -> None:
        if xxhash is None:
            raise ModuleNotFoundError(
                "this checkpoint is checksummed with xxh3-128, which needs the xxhash package: pip install xxhash"
            )
        self.size = 0
        self._state = xxhash.xxh3_128()

    def update(self, data: Any) -> None:
        view = memoryview(data).cast("B")
        self.size += len(view)
        self._state.update(view)

    def hexdigest(self) -> str:
        return self._state.hexdigest()


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
    """The legacy ``sha256-chunked-8MiB``: feed bytes in order with ``update``; chunks are hashed
    in the background as they fill."""

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
        with ``settle=False`` the caller must call ``settle()`` before it reuses the buffer."""
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


def _pipe() -> ThreadPoolExecutor:
    global _PIPE
    if _PIPE is None:
        _PIPE = ThreadPoolExecutor(max_workers=2, thread_name_prefix="multispot-hash-pipe")
    return _PIPE


def write_hashed(digest: Hasher, view: memoryview, write: Callable[[memoryview], Any]) -> None:
    """Write all of ``view`` with ``write`` and feed it to ``digest``. From ``PIECE`` up, a helper
    thread hashes the bytes while this thread writes them: neither changes them, and xxh3 and the
    file's write both let go of the GIL, so on two cores the checksum costs no time beside the
    write. (Hashing piece by piece behind the write, as before, always left the last piece's hash
    after the write.) The write stays on the caller's thread: the page cache it fills then comes
    from the pages this CPU just freed; written from the other core, a save ran several times
    slower on this VM, whose fresh memory is slow to touch (docs/performance.md). Returns once
    both are done, so the caller may reuse ``view``."""
    pending: Future[None] | None = None
    if len(view) >= PIECE:
        # the interpreter shutting down (an atexit save) refuses the submit: all on this thread
        with contextlib.suppress(RuntimeError):
            pending = _pipe().submit(digest.update, view)
    try:
        write(view)
    finally:
        if pending is not None:
            pending.result()
    if pending is None:
        digest.update(view)


def hasher(algorithm: str = ALGORITHM) -> Hasher:
    """A fresh checksum of ``algorithm`` (one of ``ALGORITHMS``)."""
    if algorithm == XXH3:
        return Xxh3()
    if algorithm == LEGACY_ALGORITHM:
        return ChunkedDigest()
    raise ValueError(f"unknown checkpoint checksum {algorithm!r}; known: {', '.join(ALGORITHMS)}")


def digest_bytes(data: bytes, algorithm: str = ALGORITHM) -> str:
    digest = hasher(algorithm)
    digest.update(data)
    return digest.hexdigest()


def digest_stream(stream: IO[bytes], algorithm: str = ALGORITHM) -> tuple[int, str]:
    """Size and digest of a stream read to its end."""
    digest = hasher(algorithm)
    while chunk := stream.read(CHUNK):
        digest.update(chunk)
    return digest.size, digest.hexdigest()
