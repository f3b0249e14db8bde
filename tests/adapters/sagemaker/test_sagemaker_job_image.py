"""What reaches the job is only what the request ships: the fake runs each node in a fresh
virtualenv holding the image's packages (never this machine's multispot), so multispot gets there
through the code channel's wheels or not at all; several nodes commit one checkpoint through S3."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from helpers.sagemaker_setup import BUCKET, RECIPE_IMAGE, ROLE

from multispot import registry
from multispot.checkpoint import CheckpointStore
from multispot.job import Job
from multispot.provider import LaunchContext
from multispot.status import JobState, Placement, ProviderStatus

pytestmark = pytest.mark.slow
PROBE = (
    "import json, multispot, sys; print('PROBE ' + json.dumps({'file': multispot.__file__, "
    "'prefix': sys.prefix, 'hyper': __import__('os').environ.get('MULTISPOT_HYPERPARAMETERS')}))"
)


def _job(tmp_path: Path, command: list[str], **fields: Any) -> Job:
    options = {"role": ROLE, "bucket": BUCKET, "prefix": f"img-{uuid.uuid4().hex[:8]}"}
    options.update(fields.pop("options", {}))
    data: dict[str, Any] = {
        "name": "img",
        "command": command,
        "resources": {"instance_type": "ml.m5.xlarge"},
        "provider_options": {"sagemaker": options},
        **fields,
    }
    return Job.validate_data(data, base_dir=tmp_path)


def _run(job: Job, count: int = 1) -> tuple[Any, Any, ProviderStatus, LaunchContext]:
    provider = registry.get("sagemaker")
    key = uuid.uuid4().hex[:8]
    ctx = LaunchContext(f"img-{key}", 1, f"s3://{BUCKET}/c-{key}", f"s3://{BUCKET}/o-{key}")
    placement = Placement("sagemaker", "spot", "us-east-1", "ml.m5.xlarge", count)
    handle = provider.submit(job, placement, ctx)
    # A hang guard, not a timing assertion: each node builds a fresh virtualenv and installs the
    # shipped wheels, which took over 120 s once on a loaded 2-core machine (pytest's own limit is 300 s).
    deadline = time.time() + 240
    while not (status := provider.status(handle)).state.terminal:
        assert time.time() < deadline, status
        time.sleep(0.1)
    return provider, handle, status, ctx


def test_the_shipped_wheels_are_what_the_job_imports(aws: Any, tmp_path: Path, home: Path) -> None:
    job = _job(tmp_path, ["python", "-c", PROBE], hyperparameters={"lr": 0.5})
    provider, handle, status, _ = _run(job)
    logs = "".join(provider.logs(handle))
    assert status.state is JobState.SUCCEEDED, logs
    probe = json.loads(next(line for line in logs.splitlines() if line.startswith("PROBE "))[6:])
    # multispot was installed into the job's own fresh environment, from the code channel
    assert probe["file"].startswith(probe["prefix"]) and probe["prefix"].endswith("/algo-1/image")
    assert not probe["file"].startswith(str(Path(__file__).parents[3]))
    assert json.loads(probe["hyper"]) == {"lr": "0.5"}  # HyperParameters reach the command


def test_without_multispot_in_the_image_install_none_fails_as_on_sagemaker(
    aws: Any, tmp_path: Path, home: Path
) -> None:
    job = _job(tmp_path, ["python", "-c", PROBE], options={"install": "none"})
    provider, handle, status, _ = _run(job)
    assert status.state is JobState.FAILED
    assert "No module named 'multispot'" in "".join(provider.logs(handle))


def test_two_nodes_commit_one_checkpoint_through_s3(aws: Any, tmp_path: Path, home: Path) -> None:
    job = _job(
        tmp_path,
        ["python", "-m", "multispot.testing.worker", "--steps", "4", "--step-seconds", "0.05"],
        image=RECIPE_IMAGE,
        options={"distribution": "none"},
    )
    provider, handle, status, ctx = _run(job, count=2)
    logs = "".join(provider.logs(handle))
    assert status.state is JobState.SUCCEEDED, logs
    store = CheckpointStore(ctx.checkpoint_uri)
    latest = store.latest()
    assert latest is not None and latest.step == 4, logs
    assert latest.metadata.get("ranks") == 2  # both nodes' parts went into the commit
    request = aws[0].requests[handle.id]
    assert "CheckpointConfig" not in request and "MULTISPOT_CHECKPOINT_DIR" not in request["Environment"]
