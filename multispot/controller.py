"""Drives one job across attempts under its policy; restartable at any point.

Everything the controller knows is in the job store, and every step is a reconciliation of
the store against the provider: a controller killed at any instant is replaced by the next
one (``multispot watch``, any ``status``/``logs``/``list`` call, or ``python -m
multispot.controller JOB``), which continues without losing or duplicating an attempt. The
one rule that makes this safe: the attempt row is written before the provider is asked to
start it, and provider submits are idempotent on (job, attempt).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from datetime import datetime
from typing import Literal

from multispot import policy, registry
from multispot.checkpoint import CheckpointStore
from multispot.errors import (
    AttemptLost,
    CapacityError,
    JobSpecError,
    MultispotError,
    StoreError,
    TransientProviderError,
)
from multispot.job import Job
from multispot.plan import candidates
from multispot.policy import PolicyContext
from multispot.policy.deadline import estimate_progress, estimate_spent
from multispot.policy.history import HistoryReader
from multispot.provider import Drainable, LaunchContext
from multispot.status import Attempt, JobState, Placement, ProviderStatus
from multispot.store import JobRecord, Store, home, open_store, owner_id

STALE_AFTER = 10.0  # seconds without a heartbeat before another process may take the job over
CONSULT_EVERY = 5.0  # seconds between asking the policy whether a running attempt should move
MAX_STEP_ERRORS = 20  # consecutive failed reconciliations before the job is marked FAILED


def record_candidates(job: Job, record: JobRecord) -> list[Placement]:
    """The candidates of a submitted job, restricted as it was submitted (``--provider``)."""
    return candidates(job, record.provider, only=bool(record.options.get("only_provider")))


class Controller:
    def __init__(
        self,
        job_id: str,
        store: Store | None = None,
        poll_interval: float = 0.5,
        stale_after: float = STALE_AFTER,
        owner: str | None = None,
    ) -> None:
        self.store = store or open_store()
        self.job_id = job_id
        self.poll_interval = poll_interval
        self.stale_after = stale_after
        self.owner = owner or owner_id()  # a service worker drives many jobs under its own id
        self.errors = 0  # consecutive failed steps
        self._cancel_sent: set[int] = set()
        self._not_before = 0.0
        self._next_consult = 0.0
        self._history = HistoryReader(self.store, job_id)  # the store's past attempts, per pool

    # ----------------------------------------------------------------- loop

    def run(self) -> JobRecord:
        """Drive the job to a terminal state, unless another live controller already does."""
        if not self.store.acquire(self.job_id, self.owner, self.stale_after):
            return self.store.get_job(self.job_id)
        try:
            while not self.advance():
                time.sleep(self.delay())
                if not self.store.heartbeat(self.job_id, self.owner):
                    break  # another controller took over (we were presumed dead): stop quietly
        except StoreError as exc:
            # Locked past the store's own wait, or broken: nothing is lost (every step is a
            # reconciliation), and the next `status`/`watch` starts a controller once it is usable.
            print(
                f"controller for {self.job_id}: the job store is unusable, stopping: {exc}", file=sys.stderr
            )
            raise
        finally:
            with contextlib.suppress(StoreError):
                self.store.release(self.job_id, self.owner)
        return self.store.get_job(self.job_id)

    def advance(self) -> bool:
        """One ``step()`` under the error rule every driver shares (this process's loop and a
        service worker's round-robin): a provider or storage hiccup is recorded and retried, and
        ``MAX_STEP_ERRORS`` in a row fail the job. True when the job is over for this driver."""
        try:
            done = self.step()
        except StoreError:
            raise  # the store itself is unusable: leave the job to a later controller
        except Exception as exc:
            self.errors += 1
            self.store.add_event(self.job_id, None, "error", f"controller step failed: {exc!r}")
            if self.errors >= MAX_STEP_ERRORS:
                self._finish(self.store.get_job(self.job_id), JobState.FAILED, f"controller error: {exc}")
                return True
            return False
        self.errors = 0
        return done

    def delay(self) -> float:
        """Seconds until the next step: the poll interval, backing off while steps fail."""
        return self.poll_interval * (1 + min(self.errors, 10))

    def step(self) -> bool:
        """One reconciliation; True when the job is over (or cannot go on from this process)."""
        record = self.store.get_job(self.job_id)
        if record.state.job_terminal:
            return True
        job = Job.from_record(record.spec)  # validated once, at submit
        attempts = self.store.attempts(self.job_id)
        current = attempts[-1] if attempts else None

        if record.cancel_requested:
            return self._cancel(record, current)

        if current is None or current.state.terminal:
            if current is not None and current.state.job_terminal:
                self._finish(record, current.state, current.message)
                return True
            if time.time() < self._not_before:
                return False
            upcoming = self._next_attempt(record, job, attempts)
            if upcoming is None:
                return True
            if isinstance(upcoming, str):
                return False  # the policy waits (idle) before the next attempt
            current = upcoming
            if current.state.terminal:
                return False  # waiting out a backoff

        if current.handle is None:
            return self._submit(record, job, current)

        self._observe(record, current)
        self._consult(record, job)
        return False

    # ----------------------------------------------------------------- pieces

    def _next_attempt(
        self, record: JobRecord, job: Job, attempts: list[Attempt]
    ) -> Attempt | Literal["wait"] | None:
        now = time.time()
        decision = policy.get(job.spot.policy).decide(self._context(record, job, attempts, now))
        if decision.placement is None and decision.idle:
            self._not_before = now + max(decision.delay, self.poll_interval)
            return "wait"
        if decision.placement is None:
            self._finish(record, decision.final_state, decision.reason)
            return None
        if decision.delay and attempts and time.time() - (attempts[-1].ended or 0) < decision.delay:
            self._not_before = (attempts[-1].ended or time.time()) + decision.delay
            return attempts[-1]  # terminal: the loop comes back after the delay
        attempt = Attempt(self.job_id, len(attempts) + 1, decision.placement, message=decision.reason)
        if not self.store.add_attempt(attempt):
            return self.store.attempts(self.job_id)[-1]  # someone else inserted it: reconcile that one
        if attempts and decision.placement.market != attempts[-1].placement.market:
            self.store.add_event(
                self.job_id,
                attempt.n,
                "fallback",
                f"switching to {decision.placement.market}: {decision.reason}",
            )
        return attempt

    def _context(
        self, record: JobRecord, job: Job, attempts: list[Attempt], now: float, running: Attempt | None = None
    ) -> PolicyContext:
        """What the policy is told live: progress and spend estimated from the attempts (and, for
        a running attempt, its newest committed checkpoint), availability unknown."""
        progress = estimate_progress(attempts)
        overhead = job.spot.restart_overhead
        overhead_left = overhead if running is not None else 0.0  # still waiting: the whole restart
        if running is not None and running.started is not None:
            # What a move now would keep: the runtime saves on the notice (as the simulator assumes).
            progress += max(0.0, now - running.started - overhead)
            overhead_left = max(0.0, overhead - (now - running.started))
        candidates = record_candidates(job, record)
        return PolicyContext(
            job,
            attempts,
            candidates,
            now,
            record.created,
            progress=progress,
            work=job.spot.work,
            current=None if running is None else running.placement,
            overhead_left=overhead_left,
            restart_overhead=job.spot.restart_overhead,
            step=max(self.poll_interval, 1.0),
            spent=estimate_spent(attempts, now),
            history=self._history.lazy_prior(candidates, now),
        )

    def _consult(self, record: JobRecord, job: Job) -> None:
        """Ask the policy about the live attempt (running, or still waiting for capacity); when it
        says move (the slack runs out while spot waits, another placement is better), end the
        attempt as a preemption would — the runtime saves on the notice — and let the next attempt
        start where the policy wants, from that checkpoint."""
        now = time.time()
        if now < self._next_consult:
            return
        self._next_consult = now + CONSULT_EVERY
        attempts = self.store.attempts(self.job_id)
        running = attempts[-1] if attempts else None
        live = (JobState.SUBMITTED, JobState.STARTING, JobState.RUNNING)
        if running is None or running.state not in live or running.handle is None:
            return
        provider = registry.get(running.handle.provider)
        if not isinstance(provider, Drainable) or self._switching(running.n) is not None:
            return
        decision = policy.get(job.spot.policy).decide(
            self._context(record, job, attempts[:-1], now, running=running)
        )
        target = decision.placement
        if target is None or _same_pool(target, running.placement):
            return  # stay (an idle or stop answer waits for the attempt to end on its own)
        self.store.add_event(
            self.job_id, running.n, "switch", f"moving attempt {running.n} to {target}: {decision.reason}"
        )
        provider.drain(running.handle)

    def _switching(self, n: int) -> str | None:
        """The switch the controller asked of attempt ``n`` (from the store: restart-safe), if any."""
        switches = self.store.events_of_kind(self.job_id, "switch", attempt=n)
        return switches[-1][1].message if switches else None

    def _submit(self, record: JobRecord, job: Job, attempt: Attempt) -> bool:
        provider = registry.get(attempt.placement.provider)
        try:
            env = job.resolve_env()
        except JobSpecError as exc:
            where = (
                "set it in the environment of `multispot controller`"
                if service_running(self.store)
                else f"run `multispot watch {record.id}` where it is set"
            )
            message = f"cannot submit attempt {attempt.n}: {exc.problems[0]}; {where}"
            self.store.update_job(self.job_id, message=message)
            self.store.add_event(self.job_id, attempt.n, "blocked", message)
            return True  # leave the job for a controller that has the variables
        ctx = LaunchContext(
            job_id=record.id,
            attempt=attempt.n,
            checkpoint_uri=record.checkpoint_uri,
            output_uri=record.output_uri,
            env=env,
            submitted_at=record.created,
            workdir=record.options.get("workdir"),
        )
        now = time.time()
        try:
            provider.validate(job, attempt.placement)
            handle = provider.submit(job, attempt.placement, ctx)
        except CapacityError as exc:
            self.store.update_attempt(
                self.job_id, attempt.n, state=JobState.NO_CAPACITY, message=str(exc), ended=now
            )
            return False
        except TransientProviderError:
            raise  # throttling or a service fault: the loop retries with backoff (submits are idempotent)
        except MultispotError as exc:
            self.store.update_attempt(
                self.job_id, attempt.n, state=JobState.FAILED, message=str(exc), ended=now
            )
            self._finish(record, JobState.FAILED, f"attempt {attempt.n} could not be submitted: {exc}")
            return True
        self.store.update_attempt(
            self.job_id, attempt.n, handle=handle, state=JobState.SUBMITTED, submitted=now
        )
        self.store.update_job(
            self.job_id, state=JobState.SUBMITTED if attempt.n == 1 else JobState.RECOVERING
        )
        self.store.add_event(
            self.job_id, attempt.n, "submitted", f"attempt {attempt.n} submitted: {handle.id}"
        )
        return False

    def _observe(self, record: JobRecord, attempt: Attempt) -> None:
        assert attempt.handle is not None
        provider = registry.get(attempt.handle.provider)
        try:
            status = provider.status(attempt.handle)
        except AttemptLost as exc:  # the service lost the attempt: lost capacity, not a failed job
            status = ProviderStatus(JobState.PREEMPTED, f"{exc}: taken as lost capacity", ended=time.time())
        changes: dict[str, object] = {}
        if status.message != attempt.message:
            changes["message"] = status.message
        if status.native_state != attempt.native_state:
            changes["native_state"] = status.native_state
        if status.interruptions != attempt.interruptions:
            changes["interruptions"] = status.interruptions
        if attempt.started is None and (status.started is not None or status.state is JobState.RUNNING):
            changes["started"] = status.started or time.time()
        if status.state in (JobState.PREEMPTED, JobState.CANCELLED) and not record.cancel_requested:
            switch = self._switching(attempt.n)
            if switch is not None:  # the controller ended it to move the job: not a preemption
                status = ProviderStatus(
                    JobState.SWITCHED,
                    switch,
                    status.interruptions,
                    status.native_state,
                    status.started,
                    status.ended,
                )
        if status.state != attempt.state:
            changes["state"] = status.state
            if status.state is JobState.RUNNING or (
                status.state.terminal and attempt.state is not JobState.RUNNING
            ):
                self._event_resume(record, attempt)
            if status.state.terminal:
                changes["ended"] = status.ended or time.time()
                changes["last_checkpoint"] = _last_checkpoint(record.checkpoint_uri, attempt.n)
                try:
                    changes["usage"] = provider.usage(attempt.handle)
                except MultispotError:
                    pass
                self.store.add_event(
                    self.job_id,
                    attempt.n,
                    status.state.value.lower(),
                    f"attempt {attempt.n}: {status.message}",
                )
        elif status.message != attempt.message and status.message.startswith("preemption notice"):
            self.store.add_event(self.job_id, attempt.n, "notice", status.message)
        self.store.update_attempt(self.job_id, attempt.n, **changes)
        job_state = _job_state(status.state, attempt.n)
        if job_state.job_terminal:
            self._finish(record, job_state, status.message)
        elif job_state != record.state:
            self.store.update_job(self.job_id, state=job_state, message=status.message)

    def _event_resume(self, record: JobRecord, attempt: Attempt) -> None:
        if attempt.n == 1:
            self.store.add_event(self.job_id, attempt.n, "running", "attempt 1 running")
            return
        # What the attempt's runtime says it restored (multispot.runtime writes it beside the
        # checkpoints); before it has restored, only what it can resume from is known.
        from multispot.runtime.checkpointer import read_attempt_record

        try:
            store = CheckpointStore(record.checkpoint_uri)
            restored, progress = read_attempt_record(store, attempt.n), store.progress()
        except (OSError, ValueError):
            restored, progress = None, None
        if restored is not None and restored.get("job_id") in (None, record.id):
            step = restored.get("resumed_from_step")
            where = f"resumed from step {step}" if step is not None else "started from scratch"
        elif progress:
            where = f"newest checkpoint: step {progress[0]}"
        else:
            where = "no checkpoint yet: starting from scratch"
        self.store.add_event(self.job_id, attempt.n, "resumed", f"attempt {attempt.n} running, {where}")

    def _cancel(self, record: JobRecord, current: Attempt | None) -> bool:
        if current is not None and current.handle is not None and not current.state.terminal:
            if current.n not in self._cancel_sent:
                registry.get(current.handle.provider).cancel(current.handle)
                self._cancel_sent.add(current.n)
            self._observe(record, current)
            current = self.store.attempts(self.job_id)[-1]
            if not current.state.terminal:
                return False
        if current is not None and current.handle is None and not current.state.terminal:
            self.store.update_attempt(self.job_id, current.n, state=JobState.CANCELLED, ended=time.time())
        self._finish(record, JobState.CANCELLED, "cancelled by the user")
        return True

    def _finish(self, record: JobRecord, state: JobState, message: str) -> None:
        self.store.update_job(self.job_id, state=state, message=message, ended=time.time())
        self.store.add_event(self.job_id, None, "finished", f"job {state.value}: {message}")


def _last_checkpoint(uri: str, attempt: int) -> float | None:
    """When ``attempt`` last committed a checkpoint (what a preemption did not lose), if it did."""
    try:
        manifest = CheckpointStore(uri).newest_manifest()
    except (OSError, ValueError):
        return None
    if manifest is None or manifest.attempt != attempt:
        return None
    return datetime.fromisoformat(manifest.time).timestamp()


def _same_pool(a: Placement, b: Placement) -> bool:
    return (a.provider, a.market, a.region, a.instance_type) == (
        b.provider,
        b.market,
        b.region,
        b.instance_type,
    )


def _job_state(attempt_state: JobState, n: int) -> JobState:
    if attempt_state in (JobState.SUBMITTED, JobState.STARTING, JobState.PENDING):
        return attempt_state if n == 1 else JobState.RECOVERING
    if attempt_state in (JobState.PREEMPTED, JobState.NO_CAPACITY, JobState.SWITCHED):
        return JobState.RECOVERING
    return attempt_state


def spawn(job_id: str, workdir: str | None = None) -> int:
    """Start a detached controller process for ``job_id``; it exits at once if one is alive.

    It runs in the submitter's directory, so relative paths in the job (a command without
    source_dir, a trace file) mean the same thing to every controller that ever drives the job.
    """
    env = dict(os.environ, MULTISPOT_HOME=str(home()))
    log = home() / "controllers.log"
    cwd = workdir if workdir and os.path.isdir(workdir) else None
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "multispot.controller", job_id],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return proc.pid


def service_running(store: Store) -> bool:
    """Whether a worker of ``multispot controller`` is live: it leases every unfinished job, so no
    per-job controller is started beside it."""
    return bool(store.workers(STALE_AFTER))


def ensure_controller(store: Store, job_id: str) -> bool:
    """If the job is unfinished and nobody drives it, start a controller; True if one was started.

    While the controller service runs, its workers lease the job instead (within a second or so
    when one has a free slot), so nothing is started here."""
    record = store.get_job(job_id)
    if record.state.job_terminal or store.controller_alive(job_id, STALE_AFTER):
        return False
    if service_running(store):
        return False
    spawn(job_id, record.options.get("workdir"))
    return True


def main(argv: list[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    if len(args) != 1:
        print("usage: python -m multispot.controller JOB_ID", file=sys.stderr)
        return 2
    try:
        record = Controller(args[0]).run()
    except StoreError:
        return 1  # said on stderr (controllers.log); a later controller takes the job over
    return 0 if record.state.job_terminal else 1


if __name__ == "__main__":
    sys.exit(main())
