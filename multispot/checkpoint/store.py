"""The checkpoint contract over fsspec: commit, verify, restore, retention, copy.

Layout under a checkpoint URI::

    step-000000001200/      the user's files, then MANIFEST.json (written last)
    LATEST                  a hint: the name of the newest committed step

No rename is needed, so the same rules hold on object stores and on synced folders whose
upload order is not guaranteed: a step counts only when its manifest exists and every file
listed there has the recorded size and checksum.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any, TypeVar

from multispot.checkpoint.digest import ALGORITHM, digest_stream, hasher, write_hashed
from multispot.checkpoint.manifest import (
    LATEST,
    MANIFEST,
    MANIFEST_PART_PREFIX,
    FileEntry,
    Manifest,
    check_file_name,
    parse_step_dir,
    step_dir,
)
from multispot.checkpoint.storage import (
    CHUNK,
    Fingerprint,
    Storage,
    Written,
    fingerprint,
    open_storage,
    same_version,
)
from multispot.checkpoint.transfer import Transfer, submit
from multispot.errors import (
    CheckpointError,
    CheckpointExists,
    ChecksumMismatch,
    ManifestError,
    NoCheckpoint,
    SaveAbandoned,
)

T = TypeVar("T")

# Small writes are gathered up to this; larger ones go straight through (hashed inline, no copy).
WRITE_BUFFER = 1024 * 1024
# Small on purpose: a reader such as torch.load seeks between records, and every seek throws the
# buffer away; a large buffer re-read up to a third more of a file than its size. Reads larger
# than the buffer go straight to the raw reader (which has its own read-ahead on object stores).
READ_BUFFER = 64 * 1024
MANIFEST_LIMIT = 64 * 1024 * 1024  # a manifest (or a rank's part) larger than this is no manifest
HINT_LIMIT = 4096  # LATEST holds one step name
RECORD_LIMIT = 1024 * 1024  # a side record (what an attempt restored) is a few hundred bytes

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Verdict:
    step: int
    ok: bool
    reason: str = ""


class CheckpointStore:
    """All checkpoints of one job under one URI (``file://``, ``memory://``, ``s3://``, …)."""

    def __init__(
        self, uri: str, storage_options: dict[str, Any] | None = None, transfer: Transfer | None = None
    ) -> None:
        """``transfer`` sets the part size and concurrency of object-store transfers."""
        self.uri = uri.rstrip("/") if uri.rstrip("/") else uri
        self.transfer = transfer or Transfer()  # used by object stores only
        self.storage: Storage = open_storage(self.uri, storage_options, self.transfer)
        self.root = self.storage.root
        # Steps whose every byte this instance has hashed (written or fully verified), with each
        # file's entry and fingerprint then: re-read only if a fingerprint has changed since.
        self._verified: dict[int, dict[str, tuple[FileEntry, Fingerprint]]] = {}
        # Steps a reader or a verification found corrupt, with the manifest they had then: a restore
        # skips them (falling back to the next older step) until that manifest changes.
        self._corrupt: dict[int, Manifest] = {}

    def __repr__(self) -> str:
        return f"CheckpointStore({self.uri!r})"

    @property
    def fs(self) -> Any:
        """The fsspec filesystem underneath (for tools and tests that look at raw files)."""
        return self.storage.fs

    @property
    def local(self) -> bool:
        """True when the checkpoints live in a local folder."""
        return self.storage.local

    def path(self, *parts: str) -> str:
        """A path under the store's root, e.g. ``path(step_dir(3), MANIFEST)``."""
        return self.storage.path(*parts)

    def open_read(self, path: str) -> IO[bytes]:
        return self.storage.open_read(path)

    def read_record(self, relpath: str, limit: int = RECORD_LIMIT) -> bytes | None:
        """A small side record beside the checkpoints (``.multispot/…``: never a step), if it is a
        regular file within ``limit``; None otherwise."""
        return self.storage.read_small(self.path(relpath), limit)

    def write_record(self, relpath: str, data: bytes, durable: bool = True) -> None:
        """Write a side record whole (atomic); ``durable=False`` skips the fsyncs (see ``write_small``)."""
        self.storage.write_small(self.path(relpath), data, durable=durable)

    def open_write(self, path: str) -> IO[bytes]:
        return self.storage.open_write(path)

    # ----------------------------------------------------------------- listing and verifying

    def steps(self) -> list[int]:
        """Steps that have a directory, committed or not, oldest first."""
        try:
            names = self.storage.list_dirs(self.root)
        except (FileNotFoundError, NotADirectoryError):
            return []
        return sorted({s for s in (parse_step_dir(str(n)) for n in names) if s is not None})

    def manifest(self, step: int) -> Manifest | None:
        """The step's manifest if it exists and parses; a torn or foreign one reads as None."""
        raw = self.storage.read_small(self.path(step_dir(step), MANIFEST), MANIFEST_LIMIT)
        if raw is None:
            return None
        try:
            manifest = Manifest.from_json(raw)
        except ManifestError:
            return None
        return manifest if manifest.step == step else None

    def file_prints(self, step: int) -> dict[str, Fingerprint]:
        """Every regular file of ``step`` with its fingerprint (size, and the store's checksums,
        versions or times), from one listing: no file is read."""
        base = self.path(step_dir(step))
        try:
            found = self.storage.find(base)
        except (FileNotFoundError, NotADirectoryError):
            return {}
        prefix = base.rstrip("/") + "/"
        return {p[len(prefix) :]: fingerprint(info) for p, info in found.items() if p.startswith(prefix)}

    def verify(self, step: int, full: bool = True) -> Verdict:
        """Does ``step`` hold a committed checkpoint? ``full`` checks every file's checksum too.

        Sizes and fingerprints are always listed afresh. A file this instance hashed (or wrote)
        before is not read again unless its fingerprint changed since: another writer replacing
        it, or a byte flipped in place, changes its ETag, checksum, generation or mtime. A file
        whose manifest entry carries the object store's own checksum is not read either when the
        store reports that same checksum now (one metadata request); otherwise its bytes are hashed.
        """
        try:
            return self._verify(step, full)
        except FileNotFoundError as exc:  # retention (or a user) removed the step while it was read
            self._verified.pop(step, None)
            return Verdict(step, False, f"removed while it was being checked ({exc.filename or exc})")

    def _verify(self, step: int, full: bool) -> Verdict:
        verdict, manifest, prints, seen_at = self._cheap_check(step)
        if not verdict.ok or not full:
            return verdict
        assert manifest is not None
        unchanged = self._unchanged(step, manifest, prints)
        todo = [(name, entry) for name, entry in manifest.files.items() if name not in unchanged]
        if todo:
            base = self.path(step_dir(step))

            def check(item: tuple[str, FileEntry]) -> str:
                if self.store_vouches(f"{base}/{item[0]}", item[1]):
                    return ""
                with self.open_read(f"{base}/{item[0]}") as stream:
                    size, digest = digest_stream(stream, manifest.hash)
                return "" if (size, digest) == (item[1].size, item[1].digest) else item[0]

            with ThreadPoolExecutor(max_workers=min(8, len(todo))) as pool:
                bad = [name for name in pool.map(check, todo) if name]
            if bad:
                self.mark_corrupt(step, manifest)
                return Verdict(step, False, f"checksum mismatch in {', '.join(sorted(bad))}")
        self.mark_verified(step, manifest.files, prints, seen_at)
        return Verdict(step, True)

    def store_vouches(self, path: str, entry: FileEntry) -> bool:
        """Does the store's own checksum of ``path`` equal the one recorded at commit? Recorded only
        when it matched the bytes multispot hashed, so equal means those same bytes, with no
        download. A different value (the object was rewritten) or none (the store keeps none, or a
        manifest written before) returns False: the caller hashes the bytes, which decide."""
        return entry.store is not None and self.storage.store_checksum(path) == entry.store

    def _cheap_check(self, step: int) -> tuple[Verdict, Manifest | None, dict[str, Fingerprint], float]:
        """The manifest, and every file listed with the size it records (one listing, no read)."""
        manifest = self.manifest(step)
        if manifest is None:
            self._verified.pop(step, None)
            return Verdict(step, False, "no readable MANIFEST.json (never committed, or torn)"), None, {}, 0.0
        seen_at = time.time()
        prints = self.file_prints(step)
        for name, entry in manifest.files.items():
            if name not in prints:
                return Verdict(step, False, f"{name} is missing"), manifest, prints, seen_at
            size = int(prints[name]["size"])
            if size != entry.size:
                reason = f"{name} has {size} bytes, manifest says {entry.size}"
                return Verdict(step, False, reason), manifest, prints, seen_at
        return Verdict(step, True), manifest, prints, seen_at

    def _unchanged(self, step: int, manifest: Manifest, prints: dict[str, Fingerprint]) -> set[str]:
        """Files of ``step`` this instance hashed before whose fingerprint has not changed since."""
        known = self._verified.get(step, {})
        return {
            name
            for name, entry in manifest.files.items()
            if name in known
            and known[name][0] == entry
            and name in prints
            and same_version(known[name][1], prints[name])
        }

    def mark_corrupt(self, step: int, manifest: Manifest) -> None:
        """A file of ``step`` failed its checksum: restores skip the step while it has this manifest."""
        self._verified.pop(step, None)
        self._corrupt[step] = manifest

    def latest_hint(self) -> int | None:
        raw = self.storage.read_small(self.path(LATEST), HINT_LIMIT)
        return None if raw is None else parse_step_dir(raw.decode(errors="replace").strip())

    def latest(self, full: bool = True) -> Manifest | None:
        """The newest checkpoint that verifies; LATEST is only a hint and never trusted alone."""
        for step in reversed(self.steps()):
            if self.verify(step, full=full).ok:
                return self.manifest(step)
        return None

    def newest_manifest(self) -> Manifest | None:
        """The newest readable manifest, without reading the files: cheap, for status displays."""
        for step in reversed(self.steps()):
            manifest = self.manifest(step)
            if manifest is not None:
                return manifest
        return None

    def progress(self) -> tuple[int, int | None] | None:
        """(step, total_steps) of the newest committed manifest."""
        manifest = self.newest_manifest()
        return None if manifest is None else (manifest.step, manifest.total_steps)

    # ----------------------------------------------------------------- save and restore

    def writer(
        self,
        step: int,
        *,
        total_steps: int | None = None,
        attempt: int | None = None,
        job_id: str | None = None,
        metadata: dict[str, Any] | None = None,
        rank: int = 0,
        world_size: int = 1,
        cancel: threading.Event | None = None,
    ) -> CheckpointWriter:
        return CheckpointWriter(
            self, step, total_steps, attempt, job_id, metadata or {}, rank, world_size, cancel
        )

    def restore(self, step: int | None = None, full: bool = True) -> RestoredCheckpoint:
        """The newest committed checkpoint (or ``step``), checked as it is read.

        The step is chosen with the cheap check (manifest, every file present with its size),
        skipping steps this instance found corrupt. With ``full`` (the default) every byte is still
        checked before it is trusted, in one pass: each file is hashed as it is read, and a file
        whose bytes do not match raises ``ChecksumMismatch`` at the end of its stream, before
        ``read_bytes`` returns or the ``open`` file is closed; the step is then remembered as corrupt,
        so the next ``restore()`` falls back to the older one (``restore_with`` does that for you).
        ``local_dir`` checks every file before it returns the folder. ``full=False`` checks sizes only.
        """
        candidates = [step] if step is not None else list(reversed(self.steps()))
        for candidate in candidates:
            verdict, manifest, prints, seen_at = self._cheap_check(candidate)
            if verdict.ok and manifest is not None and full and self._corrupt.get(candidate) == manifest:
                verdict = Verdict(candidate, False, "its checksums did not match when it was read")
            if not verdict.ok or manifest is None:
                if step is not None:
                    raise NoCheckpoint(f"step {step} under {self.uri} is not valid: {verdict.reason}")
                continue
            trusted = set(manifest.files) if not full else self._unchanged(candidate, manifest, prints)
            return RestoredCheckpoint(self, manifest, trusted=trusted, prints=prints, seen_at=seen_at)
        raise NoCheckpoint(f"no valid checkpoint under {self.uri}")

    def restore_with(self, load: Callable[[RestoredCheckpoint], T]) -> tuple[RestoredCheckpoint, T] | None:
        """``load`` the newest checkpoint whose every byte matches, in one pass over the data.

        ``load`` reads through ``open``/``read_bytes`` (each file hashed as it streams); then the
        files ``load`` did not read to the end are checked too (``RestoredCheckpoint.check``). What
        ``load`` returned is used only if everything matched; otherwise the next older checkpoint is
        tried. An error ``load`` raises on files that match is the loader's, and is raised. None
        when there is no checkpoint.
        """
        for step in reversed(self.steps()):
            try:
                candidate = self.restore(step)
            except NoCheckpoint:
                continue
            try:
                loaded = load(candidate)
            except Exception:
                verdict = candidate.check()
                if verdict.ok:
                    raise  # the files are fine: the error is the loader's
                log.warning(
                    "checkpoint step %d under %s: %s; trying an older one", step, self.uri, verdict.reason
                )
                continue
            verdict = candidate.check()
            if not verdict.ok:
                log.warning(
                    "checkpoint step %d under %s: %s; trying an older one", step, self.uri, verdict.reason
                )
                continue
            return candidate, loaded
        return None

    def mark_verified(
        self, step: int, files: dict[str, FileEntry], prints: dict[str, Fingerprint], seen_at: float
    ) -> None:
        """Every byte of ``step``'s ``files`` was hashed by this instance (written or read) while the
        files had ``prints``, listed at ``seen_at``. Fingerprints too fresh to trust (a local file
        changed within its filesystem's time resolution) are not kept: those files are read again."""
        self._verified[step] = {
            name: (entry, prints[name])
            for name, entry in files.items()
            if name in prints and self.storage.settled(prints[name], seen_at)
        }

    def write_latest_hint(self, step: int) -> None:
        """Point LATEST at ``step`` unless it already names a newer one (the hint never goes back).
        LATEST is only a hint: when something else occupies the name, it is left alone."""
        self.move_latest_hint(step, self.latest_hint())

    def move_latest_hint(self, step: int, hint: int | None) -> None:
        """``write_latest_hint`` when LATEST was read already (``hint``: the step it named)."""
        if hint is None or hint <= step:
            try:
                self.storage.write_small(self.path(LATEST), step_dir(step).encode(), durable=False)
            except OSError as exc:
                log.warning(
                    "could not update the LATEST hint under %s (%s); readers list steps anyway", self.uri, exc
                )

    # ----------------------------------------------------------------- retention

    def delete(self, step: int) -> None:
        """Uncommit first (manifest), then remove the files: a crash midway leaves no half-valid step."""
        base = self.path(step_dir(step))
        self._verified.pop(step, None)
        try:
            self.storage.remove_file(f"{base}/{MANIFEST}")
        except (FileNotFoundError, NotADirectoryError):
            pass
        try:
            self.storage.remove_tree(base)
        except (FileNotFoundError, NotADirectoryError):
            pass

    def retain(self, keep: int, protect: set[int] | frozenset[int] = frozenset()) -> list[int]:
        """Keep the newest ``keep`` valid checkpoints; drop older ones and torn steps older than them.

        Validity is the full checksum, so a corrupt step never pushes the last good one out. The
        steps kept are listed afresh first and re-hashed only where a file's fingerprint changed
        since this instance hashed it: another writer, or a flipped byte, cannot make retention
        trust a step that no longer holds what its manifest says. Steps in ``protect`` (the one being restored) are never
        deleted. Torn steps newer than the newest valid one are left alone: a concurrent writer
        may still be saving them.
        """
        if keep < 1:
            raise ValueError("keep must be at least 1")
        steps = self.steps()
        valid: list[int] = []
        for step in reversed(steps):
            if len(valid) == keep:
                break
            if self.verify(step, full=True).ok:
                valid.insert(0, step)
        kept = set(valid) | set(protect)
        newest_valid = valid[-1] if valid else -1
        doomed = [s for s in steps if s not in kept and s < newest_valid]
        for step in doomed:
            self.delete(step)
        return doomed


class _HashingWriter(io.RawIOBase):
    """Streams to the store and hashes on the way: no second read to checksum."""

    def __init__(
        self,
        target: IO[bytes],
        storage: Storage,
        on_close: Any,
        cancel: threading.Event | None = None,
        algorithm: str = ALGORITHM,
    ) -> None:
        self._target, self._storage, self._on_close, self._cancel = target, storage, on_close, cancel
        self._digest = hasher(algorithm)

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        if self._cancel is not None and self._cancel.is_set():
            raise SaveAbandoned("checkpoint save abandoned")
        view = memoryview(data).cast("B")
        write_hashed(self._digest, view, self._target.write)
        return len(view)

    def close(self) -> None:
        if self.closed:
            return
        if self._cancel is not None and self._cancel.is_set():
            self._storage.discard_write(self._target)  # no upload for a save given up
            super().close()
            return
        written = self._storage.finish_write(self._target)
        self._on_close(FileEntry(self._digest.size, self._digest.hexdigest(), written.store), written)
        super().close()


class CheckpointWriter:
    """Writes one step: files through ``open``/``write_bytes``/``local_dir``, then ``commit``.

    With several ranks (``world_size`` > 1) every rank writes its own files and posts a partial
    manifest; rank 0 writes MANIFEST.json only once every rank of this attempt has posted, so no
    rank can commit a partial step. Files nobody claimed (those a library such as
    ``torch.distributed.checkpoint`` wrote into ``local_dir``) are hashed by rank 0 at that point.
    """

    def __init__(
        self,
        store: CheckpointStore,
        step: int,
        total_steps: int | None,
        attempt: int | None,
        job_id: str | None,
        metadata: dict[str, Any],
        rank: int = 0,
        world_size: int = 1,
        cancel: threading.Event | None = None,
        commit_timeout: float = 600.0,
    ) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside world_size {world_size}")
        self.store, self.step = store, step
        self.rank, self.world_size = rank, world_size
        self._meta = (total_steps, attempt, job_id, metadata)
        self._entries: dict[str, FileEntry] = {}
        self._prints: dict[str, Fingerprint | None] = {}  # each file as it was when this writer closed it
        self._base = store.path(step_dir(step))
        self._staging: str | None = None
        self._cancel = cancel
        self._commit_timeout = commit_timeout
        self._started = time.monotonic()
        self.algorithm = ALGORITHM  # a copy keeps its source's checksum (copy_checkpoint)
        self.committed: Manifest | None = None
        if world_size > 1:
            if store.manifest(step) is not None:
                raise CheckpointExists(f"step {step} is already committed under {store.uri}")
            return  # leftovers stay: another rank may already be writing (and nobody commits them)
        # One listing tells a fresh step (the usual case: nothing more to ask the store) from a
        # committed one or the leftovers of a save that never committed (removed).
        found = store.file_prints(step)
        if MANIFEST in found and store.manifest(step) is not None:
            raise CheckpointExists(f"step {step} is already committed under {store.uri}")
        if found or store.storage.local:  # locally, also whatever a listing of files leaves out
            store.delete(step)

    def dcp_save(self, state_dict: dict[str, Any], **kwargs: Any) -> None:
        """``torch.distributed.checkpoint.save(state_dict, **kwargs)`` into this step, every file
        written through ``open``: hashed as DCP writes it, nothing read back at commit. Imports
        torch (``checkpoint/dcp.py``)."""
        from multispot.checkpoint.dcp import save

        save(self, state_dict, **kwargs)

    @property
    def local_dir(self) -> Path:
        """A local folder for libraries that want a path; its files join the step at commit."""
        in_place = self.store.storage.in_place_dir(self._base)
        if in_place is not None:
            in_place.mkdir(parents=True, exist_ok=True)
            return in_place
        if self._staging is None:
            self._staging = tempfile.mkdtemp(prefix=f"multispot-{step_dir(self.step)}-")
        return Path(self._staging)

    def open(self, name: str) -> IO[bytes]:
        name = check_file_name(name)

        path = f"{self._base}/{name}"

        def record(entry: FileEntry, written: Written) -> None:
            self._entries[name] = entry
            self._prints[name] = self._version(path, written)

        target = self.store.open_write(path)
        raw = _HashingWriter(target, self.store.storage, record, self._cancel, self.algorithm)
        return io.BufferedWriter(raw, buffer_size=WRITE_BUFFER)

    def write_bytes(self, name: str, data: bytes) -> None:
        with self.open(name) as f:
            f.write(data)

    @property
    def entries(self) -> dict[str, FileEntry]:
        """The files written so far, with the size and checksum each was written with."""
        return dict(self._entries)

    def _collect_local_dir(self, claimed: set[str] | frozenset[str] = frozenset()) -> None:
        """Hash files placed in ``local_dir`` by other libraries: in place when ``local_dir`` is the
        step itself, else by uploading them from the staging folder."""
        staged = self._staging is not None
        root = Path(self._staging) if self._staging else self.store.storage.in_place_dir(self._base)
        if root is None or not root.is_dir():
            return
        todo: list[tuple[str, Path]] = []
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            name = path.relative_to(root).as_posix()
            if name in self._entries or name in claimed or _is_contract_file(name):
                continue
            check_file_name(name)
            todo.append((name, path))
        if staged:
            for name, path in todo:
                self._upload_staged(name, path)
            return
        if not todo:
            return
        # A library's save is often many files (a model, an optimizer, a scheduler, RNG states, a
        # DCP shard per rank): their fsyncs and hashes run side by side, not one file after another.
        with ThreadPoolExecutor(max_workers=min(8, len(todo))) as pool:
            entries = list(pool.map(lambda item: self._seal_in_place(item[1]), todo))
        for (name, path), entry in zip(todo, entries, strict=True):
            self._entries[name] = entry
            self._prints[name] = self.store.storage.stat(str(path))

    def _seal_in_place(self, path: Path) -> FileEntry:
        """fsync a file another library wrote into the step folder, then hash it (from the page cache)."""
        with open(path, "rb+") as f:
            os.fsync(f.fileno())
            f.seek(0)
            size, digest = digest_stream(f, self.algorithm)
        self.store.storage.mark_written(str(path))
        return FileEntry(size, digest)

    def _upload_staged(self, name: str, local: Path) -> None:
        """Upload a staged file as it is (hashed in one read, no copy through ``open``)."""
        if self._cancel is not None and self._cancel.is_set():
            raise SaveAbandoned("checkpoint save abandoned")
        remote = f"{self._base}/{name}"
        digest = hasher(self.algorithm)
        written = self.store.storage.upload_file(str(local), remote, digest)
        self._entries[name] = FileEntry(digest.size, digest.hexdigest(), written.store)
        self._prints[name] = self._version(remote, written)

    def _version(self, path: str, written: Written) -> Fingerprint | None:
        """The fingerprint of a file this writer just closed: from the metadata request that
        confirmed its upload (object stores), else a stat."""
        return written.version if written.version is not None else self.store.storage.stat(path)

    def _fsync_dirs(self, names: Any) -> None:
        """Make the entries of the files' sub-folders durable. The step folder itself is left to the
        durable write that follows (the manifest, or a rank's part), whose rename is followed by an
        fsync of that same folder: one fsync, not two. A crash between the two leaves a manifest
        whose files may be missing, which reads as uncommitted, like a crash before it."""
        self.store.storage.sync_dirs({os.path.dirname(f"{self._base}/{n}") for n in names} - {self._base})

    def commit(self) -> Manifest | None:
        """Seal the step: fsync what is local, then write MANIFEST.json, then the LATEST hint.

        With several ranks, ranks other than 0 post their part and return None: rank 0 commits.
        """
        total_steps, attempt, job_id, metadata = self._meta
        if self.world_size > 1:
            if self._staging is not None:  # a staged rank uploads its own files; in place, rank 0 hashes them
                self._collect_local_dir()
            self._fsync_dirs(self._entries)
            part = {
                "rank": self.rank,
                "attempt": attempt,
                "job_id": job_id,
                "hash": self.algorithm,
                "files": self._entries,
            }
            self.store.storage.write_small(f"{self._base}/{_part_name(self.rank)}", _part_json(part))
            if self.rank != 0:
                self._cleanup()
                return None
            self._entries = self._gather(attempt, job_id)
            metadata = {**metadata, "ranks": self.world_size}
        else:
            self._collect_local_dir()
            self._fsync_dirs(self._entries)
        # How long the files took, for checkpoint-interval advice (Young/Daly) on later runs.
        metadata = {**metadata, "write_seconds": round(time.monotonic() - self._started, 3)}
        manifest = Manifest(
            step=self.step,
            files=dict(sorted(self._entries.items())),
            time=datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
            total_steps=total_steps,
            attempt=attempt,
            job_id=job_id,
            metadata=metadata,
            hash=self.algorithm,
        )
        self._seal(manifest)
        self._cleanup()
        if self.world_size > 1:
            for rank in range(self.world_size):
                with contextlib.suppress(OSError):
                    self.store.storage.remove_file(f"{self._base}/{_part_name(rank)}")
        return manifest

    def commit_as(self, manifest: Manifest) -> Manifest:
        """Commit with a given manifest (a copy of another store's step), kept verbatim. Refuses,
        and leaves the step uncommitted, unless the files written match it exactly."""
        if manifest.step != self.step or manifest.hash != self.algorithm or self._entries != manifest.files:
            raise CheckpointError(f"the files written for step {self.step} do not match the manifest")
        # Sizes and digests as given; each file's store checksum is this store's, not the source's.
        manifest = dataclasses.replace(manifest, files={name: self._entries[name] for name in manifest.files})
        self._seal(manifest)
        self._cleanup()
        return manifest

    def _seal(self, manifest: Manifest) -> None:
        """Check that every file is still the one written, then write MANIFEST.json (the commit),
        then the LATEST hint. A file replaced, grown or removed since this writer closed it (another
        writer on the same step) leaves the step uncommitted: the manifest would vouch for bytes
        nobody hashed."""
        if not manifest.files:
            raise CheckpointError(f"step {self.step} has no files: nothing to commit")
        # LATEST is read while the step is listed and committed (two round trips fewer on an object
        # store); it only decides whether the hint moves forward.
        hint = submit(self.store.latest_hint)
        seen_at = time.time()
        prints = self.store.file_prints(self.step)
        for name, entry in manifest.files.items():
            now = prints.get(name)
            then = self._prints.get(name, now)  # files other ranks wrote: their size is checked
            if now is None or int(now["size"]) != entry.size or then is None or not same_version(now, then):
                raise CheckpointError(
                    f"{name} in step {self.step} changed while it was being saved (another writer on "
                    f"this step under {self.store.uri}?): the step is not committed"
                )
        self.store.storage.write_small(f"{self._base}/{MANIFEST}", manifest.to_json().encode())
        self.store.mark_verified(self.step, manifest.files, prints, seen_at)
        self.store.move_latest_hint(self.step, hint.result())
        self.committed = manifest

    def _gather(self, attempt: int | None, job_id: str | None) -> dict[str, FileEntry]:
        """Rank 0: wait for every rank's part of this attempt, then merge them."""
        deadline = time.monotonic() + self._commit_timeout
        while True:
            parts = [self._read_part(rank, attempt, job_id) for rank in range(self.world_size)]
            missing = [rank for rank, part in enumerate(parts) if part is None]
            if not missing:
                break
            if self._cancel is not None and self._cancel.is_set():
                raise SaveAbandoned(f"step {self.step} abandoned while waiting for ranks {missing}")
            if time.monotonic() > deadline:
                raise CheckpointError(
                    f"ranks {missing} did not finish step {self.step} within {self._commit_timeout:g}s: "
                    "the step is not committed"
                )
            time.sleep(0.05)
        merged: dict[str, FileEntry] = {}
        for part in parts:
            assert part is not None
            for name, entry in part.items():
                if name in merged and merged[name] != entry:
                    raise CheckpointError(f"two ranks wrote different {name} in step {self.step}")
                merged[name] = entry
        self._entries = merged
        self._collect_local_dir(claimed=set(merged))  # files no rank claimed, e.g. DCP's .metadata
        self._fsync_dirs(self._entries)
        return dict(self._entries)

    def _read_part(self, rank: int, attempt: int | None, job_id: str | None) -> dict[str, FileEntry] | None:
        raw = self.store.storage.read_small(f"{self._base}/{_part_name(rank)}", MANIFEST_LIMIT)
        if raw is None:
            return None
        try:
            data = json.loads(raw)
            if data.get("attempt") != attempt or data.get("job_id") != job_id or data.get("rank") != rank:
                return None  # left by an earlier attempt that saved the same step and died
            if data.get("hash") != self.algorithm:
                return None  # another version of multispot, another checksum: not this save's part
            return {check_file_name(name): FileEntry.from_json(e) for name, e in data["files"].items()}
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
            return None  # torn: its rank has not finished posting

    def abort(self) -> None:
        """Leave nothing that could be mistaken for a checkpoint (nothing was committed anyway)."""
        self._cleanup()
        if self.world_size == 1:
            self.store.delete(self.step)  # with ranks, the others' files are theirs; the step stays torn

    def _cleanup(self) -> None:
        if self._staging:
            shutil.rmtree(self._staging, ignore_errors=True)
            self._staging = None

    def __enter__(self) -> CheckpointWriter:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()


class _VerifyingReader(io.RawIOBase):
    """A file of a restored checkpoint, hashed as the consumer reads it: one pass over the bytes.

    The checksum runs in file order over a frontier: a read that reaches past the frontier hashes
    the consumer's own bytes beyond it (no copy, no second read). A jump ahead of at most ``GAP``
    bytes (a zip reader skipping a local header's padding) first reads and hashes the skipped bytes;
    a longer jump (a zip reader looking at its central directory at the end) leaves the frontier
    where it is, and those bytes are hashed when the frontier gets there. When the frontier reaches
    the recorded size, at end of file, or on ``close``, the rest of the file (if any) is read and
    hashed and the digest compared: a mismatch raises ``ChecksumMismatch`` from that read or from
    ``close``, so the last bytes are never returned and a ``with`` block never ends quietly.
    """

    # Small on purpose: a zip reader skips a few bytes of a local header's padding, but torch.load
    # also jumps from the start to the central directory at the end; a gap as large as CHUNK read
    # (and hashed) a whole file under 8 MB at that jump, and torch.load then read it again (2.1x).
    GAP = READ_BUFFER

    def __init__(
        self,
        raw: Any,
        name: str,
        entry: FileEntry,
        algorithm: str,
        label: str,
        on_done: Callable[[bool], None],
    ) -> None:
        self._raw, self._name, self._entry, self._label, self._on_done = raw, name, entry, label, on_done
        self._hash = hasher(algorithm)
        self._frontier = 0  # every byte before it is hashed
        self._pos = 0
        self.verdict: bool | None = None  # None until the whole file has been hashed

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self._pos = int(self._raw.seek(offset, whence))
        return self._pos

    def _take(self, data: Any, pos: int) -> None:
        """The consumer read ``data`` at ``pos``: hash what lies beyond the frontier."""
        end = pos + len(data)
        if pos <= self._frontier < end:
            self._hash.update(memoryview(data)[self._frontier - pos :])
            self._frontier = end

    def _read_at(self, pos: int, size: int) -> bytes:
        self._raw.seek(pos)
        data: bytes = self._raw.read(size)
        self._raw.seek(self._pos)
        return data

    def _fill_gap(self, pos: int) -> None:
        if self._frontier < pos <= self._frontier + self.GAP:
            gap = self._read_at(self._frontier, pos - self._frontier)
            self._take(gap, self._frontier)

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        if not len(view):
            return 0
        self._fill_gap(self._pos)
        pos = self._pos
        # Hashed inline, not beside the read (as writes are, ``write_hashed``): with torch.load
        # of 64 MB on a quiet machine, hashing each piece on a second core while the next was read
        # ran at 0.68-0.70x of torch.load(path), inline at 0.79-0.83x (docs/decisions.md).
        count = self._raw.readinto(view) or 0
        self._pos = pos + count
        self._take(view[:count], pos)
        if count == 0 or self._frontier >= self._entry.size:
            self.finish()
        return count

    def readall(self) -> bytes:
        self._fill_gap(self._pos)
        pos = self._pos
        data: bytes = self._raw.read()
        self._pos = pos + len(data)
        self._take(data, pos)
        self.finish()
        return data

    def finish(self) -> None:
        """Hash whatever is left from the frontier to the end of the file, then compare; raises
        ``ChecksumMismatch`` when the bytes are not those of the manifest (every call after too)."""
        if self.verdict is None:
            try:
                self._raw.seek(self._frontier)
                while piece := self._raw.read(CHUNK):
                    self._take(piece, self._frontier)
                self._raw.seek(self._pos)
                ok = self._frontier == self._entry.size and self._hash.hexdigest() == self._entry.digest
            except OSError:
                ok = False
            self.verdict = ok
            self._on_done(ok)
        if not self.verdict:
            raise ChecksumMismatch(
                f"{self._name} in {self._label} does not match its manifest (size or checksum): "
                "its bytes are not to be trusted"
            )

    def close(self) -> None:
        if self.closed:
            return
        try:
            self.finish()
        finally:
            self._raw.close()
            super().close()


class RestoredCheckpoint:
    """A committed checkpoint to read from; every byte read is checked (see ``CheckpointStore.restore``)."""

    def __init__(
        self,
        store: CheckpointStore,
        manifest: Manifest,
        trusted: set[str] | None = None,
        prints: dict[str, Fingerprint] | None = None,
        seen_at: float = 0.0,
    ) -> None:
        self.store, self.manifest = store, manifest
        self._base = store.path(step_dir(manifest.step))
        self._download: str | None = None
        # name -> whether its bytes matched (files already hashed by this store count as matched)
        self._checked: dict[str, bool] = dict.fromkeys(
            set(manifest.files) if trusted is None else trusted, True
        )
        self._readers: list[_VerifyingReader] = []
        self._prints, self._seen_at = prints, seen_at
        self._lock = threading.Lock()

    @property
    def step(self) -> int:
        return self.manifest.step

    @property
    def files(self) -> list[str]:
        return list(self.manifest.files)

    def _record(self, name: str, ok: bool) -> None:
        with self._lock:
            self._checked[name] = self._checked.get(name, True) and ok
        if not ok:
            self.store.mark_corrupt(self.step, self.manifest)

    def _open_raw(self, name: str) -> Any:
        name = check_file_name(name)
        if name not in self.manifest.files:
            raise FileNotFoundError(f"{name!r} is not in checkpoint step {self.step}")
        raw: Any = self.store.open_read(f"{self._base}/{name}")
        if self._checked.get(name):
            return raw
        label = f"checkpoint step {self.step} under {self.store.uri}"
        reader = _VerifyingReader(
            raw, name, self.manifest.files[name], self.manifest.hash, label, lambda ok: self._record(name, ok)
        )
        self._readers.append(reader)
        return reader

    def open(self, name: str) -> IO[bytes]:
        """A binary file; its bytes are hashed as they are read and checked at the end of the file
        or on ``close`` (``ChecksumMismatch``): read it in a ``with`` block."""
        return io.BufferedReader(self._open_raw(name), buffer_size=READ_BUFFER)

    def read_bytes(self, name: str) -> bytes:
        """The whole file, checked before it is returned."""
        with self._open_raw(name) as f:
            data: bytes = f.read()  # a verifying reader's readall: one read, hashed, checked
            return data

    def check(self) -> Verdict:
        """Finish checking the whole step: files opened and not read to the end are read on, files
        never opened are read and hashed (up to 8 at once), or vouched for by the object store's own
        checksum. Afterwards the store trusts the step
        (retention does not hash it again) if every file matched."""
        for reader in list(self._readers):
            with contextlib.suppress(ChecksumMismatch):
                reader.finish()
        todo = [name for name in self.manifest.files if name not in self._checked]
        if todo:

            def check(name: str) -> None:
                if self.store.store_vouches(f"{self._base}/{name}", self.manifest.files[name]):
                    self._record(name, True)  # the object store's own checksum: no download
                    return
                with contextlib.suppress(ChecksumMismatch), self._open_raw(name) as reader:
                    while reader.read(CHUNK):
                        pass

            with ThreadPoolExecutor(max_workers=min(8, len(todo))) as pool:
                list(pool.map(check, todo))
        bad = sorted(name for name, ok in self._checked.items() if not ok)
        if bad:
            return Verdict(self.step, False, f"checksum mismatch in {', '.join(bad)}")
        if self._prints is not None:
            self.store.mark_verified(self.step, self.manifest.files, self._prints, self._seen_at)
        return Verdict(self.step, True)

    def dcp_load(self, state_dict: dict[str, Any], **kwargs: Any) -> None:
        """``torch.distributed.checkpoint.load(state_dict, **kwargs)`` from this checkpoint, every
        file read through ``open``: its bytes checked as DCP loads them, in one pass, and a mismatch
        raised as ``ChecksumMismatch`` (for ``restore_with``). Imports torch (``checkpoint/dcp.py``)."""
        from multispot.checkpoint.dcp import load

        load(self, state_dict, **kwargs)

    @property
    def local_dir(self) -> Path:
        """A local folder with the checkpoint's files (the step dir itself on local storage). Every
        file is checked before the folder is returned (``ChecksumMismatch`` otherwise): libraries
        read from it by path, past any reader that could check their bytes."""
        in_place = self.store.storage.in_place_dir(self._base)
        if in_place is not None:
            verdict = self.check()
            if not verdict.ok:
                raise ChecksumMismatch(
                    f"checkpoint step {self.step} under {self.store.uri}: {verdict.reason}"
                )
            return in_place
        if self._download is None:
            target = tempfile.mkdtemp(prefix=f"multispot-restore-{step_dir(self.step)}-")
            try:
                for name in self.manifest.files:
                    dest = Path(target, name)
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    with self.open(name) as src, open(dest, "wb") as dst:
                        shutil.copyfileobj(src, dst, CHUNK)
            except BaseException:
                shutil.rmtree(target, ignore_errors=True)
                raise
            self._download = target
        return Path(self._download)

    def __repr__(self) -> str:
        return f"RestoredCheckpoint(step={self.step}, files={len(self.files)}, uri={self.store.uri!r})"


def copy_checkpoint(
    src: CheckpointStore | str, dst: CheckpointStore | str, step: int | None = None
) -> Manifest:
    """Copy one checkpoint (the newest valid by default) to another URI, e.g. ``s3://`` → ``gs://``.

    Files stream through this process and are hashed on the way, so the source is read once; the
    manifest is written on the destination only after every byte matched the source manifest. A
    source step that fails its checksums is skipped for the next older one (unless ``step`` is given).
    """
    src = src if isinstance(src, CheckpointStore) else CheckpointStore(src)
    dst = dst if isinstance(dst, CheckpointStore) else CheckpointStore(dst)
    candidates = [step] if step is not None else list(reversed(src.steps()))
    for candidate in candidates:
        if not src.verify(candidate, full=False).ok:
            continue
        manifest = src.manifest(candidate)
        assert manifest is not None
        if dst.verify(candidate).ok:
            there = dst.manifest(candidate)
            if there is None or there.files != manifest.files:
                raise CheckpointExists(
                    f"{dst.uri} already holds a different checkpoint at step {candidate} "
                    "(other checksums): not overwritten"
                )
            return manifest
        if _copy_step(src, dst, manifest):
            return manifest
    at = f"at step {step} " if step is not None else ""
    raise NoCheckpoint(f"no valid checkpoint {at}under {src.uri}")


def _copy_step(src: CheckpointStore, dst: CheckpointStore, manifest: Manifest) -> bool:
    restored = RestoredCheckpoint(src, manifest)
    if dst.manifest(manifest.step) is not None:
        # The caller found the destination's copy invalid (a manifest that arrived before its files,
        # or damaged files): it is no checkpoint, so uncommit it and write it afresh.
        dst.delete(manifest.step)
    writer = dst.writer(manifest.step)
    writer.algorithm = manifest.hash  # the manifest is copied verbatim: so are its checksums
    try:
        for name in manifest.files:
            with restored.open(name) as source, writer.open(name) as target:
                shutil.copyfileobj(source, target, CHUNK)
        if writer.entries != manifest.files:
            writer.abort()
            return False
        writer.commit_as(manifest)
    except BaseException:
        writer.abort()
        raise
    return True


def _part_name(rank: int) -> str:
    return f"{MANIFEST_PART_PREFIX}{rank:05d}.json"


def _part_json(part: dict[str, Any]) -> bytes:
    files = {name: e.to_json() for name, e in part["files"].items()}
    return json.dumps({**part, "files": files}, sort_keys=True).encode()


def _is_contract_file(name: str) -> bool:
    return name.endswith(".tmp-manifest") or name.startswith(MANIFEST_PART_PREFIX) or name == MANIFEST


def iter_checkpoints(store: CheckpointStore) -> Iterator[tuple[int, Verdict]]:
    """Every step directory with its verdict (cheap size check), newest first: for ``status``/tools."""
    for step in reversed(store.steps()):
        yield step, store.verify(step, full=False)
