"""Held-out-style specs near every CreateTrainingJob limit: each is rejected before anything is
uploaded, naming the Job field, or rendered within every constraint of the service model
(botocore's CreateTrainingJob input: min/max lengths, patterns, ranges — the API reference's)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from multispot_sagemaker import entry
from multispot_sagemaker import translate as t
from multispot_sagemaker.images import training_image
from test_sagemaker_translate import EXAMPLE, ROLE, ctx, validate_with_botocore

from multispot.errors import JobSpecError, ValidationFailed
from multispot.job import Job
from multispot.status import Placement

SPOT = Placement("sagemaker", "spot", "us-east-1", "ml.m5.xlarge")


def _fullmatch(pattern: str, value: str) -> bool:
    """The model's patterns are Java regexes (\\p{L} in tag keys): the ``regex`` module reads them."""
    try:
        import regex

        return regex.fullmatch(pattern, value) is not None
    except ImportError:  # pragma: no cover - re cannot read \p{...}: only those are skipped
        return "\\p" in pattern or re.fullmatch(pattern, value) is not None


def model_violations(request: dict[str, Any]) -> list[str]:
    """Every value outside its shape's min/max/pattern in the botocore model (which botocore's
    own validate_parameters does not check)."""
    import botocore.session

    model = botocore.session.get_session().get_service_model("sagemaker")
    shape = model.operation_model("CreateTrainingJob").input_shape
    found: list[str] = []

    def walk(value: Any, shape: Any, path: str) -> None:
        meta = shape.metadata
        if shape.type_name in ("string", "list", "map"):
            size = len(value)
            if size < meta.get("min", 0) or size > meta.get("max", size):
                found.append(f"{path}: length {size} outside {meta.get('min')}..{meta.get('max')}")
        low, high = meta.get("min"), meta.get("max")
        if shape.type_name in ("integer", "long") and (
            (low is not None and value < low) or (high is not None and value > high)
        ):
            found.append(f"{path}: {value} outside {low}..{high}")
        if shape.type_name == "string" and "pattern" in meta and not _fullmatch(meta["pattern"], value):
            found.append(f"{path}: {value[:40]!r} does not match {meta['pattern']}")
        if shape.type_name == "structure":
            for key, item in value.items():
                walk(item, shape.members[key], f"{path}.{key}")
        elif shape.type_name == "list":
            for i, item in enumerate(value):
                walk(item, shape.member, f"{path}[{i}]")
        elif shape.type_name == "map":
            for key, item in value.items():
                walk(key, shape.key, f"{path}.<key {key[:20]}>")
                walk(item, shape.value, f"{path}.{key}")

    walk(request, shape, "request")
    return found


def spec(**fields: Any) -> Job:
    data: dict[str, Any] = {
        "name": "limits",
        "command": "python t.py",
        "provider_options": {"sagemaker": {"role": ROLE, "bucket": "b"}},
    }
    options = fields.pop("options", {})
    data.update(fields)
    data["provider_options"]["sagemaker"].update(options)
    return Job.validate_data(data)


# (spec, the field path it must be rejected with — or None: it must render within every limit)
NEAR_LIMITS: dict[str, tuple[Any, str | None]] = {
    "30 hyperparameters of 20 characters": (
        lambda: spec(hyperparameters={f"h{i:02d}": "x" * 20 for i in range(30)}),
        None,  # 1,070 characters of JSON: HyperParameters carries them, not an Environment value
    ),
    "a 2,500-character hyperparameter": (lambda: spec(hyperparameters={"h": "x" * 2500}), "command"),
    "a 2,501-character hyperparameter": (
        lambda: spec(hyperparameters={"h": "x" * 2501}),
        "hyperparameters.h",
    ),
    "101 hyperparameters": (
        lambda: spec(hyperparameters={f"h{i}": 1 for i in range(101)}),
        "hyperparameters",
    ),
    "a 257-character hyperparameter name": (
        lambda: spec(hyperparameters={"h" * 257: 1}),
        "hyperparameters." + "h" * 257,
    ),
    "a 512-character env value": (lambda: spec(env={"BIG": "x" * 512}), None),
    "a 513-character env value": (lambda: spec(env={"BIG": "x" * 513}), "env.BIG"),
    "env filling the 100 entries with multispot's": (
        lambda: spec(env={f"V{i}": "x" for i in range(92)}),
        None,
    ),
    "one env entry too many": (lambda: spec(env={f"V{i}": "x" for i in range(93)}), "env"),
    "a checkpoint URI past 512 characters": (
        lambda: spec(checkpoint={"uri": "s3://b/" + "k" * 520}),
        "checkpoint.uri",
    ),
    "an input URI past 1,024 characters": (
        lambda: spec(inputs={"train": "s3://b/" + "k" * 1020}),
        "inputs.train",
    ),
    "a 40-character job name": (lambda: spec(name="n" * 40), None),
    "a 120-character job name": (lambda: spec(name="n" * 120), "name"),
    "48 tags": (lambda: spec(tags={f"t{i}": "v" for i in range(48)}), None),
    "49 tags": (lambda: spec(tags={f"t{i}": "v" for i in range(49)}), "tags"),
    "a 257-character tag value": (lambda: spec(tags={"t": "v" * 257}), "tags.t"),
    "28 days": (lambda: spec(limits={"max_runtime": "28d"}), None),
    "29 days": (lambda: spec(limits={"max_runtime": "29d"}), "limits.max_runtime"),
    "19 inputs": (lambda: spec(inputs={f"in{i}": f"s3://b/{i}" for i in range(19)}), None),
    "20 inputs": (lambda: spec(inputs={f"in{i}": f"s3://b/{i}" for i in range(20)}), "inputs"),
    "a 300-character argument": (lambda: spec(command=["python", "x" * 300]), "command"),
    "two regions": (
        lambda: spec(options={"regions": ["us-east-1", "us-west-2"]}),
        "provider_options.sagemaker.regions",
    ),
    "a bare pip spec": (
        lambda: spec(options={"install": "multispot==0.1.0"}),
        "provider_options.sagemaker.install",
    ),
    "an index spec": (lambda: spec(options={"install": "index:multispot[sagemaker]"}), None),
    "31 retries": (
        lambda: spec(options={"max_retry_attempts": 31}),
        "provider_options.sagemaker.max_retry_attempts",
    ),
    "an unknown framework version": (lambda: spec(image="pytorch:0.9"), "image"),
}


@pytest.mark.parametrize("case", sorted(NEAR_LIMITS))
def test_near_every_limit_rejected_with_the_path_or_rendered_within(case: str) -> None:
    make, path = NEAR_LIMITS[case]
    try:
        job = make()
    except JobSpecError as exc:  # the Job's own rules are stricter here: rejected, with the path
        assert path is not None and path in str(exc), exc
        return
    found = [p for p, *_ in t.problems(job, SPOT)]
    if path is None:
        assert found == []
        request = t.render(job, SPOT, ctx())
        validate_with_botocore(request)
        assert model_violations(request) == []
    else:
        assert path in found, found
        with pytest.raises(ValidationFailed):
            t.validate(job, SPOT)


def test_render_refuses_what_the_service_would_even_with_a_later_context() -> None:
    """The URIs known only at launch are checked too: render (called by submit before the
    upload) raises with the field path instead of sending a request SageMaker refuses."""
    job = spec()
    long_ctx = ctx()
    long_ctx = type(long_ctx)(long_ctx.job_id, 1, "s3://b/" + "c" * 600, long_ctx.output_uri)
    with pytest.raises(ValidationFailed) as info:
        t.render(job, SPOT, long_ctx)
    assert "checkpoint.uri" in [p for p, *_ in info.value.problems]


def test_multi_node_on_the_framework_image_needs_s3fs(tmp_path: Path) -> None:
    two = Placement("sagemaker", "spot", "us-east-1", "ml.m5.xlarge", 2)
    assert "image" in [p for p, *_ in t.problems(spec(), two)]
    (tmp_path / "requirements.txt").write_text("s3fs[boto3]>=2024\n")
    data = spec().to_data()
    data["source_dir"] = str(tmp_path)
    assert t.problems(Job.validate_data(data), two) == []


def test_the_entry_gives_every_distribution_a_rank(tmp_path: Path) -> None:
    import json

    (tmp_path / "resourceconfig.json").write_text(
        json.dumps(
            {
                "current_host": "algo-2",
                "hosts": ["algo-2", "algo-1", "algo-3"],
                "current_instance_type": "ml.p4d.24xlarge",
                "network_interface_name": "ens5",
            }
        )
    )
    env, hosts, rank = entry.service_env(tmp_path, 0)
    assert (hosts, rank) == (["algo-1", "algo-2", "algo-3"], 1)  # sorted, as the service names them
    assert (env["RANK"], env["WORLD_SIZE"], env["NODE_RANK"], env["MASTER_ADDR"]) == ("1", "3", "1", "algo-1")
    assert env["NCCL_SOCKET_IFNAME"] == "ens5" and env["FI_PROVIDER"] == "efa"
    assert env["FI_EFA_USE_DEVICE_RDMA"] == "1" and env["NCCL_PROTO"] == "simple"
    torchrun, _, _ = entry.service_env(tmp_path, 8)
    assert "RANK" not in torchrun and torchrun["NNODES"] == "3"  # torchrun sets it per process


def test_image_uris_match_the_sdk_without_importing_it() -> None:
    from sagemaker.core import image_uris

    for framework, version, py in (("pytorch", "2.5", "py311"), ("pytorch", "2.3", "py311")):
        for region in ("us-east-1", "eu-west-1", "ap-southeast-2", "cn-north-1"):
            for instance in ("ml.m5.xlarge", "ml.g5.2xlarge", "ml.p4d.24xlarge"):
                ours = training_image(framework, version, py, region, instance)
                sdk = image_uris.retrieve(
                    framework=framework,
                    region=region,
                    version=version,
                    py_version=py,
                    instance_type=instance,
                    image_scope="training",
                )
                assert ours == sdk, (framework, version, region, instance)


def test_a_dry_run_imports_neither_pandas_nor_scipy(tmp_path: Path) -> None:
    probe = (
        "import json, sys\n"
        "from multispot.api import dry_run\n"
        "from multispot.job import Job\n"
        f"out = dry_run(Job.from_yaml({str(EXAMPLE)!r}), provider='sagemaker')\n"
        "heavy = sorted(m for m in ('pandas', 'scipy', 'sagemaker.core.image_uris') if m in sys.modules)\n"
        "print(json.dumps({'image': out['request']['AlgorithmSpecification']['TrainingImage'], 'heavy': heavy}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe],
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "MULTISPOT_HOME": str(tmp_path / "h")},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    import json

    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["heavy"] == [] and "pytorch-training:2.5-" in result["image"]
