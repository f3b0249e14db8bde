"""The provider contract suite, run for every provider (first- or third-party).

Use it from a test module of your adapter::

    from multispot.testing.contract import *  # noqa: F403  (the contract's test functions)

    @pytest.fixture
    def harness(tmp_path, monkeypatch) -> MyHarness: ...

The harness gives the provider under test, jobs that run ``multispot.testing.worker`` on it,
storage URIs it can reach, and a way to take capacity away from a running attempt. Every test
here is then collected in your module and run against your provider: submit, status, logs,
cancel, usage, idempotent submit, a failing command, and a preemption followed by a resume.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Protocol

import fsspec
import pytest

from multispot import api
from multispot.checkpoint import CheckpointStore
from multispot.controller import Controller
from multispot.errors import ValidationFailed
from multispot.job import Job
from multispot.provider import Capability, LaunchContext, Provider
from multispot.status import Handle, JobState, Placement
from multispot.store import JobStore
from multispot.testing.worker import expected_sum

__all__ = [
    "ContractHarness",
    "test_contract_cancel",
    "test_contract_capabilities",
    "test_contract_failure_is_reported",
    "test_contract_preemption_and_resume",
    "test_contract_render_is_pure",
    "test_contract_submit_is_idempotent",
    "test_contract_submit_runs_to_success",
    "test_contract_validate_names_the_field",
]


class ContractHarness(Protocol):
    provider: Provider
    timeout: float  # seconds a short attempt may take, start to end, on this provider

    def job(self, tmp_path: Path, worker_args: list[str], **fields: Any) -> Job:
        """A job whose command is ``python -m multispot.testing.worker *worker_args``."""
        ...

    def storage(self, tmp_path: Path) -> tuple[str, str]:
        """(checkpoint_uri, output_uri) the job can reach."""
        ...

    def preempt(self, handle: Handle) -> None:
        """Take the capacity of a running attempt away, as the service would."""
        ...


# --------------------------------------------------------------------------- helpers


def _ctx(harness: ContractHarness, tmp_path: Path, job_id: str, attempt: int = 1) -> LaunchContext:
    checkpoint_uri, output_uri = harness.storage(tmp_path)
    return LaunchContext(
        job_id=job_id,
        attempt=attempt,
        checkpoint_uri=checkpoint_uri,
        output_uri=output_uri,
        env={"MULTISPOT_CONTRACT_PROBE": "contract-probe"},
        submitted_at=time.time(),
        workdir=str(tmp_path),
    )


def _placement(harness: ContractHarness, job: Job) -> Placement:
    return harness.provider.placements(job)[0]


def _wait(harness: ContractHarness, handle: Handle, until: set[JobState], timeout: float) -> JobState:
    deadline = time.time() + timeout
    state = harness.provider.status(handle).state
    while state not in until:
        if time.time() > deadline:
            raise AssertionError(f"{handle.id} still {state.value} after {timeout:g}s (waiting for {until})")
        if state.terminal:
            raise AssertionError(f"{handle.id} ended {state.value}, expected one of {until}")
        time.sleep(0.1)
        state = harness.provider.status(handle).state
    return state


def _read(uri: str, name: str) -> bytes | None:
    fs, root = fsspec.core.url_to_fs(uri)
    try:
        return bytes(fs.cat_file(f"{root.rstrip('/')}/{name}"))
    except FileNotFoundError:
        return None


def _starts(uri: str) -> int:
    fs, root = fsspec.core.url_to_fs(uri)
    try:
        return len(fs.ls(f"{root.rstrip('/')}/starts", detail=False))
    except FileNotFoundError:
        return 0


# --------------------------------------------------------------------------- the contract


def test_contract_capabilities(harness: ContractHarness) -> None:
    provider = harness.provider
    assert isinstance(provider, Provider)
    assert provider.name and provider.name == provider.name.lower()
    assert provider.capabilities and all(isinstance(c, Capability) for c in provider.capabilities)
    assert all(c.reason for c in provider.capabilities if not c.supported), "say why something is unsupported"


def test_contract_render_is_pure(harness: ContractHarness, tmp_path: Path) -> None:
    job = harness.job(tmp_path, ["--steps", "2"])
    ctx = _ctx(harness, tmp_path, "contract-render")
    before = sorted(p.name for p in tmp_path.iterdir())
    first = harness.provider.render(job, _placement(harness, job), ctx)
    second = harness.provider.render(job, _placement(harness, job), ctx)
    assert first == second
    json.dumps(first)  # JSON-serialisable, as --dry-run --output json prints it
    assert sorted(p.name for p in tmp_path.iterdir()) == before, "render must not touch storage"


def test_contract_validate_names_the_field(harness: ContractHarness, tmp_path: Path) -> None:
    name = harness.provider.name
    job = harness.job(tmp_path, ["--steps", "2"], provider_options={name: {"no_such_option": 1}})
    with pytest.raises(ValidationFailed) as info:
        harness.provider.validate(job, _placement(harness, job))
    assert any(path == f"provider_options.{name}.no_such_option" for path, *_ in info.value.problems)


def test_contract_submit_runs_to_success(harness: ContractHarness, tmp_path: Path) -> None:
    job = harness.job(tmp_path, ["--steps", "5", "--step-seconds", "0.02"])
    ctx = _ctx(harness, tmp_path, "contract-success")
    handle = harness.provider.submit(job, _placement(harness, job), ctx)
    assert _wait(harness, handle, {JobState.SUCCEEDED}, harness.timeout) is JobState.SUCCEEDED
    result = json.loads(_read(ctx.output_uri, "result.json") or b"{}")
    assert result["sum"] == expected_sum(5)
    assert result["probe_sha256"] is not None, "the launch context's env must reach the job"
    logs = "".join(harness.provider.logs(handle))
    assert "worker: done" in logs
    usage = harness.provider.usage(handle)
    assert usage.runtime_seconds > 0 and usage.billable_seconds >= 0 and usage.count >= 1


def test_contract_submit_is_idempotent(harness: ContractHarness, tmp_path: Path) -> None:
    job = harness.job(tmp_path, ["--steps", "3", "--step-seconds", "0.02"])
    ctx = _ctx(harness, tmp_path, "contract-idempotent")
    first = harness.provider.submit(job, _placement(harness, job), ctx)
    second = harness.provider.submit(job, _placement(harness, job), ctx)
    assert first.id == second.id
    _wait(harness, first, {JobState.SUCCEEDED}, harness.timeout)
    assert _starts(ctx.output_uri) == 1, "a retried submit started the command twice"


def test_contract_failure_is_reported(harness: ContractHarness, tmp_path: Path) -> None:
    job = harness.job(tmp_path, ["--steps", "5", "--fail-at", "2", "--step-seconds", "0.01"])
    handle = harness.provider.submit(job, _placement(harness, job), _ctx(harness, tmp_path, "contract-fail"))
    assert _wait(harness, handle, {JobState.FAILED}, harness.timeout) is JobState.FAILED
    assert harness.provider.status(handle).message


def test_contract_cancel(harness: ContractHarness, tmp_path: Path) -> None:
    job = harness.job(tmp_path, ["--steps", "1000", "--step-seconds", "0.05"])
    handle = harness.provider.submit(
        job, _placement(harness, job), _ctx(harness, tmp_path, "contract-cancel")
    )
    _wait(harness, handle, {JobState.RUNNING}, harness.timeout)
    harness.provider.cancel(handle)
    assert _wait(harness, handle, {JobState.CANCELLED}, harness.timeout) is JobState.CANCELLED


def test_contract_preemption_and_resume(harness: ContractHarness, tmp_path: Path) -> None:
    """Through the controller: preempt attempt 1 after a checkpoint; attempt 2 resumes and finishes."""
    steps = 100  # 5 s of work: a notice that takes a few seconds to arrive still lands
    checkpoint_uri, output_uri = harness.storage(tmp_path)
    job = harness.job(
        tmp_path,
        ["--steps", str(steps), "--step-seconds", "0.05"],
        checkpoint={"uri": checkpoint_uri},
        output_uri=output_uri,
    )
    store = JobStore(tmp_path / "jobs.sqlite")
    run = api.submit(job, harness.provider.name, store=store, start_controller=False)
    controller = Controller(run.id, store, poll_interval=0.05)
    deadline = time.time() + 3 * harness.timeout + 30
    preempted_at: int | None = None
    while not controller.step():
        assert time.time() < deadline, f"job still {run.status.value}: {[a.to_dict() for a in run.attempts]}"
        attempts = run.attempts
        if preempted_at is None and attempts and attempts[0].state is JobState.RUNNING:
            progress = CheckpointStore(checkpoint_uri).progress()
            if progress and progress[0] >= 3:
                assert attempts[0].handle is not None
                harness.preempt(attempts[0].handle)
                preempted_at = progress[0]
        time.sleep(0.05)
    attempts = run.attempts
    assert run.status is JobState.SUCCEEDED, [a.to_dict() for a in attempts]
    assert preempted_at is not None
    assert [a.state for a in attempts[:2]] == [JobState.PREEMPTED, JobState.SUCCEEDED]
    result = json.loads(_read(output_uri, "result.json") or b"{}")
    assert result["sum"] == expected_sum(steps) and result["attempt"] == 2
    second = "".join(harness.provider.logs(attempts[1].handle)) if attempts[1].handle else ""
    resumed = [int(line.split()[-1]) for line in second.splitlines() if "resumed from step" in line]
    assert resumed and resumed[0] >= preempted_at, second
