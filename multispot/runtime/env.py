"""What the running job knows about itself, from MULTISPOT_* or the service's own variables.

A job launched by multispot gets the MULTISPOT_* contract; a script started by hand on a
service (or on a laptop) still works: the service's own variables are recognised, and with
none at all checkpoints go to ``./checkpoints``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

# Seconds between the preemption notice and the hard stop, per service (public docs, 2026).
NOTICE_SECONDS = {
    "sagemaker": 120.0,
    "aws": 120.0,
    "vertex": 30.0,
    "gcp": 30.0,
    "azureml": 30.0,
    "azure": 30.0,
}
DEFAULT_INTERVAL = 600.0
DEFAULT_KEEP = 3


@dataclass(frozen=True)
class JobEnv:
    job_id: str | None
    attempt: int
    provider: str  # "local", "sagemaker", "vertex", "azureml", or "manual"
    checkpoint_uri: str  # where the contract lives (a file:// URI when the service mounts/syncs a dir)
    output_uri: str | None
    notice_seconds: float
    checkpoint_interval: float = DEFAULT_INTERVAL
    checkpoint_keep: int = DEFAULT_KEEP
    checkpoint_every_steps: int | None = None
    rank: int = 0
    world_size: int = 1
    hyperparameters: dict[str, str] = field(default_factory=dict)
    inputs: dict[str, str] = field(
        default_factory=dict
    )  # name (lowercase) -> URI, from MULTISPOT_INPUT_<NAME>

    @property
    def output_dir(self) -> Path | None:
        """The output location as a local folder, when it is one."""
        if self.output_uri and self.output_uri.startswith("file://"):
            return Path(self.output_uri[len("file://") :])
        return None

    @property
    def resumed(self) -> bool:
        return self.attempt > 1


def _as_file_uri(path: str) -> str:
    return Path(path).expanduser().resolve().as_uri()


def detect(environ: Mapping[str, str] | None = None) -> JobEnv:
    """Read the environment of the running job."""
    env = os.environ if environ is None else environ
    provider = env.get("MULTISPOT_PROVIDER") or _service(env)
    # A local dir the service syncs or mounts wins over the URI: writes go at local-disk speed.
    if env.get("MULTISPOT_CHECKPOINT_DIR"):
        ckpt = _as_file_uri(env["MULTISPOT_CHECKPOINT_DIR"])
    elif env.get("MULTISPOT_CHECKPOINT_URI"):
        ckpt = env["MULTISPOT_CHECKPOINT_URI"]
    elif provider == "sagemaker":
        ckpt = _as_file_uri("/opt/ml/checkpoints")
    elif env.get("AIP_CHECKPOINT_DIR"):
        ckpt = _gcs_fuse(env["AIP_CHECKPOINT_DIR"], env)
    elif provider == "azureml" and _azureml_output(env, "checkpoints"):
        ckpt = _as_file_uri(_azureml_output(env, "checkpoints"))
    else:
        ckpt = _as_file_uri("checkpoints")
    output = env.get("MULTISPOT_OUTPUT_URI")
    if output is None and provider == "sagemaker":
        output = _as_file_uri(env.get("SM_MODEL_DIR", "/opt/ml/model"))
    elif output is None and env.get("AIP_MODEL_DIR"):
        output = env["AIP_MODEL_DIR"]
    elif output is None and provider == "manual":
        output = _as_file_uri("outputs")
    try:
        hyper = json.loads(env.get("MULTISPOT_HYPERPARAMETERS") or env.get("SM_HPS") or "{}")
    except json.JSONDecodeError:
        hyper = {}
    if not isinstance(hyper, dict):  # valid JSON but not an object: ignore it like unreadable JSON
        hyper = {}
    return JobEnv(
        job_id=env.get("MULTISPOT_JOB_ID")
        or env.get("TRAINING_JOB_NAME")
        or env.get("CLOUD_ML_JOB_ID")
        or env.get("AZUREML_RUN_ID"),
        attempt=int(env.get("MULTISPOT_ATTEMPT", "1")),
        provider=provider,
        checkpoint_uri=ckpt,
        output_uri=output,
        notice_seconds=float(env.get("MULTISPOT_NOTICE_SECONDS") or NOTICE_SECONDS.get(provider, 30.0)),
        checkpoint_interval=float(env.get("MULTISPOT_CHECKPOINT_INTERVAL") or DEFAULT_INTERVAL),
        checkpoint_keep=int(env.get("MULTISPOT_CHECKPOINT_KEEP") or DEFAULT_KEEP),
        checkpoint_every_steps=int(env["MULTISPOT_CHECKPOINT_EVERY_STEPS"])
        if env.get("MULTISPOT_CHECKPOINT_EVERY_STEPS")
        else None,
        rank=int(env.get("RANK", "0")),
        world_size=int(env.get("WORLD_SIZE", "1")),
        hyperparameters={str(k): str(v) for k, v in dict(hyper).items()},
        inputs={
            key[len("MULTISPOT_INPUT_") :].lower(): value
            for key, value in env.items()
            if key.startswith("MULTISPOT_INPUT_")
        },
    )


def _azureml_output(env: Mapping[str, str], name: str) -> str:
    """The mount path Azure ML gives a job's output ``name`` (AZURE_ML_OUTPUT_<name>), or ''."""
    return env.get(f"AZURE_ML_OUTPUT_multispot_{name}") or env.get(f"AZURE_ML_OUTPUT_{name}") or ""


def _gcs_fuse(uri: str, env: Mapping[str, str]) -> str:
    """Vertex mounts buckets with Cloud Storage FUSE: gs://b/p is /gcs/b/p when the mount is there."""
    root = Path(env.get("MULTISPOT_GCS_FUSE_ROOT", "/gcs"))
    if uri.startswith("gs://") and root.is_dir():
        return _as_file_uri(str(root / uri[len("gs://") :]))
    return uri


def _service(env: Mapping[str, str]) -> str:
    if "TRAINING_JOB_NAME" in env or "SM_MODEL_DIR" in env:
        return "sagemaker"
    if "CLOUD_ML_JOB_ID" in env or "AIP_MODEL_DIR" in env:
        return "vertex"
    if any(key.startswith("AZUREML_") for key in env):
        return "azureml"
    return "manual"
