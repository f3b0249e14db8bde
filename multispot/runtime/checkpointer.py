"""The object a training script holds: restore once, save on a schedule, react to the notice."""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import contextmanager
from importlib.metadata import entry_points
from typing import Any, NoReturn, TypeVar

from multispot import jobenv
from multispot.checkpoint import CheckpointStore, CheckpointWriter, Manifest, RestoredCheckpoint
from multispot.checkpoint.transfer import Transfer
from multispot.errors import SaveAbandoned
from multispot.runtime.env import JobEnv, detect
from multispot.runtime.notice import FileNoticeSource, Hook, NoticeSource, PreemptionNotice

# 128 + SIGTERM: the conventional status of a process stopped by SIGTERM, so a supervisor or a
# person reading the exit status sees the run stopped on purpose for a preemption.
T = TypeVar("T")

EXIT_PREEMPTED = 143
NOTICE_MARGIN = 1.0  # seconds of the notice kept back for flushing and exiting

WAIT_PAST_DEADLINE = 300.0  # on a re-queuing service: how long past the notice to wait for the stop

_notice: PreemptionNotice | None = None


def _service_requeues(provider: str) -> bool:
    """Does ``provider``'s job environment say the service re-queues a preempted job itself?"""
    for entry in entry_points(group=jobenv.GROUP):
        if entry.name == provider:
            try:
                return bool(getattr(entry.load(), "requeues_on_preemption", False))
            except Exception:  # a broken plugin must not turn a notice into a crash
                return False
    return False


# Beside the job's checkpoints (never a step-* folder, so listing and retention skip it): what
# each attempt restored, written by the runtime and read by `status` and the controller. It
# lives on the checkpoint storage because that is the one place every provider lets both the
# job and the machine that launched it read and write.
RECORD_DIR = ".multispot"


_saves_seen = 0


def _fault_point() -> None:
    """Testing hook for ``verify-resume`` and chaos tests: ``MULTISPOT_FAULT=kill-in-save:N`` kills
    this process (SIGKILL, no cleanup) inside its N-th save, after the files and before the
    manifest: exactly the torn save a reclaim without enough notice leaves behind."""
    global _saves_seen
    fault = os.environ.get(jobenv.FAULT, "")
    if not fault.startswith("kill-in-save:"):
        return
    _saves_seen += 1
    if _saves_seen == int(fault.partition(":")[2]):
        sys.stdout.flush()
        os.kill(os.getpid(), signal.SIGKILL)


def _default_sources(env: JobEnv) -> list[NoticeSource]:
    """The local provider's notice file, plus what an adapter registers for its service under the
    entry-point group ``multispot.notice_sources`` (name = provider, value = ``f(env) -> sources``)."""
    sources: list[NoticeSource] = []
    if os.environ.get(jobenv.NOTICE_FILE):
        sources.append(FileNoticeSource(os.environ[jobenv.NOTICE_FILE]))
    for entry in entry_points(group="multispot.notice_sources"):
        if entry.name == env.provider:
            sources.extend(entry.load()(env))
    return sources


def attempt_record_path(attempt: int) -> str:
    """Where attempt ``attempt``'s restore record lives, relative to the checkpoint URI."""
    return f"{RECORD_DIR}/attempt-{attempt}.json"


def read_attempt_record(store: CheckpointStore, attempt: int) -> dict[str, Any] | None:
    """What attempt ``attempt`` restored (``{"resumed_from_step": int | None, ...}``), or None if
    the attempt never got as far as restoring (or the record is unreadable)."""
    raw = store.read_record(attempt_record_path(attempt))
    if raw is None:
        return None
    try:
        record = json.loads(raw)
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


def resumed_from_step(uri: str, attempt: int, job_id: str | None = None) -> int | None:
    """The checkpoint step attempt ``attempt`` of the job at ``uri`` restored; None when it
    started from scratch, has not restored yet, or the record belongs to another job."""
    try:
        record = read_attempt_record(CheckpointStore(uri), attempt)
    except (OSError, ValueError):
        return None
    if record is None or (job_id and record.get("job_id") not in (None, job_id)):
        return None
    step = record.get("resumed_from_step")
    return step if isinstance(step, int) else None


def _signal(path: str, data: dict[str, Any]) -> None:
    """Write a signal file for the local provider's supervisor, whole or not at all."""
    with contextlib.suppress(OSError):
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "w") as f:
            json.dump({**data, "pid": os.getpid()}, f)
        os.replace(tmp, path)


def _signal_ready() -> None:
    """Tell the local provider's supervisor this attempt's runtime is up (imports done, restore
    over): its preemption schedule counts from here, so a busy machine's slow start is not
    mistaken for training time. No-op elsewhere."""
    path = os.environ.get(jobenv.READY_FILE)
    if path and not os.path.exists(path):
        _signal(path, {"ready": time.time()})


_saves_committed = 0


def _signal_saved() -> None:
    """Tell the local provider's supervisor a save committed (how many so far, and when): an
    ``at=`` item ``save:N+T`` counts from the N-th. No-op elsewhere."""
    global _saves_committed
    path = os.environ.get(jobenv.SAVED_FILE)
    if path:
        _saves_committed += 1
        _signal(path, {"count": _saves_committed, "time": time.time()})


def notice(env: JobEnv | None = None) -> PreemptionNotice:
    """The process-wide preemption notice, installed on first use."""
    global _notice
    if _notice is None:
        env = env or detect()
        _notice = PreemptionNotice(env.notice_seconds)
        _notice.install(_default_sources(env))
    return _notice


def add_notice_source(source: NoticeSource) -> None:
    """Poll one more notice source (e.g. a scheduler's own signal) on the process-wide notice."""
    notice().install([source])


def on_preemption(hook: Hook) -> Hook:
    """Decorator/function: call ``hook(seconds_left)`` once when the preemption notice comes."""
    return notice().on_preemption(hook)


class Checkpointer:
    """Checkpoints of this job under the contract, located from the environment.

    >>> ckpt = Checkpointer()
    >>> restored = ckpt.restore()            # newest valid checkpoint, or None on a fresh start
    >>> with ckpt.save(step, total_steps=N) as w:
    ...     with w.open("model.pt") as f: torch.save(state, f)

    ``save_async`` writes in a background thread so the loop blocks only for the snapshot it is
    given; one save is in flight at a time, and on the preemption notice the one in flight is
    finished within the notice budget or abandoned (nothing half-written is ever committed).
    """

    def __init__(
        self,
        uri: str | None = None,
        *,
        interval: float | None = None,
        keep: int | None = None,
        env: JobEnv | None = None,
        storage_options: dict[str, Any] | None = None,
        transfer: Transfer | None = None,
    ) -> None:
        """``transfer``: part size and concurrency of object-store transfers; default: the job's
        ``checkpoint.transfer`` (``MULTISPOT_CHECKPOINT_TRANSFER``), else ``Transfer()``."""
        self.env = env or detect()
        if transfer is None and self.env.checkpoint_transfer:
            transfer = Transfer.from_settings(self.env.checkpoint_transfer, jobenv.CHECKPOINT_TRANSFER)
        self.store = CheckpointStore(uri or self.env.checkpoint_uri, storage_options, transfer)
        self.interval = self.env.checkpoint_interval if interval is None else interval
        self.keep = self.env.checkpoint_keep if keep is None else keep
        self.every_steps = self.env.checkpoint_every_steps
        self.notice = notice(self.env)
        self.restored: RestoredCheckpoint | None = None
        self.last_saved_step: int | None = None
        self._last_save_time = time.monotonic()
        self.save_seconds: list[float] = []  # measured durations, for interval advice
        self.blocked_seconds: list[float] = []  # how long each async save held the training loop
        self._pending: tuple[Future[Manifest | None], threading.Event] | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._recorded = False  # record_restore ran (or training began without a restore)
        self._record_thread: threading.Thread | None = None  # writing the restore record
        self.notice.on_preemption(self._notice_came)

    def __repr__(self) -> str:
        return f"Checkpointer({self.store.uri!r}, interval={self.interval:g}s, keep={self.keep})"

    # ----------------------------------------------------------------- notice

    @property
    def preempted(self) -> bool:
        """True once the preemption notice came: save now and stop."""
        return self.notice.received

    def seconds_left(self) -> float | None:
        return self.notice.seconds_left()

    def on_preemption(self, hook: Hook) -> Hook:
        return self.notice.on_preemption(hook)

    def budget(self) -> float | None:
        """Seconds a save may still take before the hard stop (None: no notice yet)."""
        left = self.seconds_left()
        return None if left is None else max(0.0, left - NOTICE_MARGIN)

    def can_save_in_time(self) -> bool:
        """Would one more save fit in what is left of the notice? (From the slowest recent save.)"""
        budget = self.budget()
        if budget is None:
            return True
        estimate = max(self.save_seconds[-3:], default=0.0)
        return estimate <= budget

    @property
    def last_save_seconds(self) -> float | None:
        """How long the last save took to become durable: from the start of the save until its
        files were fsynced (on local storage) and MANIFEST.json was committed. None before any."""
        return self.save_seconds[-1] if self.save_seconds else None

    def _durable_estimate(self) -> float | None:
        return max(self.save_seconds[-3:]) if self.save_seconds else None

    def _say_if_too_slow(self, step: int | None, budget: float | None) -> None:
        """Tell the job's log when a save cannot become durable in what is left of the notice."""
        estimate = self._durable_estimate()
        if budget is None or estimate is None or estimate <= budget:
            return
        what = f"saving step {step}" if step is not None else "a save"
        print(
            f"multispot: {what} cannot finish inside the preemption notice: recent saves took up to "
            f"{estimate:.1f}s to become durable, {budget:.1f}s of the notice is left; the newest committed "
            "checkpoint stays the resume point",
            file=sys.stderr,
            flush=True,
        )

    def _notice_came(self, seconds_left: float) -> None:
        self._say_if_too_slow(None, max(0.0, seconds_left - NOTICE_MARGIN))

    def exit_preempted(self) -> NoReturn:
        """Leave the process after a preemption, with the conventional status.

        A save still in flight gets what is left of the notice budget, then is abandoned. On a
        service that re-queues a preempted job by itself (its job environment says
        ``requeues_on_preemption``: Azure ML), the process does not exit: an exit before the node
        is taken is the command failing, which would turn a preemption the service absorbs into a
        failed job. It waits to be stopped, and exits only if the node outlives the notice by
        WAIT_PAST_DEADLINE (docs/decisions.md, "What the runtime does on a notice").
        """
        self.finish_pending(self.budget())
        sys.stdout.flush()
        sys.stderr.flush()
        if _service_requeues(self.env.provider):
            print(
                f"multispot: checkpoint saved; waiting for {self.env.provider} to take the node "
                "(it re-queues the job and this attempt resumes from the checkpoint)",
                file=sys.stderr,
                flush=True,
            )
            until = (self.notice.deadline or time.time()) + WAIT_PAST_DEADLINE
            while time.time() < until:
                time.sleep(1.0)
        sys.exit(EXIT_PREEMPTED)

    # ----------------------------------------------------------------- restore / save

    def record_restore(self, step: int | None) -> None:
        """Record what this attempt resumed from (``step``; None: from scratch) beside the
        checkpoints, for ``status`` and the controller, and signal that the runtime is ready.

        ``restore``/``restore_with`` call it; an integration that loads a checkpoint itself (a
        framework reading its own folder) calls it with the step it loaded. Rank 0 records.
        """
        if self.env.rank == 0:
            record = {
                "attempt": self.env.attempt,
                "job_id": self.env.job_id,
                "resumed_from_step": step,
                "checkpoint_attempt": self.restored.manifest.attempt if self.restored else None,
                "time": time.time(),
            }
            # Written on a thread, off the restore's path: one more object-store round trip (tens
            # of ms) after the load, or ~0.8 ms of a 64 MB restore's ~45 on this VM's disk.
            # ``finish_pending`` waits for it, so every save (and so every kill inside one) comes
            # after it; a normal exit waits for it too (not a daemon thread).
            self._wait_for_record()  # a second restore: its record lands last
            self._record_thread = threading.Thread(
                target=self._write_record,
                args=(json.dumps(record).encode(),),
                name="multispot-restore-record",
            )
            self._record_thread.start()
        self._recorded = True
        _signal_ready()

    def _wait_for_record(self, timeout: float | None = None) -> None:
        """Until the restore record in flight (if any) is written, or ``timeout`` seconds."""
        if self._record_thread is not None:
            self._record_thread.join(timeout)
            self._record_thread = None

    def _write_record(self, data: bytes) -> None:
        # Not fsynced: two fsyncs cost 10-15 ms of a 64 MB torch.load's ~50 ms
        # (bench/checkpoint_io.py). Losing it needs the machine to crash, which ends the attempt
        # anyway; readers take a missing or torn record as "not restored yet"
        # (``read_attempt_record``). Still written whole.
        with contextlib.suppress(OSError):
            self.store.write_record(attempt_record_path(self.env.attempt), data, durable=False)

    def restore(self) -> RestoredCheckpoint | None:
        """The newest checkpoint that verifies (falling back past torn ones), or None."""
        manifest = self.store.latest()
        if manifest is None:
            self.record_restore(None)
            return None
        self.restored = self.store.restore(manifest.step)
        self.last_saved_step = manifest.step
        self.record_restore(manifest.step)
        return self.restored

    def restore_with(self, load: Callable[[RestoredCheckpoint], T]) -> T | None:
        """``load`` the newest checkpoint whose every byte matches, in one pass over the data.

        Each file ``load`` reads is hashed as it streams and checked at its end; files it did not
        read are checked after it returns. What ``load`` returned is used only if every checksum
        matched; otherwise the next older checkpoint is tried. None on a fresh start.
        """
        found = self.store.restore_with(load)
        if found is None:
            self.record_restore(None)
            return None
        self.restored, loaded = found
        self.last_saved_step = self.restored.step
        self.record_restore(self.restored.step)
        return loaded

    def should_save(self, step: int | None = None) -> bool:
        """Time to save: the notice came, the interval has passed, or ``step`` is a multiple of
        ``checkpoint.every_steps`` (and this step is not saved yet)."""
        if not self._recorded:  # a script that never restores is training now: it is ready
            _signal_ready()
            self._recorded = True
        if step is not None and step == self.last_saved_step:
            return False
        if self.preempted:
            return True
        if self.every_steps and step is not None and step % self.every_steps == 0:
            return True
        return time.monotonic() - self._last_save_time >= self.interval

    def _writer(
        self,
        step: int,
        total_steps: int | None,
        metadata: dict[str, Any] | None,
        cancel: threading.Event | None = None,
    ) -> CheckpointWriter:
        _signal_ready()
        if self.save_seconds:  # the previous save's time to durable, for interval advice on later runs
            metadata = {**(metadata or {}), "durable_seconds": round(self.save_seconds[-1], 3)}
        return self.store.writer(
            step,
            total_steps=total_steps,
            attempt=self.env.attempt,
            job_id=self.env.job_id,
            metadata=metadata,
            rank=self.env.rank,
            world_size=self.env.world_size,
            cancel=cancel,
        )

    def _saved(self, step: int, seconds: float) -> None:
        self.save_seconds.append(seconds)
        self.last_saved_step = step
        if self.env.rank == 0:
            _signal_saved()
        self._last_save_time = time.monotonic()
        # Retention is rank 0's, and waits on notice: the budget is for committing, not deleting.
        if not self.preempted and self.env.rank == 0:
            protect = {self.restored.step} if self.restored else set()
            self.store.retain(self.keep, protect=protect)

    @contextmanager
    def save(
        self, step: int, *, total_steps: int | None = None, metadata: dict[str, Any] | None = None
    ) -> Iterator[CheckpointWriter]:
        """Write files for ``step`` in the block; committed when it ends without error, then retention."""
        self.finish_pending(self.budget())  # saves commit in step order
        self._say_if_too_slow(step, self.budget())
        started = time.monotonic()
        with self._writer(step, total_steps, metadata) as writer:
            yield writer
            _fault_point()
        self._saved(step, time.monotonic() - started)

    def save_async(
        self,
        step: int,
        write: Callable[[CheckpointWriter], None],
        *,
        total_steps: int | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> Future[Manifest | None]:
        """Run ``write(writer)`` for ``step`` in a background thread, then commit.

        ``write`` must use a snapshot of the state (it runs while training goes on). The call
        blocks only while the previous save is still in flight.
        """
        blocked = time.monotonic()
        self.finish_pending(self.budget())
        cancel = threading.Event()

        def run() -> Manifest | None:
            started = time.monotonic()
            with self._writer(step, total_steps, metadata, cancel) as writer:
                write(writer)
                _fault_point()
            self._saved(step, time.monotonic() - started)
            return writer.committed

        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="multispot-save")
            atexit.register(self.finish_pending, None)  # a normal exit lets the last save commit
        future = self._pool.submit(run)
        self._pending = (future, cancel)
        self.blocked_seconds.append(time.monotonic() - blocked)
        return future

    def finish_pending(self, timeout: float | None = None) -> bool:
        """Wait for the save in flight; past ``timeout`` seconds abandon it (nothing is committed).

        True if it committed or none was in flight; False if it was abandoned.
        """
        self._wait_for_record(timeout)  # the restore record comes before any save
        if self._pending is None:
            return True
        future, cancel = self._pending
        self._pending = None
        try:
            future.result(timeout=timeout)
            return True
        except FutureTimeout:
            cancel.set()  # the writer stops at its next write and removes what it wrote
            with contextlib.suppress(SaveAbandoned):
                future.result()
            return False

    def committed(self) -> Manifest | None:
        return self.store.latest(full=False)
