"""``torch.distributed.checkpoint`` (DCP) reads a restored checkpoint through the contract's readers.

``restored.dcp_load(state)`` (``load`` here) runs ``dcp.load`` with a storage reader that opens the
``.metadata`` and every data file through ``RestoredCheckpoint.open``: each byte is hashed as DCP
consumes it and each file is checked when DCP closes it, so a load reads the bytes once, from local
folders and object stores alike (no download to a temporary folder, no separate verification pass).

DCP wraps whatever its reader raises into its ``CheckpointException``, a ``BaseException`` that
``restore_with`` would let through without falling back; ``load`` raises the reader's
``ChecksumMismatch`` instead, and any other such failure as ``DCPLoadFailed`` (an ``Exception``).

``save(writer, state)`` runs ``dcp.save`` with a storage writer that writes every file through
``CheckpointWriter.open``, hashed as DCP writes it: the commit reads nothing back.

Importing this module imports torch; ``RestoredCheckpoint.dcp_load`` imports it only when called,
so the rest of multispot never needs torch.
"""

from __future__ import annotations

import dataclasses
import io
import os
import posixpath
from collections.abc import Generator
from contextlib import contextmanager
from typing import IO, TYPE_CHECKING, Any, cast

from torch.distributed.checkpoint.api import CheckpointException
from torch.distributed.checkpoint.filesystem import FileSystemBase, FileSystemReader, FileSystemWriter
from torch.distributed.checkpoint.planner import LoadPlan, LoadPlanner
from torch.distributed.checkpoint.state_dict_loader import load as dcp_load
from torch.distributed.checkpoint.state_dict_saver import save as dcp_save
from torch.futures import Future

from multispot.checkpoint.storage import CHUNK
from multispot.errors import ChecksumMismatch

if TYPE_CHECKING:
    from multispot.checkpoint.store import CheckpointWriter, RestoredCheckpoint


class DCPLoadFailed(RuntimeError):
    """``dcp.load`` failed on files that may still match (DCP's ``CheckpointException`` as an
    ``Exception``, so that ``restore_with`` checks the files and then raises it: the loader's error)."""


def load(restored: RestoredCheckpoint, state_dict: dict[str, Any], **kwargs: Any) -> None:
    """``dcp.load(state_dict, storage_reader=RestoredCheckpointReader(restored), **kwargs)``, with
    ``ChecksumMismatch`` raised when a file DCP read does not match its manifest."""
    reader = RestoredCheckpointReader(restored)
    try:
        dcp_load(state_dict, storage_reader=reader, **kwargs)
    except (Exception, CheckpointException) as exc:
        mismatch = reader.files.mismatch
        if mismatch is not None and mismatch is not exc:
            raise mismatch from exc
        if isinstance(exc, CheckpointException):
            raise DCPLoadFailed(str(exc)) from exc
        raise


class _RestoredFiles(FileSystemBase):
    """The files of one restored checkpoint, read-only; a path is a file's name within the step."""

    def __init__(self, restored: RestoredCheckpoint) -> None:
        self.restored = restored
        self.mismatch: ChecksumMismatch | None = None  # the first file found not to match

    @contextmanager
    def create_stream(self, path: str | os.PathLike[str], mode: str) -> Generator[io.IOBase, None, None]:
        if mode != "rb":
            raise PermissionError(f"a restored checkpoint is read-only (mode {mode!r})")
        try:
            with self.restored.open(os.fspath(path)) as stream:  # checked at close
                yield cast(io.IOBase, stream)
        except ChecksumMismatch as exc:
            self.mismatch = self.mismatch or exc
            raise

    def concat_path(self, path: str | os.PathLike[str], suffix: str) -> str:
        return posixpath.join(os.fspath(path), suffix)

    def init_path(self, path: str | os.PathLike[str]) -> str:
        return os.fspath(path)

    def exists(self, path: str | os.PathLike[str]) -> bool:
        return os.fspath(path) in self.restored.manifest.files

    @classmethod
    def validate_checkpoint_id(cls, checkpoint_id: str | os.PathLike[str]) -> bool:
        return False  # never chosen by DCP for a checkpoint_id: only passed as a storage_reader

    def rename(self, path: str | os.PathLike[str], new_path: str | os.PathLike[str]) -> None:
        raise PermissionError("a restored checkpoint is read-only")

    def mkdir(self, path: str | os.PathLike[str]) -> None:
        raise PermissionError("a restored checkpoint is read-only")

    def rm_file(self, path: str | os.PathLike[str]) -> None:
        raise PermissionError("a restored checkpoint is read-only")


class RestoredCheckpointReader(FileSystemReader):
    """DCP's ``FileSystemReader`` with its files opened through ``RestoredCheckpoint.open``.

    Every file is read once, in file order (docs/decisions.md has the numbers):

    * reads are sorted by file and offset: DCP requests items in the order of the state dict, and
      the verifying reader hashes in file order, so a request behind an earlier one read its bytes
      again (1.5x the files' size for a small model and its optimizer);
    * an item of at most ``CHUNK`` bytes is read whole, in order, and handed to DCP from memory:
      ``torch.load`` reads a zip's directory at its end before its records, and a slice of a
      larger file streamed through the verifying reader read each record again: 2.07x while the
      reader filled skips of up to 8 MiB, and still 1.06-4.6x for items of 4 MiB down to 64 KiB
      once it fills only skips of up to 64 KiB (against 1.00x read whole).
      A larger item streams (its skip is long, hashed when the reader gets there: 1.03x), so a load
      holds at most ``CHUNK`` more bytes in memory.

    A rank that needs only part of a file still hashes all of it when DCP closes the file: the
    manifest checks whole files.
    """

    def __init__(self, restored: RestoredCheckpoint) -> None:
        super().__init__("")
        self.restored = restored
        self.files = _RestoredFiles(restored)
        # torch annotates ``fs`` as its FileSystem, and uses only the FileSystemBase interface
        self.fs = self.files  # type: ignore[assignment]
        self.path = ""

    def reset(self, checkpoint_id: str | os.PathLike[str] | None = None) -> None:
        if checkpoint_id:
            raise ValueError(
                "this reader reads the checkpoint it was made for: call dcp.load without checkpoint_id"
            )
        super().reset()

    def _slice_file(self, file: Any, sinfo: Any) -> IO[bytes]:
        if sinfo.length > CHUNK:
            return super()._slice_file(file, sinfo)
        file.seek(sinfo.offset)
        return io.BytesIO(file.read(sinfo.length))

    def read_data(self, plan: LoadPlan, planner: LoadPlanner) -> Future[None]:
        def place(item: Any) -> tuple[str, int]:
            info = self.storage_data[item.storage_index]
            return str(info.relative_path), int(info.offset)

        return super().read_data(dataclasses.replace(plan, items=sorted(plan.items, key=place)), planner)

    @property
    def checkpoint_id(self) -> str:
        return f"{self.restored.store.uri}/step {self.restored.step}"


# ----------------------------------------------------------------------------------- save


def save(writer: CheckpointWriter, state_dict: dict[str, Any], **kwargs: Any) -> None:
    """``dcp.save(state_dict, storage_writer=CheckpointStorageWriter(writer), **kwargs)``: every file
    DCP writes goes through ``writer.open``, hashed as it is written."""
    dcp_save(state_dict, storage_writer=CheckpointStorageWriter(writer), **kwargs)


class _Tell(io.RawIOBase):
    """A file of the step being written, with the position DCP records each item's offset by."""

    def __init__(self, target: IO[bytes]) -> None:
        self._target, self._pos = target, 0

    def writable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        self._target.write(view)
        self._pos += len(view)
        return len(view)

    def flush(self) -> None:
        if not self._target.closed:  # IOBase.close flushes after the target is closed
            self._target.flush()

    def close(self) -> None:
        if not self.closed:
            try:
                self._target.close()  # hashed and sealed by the writer here
            finally:
                super().close()


class _WriterFiles(FileSystemBase):
    """The files of one step being written; a path is a file's name within the step.

    DCP writes its metadata under a temporary name and renames it over the final one, for a reader
    that could see a half-written file; in a step nothing counts before the manifest, so the
    metadata is written under its final name at once and the rename has nothing left to do.
    """

    TMP = ".tmp"

    def __init__(self, writer: CheckpointWriter) -> None:
        self.writer = writer

    def _final(self, path: str | os.PathLike[str]) -> str:
        name = os.fspath(path)
        return name.removesuffix(self.TMP)

    @contextmanager
    def create_stream(self, path: str | os.PathLike[str], mode: str) -> Generator[io.IOBase, None, None]:
        if mode != "wb":
            raise PermissionError(f"a step being written is write-only (mode {mode!r})")
        with _Tell(self.writer.open(self._final(path))) as stream:
            yield stream

    def rename(self, path: str | os.PathLike[str], new_path: str | os.PathLike[str]) -> None:
        if self._final(path) != os.fspath(new_path):
            raise PermissionError(f"a step's files are not renamed ({path} -> {new_path})")

    def rm_file(self, path: str | os.PathLike[str]) -> None:
        pass  # DCP removes the final name before its rename: here it is the metadata just written

    def exists(self, path: str | os.PathLike[str]) -> bool:
        return os.fspath(path) in self.writer.entries

    def concat_path(self, path: str | os.PathLike[str], suffix: str) -> str:
        return posixpath.join(os.fspath(path), suffix)

    def init_path(self, path: str | os.PathLike[str]) -> str:
        return os.fspath(path)

    def mkdir(self, path: str | os.PathLike[str]) -> None:
        pass  # the writer makes the step's folders as files are written

    @classmethod
    def validate_checkpoint_id(cls, checkpoint_id: str | os.PathLike[str]) -> bool:
        return False  # only passed as a storage_writer


class CheckpointStorageWriter(FileSystemWriter):
    """DCP's ``FileSystemWriter`` with its files written through ``CheckpointWriter.open``: hashed as
    DCP writes them (no second read at commit, and with several ranks each rank hashes its own
    shard rather than rank 0 reading every rank's), streamed straight to an object store (no
    staging folder). ``sync_files`` is off: the writer makes each file durable when it closes it
    (DCP's fallback for a file without ``fileno`` would be ``os.sync()`` of the whole machine)."""

    def __init__(self, writer: CheckpointWriter, **kwargs: Any) -> None:
        super().__init__("", sync_files=False, **kwargs)
        self.files = _WriterFiles(writer)
        # torch annotates ``fs`` as its FileSystem, and uses only the FileSystemBase interface
        self.fs = self.files  # type: ignore[assignment]
        self.path = ""

    def reset(self, checkpoint_id: str | os.PathLike[str] | None = None) -> None:
        if checkpoint_id:
            raise ValueError(
                "this writer writes the step it was made for: call dcp.save without checkpoint_id"
            )
        super().reset()

    @property
    def checkpoint_id(self) -> str:
        return f"{self.files.writer.store.uri}/step {self.files.writer.step}"
