"""Small local fakes the Vertex tests start: the JobService over gRPC, and a REST server for
Cloud Logging ``entries:list`` and BigQuery ``jobs.query``.

The real clients talk to them over the wire. No fake can run a container, so the fake
JobService executes a created CustomJob the way Vertex would: worker pool 0's command runs as a
local subprocess with the container's environment, ``/gcs/<bucket>/...`` paths (Cloud Storage
FUSE) are mapped to a per-job folder that is copied from the emulated bucket before the start
and written back to it while the job runs, stdout goes to the fake Cloud Logging, and the job
moves QUEUED → PENDING → RUNNING → SUCCEEDED/FAILED. ``preempt`` reclaims the Spot VM: SIGTERM,
then either the job fails with a preemption error or (``restart=True``) Vertex restarts the
worker in place and the job goes on.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from concurrent import futures
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import grpc
from google.cloud import aiplatform_v1
from google.protobuf import empty_pb2, timestamp_pb2

from multispot.testing.files import files_under

SERVICE = "google.cloud.aiplatform.v1.JobService"
FUSE = "/gcs/"
NOTICE_SECONDS = 5.0  # the fake's grace between SIGTERM and the hard stop (Vertex: 30 s)


def _now() -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.GetCurrentTime()
    return stamp


# --------------------------------------------------------------------------- Cloud Logging + BigQuery


@dataclass
class RestState:
    logs: list[dict[str, Any]] = field(default_factory=list)
    billing_rows: list[dict[str, Any]] = field(default_factory=list)  # rows of the billing export
    queries: list[dict[str, Any]] = field(default_factory=list)  # jobs.query bodies received
    preempted: set[str] = field(default_factory=set)  # job numbers whose VM's metadata says preempted
    url: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def log(self, project: str, job_id: str, text: str) -> None:
        stamp = datetime.now(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")
        with self.lock:
            self.logs.append(
                {
                    "logName": f"projects/{project}/logs/workerpool0-0",
                    "resource": {"type": "ml_job", "labels": {"job_id": job_id, "project_id": project}},
                    "timestamp": stamp,
                    "insertId": uuid.uuid4().hex[:16],
                    "textPayload": text,
                }
            )


def _filter_logs(state: RestState, body: dict[str, Any]) -> list[dict[str, Any]]:
    text = body.get("filter", "")
    job = re.search(r'resource\.labels\.job_id="([^"]+)"', text)
    after = re.search(r'timestamp>="([^"]+)"', text)
    with state.lock:
        entries = [
            e
            for e in state.logs
            if 'resource.type="ml_job"' in text
            and job is not None
            and e["resource"]["labels"]["job_id"] == job.group(1)
            and (after is None or e["timestamp"] >= after.group(1))
        ]
    return sorted(entries, key=lambda e: str(e["timestamp"]))


def _query(state: RestState, body: dict[str, Any]) -> dict[str, Any]:
    """jobs.query over the seeded export rows: the semantics of billing.QUERY, driven by its parameters."""
    params = {p["name"]: p["parameterValue"]["value"] for p in body.get("queryParameters", [])}
    with state.lock:
        state.queries.append(body)
        rows = [
            r
            for r in state.billing_rows
            if f"`{r['table']}`" in body["query"]
            and r["service"] == params["service"]
            and r["labels"].get(params["job_label"]) == params["job_id"]
            and r["start"] >= datetime.fromisoformat(params["since"]).replace(tzinfo=timezone.utc).timestamp()
        ]
    groups: dict[str | None, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(row["labels"].get(params["attempt_label"]), []).append(row)
    micros = body.get("formatOptions", {}).get("useInt64Timestamp", False)

    def stamp(t: float) -> str:
        return str(int(t * 1_000_000)) if micros else f"{t:.6f}"

    out = [
        {
            "f": [
                {"v": key},
                {"v": repr(sum(r["cost"] + sum(r["credits"]) for r in group))},
                {"v": stamp(min(r["start"] for r in group))},
                {"v": stamp(max(r["end"] for r in group))},
            ]
        }
        for key, group in groups.items()
    ]
    return {
        "kind": "bigquery#queryResponse",
        "schema": {
            "fields": [
                {"name": "attempt", "type": "STRING", "mode": "NULLABLE"},
                {"name": "amount", "type": "FLOAT", "mode": "NULLABLE"},
                {"name": "start", "type": "TIMESTAMP", "mode": "NULLABLE"},
                {"name": "end", "type": "TIMESTAMP", "mode": "NULLABLE"},
            ]
        },
        "jobReference": {"projectId": "fake", "jobId": f"job_{uuid.uuid4().hex[:8]}", "location": "US"},
        "totalRows": str(len(out)),
        "rows": out,
        "jobComplete": True,
        "cacheHit": False,
    }


def start_rest(state: RestState) -> tuple[ThreadingHTTPServer, str]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
            if self.path.startswith("/v2/entries:list"):
                reply: dict[str, Any] = {"entries": _filter_logs(state, body)}
            elif re.match(r"^/bigquery/v2/projects/[^/]+/queries", self.path):
                reply = _query(state, body)
            else:
                self.send_error(404)
                return
            self._reply(json.dumps(reply).encode(), "application/json")

        def do_GET(self) -> None:
            match = re.match(r"^/jobs/([^/]+)/computeMetadata/v1/instance/preempted$", self.path)
            if not match or self.headers.get("Metadata-Flavor") != "Google":
                self.send_error(404 if not match else 403)
                return
            with state.lock:
                flag = match.group(1) in state.preempted
            self._reply(b"TRUE" if flag else b"FALSE", "application/text")

        def _reply(self, data: bytes, kind: str) -> None:
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    return server, state.url


# --------------------------------------------------------------------------- the JobService


@dataclass
class FakeJob:
    job: aiplatform_v1.CustomJob
    dir: Path
    proc: subprocess.Popen[bytes] | None = None
    preempt: str | None = None  # "fail" | "restart" while a reclaim is under way
    cancel: bool = False
    starts: int = 0


class FakeJobService:
    """In-process gRPC JobService: Create/Get/List/CancelCustomJob, executing jobs as subprocesses."""

    def __init__(self, root: Path, rest: RestState, fs: Any) -> None:
        self.root, self.rest, self.fs = root, rest, fs
        self.jobs: dict[str, FakeJob] = {}
        self.created: list[aiplatform_v1.CustomJob] = []  # requests as received
        self.lock = threading.RLock()
        self.queue_seconds = 0.1
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        handlers = {
            "CreateCustomJob": (self.create, aiplatform_v1.CreateCustomJobRequest, aiplatform_v1.CustomJob),
            "GetCustomJob": (self.get, aiplatform_v1.GetCustomJobRequest, aiplatform_v1.CustomJob),
            "ListCustomJobs": (
                self.list,
                aiplatform_v1.ListCustomJobsRequest,
                aiplatform_v1.ListCustomJobsResponse,
            ),
            "CancelCustomJob": (self.cancel, aiplatform_v1.CancelCustomJobRequest, None),
        }
        methods = {
            name: grpc.unary_unary_rpc_method_handler(
                fn,
                request_deserializer=req.deserialize,
                response_serializer=resp.serialize if resp else empty_pb2.Empty.SerializeToString,
            )
            for name, (fn, req, resp) in handlers.items()
        }
        self.server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, methods),))
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.address = f"127.0.0.1:{self.port}"

    def start(self) -> None:
        self.server.start()

    def stop(self) -> None:
        with self.lock:
            for fake in self.jobs.values():
                if fake.proc and fake.proc.poll() is None:
                    os.killpg(fake.proc.pid, signal.SIGKILL)
        self.server.stop(grace=None)

    # ----------------------------------------------------------------- RPCs

    def create(self, request: aiplatform_v1.CreateCustomJobRequest, context: grpc.ServicerContext) -> Any:
        job = aiplatform_v1.CustomJob(request.custom_job)
        number = str(1000 + len(self.created))
        job.name = f"{request.parent}/customJobs/{number}"
        job.state = aiplatform_v1.JobState.JOB_STATE_QUEUED
        job.create_time = _now()
        job.update_time = job.create_time
        with self.lock:
            self.created.append(aiplatform_v1.CustomJob(request.custom_job))
            fake = FakeJob(job, self.root / number)
            self.jobs[job.name] = fake
        threading.Thread(target=self._run, args=(fake,), daemon=True).start()
        return job

    def get(self, request: aiplatform_v1.GetCustomJobRequest, context: grpc.ServicerContext) -> Any:
        with self.lock:
            fake = self.jobs.get(request.name)
            if fake is None:
                context.abort(grpc.StatusCode.NOT_FOUND, f"CustomJob {request.name} not found")
            return aiplatform_v1.CustomJob(fake.job)

    def list(self, request: aiplatform_v1.ListCustomJobsRequest, context: grpc.ServicerContext) -> Any:
        wanted = dict(re.findall(r'labels\.([a-z0-9_-]+)="([^"]*)"', request.filter))
        with self.lock:
            found = [
                aiplatform_v1.CustomJob(f.job)
                for name, f in self.jobs.items()
                if name.startswith(request.parent + "/")
                and all(f.job.labels.get(k) == v for k, v in wanted.items())
            ]
        return aiplatform_v1.ListCustomJobsResponse(custom_jobs=found)

    def cancel(self, request: aiplatform_v1.CancelCustomJobRequest, context: grpc.ServicerContext) -> Any:
        with self.lock:
            fake = self.jobs.get(request.name)
            if fake is None:
                context.abort(grpc.StatusCode.NOT_FOUND, f"CustomJob {request.name} not found")
            fake.cancel = True
            if fake.job.state in _ACTIVE:
                self._set(fake, aiplatform_v1.JobState.JOB_STATE_CANCELLING)
            proc = fake.proc
        if proc and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
        return empty_pb2.Empty()

    # ----------------------------------------------------------------- scripting

    def preempt(self, name: str, restart: bool = False) -> None:
        """Reclaim the Spot VM running ``name``: SIGTERM now, hard stop after NOTICE_SECONDS."""
        with self.lock:
            fake = self.jobs[name]
            fake.preempt = "restart" if restart else "fail"
            proc = fake.proc
        with self.rest.lock:
            self.rest.preempted.add(name.rsplit("/", 1)[-1])
        if proc and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)

    def _set(self, fake: FakeJob, state: aiplatform_v1.JobState, **fields: Any) -> None:
        with self.lock:
            fake.job.state = state
            fake.job.update_time = _now()
            for key, value in fields.items():
                setattr(fake.job, key, value)

    # ----------------------------------------------------------------- execution

    def _run(self, fake: FakeJob) -> None:
        time.sleep(self.queue_seconds)
        if fake.cancel:
            self._set(fake, aiplatform_v1.JobState.JOB_STATE_CANCELLED, end_time=_now())
            return
        self._set(fake, aiplatform_v1.JobState.JOB_STATE_PENDING)
        pool = fake.job.job_spec.worker_pool_specs[0]
        container = pool.container_spec
        number = fake.job.name.rsplit("/", 1)[-1]
        project = fake.job.name.split("/")[1]
        mount = fake.dir / "gcs"
        fake.dir.mkdir(parents=True, exist_ok=True)
        env = {e.name: e.value.replace(FUSE, f"{mount}/") for e in container.env}
        env["CLOUD_ML_JOB_ID"] = number
        env["GCE_METADATA_HOST"] = f"{self.rest.url}/jobs/{number}"  # this VM's metadata server
        base = fake.job.job_spec.base_output_directory.output_uri_prefix
        if base:
            env.update(AIP_MODEL_DIR=f"{base}/model/", AIP_CHECKPOINT_DIR=f"{base}/checkpoints/")
        mounted = [v for v in env.values() if v.startswith(f"{mount}/")]
        for path in mounted:
            self._download(mount, Path(path))
        argv = [a.replace(FUSE, f"{mount}/") for a in [*container.command, *container.args]]
        if argv and argv[0] in ("python", "python3"):
            argv[0] = sys.executable
        self._set(fake, aiplatform_v1.JobState.JOB_STATE_RUNNING, start_time=_now())
        stop = threading.Event()
        syncer = threading.Thread(target=self._sync_loop, args=(mount, stop), daemon=True)
        syncer.start()
        while True:
            fake.starts += 1
            proc = subprocess.Popen(
                argv,
                env={**os.environ, **env},
                cwd=fake.dir,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            with self.lock:
                fake.proc = proc
            assert proc.stdout is not None
            for line in iter(proc.stdout.readline, b""):
                self.rest.log(project, number, line.decode(errors="replace").rstrip("\n"))
            try:
                code = proc.wait(timeout=NOTICE_SECONDS)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                code = proc.wait()
            if fake.preempt == "restart" and not fake.cancel:
                fake.preempt = None  # Vertex restarts the worker in place, on a new VM; the job stays RUNNING
                with self.rest.lock:
                    self.rest.preempted.discard(number)
                continue
            break
        stop.set()
        syncer.join()
        self._upload(mount)
        if fake.cancel:
            self._set(fake, aiplatform_v1.JobState.JOB_STATE_CANCELLED, end_time=_now())
        elif fake.preempt == "fail":
            error = {"code": 14, "message": "The Spot VM running workerpool0-0 was preempted."}
            self._set(fake, aiplatform_v1.JobState.JOB_STATE_FAILED, end_time=_now(), error=error)
        elif code == 0:
            self._set(fake, aiplatform_v1.JobState.JOB_STATE_SUCCEEDED, end_time=_now())
        else:
            message = f"The replica workerpool0-0 exited with a non-zero status of {code}."
            self._set(
                fake,
                aiplatform_v1.JobState.JOB_STATE_FAILED,
                end_time=_now(),
                error={"code": 3, "message": message},
            )

    # Cloud Storage FUSE, emulated: gs://bucket/path <-> <mount>/bucket/path

    def _download(self, mount: Path, local: Path) -> None:
        remote = str(local.relative_to(mount))
        self.fs.invalidate_cache()
        if self.fs.isdir(remote):
            self.fs.get(remote + "/", str(local) + "/", recursive=True)
        elif self.fs.isfile(remote):
            local.parent.mkdir(parents=True, exist_ok=True)
            self.fs.get(remote, str(local))

    def _sync_loop(self, mount: Path, stop: threading.Event) -> None:
        seen: dict[str, tuple[int, int]] = {}
        while not stop.wait(0.1):
            self._upload(mount, seen)

    def _upload(self, mount: Path, seen: dict[str, tuple[int, int]] | None = None) -> None:
        seen = {} if seen is None else seen
        if not mount.exists():
            return
        files = sorted(
            files_under(mount),
            key=lambda p: (p.name in ("MANIFEST.json", "LATEST"), p.name == "LATEST"),
        )
        current = set()
        for path in files:
            key = str(path.relative_to(mount))
            current.add(key)
            try:
                stat = path.stat()
                sig = (stat.st_size, stat.st_mtime_ns)
                if seen.get(key) != sig:
                    self.fs.pipe_file(key, path.read_bytes())
                    seen[key] = sig
            except FileNotFoundError:
                continue
        for key in [k for k in seen if k not in current]:  # deleted locally (retention)
            try:
                self.fs.rm_file(key)
            except FileNotFoundError:
                pass
            seen.pop(key, None)


_ACTIVE = (
    aiplatform_v1.JobState.JOB_STATE_QUEUED,
    aiplatform_v1.JobState.JOB_STATE_PENDING,
    aiplatform_v1.JobState.JOB_STATE_RUNNING,
)
