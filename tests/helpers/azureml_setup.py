"""The Azure ML adapter tests' workspace names, a fake credential and a provider on the fake."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
AZURITE_BIN = REPO / ".venv" / "azurite" / "node_modules" / ".bin" / "azurite-blob"
SUBSCRIPTION, RESOURCE_GROUP, WORKSPACE = "00000000-0000-0000-0000-000000000000", "rg-test", "ws-test"


class FakeCredential:
    """Any object with get_token() is a credential to the SDK; the fake accepts any bearer token."""

    def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        from azure.core.credentials import AccessToken

        return AccessToken("fake-token", int(time.time()) + 3600)


def make_provider(fake: Any) -> Any:
    """An AzureMLProvider talking to ``fake`` (a fake_azure.FakeAzureML)."""
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
