"""The provider contract against moto over HTTP, with the fake service running the jobs."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from helpers.sagemaker_setup import BUCKET, RECIPE_IMAGE, ROLE

from multispot import registry
from multispot.job import Job
from multispot.status import Handle
from multispot.testing.contract import *  # noqa: F403

pytestmark = pytest.mark.slow


class SageMakerHarness:
    timeout = 60.0

    def __init__(self, fake: Any) -> None:
        self.fake = fake
        self.provider = registry.get("sagemaker")  # what the controller uses too

    def job(self, tmp_path: Path, worker_args: list[str], **fields: Any) -> Job:
        options = {"role": ROLE, "bucket": BUCKET, "prefix": f"t-{uuid.uuid4().hex[:8]}"}
        extra = fields.pop("provider_options", None)
        if extra:
            options.update(extra["sagemaker"])
        data: dict[str, Any] = {
            "name": "contract",
            "command": ["python", "-m", "multispot.testing.worker", *worker_args],
            "resources": {"instance_type": "ml.m5.xlarge"},
            "image": RECIPE_IMAGE,  # the worker writes its result to s3:// (s3fs)
            "provider_options": {"sagemaker": options},
        }
        data.update(fields)
        return Job.validate_data(data, base_dir=tmp_path)

    def storage(self, tmp_path: Path) -> tuple[str, str]:
        key = uuid.uuid5(uuid.NAMESPACE_URL, str(tmp_path)).hex[:12]
        return f"s3://{BUCKET}/ckpt-{key}", f"s3://{BUCKET}/out-{key}"

    def preempt(self, handle: Handle) -> None:
        self.fake.signal(handle.id, "give_up")  # spot lost and not back within MaxWait


@pytest.fixture
def harness(aws: tuple[Any, str], home: Path) -> SageMakerHarness:
    return SageMakerHarness(aws[0])
