"""The in-job environment contract: what ``build`` writes, ``read`` reads back; services recognised
from their own variables through ``multispot.job_environments``, a third party's included."""

from __future__ import annotations

import json
import sys
import types
from collections.abc import Mapping
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

from multispot import jobenv
from multispot.job import Job
from multispot.provider import LaunchContext


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


def _job(**fields: object) -> Job:
    data: dict[str, object] = {
        "name": "train",
        "command": "python train.py",
        "inputs": {"train": "s3://b/data/train", "Val_2": "s3://b/data/val"},
        "hyperparameters": {"lr": 0.1, "amp": True, "name": "x y"},
        "checkpoint": {"interval": "90s", "every_steps": 250, "keep": 5},
        "env": {"WANDB_MODE": "offline"},
    }
    data.update(fields)
    return Job.validate_data(data)


CTX = LaunchContext("train-abc", 3, "s3://b/ckpt/train", "s3://b/out/train", env={"WANDB_MODE": "offline"})


def test_every_field_written_is_read_back() -> None:
    env = jobenv.build(_job(), CTX, "acme", 12.5)
    back = jobenv.read(env, known=[])
    assert back == jobenv.JobEnv(
        job_id="train-abc",
        attempt=3,
        provider="acme",
        checkpoint_uri="s3://b/ckpt/train",
        output_uri="s3://b/out/train",
        notice_seconds=12.5,
        checkpoint_interval=90.0,
        checkpoint_keep=5,
        checkpoint_every_steps=250,
        hyperparameters={"lr": "0.1", "amp": "true", "name": "x y"},
        inputs={"train": "s3://b/data/train", "val_2": "s3://b/data/val"},
    )
    assert back.resumed and back.checkpoint_dir is None and back.output_dir is None
    assert env["WANDB_MODE"] == "offline"  # the job's own variables come along, after the contract
    assert all(key.startswith(jobenv.PREFIX) for key in list(env)[:-1])


def test_optional_fields_are_left_out_and_read_as_defaults() -> None:
    job = _job(inputs={}, hyperparameters={}, checkpoint={})
    env = jobenv.build(job, CTX, "acme", 30)
    assert jobenv.CHECKPOINT_EVERY_STEPS not in env and jobenv.CHECKPOINT_INTERVAL not in env
    back = jobenv.read(env, known=[])
    assert (back.checkpoint_interval, back.checkpoint_every_steps) == (jobenv.DEFAULT_INTERVAL, None)
    assert (back.hyperparameters, back.inputs) == ({}, {})


def test_overrides_the_checkpoint_dir_and_what_the_command_binds(tmp_path: Path) -> None:
    env = jobenv.build(
        _job(),
        CTX,
        "acme",
        30,
        checkpoint_uri="gs://b/ckpt",
        checkpoint_dir=str(tmp_path / "mounted"),
        output_uri="gs://b/out",
        inputs={"train": "file:///data/train"},
        in_command=[jobenv.OUTPUT_URI],
    )
    assert jobenv.OUTPUT_URI not in env
    assert env[jobenv.input_var("train")] == "file:///data/train" and "MULTISPOT_INPUT_VAL_2" not in env
    back = jobenv.read(env, known=[])
    assert back.checkpoint_uri == (tmp_path / "mounted").as_uri()  # the folder wins over the URI
    assert back.checkpoint_dir == tmp_path / "mounted"
    assert back.output_uri is None  # a provider named: no ./outputs guess


def test_checkpoint_dir_decodes_the_file_uri(tmp_path: Path) -> None:
    folder = tmp_path / "with space"
    back = jobenv.read({jobenv.CHECKPOINT_URI: folder.as_uri()}, known=[])
    assert back.checkpoint_dir == folder
    assert jobenv.read({}, known=[]).checkpoint_dir == (tmp_path / "checkpoints").resolve()


# --------------------------------------------------------------------------- the services, as installed


def test_sagemaker_from_its_own_variables() -> None:
    env = jobenv.read(
        {
            "TRAINING_JOB_NAME": "sm-1",
            "SM_MODEL_DIR": "/opt/ml/model",
            "SM_HPS": '{"batch": 32}',
            "SM_HOSTS": '["algo-2", "algo-1", "algo-3"]',
            "SM_CURRENT_HOST": "algo-2",
        }
    )
    assert (env.provider, env.job_id, env.notice_seconds) == ("sagemaker", "sm-1", 120.0)
    assert env.checkpoint_uri == "file:///opt/ml/checkpoints"
    assert env.checkpoint_dir == Path("/opt/ml/checkpoints")
    assert env.output_uri == "file:///opt/ml/model"
    assert (env.rank, env.world_size) == (1, 3)
    assert env.hyperparameters == {"batch": "32"}


def test_vertex_from_its_own_variables(tmp_path: Path) -> None:
    (tmp_path / "gcs" / "b" / "ckpt").mkdir(parents=True)
    spec = {
        "cluster": {"workerpool0": ["h0:1"], "workerpool1": ["h1:1", "h2:1"], "workerpool2": ["r:1"]},
        "task": {"type": "workerpool1", "index": 1},
    }
    env = jobenv.read(
        {
            "CLOUD_ML_JOB_ID": "987",
            "AIP_CHECKPOINT_DIR": "gs://b/ckpt",
            "AIP_MODEL_DIR": "gs://b/model",
            "CLUSTER_SPEC": json.dumps(spec),
            "MULTISPOT_GCS_FUSE_ROOT": str(tmp_path / "gcs"),
        }
    )
    assert (env.provider, env.job_id, env.notice_seconds) == ("vertex", "987", 30.0)
    assert env.checkpoint_dir == tmp_path / "gcs" / "b" / "ckpt"  # the FUSE mount, at disk speed
    assert env.output_uri == "gs://b/model"
    assert (env.rank, env.world_size) == (2, 3)  # the reduction server is not a training rank


def test_azureml_from_its_own_variables(tmp_path: Path) -> None:
    env = jobenv.read(
        {
            "AZUREML_RUN_ID": "run-7",
            "AZURE_ML_OUTPUT_multispot_checkpoints": str(tmp_path / "ck"),
            "AZURE_ML_OUTPUT_outputs": str(tmp_path / "out"),
            "OMPI_COMM_WORLD_RANK": "1",
            "OMPI_COMM_WORLD_SIZE": "2",
        }
    )
    assert (env.provider, env.job_id, env.notice_seconds) == ("azureml", "run-7", 30.0)
    assert env.checkpoint_dir == tmp_path / "ck" and env.output_dir == tmp_path / "out"
    assert (env.rank, env.world_size) == (1, 2)


def test_torchrun_rank_wins_over_the_service_node_rank() -> None:
    env = jobenv.read({"SM_HOSTS": '["algo-1", "algo-2"]', "SM_CURRENT_HOST": "algo-2", "RANK": "5"})
    assert (env.rank, env.world_size) == (5, 2)


def test_named_provider_gets_its_service_defaults_without_markers() -> None:
    env = jobenv.read({jobenv.PROVIDER: "sagemaker", jobenv.CHECKPOINT_URI: "s3://b/c"})
    assert env.notice_seconds == 120.0 and env.checkpoint_uri == "s3://b/c"
    assert env.output_uri == "file:///opt/ml/model"


def test_the_first_party_services_are_entry_points() -> None:
    names = {e.name for e in jobenv.job_environments()}
    assert {"sagemaker", "vertex", "azureml"} <= names


# --------------------------------------------------------------------------- a third party


class AcmeEnvironment:
    name = "acme"
    notice_seconds = 7.0

    def recognises(self, environ: Mapping[str, str]) -> bool:
        return "ACME_JOB" in environ

    def describe(self, environ: Mapping[str, str]) -> jobenv.ServiceEnv:
        return jobenv.ServiceEnv(
            "acme", self.notice_seconds, job_id=environ.get("ACME_JOB"), checkpoint_uri="acme://store/ck"
        )


@pytest.fixture
def acme(monkeypatch: pytest.MonkeyPatch) -> None:
    module = types.ModuleType("acme_multispot_jobenv")
    module.ENVIRONMENT = AcmeEnvironment()  # type: ignore[attr-defined]
    module.Nothing = object  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, module.__name__, module)
    group = jobenv.GROUP
    entries = [
        EntryPoint("acme", f"{module.__name__}:ENVIRONMENT", group),
        EntryPoint("broken", "acme_no_such_module:ENVIRONMENT", group),
        EntryPoint("shapeless", f"{module.__name__}:Nothing", group),
    ]
    monkeypatch.setattr(
        jobenv, "entry_points", lambda group: entries if group == jobenv.GROUP else pytest.fail(group)
    )


@pytest.mark.usefixtures("acme")
def test_a_third_party_service_is_recognised_like_the_first_party_ones() -> None:
    with pytest.warns(UserWarning) as caught:
        env = jobenv.read({"ACME_JOB": "a-1"})
    assert (env.provider, env.job_id, env.notice_seconds) == ("acme", "a-1", 7.0)
    assert env.checkpoint_uri == "acme://store/ck"
    warned = " ".join(str(w.message) for w in caught)
    assert "'broken'" in warned and "'shapeless'" in warned  # left out, and said so


@pytest.mark.usefixtures("acme")
def test_a_third_party_named_by_multispot_provider_supplies_its_notice() -> None:
    with pytest.warns(UserWarning):
        env = jobenv.read({jobenv.PROVIDER: "acme", jobenv.JOB_ID: "j"})
    assert (env.provider, env.job_id, env.notice_seconds) == ("acme", "j", 7.0)


@pytest.mark.usefixtures("acme")
def test_without_a_recognised_service_it_is_a_manual_run(tmp_path: Path) -> None:
    with pytest.warns(UserWarning):
        env = jobenv.read({})
    assert env.provider == jobenv.MANUAL and env.notice_seconds == jobenv.DEFAULT_NOTICE_SECONDS
    assert env.output_dir == (tmp_path / "outputs").resolve()


def test_checkpoint_transfer_settings_reach_the_job() -> None:
    job = _job(checkpoint={"transfer": {"part_size_mib": 64, "concurrency": 16}})
    back = jobenv.read(jobenv.build(job, CTX, "acme", 30), known=[])
    assert back.checkpoint_transfer == {"part_size_mib": 64, "concurrency": 16, "read_ahead_mib": 256}
    assert jobenv.read(jobenv.build(_job(), CTX, "acme", 30), known=[]).checkpoint_transfer == {}


@pytest.mark.parametrize("raw", ["[64]", '{"concurrency": "8"}', '{"concurrency": true}', "{"])
def test_a_bad_transfer_variable_is_named(raw: str) -> None:
    with pytest.raises(ValueError, match=jobenv.CHECKPOINT_TRANSFER):
        jobenv.read({jobenv.CHECKPOINT_TRANSFER: raw}, known=[])
