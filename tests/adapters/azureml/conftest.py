"""Fixtures for the Azure ML adapter: Azurite (npm, installed by `make test`) and the HTTPS fake."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("azure.ai.ml", reason="the azureml extra is not installed: pip install -e '.[dev]'")

from fake_azure import Azurite, FakeAzureML

REPO = Path(__file__).resolve().parents[3]
AZURITE_BIN = REPO / ".venv" / "azurite" / "node_modules" / ".bin" / "azurite-blob"
SUBSCRIPTION, RESOURCE_GROUP, WORKSPACE = "00000000-0000-0000-0000-000000000000", "rg-test", "ws-test"


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


class FakeCredential:
    """Any object with get_token() is a credential to the SDK; the fake accepts any bearer token."""

    def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        from azure.core.credentials import AccessToken

        return AccessToken("fake-token", int(time.time()) + 3600)


def make_provider(fake: FakeAzureML) -> Any:
    from multispot_azureml.provider import AzureMLProvider

    return AzureMLProvider(
        credential=FakeCredential(),
        cloud_metadata=fake.cloud_metadata(),
        connection_verify=str(fake.cert),
        management_url=fake.url,
    )


def azure_options(**extra: Any) -> dict[str, Any]:
    return {
        "subscription_id": SUBSCRIPTION,
        "resource_group": RESOURCE_GROUP,
        "workspace": WORKSPACE,
        "environment": "azureml:multispot-test-env:1",
        **extra,
    }
