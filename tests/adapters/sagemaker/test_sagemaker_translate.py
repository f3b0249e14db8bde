"""Pure translation, SageMaker's own part: limits, the state table's refinements, usage, names.

The goldens (checked by botocore's own validation) run in ``tests/adapters/test_translate_generic.py``
from the shape this module exposes: CASES, ctx, strict, environment_of, native, UNKNOWN_STATE.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from multispot_sagemaker import translate as t

from multispot.errors import UnknownProviderState, ValidationFailed
from multispot.job import Job
from multispot.provider import LaunchContext
from multispot.status import JobState, Placement

HERE = Path(__file__).parent
EXAMPLE = HERE.parents[2] / "examples" / "pytorch" / "sagemaker.yaml"
ROLE = "arn:aws:iam::123456789012:role/SageMakerRole"


def validate_with_botocore(request: dict[str, Any]) -> None:
    import botocore.session
    from botocore.validate import validate_parameters

    model = botocore.session.get_session().get_service_model("sagemaker")
    validate_parameters(request, model.operation_model("CreateTrainingJob").input_shape)


def ctx(job_id: str = "resnet-abc123", attempt: int = 1) -> LaunchContext:
    return LaunchContext(
        job_id, attempt, "s3://b/ckpt/resnet", "s3://b/out/resnet", env={"WANDB_MODE": "offline"}
    )


def multi_node_job() -> Job:
    return Job.validate_data(
        {
            "name": "resnet",
            "command": "python train.py --epochs 3",
            "image": "123456789012.dkr.ecr.us-west-2.amazonaws.com/mine:1",
            "resources": {"instance_type": "ml.p4d.24xlarge", "accelerator": "A100:8", "nodes": 2},
            "inputs": {"train": "s3://b/data/train"},
            "hyperparameters": {"lr": 0.1, "amp": True},
            "checkpoint": {"interval": "10m", "every_steps": 500},
            "limits": {"max_runtime": "3h"},
            "tags": {"team": "vision"},
            "provider_options": {
                "sagemaker": {
                    "role": ROLE,
                    "bucket": "b",
                    "region": "us-west-2",
                    "subnets": ["subnet-1"],
                    "security_group_ids": ["sg-1"],
                    "kms_key": "alias/ml",
                    "max_retry_attempts": 3,
                }
            },
        }
    )


CASES = {
    "example_spot": lambda: (
        Job.from_yaml(EXAMPLE),
        Placement("sagemaker", "spot", "us-east-1", "ml.g4dn.xlarge", 1, 0.2),
    ),
    "multi_node_on_demand": lambda: (
        multi_node_job(),
        Placement("sagemaker", "on-demand", "us-west-2", "ml.p4d.24xlarge", 2, 37.7),
    ),
}


def strict(request: dict[str, Any]) -> None:
    """botocore's own validation of CreateTrainingJob's input."""
    validate_with_botocore(request)


def environment_of(request: dict[str, Any]) -> dict[str, str]:
    """What the command sees: the request's Environment, then what the entry adds from the files
    the service writes (hyperparameters.json carries HyperParameters)."""
    import json
    import tempfile

    from multispot_sagemaker import entry

    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "hyperparameters.json").write_text(json.dumps(request.get("HyperParameters", {})))
        added, _, _ = entry.service_env(Path(tmp), 0)
    return {**request["Environment"], **added}


UNKNOWN_STATE = ("InProgress", "Teleporting")


def native(key: tuple[str, str]) -> tuple[dict[str, Any]]:
    """A DescribeTrainingJob answer in state ``key``, after training began (no NO_CAPACITY refinement)."""
    return (described(*key, "Training"),)


def test_spot_and_on_demand_requests() -> None:
    job = Job.from_yaml(EXAMPLE)
    spot = t.render(job, Placement("sagemaker", "spot", "us-east-1", "ml.g4dn.xlarge"), ctx())
    stop = spot["StoppingCondition"]
    assert spot["EnableManagedSpotTraining"] is True
    assert stop["MaxWaitTimeInSeconds"] >= stop["MaxRuntimeInSeconds"] == 7200
    assert spot["CheckpointConfig"] == {"S3Uri": "s3://b/ckpt/resnet", "LocalPath": "/opt/ml/checkpoints"}
    assert spot["Environment"]["MULTISPOT_CHECKPOINT_DIR"] == "/opt/ml/checkpoints"
    assert spot["Environment"]["MULTISPOT_ATTEMPT"] == "1"
    assert {"Key": "multispot-job-id", "Value": "resnet-abc123"} in spot["Tags"]
    assert spot["AlgorithmSpecification"]["TrainingImage"].endswith("pytorch-training:2.5-gpu-py311")
    on_demand = t.render(job, Placement("sagemaker", "on-demand", "us-east-1", "ml.g4dn.xlarge"), ctx())
    assert on_demand["EnableManagedSpotTraining"] is False
    assert "MaxWaitTimeInSeconds" not in on_demand["StoppingCondition"]
    cpu = t.render(job, Placement("sagemaker", "spot", "eu-west-1", "ml.m5.xlarge"), ctx())
    assert "-cpu-" in cpu["AlgorithmSpecification"]["TrainingImage"]
    assert ".eu-west-1." in cpu["AlgorithmSpecification"]["TrainingImage"]


def test_multi_node_launches_torchrun() -> None:
    args = t.container_arguments(multi_node_job())
    assert args[args.index("--nproc-per-node") + 1] == "8"
    assert args[args.index("--") + 1 :] == [
        "python",
        "train.py",
        "--epochs",
        "3",
        "--lr",
        "0.1",
        "--amp",
    ]


def test_training_job_names_fit_sagemaker() -> None:
    for job_id in ("a" * 47, "x-" * 40, "resnet-abc123", "UPPER_case.id"):
        for attempt in (1, 999):
            name = t.training_job_name(job_id, attempt)
            assert len(name) <= t.MAX_JOB_NAME and t.JOB_NAME_PATTERN.match(name), name
    assert t.training_job_name("a" * 60, 1) != t.training_job_name("a" * 59 + "b", 1)


def _problems(**fields: Any) -> list[str]:
    data: dict[str, Any] = {
        "name": "x",
        "command": "python t.py",
        "provider_options": {"sagemaker": {"role": ROLE, "bucket": "b"}},
    }
    data.update(fields)
    job = Job.validate_data(data)
    with pytest.raises(ValidationFailed) as info:
        t.validate(job, Placement("sagemaker", "spot", "us-east-1", "ml.m5.xlarge"))
    return [path for path, *_ in info.value.problems]


def test_limits_are_checked_with_field_paths() -> None:
    assert _problems(env={f"V{i}": "x" for i in range(95)}) == ["env"]
    assert _problems(env={"BIG": "x" * 600}) == ["env.BIG"]
    assert _problems(hyperparameters={f"h{i}": 1 for i in range(101)}) == ["hyperparameters", "command"]
    assert _problems(hyperparameters={"h": "x" * 2501}) == ["hyperparameters.h", "command"]
    assert _problems(limits={"max_runtime": "29d"}) == ["limits.max_runtime"]
    assert _problems(inputs={"code": "s3://b/c"}) == ["inputs.code"]
    assert _problems(output_uri="gs://b/o") == ["output_uri"]
    assert _problems(image="nonsense") == ["image"]
    assert _problems(provider_options={"sagemaker": {"bucket": "b"}}) == ["provider_options.sagemaker.role"]
    assert _problems(provider_options={"sagemaker": {"role": ROLE, "bucket": "b", "subnets": ["s"]}}) == [
        "provider_options.sagemaker.subnets"
    ]


def described(status: str, secondary: str, *history: str, **extra: Any) -> dict[str, Any]:
    return {
        "TrainingJobStatus": status,
        "SecondaryStatus": secondary,
        "SecondaryStatusTransitions": [{"Status": s} for s in history],
        **extra,
    }


def test_state_table() -> None:
    assert t.native_state(described("InProgress", "Downloading")) is JobState.STARTING
    assert t.native_state(described("InProgress", "Training")) is JobState.RUNNING
    assert t.native_state(described("InProgress", "Interrupted")) is JobState.STARTING
    assert t.native_state(described("InProgress", "Restarting")) is JobState.STARTING
    assert t.native_state(described("Completed", "Completed")) is JobState.SUCCEEDED
    assert t.native_state(described("Failed", "Failed")) is JobState.FAILED
    assert t.native_state(described("Stopped", "Stopped")) is JobState.CANCELLED
    assert t.native_state(described("Stopped", "MaxRuntimeExceeded")) is JobState.TIMED_OUT
    gave_up = described("Stopped", "MaxWaitTimeExceeded", "Starting", "Training", "Interrupted")
    assert t.native_state(gave_up) is JobState.PREEMPTED
    assert t.native_state(described("Stopped", "MaxWaitTimeExceeded", "Starting")) is JobState.NO_CAPACITY
    capacity = described(
        "Failed", "Failed", FailureReason="CapacityError: Unable to provision requested ML compute capacity"
    )
    assert t.native_state(capacity) is JobState.NO_CAPACITY
    assert (
        t.interruptions(
            described("Completed", "Completed", "Training", "Interrupted", "Training", "Interrupted")
        )
        == 2
    )
    with pytest.raises(UnknownProviderState):
        t.native_state(described("InProgress", "Teleporting"))


def test_usage_is_billable_time_at_the_on_demand_rate() -> None:
    spot = described(
        "Completed",
        "Completed",
        TrainingTimeInSeconds=1000,
        BillableTimeInSeconds=300,
        EnableManagedSpotTraining=True,
        ResourceConfig={"InstanceType": "ml.p3.2xlarge", "InstanceCount": 2},
    )
    usage = t.usage_from(spot, "us-east-1")
    assert (usage.runtime_seconds, usage.billable_seconds, usage.count) == (1000, 300, 2)
    assert usage.market == "spot" and "on-demand rate" in usage.source
    on_demand = dict(spot, EnableManagedSpotTraining=False)
    on_demand.pop("BillableTimeInSeconds")
    assert t.usage_from(on_demand, None).billable_seconds == 1000
