"""A moto server that also runs the training jobs it is given, the way SageMaker would.

moto (5.2) stores a CreateTrainingJob but runs nothing, drops Environment/RetryStrategy, marks
the job Completed at once and lacks StopTrainingJob. Inside the ThreadedMotoServer's process
this module patches moto's SageMaker responses to (1) keep the request body exactly as the
client sent it, (2) hand the job to ``FakeSageMaker``, and (3) implement StopTrainingJob.

``FakeSageMaker`` then plays the service, one process per instance (``InstanceCount``): each node
gets its own ``/opt/ml`` (channels downloaded, ``resourceconfig.json`` naming it among
``algo-1..N``, ``hyperparameters.json``) and a fresh virtualenv — no system site packages — that
sees only what the image ships (``image_packages``: the DLC's boto3/fsspec/pip, or those plus
s3fs for a recipe image), so multispot reaches the job only through the request's code channel,
as on SageMaker. It runs the rendered ContainerEntrypoint + ContainerArguments with the request's
Environment and no package index, and gives each node its own checkpoint folder synced to
CheckpointConfig.S3Uri the way the service does: "Checkpoints in Amazon SageMaker AI" / "Use
Checkpoints in Amazon SageMaker AI" (Developer Guide) — the local path is copied from S3 when the
instance starts, and files written there are uploaded during training, in no guaranteed order; a
node never sees another node's folder. It ships output to CloudWatch Logs, sends SIGTERM for a
stop or a spot interruption, and moves the job through TrainingJobStatus/SecondaryStatus with
billing fields set.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from importlib import metadata
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

    def _node(self, name: str, request: dict[str, Any], host: str, hosts: list[str]) -> Node:
        """One instance: its own /opt/ml (channels downloaded, config files written), its own
        checkpoint folder, and a fresh Python holding only what the image ships."""
        base = self.root / name / host / "opt_ml"

        def local(text: str) -> str:
            return text.replace("/opt/ml", str(base))

        for channel in request.get("InputDataConfig", []):
            uri = channel["DataSource"]["S3DataSource"]["S3Uri"]
            self._download(uri, base / "input" / "data" / channel["ChannelName"])
        config = base / "input" / "config"
        config.mkdir(parents=True, exist_ok=True)
        # resourceconfig.json / hyperparameters.json: "How Amazon SageMaker Provides Training
        # Information" (Developer Guide), the fields the entry reads.
        resource = {
            "current_host": host,
            "hosts": hosts,
            "current_instance_type": request["ResourceConfig"]["InstanceType"],
            "network_interface_name": "eth0",
        }
        (config / "resourceconfig.json").write_text(json.dumps(resource))
        (config / "hyperparameters.json").write_text(json.dumps(request.get("HyperParameters", {})))
        ckpt = request.get("CheckpointConfig")
        ckpt_dir = Path(local(ckpt["LocalPath"])) if ckpt else None
        python = image_python(self.root / name / host / "image", request["AlgorithmSpecification"])
        algo = request["AlgorithmSpecification"]
        argv = [local(a) for a in algo["ContainerEntrypoint"] + algo.get("ContainerArguments", [])]
        if argv[0] in ("python", "python3"):
            argv[0] = str(python)
        env = {k: v for k, v in os.environ.items() if k.startswith("AWS_") or k in ("LANG", "TMPDIR")}
        env.update(
            PATH=f"{python.parent}:/usr/bin:/bin",
            HOME=str(base.parent),
            PIP_INDEX_URL="http://127.0.0.1:9/no-index-here",  # the job reaches no package index
            PIP_NO_CACHE_DIR="1",
            PYTHONNOUSERSITE="1",
        )
        env.update({k: local(v) for k, v in request.get("Environment", {}).items()})
        env.update(TRAINING_JOB_NAME=name, AWS_ENDPOINT_URL=self.endpoint)
        return Node(host, argv, env, ckpt_dir, self.root / name / host)

    def _run_inner(self, name: str) -> None:
        request, job = self.requests[name], self.job(name)
        count = int(request["ResourceConfig"].get("InstanceCount", 1))
        hosts = [f"algo-{i}" for i in range(1, count + 1)]
        nodes = [self._node(name, request, host, hosts) for host in hosts]
        ckpt = request.get("CheckpointConfig")

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
            for node in nodes:
                node.stream = f"{name}/{node.host}-{run}"
                logs.create_log_stream(logGroupName=LOG_GROUP, logStreamName=node.stream)
                if node.ckpt_dir is not None and ckpt is not None:
                    node.ckpt_dir.mkdir(parents=True, exist_ok=True)
                    self._download(ckpt["S3Uri"], node.ckpt_dir)  # copied back on (re)start
            self._transition(
                job, "InProgress", "Training", "Training image download completed. Training in progress."
            )
            if job.training_start_time is None:
                job.training_start_time = datetime.now(timezone.utc)
            began = time.time()
            outcome, code = self._supervise(name, nodes, logs, ckpt)
            trained += time.time() - began
            job.training_time_in_seconds = max(1, math.ceil(trained))
            job.billable_time_in_seconds = max(
                1, math.ceil(trained * SPOT_BILLABLE_FRACTION) if spot else math.ceil(trained)
            )
            if outcome == "interrupt":
                self._transition(job, "InProgress", "Interrupted", "Spot capacity was reclaimed")
                time.sleep(0.2)
                self._transition(job, "InProgress", "Restarting", "Restarting the training job")
                for node in nodes:  # a new instance: an empty checkpoint folder, filled from S3
                    if node.ckpt_dir is not None:
                        shutil.rmtree(node.ckpt_dir, ignore_errors=True)
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
        self, name: str, nodes: list[Node], logs: Any, ckpt: dict[str, str] | None
    ) -> tuple[str, int]:
        """Every node's process at once; the job ends when all have exited, failed if any did
        (a multi-instance job fails when one host's algorithm fails)."""
        for node in nodes:
            node.start()
        outcome, stop_at = "exit", None
        while any(node.proc is not None and node.proc.poll() is None for node in nodes):
            what = self._take_signal(name)
            if what and outcome == "exit":
                outcome, stop_at = what, time.time() + self.notice_seconds
                if what == "stop":
                    self._transition(self.job(name), "Stopping", "Stopping", "Stopping the training job")
                for node in nodes:
                    node.kill(signal.SIGTERM)
            if stop_at is not None and time.time() > stop_at:
                for node in nodes:
                    node.kill(signal.SIGKILL)
            for node in nodes:
                if node.ckpt_dir is not None and ckpt is not None:
                    self._sync_up(node.ckpt_dir, ckpt["S3Uri"], node.seen)
                node.ship(logs)
            time.sleep(0.1)
        for node in nodes:
            if node.ckpt_dir is not None and ckpt is not None:
                self._sync_up(node.ckpt_dir, ckpt["S3Uri"], node.seen)
            node.ship(logs)
        codes = [node.code() for node in nodes]
        return outcome, next((c for c in codes if c != 0), 0)


class Node:
    """One training instance of a job: its process, log stream and checkpoint sync state."""

    def __init__(self, host: str, argv: list[str], env: dict[str, str], ckpt_dir: Path | None, root: Path):
        self.host, self.argv, self.env, self.ckpt_dir, self.root = host, argv, env, ckpt_dir, root
        self.stream = ""
        self.proc: subprocess.Popen[bytes] | None = None
        self.seen: dict[str, tuple[int, int]] = {}
        self.out = root / "out.log"
        self.shipped = 0

    def start(self) -> None:
        self.out = self.root / f"{self.stream.rsplit('/', 1)[1]}.log"
        self.shipped = 0
        with open(self.out, "wb") as sink:
            self.proc = subprocess.Popen(
                self.argv, env=self.env, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True
            )

    def kill(self, sig: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                pass

    def code(self) -> int:
        assert self.proc is not None
        return int(self.proc.wait())

    def ship(self, logs: Any) -> None:
        lines = self.out.read_bytes()[self.shipped :]
        cut = lines.rfind(b"\n") + 1
        if cut:
            now = int(time.time() * 1000)
            events = [
                {"timestamp": now, "message": line}
                for line in lines[:cut].decode(errors="replace").splitlines()
            ]
            logs.put_log_events(logGroupName=LOG_GROUP, logStreamName=self.stream, logEvents=events)
            self.shipped += cut


# --------------------------------------------------------------------------- the images

# What an image holds besides Python, as installed distributions of this machine made visible to
# the job's fresh virtualenv (never multispot: that must arrive through the request).
# The PyTorch Deep Learning Container ships boto3 and fsspec but not s3fs
# (aws/deep-learning-containers, pytorch/training/docker/2.5/py3/cu124/Dockerfile.gpu, its conda
# package list); the recipe in examples/images/sagemaker/Dockerfile adds s3fs.
DLC_PACKAGES = ("pip", "boto3", "fsspec")
RECIPE_PACKAGES = (*DLC_PACKAGES, "s3fs")
DLC_ACCOUNT = "763104351884"


def image_packages(algo: dict[str, Any]) -> tuple[str, ...]:
    image = str(algo["TrainingImage"])
    return DLC_PACKAGES if image.startswith(DLC_ACCOUNT + ".") else RECIPE_PACKAGES


def _closure(names: tuple[str, ...]) -> list[metadata.Distribution]:
    """The distributions ``names`` need at run time (extras left out), as installed here."""
    found: dict[str, metadata.Distribution] = {}
    todo = list(names)
    while todo:
        name = re.split(r"[\s;\[<>=!~(]", todo.pop(), maxsplit=1)[0].lower().replace("_", "-")
        if name in found or name == "multispot":
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        found[name] = dist
        todo += [r for r in dist.requires or [] if "extra ==" not in r]
    return list(found.values())


_IMAGES: dict[tuple[str, ...], Path] = {}
_IMAGES_LOCK = threading.Lock()


def _image_site(packages: tuple[str, ...], root: Path) -> Path:
    """A folder of links to the top-level modules (and metadata) of ``packages``' closure."""
    with _IMAGES_LOCK:
        if packages not in _IMAGES:
            site = root / ("image-" + "-".join(packages))
            site.mkdir(parents=True, exist_ok=True)
            for dist in _closure(packages):
                tops = {Path(str(f)).parts[0] for f in dist.files or () if not str(f).startswith("..")}
                for top in tops:
                    source = Path(str(dist.locate_file(top)))
                    link = site / top
                    if source.exists() and not link.exists() and top not in ("bin", "__pycache__"):
                        link.symlink_to(source)
            _IMAGES[packages] = site
        return _IMAGES[packages]


def image_python(venv: Path, algo: dict[str, Any]) -> Path:
    """A fresh virtualenv (no system site packages, no pip of its own) that sees only the image's
    packages: the entry must install multispot from what the request shipped."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = _image_site(image_packages(algo), venv.parent.parent.parent / "images")
    purelib = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    Path(purelib, "_image.pth").write_text(str(site) + "\n")
    return venv / "bin" / "python"


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
