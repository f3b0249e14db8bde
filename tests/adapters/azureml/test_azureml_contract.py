"""The provider contract against the real MLClient, talking HTTPS to the fake, code and data in Azurite."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from fake_azure import OTHER_CONTAINER, OTHER_DATASTORE, WORKSPACE_CONTAINER, Azurite, FakeAzureML
from helpers.azureml_setup import azure_options, make_provider
from multispot_azureml import translate as t

from multispot import api, registry
from multispot.errors import ValidationFailed
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


WRITE = "import os; open(os.environ['MULTISPOT_CHECKPOINT_DIR'] + '/hello.txt', 'w').write('hi')"


def _blob_exists(harness: AzureHarness, container: str, name: str) -> bool:
    return bool(harness.fake.blobs.get_blob_client(container, name).exists())


def test_default_checkpoint_uri_opens_with_fsspec(harness: AzureHarness, tmp_path: Path) -> None:
    """The datastore is resolved to its container and account: a URI adlfs opens (Azurite here)."""
    import fsspec

    job = harness.job(tmp_path, [])
    uri = harness.provider.default_uri("checkpoints", "dry-1", job)
    assert (
        uri
        == f"az://{WORKSPACE_CONTAINER}@devstoreaccount1.blob.core.windows.net/multispot/dry-1/checkpoints"
    )
    with fsspec.open(f"{uri}/probe.txt", "wb") as f:
        f.write(b"opened")
    assert _blob_exists(harness, WORKSPACE_CONTAINER, "multispot/dry-1/checkpoints/probe.txt")
    printed = api.dry_run(job, provider="azureml")["request"]["properties"]["outputs"]
    assert printed[t.CHECKPOINT_OUTPUT]["uri"].endswith("/paths/multispot/contract-dryrun/checkpoints")


def test_another_container_is_mounted_through_its_own_datastore(
    harness: AzureHarness, tmp_path: Path
) -> None:
    prefix = f"{harness.prefix}/other"
    job = harness.job(
        tmp_path, [], command=["python", "-c", WRITE], checkpoint={"uri": f"az://{OTHER_CONTAINER}/{prefix}"}
    )
    placement = Placement("azureml", "spot", "eastus", "Standard_D2s_v3")
    ctx = LaunchContext(
        f"other-{uuid.uuid4().hex[:8]}", 1, f"az://{OTHER_CONTAINER}/{prefix}", harness.storage(tmp_path)[1]
    )
    handle = harness.provider.submit(job, placement, ctx)
    body = harness.fake.jobs[handle.id].body["properties"]["outputs"][t.CHECKPOINT_OUTPUT]
    assert body["uri"] == f"azureml://datastores/{OTHER_DATASTORE}/paths/{prefix}"
    deadline = time.monotonic() + 120
    while not harness.provider.status(handle).state.terminal:
        assert time.monotonic() < deadline
        time.sleep(0.3)
    assert harness.provider.status(handle).state is JobState.SUCCEEDED
    assert _blob_exists(harness, OTHER_CONTAINER, f"{prefix}/hello.txt")
    assert not _blob_exists(harness, WORKSPACE_CONTAINER, f"{prefix}/hello.txt")  # never rewritten


def test_a_container_without_a_datastore_is_refused_before_upload(
    harness: AzureHarness, tmp_path: Path
) -> None:
    job = harness.job(tmp_path, [], checkpoint={"uri": "az://nobody-has-this/x"})
    placement = Placement("azureml", "spot", "eastus", "Standard_D2s_v3")
    ctx = LaunchContext("nods-1", 1, "az://nobody-has-this/x", harness.storage(tmp_path)[1])
    before = len(harness.fake.requests)
    with pytest.raises(ValidationFailed) as info:
        harness.provider.submit(job, placement, ctx)
    assert [p.path for p in info.value.problems] == ["checkpoint.uri"]
    assert not [r for r in harness.fake.requests[before:] if "/codes/" in r[1] or r[0] == "PUT"]


def test_cost_tag_follows_the_job_on_a_reused_cluster(harness: AzureHarness, tmp_path: Path) -> None:
    opts = {"compute": "lowpri-reused", "create_compute": True, "cost_filter": "tag"}
    job = harness.job(tmp_path, [], command=["python", "-c", "pass"], provider_options={"azureml": opts})
    placement = Placement("azureml", "spot", "eastus", "Standard_D2s_v3")
    out = harness.storage(tmp_path)
    for job_id in ("first-job", "second-job"):
        harness.provider.submit(job, placement, LaunchContext(job_id, 1, *out))
        assert harness.fake.computes["lowpri-reused"]["tags"][t.JOB_ID_TAG] == job_id
