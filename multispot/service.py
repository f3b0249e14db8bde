"""Controllers as a service: worker processes that lease jobs from the store and drive many at once.

``multispot controller --replicas N --concurrency K`` runs a supervisor that keeps N workers
alive (a replica that dies is started again). Each worker registers itself in the store and
beats, leases up to K unfinished jobs (``Store.lease_jobs``: its own first, then free ones and
ones whose controller is dead or silent past the stale window) and drives them round-robin, one
``Controller.advance()`` at a time: the same step, policy, simulator and billing objects the
per-job controller (``python -m multispot.controller JOB``) uses, so nothing about a job depends
on which of the two drives it.

Safety rests on the store, as for the per-job controller: the attempt row is written before the
provider submit, submits are idempotent on (job, attempt), and a job is driven by whoever holds
its lease. A worker that was paused past the stale window (a stopped process, a host that slept)
may find its jobs taken over: before every step it renews the job's lease with
``Store.heartbeat``, and on False it drops the job at once and never drives it again (fenced).
A step that was under way when the process stopped finishes after it wakes; what it does is
safe by the rules above (an attempt row another owner wrote first is reconciled, a submit is
idempotent), and it is the last one.

SIGTERM or SIGINT drains a worker: it finishes the step under way, releases every lease (another
worker takes the jobs over at once, without waiting out the window) and deregisters.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TextIO

from multispot.controller import STALE_AFTER, Controller
from multispot.errors import StoreError
from multispot.store import Store, open_store, owner_id

BEAT_FRACTION = 0.25  # renew leases this far into the stale window: three beats may be missed
PARK_SECONDS = 60.0  # a job that cannot go on from this worker (a missing ${VAR}) waits this long
RESTART_BACKOFF = (1.0, 30.0)  # a replica that keeps dying is restarted after 1 s, doubling to 30 s
STORE_BACKOFF = (0.5, 15.0)  # the store is unusable (a database restart): retry after 0.5 s .. 15 s
SUPERVISOR_ENV = "MULTISPOT_SUPERVISOR_PID"  # set for replicas: they stop if their supervisor is gone


def _log(out: TextIO, message: str) -> None:
    out.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {message}\n")
    out.flush()


@dataclass
class _Driven:
    controller: Controller
    due: float = 0.0  # monotonic time of the next step


@dataclass
class Worker:
    """One replica: leases up to ``concurrency`` jobs and steps them round-robin."""

    store: Store
    concurrency: int
    stale_after: float = STALE_AFTER
    poll_interval: float = 0.5
    id: str = field(default_factory=owner_id)  # host:pid:token, so `owner_alive` can check it
    log: TextIO = field(default_factory=lambda: sys.stderr)
    driving: dict[str, _Driven] = field(default_factory=dict)
    fenced: set[str] = field(default_factory=set)
    parked: dict[str, float] = field(default_factory=dict)  # job -> monotonic time it may come back
    stopping: bool = False
    _next_beat: float = 0.0
    _next_lease: float = 0.0

    @property
    def beat_every(self) -> float:
        return self.stale_after * BEAT_FRACTION

    def stop(self, *_: object) -> None:
        """Drain at the end of the step under way (a signal handler: only sets a flag)."""
        self.stopping = True

    def run(self, should_stop: Callable[[], bool] = lambda: False) -> None:
        """Serve until stopped (a signal, ``stop()`` or ``should_stop()``), then drain."""
        self.store.register_worker(self.id, socket.gethostname(), os.getpid())
        _log(self.log, f"worker {self.id} serving up to {self.concurrency} jobs")
        failures = 0
        try:
            while not (self.stopping or should_stop()):
                try:
                    wait = self.tick()
                    failures = 0
                except StoreError as exc:
                    # Nothing is lost (every step is a reconciliation); leases that lapse meanwhile
                    # are taken over by others, and this worker finds itself fenced from them.
                    failures += 1
                    wait = min(STORE_BACKOFF[0] * 2 ** min(failures - 1, 10), STORE_BACKOFF[1])
                    _log(
                        self.log, f"worker {self.id}: the job store is unusable, retrying in {wait:g}s: {exc}"
                    )
                time.sleep(max(0.0, min(wait, self.poll_interval)))
        finally:
            self.drain()

    def tick(self) -> float:
        """Step every job that is due once, beating and renewing leases on the way (a round over
        many jobs may take longer than the stale window); seconds until something is due."""
        self.keep_up()
        for job_id in list(self.driving):
            if self.stopping:
                break
            self.keep_up()
            driven = self.driving.get(job_id)  # None: dropped by the renewal just made
            if driven is None or driven.due > time.monotonic() or not self._renew(job_id):
                continue
            if driven.controller.advance():
                self._let_go(job_id)
            else:
                driven.due = time.monotonic() + driven.controller.delay()
        nearest = min([d.due for d in self.driving.values()] + [self._next_beat, self._next_lease])
        return nearest - time.monotonic()

    def keep_up(self) -> None:
        """Beat, and renew and fill the leases, when they are due."""
        now = time.monotonic()
        if now >= self._next_beat:
            self.store.beat_worker(self.id)
            self._next_beat = now + self.beat_every
        if now >= self._next_lease:
            self._lease(now)
            self._next_lease = now + min(max(self.poll_interval, 1.0), self.beat_every)

    def _lease(self, now: float) -> None:
        """Renew the leases held and fill the free slots (the store returns this worker's own jobs
        first, so asking for ``concurrency`` renews every lease held)."""
        leased = self.store.lease_jobs(self.id, self.concurrency, self.stale_after)
        for job_id in leased:
            if job_id in self.driving:
                continue
            if job_id in self.fenced or self.parked.get(job_id, 0.0) > now:
                self.store.release(job_id, self.id)
            elif len(self.driving) >= self.concurrency:
                self.store.release(job_id, self.id)  # never more than asked for
            else:
                self.parked.pop(job_id, None)
                controller = Controller(
                    job_id, self.store, self.poll_interval, self.stale_after, owner=self.id
                )
                self.driving[job_id] = _Driven(controller, due=now)

    def _renew(self, job_id: str) -> bool:
        """Renew the job's lease before a step: True if it is still this worker's; one another
        controller has taken is dropped (fenced) before anything acts on it."""
        if self.store.heartbeat(job_id, self.id):
            return True
        del self.driving[job_id]
        self.fenced.add(job_id)
        message = (
            f"controller worker {self.id} lost its lease (the job was taken over); it stopped driving it"
        )
        self.store.add_event(job_id, None, "fenced", message)
        _log(self.log, f"worker {self.id}: fenced from {job_id}")
        return False

    def _let_go(self, job_id: str) -> None:
        """The job is over, or cannot go on from here: release it so nobody waits out the window."""
        del self.driving[job_id]
        if not self.store.get_job(job_id).state.job_terminal:
            self.parked[job_id] = time.monotonic() + PARK_SECONDS
        self.store.release(job_id, self.id)

    def drain(self) -> None:
        """Release every lease and deregister: the other workers take the jobs over at once."""
        held = list(self.driving)
        try:
            for job_id in held:
                self.store.release(job_id, self.id)
            self.store.remove_worker(self.id)
        except StoreError as exc:  # the leases lapse after the stale window instead
            _log(self.log, f"worker {self.id}: could not release its leases: {exc}")
            return
        finally:
            self.driving.clear()
        _log(self.log, f"worker {self.id} stopped; released {len(held)} job(s)")


def _supervisor_gone(expected: int | None) -> Callable[[], bool]:
    """For a replica: True once the supervisor that started it is gone (it was killed -9), so no
    orphaned worker goes on leasing jobs nobody is watching over."""
    return lambda: expected is not None and os.getppid() != expected


def run_worker(
    concurrency: int, db: str | None = None, stale_after: float = STALE_AFTER, poll_interval: float = 0.5
) -> int:
    store = open_store(db)
    # The jobs a provider starts from here (the local provider's processes) inherit this
    # environment: the store's URL, which may hold a password, is not theirs to see.
    os.environ.pop("MULTISPOT_DB", None)
    parent = os.environ.pop(SUPERVISOR_ENV, None)
    worker = Worker(store, concurrency, stale_after=stale_after, poll_interval=poll_interval)
    signal.signal(signal.SIGTERM, worker.stop)
    signal.signal(signal.SIGINT, worker.stop)
    try:
        worker.run(_supervisor_gone(int(parent) if parent else None))
    finally:
        store.close()
    return 0


@dataclass
class _Replica:
    slot: int
    proc: subprocess.Popen[bytes]
    started: float
    failures: int = 0


class Supervisor:
    """Keeps ``replicas`` worker processes running; SIGTERM/SIGINT drains them all, then exits."""

    def __init__(
        self,
        replicas: int,
        concurrency: int,
        db: str | None = None,
        stale_after: float = STALE_AFTER,
        poll_interval: float = 0.5,
        drain_timeout: float = 60.0,
        log: TextIO | None = None,
    ) -> None:
        self.replicas, self.concurrency, self.db = replicas, concurrency, db
        self.stale_after, self.poll_interval, self.drain_timeout = stale_after, poll_interval, drain_timeout
        self.log = log or sys.stderr
        self.stopping = False

    def stop(self, *_: object) -> None:
        self.stopping = True

    def _start(self, slot: int, failures: int = 0) -> _Replica:
        env = dict(os.environ, **{SUPERVISOR_ENV: str(os.getpid())})
        if self.db:
            env["MULTISPOT_DB"] = self.db  # through the environment: a password stays out of `ps`
        argv = [sys.executable, "-m", "multispot.service", "--concurrency", str(self.concurrency)]
        argv += ["--stale-after", str(self.stale_after), "--poll", str(self.poll_interval)]
        proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL)
        _log(self.log, f"supervisor: replica {slot} started (pid {proc.pid})")
        return _Replica(slot, proc, time.monotonic(), failures)

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)
        replicas = [self._start(slot) for slot in range(self.replicas)]
        restart_at: dict[int, float] = {}
        try:
            while not self.stopping:
                for i, replica in enumerate(replicas):
                    rc = replica.proc.poll()
                    if rc is None:
                        continue
                    now = time.monotonic()
                    if replica.slot not in restart_at:  # died: restart, backing off if it keeps dying
                        quick = now - replica.started < 10.0
                        failures = replica.failures + 1 if quick else 0
                        backoff = RESTART_BACKOFF[0] * 2 ** max(failures - 1, 0)
                        delay = min(backoff, RESTART_BACKOFF[1]) if quick else 0.0
                        restart_at[replica.slot] = now + delay
                        what = f"replica {replica.slot} (pid {replica.proc.pid}) exited ({rc})"
                        _log(self.log, f"supervisor: {what}; restarting in {delay:g}s")
                        replica.failures = failures
                    if now >= restart_at[replica.slot]:
                        del restart_at[replica.slot]
                        replicas[i] = self._start(replica.slot, replica.failures)
                time.sleep(0.2)
        finally:
            self._drain(replicas)
        return 0

    def _drain(self, replicas: list[_Replica]) -> None:
        live = [r.proc for r in replicas if r.proc.poll() is None]
        for proc in live:
            proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.drain_timeout
        for proc in live:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _log(self.log, f"supervisor: replica pid {proc.pid} did not drain in time; killing it")
                proc.kill()
                proc.wait()
        _log(self.log, "supervisor: stopped")


def main(argv: list[str] | None = None) -> int:
    """``python -m multispot.service``: one worker (what the supervisor starts for each replica)."""
    parser = argparse.ArgumentParser(prog="python -m multispot.service")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--stale-after", type=float, default=STALE_AFTER)
    parser.add_argument("--poll", type=float, default=0.5)
    args = parser.parse_args(argv)
    try:
        return run_worker(args.concurrency, None, args.stale_after, args.poll)
    except StoreError as exc:
        print(f"multispot controller worker: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
