"""Large files to and from object stores in parallel parts, with bounded memory.

Uploads are spooled (in memory up to ``concurrency`` parts, then to a local temporary file) and handed, whole,
to the fsspec filesystem's own parallel upload (s3fs multipart with ``max_concurrency``, adlfs
blocks with ``max_concurrency``, gcsfs's resumable upload): the store's multipart machinery is
used, not rewritten. Downloads have no such machinery that streams in order (s3fs and adlfs fetch
parts in parallel only into a whole local file or one bytes object), so ``PartReader`` serves a
sequential reader from ranged reads run ahead on a thread pool: parts complete in any order and
are consumed, and so hashed, in file order.
"""

from __future__ import annotations

import io
import os
import tempfile
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

MiB = 1024 * 1024
T = TypeVar("T")


@dataclass(frozen=True)
class Transfer:
    """How files move to and from an object store.

    ``part_size``: bytes per part, up and down (S3 wants at least 5 MiB; GCS's resumable chunks a
    multiple of 256 KiB: 16-64 MiB suits both). A file under two parts is one request on S3.
    ``concurrency``: parts in flight per file (also the s3fs/adlfs ``max_concurrency``); a file up
    to this many parts is uploaded from memory, a larger one spooled to a local temporary file. ``read_ahead``: bytes of parts fetched ahead of the
    readers, all readers of the process together; the part a reader needs now is always fetched.
    """

    part_size: int = 32 * MiB
    concurrency: int = 8
    read_ahead: int = 256 * MiB

    def __post_init__(self) -> None:
        if self.part_size < 5 * MiB or self.part_size % (256 * 1024):
            raise ValueError(
                f"part_size {self.part_size} must be at least 5 MiB and a multiple of 256 KiB "
                "(S3's smallest part, GCS's chunk unit): e.g. 16, 32 or 64 MiB"
            )
        if self.concurrency < 1 or self.read_ahead < 0:
            raise ValueError("concurrency must be at least 1 and read_ahead at least 0")

    @classmethod
    def from_settings(cls, settings: Mapping[str, int], source: str = "checkpoint.transfer") -> Transfer:
        """From a job's ``checkpoint.transfer`` section (``part_size_mib``, ``concurrency``,
        ``read_ahead_mib``; those left out keep their defaults). ``source`` names it in errors."""
        names = {"part_size_mib": "part_size", "concurrency": "concurrency", "read_ahead_mib": "read_ahead"}
        unknown = sorted(set(settings) - set(names))
        if unknown:
            raise ValueError(f"{source}: unknown setting {', '.join(unknown)}: use {', '.join(names)}")
        scale = {"part_size": MiB, "read_ahead": MiB, "concurrency": 1}
        values = {names[key]: value * scale[names[key]] for key, value in settings.items()}
        try:
            return cls(**values)
        except ValueError as exc:
            raise ValueError(f"{source}: {exc}") from exc


class _Budget:
    """Bytes that read-ahead parts may hold, process-wide; never blocks (a part it cannot take is
    simply fetched later, when its reader needs it)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.held = 0

    def take(self, size: int, limit: int) -> bool:
        with self._lock:
            if self.held + size > limit:
                return False
            self.held += size
            return True

    def give(self, size: int) -> None:
        with self._lock:
            self.held -= size


READ_AHEAD = _Budget()
_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def _pool() -> ThreadPoolExecutor:
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(max_workers=32, thread_name_prefix="multispot-transfer")
        return _POOL


def submit(fn: Callable[[], T]) -> Future[T]:
    """Run ``fn`` on the transfer pool."""
    try:
        return _pool().submit(fn)
    except RuntimeError:  # the interpreter is shutting down (an atexit save): run it right here
        future: Future[T] = Future()
        try:
            future.set_result(fn())
        except Exception as exc:
            future.set_exception(exc)
        return future


class PartReader(io.RawIOBase):
    """A read-only, seekable file over ranged reads of ``path``, ``concurrency`` parts ahead.

    A read waits only for the part it falls in; parts behind the reader are dropped, so memory is
    bounded by the read-ahead budget plus one part per open reader. A seek elsewhere drops the
    parts ahead that the new position does not need (a zip reader's jump to its directory and back).
    """

    def __init__(self, fs: Any, path: str, size: int, transfer: Transfer) -> None:
        self._fs, self._path, self._size, self._transfer = fs, path, size, transfer
        self._parts: dict[int, tuple[Future[bytes], int]] = {}  # index -> (fetch, budget held)
        self._pos = 0
        self.requests = 0  # ranged reads issued (for tests and benches)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        if base + offset < 0:
            raise ValueError(f"negative seek position {base + offset}")
        self._pos = base + offset
        return self._pos

    def _fetch(self, index: int) -> bytes:
        start = index * self._transfer.part_size
        end = min(self._size, start + self._transfer.part_size)
        data: bytes = self._fs.cat_file(self._path, start=start, end=end)
        if len(data) != end - start:  # replaced by a shorter object while being read
            raise OSError(f"{self._path}: read {len(data)} bytes at {start}, expected {end - start}")
        return data

    def _want(self, index: int) -> None:
        """Fetch part ``index`` (always) and the ``concurrency - 1`` after it (within the budget);
        drop every other part held."""
        part = self._transfer.part_size
        last = (self._size - 1) // part
        ahead = range(index, min(last, index + self._transfer.concurrency - 1) + 1)
        for stale in [i for i in self._parts if i not in ahead]:
            self._drop(stale)
        for i in ahead:
            if i in self._parts:
                continue
            held = 0
            if i != index:
                if not READ_AHEAD.take(part, self._transfer.read_ahead):
                    break
                held = part
            self.requests += 1
            self._parts[i] = (submit(lambda i=i: self._fetch(i)), held)  # type: ignore[misc]

    def _drop(self, index: int) -> None:
        future, held = self._parts.pop(index)
        future.cancel()
        if held:
            READ_AHEAD.give(held)

    def _part_at(self, pos: int) -> tuple[bytes, int]:
        index = pos // self._transfer.part_size
        self._want(index)
        return self._parts[index][0].result(), pos - index * self._transfer.part_size

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        if self._pos >= self._size or not len(view):
            return 0
        data, offset = self._part_at(self._pos)
        count = min(len(view), len(data) - offset)
        view[:count] = data[offset : offset + count]
        self._pos += count
        return count

    def read(self, size: int | None = -1) -> bytes:
        """Up to ``size`` bytes (all that is left with -1), short only at the end of the file."""
        if size is None or size < 0:
            return self.readall()
        out = bytearray()
        while len(out) < size and self._pos < self._size:
            data, offset = self._part_at(self._pos)
            piece = data[offset : offset + size - len(out)]
            out += piece
            self._pos += len(piece)
        return bytes(out)

    def readall(self) -> bytes:
        pieces = []
        while self._pos < self._size:
            data, offset = self._part_at(self._pos)
            pieces.append(data[offset:] if offset else data)
            self._pos += len(data) - offset
        return b"".join(pieces)

    def close(self) -> None:
        for index in list(self._parts):
            self._drop(index)
        super().close()


class Spool(io.RawIOBase):
    """A file being written to an object store: in memory up to ``limit`` bytes, then in a local
    temporary file (``TMPDIR``), uploaded whole by the storage when it is finished. ``hasher``,
    when given, computes the store's own checksum: over the memory while it is uploaded (beside
    the upload, not before it), or inline once the file goes to disk (no second read of it).
    ``close`` uploads (through ``upload``, kept in ``result``), like any fsspec file; ``discard``
    gives the file up."""

    def __init__(
        self, path: str, limit: int, hasher: Any = None, upload: Callable[[Spool], Any] | None = None
    ) -> None:
        self.path, self.limit, self.hasher, self._upload = path, limit, hasher, upload
        self.size = 0
        self.result: Any = None  # what ``upload`` returned, once closed
        self.memory: io.BytesIO | None = io.BytesIO()
        self.file: Any = None  # the local temporary file once ``limit`` is passed

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        self.size += len(view)
        if self.memory is not None and self.size <= self.limit:
            self.memory.write(view)
            return len(view)
        if self.file is None:
            assert self.memory is not None
            # closed by local_path() or discard(), which the storage always calls
            self.file = tempfile.NamedTemporaryFile(prefix="multispot-upload-", delete=False)  # noqa: SIM115
            with self.memory.getbuffer() as held:
                if self.hasher is not None:
                    self.hasher.update(held)
                self.file.write(held)
            self.memory = None
        if self.hasher is not None:
            self.hasher.update(view)
        self.file.write(view)
        return len(view)

    def in_memory(self) -> bytes | None:
        """The whole file, if it stayed in memory (no copy)."""
        return None if self.memory is None else self.memory.getvalue()

    def local_path(self) -> str:
        """The spooled bytes as a closed local file (only once ``limit`` was passed)."""
        self.file.close()
        return str(self.file.name)

    def close(self) -> None:
        if self.closed:
            return
        try:
            if self._upload is not None:
                self.result = self._upload(self)
        finally:
            self.discard()

    def discard(self) -> None:
        if self.file is not None:
            self.file.close()
            try:
                os.unlink(self.file.name)
            except FileNotFoundError:
                pass
            self.file = None
        self.memory = None
        super().close()
