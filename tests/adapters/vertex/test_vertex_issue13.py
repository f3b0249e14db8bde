"""What a first real run on Vertex needs: the list-filter grammar the service enforces, multispot
reaching a job that has no package index, one process per GPU, preemptions recognised, and every
limit checked before anything is uploaded."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from fake_gcp import FilterError, parse_filter
from google.cloud import aiplatform_v1
from multispot_vertex import launch, translate
from multispot_vertex.provider import VertexProvider

from multispot import registry
from multispot.errors import ValidationFailed
from multispot.job import Job
from multispot.provider import LaunchContext
from multispot.status import JobState, Placement

BUCKET = "multispot-test"
OPTS = {"project": "test-project", "region": "us-central1", "staging_bucket": f"gs://{BUCKET}"}
PLACEMENT = Placement("vertex", "spot", "us-central1", "n1-standard-4", 1)


def _job(tmp_path: Path | None = None, **fields: Any) -> Job:
    extra = fields.pop("provider_options", {})
    data: dict[str, Any] = {
        "name": "issue13",
        "command": ["python", "-m", "multispot.testing.worker", "--steps", "2", "--step-seconds", "0"],
        "image": "python:3.11-slim",
        "resources": {"instance_type": "n1-standard-4"},
        "provider_options": {"vertex": {**OPTS, **extra}},
    }
    data.update(fields)
    return Job.validate_data(data, base_dir=tmp_path)


def _problems(job: Job, placement: Placement = PLACEMENT) -> list[str]:
    return [path for path, _ in translate.problems(job, placement)]


# --------------------------------------------------------------------------- the filter grammar


def _custom_job(**fields: Any) -> aiplatform_v1.CustomJob:
    job = aiplatform_v1.CustomJob(
        display_name="train-1-attempt-1", labels={"team": "ml", "multispot-job-id": "a-b"}
    )
    job.state = aiplatform_v1.JobState.JOB_STATE_RUNNING
    job.create_time = "2026-11-23T10:00:00Z"  # type: ignore[assignment]
    for key, value in fields.items():
        setattr(job, key, value)
    return job


@pytest.mark.parametrize(
    ("text", "matches"),
    [
        ('display_name="train-1-attempt-1"', True),  # the documented examples, and multispot's own
        ('display_name!="train-1-attempt-1"', False),
        ('display_name:"train-*"', True),
        ('state="JOB_STATE_RUNNING" AND display_name:"train*"', True),
        ('state!="JOB_STATE_FAILED" OR display_name="x"', True),
        ('NOT display_name="x"', True),
        ('create_time>"2021-05-18T00:00:00Z"', True),
        ("labels.team=ml", True),
        ('labels.team="ml"', True),
        ("labels.team:*", True),
        ("labels.other:*", False),
        (translate.list_filter("train-1", 1), True),
        ("", True),
    ],
)
def test_documented_filters_are_accepted(text: str, matches: bool) -> None:
    assert parse_filter(text)(_custom_job()) is matches


@pytest.mark.parametrize(
    "text",
    [
        "labels.multispot-job-id=a-b",  # '-' is the negation token in AIP-160, never inside TEXT
        'labels.multispot-job-id="a-b"',
        'state="RUNNING"',  # not a JobState
        'create_time>"yesterday"',
        'machine_type="n1"',  # not a supported field
        "labels.team!=ml",  # labels: equality and existence only
        "display_name",  # a bare member
        'display_name="x" AND (state="JOB_STATE_RUNNING"',
        "display_name=",
    ],
)
def test_other_filters_are_refused(text: str) -> None:
    with pytest.raises(FilterError):
        parse_filter(text)


@pytest.mark.slow
def test_the_fake_refuses_a_bad_filter_over_the_wire(vertex_env: dict[str, str], fake_vertex: Any) -> None:
    from google.api_core import exceptions

    client = aiplatform_v1.JobServiceClient(
        transport=aiplatform_v1.services.job_service.transports.JobServiceGrpcTransport(
            channel=__import__("grpc").insecure_channel(fake_vertex.address)
        )
    )
    parent = "projects/test-project/locations/us-central1"
    with pytest.raises(exceptions.InvalidArgument):
        list(client.list_custom_jobs(request={"parent": parent, "filter": 'labels.multispot-job-id="x"'}))
    assert list(client.list_custom_jobs(request={"parent": parent, "filter": 'display_name="none"'})) == []


# --------------------------------------------------------------------------- shipping multispot


def test_install_options_that_cannot_work_are_refused() -> None:
    assert "provider_options.vertex.install" in _problems(
        _job(provider_options={"install": "multispot==0.1.0"})
    )
    no_staging = _job(
        provider_options={"staging_bucket": None, "install": "wheels"},
        checkpoint={"uri": f"gs://{BUCKET}/c"},
        output_uri=f"gs://{BUCKET}/o",
    )
    no_staging.provider_options["vertex"].pop("staging_bucket")
    assert "provider_options.vertex.staging_bucket" in _problems(no_staging)
    assert _problems(_job(provider_options={"install": "image"})) == []


def _wait(provider: VertexProvider, handle: Any, timeout: float = 90.0) -> JobState:
    deadline = time.time() + timeout
    while not (state := provider.status(handle).state).terminal:
        assert time.time() < deadline, state
        time.sleep(0.1)
    return state


@pytest.mark.slow
def test_multispot_reaches_the_job_only_through_the_request(
    vertex_env: dict[str, str], fake_vertex: Any, gcs: Any, tmp_path: Path
) -> None:
    """The fake's container is a fresh venv: with install: image (the image has no multispot) the
    job fails on the import; with the default (wheels shipped with the attempt) it succeeds."""
    provider = registry.get("vertex")
    assert isinstance(provider, VertexProvider)
    prefix = f"gs://{BUCKET}/{tmp_path.name}"
    bare = _job(provider_options={"install": "image"})
    handle = provider.submit(bare, PLACEMENT, LaunchContext("bare-1", 1, f"{prefix}/c1", f"{prefix}/o1"))
    assert _wait(provider, handle) is JobState.FAILED
    assert "No module named" in "".join(provider.logs(handle))

    shipped = _job()
    ctx = LaunchContext("shipped-1", 1, f"{prefix}/c2", f"{prefix}/o2")
    handle = provider.submit(shipped, PLACEMENT, ctx)
    assert _wait(provider, handle) is JobState.SUCCEEDED, "".join(provider.logs(handle))
    gcs.invalidate_cache()
    wheels = gcs.ls(f"{BUCKET}/multispot/source/shipped-1/attempt-1/multispot-wheels", detail=False)
    assert sorted(w.rsplit("/", 1)[-1].split("-")[0] for w in wheels) == ["fsspec", "multispot"]
    # a retried submit finds the attempt through the documented filter, creates nothing
    count = len(fake_vertex.created)
    assert provider.submit(shipped, PLACEMENT, ctx).id == handle.id
    assert len(fake_vertex.created) == count
    assert fake_vertex.filters[-1] == translate.list_filter("shipped-1", 1)


@pytest.mark.slow
def test_stockout_after_the_start_is_a_preemption(
    vertex_env: dict[str, str], fake_vertex: Any, tmp_path: Path
) -> None:
    provider = registry.get("vertex")
    assert isinstance(provider, VertexProvider)
    job = _job(
        command=["python", "-m", "multispot.testing.worker", "--steps", "400", "--step-seconds", "0.05"]
    )
    prefix = f"gs://{BUCKET}/{tmp_path.name}"
    handle = provider.submit(job, PLACEMENT, LaunchContext("stockout-1", 1, f"{prefix}/c", f"{prefix}/o"))
    deadline = time.time() + 90
    while "worker: step 1" not in "".join(provider.logs(handle)):
        assert time.time() < deadline
        time.sleep(0.2)
    fake_vertex.preempt(handle.id, stockout=True)
    assert _wait(provider, handle) is JobState.PREEMPTED
    assert "Resources are insufficient" in provider.status(handle).message


# --------------------------------------------------------------------------- states


def _native(message: str, code: int = 3, ran: bool = True) -> dict[str, Any]:
    job: dict[str, Any] = {"state": "JOB_STATE_FAILED", "error": {"code": code, "message": message}}
    if ran:
        job["startTime"] = "2026-11-23T10:00:00Z"
    return job


@pytest.mark.parametrize(
    ("native", "state"),
    [
        (_native("The replica workerpool0-0 exited with a non-zero status of 143."), JobState.PREEMPTED),
        (_native("The replica workerpool1-2 exited with a non-zero status of 1."), JobState.FAILED),
        (_native("Resources are insufficient in region: us-central1.", code=8), JobState.PREEMPTED),
        (
            _native("Resources are insufficient in region: us-central1.", code=8, ran=False),
            JobState.NO_CAPACITY,
        ),
        (_native("ZONE_RESOURCE_POOL_EXHAUSTED in us-central1-a", ran=False), JobState.NO_CAPACITY),
        (_native("capacity", code=8), JobState.PREEMPTED),
        (_native("The following quota metrics exceed quota limits", code=8, ran=False), JobState.NO_CAPACITY),
        (_native("The following quota metrics exceed quota limits", code=8), JobState.FAILED),
    ],
)
def test_preemption_and_stockout_states(native: dict[str, Any], state: JobState) -> None:
    assert translate.native_state(native) is state


# --------------------------------------------------------------------------- one process per GPU


def test_launch_plan_from_cluster_spec() -> None:
    spec = {
        "cluster": {
            "workerpool0": ["cmle-training-workerpool0-0:2222"],
            "workerpool1": ["w1-0:2222", "w1-1:2222"],
            "workerpool2": ["reduction-0:2222"],
        },
        "task": {"type": "workerpool1", "index": 1},
    }
    argv, extra = launch.plan({"CLUSTER_SPEC": json.dumps(spec)}, 4, ["python", "train.py", "--lr", "1"])
    assert (
        argv[1:]
        == [
            "-m",
            "torch.distributed.run",
            "--nnodes=3",
            "--node_rank=2",
            "--nproc_per_node=4",
            "--master_addr=cmle-training-workerpool0-0",
            "--master_port=2222",
            "train.py",
            "--lr",
            "1",
        ]
        and extra == {}
    )
    env = {"CLUSTER_SPEC": json.dumps(spec), "MASTER_ADDR": "10.0.0.2", "MASTER_PORT": "23456"}
    argv, extra = launch.plan(env, 4, ["bash", "run.sh"])
    assert argv == ["bash", "run.sh"]
    assert extra == {"RANK": "2", "WORLD_SIZE": "3", "MASTER_ADDR": "10.0.0.2", "MASTER_PORT": "23456"}


@pytest.mark.slow
def test_launch_starts_one_process_per_gpu(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    script = tmp_path / "probe.py"
    script.write_text(
        "import os, pathlib\n"
        "pathlib.Path(os.environ['OUT'], os.environ['RANK']).write_text("
        "os.environ['LOCAL_RANK'] + ' ' + os.environ['WORLD_SIZE'])\n"
    )
    spec = {"cluster": {"workerpool0": ["127.0.0.1:0"]}, "task": {"type": "workerpool0", "index": 0}}
    env = {**os.environ, "CLUSTER_SPEC": json.dumps(spec), "OUT": str(tmp_path), "MASTER_PORT": "0"}
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "multispot_vertex.launch",
            "--nproc-per-node",
            "2",
            "--",
            "python",
            str(script),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert out.returncode == 0, out.stderr
    assert {p.name: p.read_text() for p in tmp_path.iterdir() if p.name != "probe.py"} == {
        "0": "0 2",
        "1": "1 2",
    }


# --------------------------------------------------------------------------- limits, before upload


def _tags(n: int) -> dict[str, str]:
    return {f"t{i}": "v" for i in range(n)}


@pytest.mark.parametrize(
    ("fields", "path"),
    [
        ({"tags": _tags(translate.MAX_LABELS - 2)}, None),  # with multispot's 2: exactly 64
        ({"tags": _tags(translate.MAX_LABELS - 1)}, "tags"),
        ({"tags": {"k" * 63: "v" * 63}}, None),
        ({"tags": {"k" * 64: "v"}}, f"tags.{'k' * 64}"),
        ({"tags": {"k": "v" * 64}}, "tags.k"),
        ({"tags": {"1k": "v"}}, "tags.1k"),
        ({"env": {f"E{i}": "x" for i in range(40)}}, None),
        ({"env": {f"E{i}": "x" for i in range(100)}}, "env"),  # multispot's own count too
        ({"name": "n" * 40}, None),  # the longest job name: display name and labels within limits
        ({"env": {"X": "$$(HOME)"}}, None),  # the value $(HOME), rendered $$(HOME): not expanded
        ({"provider_options": {"boot_disk_gb": 64_001}}, "provider_options.vertex.boot_disk_gb"),
        ({"provider_options": {"boot_disk_gb": 64_000}}, None),
        ({"resources": {"instance_type": "n1-standard-8", "accelerator": "T4:16"}}, None),
        ({"resources": {"instance_type": "n1-standard-8", "accelerator": "T4:32"}}, "resources.accelerator"),
        (
            {"provider_options": {"bucket_locations": {BUCKET: "US"}}},
            "provider_options.vertex.staging_bucket",
        ),
        ({"provider_options": {"bucket_locations": {BUCKET: "us-central1"}}}, None),
        (
            {
                "output_uri": "gs://eu-bucket/o",
                "provider_options": {"bucket_locations": {"eu-bucket": "europe-west4"}},
            },
            "output_uri",
        ),
    ],
)
def test_specs_near_every_limit(fields: dict[str, Any], path: str | None) -> None:
    if "provider_options" in fields:
        fields = {**fields, "provider_options": fields["provider_options"]}
    job = _job(**fields)
    found = _problems(job)
    if path is not None:
        assert path in found, found
        return
    assert found == [], found
    request = translate.render(
        job,
        PLACEMENT,
        LaunchContext(
            f"{job.name}-20261123-101010-abcdef",
            3,
            "gs://multispot-test/c",
            "gs://multispot-test/o",
            env={k: v.replace("$$", "$") for k, v in job.env.items()},
        ),
    )
    parsed = aiplatform_v1.CustomJob.from_json(json.dumps(request))  # the proto's own strictness
    from fake_gcp import request_problem

    assert request_problem(parsed) is None  # within the service's limits
    assert len(parsed.display_name) <= 128 and parsed.display_name.endswith("-attempt-3")
    if "X" in job.env:
        assert {e.name: e.value for e in parsed.job_spec.worker_pool_specs[0].container_spec.env}[
            "X"
        ] == "$$(HOME)"


@pytest.mark.slow
def test_a_job_over_a_limit_is_refused_before_any_upload(
    vertex_env: dict[str, str], fake_vertex: Any, gcs: Any, tmp_path: Path
) -> None:
    provider = registry.get("vertex")
    count = len(fake_vertex.created)
    for job, path in (
        (_job(tags=_tags(63)), "tags"),
        (
            _job(provider_options={"staging_bucket": "gs://multispot-us"}),
            "provider_options.vertex.staging_bucket",
        ),
    ):
        ctx = LaunchContext(f"refused-{tmp_path.name}", 1, "gs://multispot-test/c", "gs://multispot-test/o")
        with pytest.raises(ValidationFailed) as info:
            provider.submit(job, PLACEMENT, ctx)
        assert path in [p for p, *_ in info.value.problems]
        gcs.invalidate_cache()
        assert not gcs.exists(f"{BUCKET}/multispot/source/{ctx.job_id}")
        assert not gcs.exists(f"multispot-us/multispot/source/{ctx.job_id}")
    assert len(fake_vertex.created) == count


def test_display_name_keeps_the_attempt_within_128() -> None:
    name = translate.display_name("x" * 300, 12)
    assert len(name) == translate.MAX_DISPLAY_NAME and name.endswith("-attempt-12")
