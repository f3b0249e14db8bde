"""The SageMaker provider: Managed Spot Training through boto3's SageMaker client.

boto3 and the SageMaker SDK are imported inside the methods that call AWS, never at module
import, so ``multispot --help`` and planning stay light. The request is rendered by
``translate.render`` (pure) and sent as-is to ``create_training_job``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from multispot.errors import AttemptLost, CapacityError, ProviderError, TransientProviderError
from multispot.job import Job
from multispot.provider import BillingRule, Capability, LaunchContext
from multispot.ship import WHEEL_DIR, build_wheels, install_command
from multispot.status import Attempt, Handle, Placement, ProviderStatus, Usage
from multispot_sagemaker import translate as t

if TYPE_CHECKING:
    from multispot.billing import MeasuredCost

LOG_GROUP = "/aws/sagemaker/TrainingJobs"
_SKIP = {"__pycache__", ".git", ".venv", ".mypy_cache", ".pytest_cache"}


class SageMakerProvider:
    name = t.PROVIDER
    capabilities = (
        Capability("spot", True, "Managed Spot Training: SageMaker restarts on interruption within MaxWait"),
        Capability("multi_node", True, "InstanceCount nodes, launched with torchrun by the entry"),
        Capability("accelerators", True, "resolved to ml.* instance types through the catalog"),
        Capability("image", True, "an ECR image URI, or a framework alias (pytorch:2.5) resolved by the SDK"),
        Capability(
            "notice_hook",
            False,
            "whether a spot interruption reaches the process as SIGTERM is not documented: "
            "checkpoint on a schedule (a stop gives SIGTERM and 120 s)",
        ),
    )
    # SageMaker bills BillableTimeInSeconds at the on-demand rate (the spot discount is in the seconds).
    billing = BillingRule(
        "SageMaker bills BillableTimeInSeconds × instance count at the on-demand rate; "
        "for managed spot the discount is the billable time being shorter than the training time",
        spot_rate="on-demand",
        measured_source="AWS Cost Explorer, by the multispot-job-id cost allocation tag",
    )

    def __init__(self, client_config: dict[str, Any] | None = None) -> None:
        self._client_config = client_config or {}
        self._clients: dict[tuple[str, str], Any] = {}

    # ----------------------------------------------------------------- clients

    def client(self, service: str, region: str) -> Any:
        key = (service, region)
        if key not in self._clients:
            import boto3
            from botocore.config import Config

            config = Config(retries={"mode": "standard"}, **self._client_config)
            self._clients[key] = boto3.client(service, region_name=region, config=config)
        return self._clients[key]

    # ----------------------------------------------------------------- planning

    def notice_seconds(self, job: Job) -> float:
        return t.NOTICE_SECONDS

    def _regions(self, job: Job) -> list[str]:
        opts = t.options(job)
        if opts.get("regions"):
            return [str(r) for r in opts["regions"]]
        return [str(opts.get("region") or "us-east-1")]

    def placements(self, job: Job) -> list[Placement]:
        out: list[Placement] = []
        for market in ("spot", "on-demand"):
            found = self._offers(job, market)
            out += [
                Placement(self.name, market, region, itype, job.resources.nodes, price)
                for region, itype, price in found
            ]
        return out

    def _offers(self, job: Job, market: str) -> list[tuple[str, str, float | None]]:
        from multispot.catalog import load_catalog

        regions = self._regions(job)
        offers = load_catalog().matches(self.name, job.resources, regions=regions, market=market)
        found = [(o.region, o.instance_type, o.price(market)) for o in offers]
        if not found and job.resources.instance_type:  # explicit and not in the catalog: price unknown
            found = [(region, job.resources.instance_type, None) for region in regions]
        return found

    def default_uri(self, kind: str, job_id: str, job: Job) -> str:
        return t.default_uri(kind, job_id, job)

    def validate(self, job: Job, placement: Placement) -> None:
        t.validate(job, placement)

    def render(self, job: Job, placement: Placement, ctx: LaunchContext) -> dict[str, Any]:
        return t.render(job, placement, ctx)

    # ----------------------------------------------------------------- lifecycle

    def _upload_code(self, job: Job, ctx: LaunchContext, region: str) -> None:
        """Loose files under the code prefix (the ``code`` channel), plus the multispot entry and,
        with ``install: shipped``, multispot's wheels and the line that installs them offline
        (``multispot-wheels/``: the job needs no package index to run the submitting code)."""
        s3 = self.client("s3", region)
        uri = t.code_uri(job, ctx.job_id)
        bucket, _, key_prefix = uri[len("s3://") :].partition("/")
        entry = Path(__file__).with_name("entry.py")
        s3.put_object(Bucket=bucket, Key=key_prefix + t.ENTRY_NAME, Body=entry.read_bytes())
        if t.install_mode(job) == t.INSTALL_SHIPPED:
            for name, body in shipped_files():
                s3.put_object(Bucket=bucket, Key=f"{key_prefix}{WHEEL_DIR}/{name}", Body=body)
        if not job.source_dir:
            return
        root = Path(job.source_dir)
        for path in sorted(root.rglob("*")):
            rel = path.relative_to(root)
            if path.is_file() and not (set(rel.parts) & _SKIP):
                s3.put_object(Bucket=bucket, Key=key_prefix + rel.as_posix(), Body=path.read_bytes())

    def _describe(self, region: str, name: str) -> dict[str, Any] | None:
        from botocore.exceptions import ClientError

        try:
            return dict(self.client("sagemaker", region).describe_training_job(TrainingJobName=name))
        except ClientError as exc:
            if _code(exc) in ("ValidationException", "ResourceNotFound"):
                return None
            raise _mapped(exc, "DescribeTrainingJob") from exc

    def submit(self, job: Job, placement: Placement, ctx: LaunchContext) -> Handle:
        from botocore.exceptions import ClientError

        t.validate(job, placement)
        region = t.region_of(job, placement)
        request = self.render(job, placement, ctx)  # held to every service limit before any upload
        name = request["TrainingJobName"]
        handle = Handle(self.name, name, {"region": region, "market": placement.market})
        if self._describe(region, name) is not None:
            return handle  # already created: a retried submit never starts two
        self._upload_code(job, ctx, region)
        try:
            self.client("sagemaker", region).create_training_job(**request)
        except ClientError as exc:
            if _code(exc) == "ResourceInUse":
                return handle
            raise _mapped(exc, "CreateTrainingJob") from exc
        return handle

    def _described(self, handle: Handle) -> dict[str, Any]:
        described = self._describe(handle.data["region"], handle.id)
        if described is None:
            raise AttemptLost(f"SageMaker has no training job {handle.id} in {handle.data['region']}")
        return described

    def status(self, handle: Handle) -> ProviderStatus:
        described = self._described(handle)
        started, ended = t.times(described)
        return ProviderStatus(
            t.native_state(described),
            t.message(described),
            t.interruptions(described),
            f"{described.get('TrainingJobStatus')}/{described.get('SecondaryStatus')}",
            started,
            ended,
        )

    def logs(self, handle: Handle, follow: bool = False) -> Iterator[str]:
        """CloudWatch Logs of every instance (streams ``<job>/algo-N-...``), in order per stream."""
        from botocore.exceptions import ClientError

        logs = self.client("logs", handle.data["region"])
        tokens: dict[str, str | None] = {}
        while True:
            try:
                streams = logs.describe_log_streams(
                    logGroupName=LOG_GROUP, logStreamNamePrefix=handle.id + "/"
                )
                names = sorted(s["logStreamName"] for s in streams.get("logStreams", []))
            except ClientError:
                names = []
            done = not follow or self.status(handle).state.terminal
            for stream in names:
                kwargs: dict[str, Any] = {
                    "logGroupName": LOG_GROUP,
                    "logStreamName": stream,
                    "startFromHead": True,
                }
                while True:
                    if tokens.get(stream):
                        kwargs["nextToken"] = tokens[stream]
                    page = logs.get_log_events(**kwargs)
                    for event in page.get("events", []):
                        text = str(event.get("message", ""))
                        yield text if text.endswith("\n") else text + "\n"
                    token = page.get("nextForwardToken")
                    if token == tokens.get(stream) or not page.get("events"):
                        tokens[stream] = token
                        break
                    tokens[stream] = token
            if done:
                return
            time.sleep(2.0)

    def cancel(self, handle: Handle) -> None:
        from botocore.exceptions import ClientError

        try:
            self.client("sagemaker", handle.data["region"]).stop_training_job(TrainingJobName=handle.id)
        except ClientError as exc:
            if _code(exc) != "ValidationException":  # ValidationException: the job has already ended
                raise _mapped(exc, "StopTrainingJob") from exc

    def drain(self, handle: Handle) -> None:
        """StopTrainingJob: SageMaker sends SIGTERM and stops the job 120 s later (API reference,
        StopTrainingJob), the notice the runtime saves on. The controller moves the job elsewhere."""
        self.cancel(handle)

    def usage(self, handle: Handle) -> Usage:
        return t.usage_from(self._described(handle), handle.data.get("region"))

    # ----------------------------------------------------------------- billing

    def measured_cost(self, job_id: str, attempts: list[Attempt]) -> MeasuredCost | None:
        from multispot_sagemaker.billing import measured_cost

        # Cost Explorer has one endpoint, in us-east-1, whatever region the jobs ran in.
        return measured_cost(self.client("ce", "us-east-1"), job_id, attempts)


def shipped_files() -> list[tuple[str, bytes]]:
    """``multispot-wheels/``: the wheels of the running multispot (``multispot.ship``) and
    ``install.sh``, the offline install the entry runs with MULTISPOT_PYTHON (its interpreter)
    and MULTISPOT_WHEELS (this folder) set."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        wheels = build_wheels(Path(tmp))
        files = [(w.name, w.read_bytes()) for w in wheels]
    script = install_command("$MULTISPOT_WHEELS", python='"$MULTISPOT_PYTHON"')
    files.append(("install.sh", f"set -e\n{script}\n".encode()))
    return files


# Error codes of the SageMaker API (API reference, "Common Errors" and CreateTrainingJob "Errors").
# boto3's "standard" retry mode (set on every client) already retried throttling and 5xx with
# backoff; what still fails here is transient for the controller, which retries it later.
_CAPACITY = {"ResourceLimitExceeded", "CapacityError", "InsufficientCapacityError"}
_TRANSIENT = {
    "ThrottlingException",
    "Throttling",
    "ThrottledException",
    "RequestLimitExceeded",
    "TooManyRequestsException",
    "ServiceUnavailable",
    "InternalFailure",
    "InternalServerError",
}


def _code(exc: Any) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _mapped(exc: Any, operation: str) -> ProviderError:
    """A botocore ClientError as the error tree's: lost capacity, transient, or a plain refusal."""
    code = _code(exc)
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
    if code in _CAPACITY:
        return CapacityError(f"SageMaker {operation}: {exc}")
    if code in _TRANSIENT or status >= 500:
        return TransientProviderError(f"SageMaker {operation} (will retry): {exc}")
    return ProviderError(f"SageMaker {operation} failed: {exc}")
