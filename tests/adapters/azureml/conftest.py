"""Fixtures for the Azure ML adapter: Azurite (npm, installed by `make test`) and the HTTPS fake."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest

pytest.importorskip("azure.ai.ml", reason="the azureml extra is not installed: pip install -e '.[dev]'")

from fake_azure import Azurite, FakeAzureML
from helpers.azureml_setup import AZURITE_BIN, RESOURCE_GROUP, SUBSCRIPTION, WORKSPACE


@pytest.fixture(autouse=True)
def _sdk_cloud_env() -> Iterator[None]:
    """MLClient(cloud=...) sets AZUREML_CURRENT_CLOUD in os.environ; keep it from leaking."""
    saved = os.environ.get("AZUREML_CURRENT_CLOUD")
    yield
    if saved is None:
        os.environ.pop("AZUREML_CURRENT_CLOUD", None)
    else:
        os.environ["AZUREML_CURRENT_CLOUD"] = saved


@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    if not AZURITE_BIN.exists():
        if shutil.which("npm") is None:
            pytest.skip("npm is not installed, so Azurite (the Azure Blob emulator) cannot be installed")
        pytest.fail(f"Azurite is missing at {AZURITE_BIN}: run `make test` (it installs it with npm)")
    server = Azurite(AZURITE_BIN)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def fake_aml(azurite: Azurite, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeAzureML]:
    from azure.ai.ml.operations import _job_ops_helper

    fake = FakeAzureML(azurite, tmp_path_factory.mktemp("fake-aml"), SUBSCRIPTION, RESOURCE_GROUP, WORKSPACE)
    saved = _job_ops_helper._wait_before_polling
    _job_ops_helper._wait_before_polling = lambda seconds: 0  # the SDK sleeps between log polls
    yield fake
    _job_ops_helper._wait_before_polling = saved
    fake.stop()
