"""One task of the job-array example (standard library only): process this task's shards, each
once, however often the task is preempted.

``shards.pending()`` yields the shards of this task (``MULTISPOT_TASK_SHARDS``) that no earlier
attempt finished, and records each one done when the loop moves on. When the preemption notice
comes in the middle of a shard, the task stops at once (the shard is not done, so the next
attempt does it again from its start) rather than racing the hard stop.
"""

from __future__ import annotations

import os
import sys
import time

from multispot.runtime import EXIT_PREEMPTED, detect, notice, shards

task = shards.task()
out = detect().output_dir
log = os.environ.get("SHARD_LOG")  # optional: a file where each start and finish is noted (tests count them)


def note(event: str, shard: str) -> None:
    if log:
        fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, f"{event} {task.index} {shard}\n".encode())  # one small write: never interleaved
        finally:
            os.close(fd)


print(f"task {task.index} of {task.count}: shards {', '.join(task.shards)}", flush=True)
for shard in shards.pending():
    note("start", shard)
    for _ in range(10):  # a shard is ten slices of work
        time.sleep(0.03)
        if notice().received:
            print(f"preempted in the middle of {shard}: it is redone by the next attempt", flush=True)
            sys.exit(EXIT_PREEMPTED)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / f"{shard}.txt").write_text(f"processed by task {task.index}\n")
    note("done", shard)
print("all shards done", flush=True)
