"""Fixtures for the SageMaker adapter: one moto server (S3, SageMaker, Logs, Cost Explorer) per
session, on 127.0.0.1 and a free port, with the fake service that runs the jobs it is given."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers.sagemaker_setup import BUCKET


@pytest.fixture(scope="session")
def aws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[object, str]]:
    import boto3
    from fake_sagemaker import start

    saved = dict(os.environ)
    os.environ.update(
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_SESSION_TOKEN="testing",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_MAX_ATTEMPTS="1",  # moto's 500s are not retried four times
        AWS_EC2_METADATA_DISABLED="true",
    )
    os.environ.pop("AWS_PROFILE", None)
    server, fake, endpoint = start(tmp_path_factory.mktemp("sagemaker-service"))
    os.environ["AWS_ENDPOINT_URL"] = endpoint
    boto3.client("s3", region_name="us-east-1").create_bucket(Bucket=BUCKET)
    try:
        yield fake, endpoint
    finally:
        server.stop()
        os.environ.clear()
        os.environ.update(saved)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MULTISPOT_HOME", str(tmp_path / "home"))
    return tmp_path / "home"
