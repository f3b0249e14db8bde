"""The object a training script holds: restore once, save on a schedule, react to the notice."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.metadata import entry_points
from typing import Any, NoReturn

from multispot.checkpoint import CheckpointStore, CheckpointWriter, Manifest, RestoredCheckpoint
from multispot.runtime.env import JobEnv, detect
from multispot.runtime.notice import FileNoticeSource, Hook, NoticeSource, PreemptionNotice

# 128 + SIGTERM: the conventional status of a process stopped by SIGTERM, so a supervisor or a
# person reading the exit status sees the run stopped on purpose for a preemption.
EXIT_PREEMPTED = 143

_notice: PreemptionNotice | None = None


def _default_sources(env: JobEnv) -> list[NoticeSource]:
    """The local provider's notice file, plus what an adapter registers for its service under the
    entry-point group ``multispot.notice_sources`` (name = provider, value = ``f(env) -> sources``)."""
    sources: list[NoticeSource] = []
    if os.environ.get("MULTISPOT_NOTICE_FILE"):
        sources.append(FileNoticeSource(os.environ["MULTISPOT_NOTICE_FILE"]))
    for entry in entry_points(group="multispot.notice_sources"):
        if entry.name == env.provider:
            sources.extend(entry.load()(env))
    return sources


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
    """

    def __init__(
        self,
        uri: str | None = None,
        *,
        interval: float | None = None,
        keep: int | None = None,
        env: JobEnv | None = None,
        storage_options: dict[str, Any] | None = None,
    ) -> None:
        self.env = env or detect()
        self.store = CheckpointStore(uri or self.env.checkpoint_uri, storage_options)
        self.interval = self.env.checkpoint_interval if interval is None else interval
        self.keep = self.env.checkpoint_keep if keep is None else keep
        self.notice = notice(self.env)
        self.restored: RestoredCheckpoint | None = None
        self.last_saved_step: int | None = None
        self._last_save_time = time.monotonic()
        self.save_seconds: list[float] = []  # measured durations, for interval advice

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

    def exit_preempted(self) -> NoReturn:
        """Leave the process after a preemption, with the conventional status."""
        sys.stdout.flush()
        sys.stderr.flush()
        sys.exit(EXIT_PREEMPTED)

    # ----------------------------------------------------------------- restore / save

    def restore(self) -> RestoredCheckpoint | None:
        """The newest checkpoint that verifies (falling back past torn ones), or None."""
        manifest = self.store.latest()
        if manifest is None:
            return None
        self.restored = self.store.restore(manifest.step)
        self.last_saved_step = manifest.step
        return self.restored

    def should_save(self, step: int | None = None) -> bool:
        """Time to save: the interval has passed, or the notice came and this step is not saved yet."""
        if step is not None and step == self.last_saved_step:
            return False
        if self.preempted:
            return True
        return time.monotonic() - self._last_save_time >= self.interval

    @contextmanager
    def save(
        self, step: int, *, total_steps: int | None = None, metadata: dict[str, Any] | None = None
    ) -> Iterator[CheckpointWriter]:
        """Write files for ``step`` in the block; committed when it ends without error, then retention."""
        started = time.monotonic()
        writer = self.store.writer(
            step,
            total_steps=total_steps,
            attempt=self.env.attempt,
            job_id=self.env.job_id,
            metadata=metadata,
        )
        with writer:
            yield writer
        self.save_seconds.append(time.monotonic() - started)
        self.last_saved_step = step
        self._last_save_time = time.monotonic()
        protect = {self.restored.step} if self.restored and not self.preempted else set()
        # On notice, retention waits: the budget is for committing, not for deleting.
        if not self.preempted:
            self.store.retain(self.keep, protect=protect)

    def committed(self) -> Manifest | None:
        return self.store.latest(full=False)
