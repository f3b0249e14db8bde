"""On each cloud: a tiny spot job that checkpoints, a second job resuming from its checkpoint URI,
the billing lookup, a secret resolved inside the job, and what can be said about interruptions.

Run with ``make live-test`` (docs/live-tests.md). Each job is the shipped
``multispot.testing.worker`` (standard library + multispot only, so any Python image runs it).
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from helpers.live import Account, account

from multispot import api
from multispot.checkpoint import CheckpointStore
from multispot.job import Job
from multispot.status import JobState
from multispot.testing.worker import expected_sum

PROVIDERS = ("sagemaker", "vertex", "azureml")

# Why no test forces a spot interruption (checked against each service's documentation):
NO_INTERRUPTION = {
    "sagemaker": (
        "SageMaker managed spot training has no API to interrupt a training job's spot instance "
        "(the instances are not in your account; StopTrainingJob is a stop, not a reclaim, and "
        "EC2's Fault Injection Service actions target your own instances only)"
    ),
    "vertex": (
        "Vertex AI custom jobs on Spot VMs run on Google-managed VMs: Compute Engine's "
        "simulate-maintenance-event and instance stop are not available on them, and Vertex "
        "has no preemption API; a preemption is observed only when Google reclaims capacity"
    ),
    "azureml": (
        "Azure ML low-priority clusters run on a managed scale set: the Spot VM "
        "'simulate eviction' API (VMSS simulateEviction) needs the scale set, which Azure ML "
        "does not expose; an eviction is observed only when Azure reclaims capacity"
    ),
}


def _job(acct: Account, name: str, command: str, checkpoint_uri: str | None, **fields: Any) -> Job:
    data: dict[str, Any] = {
        "name": name,
        "command": command,
        "spot": {"policy": "spot", "max_attempts": 3},
        "limits": {"max_runtime": "30m"},
        "provider_options": {acct.provider: acct.options},
        "targets": [
            {
                "provider": acct.provider,
                "market": "spot",
                **({"instance_type": acct.instance_type} if acct.instance_type else {}),
            }
        ],
        **fields,
    }
    if acct.image:
        data["image"] = acct.image
    if checkpoint_uri:
        data["checkpoint"] = {"uri": checkpoint_uri, "keep": 2}
    return Job.validate_data(data)


def _run(job: Job, acct: Account) -> api.Run:
    run = api.submit(job, provider=acct.provider)
    try:
        state = run.wait(timeout=acct.timeout, poll=15)
    except BaseException:
        run.cancel()
        raise
    assert state is JobState.SUCCEEDED, (
        f"{run.id}: {state} {run.record.message}\n{''.join(run.logs())[-4000:]}"
    )
    return run


@pytest.mark.parametrize("provider", PROVIDERS)
def test_spot_job_checkpoints_resumes_and_is_billed(provider: str) -> None:
    acct = account(provider)
    tag = uuid.uuid4().hex[:6]
    uri = f"{acct.checkpoint_base}/live-{tag}" if acct.checkpoint_base else None
    first = _run(
        _job(acct, f"live-{tag}", "python -m multispot.testing.worker --steps 10 --step-seconds 1", uri), acct
    )
    [attempt] = first.attempts
    assert attempt.placement.market == "spot"
    logs = "".join(first.logs())
    assert "worker: fresh start" in logs and f'"sum": {expected_sum(10)}' in logs
    checkpoints = first.record.checkpoint_uri
    manifest = CheckpointStore(checkpoints).newest_manifest()
    assert manifest is not None and manifest.step == 10

    # The next job resumes from the same checkpoint URI (what a new attempt on another pool does).
    second = _run(
        _job(
            acct,
            f"live-{tag}-b",
            "python -m multispot.testing.worker --steps 20 --step-seconds 1",
            checkpoints,
        ),
        acct,
    )
    logs = "".join(second.logs())
    assert "worker: resumed from step 10" in logs and f'"sum": {expected_sum(20)}' in logs

    # Billing: the provider's own usage figures now; the billing API's figure when it has it
    # (AWS Cost Explorer, the BigQuery export and Cost Management lag by hours).
    report = first.cost()
    [line] = report.lines
    assert line.market == "spot" and line.billable_seconds > 0 and line.cost is not None
    measured = first.cost(measured=True)
    if provider not in measured.measured:
        assert measured.notes, "no measured figure and no note saying why"


@pytest.mark.parametrize("provider", PROVIDERS)
def test_secret_is_resolved_inside_the_job(provider: str) -> None:
    acct = account(provider)
    if not (acct.secret and acct.secret_sha256):
        pytest.skip(f"{acct.var('SECRET')} and {acct.var('SECRET_SHA256')} are not set")
    command = (
        'python -c "import hashlib, os; from multispot.runtime import secrets; '
        "h = lambda v: hashlib.sha256(v.encode()).hexdigest(); "
        "print('live-secret', h(secrets.get('LIVE_SECRET')), h(os.environ.get('LIVE_SECRET', '')))\""
    )
    run = _run(
        _job(acct, f"live-sec-{uuid.uuid4().hex[:6]}", command, None, secrets={"LIVE_SECRET": acct.secret}),
        acct,
    )
    logs = "".join(run.logs())
    assert f"live-secret {acct.secret_sha256} {acct.secret_sha256}" in logs, logs[-2000:]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_interruption(provider: str) -> None:
    account(provider)
    pytest.skip(
        NO_INTERRUPTION[provider] + "; the local provider's injected preemptions cover the recovery path"
    )
