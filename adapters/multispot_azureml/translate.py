"""Job + Placement + LaunchContext → an Azure ML command job, and the service's words → multispot's.

Pure: nothing here talks to Azure. The SDK (``azure-ai-ml``) is imported inside the functions
that build its objects, so importing this module stays cheap. ``rest_body`` is exactly what the
SDK sends in ``PUT .../jobs/{name}`` (``job._to_job()._to_rest_object().as_dict()``), except the
two references only resolved at submit: the uploaded code version and an image's anonymous
environment, which are shown as placeholders.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from multispot import jobenv
from multispot.errors import UnknownProviderState
from multispot.provider import LaunchContext, unknown_options
from multispot.status import JobState, Placement
from multispot_azureml import jobenv as service

if TYPE_CHECKING:
    from azure.ai.ml.entities import Command

    from multispot.job import Job

PROVIDER = service.NAME
NOTICE_SECONDS = service.NOTICE_SECONDS
CHECKPOINT_OUTPUT = service.CHECKPOINT_OUTPUT  # the read-write mounted output holding the contract
OUTPUT_OUTPUT = service.OUTPUT_OUTPUT

DEFAULT_DATASTORE = "workspaceblobstore"
# A curated PyTorch environment from the azureml registry; the job must also have multispot
# installed (e.g. `pip install multispot` in the command, or an image that has it).
DEFAULT_ENVIRONMENT = "azureml://registries/azureml/environments/acpt-pytorch-2.2-cuda12.1/labels/latest"
MAX_NAME = 255  # Azure ML job names: letters, digits, '-' and '_', at most 255 characters
MAX_CLUSTER_NODES = 100
CODE_PLACEHOLDER = "<code version uploaded from source_dir at submit>"
JOB_ID_TAG = "multispot-job-id"
ATTEMPT_TAG = "multispot-attempt"

OPTIONS = {
    "subscription_id": "Azure subscription id (needed to submit, not for --dry-run)",
    "resource_group": "resource group of the workspace",
    "workspace": "Azure ML workspace name",
    "region": "the workspace's region, used for prices (default eastus)",
    "compute": "AmlCompute cluster for spot placements (low-priority tier); omit for serverless spot",
    "create_compute": "create `compute` if it does not exist (low_priority, min 0 nodes): true/false",
    "max_nodes": "max_instances of a cluster created by create_compute (default: resources.nodes)",
    "on_demand_compute": "dedicated cluster for on-demand placements; omit for serverless standard tier",
    "datastore": "datastore whose container holds abfs:// or az:// checkpoint/output URIs "
    "(default workspaceblobstore)",
    "experiment": "experiment name (default: the job's name)",
    "environment": "environment when `image` is not set (default: a curated PyTorch environment)",
    "cost_filter": "measured billing from Cost Management: 'resource' (the cluster is dedicated "
    "to this job) or 'tag' (the cluster carries the tag multispot-job-id)",
}

# The SDK's job states (azure.ai.ml.constants.JobStatus) → multispot's. "Unknown" is left out on
# purpose: an unknown state is an error, never a guess.
STATES: dict[str, JobState] = {
    "NotStarted": JobState.SUBMITTED,
    "Queued": JobState.STARTING,
    "Preparing": JobState.STARTING,
    "Provisioning": JobState.STARTING,
    "Starting": JobState.STARTING,
    "Paused": JobState.STARTING,
    "Running": JobState.RUNNING,
    "NotResponding": JobState.RUNNING,  # heartbeats missing; the service still counts it as active
    "Finalizing": JobState.RUNNING,
    "CancelRequested": JobState.RUNNING,
    "Completed": JobState.SUCCEEDED,
    "Failed": JobState.FAILED,
    "Canceled": JobState.CANCELLED,
}
_PREEMPT_WORDS = ("preempt", "lowpriority node", "low priority node", "evict")
_URI = re.compile(r"^(abfss?|az)://(?P<container>[^/@]+)(@[^/]+)?/?(?P<path>.*)$")
_DATASTORE_URI = re.compile(r"^azureml://datastores/[^/]+/paths/.+")
_INPUT_SCHEMES = ("azureml://", "abfs://", "abfss://", "az://", "https://", "wasbs://", "adl://")


# --------------------------------------------------------------------------- options


def options(job: Job) -> dict[str, Any]:
    return dict(job.provider_options.get(PROVIDER, {}))


def region(job: Job) -> str:
    return str(options(job).get("region") or "eastus")


def problems(job: Job, placement: Placement | None = None) -> list[tuple[str, str]]:
    """Every reason this job cannot run on Azure ML as written (on ``placement``, when given),
    with its field path."""
    found: list[tuple[str, str]] = []
    opts = options(job)
    found += unknown_options(PROVIDER, opts, OPTIONS)
    for key in ("subscription_id", "resource_group", "workspace", "compute", "on_demand_compute"):
        if key in opts and (not isinstance(opts[key], str) or not opts[key]):
            found.append((f"provider_options.{PROVIDER}.{key}", "must be a non-empty string"))
    if "create_compute" in opts and not isinstance(opts["create_compute"], bool):
        found.append((f"provider_options.{PROVIDER}.create_compute", "write true or false"))
    if opts.get("create_compute") and not opts.get("compute"):
        found.append((f"provider_options.{PROVIDER}.create_compute", "name the cluster in `compute`"))
    if "max_nodes" in opts:
        nodes = opts["max_nodes"]
        if not isinstance(nodes, int) or not job.resources.nodes <= nodes <= MAX_CLUSTER_NODES:
            found.append(
                (
                    f"provider_options.{PROVIDER}.max_nodes",
                    f"an integer from resources.nodes ({job.resources.nodes}) to {MAX_CLUSTER_NODES}",
                )
            )
    if opts.get("cost_filter") not in (None, "resource", "tag"):
        found.append((f"provider_options.{PROVIDER}.cost_filter", "use 'resource' or 'tag'"))
    for path, uri in (("checkpoint.uri", job.checkpoint.uri), ("output_uri", job.output_uri)):
        if uri is not None and not (_DATASTORE_URI.match(uri) or _URI.match(uri)):
            found.append(
                (
                    path,
                    "Azure ML mounts azureml://datastores/<name>/paths/<path>, abfs://<container>/<path> "
                    "or az://<container>/<path>",
                )
            )
    for name, uri in job.inputs.items():
        if not uri.startswith(_INPUT_SCHEMES):
            found.append((f"inputs.{name}", f"Azure ML reads inputs from {', '.join(_INPUT_SCHEMES)}"))
    if not job.command:
        found.append(("command", "give the command to run"))
    if placement is not None and compute_for(job, placement).cluster is None and not placement.instance_type:
        found.append(
            (
                "resources",
                "serverless compute needs a VM size: set resources.instance_type (e.g. "
                "Standard_NC6s_v3), an accelerator, or provider_options.azureml.compute",
            )
        )
    return found


def default_uri(kind: str, job_id: str, job: Job) -> str:
    """Where ``kind`` lives when the job names no URI: on the job's datastore."""
    datastore = options(job).get("datastore") or DEFAULT_DATASTORE
    return f"azureml://datastores/{datastore}/paths/multispot/{job_id}/{kind}"


def datastore_uri(uri: str, datastore: str) -> str:
    """An abfs://, az:// or azureml:// URI as the datastore path Azure ML mounts."""
    if uri.startswith("azureml://"):
        return uri.rstrip("/")
    match = _URI.match(uri)
    if match is None:
        raise ValueError(f"{uri} is not an Azure Blob URI")
    # The datastore's root is its container: the URI's container must be the datastore's.
    return f"azureml://datastores/{datastore}/paths/{match['path'].strip('/')}"


def job_name(ctx: LaunchContext) -> str:
    """One name per (job, attempt): a retried submit finds the job instead of starting another."""
    name = re.sub(r"[^a-zA-Z0-9_-]", "-", f"ms-{ctx.job_id}-a{ctx.attempt}").lower()
    return name[:MAX_NAME]


# --------------------------------------------------------------------------- the command job


@dataclass(frozen=True)
class Compute:
    """Where the job runs: a named cluster, or serverless with a queue tier."""

    cluster: str | None
    tier: str | None  # serverless only: "spot" or "standard"
    create: bool = False


def compute_for(job: Job, placement: Placement) -> Compute:
    opts = options(job)
    if placement.market == "spot":
        if opts.get("compute"):
            return Compute(str(opts["compute"]), None, bool(opts.get("create_compute", False)))
        return Compute(None, "spot")
    if opts.get("on_demand_compute"):
        return Compute(str(opts["on_demand_compute"]), None)
    return Compute(None, "standard")


def command_bindings(job: Job) -> dict[str, str]:
    """Contract variables only the command line can set: the mounts' paths (Azure ML resolves
    ``${{outputs.x}}``/``${{inputs.x}}`` there, not in environment_variables)."""
    binds = {
        jobenv.CHECKPOINT_DIR: f"${{{{outputs.{CHECKPOINT_OUTPUT}}}}}",
        jobenv.OUTPUT_URI: f"file://${{{{outputs.{OUTPUT_OUTPUT}}}}}",
    }
    binds.update({jobenv.input_var(name): f"${{{{inputs.{name}}}}}" for name in sorted(job.inputs)})
    return binds


def command_line(job: Job) -> str:
    """The shell command Azure ML runs; the mounts' paths reach the runtime as MULTISPOT_* variables."""
    binds = [f"{name}={value}" for name, value in command_bindings(job).items()]
    return "env " + " ".join(binds) + " " + shlex.join(job.argv())


def environment(job: Job, placement: Placement, ctx: LaunchContext) -> dict[str, str]:
    """The contract less what the command line binds, then the job's own variables."""
    return jobenv.build(job, ctx, PROVIDER, NOTICE_SECONDS, in_command=command_bindings(job))


def build(job: Job, placement: Placement, ctx: LaunchContext, code: str | None) -> Command:
    """The SDK's command job for this attempt (no I/O: submit hands it to MLClient)."""
    import logging

    from azure.ai.ml import Input, Output, PyTorchDistribution, command
    from azure.ai.ml.entities import Environment, JobResourceConfiguration, QueueSettings

    logging.getLogger("azure.ai.ml").setLevel(logging.ERROR)  # "QueueSettings is experimental"
    opts = options(job)
    datastore = str(opts.get("datastore") or DEFAULT_DATASTORE)
    where = compute_for(job, placement)
    runs_in: Any = job.image or str(opts.get("environment") or DEFAULT_ENVIRONMENT)
    if job.image and not job.image.startswith("azureml:"):
        runs_in = Environment(image=job.image)
    gpus = job.resources.accelerator_count if job.resources.accelerator_name else 0
    resources = JobResourceConfiguration(instance_count=job.resources.nodes)
    if where.cluster is None:
        resources.instance_type = placement.instance_type
    tags = dict(job.tags)
    tags.update({JOB_ID_TAG: ctx.job_id, ATTEMPT_TAG: str(ctx.attempt)})
    return command(
        name=job_name(ctx),
        display_name=job.name,
        experiment_name=str(opts.get("experiment") or job.name),
        code=code,
        command=command_line(job),
        environment=runs_in,
        environment_variables=environment(job, placement, ctx),
        compute=where.cluster,
        resources=resources,
        queue_settings=QueueSettings(job_tier=where.tier) if where.tier else None,
        distribution=PyTorchDistribution(process_count_per_instance=max(1, gpus))
        if job.resources.nodes > 1 or gpus > 1
        else None,
        inputs={
            name: Input(type="uri_folder", path=datastore_uri(uri, datastore) if _URI.match(uri) else uri)
            for name, uri in sorted(job.inputs.items())
        },
        outputs={
            CHECKPOINT_OUTPUT: Output(
                type="uri_folder", mode="rw_mount", path=datastore_uri(ctx.checkpoint_uri, datastore)
            ),
            OUTPUT_OUTPUT: Output(
                type="uri_folder", mode="rw_mount", path=datastore_uri(ctx.output_uri, datastore)
            ),
        },
        tags=tags,
        timeout=int(job.limits.max_runtime) if job.limits.max_runtime else None,
    )


def render(job: Job, placement: Placement, ctx: LaunchContext) -> dict[str, Any]:
    """The REST body of this attempt's command job (the code shown as a placeholder)."""
    return rest_body(build(job, placement, ctx, code=job.source_dir))


def rest_body(cmd: Command) -> dict[str, Any]:
    """What ``PUT jobs/{name}`` carries for this command job."""
    from azure.ai.ml.entities import Environment

    environment = cmd.environment
    if isinstance(environment, Environment):
        cmd.environment = "<anonymous environment registered at submit>"
    try:
        body: dict[str, Any] = cmd._to_job()._to_rest_object().as_dict()
    finally:
        cmd.environment = environment
    if isinstance(environment, Environment):
        body["properties"]["environmentId"] = f"<anonymous environment for image {environment.image}>"
    if body["properties"].get("codeId"):
        body["properties"]["codeId"] = CODE_PLACEHOLDER
    return body


# --------------------------------------------------------------------------- what comes back


def native_state(native: str, failed_by_preemption: bool) -> JobState:
    if native not in STATES:
        raise UnknownProviderState(f"Azure ML job status {native!r} is not in the state table")
    state = STATES[native]
    return JobState.PREEMPTED if state is JobState.FAILED and failed_by_preemption else state


def mentions_preemption(text: str) -> bool:
    low = text.lower()
    return any(word in low for word in _PREEMPT_WORDS)


def preemption_evidence(details: dict[str, Any]) -> tuple[bool, int]:
    """From run details: (the run ended because its nodes were preempted, preemptions absorbed).

    Azure ML has no "Preempted" status. A low-priority run whose node is reclaimed is either
    re-queued by the service (a warning is left on the run) or ends Failed with an error that
    names the preemption; both are read here, by the words the service uses.
    """
    error = (details.get("error") or {}).get("error") or {}
    text = f"{error.get('code', '')} {error.get('message', '')}"
    warnings = [w for w in details.get("warnings") or [] if mentions_preemption(str(w.get("message", "")))]
    return mentions_preemption(text), len(warnings)


def parse_time(value: str | None) -> float | None:
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def runtime_seconds(details: dict[str, Any], now: float) -> float:
    """Node time of the run: start to end (or now), as Azure bills a node while the run holds it."""
    start = parse_time(details.get("startTimeUtc"))
    if start is None:
        return 0.0
    end = parse_time(details.get("endTimeUtc")) or now
    return max(0.0, end - start)
