"""Run in a separate (spawned) process by test_store: hammer one job store file at once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from multispot.status import Attempt, Placement
from multispot.store import JobStore


def hammer(
    path: str, worker: int, job_ids: list[str], attempts: int, events: int, barrier: Any, results: Any
) -> None:
    """Race for attempts 1..``attempts`` of the shared job, add events; put the attempts won on ``results``."""
    try:
        results.put((worker, _hammer(path, worker, job_ids, attempts, events, barrier)))
    except BaseException as exc:
        results.put((worker, f"error: {exc!r}"))  # the test fails at once instead of waiting
        raise


def _hammer(
    path: str, worker: int, job_ids: list[str], attempts: int, events: int, barrier: Any
) -> list[int]:
    store = JobStore(Path(path))
    won = []
    barrier.wait(timeout=60)  # all workers start writing at the same moment
    own_job = job_ids[worker + 1]
    try:
        for n in range(1, attempts + 1):
            placement = Placement(provider="local", market="spot", region=f"w{worker}")
            if store.add_attempt(Attempt(job_id=job_ids[0], n=n, placement=placement)):
                won.append(n)
            store.add_attempt(Attempt(job_id=own_job, n=n, placement=placement))
            for k in range(events // attempts):
                store.add_event(own_job, n, "progress", f"worker {worker} attempt {n} event {k}")
    finally:
        store.close()
    return won
