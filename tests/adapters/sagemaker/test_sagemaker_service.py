"""SageMaker-specific behaviour over the wire: an interruption absorbed by the service (billable <
training), measured cost from Cost Explorer, the checkpoint contract on s3://, the dry-run CLI."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import requests
from helpers.sagemaker_setup import BUCKET, RECIPE_IMAGE, ROLE
from multispot_sagemaker.billing import cost_query
from test_sagemaker_translate import EXAMPLE, validate_with_botocore

from multispot import registry
from multispot.checkpoint import CheckpointStore
from multispot.job import Job
from multispot.provider import LaunchContext
from multispot.status import Attempt, JobState, Placement


def _job(tmp_path: Path, args: list[str]) -> Job:
    return Job.validate_data(
        {
            "name": "svc",
            "command": ["python", "-m", "multispot.testing.worker", *args],
            "resources": {"instance_type": "ml.m5.xlarge"},
            "image": RECIPE_IMAGE,  # the worker writes its result to s3:// (s3fs)
            "provider_options": {"sagemaker": {"role": ROLE, "bucket": BUCKET}},
        },
        base_dir=tmp_path,
    )


@pytest.mark.slow
def test_interruption_absorbed_by_sagemaker_bills_less(
    aws: tuple[Any, str], tmp_path: Path, home: Path
) -> None:
    fake = aws[0]
    provider = registry.get("sagemaker")
    job = _job(tmp_path, ["--steps", "30", "--step-seconds", "0.05"])
    key = uuid.uuid4().hex[:8]
    ctx = LaunchContext(f"svc-{key}", 1, f"s3://{BUCKET}/c-{key}", f"s3://{BUCKET}/o-{key}")
    handle = provider.submit(job, Placement("sagemaker", "spot", "us-east-1", "ml.m5.xlarge"), ctx)
    deadline = time.time() + 60
    while not (CheckpointStore(ctx.checkpoint_uri).progress() or (0,))[0] >= 3:
        assert time.time() < deadline
        time.sleep(0.1)
    fake.signal(handle.id, "interrupt")
    seen: set[str] = set()
    while not (status := provider.status(handle)).state.terminal:
        seen.add(status.native_state)
        assert time.time() < deadline, status
        time.sleep(0.05)
    assert status.state is JobState.SUCCEEDED and status.interruptions == 1
    assert "InProgress/Restarting" in seen or "InProgress/Interrupted" in seen
    logs = "".join(provider.logs(handle))
    assert "resumed from step" in logs and "worker: done" in logs
    usage = provider.usage(handle)
    assert 0 < usage.billable_seconds < usage.runtime_seconds and usage.market == "spot"
    import fsspec

    result = json.loads(fsspec.open(f"{ctx.output_uri}/result.json", "rb").open().read())
    assert result["sum"] == sum(i * i for i in range(30))


def test_measured_cost_from_cost_explorer(aws: tuple[Any, str]) -> None:
    endpoint = aws[1]
    day = "2026-11-20"
    attempts = [
        Attempt("job-1", 1, Placement("sagemaker", "spot", "us-east-1", "ml.m5.xlarge"), submitted=1.7636e9),
        Attempt("job-1", 2, Placement("sagemaker", "spot", "us-east-1", "ml.m5.xlarge"), ended=1.7637e9),
    ]
    import botocore.session
    from botocore.validate import validate_parameters

    query = cost_query("job-1", attempts)
    shape = (
        botocore.session.get_session().get_service_model("ce").operation_model("GetCostAndUsage").input_shape
    )
    validate_parameters(query, shape)
    assert query["Filter"]["Tags"] == {
        "Key": "multispot-job-id",
        "Values": ["job-1"],
        "MatchOptions": ["EQUALS"],
    }
    groups = [
        {"Keys": ["multispot-attempt$1"], "Metrics": {"UnblendedCost": {"Amount": "0.25", "Unit": "USD"}}},
        {"Keys": ["multispot-attempt$2"], "Metrics": {"UnblendedCost": {"Amount": "1.5", "Unit": "USD"}}},
    ]
    seeded = {
        "results": [
            {
                "ResultsByTime": [
                    {"TimePeriod": {"Start": day, "End": "2026-11-21"}, "Groups": groups, "Estimated": False}
                ]
            },
        ]
    }
    response = requests.post(f"{endpoint}/moto-api/static/ce/cost-and-usage-results", json=seeded, timeout=10)
    assert response.status_code == 201
    measured = registry.get("sagemaker").measured_cost("job-1", attempts)  # type: ignore[attr-defined]
    assert measured is not None
    assert measured.amount == pytest.approx(1.75) and measured.per_attempt == {1: 0.25, 2: 1.5}
    assert "Cost Explorer" in measured.source and measured.start == query["TimePeriod"]["Start"]
    # The queue is empty now: a job Cost Explorer knows nothing of has no measured cost.
    assert registry.get("sagemaker").measured_cost("job-2", attempts) is None  # type: ignore[attr-defined]


def test_checkpoint_contract_on_s3(aws: tuple[Any, str]) -> None:
    store = CheckpointStore(f"s3://{BUCKET}/contract-{uuid.uuid4().hex[:8]}")
    for step in (1, 2, 3):
        with store.writer(step, attempt=1) as writer:
            writer.write_bytes("state.json", json.dumps({"step": step}).encode())
    # A torn step: files without a MANIFEST (as SageMaker's unordered upload may leave) is no checkpoint.
    store.fs.pipe_file(f"{store.root}/step-000000000004/state.json", b"partial")
    assert store.restore().step == 3
    store.retain(2)
    assert store.latest() is not None and [s for s in store.steps() if store.verify(s).ok] == [2, 3]
    assert json.loads(store.restore().read_bytes("state.json")) == {"step": 3}


def test_dry_run_cli_without_credentials(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "MULTISPOT_HOME": str(tmp_path / "home")}
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "multispot.cli",
            "submit",
            str(EXAMPLE),
            "--provider",
            "sagemaker",
            "--dry-run",
            "--output",
            "json",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["provider"] == "sagemaker"
    request = data["request"]
    validate_with_botocore(request)
    job = Job.from_yaml(EXAMPLE)
    assert request["EnableManagedSpotTraining"] is True
    stop = request["StoppingCondition"]
    assert stop["MaxWaitTimeInSeconds"] >= stop["MaxRuntimeInSeconds"]
    assert request["CheckpointConfig"]["S3Uri"] == job.checkpoint.uri
