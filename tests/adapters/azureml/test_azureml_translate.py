"""Pure translation, Azure ML's own part: the REST model's fields, compute tiers, validation, states.

The golden REST bodies (parsed into the SDK's REST model) run in
``tests/adapters/test_translate_generic.py`` from the shape this module exposes: CASES, ctx,
strict, environment_of, native, UNKNOWN_STATE.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from multispot_azureml import translate as t
from multispot_azureml.provider import AzureMLProvider

from multispot.errors import JobSpecError, UnknownProviderState, ValidationFailed
from multispot.job import Job
from multispot.provider import LaunchContext
from multispot.status import JobState, Placement

REPO = Path(__file__).resolve().parents[3]
DRY_RUN = ("--provider", "azureml", "--dry-run", "--output", "json")
OPTS = {"subscription_id": "sub", "resource_group": "rg", "workspace": "ws"}
CTX = LaunchContext("job-1", 2, "az://cont/ms/ckpt", "azureml://datastores/workspaceblobstore/paths/ms/out")

FIELDS: dict[str, dict[str, Any]] = {
    "serverless-spot": {
        "resources": {"instance_type": "Standard_NC6s_v3"},
        "inputs": {"train": "az://cont/data/train"},
        "limits": {"max_runtime": "2h"},
        "provider_options": {"azureml": {**OPTS, "storage": "acct/cont"}},
    },
    "cluster-multinode": {
        "resources": {"instance_type": "Standard_NC24ads_A100_v4", "accelerator": "A100:1", "nodes": 2},
        "image": "mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04",
        "provider_options": {"azureml": {**OPTS, "compute": "gpu-lowpri", "datastore": "mystore"}},
        "checkpoint": {"every_steps": 100},
    },
}


def ctx() -> LaunchContext:
    return CTX


def _case(name: str) -> tuple[Job, Placement]:
    job = _job(Path(__file__).parent, **FIELDS[name])
    return job, Placement("azureml", "spot", "eastus", job.resources.instance_type, job.resources.nodes)


CASES = {name: (lambda name=name: _case(name)) for name in FIELDS}
UNKNOWN_STATE = "Unknown"


def native(key: str) -> tuple[str, bool]:
    return key, False  # no preemption evidence: no refinement of Failed


def environment_of(request: dict[str, Any]) -> dict[str, str]:
    return dict(request["properties"]["environmentVariables"])


def _job(tmp_path: Path, **fields: Any) -> Job:
    data: dict[str, Any] = {
        "name": "train",
        "command": ["python", "train.py", "--lr", "0.1"],
        "hyperparameters": {"epochs": 3, "amp": True},
        "tags": {"team": "ml"},
        "provider_options": {"azureml": OPTS},
    }
    data.update(fields)
    return Job.validate_data(data, base_dir=tmp_path)


def strict(body: dict[str, Any]) -> None:
    _parse(body)


def _parse(body: dict[str, Any]) -> Any:
    """The SDK's own REST model for PUT jobs/{name} (the type ``_to_rest_object`` returns)."""
    from azure.ai.ml._restclient.arm_ml_service.models import JobBase

    model = JobBase(body)
    assert model.as_dict() == body, "the body has fields the REST model does not know"
    return model


@pytest.mark.parametrize("case", sorted(CASES))
def test_rest_model_fields(case: str) -> None:
    job, placement = CASES[case]()
    model = _parse(t.render(job, placement, CTX))
    props = model.properties
    assert props.outputs[t.CHECKPOINT_OUTPUT].mode == "ReadWriteMount"
    assert f"${{{{outputs.{t.CHECKPOINT_OUTPUT}}}}}" in props.command
    assert props.environment_variables["MULTISPOT_ATTEMPT"] == "2"
    assert props.tags[t.JOB_ID_TAG] == "job-1" and props.tags["team"] == "ml"
    if case == "serverless-spot":
        assert props.queue_settings.job_tier == "Spot" and props.compute_id is None
        assert props.resources.instance_type == "Standard_NC6s_v3"
        assert (
            props.outputs[t.CHECKPOINT_OUTPUT].uri == "azureml://datastores/workspaceblobstore/paths/ms/ckpt"
        )
        assert props.limits.timeout.total_seconds() == 7200
    else:
        assert props.compute_id == "gpu-lowpri" and props.resources.instance_count == 2
        assert props.distribution.distribution_type == "PyTorch"
        # a dry run cannot know which datastore holds container "cont": shown unresolved
        assert props.outputs[t.CHECKPOINT_OUTPUT].uri == (
            "azureml://datastores/<datastore on container cont, found at submit>/paths/ms/ckpt"
        )


def test_on_demand_uses_the_standard_tier_or_the_dedicated_cluster(tmp_path: Path) -> None:
    provider = AzureMLProvider()
    on_demand = Placement("azureml", "on-demand", "eastus", "Standard_NC6s_v3")
    job = _job(tmp_path, resources={"instance_type": "Standard_NC6s_v3"})
    assert provider.render(job, on_demand, CTX)["properties"]["queueSettings"]["jobTier"] == "Standard"
    job = _job(tmp_path, provider_options={"azureml": {**OPTS, "on_demand_compute": "dedicated"}})
    props = provider.render(job, on_demand, CTX)["properties"]
    assert props["computeId"] == "dedicated" and "queueSettings" not in props


def test_validation_names_fields(tmp_path: Path) -> None:
    job = _job(
        tmp_path,
        checkpoint={"uri": "s3://bucket/ckpt"},
        inputs={"data": "gs://bucket/data"},
        provider_options={"azureml": {**OPTS, "cost_filter": "label", "create_compute": True}},
    )
    with pytest.raises(ValidationFailed) as info:
        AzureMLProvider().validate(job, Placement("azureml", "spot", "eastus", None))
    paths = {path for path, *_ in info.value.problems}
    assert paths == {
        "checkpoint.uri",
        "inputs.data",
        "provider_options.azureml.cost_filter",
        "provider_options.azureml.create_compute",
        "resources",
    }


def test_state_table_and_preemption_evidence() -> None:
    assert t.native_state("Running", False) is JobState.RUNNING
    assert t.native_state("Failed", False) is JobState.FAILED
    assert t.native_state("Failed", True) is JobState.PREEMPTED
    assert t.native_state("Completed", True) is JobState.SUCCEEDED
    with pytest.raises(UnknownProviderState):
        t.native_state("Unknown", False)
    details = {
        "error": {"error": {"code": "ServiceError", "message": "Low priority node was preempted"}},
        "warnings": [{"message": "node preempted, requeued"}, {"message": "slow disk"}],
    }
    assert t.preemption_evidence(details) == (True, 1)
    assert t.preemption_evidence({"error": {"error": {"message": "exit code 3"}}}) == (False, 0)
    span = {"startTimeUtc": "2026-11-23T10:00:00Z", "endTimeUtc": "2026-11-23T10:30:00.5Z"}
    assert t.runtime_seconds(span, 0.0) == 1800.5
    assert t.runtime_seconds({}, 0.0) == 0.0


def test_dry_run_cli_prints_the_rest_body_without_credentials(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AZURE", "MSI_", "IDENTITY_"))}
    env["MULTISPOT_HOME"] = str(tmp_path)
    out = subprocess.run(
        [sys.executable, "-m", "multispot.cli", "submit", "examples/pytorch/azureml.yaml", *DRY_RUN],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    printed = json.loads(out.stdout)
    assert printed["provider"] == "azureml"
    props = _parse(printed["request"]).properties
    assert props.queue_settings.job_tier == "Spot"
    assert props.outputs[t.CHECKPOINT_OUTPUT].mode == "ReadWriteMount"
    assert props.environment_variables["MULTISPOT_PROVIDER"] == "azureml"


def test_blob_uris_mount_through_the_datastore_on_their_own_container() -> None:
    stores = [t.Datastore("workspaceblobstore", "acct", "main"), t.Datastore("other", "acct", "data")]
    assert t.datastore_uri("az://main/x/y", stores) == "azureml://datastores/workspaceblobstore/paths/x/y"
    assert t.datastore_uri("az://data/x", stores) == "azureml://datastores/other/paths/x"
    account_uri = "az://data@acct.blob.core.windows.net/x"
    assert t.datastore_uri(account_uri, stores) == "azureml://datastores/other/paths/x"
    with pytest.raises(t.NoDatastore, match="container data in account elsewhere"):
        t.datastore_uri("abfs://data@elsewhere.dfs.core.windows.net/x", stores)
    with pytest.raises(t.NoDatastore, match="container nowhere"):
        t.datastore_uri("az://nowhere/x", stores)  # never rewritten onto workspaceblobstore's


def test_install_modes_are_validated(tmp_path: Path) -> None:
    placement = Placement("azureml", "spot", "eastus", "Standard_NC6s_v3")
    for install, image, field_ok in (
        ("multispot==0.1.0", None, False),  # a pip spec: no index to install it from
        ("image", None, False),  # the default environment has no multispot
        ("image", "azureml:with-multispot:1", True),
        ("shipped", None, True),
    ):
        fields: dict[str, Any] = {
            "resources": {"instance_type": "Standard_NC6s_v3"},
            "provider_options": {"azureml": {**OPTS, "install": install}},
        }
        if image:
            fields["image"] = image
        paths = {p for p, _ in t.problems(_job(tmp_path, **fields), placement)}
        assert ("provider_options.azureml.install" not in paths) is field_ok, (install, paths)
    job = _job(
        tmp_path,
        image="azureml:with-multispot:1",
        resources={"instance_type": "Standard_NC6s_v3"},
        provider_options={"azureml": {**OPTS, "install": "image"}},
    )
    props = t.render(job, placement, CTX)["properties"]
    assert "multispot-wheels" not in props["command"] and "codeId" not in props


# Held-out style: specs at and just past each limit; past it, the field path (before any upload:
# validate runs first in submit); at it, a request within every limit.
LIMIT_CASES: list[tuple[str, dict[str, Any], dict[str, Any], str]] = [
    # (the job name: the Job spec caps it at 40 characters, far inside Azure ML's 255)
    (
        "experiment",
        {"provider_options": {"azureml": {**OPTS, "experiment": "e" * 255}}},
        {"provider_options": {"azureml": {**OPTS, "experiment": "bad name!"}}},
        "provider_options.azureml.experiment",
    ),
    (
        "compute",
        {"provider_options": {"azureml": {**OPTS, "compute": "c" * 16}}},
        {"provider_options": {"azureml": {**OPTS, "compute": "c" * 17}}},
        "provider_options.azureml.compute",
    ),
    (
        "tag count",
        {"tags": {f"t{i}": "v" for i in range(48)}},
        {"tags": {f"t{i}": "v" for i in range(49)}},
        "tags",
    ),
    ("tag value", {"tags": {"k": "v" * 256}}, {"tags": {"k": "v" * 257}}, "tags.k"),
    ("env value", {"env": {"BIG": "x" * 131_000}}, {"env": {"BIG": "x" * 131_100}}, "env.BIG"),
    (
        "hyperparameters",  # multispot's own variable: MULTISPOT_HYPERPARAMETERS
        {"hyperparameters": {f"h{i}": "x" * 1000 for i in range(120)}},
        {"hyperparameters": {f"h{i}": "x" * 1000 for i in range(140)}},
        "hyperparameters",
    ),
    (
        "command",
        {"command": ["python", "train.py", "x" * 120_000]},
        {"command": ["python", "train.py", "x" * 131_072]},
        "command",
    ),
    (
        "all variables",
        {"env": {f"V{i}": "x" * 100_000 for i in range(19)}},
        {"env": {f"V{i}": "x" * 100_000 for i in range(21)}},
        "env",
    ),
]


@pytest.mark.parametrize(("label", "within", "past", "path"), LIMIT_CASES, ids=[c[0] for c in LIMIT_CASES])
def test_service_limits_on_the_rendered_request(
    tmp_path: Path, label: str, within: dict[str, Any], past: dict[str, Any], path: str
) -> None:
    placement = Placement("azureml", "spot", "eastus", "Standard_NC6s_v3")
    base = {"resources": {"instance_type": "Standard_NC6s_v3"}}
    ok = _job(tmp_path, **{**base, **within})
    assert t.problems(ok, placement) == [], label
    strict(t.render(ok, placement, CTX))  # and the service's own model takes it
    try:  # the Job spec holds some limits itself (a tag value); either way, with the field path
        AzureMLProvider().validate(_job(tmp_path, **{**base, **past}), placement)
    except ValidationFailed as exc:
        assert path in {p.path for p in exc.problems}, exc.problems
    except JobSpecError as exc:
        assert f"{path}:" in str(exc), str(exc)
    else:
        raise AssertionError(f"{label}: past the limit, accepted")
