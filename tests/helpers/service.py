"""Running ``multispot controller`` replicas against a store in a test, and checking what they did.

Everything is asserted from the store and from the files the jobs write: one marker file per
time a job's command started (``starts/<job>.<attempt>.<pid>``), one attempt directory per
attempt the local provider staged. No assertion rests on how long something took.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from multispot import api
from multispot.job import Job
from multispot.status import JobState
from multispot.store import Store, open_store

MULTISPOT = str(Path(sys.executable).with_name("multispot"))
STALE_AFTER = 4.0  # short, so takeovers after a pause happen within the test; still 3 missed beats

# The command leaves a marker each time it starts; with a gate, it then waits for the gate file,
# so a job cannot end before the test has done what it meant to do mid-run.
_JOB = textwrap.dedent("""
    name: {name}
    command: >-
      sh -c 'touch "{starts}/$MULTISPOT_JOB_ID.$MULTISPOT_ATTEMPT.$$";
      if [ -n "$MULTISPOT_DB" ]; then touch "{starts}/../db-url-leaked"; fi;
      while [ -n "{gate}" ] && [ ! -e "{gate}" ]; do sleep 0.1; done'
""")


@dataclass
class Bench:
    """A test's job store, home and job files."""

    home: Path
    url: str

    @property
    def starts(self) -> Path:
        return self.home / "starts"

    @property
    def gate(self) -> Path:
        return self.home / "gate"

    def env(self) -> dict[str, str]:
        return dict(os.environ, MULTISPOT_HOME=str(self.home), MULTISPOT_DB=self.url)

    def store(self) -> Store:
        return open_store(self.url)

    def submit(
        self, store: Store, count: int, gated: bool, name: str = "svc", start_controller: bool = True
    ) -> list[str]:
        """``count`` local jobs through the public API, as a user would (a controller is started
        for each only if no worker of the service is live; none with ``start_controller=False``)."""
        self.starts.mkdir(parents=True, exist_ok=True)
        text = _JOB.format(name=name, starts=self.starts, gate=self.gate if gated else "")
        job = Job.from_yaml_text(text)
        return [
            api.submit(job, "local", store=store, start_controller=start_controller).id for _ in range(count)
        ]


class Service:
    """``multispot controller --replicas N`` as a subprocess (a supervisor and its replicas)."""

    def __init__(
        self, bench: Bench, replicas: int, concurrency: int, stale_after: float = STALE_AFTER
    ) -> None:
        self.bench = bench
        self.log = bench.home / f"service-{time.monotonic_ns()}.log"
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                [
                    MULTISPOT,
                    "controller",
                    *("--replicas", str(replicas), "--concurrency", str(concurrency)),
                    *("--stale-after", str(stale_after)),
                ],
                env=bench.env(),
                cwd=bench.home,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def replica_pids(self) -> list[int]:
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        try:
            return [int(p) for p in children.read_text().split()]
        except OSError:
            return []

    def stop(self, timeout: float = 120) -> int:
        """SIGTERM the supervisor (a drain), and its exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"the service did not drain within {timeout:g}s:\n{self.output()}") from None

    def kill(self) -> None:
        """Everything the service started (the replicas are in its session), at once."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()


@contextlib.contextmanager
def service(
    bench: Bench, replicas: int, concurrency: int, stale_after: float = STALE_AFTER
) -> Iterator[Service]:
    svc = Service(bench, replicas, concurrency, stale_after)
    try:
        yield svc
    finally:
        if svc.proc.poll() is None:
            svc.kill()


def wait_for(what: str, check: Callable[[], bool], timeout: float = 240, every: float = 0.05) -> float:
    """Poll ``check`` until it holds; the seconds it took. The timeout only bounds a hung test."""
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(every)
    return time.monotonic() - start


def live_workers(store: Store, stale_after: float = STALE_AFTER) -> dict[int, str]:
    """pid -> worker id of the live workers."""
    return {w.pid: w.id for w in store.workers(stale_after)}


def owners(store: Store, job_ids: list[str]) -> dict[str, str | None]:
    return {job_id: store.get_job(job_id).owner for job_id in job_ids}


def check_each_ran_once(bench: Bench, store: Store, job_ids: list[str]) -> Counter[str]:
    """Every job SUCCEEDED in exactly one attempt, its command started once, the provider staged
    one attempt, and the store says it was submitted at most once (a replica killed between the
    provider's submit and writing the event leaves none: its successor found the handle). Returns
    the event kinds seen, for the test's own checks."""
    assert not (bench.home / "db-url-leaked").exists(), "a job saw the store's URL"
    starts = Counter(p.name.split(".")[0] for p in bench.starts.iterdir())
    kinds: Counter[str] = Counter()
    for job_id in job_ids:
        record = store.get_job(job_id)
        assert record.state is JobState.SUCCEEDED, f"{job_id} is {record.state.value}: {record.message}"
        attempts = store.attempts(job_id)
        assert [a.n for a in attempts] == [1], f"{job_id} has attempts {[a.n for a in attempts]}"
        assert attempts[0].state is JobState.SUCCEEDED
        assert starts[job_id] == 1, f"{job_id}'s command started {starts[job_id]} times"
        staged = sorted(
            p.name for p in (bench.home / "local" / job_id).iterdir() if p.name.startswith("attempt-")
        )
        assert staged == ["attempt-1"], f"{job_id}: the provider staged {staged}"
        submitted = store.events_of_kind(job_id, "submitted")
        assert len(submitted) <= 1, f"{job_id} was submitted {len(submitted)} times"
        kinds.update(event.kind for _, event in store.events(job_id))
    assert store.check() == []
    assert sum(starts.values()) == len(job_ids), "a command started for a job the test did not submit"
    return kinds
