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

from multispot import jobenv, ship
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
# A curated PyTorch environment from the azureml registry. It has no multispot: by default the
# submit ships multispot's wheels in the code asset and the command installs them offline
# (``install: shipped``); ``install: image`` is for an environment built with multispot in it
# (examples/images/azureml/Dockerfile).
DEFAULT_ENVIRONMENT = "azureml://registries/azureml/environments/acpt-pytorch-2.2-cuda12.1/labels/latest"
INSTALL_MODES = ("shipped", "image")
MAX_NAME = 255  # Azure ML job names: letters, digits, '-' and '_', at most 255 characters
MAX_CLUSTER_NODES = 100
CODE_PLACEHOLDER = "<code version uploaded at submit: source_dir and multispot-wheels/>"
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
    "install": "how multispot reaches the job: 'shipped' (default: wheels of the submitting multispot "
    "in the code asset, installed offline before the command) or 'image' (the environment has it)",
    "storage": "the blob storage of `datastore` as <account>/<container>: default checkpoint/output "
    "URIs are written without looking the datastore up (otherwise it is looked up at submit)",
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
_PYTHON = re.compile(r"^(.*/)?python[0-9.]*$")
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
    if opts.get("install", "shipped") not in INSTALL_MODES:
        found.append(
            (
                f"provider_options.{PROVIDER}.install",
                "use 'shipped' (wheels of this multispot travel in the code asset and install offline) "
                "or 'image' (the environment has multispot); a pip spec needs a package index the job "
                "may not reach",
            )
        )
    elif opts.get("install") == "image" and not (job.image or opts.get("environment")):
        found.append(
            (
                f"provider_options.{PROVIDER}.install",
                "the default environment has no multispot: name an environment or image that has it "
                "(examples/images/azureml/Dockerfile), or use install: shipped",
            )
        )
    if "storage" in opts and _storage(opts) is None:
        found.append((f"provider_options.{PROVIDER}.storage", "write <account>/<container>"))
    for path, uri in (("checkpoint.uri", job.checkpoint.uri), ("output_uri", job.output_uri)):
        if uri is not None and not (_DATASTORE_URI.match(uri) or _URI.match(uri)):
            found.append(
                (
                    path,
                    "Azure ML mounts azureml://datastores/<name>/paths/<path>, abfs://<container>/<path> "
                    "or az://<container>/<path>",
                )
            )
    if job.checkpoint.uri and _DATASTORE_URI.match(job.checkpoint.uri):
        found.append(
            (
                "checkpoint.uri",
                "multispot reads checkpoints from outside the job (status, resume), and fsspec cannot "
                "open azureml:// URIs: write az://<container>@<account>.blob.core.windows.net/<path> "
                "(mounted through the datastore on that container), or leave it out for the default",
            )
        )
    for name, uri in job.inputs.items():
        if not uri.startswith(_INPUT_SCHEMES):
            found.append((f"inputs.{name}", f"Azure ML reads inputs from {', '.join(_INPUT_SCHEMES)}"))
    if not job.command:
        found.append(("command", "give the command to run"))
    if placement is not None and not found:
        found += request_problems(job, render(job, placement, sample_context(job)))
    if placement is not None and compute_for(job, placement).cluster is None and not placement.instance_type:
        found.append(
            (
                "resources",
                "serverless compute needs a VM size: set resources.instance_type (e.g. "
                "Standard_NC6s_v3), an accelerator, or provider_options.azureml.compute",
            )
        )
    return found


@dataclass(frozen=True)
class Datastore:
    """A blob datastore of the workspace: the container it points at, in which account."""

    name: str
    account: str
    container: str
    endpoint: str = "core.windows.net"

    def uri(self, path: str) -> str:
        """The URI fsspec (adlfs) opens: the account travels in the host."""
        return f"az://{self.container}@{self.account}.blob.{self.endpoint}/{path.strip('/')}"


def _storage(opts: dict[str, Any]) -> Datastore | None:
    """The ``storage`` option (``<account>/<container>``) as the named datastore's storage."""
    value = opts.get("storage")
    if not isinstance(value, str) or not re.fullmatch(r"[a-z0-9]{3,24}/[a-z0-9][a-z0-9-]{2,62}", value):
        return None
    account, container = value.split("/")
    return Datastore(str(opts.get("datastore") or DEFAULT_DATASTORE), account, container)


def default_uri(kind: str, job_id: str, job: Job) -> str:
    """Where ``kind`` lives when the job names no URI: on the job's datastore.

    With ``storage`` given this is the az:// URI multispot opens; otherwise it is the datastore's
    azureml:// name, which the provider resolves to the datastore's container at submit
    (``AzureMLProvider.default_uri``): fsspec cannot open azureml:// URIs.
    """
    opts = options(job)
    path = f"multispot/{job_id}/{kind}"
    known = _storage(opts)
    if known is not None:
        return known.uri(path)
    datastore = opts.get("datastore") or DEFAULT_DATASTORE
    return f"azureml://datastores/{datastore}/paths/{path}"


def parse_blob_uri(uri: str) -> tuple[str, str | None, str] | None:
    """(container, account or None, path) of an az://, abfs:// or abfss:// URI."""
    match = _URI.match(uri)
    if match is None:
        return None
    host = (match[3] or "").lstrip("@")
    account = host.split(".", 1)[0] if host else None
    return match["container"], account, match["path"].strip("/")


class NoDatastore(ValueError):
    """No datastore of the workspace points at a URI's container."""


def datastore_uri(uri: str, datastores: list[Datastore] | None, preferred: str = DEFAULT_DATASTORE) -> str:
    """An abfs://, az:// or azureml:// URI as the datastore path Azure ML mounts.

    Azure ML writes outputs only to datastore paths (azureml://datastores/<name>/paths/<path>:
    "Access data in a job", supported output paths), so a blob URI is mounted through a datastore
    on the same container (and account, when the URI names one). ``datastores``: the workspace's,
    looked up at submit; None when unknown (a dry run), then the datastore is shown unresolved.
    Never rewritten onto another container: NoDatastore when none matches.
    """
    if uri.startswith("azureml://"):
        return uri.rstrip("/")
    parsed = parse_blob_uri(uri)
    if parsed is None:
        raise ValueError(f"{uri} is not an Azure Blob URI")
    container, account, path = parsed
    if datastores is None:
        return f"azureml://datastores/<datastore on container {container}, found at submit>/paths/{path}"
    matches = [
        d for d in datastores if d.container == container and (account is None or d.account == account)
    ]
    matches.sort(key=lambda d: (d.name != preferred, d.name))
    if not matches:
        where = f"container {container}" + (f" in account {account}" if account else "")
        raise NoDatastore(
            f"no datastore of the workspace points at {where}: register one (az ml datastore create, "
            "type azure_blob) or use a URI on a registered datastore's container"
        )
    return f"azureml://datastores/{matches[0].name}/paths/{path}"


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


def install_line(job: Job) -> str | None:
    """The shell line that installs the shipped wheels (``install: shipped``), or None.

    Azure ML runs the command once per process (PyTorch distribution: one per GPU), so the install
    runs under a lock, once per container: the first process installs, the others find the marker.
    The interpreter is the command's own when it starts with one (python, python3.11), else python.
    """
    if options(job).get("install", "shipped") != "shipped":
        return None
    argv = job.argv()
    python = argv[0] if argv and _PYTHON.match(argv[0]) else "python"
    tmp = "${TMPDIR:-/tmp}"
    marker = f'"{tmp}/multispot-installed-${{AZUREML_RUN_ID:-job}}"'
    install = ship.install_command(ship.WHEEL_DIR, python=shlex.quote(python))
    return (
        f"( command -v flock >/dev/null && flock 9; [ -e {marker} ] || {{ {install} && touch {marker}; }} )"
        f' 9>"{tmp}/multispot-install.lock"'
    )


def command_line(job: Job) -> str:
    """The shell command Azure ML runs (in the code folder): the offline install of the shipped
    multispot, then the user's command, with the mounts' paths as MULTISPOT_* variables."""
    binds = [f"{name}={value}" for name, value in command_bindings(job).items()]
    argv = job.argv()
    if job.secrets:  # secrets by reference: resolved inside the job, before the command starts
        python = argv[0] if argv and _PYTHON.match(argv[0]) else "python"
        argv = [python, "-m", "multispot.runtime.secrets", "--exec", "--", *argv]
    run = "env " + " ".join(binds) + " " + shlex.join(argv)
    install = install_line(job)
    return run if install is None else f"{install} && {run}"


def environment(job: Job, placement: Placement, ctx: LaunchContext) -> dict[str, str]:
    """The contract less what the command line binds, then the job's own variables."""
    return jobenv.build(job, ctx, PROVIDER, NOTICE_SECONDS, in_command=command_bindings(job))


def build(
    job: Job,
    placement: Placement,
    ctx: LaunchContext,
    code: str | None,
    datastores: list[Datastore] | None = None,
) -> Command:
    """The SDK's command job for this attempt (no I/O: submit hands it to MLClient).

    ``code``: the folder uploaded as the code asset (at submit: source_dir plus the wheels);
    ``datastores``: the workspace's, to mount blob URIs through (None: unresolved, a dry run).
    """
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
    stored = _storage(opts)
    known = datastores if datastores is not None else ([stored] if stored else None)

    def mount(uri: str) -> str:
        try:
            return datastore_uri(uri, known, datastore)
        except NoDatastore:
            if datastores is not None:
                raise
            return datastore_uri(uri, None)  # a dry run: the datastore is found at submit

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
            name: Input(type="uri_folder", path=mount(uri) if _URI.match(uri) else uri)
            for name, uri in sorted(job.inputs.items())
        },
        outputs={
            CHECKPOINT_OUTPUT: Output(type="uri_folder", mode="rw_mount", path=mount(ctx.checkpoint_uri)),
            OUTPUT_OUTPUT: Output(type="uri_folder", mode="rw_mount", path=mount(ctx.output_uri)),
        },
        tags=tags,
        timeout=int(job.limits.max_runtime) if job.limits.max_runtime else None,
    )


def render(job: Job, placement: Placement, ctx: LaunchContext) -> dict[str, Any]:
    """The REST body of this attempt's command job (the code shown as a placeholder)."""
    shipped = options(job).get("install", "shipped") == "shipped"
    return rest_body(
        build(job, placement, ctx, code=job.source_dir or (CODE_PLACEHOLDER if shipped else None))
    )


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


# --------------------------------------------------------------------------- the service's limits

# The limits a rendered request must keep, each from the service's (or the platform's) docs:
# - job and experiment names: letters, digits, '-' and '_', starting with a letter or digit, at
#   most 255 characters (Azure ML REST API, Jobs - Create Or Update: ``name`` pattern
#   ``^[a-zA-Z0-9][a-zA-Z0-9\-_]{0,254}$``; experimentName likewise);
# - compute cluster names: 2 to 16 characters, letters, digits and '-', starting with a letter
#   ("Create an Azure Machine Learning compute cluster", name rules);
# - tags: at most 50, names at most 512 characters, values at most 256 ("Use tags to organize
#   your Azure resources", limitations; the cluster's tags are ARM tags, and job tags are held to
#   the same so a tag copied to the cluster for cost stays valid);
# - the command runs as ``bash -c <command>`` with the variables in its environment: on Linux one
#   argument, and one NAME=value string, is at most 131,072 bytes (MAX_ARG_STRLEN), and the
#   arguments and environment together at most ARG_MAX, 2 MiB by default (execve(2), "Limits on
#   size of arguments and environment"); variable names are POSIX names.
NAME_PATTERN = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_-]{0,254}$")
CLUSTER_PATTERN = re.compile(r"^[a-zA-Z][a-zA-Z0-9-]{1,15}$")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
MAX_TAGS, MAX_TAG_NAME, MAX_TAG_VALUE = 50, 512, 256
MAX_ARG_BYTES = 131_072
MAX_EXEC_BYTES = 2 * 1024 * 1024


def sample_context(job: Job) -> LaunchContext:
    """A context as a submit would make it (the longest job id multispot generates for this name),
    to check the limits before anything is uploaded."""
    job_id = f"{job.name}-{'0' * 6}"
    return LaunchContext(
        job_id,
        1,
        job.checkpoint.uri or default_uri("checkpoints", job_id, job),
        job.output_uri or default_uri("outputs", job_id, job),
        env=dict(job.env),
    )


def _env_field(job: Job, name: str) -> str:
    if name in job.env:
        return f"env.{name}"
    if name == jobenv.HYPERPARAMETERS:
        return "hyperparameters"
    for input_name in job.inputs:
        if name == jobenv.input_var(input_name):
            return f"inputs.{input_name}"
    if name in (jobenv.CHECKPOINT_URI,):
        return "checkpoint.uri"
    if name == jobenv.OUTPUT_URI:
        return "output_uri"
    return "env"


def request_problems(job: Job, body: dict[str, Any]) -> list[tuple[str, str]]:
    """Every service limit the rendered request breaks, with the Job's field path."""
    found: list[tuple[str, str]] = []
    props = body.get("properties") or {}
    opts = options(job)
    experiment_field = f"provider_options.{PROVIDER}.experiment" if opts.get("experiment") else "name"
    if not NAME_PATTERN.match(str(props.get("experimentName") or "")):
        found.append(
            (experiment_field, "an Azure ML experiment name: letters, digits, '-', '_', at most 255")
        )
    if not NAME_PATTERN.match(str(body.get("name") or "x")):
        found.append(("name", "the Azure ML job name made from it breaks the service's name rules"))
    if len(str(props.get("displayName") or "")) > 255:
        found.append(("name", "at most 255 characters (the job's display name)"))
    for key in ("compute", "on_demand_compute"):
        value = opts.get(key)
        if isinstance(value, str) and value and not CLUSTER_PATTERN.match(value):
            found.append(
                (
                    f"provider_options.{PROVIDER}.{key}",
                    "a cluster name: 2 to 16 letters, digits or '-', starting with a letter",
                )
            )
    tags = props.get("tags") or {}
    if len(tags) > MAX_TAGS:
        found.append(("tags", f"at most {MAX_TAGS - 2} tags (multispot adds {JOB_ID_TAG} and {ATTEMPT_TAG})"))
    for key, value in tags.items():
        if len(key) > MAX_TAG_NAME or len(str(value)) > MAX_TAG_VALUE:
            found.append(
                (
                    f"tags.{key}"[:80],
                    f"tag names at most {MAX_TAG_NAME} characters, values at most {MAX_TAG_VALUE}",
                )
            )
    command = str(props.get("command") or "")
    if len(command.encode()) > MAX_ARG_BYTES:
        found.append(("command", f"the command Azure ML runs is over {MAX_ARG_BYTES} bytes"))
    total = len(command.encode())
    for name, value in (props.get("environmentVariables") or {}).items():
        size = len(f"{name}={value}".encode()) + 1
        total += size
        if not ENV_NAME.match(name):
            found.append((_env_field(job, name), f"{name!r} is not a variable name (letters, digits, _)"))
        elif size > MAX_ARG_BYTES:
            found.append(
                (_env_field(job, name), f"{name} is {size} bytes; one variable is at most {MAX_ARG_BYTES}")
            )
    if total > MAX_EXEC_BYTES:
        found.append(("env", f"the command and variables are {total} bytes; at most {MAX_EXEC_BYTES}"))
    return found


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
