"""What a running job learns from its environment: the MULTISPOT_* contract or a service's own variables."""

from __future__ import annotations

from pathlib import Path

import pytest

from multispot.runtime.env import DEFAULT_INTERVAL, DEFAULT_KEEP, JobEnv, detect


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # relative defaults (./checkpoints) resolve here


def test_nothing_set_is_a_manual_run(tmp_path: Path) -> None:
    env = detect({})
    assert env.provider == "manual"
    assert env.job_id is None
    assert env.attempt == 1 and not env.resumed
    assert env.checkpoint_uri == (tmp_path / "checkpoints").resolve().as_uri()
    assert env.checkpoint_dir == (tmp_path / "checkpoints").resolve()
    assert env.output_uri == (tmp_path / "outputs").resolve().as_uri()
    assert env.output_dir == (tmp_path / "outputs").resolve()
    assert env.notice_seconds == 30.0
    assert (env.checkpoint_interval, env.checkpoint_keep) == (DEFAULT_INTERVAL, DEFAULT_KEEP)
    assert (env.rank, env.world_size) == (0, 1)
    assert env.hyperparameters == {}


def test_multispot_contract(tmp_path: Path) -> None:
    env = detect(
        {
            "MULTISPOT_JOB_ID": "train-abc123",
            "MULTISPOT_ATTEMPT": "3",
            "MULTISPOT_PROVIDER": "local",
            "MULTISPOT_CHECKPOINT_URI": "memory://bucket/ckpt",
            "MULTISPOT_OUTPUT_URI": "s3://bucket/out",
            "MULTISPOT_NOTICE_SECONDS": "4.5",
            "MULTISPOT_CHECKPOINT_INTERVAL": "60",
            "MULTISPOT_CHECKPOINT_KEEP": "7",
            "MULTISPOT_HYPERPARAMETERS": '{"lr": 0.1, "epochs": 3, "name": "x"}',
            "RANK": "2",
            "WORLD_SIZE": "4",
        }
    )
    assert env == JobEnv(
        job_id="train-abc123",
        attempt=3,
        provider="local",
        checkpoint_uri="memory://bucket/ckpt",
        output_uri="s3://bucket/out",
        notice_seconds=4.5,
        checkpoint_interval=60.0,
        checkpoint_keep=7,
        rank=2,
        world_size=4,
        hyperparameters={"lr": "0.1", "epochs": "3", "name": "x"},
    )
    assert env.resumed
    assert env.output_dir is None and env.checkpoint_dir is None  # not local folders


def test_checkpoint_dir_wins_over_uri(tmp_path: Path) -> None:
    env = detect({"MULTISPOT_CHECKPOINT_DIR": "local-ckpt", "MULTISPOT_CHECKPOINT_URI": "s3://b/ckpt"})
    assert env.checkpoint_uri == (tmp_path / "local-ckpt").resolve().as_uri()


def test_sagemaker_variables() -> None:
    env = detect({"TRAINING_JOB_NAME": "sm-job-1", "SM_HPS": '{"batch": 32}'})
    assert env.provider == "sagemaker"
    assert env.job_id == "sm-job-1"
    assert env.notice_seconds == 120.0
    assert env.checkpoint_uri == "file:///opt/ml/checkpoints"
    assert env.output_uri == "file:///opt/ml/model"
    assert env.hyperparameters == {"batch": "32"}


def test_sagemaker_with_model_dir_only() -> None:
    env = detect({"SM_MODEL_DIR": "/opt/ml/other-model"})
    assert env.provider == "sagemaker"
    assert env.output_uri == "file:///opt/ml/other-model"


def test_multispot_variables_win_over_the_service_ones(tmp_path: Path) -> None:
    env = detect(
        {
            "TRAINING_JOB_NAME": "sm-job-1",
            "MULTISPOT_PROVIDER": "sagemaker",
            "MULTISPOT_JOB_ID": "train-1",
            "MULTISPOT_CHECKPOINT_DIR": str(tmp_path / "sync"),
            "MULTISPOT_NOTICE_SECONDS": "6",
        }
    )
    assert env.job_id == "train-1"
    assert env.checkpoint_uri == (tmp_path / "sync").as_uri()
    assert env.notice_seconds == 6.0


def test_vertex_variables() -> None:
    env = detect(
        {"CLOUD_ML_JOB_ID": "123456", "AIP_CHECKPOINT_DIR": "gs://b/ckpt", "AIP_MODEL_DIR": "gs://b/model"}
    )
    assert env.provider == "vertex"
    assert env.job_id == "123456"
    assert env.checkpoint_uri == "gs://b/ckpt"
    assert env.output_uri == "gs://b/model"
    assert env.notice_seconds == 30.0


def test_azureml_variables(tmp_path: Path) -> None:
    env = detect({"AZUREML_RUN_ID": "run-1", "AZUREML_EXPERIMENT_NAME": "x"})
    assert env.provider == "azureml"
    assert env.notice_seconds == 30.0
    assert env.checkpoint_uri == (tmp_path / "checkpoints").resolve().as_uri()


@pytest.mark.parametrize("hps", ["not json", "[1, 2]", "5", '"text"', "null"])
def test_unusable_hyperparameters_are_ignored(hps: str) -> None:
    assert detect({"MULTISPOT_HYPERPARAMETERS": hps}).hyperparameters == {}


def test_detect_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MULTISPOT_JOB_ID", "from-os-environ")
    monkeypatch.setenv("MULTISPOT_PROVIDER", "local")
    env = detect()
    assert (env.job_id, env.provider) == ("from-os-environ", "local")
