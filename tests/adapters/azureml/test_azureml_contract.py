"""The provider contract against the real MLClient, talking HTTPS to the fake, code and data in Azurite."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from fake_azure import WORKSPACE_CONTAINER, Azurite, FakeAzureML
from helpers.azureml_setup import azure_options, make_provider

from multispot import registry
from multispot.job import Job
from multispot.provider import Provider
from multispot.status import Handle
from multispot.testing.contract import *  # noqa: F403

pytestmark = pytest.mark.slow


class AzureHarness:
    timeout = 60.0

    def __init__(self, provider: Any, fake: FakeAzureML) -> None:
        self.provider, self.fake = provider, fake
        self.prefix = f"t-{uuid.uuid4().hex[:10]}"

    def job(self, tmp_path: Path, worker_args: list[str], **fields: Any) -> Job:
        source = tmp_path / "src"
        source.mkdir(exist_ok=True)
        (source / "README.txt").write_text("uploaded to Azurite as the job's code\n")
        options = {**azure_options(), **(fields.pop("provider_options", {}).get("azureml", {}))}
        data: dict[str, Any] = {
            "name": "contract",
            "command": ["python", "-m", "multispot.testing.worker", *worker_args],
            "source_dir": str(source),
            "resources": {"instance_type": "Standard_D2s_v3"},
            "provider_options": {"azureml": options},
        }
        data.update(fields)
        return Job.validate_data(data, base_dir=tmp_path)

    def storage(self, tmp_path: Path) -> tuple[str, str]:
        base = f"az://{WORKSPACE_CONTAINER}/{self.prefix}/{tmp_path.name}"
        return f"{base}/ckpt", f"{base}/out"

    def preempt(self, handle: Handle) -> None:
        self.fake.jobs[handle.id].preempt(notice=3.0)


@pytest.fixture
def harness(
    fake_aml: FakeAzureML, azurite: Azurite, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AzureHarness:
    monkeypatch.setenv("MULTISPOT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv(
        "AZURE_STORAGE_CONNECTION_STRING", azurite.connection_string
    )  # adlfs, here and in the job
    provider = make_provider(fake_aml)
    real_get = registry.get

    def get(name: str, **options: Any) -> Provider:
        return provider if name == "azureml" else real_get(name, **options)  # type: ignore[no-any-return]

    monkeypatch.setattr(registry, "get", get)
    fake_aml.requeue_on_preemption = False
    return AzureHarness(provider, fake_aml)
