"""Pure translation for Vertex AI: Job + Placement + LaunchContext → CustomJob (protobuf JSON form).

Nothing here does I/O or imports the Google SDK: the request is built as the protobuf JSON
mapping of ``google.cloud.aiplatform_v1.CustomJob`` (camelCase keys, enum names, durations as
``"3600s"``), which the tests parse back strictly into the proto type, and which the provider
turns into the message with ``json_format.ParseDict``. Also here: option validation, Vertex's
limits, the state table, and usage parsing from a CustomJob read back from the service.
"""

from __future__ import annotations

import importlib
import re
import time
from datetime import datetime
from typing import TYPE_CHECKING, Any

from multispot import jobenv
from multispot.errors import UnknownProviderState, ValidationFailed
from multispot.provider import LaunchContext, unknown_options
from multispot.ship import WHEEL_DIR, install_command
from multispot.status import JobState, Placement, Usage
from multispot_vertex import jobenv as service

if TYPE_CHECKING:
    from multispot.job import Job

PROVIDER = service.NAME
FUSE_ROOT = service.FUSE_ROOT
NOTICE_SECONDS = service.NOTICE_SECONDS

DEFAULT_REGION = "us-central1"

# ----------------------------------------------------------------- Vertex limits (checked before upload)
# CustomJob.display_name: "up to 128 characters long and can consist of any UTF-8 characters".
MAX_DISPLAY_NAME = 128
# CustomJob.labels: "keys and values can be no longer than 64 characters (Unicode codepoints), can
# only contain lowercase letters, numeric characters, underscores and dashes" (aiplatform_v1 proto);
# Google Cloud's label rules (resource-manager "Labels" page) are stricter and win here: at most 64
# labels, keys and values at most 63 characters, keys start with a lowercase letter.
MAX_LABELS = 64
MAX_LABEL_LENGTH = 63  # keys and values
LABEL_KEY = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
LABEL_VALUE = re.compile(r"^[a-z0-9_-]{0,63}$")
# ContainerSpec.env: "Maximum limit is 100"; EnvVar.name: "Must be a valid C identifier"; an
# EnvVar.value's "$(VAR_NAME)" is expanded by the service unless written "$$(VAR_NAME)".
MAX_ENV = 100
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
MAX_WORKER_POOLS = 4  # 0 primary, 1 workers, 2 parameter/reduction server, 3 evaluator
INSTALL_MODES = ("wheels", "image")
DISTRIBUTIONS = ("torchrun", "none")
PYTHON_NAMES = ("python", "python3")
LAUNCH_MODULE = "multispot_vertex.launch"
ACCELERATOR_COUNTS = (1, 2, 4, 8, 16)
MIN_BOOT_DISK_GB = 100
MAX_BOOT_DISK_GB = 64_000
BOOT_DISK_TYPES = ("pd-ssd", "pd-standard", "hyperdisk-balanced")
JOB_LABEL = "multispot-job-id"
ATTEMPT_LABEL = "multispot-attempt"

# Canonical accelerator → Vertex AcceleratorType, used when the catalog has no offer for the shape.
ACCELERATOR_TYPES = {
    "T4": "NVIDIA_TESLA_T4",
    "V100": "NVIDIA_TESLA_V100",
    "P100": "NVIDIA_TESLA_P100",
    "P4": "NVIDIA_TESLA_P4",
    "A100": "NVIDIA_TESLA_A100",
    "A100-80GB": "NVIDIA_A100_80GB",
    "L4": "NVIDIA_L4",
    "H100": "NVIDIA_H100_80GB",
}

OPTIONS = {
    "project": "Google Cloud project id (default: $GOOGLE_CLOUD_PROJECT)",
    "region": "region to run in, e.g. us-central1 (default: cheapest catalog region)",
    "service_account": "service account the job runs as",
    "network": "full VPC network name, projects/NUMBER/global/networks/NAME",
    "staging_bucket": "gs://bucket[/prefix] for default checkpoint/output URIs and the source tarball",
    "boot_disk_gb": f"boot disk size per replica, {MIN_BOOT_DISK_GB}-{MAX_BOOT_DISK_GB} (default 100)",
    "boot_disk_type": f"one of {', '.join(BOOT_DISK_TYPES)}",
    "restart_job_on_worker_restart": "restart every replica when one restarts (default: true when nodes > 1)",
    "billing_export_table": "BigQuery table of the Cloud Billing export, project.dataset.table",
    "install": "how multispot reaches the job: 'wheels' (default: built at submit, shipped with the "
    "code through the staging bucket, installed offline) or 'image' (the image has it already)",
    "distribution": "'torchrun' (default: one process per GPU, nodes joined through CLUSTER_SPEC) "
    "or 'none' (the command runs once per node)",
    "bucket_locations": "{bucket: location} of the job's buckets, e.g. {my-bucket: us-central1}: "
    "checked against the job's region before anything is uploaded",
}

# Vertex JobState → JobState. FAILED is refined by the error (preempted / no capacity), see native_state.
STATES = {
    "JOB_STATE_QUEUED": JobState.SUBMITTED,
    "JOB_STATE_PENDING": JobState.STARTING,
    "JOB_STATE_RUNNING": JobState.RUNNING,
    "JOB_STATE_UPDATING": JobState.RUNNING,
    "JOB_STATE_CANCELLING": JobState.RUNNING,  # still billed until CANCELLED
    "JOB_STATE_PAUSED": JobState.STARTING,
    "JOB_STATE_SUCCEEDED": JobState.SUCCEEDED,
    "JOB_STATE_FAILED": JobState.FAILED,
    "JOB_STATE_CANCELLED": JobState.CANCELLED,
    "JOB_STATE_EXPIRED": JobState.TIMED_OUT,
    "JOB_STATE_PARTIALLY_SUCCEEDED": JobState.FAILED,
}
# How a Spot preemption reaches a CustomJob's error (google.rpc.Status):
# - a message about the VM's preemption;
# - a STOCKOUT-style error once the job ran: Vertex could not get the capacity back to restart the
#   reclaimed worker ("Resources are insufficient in region: R", RESOURCE_POOL_EXHAUSTED,
#   code 8 RESOURCE_EXHAUSTED); before the job ever ran the same error is NO_CAPACITY;
# - the container's own exit on the notice: the runtime exits 143 (128 + SIGTERM) after its last
#   checkpoint, which Vertex reports as "The replica workerpoolN-M exited with a non-zero status of
#   143" (the wording of its worker-exit errors).
PREEMPTED_ERROR = re.compile(r"preempt|spot (vm|capacity) .*reclaim", re.IGNORECASE)
NOTICE_EXIT_ERROR = re.compile(r"exited with a non-zero status of 143\b", re.IGNORECASE)
STOCKOUT_ERROR = re.compile(
    r"stockout|resources are insufficient|resource_pool_exhausted|zone_resource_pool_exhausted",
    re.IGNORECASE,
)
QUOTA_ERROR = re.compile(r"quota", re.IGNORECASE)
RESOURCE_EXHAUSTED = 8  # google.rpc.Code


# ----------------------------------------------------------------- options and validation


def options(job: Job) -> dict[str, Any]:
    return dict(job.provider_options.get(PROVIDER, {}))


def problems(job: Job, placement: Placement | None = None) -> list[tuple[str, str]]:
    """Every reason Vertex cannot take this job, as (field path, fix)."""
    found: list[tuple[str, str]] = []
    opts = options(job)
    found += unknown_options(PROVIDER, opts, OPTIONS)
    for key in ("project", "region", "service_account", "network", "billing_export_table"):
        if key in opts and not (isinstance(opts[key], str) and opts[key].strip()):
            found.append((f"provider_options.{PROVIDER}.{key}", "must be a non-empty string"))
    if "network" in opts and isinstance(opts["network"], str) and not opts["network"].startswith("projects/"):
        found.append((f"provider_options.{PROVIDER}.network", "write projects/NUMBER/global/networks/NAME"))
    staging = opts.get("staging_bucket")
    if staging is not None and not (isinstance(staging, str) and _is_gs(staging)):
        found.append((f"provider_options.{PROVIDER}.staging_bucket", "write gs://bucket[/prefix]"))
    if "boot_disk_gb" in opts:
        size = opts["boot_disk_gb"]
        if (
            not isinstance(size, int)
            or isinstance(size, bool)
            or not MIN_BOOT_DISK_GB <= size <= MAX_BOOT_DISK_GB
        ):
            found.append(
                (
                    f"provider_options.{PROVIDER}.boot_disk_gb",
                    f"an integer from {MIN_BOOT_DISK_GB} to {MAX_BOOT_DISK_GB}",
                )
            )
    if "boot_disk_type" in opts and opts["boot_disk_type"] not in BOOT_DISK_TYPES:
        found.append(
            (f"provider_options.{PROVIDER}.boot_disk_type", f"use one of {', '.join(BOOT_DISK_TYPES)}")
        )
    if "restart_job_on_worker_restart" in opts and not isinstance(
        opts["restart_job_on_worker_restart"], bool
    ):
        found.append((f"provider_options.{PROVIDER}.restart_job_on_worker_restart", "true or false"))
    table = opts.get("billing_export_table")
    if isinstance(table, str) and table.strip() and len(table.split(".")) != 3:
        found.append((f"provider_options.{PROVIDER}.billing_export_table", "write project.dataset.table"))
    if not job.image:
        found.append(
            ("image", "Vertex runs a container: give an image, e.g. us-docker.pkg.dev/.../pytorch-gpu")
        )
    for path, uri in (("checkpoint.uri", job.checkpoint.uri), ("output_uri", job.output_uri)):
        if uri is not None and not _is_gs(uri):
            found.append((path, f"{uri!r} is not reachable from Vertex: use a gs:// URI"))
        if uri is None and staging is None:
            found.append((path, f"give a gs:// URI, or set provider_options.{PROVIDER}.staging_bucket"))
    if job.source_dir and staging is None:
        found.append(
            (
                "source_dir",
                f"the source is uploaded as a tarball: set provider_options.{PROVIDER}.staging_bucket",
            )
        )
    for name, uri in job.inputs.items():
        if not _is_gs(uri):
            found.append((f"inputs.{name}", f"{uri!r} is not reachable from Vertex: use a gs:// URI"))
    count = job.resources.accelerator_count
    if count and count not in ACCELERATOR_COUNTS:
        found.append(
            (
                "resources.accelerator",
                f"Vertex attaches {', '.join(map(str, ACCELERATOR_COUNTS))} GPUs per replica",
            )
        )
    tags = dict(job.tags)
    if len(tags) + 2 > MAX_LABELS:
        found.append(("tags", f"Vertex allows {MAX_LABELS} labels and multispot uses 2: drop some tags"))
    for key, value in tags.items():
        if not LABEL_KEY.match(key):
            found.append(
                (
                    f"tags.{key}",
                    "a Vertex label key: lowercase letters, digits, '_' or '-', starting with a letter, ≤63",
                )
            )
        if not LABEL_VALUE.match(value):
            found.append((f"tags.{key}", "a Vertex label value: lowercase letters, digits, '_' or '-', ≤63"))
    if placement is not None and placement.market not in ("spot", "on-demand"):
        found.append(("spot.policy", f"unknown market {placement.market!r}"))
    install = opts.get("install", "wheels")
    if install not in INSTALL_MODES:
        found.append(
            (
                f"provider_options.{PROVIDER}.install",
                "use 'wheels' (multispot shipped with the code, installed offline) or 'image' (an image "
                "that has multispot, see examples/images/vertex): a job reaches no package index",
            )
        )
    elif install == "wheels" and staging is None:
        found.append(
            (
                f"provider_options.{PROVIDER}.staging_bucket",
                "multispot ships to the job through the staging bucket (install: wheels): set it, or "
                "use install: image with an image that has multispot",
            )
        )
    if opts.get("distribution", "torchrun") not in DISTRIBUTIONS:
        found.append((f"provider_options.{PROVIDER}.distribution", "use torchrun or none"))
    locations = opts.get("bucket_locations", {})
    if not (
        isinstance(locations, dict)
        and all(isinstance(k, str) and isinstance(v, str) and k and v for k, v in locations.items())
    ):
        found.append((f"provider_options.{PROVIDER}.bucket_locations", "a map of bucket name to location"))
        locations = {}
    for key in job.env:
        if not ENV_NAME.match(key):
            found.append((f"env.{key}", "Vertex takes variable names that are C identifiers"))
    if not found:
        probe = placement or Placement(
            PROVIDER,
            "spot",
            str(opts.get("region") or DEFAULT_REGION),
            job.resources.instance_type or "n1-standard-4",
            job.resources.nodes,
        )
        found += request_problems(job, probe)
        if probe.region:
            found += bucket_problems(job, probe.region, locations)
    return found


def request_problems(job: Job, placement: Placement) -> list[tuple[str, str]]:
    """The service's limits on the CustomJob multispot would send, multispot's own parts included."""
    staging = options(job).get("staging_bucket")
    probe_job_id = f"{job.name}-20261231-235959-ffffff"  # as long as the ids multispot makes
    ctx = LaunchContext(
        probe_job_id,
        1,
        job.checkpoint.uri or f"{staging}/multispot/checkpoints/{probe_job_id}",
        job.output_uri or f"{staging}/multispot/outputs/{probe_job_id}",
        env={key: "x" for key in job.env},
    )
    request = render(job, placement, ctx)
    found: list[tuple[str, str]] = []
    labels = request["labels"]
    if len(labels) > MAX_LABELS:
        found.append(("tags", f"Vertex allows {MAX_LABELS} labels and multispot adds 2: drop some tags"))
    for key, value in labels.items():
        if not (LABEL_KEY.match(key) and LABEL_VALUE.match(value)):
            found.append(
                (f"tags.{key}", "not a valid Vertex label (lowercase letters, digits, '_', '-', ≤63)")
            )
    if len(request["displayName"]) > MAX_DISPLAY_NAME:
        found.append(("name", f"Vertex display names are at most {MAX_DISPLAY_NAME} characters"))
    pools = request["jobSpec"]["workerPoolSpecs"]
    if len(pools) > MAX_WORKER_POOLS or any(int(pool["replicaCount"]) < 1 for pool in pools):
        found.append(("resources.nodes", "Vertex runs 1 primary replica plus workers in one pool"))
    env = pools[0]["containerSpec"]["env"]
    if len(env) > MAX_ENV:
        own = len(env) - len(job.env)
        found.append(("env", f"Vertex takes {MAX_ENV} variables and multispot sets {own}: drop some"))
    for item in env:
        if not ENV_NAME.match(item["name"]):
            found.append((f"env.{item['name']}", "Vertex takes variable names that are C identifiers"))
    return found


def bucket_buckets(job: Job) -> dict[str, str]:
    """{bucket: field path} of every bucket the job writes: staging, checkpoints, outputs."""
    out: dict[str, str] = {}
    staging = options(job).get("staging_bucket")
    for path, uri in (
        (f"provider_options.{PROVIDER}.staging_bucket", staging),
        ("checkpoint.uri", job.checkpoint.uri),
        ("output_uri", job.output_uri),
    ):
        if isinstance(uri, str) and _is_gs(uri):
            out.setdefault(gs_uri(uri)[len("gs://") :].split("/")[0], path)
    return out


def bucket_problems(job: Job, region: str, locations: dict[str, str]) -> list[tuple[str, str]]:
    """Vertex is regional: a job's Cloud Storage buckets must be in the job's own region (a
    multi-region bucket such as ``US`` is refused: "The Cloud Storage bucket of gs://… is in location
    `us`. It must be in the same regional location as the service location", FAILED_PRECONDITION;
    see "Choosing your location" in the Vertex AI docs). Only buckets whose location is known."""
    found = []
    for bucket, path in bucket_buckets(job).items():
        where = locations.get(bucket)
        if where and where.lower() != region.lower():
            found.append(
                (
                    path,
                    f"bucket {bucket} is in {where}, the job runs in {region}: Vertex needs the bucket "
                    "in the job's region (set provider_options.vertex.region, or use a bucket there)",
                )
            )
    return found


def _is_gs(uri: str) -> bool:
    return uri.startswith(("gs://", "gcs://")) and bool(uri.split("://", 1)[1].split("/")[0])


def gs_uri(uri: str) -> str:
    return "gs://" + uri.split("://", 1)[1] if uri.startswith("gcs://") else uri


def fuse_path(uri: str) -> str:
    """gs://bucket/path → /gcs/bucket/path: how Cloud Storage FUSE shows it inside the container."""
    return f"{FUSE_ROOT}/{gs_uri(uri)[len('gs://') :]}".rstrip("/")


def label_value(text: str) -> str:
    """Any string as a valid label value: lowercase, invalid characters → '-', at most 63 long."""
    return re.sub(r"[^a-z0-9_-]", "-", text.lower())[:MAX_LABEL_LENGTH]


def code_uri(job: Job, job_id: str) -> str | None:
    """The folder in the staging bucket that holds what is shipped with the job."""
    staging = options(job).get("staging_bucket")
    return f"{gs_uri(str(staging)).rstrip('/')}/multispot/source/{job_id}" if staging else None


def source_tarball_uri(job: Job, job_id: str) -> str | None:
    code = code_uri(job, job_id)
    return f"{code}/source.tar.gz" if job.source_dir and code else None


def wheels_uri(job: Job, job_id: str, attempt: int) -> str | None:
    """Where the multispot wheels of one attempt go (install: wheels): each attempt ships the code
    that submits it, so the offline install finds exactly one multispot wheel there."""
    code = code_uri(job, job_id)
    if options(job).get("install", "wheels") != "wheels" or not code:
        return None
    return f"{code}/attempt-{attempt}/{WHEEL_DIR}"


def default_uri(kind: str, job_id: str, job: Job) -> str:
    """Where ``kind`` lives when the job names no URI: under the staging bucket."""
    staging = options(job).get("staging_bucket")
    if not staging:
        path = "checkpoint.uri" if kind == "checkpoints" else "output_uri"
        raise ValidationFailed(
            PROVIDER, [(path, f"give a gs:// URI, or set provider_options.{PROVIDER}.staging_bucket")]
        )
    return f"{gs_uri(str(staging)).rstrip('/')}/multispot/{kind}/{job_id}"


# ----------------------------------------------------------------- rendering


def load_catalog() -> Any:
    """The price catalog (``multispot.catalog``), or None where this build has none."""
    try:
        module = importlib.import_module("multispot.catalog")
    except ImportError:
        return None
    return module.load_catalog()


def accelerator(job: Job, placement: Placement) -> tuple[str | None, int]:
    """(Vertex accelerator type, count) per replica, from the catalog offer or the neutral name."""
    name, count = job.resources.accelerator_name, job.resources.accelerator_count
    if not name:
        return None, 0
    catalog = load_catalog()
    offer = None
    if catalog is not None and placement.instance_type:
        try:
            offer = catalog.lookup(
                PROVIDER,
                placement.instance_type,
                placement.region or DEFAULT_REGION,
                accelerator=job.resources.accelerator,
            )
        except Exception:  # a broken user catalog must not break rendering
            offer = None
    if offer is not None and offer.accelerator_type:
        return str(offer.accelerator_type), int(offer.accelerator_count or count)
    return ACCELERATOR_TYPES.get(name, name), count


def environment(job: Job, placement: Placement, ctx: LaunchContext) -> dict[str, str]:
    """The contract, then the job's own. The checkpoint, output and input locations are given as
    their Cloud Storage FUSE paths (with the gs:// URI of the checkpoint too): inside the job, the
    runtime then needs fsspec only, never gcsfs, which Vertex's images do not promise."""
    return jobenv.build(
        job,
        ctx,
        PROVIDER,
        NOTICE_SECONDS,
        checkpoint_uri=gs_uri(ctx.checkpoint_uri),
        checkpoint_dir=fuse_path(ctx.checkpoint_uri) if _is_gs(ctx.checkpoint_uri) else None,
        output_uri=fuse_uri(ctx.output_uri),
        inputs={name: fuse_uri(uri) for name, uri in job.inputs.items()},
    )


def fuse_uri(uri: str) -> str:
    """gs://bucket/path → file:///gcs/bucket/path; anything else unchanged."""
    return f"file://{fuse_path(uri)}" if _is_gs(uri) else uri


def nproc_per_node(job: Job) -> int:
    return max(1, job.resources.accelerator_count)


def launches(job: Job, placement: Placement) -> bool:
    """Whether the command starts through torchrun: a Python command, several GPUs or nodes."""
    nodes = placement.count or job.resources.nodes
    return (
        options(job).get("distribution", "torchrun") == "torchrun"
        and bool(job.command)
        and job.command[0] in PYTHON_NAMES
        and (nodes > 1 or nproc_per_node(job) > 1)
    )


def command(job: Job, placement: Placement, ctx: LaunchContext) -> tuple[list[str], list[str]]:
    """(container command, args). The command, when the job needs more than its own command: install
    the shipped wheels offline, unpack the source from the FUSE mount, launch one process per GPU."""
    args = job.argv()[len(job.command) :]  # the hyperparameters as --key value
    steps = []
    if wheels_uri(job, ctx.job_id, ctx.attempt):
        steps.append(install_command("$MULTISPOT_WHEELS"))
    if source_tarball_uri(job, ctx.job_id):
        steps.append(
            'mkdir -p /tmp/multispot-src; tar -xzf "$MULTISPOT_SOURCE_TARBALL" -C /tmp/multispot-src; '
            "cd /tmp/multispot-src"
        )
    secrets = "python3 -m multispot.runtime.secrets --exec -- " if job.secrets else ""  # resolved in the job
    if launches(job, placement):
        steps.append(
            f'exec {secrets}python3 -m {LAUNCH_MODULE} --nproc-per-node {nproc_per_node(job)} -- "$@"'
        )
    elif secrets:
        steps.append(f'exec {secrets}"$@"')
    if not steps:
        return list(job.command), args
    if not steps[-1].startswith("exec "):
        steps.append('exec "$@"')
    return ["sh", "-c", "set -e; " + "; ".join(steps), "multispot-launch"], [*job.command, *args]


def render(job: Job, placement: Placement, ctx: LaunchContext) -> dict[str, Any]:
    """The CustomJob as protobuf JSON (``json_format`` mapping of aiplatform_v1.CustomJob)."""
    opts = options(job)
    accel_type, accel_count = accelerator(job, placement)
    machine: dict[str, Any] = {
        "machineType": placement.instance_type or job.resources.instance_type or "n1-standard-4"
    }
    if accel_type:
        machine["acceleratorType"] = accel_type
        machine["acceleratorCount"] = accel_count
    cmd, args = command(job, placement, ctx)
    env = environment(job, placement, ctx)
    tarball = source_tarball_uri(job, ctx.job_id)
    if tarball:
        env["MULTISPOT_SOURCE_TARBALL"] = fuse_path(tarball)
    wheels = wheels_uri(job, ctx.job_id, ctx.attempt)
    if wheels:
        env["MULTISPOT_WHEELS"] = fuse_path(wheels)
    container: dict[str, Any] = {
        "imageUri": job.image or "",
        "command": cmd,
        # EnvVar.value: "$(VAR_NAME)" is expanded by the service; "$$(" keeps the value as written.
        "env": [{"name": key, "value": value.replace("$(", "$$(")} for key, value in env.items()],
    }
    if args:
        container["args"] = args
    disk = {
        "bootDiskType": str(opts.get("boot_disk_type", "pd-ssd")),
        "bootDiskSizeGb": int(opts.get("boot_disk_gb", 100)),
    }
    nodes = placement.count or job.resources.nodes
    pools: list[dict[str, Any]] = [
        {"machineSpec": machine, "replicaCount": "1", "containerSpec": container, "diskSpec": disk}
    ]
    if nodes > 1:
        pools.append(
            {
                "machineSpec": dict(machine),
                "replicaCount": str(nodes - 1),
                "containerSpec": container,
                "diskSpec": disk,
            }
        )
    scheduling: dict[str, Any] = {"strategy": "SPOT" if placement.market == "spot" else "STANDARD"}
    if opts.get("restart_job_on_worker_restart", nodes > 1):
        scheduling["restartJobOnWorkerRestart"] = True
    if job.limits.max_runtime is not None:
        scheduling["timeout"] = f"{int(job.limits.max_runtime)}s"
    spec: dict[str, Any] = {"workerPoolSpecs": pools, "scheduling": scheduling}
    if _is_gs(ctx.output_uri):
        spec["baseOutputDirectory"] = {"outputUriPrefix": gs_uri(ctx.output_uri)}
    if opts.get("service_account"):
        spec["serviceAccount"] = str(opts["service_account"])
    if opts.get("network"):
        spec["network"] = str(opts["network"])
    labels = {key: value for key, value in job.tags.items()}
    labels[JOB_LABEL] = label_value(ctx.job_id)
    labels[ATTEMPT_LABEL] = str(ctx.attempt)
    return {
        "displayName": display_name(ctx.job_id, ctx.attempt),
        "jobSpec": spec,
        "labels": dict(sorted(labels.items())),
    }


def display_name(job_id: str, attempt: int) -> str:
    suffix = f"-attempt-{attempt}"
    return job_id[: MAX_DISPLAY_NAME - len(suffix)] + suffix


def list_filter(job_id: str, attempt: int) -> str:
    """The ListCustomJobs filter that finds an attempt already created (idempotent submit).

    ListCustomJobsRequest.filter documents ``display_name`` with ``=`` and a quoted string
    (``display_name="my_job"``), a form every reading of the AIP-160 grammar accepts; a label key
    with '-' in an unquoted traversal (``labels.multispot-job-id=…``) is not promised by it. The
    caller checks the labels of what comes back (``is_attempt``)."""
    name = display_name(job_id, attempt).replace("\\", "\\\\").replace('"', '\\"')
    return f'display_name="{name}"'


def is_attempt(labels: Any, job_id: str, attempt: int) -> bool:
    return bool(labels.get(JOB_LABEL) == label_value(job_id) and labels.get(ATTEMPT_LABEL) == str(attempt))


# ----------------------------------------------------------------- reading a CustomJob back


def _time(stamp: str | None) -> float | None:
    if not stamp:
        return None
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def native_state(job: dict[str, Any]) -> JobState:
    """The state of a CustomJob in protobuf JSON form; FAILED refined by its error."""
    native = str(job.get("state", "JOB_STATE_UNSPECIFIED"))
    if native not in STATES:
        raise UnknownProviderState(f"Vertex job state {native!r} is not in the state table")
    state = STATES[native]
    error = job.get("error") or {}
    text, code = str(error.get("message", "")), int(error.get("code", 0) or 0)
    if state is not JobState.FAILED or not (text or code):
        return state
    ran = bool(job.get("startTime"))
    if PREEMPTED_ERROR.search(text) or (ran and NOTICE_EXIT_ERROR.search(text)):
        return JobState.PREEMPTED
    stockout = bool(STOCKOUT_ERROR.search(text)) or (
        code == RESOURCE_EXHAUSTED and not QUOTA_ERROR.search(text)
    )
    if stockout:
        return JobState.PREEMPTED if ran else JobState.NO_CAPACITY  # ran: the reclaimed VM came not back
    if QUOTA_ERROR.search(text) and not ran:
        return JobState.NO_CAPACITY
    return state


def message(job: dict[str, Any]) -> str:
    """The CustomJob's error message, else a word for its state."""
    error = str((job.get("error") or {}).get("message", ""))
    if error:
        return error
    native = str(job.get("state", "JOB_STATE_UNSPECIFIED"))
    return {
        "JOB_STATE_QUEUED": "queued",
        "JOB_STATE_PENDING": "provisioning",
        "JOB_STATE_RUNNING": "running",
        "JOB_STATE_SUCCEEDED": "succeeded",
        "JOB_STATE_CANCELLED": "cancelled",
        "JOB_STATE_EXPIRED": "expired",
    }.get(native, native.removeprefix("JOB_STATE_").lower())


def times(job: dict[str, Any]) -> tuple[float | None, float | None]:
    return _time(job.get("startTime")), _time(job.get("endTime"))


def usage(job: dict[str, Any], now: float | None = None) -> Usage:
    """What the attempt used: Vertex bills from the start of running to the end (queued time is free)."""
    started, ended = times(job)
    runtime = max(0.0, (ended or now or time.time()) - started) if started else 0.0
    spec = job.get("jobSpec", {})
    pools = spec.get("workerPoolSpecs", [])
    count = sum(int(pool.get("replicaCount", 0)) for pool in pools) or 1
    machine = pools[0].get("machineSpec", {}).get("machineType") if pools else None
    strategy = spec.get("scheduling", {}).get("strategy", "STANDARD")
    parts = str(job.get("name", "")).split("/")
    region = parts[3] if len(parts) > 3 and parts[2] == "locations" else None
    return Usage(
        runtime_seconds=runtime,
        billable_seconds=runtime,
        instance_type=machine,
        count=count,
        market="spot" if strategy == "SPOT" else "on-demand",
        region=region,
        source="CustomJob startTime/endTime",
    )
