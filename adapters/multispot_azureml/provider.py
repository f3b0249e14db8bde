"""The Azure ML provider: command jobs on low-priority clusters or serverless spot, via ``azure-ai-ml``.

Every call goes through the real SDK (``MLClient``), imported only when a job is submitted or
watched; ``render`` and ``validate`` need no credentials. Tests point the client at a local HTTPS
fake of the management API through ``cloud_metadata`` and inject a credential.
"""

from __future__ import annotations

import importlib
import os
import shutil
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from multispot import ship
from multispot.errors import (
    AttemptLost,
    CapacityError,
    ProviderError,
    TransientProviderError,
    ValidationFailed,
)
from multispot.job import Job
from multispot.provider import BillingRule, Capability, LaunchContext
from multispot.status import Attempt, Handle, JobState, Placement, ProviderStatus, Usage
from multispot_azureml import translate as t

if TYPE_CHECKING:
    from azure.ai.ml import MLClient

    from multispot.billing import MeasuredCost

_QUOTA_WORDS = ("quota", "capacity", "insufficient", "not enough cores")
LOG_PREFIXES = ("user_logs/std_log", "azureml-logs/70_driver_log")


class AzureMLProvider:
    name = t.PROVIDER
    capabilities = (
        Capability("spot", True, "low-priority AmlCompute clusters or serverless jobs in the spot tier"),
        Capability("multi_node", True, "instance_count nodes with PyTorch distribution"),
        Capability("accelerators", True, "through the VM size (catalog or resources.instance_type)"),
        Capability("image", True, "an azureml: environment, or a Docker image registered at submit"),
        Capability(
            "preemption_state",
            False,
            "Azure ML has no Preempted status: a preemption is read from the run's error and warnings",
        ),
    )
    billing = BillingRule(
        "Azure ML bills node-hours (start to end × node count) at the VM size's "
        "low-priority/spot or dedicated rate; queueing is not billed",
        measured_source="Azure Cost Management, by the compute's resource id or tag",
    )

    def __init__(
        self,
        credential: Any = None,
        cloud_metadata: dict[str, str] | None = None,
        connection_verify: str | bool | None = None,
        management_url: str = "https://management.azure.com",
    ) -> None:
        self._credential = credential
        self._cloud_metadata = cloud_metadata
        self._verify = connection_verify
        self.management_url = management_url
        self._clients: dict[tuple[str, str, str], MLClient] = {}
        self._stores: dict[tuple[str, str, str], list[t.Datastore]] = {}

    # ----------------------------------------------------------------- clients

    @property
    def credential(self) -> Any:
        if self._credential is None:
            from azure.identity import DefaultAzureCredential

            self._credential = DefaultAzureCredential()
        return self._credential

    def client_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {}
        if self._verify is not None:
            kwargs["connection_verify"] = self._verify
        return kwargs

    def _client(self, where: dict[str, Any]) -> MLClient:
        key = (str(where["subscription_id"]), str(where["resource_group"]), str(where["workspace"]))
        if key not in self._clients:
            from azure.ai.ml import MLClient

            kwargs = self.client_kwargs()
            if self._cloud_metadata is not None:
                kwargs.update(cloud="MultispotCloud", cloud_metadata=self._cloud_metadata)
            self._clients[key] = MLClient(self.credential, *key, **kwargs)
        return self._clients[key]

    # ----------------------------------------------------------------- planning

    def notice_seconds(self, job: Job) -> float:
        return t.NOTICE_SECONDS

    def placements(self, job: Job) -> list[Placement]:
        region = t.region(job)
        out: list[Placement] = []
        for market in ("spot", "on-demand"):
            instance_type, price = _resolve(job, region, market)
            out.append(Placement(self.name, market, region, instance_type, job.resources.nodes, price))
        return out

    def default_uri(self, kind: str, job_id: str, job: Job) -> str:
        """On the job's datastore, as the az:// URI multispot opens (status, resume, retention):
        with ``storage`` set it is written directly, otherwise the datastore is looked up in the
        workspace (fsspec cannot open the datastore's azureml:// name)."""
        uri = t.default_uri(kind, job_id, job)
        if not uri.startswith("azureml://"):
            return uri
        opts = t.options(job)
        name = str(opts.get("datastore") or t.DEFAULT_DATASTORE)
        field = f"provider_options.{self.name}.storage"
        if not all(opts.get(k) for k in ("subscription_id", "resource_group", "workspace")):
            raise ValidationFailed(
                self.name,
                [(field, f"set <account>/<container> of datastore {name}, or the workspace to look it up")],
            )
        try:
            found = {d.name: d for d in self._datastores(opts)}
        except Exception as exc:  # no credentials, no workspace: the fix is the same
            raise ValidationFailed(
                self.name,
                [
                    (
                        field,
                        f"could not look up datastore {name} in the workspace ({type(exc).__name__}: "
                        f"{str(exc)[:200]}): sign in, or set <account>/<container>, or give "
                        "checkpoint.uri/output_uri",
                    )
                ],
            ) from exc
        if name not in found:
            raise ValidationFailed(self.name, [(field, f"the workspace has no blob datastore {name}")])
        return found[name].uri(uri.split("/paths/", 1)[1])

    def _datastores(self, where: dict[str, Any]) -> list[t.Datastore]:
        """The workspace's blob datastores (Blob and ADLS Gen2), cached per workspace."""
        key = (str(where["subscription_id"]), str(where["resource_group"]), str(where["workspace"]))
        if key not in self._stores:
            found = []
            for store in self._client(where).datastores.list():
                container = getattr(store, "container_name", None) or getattr(store, "filesystem", None)
                account = getattr(store, "account_name", None)
                if container and account:
                    endpoint = str(getattr(store, "endpoint", None) or "core.windows.net")
                    found.append(t.Datastore(str(store.name), str(account), str(container), endpoint))
            self._stores[key] = found
        return self._stores[key]

    def validate(self, job: Job, placement: Placement) -> None:
        problems = t.problems(job, placement)
        if problems:
            raise ValidationFailed(self.name, problems)

    def render(self, job: Job, placement: Placement, ctx: LaunchContext) -> dict[str, Any]:
        return t.render(job, placement, ctx)

    # ----------------------------------------------------------------- lifecycle

    def submit(self, job: Job, placement: Placement, ctx: LaunchContext) -> Handle:
        from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

        self.validate(job, placement)
        opts = t.options(job)
        missing = [k for k in ("subscription_id", "resource_group", "workspace") if not opts.get(k)]
        if missing:
            raise ValidationFailed(
                self.name, [(f"provider_options.{self.name}.{k}", "needed to submit") for k in missing]
            )
        where = t.compute_for(job, placement)
        name = t.job_name(ctx)
        handle = Handle(
            self.name,
            name,
            {
                "subscription_id": opts["subscription_id"],
                "resource_group": opts["resource_group"],
                "workspace": opts["workspace"],
                "compute": where.cluster,
                "tier": where.tier,
                "instance_type": placement.instance_type,
                "count": job.resources.nodes,
                "market": placement.market,
                "region": placement.region,
                "cost_filter": opts.get("cost_filter"),
            },
        )
        client = self._client(handle.data)
        try:
            client.jobs.get(name)
            return handle  # already submitted: a retried submit never starts two
        except ResourceNotFoundError:
            pass
        datastores = self._datastores(handle.data)
        try:
            cmd = t.build(job, placement, ctx, code=None, datastores=datastores)
        except t.NoDatastore as exc:
            raise ValidationFailed(self.name, [(_uri_field(job, ctx, str(exc)), str(exc))]) from exc
        limits = t.request_problems(job, t.rest_body(cmd))
        if limits:  # this attempt's own names and URIs, checked before anything is uploaded
            raise ValidationFailed(self.name, limits)
        if where.create and where.cluster:
            self._ensure_cluster(client, where.cluster, job, placement, ctx)
        if where.cluster and opts.get("cost_filter") == "tag":
            self._tag_cluster(client, where.cluster, ctx)
        with tempfile.TemporaryDirectory(prefix="multispot-azureml-") as staging:
            cmd.code = stage_code(job, Path(staging))
            try:
                client.jobs.create_or_update(cmd)
            except HttpResponseError as exc:
                try:
                    client.jobs.get(name)  # a concurrent submit created it first
                    return handle
                except ResourceNotFoundError:
                    pass
                if any(word in str(exc).lower() for word in _QUOTA_WORDS):
                    raise CapacityError(f"Azure ML refused {placement}: {exc.message}") from exc
                if _transient(exc):
                    raise TransientProviderError(f"Azure ML (will retry): {exc.message}") from exc
                raise ProviderError(f"Azure ML refused the job: {exc.message}") from exc
        return handle

    def _tag_cluster(self, client: MLClient, name: str, ctx: LaunchContext) -> None:
        """Point the cluster's ARM tag ``multispot-job-id`` at this job before it runs.

        Cost Management attributes usage to the tags a resource carries when the usage is
        recorded (tags are not applied retroactively: "Group and filter options in Cost
        analysis", "Understand and work with tags"), so re-tagging at each submit lets a reused
        cluster's cost be queried per job. Sound while the cluster runs one job at a time.
        """
        compute = client.compute.get(name)
        tags = dict(getattr(compute, "tags", None) or {})
        if tags.get(t.JOB_ID_TAG) != ctx.job_id:
            tags[t.JOB_ID_TAG] = ctx.job_id
            compute.tags = tags
            client.compute.begin_update(compute).result()

    def _ensure_cluster(
        self, client: MLClient, name: str, job: Job, placement: Placement, ctx: LaunchContext
    ) -> None:
        from azure.ai.ml.entities import AmlCompute
        from azure.core.exceptions import ResourceNotFoundError

        try:
            client.compute.get(name)
            return
        except ResourceNotFoundError:
            pass
        if not placement.instance_type:
            raise ValidationFailed(self.name, [("resources.instance_type", "needed to create the cluster")])
        max_nodes = int(t.options(job).get("max_nodes") or job.resources.nodes)
        cluster = AmlCompute(
            name=name,
            size=placement.instance_type,
            min_instances=0,
            max_instances=max_nodes,
            tier="low_priority" if placement.market == "spot" else "dedicated",
            tags={t.JOB_ID_TAG: ctx.job_id},
        )
        client.compute.begin_create_or_update(cluster).result()

    def _details(self, handle: Handle) -> dict[str, Any]:
        details: Any = self._client(handle.data).jobs._runs_operations.get_run_details(handle.id)
        return dict(details.as_dict())  # the wire's camelCase keys

    def status(self, handle: Handle) -> ProviderStatus:
        from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

        try:
            job = self._client(handle.data).jobs.get(handle.id)
        except ResourceNotFoundError as exc:
            raise AttemptLost(f"Azure ML has no job {handle.id}") from exc
        except HttpResponseError as exc:
            if _transient(exc):
                raise TransientProviderError(f"Azure ML jobs.get (will retry): {exc.message}") from exc
            raise ProviderError(f"Azure ML jobs.get failed: {exc.message}") from exc
        native = str(getattr(job.status, "value", job.status))  # a str enum in some SDK versions
        details = self._details(handle)
        preempted, absorbed = t.preemption_evidence(details)
        state = t.native_state(native, preempted)
        error = ((details.get("error") or {}).get("error") or {}).get("message", "")
        message = str(error or "")
        if state is JobState.FAILED and not message:
            message = f"Azure ML job {handle.id} failed (see `multispot logs`)"
        return ProviderStatus(
            state,
            message,
            absorbed,
            native,
            t.parse_time(details.get("startTimeUtc")),
            t.parse_time(details.get("endTimeUtc")),
        )

    def logs(self, handle: Handle, follow: bool = False) -> Iterator[str]:
        """The user's stdout/stderr files the run lists (what ``MLClient.jobs.stream`` prints)."""
        seen: dict[str, int] = {}
        while True:
            details = self._details(handle)
            files = details.get("logFiles") or {}
            for name in sorted(n for n in files if n.startswith(LOG_PREFIXES)):
                with urllib.request.urlopen(files[name], timeout=30) as response:
                    text = response.read().decode(errors="replace")
                done = seen.get(name, 0)
                if len(text) > done:
                    seen[name] = len(text)
                    yield from text[done:].splitlines(keepends=True)
            if not follow:
                return
            native = str(details.get("status", ""))
            if native in t.STATES and t.STATES[native].terminal:
                follow = False  # one more read for what was written last
                continue
            time.sleep(2.0)

    def cancel(self, handle: Handle) -> None:
        self._client(handle.data).jobs.begin_cancel(handle.id)

    def usage(self, handle: Handle) -> Usage:
        details = self._details(handle)
        runtime = t.runtime_seconds(details, time.time())
        return Usage(
            runtime_seconds=runtime,
            billable_seconds=runtime,  # a node is billed from start to end; queueing is not
            instance_type=handle.data.get("instance_type"),
            count=int(handle.data.get("count") or 1),
            market=str(handle.data.get("market") or "spot"),
            region=handle.data.get("region"),
            source="Azure ML run details (startTimeUtc/endTimeUtc)",
        )

    # ----------------------------------------------------------------- billing

    def measured_cost(self, job_id: str, attempts: list[Attempt]) -> MeasuredCost | None:
        from multispot_azureml.billing import measured_cost

        return measured_cost(self, job_id, attempts)


def stage_code(job: Job, staging: Path) -> str:
    """The code asset's folder: ``source_dir`` (less what its .amlignore/.gitignore exclude, as the
    SDK would upload it) plus ``multispot-wheels/`` with the running multispot and fsspec, which
    the command installs offline (``install: shipped``). Built in ``staging``; the user's folder
    is never written."""
    from azure.ai.ml._utils._asset_utils import get_ignore_file

    code = staging / "code"
    if job.source_dir:
        source = Path(job.source_dir)
        ignore = get_ignore_file(source)

        def skip(folder: str, names: list[str]) -> list[str]:
            top = Path(folder).resolve() == source.resolve()
            return [
                n
                for n in names
                if (top and n in (".amlignore", ".gitignore", ship.WHEEL_DIR))
                or ignore.is_file_excluded(os.path.join(folder, n))
            ]

        shutil.copytree(source, code, symlinks=True, ignore=skip)
    else:
        code.mkdir()
    if t.options(job).get("install", "shipped") == "shipped":
        ship.build_wheels(code / ship.WHEEL_DIR)
    return str(code)


def _uri_field(job: Job, ctx: LaunchContext, message: str) -> str:
    """The field a NoDatastore problem is about (the default URIs count as checkpoint.uri/output_uri)."""
    for field, uri in (
        ("checkpoint.uri", ctx.checkpoint_uri),
        ("output_uri", ctx.output_uri),
        *((f"inputs.{n}", u) for n, u in sorted(job.inputs.items())),
    ):
        parsed = t.parse_blob_uri(uri)
        if parsed is not None and f"container {parsed[0]}" in message:
            return field
    return "checkpoint.uri"


def _resolve(job: Job, region: str, market: str) -> tuple[str | None, float | None]:
    """VM size and price from the catalog; an explicit instance type always wins."""
    try:  # imported by name: the catalog may not be installed alongside an older core
        catalog = importlib.import_module("multispot.catalog")
    except ImportError:  # no catalog: only explicit sizes can be placed
        return job.resources.instance_type, None
    from multispot.errors import MultispotError

    if not (job.resources.instance_type or job.resources.accelerator or job.resources.cpus):
        return None, None  # a named cluster decides its own size
    try:
        offer = catalog.load_catalog().resolve(t.PROVIDER, job.resources, region=region, market=market)
    except MultispotError:
        if job.resources.instance_type:
            return job.resources.instance_type, None
        raise
    return str(offer.instance_type), offer.price(market)


def _transient(exc: Any) -> bool:
    """429 and 5xx: throttling and service faults the controller retries later (azure-core's
    retry policy already retried them with backoff)."""
    status = int(getattr(exc, "status_code", 0) or 0)
    return status == 429 or status >= 500
