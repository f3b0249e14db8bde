"""The controller at the provider seam: a transient fault is retried, never taken as lost capacity
or a failed job; an attempt the service lost is lost capacity, not "no such job"."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from multispot import api, registry
from multispot.controller import Controller
from multispot.errors import AttemptLost, TransientProviderError
from multispot.job import Job
from multispot.provider import BillingRule, LaunchContext
from multispot.status import Handle, JobState, Placement, ProviderStatus, Usage
from multispot.store import JobStore


class ScriptedProvider:
    """A provider whose submit and status follow a script: each entry is a value or an exception."""

    name = "scripted"
    capabilities = ()
    billing = BillingRule("nothing is billed")

    def __init__(self, submits: list[Any], statuses: list[Any]) -> None:
        self.submits, self.statuses = submits, statuses
        self.submitted: list[int] = []

    def notice_seconds(self, job: Job) -> float:
        return 30.0

    def placements(self, job: Job) -> list[Placement]:
        return [Placement(self.name, "spot", "r", "x"), Placement(self.name, "on-demand", "r", "x")]

    def default_uri(self, kind: str, job_id: str, job: Job) -> str:
        return f"memory://scripted/{job_id}/{kind}"

    def validate(self, job: Job, placement: Placement) -> None:
        pass

    def render(self, job: Job, placement: Placement, ctx: LaunchContext) -> dict[str, Any]:
        return {}

    def submit(self, job: Job, placement: Placement, ctx: LaunchContext) -> Handle:
        outcome = self.submits.pop(0) if self.submits else None
        if isinstance(outcome, Exception):
            raise outcome
        self.submitted.append(ctx.attempt)
        return Handle(self.name, f"native-{ctx.attempt}", {})

    def status(self, handle: Handle) -> ProviderStatus:
        outcome = self.statuses.pop(0) if self.statuses else ProviderStatus(JobState.RUNNING)
        if isinstance(outcome, Exception):
            raise outcome
        assert isinstance(outcome, ProviderStatus)
        return outcome

    def logs(self, handle: Handle, follow: bool = False) -> Iterator[str]:
        return iter(())

    def cancel(self, handle: Handle) -> None:
        pass

    def usage(self, handle: Handle) -> Usage:
        raise AttemptLost(f"no usage: the service has no job {handle.id}")  # as a lost job's describe


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> JobStore:
    monkeypatch.setenv("MULTISPOT_HOME", str(tmp_path / "home"))
    return JobStore(tmp_path / "jobs.sqlite")


def submitted(provider: ScriptedProvider, store: JobStore, monkeypatch: pytest.MonkeyPatch) -> api.Run:
    real = registry.get
    monkeypatch.setattr(registry, "get", lambda name, **kw: provider if name == provider.name else real(name))
    job = Job.validate_data({"name": "seams", "command": "python -c pass", "spot": "spot"})
    return api.submit(job, provider.name, store=store, start_controller=False)


def test_a_transient_fault_at_submit_is_retried_not_failed(
    store: JobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    throttled = TransientProviderError("throttled (will retry)")
    provider = ScriptedProvider(submits=[throttled, throttled], statuses=[])
    run = submitted(provider, store, monkeypatch)
    controller = Controller(run.id, store)
    for _ in range(2):
        with pytest.raises(TransientProviderError):
            controller.step()  # the run loop records it and backs off
        [attempt] = run.attempts
        assert attempt.handle is None and attempt.state is JobState.PENDING
        assert not run.status.job_terminal
    controller.step()
    [attempt] = run.attempts
    assert attempt.handle is not None and attempt.state is JobState.SUBMITTED
    assert provider.submitted == [1]  # one attempt, submitted once, no NO_CAPACITY recorded


def test_an_attempt_the_service_lost_is_lost_capacity(
    store: JobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    provider = ScriptedProvider(submits=[], statuses=[AttemptLost("the service has no job native-1")])
    run = submitted(provider, store, monkeypatch)
    controller = Controller(run.id, store)
    controller.step()  # submits attempt 1
    controller.step()  # observes: lost
    first = run.attempts[0]
    assert first.state is JobState.PREEMPTED and "lost capacity" in first.message
    assert run.status is JobState.RECOVERING
    controller.step()  # the policy places attempt 2
    controller.step()
    assert [a.n for a in run.attempts] == [1, 2] and provider.submitted == [1, 2]
