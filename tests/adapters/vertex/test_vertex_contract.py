"""The provider contract against Vertex: the real aiplatform_v1 client over gRPC to the fake
JobService, Cloud Logging's client over REST to the fake, checkpoints on the GCS emulator."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from multispot_vertex.provider import VertexProvider

from multispot import registry
from multispot.job import Job
from multispot.provider import LaunchContext
from multispot.status import Handle, JobState
from multispot.testing.contract import *  # noqa: F403
from multispot.testing.worker import expected_sum

pytestmark = pytest.mark.slow

BUCKET = "multispot-test"


class VertexHarness:
    timeout = 60.0

    def __init__(self, fake: Any) -> None:
        self.fake = fake
        self.provider = registry.get("vertex")  # what the controller uses too
        assert isinstance(self.provider, VertexProvider)

    def job(self, tmp_path: Path, worker_args: list[str], **fields: Any) -> Job:
        options = {"project": "test-project", "region": "us-central1", "staging_bucket": f"gs://{BUCKET}"}
        extra = fields.pop("provider_options", None) or {}
        data: dict[str, Any] = {
            "name": "contract",
            "command": ["python", "-m", "multispot.testing.worker", *worker_args],
            "image": "python:3.11-slim",
            "resources": {"instance_type": "n1-standard-4"},
            "provider_options": {"vertex": {**options, **extra.get("vertex", {})}},
        }
        data.update(fields)
        return Job.validate_data(data, base_dir=tmp_path)

    def storage(self, tmp_path: Path) -> tuple[str, str]:
        prefix = f"gs://{BUCKET}/{tmp_path.parent.name}-{tmp_path.name}"
        return f"{prefix}/ckpt", f"{prefix}/out"

    def preempt(self, handle: Handle) -> None:
        self.fake.preempt(handle.id)


@pytest.fixture
def harness(vertex_env: dict[str, str], fake_vertex: Any) -> VertexHarness:
    return VertexHarness(fake_vertex)


def test_request_reaches_the_service_as_rendered(
    harness: VertexHarness, tmp_path: Path, fake_vertex: Any
) -> None:
    from google.cloud import aiplatform_v1

    job = harness.job(tmp_path, ["--steps", "1", "--step-seconds", "0"], tags={"team": "ml"})
    ckpt, out = harness.storage(tmp_path)
    ctx = LaunchContext("received-1", 1, ckpt, out)
    placement = harness.provider.placements(job)[0]
    handle = harness.provider.submit(job, placement, ctx)
    assert handle.id.startswith("projects/test-project/locations/us-central1/customJobs/")
    sent = fake_vertex.created[-1]
    expected = aiplatform_v1.CustomJob.from_json(json.dumps(harness.provider.render(job, placement, ctx)))
    assert sent == expected
    assert sent.labels["team"] == "ml" and sent.labels["multispot-attempt"] == "1"
    _wait_state(harness, handle, JobState.SUCCEEDED)


def _wait_state(harness: VertexHarness, handle: Handle, want: JobState) -> None:
    deadline = time.time() + harness.timeout
    while (state := harness.provider.status(handle).state) is not want:
        assert not state.terminal and time.time() < deadline, state
        time.sleep(0.1)


def test_spot_restart_in_place_resumes_within_the_attempt(
    harness: VertexHarness, tmp_path: Path, gcs: Any
) -> None:
    """running → preempted and restarted by Vertex on a new VM → succeeded, all in one CustomJob."""
    steps = 30
    job = harness.job(tmp_path, ["--steps", str(steps), "--step-seconds", "0.05"])
    ckpt, out = harness.storage(tmp_path)
    handle = harness.provider.submit(
        job, harness.provider.placements(job)[0], LaunchContext("restart-1", 1, ckpt, out)
    )
    _wait_state(harness, handle, JobState.RUNNING)
    root = ckpt.removeprefix("gs://")
    deadline = time.time() + harness.timeout
    while not [p for p in _ls(gcs, root) if p.startswith("step-")]:
        assert time.time() < deadline, "no checkpoint reached the bucket"
        time.sleep(0.1)
    harness.fake.preempt(handle.id, restart=True)
    states = set()
    while (state := harness.provider.status(handle).state) is not JobState.SUCCEEDED:
        assert not state.terminal, state
        states.add(state)
        time.sleep(0.1)
    assert states <= {JobState.RUNNING}
    logs = "".join(harness.provider.logs(handle))
    assert "resumed from step" in logs and "worker: done" in logs, logs
    gcs.invalidate_cache()
    result = json.loads(gcs.cat_file(f"{out.removeprefix('gs://')}/result.json"))
    assert result["sum"] == expected_sum(steps) and result["attempt"] == 1
    assert len(_ls(gcs, f"{out.removeprefix('gs://')}/starts")) == 2  # the worker started twice


def _ls(gcs: Any, path: str) -> list[str]:
    gcs.invalidate_cache()
    try:
        return [p.rsplit("/", 1)[-1] for p in gcs.ls(path, detail=False)]
    except FileNotFoundError:
        return []


def test_usage_reports_machine_count_and_market(harness: VertexHarness, tmp_path: Path) -> None:
    job = harness.job(
        tmp_path,
        ["--steps", "3", "--step-seconds", "0.1"],
        resources={"instance_type": "n1-standard-4", "nodes": 1},
    )
    ckpt, out = harness.storage(tmp_path)
    handle = harness.provider.submit(
        job, harness.provider.placements(job)[0], LaunchContext("usage-1", 1, ckpt, out)
    )
    _wait_state(harness, handle, JobState.SUCCEEDED)
    usage = harness.provider.usage(handle)
    assert (usage.instance_type, usage.count, usage.market, usage.region) == (
        "n1-standard-4",
        1,
        "spot",
        "us-central1",
    )
    status = harness.provider.status(handle)
    assert status.started is not None and status.ended is not None
    assert usage.billable_seconds == pytest.approx(status.ended - status.started)
    assert usage.billable_seconds >= 0.3


def test_logs_follow_until_the_job_ends(
    harness: VertexHarness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import multispot_vertex.provider as provider_module

    monkeypatch.setattr(provider_module, "LOG_POLL_SECONDS", 0.2)
    job = harness.job(tmp_path, ["--steps", "15", "--step-seconds", "0.1"])
    ckpt, out = harness.storage(tmp_path)
    handle = harness.provider.submit(
        job, harness.provider.placements(job)[0], LaunchContext("follow-1", 1, ckpt, out)
    )
    lines = list(harness.provider.logs(handle, follow=True))
    assert harness.provider.status(handle).state is JobState.SUCCEEDED
    steps = [line for line in lines if line.startswith("worker: step ")]
    assert steps == [f"worker: step {n}\n" for n in range(1, 16)]  # each line once, in order
    assert lines[-1].startswith("worker: done")
