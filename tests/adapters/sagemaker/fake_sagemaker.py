"""A moto server that also runs the training jobs it is given, the way SageMaker would.

moto (5.2) stores a CreateTrainingJob but runs nothing, drops Environment/RetryStrategy, marks
the job Completed at once and lacks StopTrainingJob. Inside the ThreadedMotoServer's process
this module patches moto's SageMaker responses to (1) keep the request body exactly as the
client sent it, (2) hand the job to ``FakeSageMaker``, and (3) implement StopTrainingJob.

``FakeSageMaker`` then plays the service: downloads the ``code`` channel, maps ``/opt/ml`` to a
temp dir, runs the rendered ContainerEntrypoint + ContainerArguments as a local subprocess with
the request's Environment, syncs ``/opt/ml/checkpoints`` to CheckpointConfig.S3Uri (and back on a
restart), ships output to CloudWatch Logs, sends SIGTERM for a stop or a spot interruption, and
moves the job through TrainingJobStatus/SecondaryStatus with billing fields set.
"""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import boto3
from moto.core.common_types import TYPE_RESPONSE  # noqa: F401  (moto is importable)
from moto.sagemaker.exceptions import ValidationError
from moto.sagemaker.models import sagemaker_backends
from moto.sagemaker.responses import SageMakerResponse
from moto.server import ThreadedMotoServer

from multispot.testing.files import files_under

ACCOUNT = "123456789012"
REGION = "us-east-1"
SPOT_BILLABLE_FRACTION = 0.3  # what the fake bills of a spot job's training time (a 70 % saving)
LOG_GROUP = "/aws/sagemaker/TrainingJobs"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class FakeSageMaker:
    def __init__(self, root: Path, endpoint: str, notice_seconds: float = 5.0) -> None:
        self.root = root
        self.endpoint = endpoint
        self.notice_seconds = notice_seconds
        self.requests: dict[str, dict[str, Any]] = {}
        self._signals: dict[str, str] = {}  # name -> "stop" | "interrupt" | "give_up"
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    # ----------------------------------------------------------------- moto hooks

    def job(self, name: str) -> Any:
        return sagemaker_backends[ACCOUNT][REGION].training_jobs[name]

    def on_create(self, body: dict[str, Any]) -> None:
        name = body["TrainingJobName"]
        self.requests[name] = body
        job = self.job(name)
        job.environment = body.get("Environment", {})
        job.retry_strategy = body.get("RetryStrategy")
        now = datetime.now(timezone.utc)
        job.training_job_status, job.secondary_status = "InProgress", "Starting"
        job.training_start_time = job.training_end_time = None
        job.model_artifacts = None
        job.final_metric_data_list = None
        job.secondary_status_transitions = [
            {"Status": "Starting", "StartTime": now, "StatusMessage": "Launching requested ML instances"}
        ]
        thread = threading.Thread(target=self._run, args=(name,), daemon=True)
        self._threads.append(thread)
        thread.start()

    def on_stop(self, name: str) -> None:
        job = self.job(name)
        if job.training_job_status not in ("InProgress",):
            raise ValidationError(f"The training job {name} is not in progress")
        self.signal(name, "stop")

    def signal(self, name: str, what: str) -> None:
        with self._lock:
            self._signals[name] = what

    def _take_signal(self, name: str) -> str | None:
        with self._lock:
            return self._signals.pop(name, None)

    # ----------------------------------------------------------------- the service

    def _client(self, service: str) -> Any:
        return boto3.client(service, region_name=REGION, endpoint_url=self.endpoint)

    def _transition(self, job: Any, status: str, secondary: str, message: str = "") -> None:
        now = datetime.now(timezone.utc)
        transitions = list(job.secondary_status_transitions or [])
        if transitions and "EndTime" not in transitions[-1]:
            transitions[-1]["EndTime"] = now
        transitions.append({"Status": secondary, "StartTime": now, "StatusMessage": message or secondary})
        job.secondary_status_transitions = transitions
        job.training_job_status, job.secondary_status = status, secondary

    def _download(self, uri: str, target: Path) -> None:
        s3 = self._client("s3")
        bucket, _, prefix = uri[len("s3://") :].partition("/")
        prefix = prefix.rstrip("/") + "/" if prefix else ""
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                path = target / obj["Key"][len(prefix) :]
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read())

    def _sync_up(self, local: Path, uri: str, seen: dict[str, tuple[int, int]]) -> None:
        """Upload new or changed files (upload order is not guaranteed, as on SageMaker)."""
        s3 = self._client("s3")
        bucket, _, prefix = uri[len("s3://") :].partition("/")
        prefix = prefix.rstrip("/") + "/" if prefix else ""
        for path in files_under(local):
            if path.name.startswith("."):
                continue
            try:
                stat = path.stat()
                data = path.read_bytes()
            except FileNotFoundError:
                continue
            rel = path.relative_to(local).as_posix()
            if seen.get(rel) == (stat.st_size, stat.st_mtime_ns):
                continue
            s3.put_object(Bucket=bucket, Key=prefix + rel, Body=data)
            seen[rel] = (stat.st_size, stat.st_mtime_ns)

    def _run(self, name: str) -> None:
        try:
            self._run_inner(name)
        except Exception as exc:  # the fake must never die silently
            job = self.job(name)
            job.failure_reason = f"fake service error: {exc!r}"
            self._transition(job, "Failed", "Failed")

    def _run_inner(self, name: str) -> None:
        request, job = self.requests[name], self.job(name)
        base = self.root / name / "opt_ml"

        def local(text: str) -> str:
            return text.replace("/opt/ml", str(base))

        for channel in request.get("InputDataConfig", []):
            uri = channel["DataSource"]["S3DataSource"]["S3Uri"]
            self._download(uri, base / "input" / "data" / channel["ChannelName"])
        config = base / "input" / "config"
        config.mkdir(parents=True, exist_ok=True)
        (config / "resourceconfig.json").write_text(
            json.dumps({"current_host": "algo-1", "hosts": ["algo-1"]})
        )
        (config / "hyperparameters.json").write_text(json.dumps(request.get("HyperParameters", {})))
        ckpt = request.get("CheckpointConfig")
        ckpt_dir = Path(local(ckpt["LocalPath"])) if ckpt else None

        algo = request["AlgorithmSpecification"]
        argv = [local(a) for a in algo["ContainerEntrypoint"] + algo.get("ContainerArguments", [])]
        if argv[0] in ("python", "python3"):
            argv[0] = sys.executable
        env = dict(os.environ)
        env.update({k: local(v) for k, v in request.get("Environment", {}).items()})
        env.update(TRAINING_JOB_NAME=name, AWS_ENDPOINT_URL=self.endpoint)

        logs = self._client("logs")
        try:
            logs.create_log_group(logGroupName=LOG_GROUP)
        except logs.exceptions.ResourceAlreadyExistsException:
            pass
        spot = bool(request.get("EnableManagedSpotTraining"))
        trained = 0.0
        run = 0
        while True:
            run += 1
            stream = f"{name}/algo-1-{run}"
            logs.create_log_stream(logGroupName=LOG_GROUP, logStreamName=stream)
            if ckpt_dir is not None:
                ckpt_dir.mkdir(parents=True, exist_ok=True)
                self._download(ckpt["S3Uri"], ckpt_dir)  # copied back on (re)start
            self._transition(
                job, "InProgress", "Training", "Training image download completed. Training in progress."
            )
            if job.training_start_time is None:
                job.training_start_time = datetime.now(timezone.utc)
            began = time.time()
            outcome, code = self._supervise(name, argv, env, logs, stream, ckpt_dir, ckpt)
            trained += time.time() - began
            job.training_time_in_seconds = max(1, math.ceil(trained))
            job.billable_time_in_seconds = max(
                1, math.ceil(trained * SPOT_BILLABLE_FRACTION) if spot else math.ceil(trained)
            )
            if outcome == "interrupt":
                self._transition(job, "InProgress", "Interrupted", "Spot capacity was reclaimed")
                time.sleep(0.2)
                self._transition(job, "InProgress", "Restarting", "Restarting the training job")
                if ckpt_dir is not None:  # a new instance: an empty dir, filled from S3
                    for path in sorted(ckpt_dir.rglob("*"), reverse=True):
                        path.unlink() if path.is_file() else path.rmdir()
                continue
            break
        job.training_end_time = datetime.now(timezone.utc)
        if outcome == "give_up":
            self._transition(job, "InProgress", "Interrupted", "Spot capacity was reclaimed")
            self._transition(
                job, "Stopped", "MaxWaitTimeExceeded", "No spot capacity within MaxWaitTimeInSeconds"
            )
        elif outcome == "stop":
            self._transition(job, "Stopped", "Stopped", "Stopped by the user")
        elif code == 0:
            self._transition(job, "InProgress", "Uploading", "Uploading generated training model")
            self._transition(job, "Completed", "Completed", "Training job completed")
        else:
            job.failure_reason = f"AlgorithmError: the command exited with code {code}"
            self._transition(job, "Failed", "Failed", job.failure_reason)

    def _supervise(
        self,
        name: str,
        argv: list[str],
        env: dict[str, str],
        logs: Any,
        stream: str,
        ckpt_dir: Path | None,
        ckpt: dict[str, str] | None,
    ) -> tuple[str, int]:
        out = self.root / name / f"{stream.rsplit('/', 1)[1]}.log"
        with open(out, "wb") as sink:
            proc = subprocess.Popen(
                argv, env=env, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True
            )
        seen: dict[str, tuple[int, int]] = {}
        shipped = 0
        outcome, stop_at = "exit", None

        def ship() -> None:
            nonlocal shipped
            lines = out.read_bytes()[shipped:]
            cut = lines.rfind(b"\n") + 1
            if cut:
                now = int(time.time() * 1000)
                events = [
                    {"timestamp": now, "message": line}
                    for line in lines[:cut].decode(errors="replace").splitlines()
                ]
                logs.put_log_events(logGroupName=LOG_GROUP, logStreamName=stream, logEvents=events)
                shipped += cut

        while proc.poll() is None:
            what = self._take_signal(name)
            if what and outcome == "exit":
                outcome, stop_at = what, time.time() + self.notice_seconds
                if what == "stop":
                    self._transition(self.job(name), "Stopping", "Stopping", "Stopping the training job")
                os.killpg(proc.pid, signal.SIGTERM)
            if stop_at is not None and time.time() > stop_at:
                os.killpg(proc.pid, signal.SIGKILL)
            if ckpt_dir is not None and ckpt is not None:
                self._sync_up(ckpt_dir, ckpt["S3Uri"], seen)
            ship()
            time.sleep(0.1)
        if ckpt_dir is not None and ckpt is not None:
            self._sync_up(ckpt_dir, ckpt["S3Uri"], seen)
        ship()
        return outcome, int(proc.returncode)


def start(root: Path) -> tuple[ThreadedMotoServer, FakeSageMaker, str]:
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    fake = FakeSageMaker(root, endpoint)
    original = SageMakerResponse.create_training_job

    def create_training_job(self: Any) -> Any:
        result = original(self)
        fake.on_create(json.loads(self.body))
        return result

    def stop_training_job(self: Any) -> Any:
        from moto.core.responses import ActionResult

        fake.on_stop(self._get_param("TrainingJobName"))
        return ActionResult({})

    SageMakerResponse.create_training_job = create_training_job  # type: ignore[method-assign]
    SageMakerResponse.stop_training_job = stop_training_job  # type: ignore[attr-defined]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    return server, fake, endpoint
