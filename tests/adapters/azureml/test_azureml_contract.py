"""The provider contract against the real MLClient, talking HTTPS to the fake, code and data in Azurite."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from fake_azure import WORKSPACE_CONTAINER, Azurite, FakeAzureML
from helpers.azureml_setup import azure_options, make_provider

from multispot import registry
from multispot.job import Job
from multispot.provider import LaunchContext, Provider
from multispot.status import Handle, JobState, Placement
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


# --------------------------------------------------------------------------- beyond the contract

PROBE = (
    "import importlib.metadata as m, sys, multispot; "
    "print('probe', m.version('multispot'), multispot.__file__, sys.prefix, flush=True)"
)


def _run_to_end(harness: AzureHarness, job: Job, tmp_path: Path) -> tuple[JobState, str, Handle]:
    placement = Placement("azureml", "spot", "eastus", "Standard_D2s_v3")
    checkpoints, outputs = harness.storage(tmp_path)
    ctx = LaunchContext(f"probe-{uuid.uuid4().hex[:8]}", 1, checkpoints, outputs)
    handle = harness.provider.submit(job, placement, ctx)
    deadline = time.monotonic() + 120
    while not (status := harness.provider.status(handle)).state.terminal:
        assert time.monotonic() < deadline, status
        time.sleep(0.3)
    return status.state, "".join(harness.provider.logs(handle)), handle


def test_multispot_reaches_the_job_through_the_request(harness: AzureHarness, tmp_path: Path) -> None:
    """The fake's job runs in a fresh virtualenv without multispot: the shipped wheels are the
    only way in, and the command installs them offline from the code asset."""
    state, log, handle = _run_to_end(
        harness, harness.job(tmp_path, [], command=["python", "-c", PROBE]), tmp_path
    )
    assert state is JobState.SUCCEEDED, log
    [line] = [x for x in log.splitlines() if x.startswith("probe ")]
    _, version, module, prefix = line.split(" ")
    assert "+g" in version  # the content-hashed wheel built at submit, not the host's install
    root = harness.fake.jobs[handle.id].root
    assert module.startswith(str(root / "image")) and prefix == str(root / "image")
    code_ids = [
        b["properties"]["codeId"] for m, p, b in harness.fake.requests if m == "PUT" and "/jobs/" in p
    ]
    assert code_ids and all(code_ids)


def test_an_image_without_multispot_fails_as_the_service_would(harness: AzureHarness, tmp_path: Path) -> None:
    job = harness.job(
        tmp_path, [], command=["python", "-c", PROBE], provider_options={"azureml": {"install": "image"}}
    )
    state, log, _ = _run_to_end(harness, job, tmp_path)
    assert state is JobState.FAILED and "No module named 'multispot'" in log
