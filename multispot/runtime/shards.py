"""Job arrays inside the job: which task this is, and the work items it has not finished yet.

    from multispot.runtime import shards
    for shard in shards.pending():      # this task's shards (or pending(my_items))
        process(shard)                  # recorded done when the loop asks for the next one

Each item's completion is a small record beside the task's checkpoints
(``<checkpoint-uri>/.multispot/done/<sha256 of the item>.json``), so a task interrupted by a
preemption and resumed by its next attempt skips what an earlier attempt finished: no finished
item is processed again. An item is recorded only after its loop body ran to the end (an
exception or a ``break`` leaves it not done). On the preemption notice, ``pending`` records the
item just finished and stops the process with the conventional status instead of starting the
next one.

A hard stop with no notice at all can land between the end of an item and its record; that
item is then processed again by the next attempt, so an item's effects should be idempotent
(write its output under a name of its own) when the provider can stop without notice.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

from multispot.checkpoint import CheckpointStore
from multispot.runtime.checkpointer import EXIT_PREEMPTED, RECORD_DIR, _signal_ready, notice
from multispot.runtime.env import JobEnv, detect

# The in-job names of a job array's task. They are defined here, and only here, for now:
# ``multispot/jobenv.py`` (the one builder/reader of MULTISPOT_* variables) is being written on
# another branch; these three move there when it lands.
TASK_INDEX = "MULTISPOT_TASK_INDEX"
TASK_COUNT = "MULTISPOT_TASK_COUNT"
TASK_SHARDS = "MULTISPOT_TASK_SHARDS"  # a JSON list of this task's shards (strings)

DONE_DIR = f"{RECORD_DIR}/done"
DONE_LIMIT = 64 * 1024


@dataclass(frozen=True)
class Task:
    index: int  # 0-based
    count: int
    shards: tuple[str, ...]


def task_env(index: int, count: int, shards: list[str] | None) -> dict[str, str]:
    """The variables a task of an array runs with (what ``task()`` reads back)."""
    env = {TASK_INDEX: str(index), TASK_COUNT: str(count)}
    if shards is not None:
        env[TASK_SHARDS] = json.dumps(list(shards))
    return env


def task(environ: Mapping[str, str] | None = None) -> Task:
    """This task of a job array; a job that is not part of one is task 0 of 1 with no shards."""
    env = os.environ if environ is None else environ
    try:
        index = int(env.get(TASK_INDEX) or 0)
        count = int(env.get(TASK_COUNT) or 1)
    except ValueError:
        raise RuntimeError(f"{TASK_INDEX}/{TASK_COUNT} are not integers") from None
    shards: tuple[str, ...] = ()
    if env.get(TASK_SHARDS):
        try:
            listed = json.loads(env[TASK_SHARDS])
        except ValueError:
            raise RuntimeError(f"{TASK_SHARDS} is not a JSON list") from None
        if not isinstance(listed, list) or not all(isinstance(s, str) for s in listed):
            raise RuntimeError(f"{TASK_SHARDS} is not a JSON list of strings")
        shards = tuple(listed)
    return Task(index, count, shards)


def _record_name(item: str) -> str:
    return f"{DONE_DIR}/{hashlib.sha256(item.encode()).hexdigest()}.json"


class Progress:
    """The done-records of one task's checkpoint location."""

    def __init__(self, uri: str | None = None, env: JobEnv | None = None) -> None:
        self.env = env or detect()
        self.store = CheckpointStore(uri or self.env.checkpoint_uri)

    def is_done(self, item: str) -> bool:
        raw = self.store.read_record(_record_name(item), DONE_LIMIT)
        if raw is None:
            return False
        try:
            return bool(json.loads(raw).get("item") == item)
        except (ValueError, AttributeError):
            return False

    def mark_done(self, item: str) -> None:
        record = {"item": item, "time": time.time(), "attempt": self.env.attempt, "job_id": self.env.job_id}
        self.store.write_record(_record_name(item), json.dumps(record).encode())

    def done(self) -> list[str]:
        """Every item recorded done here (in no particular order)."""
        try:
            files = self.store.storage.find(self.store.path(DONE_DIR))
        except (FileNotFoundError, NotADirectoryError):
            return []
        items = []
        for path in files:
            raw = self.store.read_record(f"{DONE_DIR}/{path.rsplit('/', 1)[-1]}", DONE_LIMIT)
            with contextlib.suppress(ValueError, AttributeError, TypeError):
                item = json.loads(raw or b"").get("item")
                if isinstance(item, str):
                    items.append(item)
        return items


def pending(items: Iterable[str] | None = None, *, uri: str | None = None) -> Iterator[str]:
    """The items (default: this task's shards) not recorded done yet, in order; each is recorded
    done when the loop asks for the next one (or the loop ends). On the preemption notice the
    process exits with status 143 after recording the item just finished."""
    listed = list(task().shards if items is None else items)
    for item in listed:
        if not isinstance(item, str):
            raise TypeError(f"pending(): items are strings (shard names or URIs), not {type(item).__name__}")
    progress = Progress(uri)
    signal = notice(progress.env)  # SIGTERM becomes the notice, not the end of the process
    _signal_ready()
    for item in listed:
        if progress.is_done(item):
            continue
        if signal.received:
            break
        yield item
        progress.mark_done(item)  # the body ran to its end: the loop asked for the next item
    if signal.received:
        sys.stdout.flush()
        sys.stderr.flush()
        sys.exit(EXIT_PREEMPTED)
