"""Pure translation: Job + Placement + LaunchContext → CreateTrainingJob parameters, and back.

Nothing here performs I/O or imports an AWS SDK at module import: ``render`` returns the exact
keyword arguments of boto3's ``sagemaker.create_training_job``; ``native_state`` maps
TrainingJobStatus + SecondaryStatus through an explicit table (``STATES``); ``usage_from`` reads billing
fields out of a DescribeTrainingJob response.
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime
from pathlib import Path
from typing import Any

from multispot import jobenv
from multispot.errors import UnknownProviderState, ValidationFailed
from multispot.job import Job
from multispot.provider import LaunchContext, unknown_options
from multispot.status import JobState, Placement, Usage
from multispot_sagemaker import jobenv as service
from multispot_sagemaker.images import ImageError, training_image

PROVIDER = service.NAME
CHECKPOINT_LOCAL_PATH = service.CHECKPOINT_LOCAL_PATH
NOTICE_SECONDS = service.NOTICE_SECONDS

# --------------------------------------------------------------------------- SageMaker's limits
# From the CreateTrainingJob API reference and the SageMaker service quotas (2026).
MAX_JOB_NAME = 63
JOB_NAME_PATTERN = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
MAX_ENV_ENTRIES = 100
MAX_ENV_KEY = 512
MAX_ENV_VALUE = 512
MAX_HYPERPARAMETERS = 100
MAX_HYPERPARAMETER_KEY = 256
MAX_HYPERPARAMETER_VALUE = 2500
MAX_RUNTIME_SECONDS = 28 * 24 * 3600  # MaxRuntimeInSeconds ceiling: 28 days
DEFAULT_MAX_RUNTIME = 24 * 3600  # SageMaker's own default when none is given
MIN_RETRY_ATTEMPTS, MAX_RETRY_ATTEMPTS = 1, 30
MAX_CONTAINER_ARGUMENTS = 100
MAX_CONTAINER_ARGUMENT = 256
MAX_TAGS = 50
MAX_TAG_KEY, MAX_TAG_VALUE = 128, 256
MAX_CHANNELS = 20
CHANNEL_NAME = re.compile(r"^[A-Za-z0-9\.\-_]+$")

# --------------------------------------------------------------------------- container layout
CODE_CHANNEL = "code"
CODE_DIR = "/opt/ml/input/data/code"
CONFIG_DIR = "/opt/ml/input/config"
DATA_DIR = "/opt/ml/input/data"
ENTRY_NAME = "multispot_entry.py"
DEFAULT_FRAMEWORK, DEFAULT_FRAMEWORK_VERSION, DEFAULT_PY_VERSION = "pytorch", "2.5", "py311"
FRAMEWORKS = ("pytorch", "tensorflow")
TAG_JOB_ID, TAG_ATTEMPT = "multispot-job-id", "multispot-attempt"

OPTIONS = {
    "role": "IAM role ARN SageMaker assumes for the job (required)",
    "bucket": "S3 bucket for code, and for checkpoints/outputs when the job names no URI",
    "prefix": "key prefix under the bucket (default multispot)",
    "region": "AWS region (default us-east-1)",
    "regions": "regions the planner may choose among, e.g. [us-east-1, us-west-2]",
    "subnets": "VPC subnet ids (VpcConfig.Subnets); needs security_group_ids",
    "security_group_ids": "VPC security group ids (VpcConfig.SecurityGroupIds)",
    "kms_key": "KMS key id/ARN for the volume and the output (VolumeKmsKeyId, OutputDataConfig.KmsKeyId)",
    "volume_size_gb": "EBS volume per instance, GB (default 30)",
    "max_retry_attempts": "RetryStrategy.MaximumRetryAttempts, 1-30 (default 1)",
    "python": "interpreter inside the image (default python3)",
    "install": "shipped (default: the submitting multispot's wheels, installed offline), none "
    "(the image has multispot), or index:SPEC (pip installs SPEC: the job must reach an index)",
    "distribution": "'torchrun' (default when nodes > 1 or several GPUs per node) or 'none' "
    "(one process per node, RANK/WORLD_SIZE per node)",
}
INSTALL_SHIPPED, INSTALL_NONE, INSTALL_INDEX = "shipped", "none", "index:"
# Environment names: the CreateTrainingJob API reference's pattern for Environment keys.
ENV_KEY = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
MAX_S3_URI = 1024  # S3Uri, S3OutputPath, CheckpointConfig.S3Uri: at most 1024 characters
MAX_IMAGE = 255  # AlgorithmSpecification.TrainingImage
MAX_ENTRYPOINT = 100  # ContainerEntrypoint: 1-100 items of at most 256 characters


def options(job: Job) -> dict[str, Any]:
    return dict(job.provider_options.get(PROVIDER, {}))


def region_of(job: Job, placement: Placement) -> str:
    return placement.region or str(options(job).get("region") or "us-east-1")


def _bucket_of(uri: str | None) -> str | None:
    if uri and uri.startswith("s3://"):
        return uri[len("s3://") :].split("/")[0] or None
    return None


def bucket(job: Job) -> str | None:
    """The bucket for code (and default URIs): the option, else the job's own output/checkpoint bucket."""
    opt = options(job).get("bucket")
    return str(opt) if opt else (_bucket_of(job.output_uri) or _bucket_of(job.checkpoint.uri))


def prefix(job: Job) -> str:
    return str(options(job).get("prefix", "multispot")).strip("/")


def default_uri(kind: str, job_id: str, job: Job) -> str:
    name = bucket(job)
    if not name:
        raise ValidationFailed(
            PROVIDER, [(f"provider_options.{PROVIDER}.bucket", "name an S3 bucket (or give s3:// URIs)")]
        )
    return f"s3://{name}/{prefix(job)}/{kind}/{job_id}"


def code_uri(job: Job, job_id: str) -> str:
    return f"s3://{bucket(job)}/{prefix(job)}/code/{job_id}/"


def training_job_name(job_id: str, attempt: int) -> str:
    """``<job id>-a<attempt>``, made to fit SageMaker's name rule (a hash keeps long ids unique)."""
    base = re.sub(r"[^a-zA-Z0-9-]+", "-", job_id).strip("-") or "job"
    suffix = f"-a{attempt}"
    name = base + suffix
    if len(name) > MAX_JOB_NAME:
        digest = hashlib.sha256(job_id.encode()).hexdigest()[:8]
        name = base[: MAX_JOB_NAME - len(suffix) - 9].rstrip("-") + "-" + digest + suffix
    return re.sub(r"-{2,}", "-", name)


# --------------------------------------------------------------------------- images


def is_image_uri(image: str) -> bool:
    return "/" in image or ".dkr.ecr." in image


def framework_alias(image: str | None) -> tuple[str, str, str] | None:
    """``pytorch`` / ``pytorch:2.5`` / ``pytorch:2.5-py311`` → (framework, version, py_version)."""
    if image is None:
        return DEFAULT_FRAMEWORK, DEFAULT_FRAMEWORK_VERSION, DEFAULT_PY_VERSION
    if is_image_uri(image):
        return None
    name, _, rest = image.partition(":")
    if name.lower() not in FRAMEWORKS:
        return None
    version, _, py = (rest or DEFAULT_FRAMEWORK_VERSION).partition("-")
    return name.lower(), version, py or DEFAULT_PY_VERSION


def resolve_image(job: Job, region: str, instance_type: str | None) -> str:
    """The training image: an explicit URI wins; a framework alias becomes the documented DLC URI
    (read from the SDK's bundled JSON tables without importing ``sagemaker.core``)."""
    alias = framework_alias(job.image)
    if alias is None:
        assert job.image is not None
        return job.image
    framework, version, py = alias
    return training_image(framework, version, py, region, instance_type or "ml.m5.xlarge")


def install_mode(job: Job) -> str:
    return str(options(job).get("install", INSTALL_SHIPPED))


def multi_node(placement: Placement) -> bool:
    return placement.count > 1


def _install_problems(job: Job, placement: Placement, base: str) -> list[tuple[str, str]]:
    """What ``install`` can do: ``shipped`` always works (no index needed); ``none`` trusts the
    image; ``index:SPEC`` is the user saying the job reaches a package index. A bare pip spec is
    rejected: the job would need an index nobody said it has (the old default failed that way)."""
    out: list[tuple[str, str]] = []
    mode = options(job).get("install", INSTALL_SHIPPED)
    if not isinstance(mode, str) or not (
        mode in (INSTALL_SHIPPED, INSTALL_NONE)
        or (mode.startswith(INSTALL_INDEX) and mode[len(INSTALL_INDEX) :].strip())
    ):
        out.append(
            (
                f"{base}.install",
                f"{mode!r} cannot work: use shipped (multispot's wheels travel with the code and "
                "install offline), none (the image has multispot), or index:SPEC (only if the "
                "job reaches a package index)",
            )
        )
    if multi_node(placement) and framework_alias(job.image) is not None and not _has_s3fs(job):
        # Every rank writes its part to the S3 URI (no shared disk between nodes): the runtime
        # opens s3:// through fsspec, which needs s3fs. The PyTorch DLC ships boto3 and fsspec
        # but not s3fs (aws/deep-learning-containers, pytorch/training/docker/2.5/py3/cu124/
        # Dockerfile.gpu: the conda package list).
        out.append(
            (
                "image",
                "with several nodes each rank writes checkpoints to S3, which needs s3fs; the "
                "framework image lacks it: build examples/images/sagemaker/Dockerfile and give "
                "its ECR URI, or list s3fs in requirements.txt if the job reaches a package index",
            )
        )
    return out


def _has_s3fs(job: Job) -> bool:
    if not job.source_dir:
        return False
    requirements = Path(job.source_dir) / "requirements.txt"
    try:
        text = requirements.read_text()
    except OSError:
        return False
    return any(re.match(r"^\s*s3fs\b", line) for line in text.splitlines())


# --------------------------------------------------------------------------- validation


def problems(job: Job, placement: Placement) -> list[tuple[str, str]]:
    """Everything SageMaker would reject, as (field path, fix); checked before any upload."""
    out: list[tuple[str, str]] = []
    opts = options(job)
    base = f"provider_options.{PROVIDER}"
    out += unknown_options(PROVIDER, opts, OPTIONS)
    role = opts.get("role")
    if not isinstance(role, str) or not re.match(r"^arn:aws[a-z\-]*:iam::\d{12}:role/", role):
        out.append(
            (f"{base}.role", "give the IAM role ARN, e.g. arn:aws:iam::111122223333:role/SageMakerRole")
        )
    if not bucket(job):
        out.append(
            (f"{base}.bucket", "name an S3 bucket for the code (or give s3:// output/checkpoint URIs)")
        )
    for path, uri in (("checkpoint.uri", job.checkpoint.uri), ("output_uri", job.output_uri)):
        if uri and not uri.startswith("s3://"):
            out.append((path, "SageMaker reads and writes S3: use an s3:// URI"))
    if bool(opts.get("subnets")) != bool(opts.get("security_group_ids")):
        out.append((f"{base}.subnets", "VpcConfig needs both subnets and security_group_ids"))
    for key in ("subnets", "security_group_ids", "regions"):
        if key in opts and not (
            isinstance(opts[key], list) and all(isinstance(v, str) and v for v in opts[key])
        ):
            out.append((f"{base}.{key}", "give a list of strings"))
    retries = opts.get("max_retry_attempts", 1)
    if not isinstance(retries, int) or not MIN_RETRY_ATTEMPTS <= retries <= MAX_RETRY_ATTEMPTS:
        out.append((f"{base}.max_retry_attempts", f"{MIN_RETRY_ATTEMPTS}-{MAX_RETRY_ATTEMPTS}"))
    volume = opts.get("volume_size_gb", 30)
    if not isinstance(volume, int) or not 1 <= volume <= 16384:
        out.append((f"{base}.volume_size_gb", "an integer number of GB, 1-16384"))
    if opts.get("distribution", "torchrun") not in ("torchrun", "none"):
        out.append((f"{base}.distribution", "use torchrun or none"))
    if job.image and not is_image_uri(job.image) and framework_alias(job.image) is None:
        out.append(
            (
                "image",
                f"{job.image!r} is neither an image URI nor a framework alias ({', '.join(FRAMEWORKS)})",
            )
        )
    if not placement.instance_type or not placement.instance_type.startswith("ml."):
        out.append(("resources.instance_type", "SageMaker instance types look like ml.g5.xlarge"))
    runtime = job.limits.max_runtime or DEFAULT_MAX_RUNTIME
    if runtime > MAX_RUNTIME_SECONDS:
        out.append(("limits.max_runtime", f"SageMaker allows at most {MAX_RUNTIME_SECONDS} s (28 days)"))
    for name, uri in job.inputs.items():
        if not uri.startswith("s3://"):
            out.append((f"inputs.{name}", "SageMaker channels read S3: use an s3:// URI"))
        if name == CODE_CHANNEL or not CHANNEL_NAME.match(name):
            out.append(
                (f"inputs.{name}", f"channel names are letters, digits, . - _ and not {CODE_CHANNEL!r}")
            )
    if len(job.inputs) + 1 > MAX_CHANNELS:
        out.append(("inputs", f"at most {MAX_CHANNELS - 1} inputs (one channel carries the code)"))
    out += _install_problems(job, placement, base)
    regions = opts.get("regions")
    if isinstance(regions, list) and len(set(regions)) > 1:
        # CreateTrainingJob wants the S3 data of a job in the job's own region (channels,
        # OutputDataConfig, CheckpointConfig), and a job keeps one checkpoint URI across attempts:
        # one bucket cannot serve several regions.
        out.append(
            (
                f"{base}.regions",
                "SageMaker reads and writes S3 in the job's own region and a job keeps one "
                "checkpoint bucket: give one region (submit one job per region to compare)",
            )
        )
    image = "image-probe"
    if not out:
        try:
            image = resolve_image(job, region_of(job, placement), placement.instance_type)
        except ImageError as exc:
            out.append(("image", str(exc)))
    if not out:  # the rendered request itself, against every limit the service documents
        out += request_problems(job, _render(job, placement, _probe_ctx(job), image))
    return out


def _probe_ctx(job: Job) -> LaunchContext:
    """A launch context like the controller's: the job's URIs, or its default ones."""
    job_id = f"{re.sub(r'[^a-zA-Z0-9-]+', '-', job.name)[:40]}-0123456789ab"
    return LaunchContext(
        job_id,
        1,
        job.checkpoint.uri or default_uri("checkpoints", job_id, job),
        job.output_uri or default_uri("outputs", job_id, job),
        env=dict(job.env),
    )


def _env_path(job: Job, key: str) -> str:
    """The Job field an Environment entry comes from."""
    if key in job.env:
        return f"env.{key}"
    if key == jobenv.CHECKPOINT_URI:
        return "checkpoint.uri"
    if key == jobenv.OUTPUT_URI:
        return "output_uri"
    for name in job.inputs:
        if key == jobenv.input_var(name):
            return f"inputs.{name}"
    return f"Environment.{key}"


def request_problems(job: Job, request: dict[str, Any]) -> list[tuple[str, str]]:
    """Every limit of the CreateTrainingJob API reference (and its botocore model) on the
    rendered request, as (Job field path, fix): what multispot adds counts like the user's own."""
    out: list[tuple[str, str]] = []
    name = str(request["TrainingJobName"])
    if len(name) > MAX_JOB_NAME or not JOB_NAME_PATTERN.match(name):
        out.append(("name", f"TrainingJobName {name!r} breaks SageMaker's name rule"))
    env: dict[str, str] = request.get("Environment", {})
    if len(env) > MAX_ENV_ENTRIES:
        out.append(
            (
                "env",
                f"SageMaker takes {MAX_ENV_ENTRIES} Environment entries; this job needs {len(env)} "
                f"({len(env) - len(job.env)} of them multispot's)",
            )
        )
    for key, value in env.items():
        if len(key) > MAX_ENV_KEY or not ENV_KEY.match(key):
            out.append((_env_path(job, key), "variable names are letters, digits and _ (≤ 512)"))
        if len(value) > MAX_ENV_VALUE:
            out.append(
                (_env_path(job, key), f"{key} is {len(value)} characters; SageMaker allows {MAX_ENV_VALUE}")
            )
    hyper: dict[str, str] = request.get("HyperParameters", {})
    if len(hyper) > MAX_HYPERPARAMETERS:
        out.append(("hyperparameters", f"SageMaker takes at most {MAX_HYPERPARAMETERS}"))
    for key, value in hyper.items():
        if len(key) > MAX_HYPERPARAMETER_KEY:
            out.append((f"hyperparameters.{key}", f"names are at most {MAX_HYPERPARAMETER_KEY} characters"))
        if len(value) > MAX_HYPERPARAMETER_VALUE:
            out.append(
                (f"hyperparameters.{key}", f"values are at most {MAX_HYPERPARAMETER_VALUE} characters")
            )
    algo = request["AlgorithmSpecification"]
    if len(algo["TrainingImage"]) > MAX_IMAGE:
        out.append(("image", f"image URIs are at most {MAX_IMAGE} characters"))
    entry = algo.get("ContainerEntrypoint", [])
    if len(entry) > MAX_ENTRYPOINT or any(len(a) > MAX_CONTAINER_ARGUMENT for a in entry):
        out.append((f"provider_options.{PROVIDER}.python", f"at most {MAX_CONTAINER_ARGUMENT} characters"))
    args = algo.get("ContainerArguments", [])
    if len(args) > MAX_CONTAINER_ARGUMENTS or any(len(a) > MAX_CONTAINER_ARGUMENT for a in args):
        out.append(
            (
                "command",
                f"SageMaker passes at most {MAX_CONTAINER_ARGUMENTS} arguments of ≤ "
                f"{MAX_CONTAINER_ARGUMENT} characters (the command, its hyperparameter flags and "
                f"multispot's {args.index('--') + 1 if '--' in args else 0} entry arguments)",
            )
        )
    tags = request.get("Tags", [])
    if len(tags) > MAX_TAGS:
        out.append(("tags", f"at most {MAX_TAGS - 2} tags (multispot adds 2)"))
    for tag in tags:
        if len(tag["Key"]) > MAX_TAG_KEY or len(tag["Value"]) > MAX_TAG_VALUE:
            out.append((f"tags.{tag['Key']}", f"keys ≤ {MAX_TAG_KEY}, values ≤ {MAX_TAG_VALUE} characters"))
    runtime = request["StoppingCondition"]["MaxRuntimeInSeconds"]
    if not 1 <= runtime <= MAX_RUNTIME_SECONDS:
        out.append(("limits.max_runtime", f"SageMaker allows 1 s to {MAX_RUNTIME_SECONDS} s (28 days)"))
    channels = request.get("InputDataConfig", [])
    if len(channels) > MAX_CHANNELS:
        out.append(("inputs", f"at most {MAX_CHANNELS - 1} inputs (one channel carries the code)"))
    uris = [("output_uri", request["OutputDataConfig"]["S3OutputPath"])]
    if "CheckpointConfig" in request:
        uris.append(("checkpoint.uri", request["CheckpointConfig"]["S3Uri"]))
    for channel in channels:
        where = f"inputs.{channel['ChannelName']}"
        if channel["ChannelName"] == CODE_CHANNEL:
            where = f"provider_options.{PROVIDER}.bucket"
        uris.append((where, channel["DataSource"]["S3DataSource"]["S3Uri"]))
    for where, uri in uris:
        if len(uri) > MAX_S3_URI:
            out.append((where, f"S3 URIs are at most {MAX_S3_URI} characters"))
    return out
    return out


def validate(job: Job, placement: Placement) -> None:
    found = problems(job, placement)
    if found:
        raise ValidationFailed(PROVIDER, found)


# --------------------------------------------------------------------------- rendering


def nproc_per_node(job: Job) -> int:
    return max(1, job.resources.accelerator_count)


def container_arguments(job: Job) -> list[str]:
    """The entry's arguments: where things are, how to launch, then the user's command."""
    opts = options(job)
    distribution = str(opts.get("distribution", "torchrun"))
    launch = distribution == "torchrun" and (job.resources.nodes > 1 or nproc_per_node(job) > 1)
    install = install_mode(job)
    argv = job.argv()
    return [
        "--code-dir",
        CODE_DIR,
        "--config-dir",
        CONFIG_DIR,
        "--nproc-per-node",
        str(nproc_per_node(job) if launch else 0),
        "--install",
        install,
        "--",
        *argv,
    ]


def environment(job: Job, placement: Placement, ctx: LaunchContext) -> dict[str, str]:
    """The job's variables: the contract, then the job's own.

    One node: checkpoints go to the local path SageMaker syncs with CheckpointConfig.S3Uri. Several
    nodes: each node has its own local path and the service only uploads it, so no rank could see
    another's part of a step; every rank writes to the S3 URI itself (no MULTISPOT_CHECKPOINT_DIR).
    Hyperparameters travel in the request's HyperParameters (values up to 2,500 characters, where an
    Environment value stops at 512); the entry hands them to the command as
    MULTISPOT_HYPERPARAMETERS from /opt/ml/input/config/hyperparameters.json.
    """
    env = jobenv.build(
        job,
        ctx,
        PROVIDER,
        NOTICE_SECONDS,
        checkpoint_dir=None if multi_node(placement) else CHECKPOINT_LOCAL_PATH,
        inputs={name: f"file://{DATA_DIR}/{name}" for name in job.inputs},
    )
    env.pop(jobenv.HYPERPARAMETERS, None)
    return env


def _channel(name: str, uri: str) -> dict[str, Any]:
    return {
        "ChannelName": name,
        "DataSource": {
            "S3DataSource": {
                "S3DataType": "S3Prefix",
                "S3Uri": uri,
                "S3DataDistributionType": "FullyReplicated",
            }
        },
        "InputMode": "File",
    }


def render(job: Job, placement: Placement, ctx: LaunchContext, image: str | None = None) -> dict[str, Any]:
    """CreateTrainingJob keyword arguments exactly as boto3 takes them; no side effect.

    The rendered request is held to every documented limit (``request_problems``): a request
    SageMaker would refuse raises ValidationFailed with the Job field path, before any upload.
    ``image``: an already resolved training image (else ``resolve_image``).
    """
    try:
        image = image or resolve_image(job, region_of(job, placement), placement.instance_type)
    except ImageError as exc:
        raise ValidationFailed(PROVIDER, [("image", str(exc))]) from exc
    request = _render(job, placement, ctx, image)
    found = request_problems(job, request)
    if found:
        raise ValidationFailed(PROVIDER, found)
    return request


def _render(job: Job, placement: Placement, ctx: LaunchContext, image: str) -> dict[str, Any]:
    opts = options(job)
    spot = placement.market == "spot"
    runtime = int(job.limits.max_runtime or DEFAULT_MAX_RUNTIME)
    stopping: dict[str, int] = {"MaxRuntimeInSeconds": runtime}
    if spot:
        # MaxWait covers waiting for spot capacity plus running, over every interruption.
        stopping["MaxWaitTimeInSeconds"] = int(max(job.limits.max_wait or 2 * runtime, runtime))
    resource: dict[str, Any] = {
        "InstanceType": placement.instance_type,
        "InstanceCount": placement.count,
        "VolumeSizeInGB": int(opts.get("volume_size_gb", 30)),
    }
    output: dict[str, Any] = {"S3OutputPath": ctx.output_uri}
    if opts.get("kms_key"):
        resource["VolumeKmsKeyId"] = str(opts["kms_key"])
        output["KmsKeyId"] = str(opts["kms_key"])
    tags = [{"Key": TAG_JOB_ID, "Value": ctx.job_id}, {"Key": TAG_ATTEMPT, "Value": str(ctx.attempt)}]
    tags += [{"Key": k, "Value": v} for k, v in sorted(job.tags.items())]
    request: dict[str, Any] = {
        "TrainingJobName": training_job_name(ctx.job_id, ctx.attempt),
        "AlgorithmSpecification": {
            "TrainingImage": image,
            "TrainingInputMode": "File",
            "ContainerEntrypoint": [str(opts.get("python", "python3")), f"{CODE_DIR}/{ENTRY_NAME}"],
            "ContainerArguments": container_arguments(job),
        },
        "RoleArn": str(opts.get("role", "")),
        "InputDataConfig": [_channel(CODE_CHANNEL, code_uri(job, ctx.job_id))]
        + [_channel(name, uri) for name, uri in sorted(job.inputs.items())],
        "OutputDataConfig": output,
        "ResourceConfig": resource,
        "StoppingCondition": stopping,
        "EnableManagedSpotTraining": spot,
        "RetryStrategy": {"MaximumRetryAttempts": int(opts.get("max_retry_attempts", 1))},
        "Environment": environment(job, placement, ctx),
        "Tags": tags,
    }
    if not multi_node(placement):  # several nodes write to the S3 URI themselves (``environment``)
        request["CheckpointConfig"] = {"S3Uri": ctx.checkpoint_uri, "LocalPath": CHECKPOINT_LOCAL_PATH}
    if job.hyperparameters:
        request["HyperParameters"] = job.hyperparameter_strings()
    if opts.get("subnets"):
        request["VpcConfig"] = {
            "SecurityGroupIds": list(opts["security_group_ids"]),
            "Subnets": list(opts["subnets"]),
        }
    return request


# --------------------------------------------------------------------------- status

_STARTING = ("Starting", "Pending", "LaunchingMLInstances", "PreparingTrainingStack", "Downloading")
# (TrainingJobStatus, SecondaryStatus) → JobState. Anything else is an UnknownProviderState.
STATES: dict[tuple[str, str], JobState] = {
    **{("InProgress", s): JobState.STARTING for s in (*_STARTING, "DownloadingTrainingImage")},
    ("InProgress", "Training"): JobState.RUNNING,
    ("InProgress", "Uploading"): JobState.RUNNING,
    ("InProgress", "Updating"): JobState.RUNNING,
    # Spot capacity was reclaimed; SageMaker waits for capacity and restarts within MaxWait.
    ("InProgress", "Interrupted"): JobState.STARTING,
    ("InProgress", "Restarting"): JobState.STARTING,
    ("InProgress", "Stopping"): JobState.RUNNING,
    ("Stopping", "Stopping"): JobState.RUNNING,
    ("Stopping", "Interrupted"): JobState.RUNNING,
    ("Stopping", "MaxRuntimeExceeded"): JobState.RUNNING,
    ("Stopping", "MaxWaitTimeExceeded"): JobState.RUNNING,
    ("Completed", "Completed"): JobState.SUCCEEDED,
    ("Failed", "Failed"): JobState.FAILED,
    ("Stopped", "Stopped"): JobState.CANCELLED,
    ("Stopped", "MaxRuntimeExceeded"): JobState.TIMED_OUT,
    # SageMaker gave up on spot: capacity lost after training began (PREEMPTED), or never had (NO_CAPACITY).
    ("Stopped", "MaxWaitTimeExceeded"): JobState.PREEMPTED,
    ("Stopped", "Interrupted"): JobState.PREEMPTED,
    ("Failed", "MaxWaitTimeExceeded"): JobState.PREEMPTED,
    ("Failed", "Interrupted"): JobState.PREEMPTED,
}
CAPACITY_FAILURES = ("CapacityError", "InsufficientInstanceCapacity", "ResourceLimitExceeded")


def _transitions(described: dict[str, Any]) -> list[dict[str, Any]]:
    return list(described.get("SecondaryStatusTransitions") or [])


def interruptions(described: dict[str, Any]) -> int:
    return sum(1 for t in _transitions(described) if t.get("Status") == "Interrupted")


def ever_trained(described: dict[str, Any]) -> bool:
    return any(t.get("Status") == "Training" for t in _transitions(described))


def native_state(described: dict[str, Any]) -> JobState:
    status, secondary = described.get("TrainingJobStatus", ""), described.get("SecondaryStatus", "")
    key = (str(status), str(secondary))
    if key not in STATES:
        raise UnknownProviderState(f"SageMaker state {status}/{secondary} is not in the state table")
    state = STATES[key]
    if state is JobState.PREEMPTED and not ever_trained(described):
        return JobState.NO_CAPACITY
    if state is JobState.FAILED and any(
        c in str(described.get("FailureReason", "")) for c in CAPACITY_FAILURES
    ):
        return JobState.NO_CAPACITY
    return state


def _stamp(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, (int, float)):
        return float(value)
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()


def message(described: dict[str, Any]) -> str:
    if described.get("FailureReason"):
        return str(described["FailureReason"])
    transitions = _transitions(described)
    if transitions and transitions[-1].get("StatusMessage"):
        return str(transitions[-1]["StatusMessage"])
    return f"{described.get('TrainingJobStatus')}/{described.get('SecondaryStatus')}"


def times(described: dict[str, Any]) -> tuple[float | None, float | None]:
    started = _stamp(described.get("TrainingStartTime"))
    for t in _transitions(described):
        if t.get("Status") == "Training":
            started = _stamp(t.get("StartTime"))
            break
    ended = (
        _stamp(described.get("TrainingEndTime"))
        if described.get("TrainingJobStatus")
        in (
            "Completed",
            "Failed",
            "Stopped",
        )
        else None
    )
    return started, ended


def usage_from(described: dict[str, Any], region: str | None) -> Usage:
    """Usage from DescribeTrainingJob.

    SageMaker managed spot bills ``BillableTimeInSeconds`` × instance count at the **on-demand**
    rate; the spot discount shows up as billable < training time (savings = 1 − billable/training).
    """
    resource = described.get("ResourceConfig") or {}
    spot = bool(described.get("EnableManagedSpotTraining"))
    training = described.get("TrainingTimeInSeconds")
    started, ended = times(described)
    if training is None and started is not None and ended is not None:
        training = max(0.0, ended - started)
    billable = described.get("BillableTimeInSeconds")
    source = "DescribeTrainingJob TrainingTimeInSeconds/BillableTimeInSeconds"
    if billable is None:
        billable = training or 0.0
        source = "DescribeTrainingJob (no BillableTimeInSeconds yet: training time used as the bound)"
    if spot:
        source += "; managed spot: billable seconds are charged at the on-demand rate"
    return Usage(
        runtime_seconds=float(training or 0.0),
        billable_seconds=float(billable),
        instance_type=resource.get("InstanceType"),
        count=int(resource.get("InstanceCount", 1)),
        market="spot" if spot else "on-demand",
        region=region,
        source=source,
    )
