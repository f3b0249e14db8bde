"""SageMaker seen from inside a training job, without boto3 or the SageMaker SDK.

Registered under ``multispot.job_environments`` (name ``sagemaker``). The variables are those the
SageMaker training toolkit documents for every training container (TRAINING_JOB_NAME, SM_MODEL_DIR,
SM_HPS, SM_HOSTS, SM_CURRENT_HOST); the checkpoint folder is CheckpointConfig.LocalPath's default.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from multispot.jobenv import ServiceEnv, file_uri

NAME = "sagemaker"
# StopTrainingJob: SIGTERM, then SIGKILL after 120 s; the same window applies to a spot reclaim.
NOTICE_SECONDS = 120.0
CHECKPOINT_LOCAL_PATH = "/opt/ml/checkpoints"  # synced with CheckpointConfig.S3Uri by the service
MODEL_DIR = "/opt/ml/model"  # uploaded to OutputDataConfig.S3OutputPath at the end
MARKERS = ("TRAINING_JOB_NAME", "SM_MODEL_DIR", "SM_CURRENT_HOST", "SM_HPS", "SM_TRAINING_ENV")


def _json(text: str | None) -> object:
    try:
        return json.loads(text) if text else None
    except json.JSONDecodeError:
        return None


class SageMakerJobEnvironment:
    name = NAME
    notice_seconds = NOTICE_SECONDS

    def recognises(self, environ: Mapping[str, str]) -> bool:
        return any(key in environ for key in MARKERS)

    def describe(self, environ: Mapping[str, str]) -> ServiceEnv:
        hosts, current = _json(environ.get("SM_HOSTS")), environ.get("SM_CURRENT_HOST")
        rank = world = None
        if isinstance(hosts, list) and current in hosts:  # node rank: hosts sorted, as the entry does
            rank, world = sorted(str(h) for h in hosts).index(str(current)), len(hosts)
        hyper = _json(environ.get("SM_HPS"))
        return ServiceEnv(
            provider=NAME,
            notice_seconds=NOTICE_SECONDS,
            job_id=environ.get("TRAINING_JOB_NAME"),
            checkpoint_uri=file_uri(CHECKPOINT_LOCAL_PATH),
            output_uri=file_uri(environ.get("SM_MODEL_DIR") or MODEL_DIR),
            rank=rank,
            world_size=world,
            hyperparameters=hyper if isinstance(hyper, dict) else None,
        )


ENVIRONMENT = SageMakerJobEnvironment()
