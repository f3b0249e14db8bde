"""Where a checkpoint store's bytes live: a local folder or an object store, chosen once.

``CheckpointStore`` speaks only to a ``Storage``; the differences between a POSIX folder (fsync,
atomic rename, paths a library can open directly) and an object store through fsspec (whole-object
writes, listings that may be cached) live here and nowhere else.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

import fsspec
from fsspec.implementations.local import LocalFileSystem

CHUNK = 8 * 1024 * 1024  # large enough to run at storage bandwidth, small enough to stream


class Storage:
    """An object store reached through fsspec (``memory://``, ``s3://``, ``gs://``, ``az://``, …)."""

    local = False

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

    def finish_write(self, handle: IO[bytes]) -> None:
        """Close a handle from ``open_write``: the object exists once this returns."""
        handle.close()

    # ----------------------------------------------------------------- small files

    def write_small(self, path: str, data: bytes) -> None:
        """A whole-object write: readers see the old object or the new one, never a part."""
        self.fs.pipe_file(path, data)

    def read_small(self, path: str) -> bytes | None:
        try:
            return self.fs.cat_file(path)  # type: ignore[no-any-return]
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return None

    # ----------------------------------------------------------------- listing and removal

    def list_names(self, path: str) -> list[str]:
        """Names directly under ``path`` (fresh: another process may have written since)."""
        self.fs.invalidate_cache(path)
        return [str(name) for name in self.fs.ls(path, detail=False)]

    def find(self, path: str) -> dict[str, dict[str, Any]]:
        """Every file under ``path`` with its fsspec info, keyed by full path."""
        return dict(self.fs.find(path, detail=True))

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

    def open_read(self, path: str) -> IO[bytes]:
        return open(path, "rb", buffering=0)

    def open_write(self, path: str) -> IO[bytes]:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        return open(path, "wb")

    def finish_write(self, handle: IO[bytes]) -> None:
        handle.flush()
        os.fsync(handle.fileno())
        handle.close()

    def write_small(self, path: str, data: bytes) -> None:
        """Atomic: through a temporary name, fsynced, then renamed over ``path``."""
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.{os.getpid()}.tmp-manifest"
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_dir(os.path.dirname(path))

    def read_small(self, path: str) -> bytes | None:
        try:
            return Path(path).read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return None

    def list_names(self, path: str) -> list[str]:
        return [str(name) for name in self.fs.ls(path, detail=False)]

    def sync_dirs(self, paths: Iterable[str]) -> None:
        for path in paths:
            fsync_dir(path)

    def in_place_dir(self, path: str) -> Path | None:
        return Path(path)


def open_storage(uri: str, storage_options: dict[str, Any] | None = None) -> Storage:
    """The storage behind ``uri``: a ``LocalFolder`` for local paths, else an object store."""
    fs, root = fsspec.core.url_to_fs(uri, **(storage_options or {}))
    return LocalFolder(fs, root) if isinstance(fs, LocalFileSystem) else Storage(fs, root)


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
