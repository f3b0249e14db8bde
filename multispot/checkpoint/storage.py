"""Where a checkpoint store's bytes live: a local folder or an object store, chosen once.

``CheckpointStore`` speaks only to a ``Storage``; the differences between a POSIX folder (fsync,
atomic rename, paths a library can open directly) and an object store through fsspec (whole-object
writes, listings that may be cached) live here and nowhere else. What one object store adds (its
own checksum, the arguments of its parallel upload) lives in its protocol module (``s3``, ``gcs``,
``azure_blob``), the part transfers in ``transfer``.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import io
import os
import stat
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol

import fsspec
from fsspec.implementations.local import LocalFileSystem

from multispot.checkpoint.digest import Hasher
from multispot.checkpoint.manifest import StoreChecksum
from multispot.checkpoint.transfer import PartReader, Spool, Transfer, submit
from multispot.errors import ChecksumMismatch

CHUNK = 8 * 1024 * 1024  # large enough to run at storage bandwidth, small enough to stream

# What fsspec's info() says about a file that changes whenever its bytes do, besides its size: the
# store's own checksums and versions (gcsfs: md5Hash, crc32c, generation; s3fs: ETag, VersionId;
# adlfs: etag) and times (local: mtime, ctime as "created", inode; memory: "created").
_FINGERPRINT_KEYS = (
    "ETag",
    "etag",
    "md5Hash",
    "crc32c",
    "generation",
    "VersionId",
    "version_id",
    "LastModified",
    "last_modified",
    "updated",
    "mtime",
    "created",
    "ino",
)

Fingerprint = Mapping[str, str]


def fingerprint(info: Mapping[str, Any]) -> dict[str, str]:
    """What identifies this version of a file, from an fsspec info dict: its size and every
    checksum, version or time the store reports. Values are normalised to strings (memory://
    reports "created" as a datetime from info() but as a float from find())."""
    out = {"size": str(int(info.get("size") or 0))}
    for key in _FINGERPRINT_KEYS:
        value = info.get(key)
        if value is None:
            continue
        if hasattr(value, "timestamp"):
            value = value.timestamp()
        out[key] = repr(float(value)) if isinstance(value, float) else str(value)
    return out


def same_version(a: Fingerprint, b: Fingerprint) -> bool:
    """Do two fingerprints describe the same bytes? Compared on the keys both carry (info() and a
    listing may report different fields), and always on the size."""
    common = set(a) & set(b)
    return "size" in common and all(a[key] == b[key] for key in common)


@dataclass(frozen=True)
class Written:
    """A file just written: the store's own checksum of it (only when it equals the one computed
    over the bytes written) and its fingerprint then (None: the caller stats the file itself)."""

    store: StoreChecksum | None = None
    version: dict[str, str] | None = None


class Storage:
    """An object store reached through fsspec (``memory://``, ``s3://``, ``gs://``, ``az://``, …)."""

    local = False
    # A fingerprint recorded less than this long after the file last changed may miss a change in
    # the same tick of the store's clock (0: every write makes a new object with a new ETag,
    # generation or creation time).
    racy_seconds = 0.0

    def __init__(self, fs: Any, root: str) -> None:
        self.fs = fs
        self.root = root.rstrip("/")

    def path(self, *parts: str) -> str:
        return "/".join((self.root, *parts))

    # ----------------------------------------------------------------- streams

    def open_read(self, path: str) -> IO[bytes]:
        return self.fs.open(path, "rb", block_size=CHUNK)  # type: ignore[no-any-return]

    def open_write(self, path: str) -> IO[bytes]:
        return self.fs.open(path, "wb", block_size=CHUNK)  # type: ignore[no-any-return]

    def finish_write(self, handle: IO[bytes]) -> Written:
        """Close a handle from ``open_write``: the object exists once this returns. Returns the
        store's own checksum of it when the store keeps one that matches the bytes written."""
        handle.close()
        return Written()

    def discard_write(self, handle: IO[bytes]) -> None:
        """Give up a handle from ``open_write`` (a save abandoned): upload nothing that is left."""
        handle.close()

    def upload_file(self, local: str, path: str, digest: Hasher) -> Written:
        """Store the local file ``local`` at ``path``, feeding its bytes to ``digest`` on the way
        (one read); returns what ``finish_write`` returns."""
        handle = self.open_write(path)
        with open(local, "rb") as src:
            while chunk := src.read(CHUNK):
                digest.update(chunk)
                handle.write(chunk)
        return self.finish_write(handle)

    def store_checksum(self, path: str) -> StoreChecksum | None:
        """The checksum the store keeps for the object at ``path`` now (a metadata request, no
        download), or None when it keeps none this version of multispot can compare."""
        return None

    def mark_written(self, path: str) -> None:
        """This process has finished writing (or hashing in place) the file at ``path``."""

    def stat(self, path: str) -> dict[str, str] | None:
        """The fingerprint of the regular file at ``path``, or None if there is none."""
        self.fs.invalidate_cache(path)
        try:
            info = self.fs.info(path)
        except (FileNotFoundError, NotADirectoryError):
            return None
        return fingerprint(info) if info.get("type") == "file" else None

    def settled(self, print_: Fingerprint, seen_at: float) -> bool:
        """Can ``print_``, taken at ``seen_at`` (time.time()), be trusted to change with the bytes?"""
        if self.racy_seconds <= 0:
            return True
        return float(print_.get("mtime", "inf")) < seen_at - self.racy_seconds

    # ----------------------------------------------------------------- small files

    def write_small(self, path: str, data: bytes, durable: bool = True) -> None:
        """A whole-object write: readers see the old object or the new one, never a part."""
        self.fs.pipe_file(path, data)

    def read_small(self, path: str, limit: int) -> bytes | None:
        """The whole file at ``path`` if it is a regular file of at most ``limit`` bytes, else None."""
        try:
            data: bytes = self.fs.cat_file(path, start=0, end=limit + 1)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return None
        return data if len(data) <= limit else None

    # ----------------------------------------------------------------- listing and removal

    def list_dirs(self, path: str) -> list[str]:
        """Folders directly under ``path`` (fresh: another process may have written since); files
        and other entries are left out."""
        self.fs.invalidate_cache(path)
        return [str(e["name"]) for e in self.fs.ls(path, detail=True) if e.get("type") == "directory"]

    def find(self, path: str) -> dict[str, dict[str, Any]]:
        """Every regular file under ``path`` with its fsspec info, keyed by full path (FIFOs,
        sockets and devices are left out: they are nothing a checkpoint can hold)."""
        self.fs.invalidate_cache(path)
        found = self.fs.find(path, detail=True)
        return {str(p): dict(info) for p, info in found.items() if info.get("type") == "file"}

    def remove_file(self, path: str) -> None:
        self.fs.rm_file(path)

    def remove_tree(self, path: str) -> None:
        self.fs.rm(path, recursive=True)

    # ----------------------------------------------------------------- local-only conveniences

    def sync_dirs(self, paths: Iterable[str]) -> None:
        """Make new directory entries durable (nothing to do on an object store)."""

    def in_place_dir(self, path: str) -> Path | None:
        """``path`` as a local folder a library can write into directly, or None (stage elsewhere)."""
        return None


class LocalFolder(Storage):
    """A POSIX folder: plain file I/O, fsync before commit, atomic rename for small files."""

    local = True
    # File times tick coarsely (a few ms on Linux, 1-2 s on some filesystems): a file rewritten in
    # the tick its fingerprint was taken in keeps its mtime. Files this process wrote are
    # back-dated by this much after they are closed (``finish_write``), so any later write moves
    # their mtime; files only read are trusted once their mtime is older than this.
    racy_seconds = 2.0

    def open_read(self, path: str) -> IO[bytes]:
        return open(path, "rb", buffering=0)

    def open_write(self, path: str) -> IO[bytes]:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        return io.BufferedWriter(WritebackFile(path))

    def finish_write(self, handle: IO[bytes]) -> Written:
        handle.flush()
        os.fsync(handle.fileno())
        handle.close()
        self.mark_written(str(handle.name))
        return Written()

    def mark_written(self, path: str) -> None:
        """Set the mtime ``racy_seconds`` into the past, so that any later write moves it (see above)."""
        with_stat = os.stat(path)
        past = time.time_ns() - int(self.racy_seconds * 1e9)
        os.utime(path, ns=(with_stat.st_atime_ns, min(with_stat.st_mtime_ns, past)))

    def stat(self, path: str) -> dict[str, str] | None:
        try:
            info = self.fs.info(path)
        except (FileNotFoundError, NotADirectoryError):
            return None
        return fingerprint(info) if info.get("type") == "file" else None

    def write_small(self, path: str, data: bytes, durable: bool = True) -> None:
        """Atomic: through a temporary name, fsynced, then renamed over ``path``. ``durable=False``
        (the LATEST hint, which nothing trusts) keeps the atomic rename and skips both fsyncs: after a
        crash the hint may name an older step, which readers already allow for."""
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.{os.getpid()}.tmp-manifest"
        with open(tmp, "wb") as f:
            f.write(data)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        try:
            os.replace(tmp, path)
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        if durable:
            fsync_dir(os.path.dirname(path))

    def read_small(self, path: str, limit: int) -> bytes | None:
        """Regular files only: a FIFO would block the reader and a device would never end."""
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError):
            return None
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return None
            data = os.read(fd, limit + 1)
        finally:
            os.close(fd)
        return data if data is not None and len(data) <= limit else None

    def list_dirs(self, path: str) -> list[str]:
        return [str(e["name"]) for e in self.fs.ls(path, detail=True) if e.get("type") == "directory"]

    def find(self, path: str) -> dict[str, dict[str, Any]]:
        found = self.fs.find(path, detail=True)
        return {str(p): dict(info) for p, info in found.items() if info.get("type") == "file"}

    def sync_dirs(self, paths: Iterable[str]) -> None:
        for path in paths:
            fsync_dir(path)

    def in_place_dir(self, path: str) -> Path | None:
        return Path(path)


class StoreHasher(Protocol):
    """The store's own checksum, computed locally as the bytes are written (see ``ObjectStore``)."""

    def update(self, data: memoryview) -> None: ...

    def result(self, size: int) -> StoreChecksum | None: ...


class ObjectStore(Storage):
    """An object store with parallel part transfers (``multispot.checkpoint.transfer``) and, in
    the per-protocol subclasses (``s3``, ``gcs``, ``azure_blob``), its own checksums."""

    def __init__(self, fs: Any, root: str, transfer: Transfer | None = None) -> None:
        super().__init__(fs, root)
        self.transfer = transfer or Transfer()

    def open_read(self, path: str) -> IO[bytes]:
        self.fs.invalidate_cache(path)
        size = int(self.fs.info(path)["size"])
        return PartReader(self.fs, path, size, self.transfer)  # type: ignore[return-value]

    def open_write(self, path: str) -> IO[bytes]:
        # In memory up to what the parallel upload holds anyway (``concurrency`` parts), so most
        # files never touch the local disk; larger ones are spooled to a temporary file.
        limit = self.transfer.concurrency * self.transfer.part_size
        return Spool(path, limit, self.store_hasher(), self._upload)  # type: ignore[return-value]

    def finish_write(self, handle: IO[bytes]) -> Written:
        handle.close()
        assert isinstance(handle, Spool)
        return handle.result  # type: ignore[no-any-return]

    def _upload(self, spool: Spool) -> Written:
        """Upload a spooled file through the filesystem's own upload (one request up to a part or
        so, else its parallel multipart: ``pipe_file`` from memory, ``put_file`` from the local
        spool), then compare the store's checksum of the object with the one computed as the bytes
        were written: a difference means the upload did not arrive intact."""
        hasher, data = spool.hasher, spool.in_memory()
        if data is not None:
            ours = None if hasher is None else submit(lambda: _checksum(hasher, data))
            self.fs.pipe_file(spool.path, data, **self.pipe_options())
            local = None if ours is None else ours.result()
        else:
            self.fs.put_file(spool.local_path(), spool.path, **self.put_options())
            local = None if hasher is None else hasher.result(spool.size)
        return self._confirm(spool.path, local)

    def upload_file(self, local: str, path: str, digest: Hasher) -> Written:
        """Hash the local file (one read: ``digest`` and the store's checksum), then hand it to the
        filesystem's parallel upload as it is: no copy into a spool."""
        theirs = self.store_hasher()
        size = 0
        with open(local, "rb") as src:
            while chunk := src.read(CHUNK):
                size += len(chunk)
                digest.update(chunk)
                if theirs is not None:
                    theirs.update(memoryview(chunk))
        self.fs.put_file(local, path, **self.put_options())
        return self._confirm(path, None if theirs is None else theirs.result(size))

    def _confirm(self, path: str, local: StoreChecksum | None) -> Written:
        """The object just uploaded, from one metadata request: its fingerprint, and the store's
        checksum if it equals ``local`` (computed over the bytes multispot hashed);
        ``ChecksumMismatch`` if it differs."""
        stored, version = self.describe(path)
        if version is None:
            raise FileNotFoundError(f"{path}: not found right after its upload")
        if local is None or stored is None:
            # nothing to compare (the store keeps none for this object): verification hashes its bytes
            return Written(None, version)
        if stored != local:
            raise ChecksumMismatch(
                f"{path}: the store's {stored.algorithm} is {stored.value}, the bytes written "
                f"have {local.value}: the upload did not arrive intact"
            )
        return Written(local, version)

    def discard_write(self, handle: IO[bytes]) -> None:
        assert isinstance(handle, Spool)
        handle.discard()

    def store_checksum(self, path: str) -> StoreChecksum | None:
        return self.describe(path)[0]

    def describe(self, path: str) -> tuple[StoreChecksum | None, dict[str, str] | None]:
        """The store's checksum of the object at ``path`` (None if it keeps none) and its
        fingerprint (None if there is no such file), from one metadata request."""
        self.fs.invalidate_cache(path)
        try:
            info = self.fs.info(path)
        except FileNotFoundError:
            return None, None
        if info.get("type") != "file":
            return None, None
        return self.checksum_in(info), fingerprint(info)

    # ----------------------------------------------------------------- per protocol

    def checksum_in(self, info: Mapping[str, Any]) -> StoreChecksum | None:
        """The store's checksum in an fsspec info dict, when it reports one there."""
        return None

    def store_hasher(self) -> StoreHasher | None:
        """A local computation of the store's checksum, or None when there is none to compare."""
        return None

    def pipe_options(self) -> dict[str, Any]:
        """Extra arguments to ``fs.pipe_file`` (a file held in memory)."""
        return self.put_options()

    def put_options(self) -> dict[str, Any]:
        """Extra arguments to ``fs.put_file`` (a larger file, from the local spool)."""
        return {}


def _checksum(hasher: StoreHasher, data: bytes) -> StoreChecksum | None:
    hasher.update(memoryview(data))
    return hasher.result(len(data))


# Where each object store's protocol module lives (imported only when such a URI is opened).
_PROTOCOLS = {
    "s3": "multispot.checkpoint.s3:S3Storage",
    "s3a": "multispot.checkpoint.s3:S3Storage",
    "gs": "multispot.checkpoint.gcs:GcsStorage",
    "gcs": "multispot.checkpoint.gcs:GcsStorage",
    "az": "multispot.checkpoint.azure_blob:AzureBlobStorage",
    "abfs": "multispot.checkpoint.azure_blob:AzureBlobStorage",
    "abfss": "multispot.checkpoint.azure_blob:AzureBlobStorage",
}


def open_storage(
    uri: str, storage_options: dict[str, Any] | None = None, transfer: Transfer | None = None
) -> Storage:
    """The storage behind ``uri``: a ``LocalFolder`` for local paths, an ``ObjectStore`` of its
    protocol for s3/gs/az, else plain fsspec (``memory://`` and other filesystems)."""
    fs, root = fsspec.core.url_to_fs(uri, **(storage_options or {}))
    if isinstance(fs, LocalFileSystem):
        return LocalFolder(fs, root)
    protocols = (fs.protocol,) if isinstance(fs.protocol, str) else tuple(fs.protocol)
    for protocol in protocols:
        if protocol in _PROTOCOLS:
            module, name = _PROTOCOLS[protocol].split(":")
            kind: type[ObjectStore] = getattr(importlib.import_module(module), name)
            return kind(fs, root, transfer)
    return Storage(fs, root)


class WritebackFile(io.FileIO):
    """A file opened for writing that asks the kernel to start writing each ``WRITEBACK`` bytes to
    disk as soon as they are written (``sync_file_range(SYNC_FILE_RANGE_WRITE)``, which only starts
    the I/O), so the disk works while the rest is still being written and the fsync at the end
    finds most of it done. A plain write leaves it all to the fsync: 64 MB write+fsync took 34 ms
    plainly and 22 ms this way, 1 GB 614 ms and 392-478 ms (docs/performance.md). Linux only; a
    no-op elsewhere. Durability still comes from the fsync in ``finish_write`` alone."""

    WRITEBACK = CHUNK

    def __init__(self, path: str) -> None:
        super().__init__(path, "wb")
        self._offset = 0  # writes are sequential: the checkpoint writer's stream cannot seek
        self._started = 0  # bytes before this offset have been handed to writeback

    def write(self, data: Any) -> int:
        """Write all of ``data`` in stretches of at most ``WRITEBACK`` bytes, starting each one's
        writeback as soon as it is written: one large write (``write_bytes`` of a whole state) would
        otherwise start its writeback only once all of it is in the page cache."""
        view = memoryview(data).cast("B")
        done = 0
        while done < len(view):
            room = max(1, self._started + self.WRITEBACK - self._offset)
            count = super().write(view[done : done + room]) or 0
            if not count:
                break
            done += count
            self._offset += count
            if self._offset - self._started >= self.WRITEBACK:
                start_writeback = _sync_file_range()
                if start_writeback is not None:
                    start_writeback(
                        self.fileno(), self._started, self._offset - self._started, _SYNC_FILE_RANGE_WRITE
                    )
                self._started = self._offset
        return done


_SYNC_FILE_RANGE_WRITE = 2  # linux/fs.h: start writeback of the range's dirty pages; do not wait


@functools.cache
def _sync_file_range() -> Callable[[int, int, int, int], int] | None:
    """libc's ``sync_file_range`` (Linux), or None where there is none: looked up on first use, so
    that nothing imports ctypes before a checkpoint is written."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        call = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    call.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    call.restype = ctypes.c_int
    return call


def fsync_dir(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
