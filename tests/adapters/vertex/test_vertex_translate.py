"""Pure translation, Vertex's own part: mapping details, validation paths, the state table, usage.

The golden CustomJobs (parsed strictly into the proto type) run in
``tests/adapters/test_translate_generic.py`` from the shape this module exposes: CASES, ctx,
strict, environment_of, native, UNKNOWN_STATE.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from google.cloud import aiplatform_v1
from google.protobuf import json_format
from multispot_vertex import translate
from multispot_vertex.provider import VertexProvider

from multispot.errors import UnknownProviderState, ValidationFailed
from multispot.job import Job
from multispot.provider import LaunchContext
from multispot.ship import install_command
from multispot.status import JobState, Placement

REPO = Path(__file__).resolve().parents[3]
OPTS = {"project": "p", "region": "us-central1", "staging_bucket": "gs://bkt"}


def _job(**fields: Any) -> Job:
    data: dict[str, Any] = {
        "name": "train",
        "command": "python train.py --lr 0.1",
        "image": "us-docker.pkg.dev/vertex-ai/training/pytorch-gpu.2-4.py310:latest",
        "resources": {"instance_type": "n1-standard-8", "accelerator": "V100:1"},
        "checkpoint": {"uri": "gs://bkt/ckpt/train", "interval": "5m"},
        "output_uri": "gs://bkt/out/train",
        "provider_options": {"vertex": dict(OPTS)},
    }
    data.update(fields)
    return Job.validate_data(data)


def ctx(attempt: int = 1) -> LaunchContext:
    return LaunchContext(
        "train-abc123", attempt, "gs://bkt/ckpt/train", "gs://bkt/out/train", env={"WANDB_MODE": "offline"}
    )


def _strict(request: dict[str, Any]) -> aiplatform_v1.CustomJob:
    message = aiplatform_v1.CustomJob.pb(aiplatform_v1.CustomJob())
    json_format.Parse(json.dumps(request), message)  # raises on any unknown field or bad value
    return aiplatform_v1.CustomJob.wrap(message)


def strict(request: dict[str, Any]) -> None:
    """A strict parse into aiplatform_v1.CustomJob, and back to the same JSON (lossless mapping)."""
    job = _strict(request)
    assert json_format.MessageToDict(aiplatform_v1.CustomJob.pb(job)) == json.loads(json.dumps(request))


def environment_of(request: dict[str, Any]) -> dict[str, str]:
    container = request["jobSpec"]["workerPoolSpecs"][0]["containerSpec"]
    return {e["name"]: e["value"] for e in container["env"]}


PLACEMENTS = {
    "spot_v100": Placement("vertex", "spot", "us-central1", "n1-standard-8", 1),
    "on_demand_multinode": Placement("vertex", "on-demand", "europe-west4", "a2-highgpu-8g", 3),
    "source_cpu": Placement("vertex", "spot", "us-central1", "n1-standard-4", 1),
}
JOBS = {
    "spot_v100": lambda: _job(),
    "on_demand_multinode": lambda: _job(
        resources={"instance_type": "a2-highgpu-8g", "accelerator": "A100:8", "nodes": 3},
        limits={"max_runtime": "6h"},
        tags={"team": "nlp"},
        hyperparameters={"epochs": 3, "amp": True},
    ),
    "source_cpu": lambda: _job(
        source_dir=str(REPO / "examples" / "quickstart"), resources={"instance_type": "n1-standard-4"}
    ),
}
CASES = {name: (lambda name=name: (JOBS[name](), PLACEMENTS[name])) for name in JOBS}
UNKNOWN_STATE = "JOB_STATE_SOMETHING_NEW"


def native(key: str) -> tuple[dict[str, Any]]:
    """A CustomJob in state ``key`` with no error (no refinement of FAILED)."""
    return (_native(key),)


def test_spot_and_checkpoint_mapping() -> None:
    job = _strict(
        translate.render(_job(), Placement("vertex", "spot", "us-central1", "n1-standard-8"), ctx(2))
    )
    assert job.job_spec.scheduling.strategy == aiplatform_v1.Scheduling.Strategy.SPOT
    pool = job.job_spec.worker_pool_specs[0]
    assert pool.machine_spec.accelerator_type == aiplatform_v1.AcceleratorType.NVIDIA_TESLA_V100
    assert pool.machine_spec.accelerator_count == 1 and pool.replica_count == 1
    env = {e.name: e.value for e in pool.container_spec.env}
    assert env["MULTISPOT_CHECKPOINT_DIR"] == "/gcs/bkt/ckpt/train"
    assert env["MULTISPOT_CHECKPOINT_URI"] == "gs://bkt/ckpt/train"
    assert env["MULTISPOT_ATTEMPT"] == "2" and env["MULTISPOT_PROVIDER"] == "vertex"
    assert env["MULTISPOT_NOTICE_SECONDS"] == "30" and env["WANDB_MODE"] == "offline"
    assert job.labels == {"multispot-job-id": "train-abc123", "multispot-attempt": "2"}
    assert job.job_spec.base_output_directory.output_uri_prefix == "gs://bkt/out/train"
    # multispot ships as wheels with the attempt and installs offline before the user's command
    assert env["MULTISPOT_WHEELS"] == "/gcs/bkt/multispot/source/train-abc123/attempt-2/multispot-wheels"
    command = list(pool.container_spec.command)
    assert command[:2] == ["sh", "-c"] and command[3] == "multispot-launch"
    assert install_command("$MULTISPOT_WHEELS") in command[2] and "--no-index" in command[2]
    assert command[2].endswith('exec "$@"')
    assert list(pool.container_spec.args) == ["python", "train.py", "--lr", "0.1"]
    assert env["MULTISPOT_OUTPUT_URI"] == "file:///gcs/bkt/out/train"  # FUSE: no gcsfs needed inside


def test_an_image_with_multispot_runs_the_command_as_written() -> None:
    job = _job(provider_options={"vertex": {**OPTS, "install": "image"}})
    request = translate.render(job, Placement("vertex", "spot", "us-central1", "n1-standard-8"), ctx())
    container = request["jobSpec"]["workerPoolSpecs"][0]["containerSpec"]
    assert container["command"] == ["python", "train.py", "--lr", "0.1"]
    assert "MULTISPOT_WHEELS" not in environment_of(request)


def test_on_demand_and_workers_pool() -> None:
    job = _strict(translate.render(*CASES["on_demand_multinode"](), ctx()))
    assert job.job_spec.scheduling.strategy == aiplatform_v1.Scheduling.Strategy.STANDARD
    assert job.job_spec.scheduling.restart_job_on_worker_restart is True
    assert job.job_spec.scheduling.timeout.total_seconds() == 6 * 3600
    assert [p.replica_count for p in job.job_spec.worker_pool_specs] == [1, 2]
    assert job.job_spec.worker_pool_specs[1].machine_spec.accelerator_count == 8
    container = job.job_spec.worker_pool_specs[0].container_spec
    assert list(container.args) == ["python", "train.py", "--lr", "0.1", "--epochs", "3", "--amp"]
    # 8 GPUs a node, 3 nodes: one process per GPU through torchrun, nodes from CLUSTER_SPEC
    assert container.command[2].endswith('exec python3 -m multispot_vertex.launch --nproc-per-node 8 -- "$@"')


def test_source_dir_runs_from_the_tarball_on_fuse() -> None:
    job = _strict(translate.render(*CASES["source_cpu"](), ctx()))
    container = job.job_spec.worker_pool_specs[0].container_spec
    env = {e.name: e.value for e in container.env}
    assert env["MULTISPOT_SOURCE_TARBALL"] == "/gcs/bkt/multispot/source/train-abc123/source.tar.gz"
    assert container.command[:2] == ["sh", "-c"] and list(container.args) == [
        "python",
        "train.py",
        "--lr",
        "0.1",
    ]
    assert not job.job_spec.worker_pool_specs[0].machine_spec.accelerator_type


@pytest.mark.parametrize(
    ("fields", "path"),
    [
        ({"provider_options": {"vertex": {**OPTS, "zone": "a"}}}, "provider_options.vertex.zone"),
        (
            {"provider_options": {"vertex": {**OPTS, "boot_disk_gb": 10}}},
            "provider_options.vertex.boot_disk_gb",
        ),
        ({"provider_options": {"vertex": {**OPTS, "network": "default"}}}, "provider_options.vertex.network"),
        (
            {"provider_options": {"vertex": {**OPTS, "billing_export_table": "t"}}},
            "provider_options.vertex.billing_export_table",
        ),
        ({"image": None}, "image"),
        ({"checkpoint": {"uri": "s3://b/ckpt"}}, "checkpoint.uri"),
        ({"output_uri": None, "provider_options": {"vertex": {"project": "p"}}}, "output_uri"),
        ({"resources": {"instance_type": "n1-standard-8", "accelerator": "T4:3"}}, "resources.accelerator"),
        ({"tags": {"Team": "x"}}, "tags.Team"),
        ({"tags": {"team": "Has Spaces"}}, "tags.team"),
    ],
)
def test_validation_names_the_field(fields: dict[str, Any], path: str) -> None:
    job = _job(**fields)
    with pytest.raises(ValidationFailed) as info:
        VertexProvider().validate(job, Placement("vertex", "spot", "us-central1", "n1-standard-8"))
    assert path in [p for p, *_ in info.value.problems], info.value.problems


def test_valid_job_passes_and_labels_are_sanitised() -> None:
    VertexProvider().validate(_job(), Placement("vertex", "spot", "us-central1", "n1-standard-8"))
    ctx = LaunchContext("Weird.Job_ID" + "x" * 80, 1, "gs://b/c", "gs://b/o")
    labels = translate.render(_job(), Placement("vertex", "spot", "r", "n1-standard-8"), ctx)["labels"]
    assert all(translate.LABEL_VALUE.match(v) for v in labels.values())
    assert len(labels["multispot-job-id"]) == translate.MAX_LABEL_LENGTH


def _native(state: str, **fields: Any) -> dict[str, Any]:
    return {"name": "projects/p/locations/europe-west4/customJobs/1", "state": state, **fields}


def test_state_table_covers_every_vertex_state() -> None:
    names = {s.name for s in aiplatform_v1.JobState} - {"JOB_STATE_UNSPECIFIED"}
    assert names == set(translate.STATES)
    assert translate.native_state(_native("JOB_STATE_QUEUED")) is JobState.SUBMITTED
    assert translate.native_state(_native("JOB_STATE_RUNNING")) is JobState.RUNNING
    assert translate.native_state(_native("JOB_STATE_SUCCEEDED")) is JobState.SUCCEEDED
    with pytest.raises(UnknownProviderState):
        translate.native_state(_native("JOB_STATE_UNSPECIFIED"))
    with pytest.raises(UnknownProviderState):
        translate.native_state(_native("JOB_STATE_SOMETHING_NEW"))


def test_failed_is_refined_by_the_error() -> None:
    preempted = _native(
        "JOB_STATE_FAILED",
        startTime="2026-11-23T10:00:00Z",
        error={"code": 14, "message": "VM was preempted"},
    )
    assert (translate.native_state(preempted), translate.message(preempted)) == (
        JobState.PREEMPTED,
        "VM was preempted",
    )
    stockout = _native("JOB_STATE_FAILED", error={"message": "Resources are insufficient in region"})
    assert translate.native_state(stockout) is JobState.NO_CAPACITY
    crashed = _native(
        "JOB_STATE_FAILED", startTime="2026-11-23T10:00:00Z", error={"message": "exited with 3"}
    )
    assert translate.native_state(crashed) is JobState.FAILED


def test_usage_from_times_machine_and_count() -> None:
    job = _native(
        "JOB_STATE_SUCCEEDED",
        createTime="2026-11-23T09:00:00Z",  # queued for an hour: not billed
        startTime="2026-11-23T10:00:00Z",
        endTime="2026-11-23T10:30:00.500Z",
        jobSpec={
            "scheduling": {"strategy": "SPOT"},
            "workerPoolSpecs": [
                {"machineSpec": {"machineType": "a2-highgpu-1g"}, "replicaCount": "1"},
                {"machineSpec": {"machineType": "a2-highgpu-1g"}, "replicaCount": "3"},
            ],
        },
    )
    usage = translate.usage(job)
    assert usage.runtime_seconds == pytest.approx(1800.5) and usage.billable_seconds == pytest.approx(1800.5)
    assert (usage.instance_type, usage.count, usage.market, usage.region) == (
        "a2-highgpu-1g",
        4,
        "spot",
        "europe-west4",
    )
    assert translate.usage(_native("JOB_STATE_QUEUED")).runtime_seconds == 0


def test_dry_run_cli_prints_a_strict_custom_job(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GOOGLE_", "MULTISPOT_VERTEX"))}
    env["MULTISPOT_HOME"] = str(tmp_path)
    out = subprocess.run(
        [sys.executable, "-m", "multispot.cli", "submit", str(REPO / "examples/pytorch/vertex.yaml"),
         "--provider", "vertex", "--dry-run", "--output", "json"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["provider"] == "vertex"
    job = _strict(data["request"])
    assert job.job_spec.scheduling.strategy == aiplatform_v1.Scheduling.Strategy.SPOT
    env_vars = {e.name: e.value for e in job.job_spec.worker_pool_specs[0].container_spec.env}
    assert env_vars["MULTISPOT_CHECKPOINT_URI"] == "gs://my-bucket/multispot/quickstart/checkpoints"
    assert env_vars["MULTISPOT_CHECKPOINT_DIR"] == "/gcs/my-bucket/multispot/quickstart/checkpoints"
    assert job.job_spec.worker_pool_specs[0].machine_spec.accelerator_type.name == "NVIDIA_TESLA_V100"
