"""The Vertex AI provider: one attempt = one CustomJob on Spot (or standard) VMs.

I/O goes through ``google-cloud-aiplatform``'s low-level ``aiplatform_v1.JobServiceClient``
(no global init state, injectable transport), Cloud Logging's client for logs, gcsfs for the
source tarball, and BigQuery for the measured cost (``billing.py``). Every SDK is imported
inside the function that needs it, so ``multispot --help`` never loads one.

Endpoints: the regional ``{region}-aiplatform.googleapis.com`` by default. For emulators and
fakes (never used against Google): ``MULTISPOT_VERTEX_EMULATOR_HOST=host:port`` (plaintext gRPC,
anonymous credentials) and ``MULTISPOT_VERTEX_LOGGING_EMULATOR_HOST=http://host:port``.
"""

from __future__ import annotations

import importlib
import io
import json
import os
import tarfile
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from multispot.billing import MeasuredCost
from multispot.errors import (
    AttemptLost,
    CapacityError,
    ProviderError,
    TransientProviderError,
    ValidationFailed,
)
from multispot.job import Job
from multispot.provider import BillingRule, Capability, LaunchContext
from multispot.status import Attempt, Handle, Placement, ProviderStatus, Usage
from multispot_vertex import translate

if TYPE_CHECKING:
    from google.cloud.aiplatform_v1 import JobServiceClient

EMULATOR_ENV = "MULTISPOT_VERTEX_EMULATOR_HOST"
LOGGING_EMULATOR_ENV = "MULTISPOT_VERTEX_LOGGING_EMULATOR_HOST"
LOG_POLL_SECONDS = 2.0


class VertexProvider:
    name = translate.PROVIDER
    capabilities = (
        Capability("spot", True, "Scheduling.strategy SPOT; preempted and queued time is not billed"),
        Capability("multi_node", True, "worker pool 0 is the primary replica, pool 1 the other nodes"),
        Capability("accelerators", True, "machine type and GPU type/count from the catalog"),
        Capability("image", True, "custom container; source_dir ships as a tarball read through /gcs"),
        Capability("logs", True, "Cloud Logging, resource.type=ml_job"),
        Capability(
            "interruption_count",
            False,
            "the CustomJob API does not report in-place worker restarts; only preemptions that end "
            "the job are seen",
        ),
    )
    billing = BillingRule(
        "Vertex AI bills running time at the machine's and accelerators' spot or on-demand "
        "rates; queued and preempted time is not billed",
        measured_source="the Cloud Billing export in BigQuery, by the multispot-job-id label",
    )

    def __init__(self) -> None:
        self._clients: dict[str, JobServiceClient] = {}
        self._lock = threading.Lock()

    # ----------------------------------------------------------------- planning

    def notice_seconds(self, job: Job) -> float:
        return translate.NOTICE_SECONDS

    def placements(self, job: Job) -> list[Placement]:
        opts = translate.options(job)
        regions = [str(opts["region"])] if opts.get("region") else None
        known = opts.get("bucket_locations")
        if regions is None and isinstance(known, dict):  # the job's buckets pin its region
            located = {str(known[b]).lower() for b in translate.bucket_buckets(job) if b in known}
            regions = sorted(located) if len(located) == 1 else None
        out: list[Placement] = []
        for market in ("spot", "on-demand"):
            out += self._market_placements(job, market, regions)
        return out

    def _market_placements(self, job: Job, market: str, regions: list[str] | None) -> list[Placement]:
        nodes = job.resources.nodes
        catalog = translate.load_catalog()
        if catalog is not None and (
            job.resources.accelerator or job.resources.cpus or not job.resources.instance_type
        ):
            try:
                offers = catalog.matches(self.name, job.resources, regions=regions, market=market)
            except Exception as exc:
                if job.resources.instance_type:
                    offers = []
                else:
                    raise ProviderError(str(exc)) from exc
            if offers:
                return [
                    Placement(self.name, market, o.region, o.instance_type, nodes, o.price(market))
                    for o in offers
                ]
        if job.resources.instance_type:
            region = (regions or [translate.DEFAULT_REGION])[0]
            return [Placement(self.name, market, region, job.resources.instance_type, nodes, None)]
        raise ValidationFailed(
            self.name, [("resources", "give an accelerator or an instance_type (machine type)")]
        )

    def default_uri(self, kind: str, job_id: str, job: Job) -> str:
        return translate.default_uri(kind, job_id, job)

    def validate(self, job: Job, placement: Placement) -> None:
        problems = translate.problems(job, placement)
        if problems:
            raise ValidationFailed(self.name, problems)

    def render(self, job: Job, placement: Placement, ctx: LaunchContext) -> dict[str, Any]:
        return translate.render(job, placement, ctx)

    # ----------------------------------------------------------------- clients

    def _client(self, region: str) -> JobServiceClient:
        emulator = os.environ.get(EMULATOR_ENV)
        key = f"emulator:{emulator}" if emulator else region
        with self._lock:
            if key not in self._clients:
                from google.cloud import aiplatform_v1

                if emulator:
                    import grpc
                    from google.cloud.aiplatform_v1.services.job_service.transports.grpc import (
                        JobServiceGrpcTransport,
                    )

                    transport = JobServiceGrpcTransport(channel=grpc.insecure_channel(emulator))
                    self._clients[key] = aiplatform_v1.JobServiceClient(transport=transport)
                else:
                    self._clients[key] = aiplatform_v1.JobServiceClient(
                        client_options={"api_endpoint": f"{region}-aiplatform.googleapis.com"}
                    )
            return self._clients[key]

    def _project(self, job: Job) -> str:
        project = translate.options(job).get("project") or os.environ.get("GOOGLE_CLOUD_PROJECT")
        if not project:
            raise ValidationFailed(
                self.name,
                [
                    (
                        f"provider_options.{self.name}.project",
                        "set the project id (or export GOOGLE_CLOUD_PROJECT)",
                    )
                ],
            )
        return str(project)

    # ----------------------------------------------------------------- lifecycle

    def submit(self, job: Job, placement: Placement, ctx: LaunchContext) -> Handle:
        from google.api_core import exceptions
        from google.cloud import aiplatform_v1

        self.validate(job, placement)
        project = self._project(job)
        region = placement.region or str(translate.options(job).get("region") or translate.DEFAULT_REGION)
        parent = f"projects/{project}/locations/{region}"
        data = {"project": project, "region": region}
        table = translate.options(job).get("billing_export_table")
        if table:
            data["billing_export_table"] = str(table)
        client = self._client(region)
        try:
            existing = [
                found
                for found in client.list_custom_jobs(
                    request={"parent": parent, "filter": translate.list_filter(ctx.job_id, ctx.attempt)}
                )
                if translate.is_attempt(found.labels, ctx.job_id, ctx.attempt)
            ]
            if existing:  # a retried submit: the attempt already exists
                return Handle(self.name, existing[0].name, data)
            known = {**bucket_locations(job), **translate.options(job).get("bucket_locations", {})}
            problems = translate.bucket_problems(job, region, known)
            if problems:  # before anything is uploaded
                raise ValidationFailed(self.name, problems)
            ship_code(job, ctx)
            request = translate.render(job, placement, ctx)
            custom_job = aiplatform_v1.CustomJob.from_json(json.dumps(request))
            created = client.create_custom_job(parent=parent, custom_job=custom_job)
        except exceptions.InvalidArgument as exc:
            raise ProviderError(f"Vertex rejected the CustomJob: {exc.message}") from exc
        except exceptions.GoogleAPICallError as exc:
            raise _mapped(exc, f"CreateCustomJob in {region}") from exc
        return Handle(self.name, created.name, data)

    def _get(self, handle: Handle) -> dict[str, Any]:
        from google.api_core import exceptions
        from google.cloud import aiplatform_v1
        from google.protobuf import json_format

        try:
            job = self._client(str(handle.data.get("region", translate.DEFAULT_REGION))).get_custom_job(
                name=handle.id
            )
        except exceptions.NotFound as exc:
            raise AttemptLost(f"Vertex has no custom job {handle.id}") from exc
        except exceptions.GoogleAPICallError as exc:
            raise _mapped(exc, "GetCustomJob") from exc
        return dict(json_format.MessageToDict(aiplatform_v1.CustomJob.pb(job)))

    def status(self, handle: Handle) -> ProviderStatus:
        job = self._get(handle)
        native = str(job.get("state", "JOB_STATE_UNSPECIFIED"))
        started, ended = translate.times(job)
        return ProviderStatus(translate.native_state(job), translate.message(job), 0, native, started, ended)

    def cancel(self, handle: Handle) -> None:
        from google.api_core import exceptions

        try:
            self._client(str(handle.data.get("region", translate.DEFAULT_REGION))).cancel_custom_job(
                name=handle.id
            )
        except exceptions.FailedPrecondition:
            pass  # already over
        except exceptions.NotFound as exc:
            raise AttemptLost(f"Vertex has no custom job {handle.id}") from exc

    def usage(self, handle: Handle) -> Usage:
        return translate.usage(self._get(handle))

    def logs(self, handle: Handle, follow: bool = False) -> Iterator[str]:
        cloud_logging: Any = importlib.import_module("google.cloud.logging")  # untyped package

        project = str(handle.data.get("project") or handle.id.split("/")[1])
        job_id = handle.id.rsplit("/", 1)[-1]
        emulator = os.environ.get(LOGGING_EMULATOR_ENV)
        if emulator:
            from google.auth.credentials import AnonymousCredentials

            client = cloud_logging.Client(
                project=project,
                credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
                _use_grpc=False,
                client_options={"api_endpoint": emulator},
            )
        else:
            client = cloud_logging.Client(project=project)
        base = f'resource.type="ml_job" AND resource.labels.job_id="{job_id}"'
        last, seen = "", set()  # entries with the newest timestamp come again (>=): skip them by insertId
        while True:
            query = base + (f' AND timestamp>="{last}"' if last else "")
            for entry in client.list_entries(
                resource_names=[f"projects/{project}"], filter_=query, order_by=cloud_logging.ASCENDING
            ):
                if entry.insert_id in seen:
                    continue
                seen.add(entry.insert_id)
                payload = entry.payload
                if isinstance(payload, dict):
                    payload = payload.get("message", json.dumps(payload))
                text = str(payload)
                yield text if text.endswith("\n") else text + "\n"
                if entry.timestamp is not None:
                    last = entry.timestamp.isoformat().replace("+00:00", "Z")
            if not follow or self.status(handle).state.terminal:
                return
            time.sleep(LOG_POLL_SECONDS)

    # ----------------------------------------------------------------- billing

    def measured_cost(self, job_id: str, attempts: list[Attempt]) -> MeasuredCost | None:
        from multispot_vertex.billing import measured_cost

        return measured_cost(job_id, attempts)


def _gcs() -> Any:
    os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")
    import gcsfs

    return gcsfs.GCSFileSystem()


def ship_code(job: Job, ctx: LaunchContext) -> None:
    """Upload what the job runs from the staging bucket: the source tarball (once per job) and,
    with install: wheels, the running multispot as wheels (``multispot.ship``), which the job's
    command installs offline before the user's command."""
    tarball = translate.source_tarball_uri(job, ctx.job_id)
    wheels = translate.wheels_uri(job, ctx.job_id, ctx.attempt)
    if not tarball and not wheels:
        return
    fs = _gcs()
    if tarball and job.source_dir:
        upload_source(job.source_dir, tarball, fs)
    if wheels:
        from multispot.ship import build_wheels

        folder = wheels.split("://", 1)[1]
        with tempfile.TemporaryDirectory(prefix="multispot-wheels-") as tmp:
            for wheel in build_wheels(Path(tmp)):
                target = f"{folder}/{wheel.name}"
                if not fs.exists(target):
                    fs.pipe_file(target, wheel.read_bytes())


def upload_source(source_dir: str, uri: str, fs: Any = None) -> None:
    """Pack source_dir into a tar.gz and upload it once (the container unpacks it from /gcs)."""
    fs = fs or _gcs()
    path = uri.split("://", 1)[1]
    if fs.exists(path):
        return
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(source_dir, arcname=".", filter=_skip_caches)
    fs.pipe_file(path, buffer.getvalue())


def bucket_locations(job: Job) -> dict[str, str]:
    """The locations of the job's buckets, read with the Cloud Storage JSON API (``buckets.get``:
    ``location``) where the credentials allow; a bucket that cannot be read is left out (then the
    service itself refuses a bucket outside the job's region, at CreateCustomJob)."""
    buckets = translate.bucket_buckets(job)
    if not buckets:
        return {}
    try:
        storage: Any = importlib.import_module("google.cloud.storage")  # untyped package
        client = storage.Client(project=translate.options(job).get("project"))
    except Exception:  # no credentials, no project: nothing known
        return {}
    found = {}
    for bucket in buckets:
        try:
            location = client.get_bucket(bucket, timeout=10).location
        except Exception:  # not allowed to read bucket metadata, or no such bucket yet
            continue
        if location:
            found[bucket] = str(location)
    return found


def _skip_caches(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
    name = info.name.rsplit("/", 1)[-1]
    return None if name in ("__pycache__", ".git", ".venv", "checkpoints", "outputs") else info


def _mapped(exc: Any, operation: str) -> ProviderError:
    """A google-api-core error as the error tree's (https://cloud.google.com/apis/design/errors):
    RESOURCE_EXHAUSTED is a quota or capacity refusal unless it is a request-rate limit;
    UNAVAILABLE, INTERNAL, DEADLINE_EXCEEDED and rate limits are transient."""
    from google.api_core import exceptions

    message = str(getattr(exc, "message", exc))
    rate = "per minute" in message.lower() or "rate" in message.lower()
    if isinstance(exc, exceptions.ResourceExhausted) and not rate:
        return CapacityError(f"Vertex {operation}: quota or capacity exhausted: {message}")
    transient = (
        exceptions.ResourceExhausted,
        exceptions.ServiceUnavailable,
        exceptions.InternalServerError,
        exceptions.DeadlineExceeded,
        exceptions.TooManyRequests,
        exceptions.BadGateway,
        exceptions.GatewayTimeout,
    )
    if isinstance(exc, transient):
        return TransientProviderError(f"Vertex {operation} (will retry): {message}")
    return ProviderError(f"Vertex {operation} failed: {exc}")
