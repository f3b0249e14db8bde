"""Running ``multispot controller`` replicas against a store in a test, and checking what they did.

Everything is asserted from the store and from the files the jobs write: one marker file per
time a job's command started (``starts/<job>.<attempt>.<pid>``), one attempt directory per
attempt the local provider staged. No assertion rests on how long something took.

The gated job's command, starting a ``multispot`` process and the controller service are also
what ``helpers.team`` (a whole team deployment) runs.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
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


def gated_command(starts: Path, gate: Path | None, work: str = "") -> str:
    """A job's command: it leaves a marker each time it starts (``starts/<job>.<attempt>.<pid>``),
    and ``db-url-leaked`` beside ``starts`` if it can see the store's URL; runs ``work`` (a shell
    command; a failure ends the job with its status); then, with a gate, waits for the gate file,
    so a job cannot end before the test has done what it meant to do mid-run."""
    steps = [
        f'touch "{starts}/$MULTISPOT_JOB_ID.$MULTISPOT_ATTEMPT.$$"',
        f'if [ -n "$MULTISPOT_DB" ]; then touch "{starts}/../db-url-leaked"; fi',
    ]
    if work:
        steps.append(f"{work} || exit $?")
    if gate is not None:
        steps.append(f'while [ ! -e "{gate}" ]; do sleep 0.1; done')
    return "sh -c '" + "; ".join(steps) + "'"


def store_env(home: Path, db: str) -> dict[str, str]:
    """The environment of the processes that share a job store (a deployment's, as the compose
    file sets it): its URL and their home; none of a person's server and token."""
    env = dict(os.environ, MULTISPOT_HOME=str(home), MULTISPOT_DB=db)
    env.pop("MULTISPOT_SERVER", None)
    env.pop("MULTISPOT_TOKEN", None)
    return env


def spawn(args: list[str], env: dict[str, str], cwd: Path, log: Path) -> subprocess.Popen[bytes]:
    """``multispot ARGS`` in a session of its own (a test can kill it and all it started at once),
    its output appended to ``log``."""
    with open(log, "ab") as out:
        return subprocess.Popen(
            [MULTISPOT, *args],
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    """``proc`` and everything it started (its session), at once."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


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
        return store_env(self.home, self.url)

    def store(self) -> Store:
        return open_store(self.url)

    def submit(
        self, store: Store, count: int, gated: bool, name: str = "svc", start_controller: bool = True
    ) -> list[str]:
        """``count`` local jobs through the public API, as a user would (a controller is started
        for each only if no worker of the service is live; none with ``start_controller=False``)."""
        self.starts.mkdir(parents=True, exist_ok=True)
        command = gated_command(self.starts, self.gate if gated else None)
        job = Job.from_yaml_text(f"name: {name}\ncommand: >-\n  {command}\n")
        return [
            api.submit(job, "local", store=store, start_controller=start_controller).id for _ in range(count)
        ]


class Service:
    """``multispot controller --replicas N [OPTIONS]`` as a subprocess (a supervisor and its
    replicas, in a session of their own), its output in ``log``."""

    def __init__(self, env: dict[str, str], cwd: Path, log: Path, replicas: int, *options: str) -> None:
        self.log = log
        self.proc = spawn(["controller", "--replicas", str(replicas), *options], env, cwd, log)

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
        kill_group(self.proc)


@contextlib.contextmanager
def service(
    bench: Bench, replicas: int, concurrency: int, stale_after: float = STALE_AFTER
) -> Iterator[Service]:
    options = ("--concurrency", str(concurrency), "--stale-after", str(stale_after))
    log = bench.home / f"service-{time.monotonic_ns()}.log"
    svc = Service(bench.env(), bench.home, log, replicas, *options)
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
