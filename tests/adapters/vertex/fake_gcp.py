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
import shutil
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
        self.filters: list[str] = []  # ListCustomJobs filters as received
        self._image: Path | None = None
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
        problem = request_problem(request.custom_job)
        if problem:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, problem)
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
        self.filters.append(request.filter)
        try:
            keep = parse_filter(request.filter)
        except FilterError as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"Invalid filter {request.filter!r}: {exc}")
        with self.lock:
            found = [
                aiplatform_v1.CustomJob(f.job)
                for name, f in self.jobs.items()
                if name.startswith(request.parent + "/") and keep(f.job)
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

    def preempt(self, name: str, restart: bool = False, stockout: bool = False) -> None:
        """Reclaim the Spot VM running ``name``: SIGTERM now, hard stop after NOTICE_SECONDS. Then
        Vertex restarts the worker on a new VM (``restart``), or the job fails: with the worker's
        own exit (as Vertex reports a replica's non-zero exit), or, with ``stockout``, because no
        capacity was left to restart it on."""
        with self.lock:
            fake = self.jobs[name]
            fake.preempt = "restart" if restart else "stockout" if stockout else "fail"
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
        env = _expand_env([(e.name, e.value.replace(FUSE, f"{mount}/")) for e in container.env])
        env["CLOUD_ML_JOB_ID"] = number
        env["CLUSTER_SPEC"] = json.dumps(
            {
                "cluster": {
                    f"workerpool{i}": [f"workerpool{i}-{r}:2222" for r in range(int(p.replica_count))]
                    for i, p in enumerate(fake.job.job_spec.worker_pool_specs)
                },
                "environment": "cloud",
                "task": {"type": "workerpool0", "index": 0},
            }
        )
        env["GCE_METADATA_HOST"] = f"{self.rest.url}/jobs/{number}"  # this VM's metadata server
        base = fake.job.job_spec.base_output_directory.output_uri_prefix
        if base:
            env.update(AIP_MODEL_DIR=f"{base}/model/", AIP_CHECKPOINT_DIR=f"{base}/checkpoints/")
        mounted = [v for v in env.values() if v.startswith(f"{mount}/")]
        for path in mounted:
            self._download(mount, Path(path))
        argv = [a.replace(FUSE, f"{mount}/") for a in [*container.command, *container.args]]
        venv = self._fresh_image(fake.dir / "image")
        # The container: a bare Python with pip and nothing of this test's environment; any use of
        # a package index fails. Only what the request ships can bring multispot in.
        base = {
            "PATH": f"{venv / 'bin'}:/usr/bin:/bin",
            "HOME": str(fake.dir),
            "LANG": "C.UTF-8",
            "PYTHONNOUSERSITE": "1",
            "PIP_INDEX_URL": "http://127.0.0.1:9/no-index",
            "PIP_NO_CACHE_DIR": "1",
            "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        }
        self._set(fake, aiplatform_v1.JobState.JOB_STATE_RUNNING, start_time=_now())
        stop = threading.Event()
        syncer = threading.Thread(target=self._sync_loop, args=(mount, stop), daemon=True)
        syncer.start()
        while True:
            fake.starts += 1
            proc = subprocess.Popen(
                argv,
                env={**base, **env},
                cwd=fake.dir,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            with self.lock:
                fake.proc = proc
                stop_now = fake.cancel or fake.preempt is not None  # asked before the process existed
            if stop_now:
                os.killpg(proc.pid, signal.SIGTERM)
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
        elif fake.preempt == "stockout":
            region = fake.job.name.split("/")[3]
            message = f"Resources are insufficient in region: {region}. Please try a different region."
            self._set(
                fake,
                aiplatform_v1.JobState.JOB_STATE_FAILED,
                end_time=_now(),
                error={"code": 8, "message": message},
            )
        elif fake.preempt == "fail" and code < 0:  # killed at the hard stop, before it exited
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

    def _fresh_image(self, dest: Path) -> Path:
        """A new virtualenv per job (no system site-packages), with pip linked in from one made once."""
        with self.lock:
            if self._image is None:
                image = self.root / "base-image"
                subprocess.run([sys.executable, "-m", "venv", str(image)], check=True)
                self._image = image
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(dest)], check=True)
        (source,) = self._image.glob("lib/python*/site-packages")
        (target,) = dest.glob("lib/python*/site-packages")
        for entry in source.iterdir():
            if entry.name == "pip" or (entry.name.startswith("pip-") and entry.name.endswith(".dist-info")):
                shutil.copytree(entry, target / entry.name, copy_function=os.link)
        return dest

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


# --------------------------------------------------------------------------- ListCustomJobs filters


class FilterError(ValueError):
    """A filter the service refuses: INVALID_ARGUMENT."""


# The filter grammar is AIP-160 (https://google.aip.dev/160, its EBNF ebnf-filtering.txt):
#   filter: [expression]; expression: sequence {AND sequence}; sequence: factor {factor};
#   factor: term {OR term}; term: [NOT | '-'] simple; simple: restriction | '(' expression ')';
#   restriction: comparable [comparator arg]; comparable: member; member: value {'.' field};
#   value: TEXT | STRING.
# What ListCustomJobsRequest.filter supports on top of it (aiplatform_v1 proto docs):
#   display_name: =, != and the ':' wildcard; state: =, !=; create_time: = != < <= > >= with an
#   RFC 3339 time; labels: "labels.key=value" (equality) and "labels.key:*" (existence).
# Anything else is refused. Where the grammar text leaves a reading open, the fake takes the strict
# one: '-' is the negation token and never part of a TEXT (so an unquoted "labels.a-b=x-y" fails,
# as it does in widely used AIP-160 lexers), and '*' is a wildcard only after ':'.
_TOKEN = re.compile(
    r"""\s*(?:(?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')|(?P<op><=|>=|!=|[()=<>:.\-])"""
    r"""|(?P<text>[^\s()=<>:.!\-"',~]+))"""
)
_COMPARATORS = ("=", "!=", "<", "<=", ">", ">=", ":")


def _tokens(text: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        match = _TOKEN.match(text, pos)
        if not match or match.end() == pos:
            raise FilterError(f"unexpected character at {pos}: {text[pos : pos + 10]!r}")
        kind = match.lastgroup or ""
        value = match.group(kind)
        if kind == "string":
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        elif kind == "text" and value in ("AND", "OR", "NOT"):
            kind = value
        out.append((kind, value))
        pos = match.end()
    return out


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = _tokens(text)
        self.at = 0

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.at] if self.at < len(self.tokens) else None

    def take(self) -> tuple[str, str]:
        token = self.peek()
        if token is None:
            raise FilterError("unexpected end of filter")
        self.at += 1
        return token

    def parse(self) -> Any:
        if not self.tokens:
            return lambda job: True
        tree = self.expression()
        if self.peek() is not None:
            raise FilterError(f"unexpected {self.peek()[1]!r}")  # type: ignore[index]
        return tree

    def expression(self) -> Any:
        parts = [self.sequence()]
        while self.peek() == ("AND", "AND"):
            self.take()
            parts.append(self.sequence())
        return lambda job: all(p(job) for p in parts)

    def sequence(self) -> Any:
        parts = [self.factor()]
        while (token := self.peek()) is not None and token[0] not in ("AND", "OR") and token[1] != ")":
            parts.append(self.factor())
        return lambda job: all(p(job) for p in parts)

    def factor(self) -> Any:
        parts = [self.term()]
        while self.peek() == ("OR", "OR"):
            self.take()
            parts.append(self.term())
        return lambda job: any(p(job) for p in parts)

    def term(self) -> Any:
        token = self.peek()
        if token in (("NOT", "NOT"), ("op", "-")):
            self.take()
            inner = self.simple()
            return lambda job: not inner(job)
        return self.simple()

    def simple(self) -> Any:
        if self.peek() == ("op", "("):
            self.take()
            inner = self.expression()
            if self.take() != ("op", ")"):
                raise FilterError("missing ')'")
            return inner
        member = self.member()
        token = self.peek()
        if token is None or token[0] != "op" or token[1] not in _COMPARATORS:
            raise FilterError(f"{'.'.join(member)!r} alone is not a supported restriction")
        self.take()
        kind, value = self.take()
        if kind not in ("text", "string"):
            raise FilterError(f"expected a value after {token[1]}, got {value!r}")
        return _restriction(member, token[1], value, quoted=kind == "string")

    def member(self) -> list[str]:
        kind, value = self.take()
        if kind not in ("text", "string"):
            raise FilterError(f"expected a field, got {value!r}")
        parts = [value]
        while self.peek() == ("op", "."):
            self.take()
            kind, value = self.take()
            if kind not in ("text", "string"):
                raise FilterError(f"expected a field after '.', got {value!r}")
            parts.append(value)
        return parts


def _glob(pattern: str) -> re.Pattern[str]:
    return re.compile("^" + ".*".join(re.escape(p) for p in pattern.split("*")) + "$")


def _restriction(member: list[str], op: str, value: str, quoted: bool) -> Any:
    field_name = member[0]
    if member == ["display_name"] and op in ("=", "!="):
        return lambda job: (job.display_name == value) == (op == "=")
    if member == ["display_name"] and op == ":":
        pattern = _glob(value)
        return lambda job: bool(pattern.match(job.display_name))
    if member == ["state"] and op in ("=", "!="):
        if value not in aiplatform_v1.JobState.__members__:
            raise FilterError(f"unknown state {value!r}")
        wanted = aiplatform_v1.JobState[value]
        return lambda job: (job.state == wanted) == (op == "=")
    if member == ["create_time"] and op in _COMPARATORS[:-1]:
        try:
            when = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError as exc:
            raise FilterError(f"create_time must be RFC 3339: {value!r}") from exc
        if when.tzinfo is None:
            raise FilterError(f"create_time must be RFC 3339 (with an offset): {value!r}")
        compare = {
            "=": lambda a, b: a == b,
            "!=": lambda a, b: a != b,
            "<": lambda a, b: a < b,
            "<=": lambda a, b: a <= b,
            ">": lambda a, b: a > b,
            ">=": lambda a, b: a >= b,
        }[op]
        return lambda job: compare(job.create_time, when)
    if field_name == "labels" and len(member) == 2:
        key = member[1]
        if op == "=":
            return lambda job: job.labels.get(key) == value
        if op == ":" and value == "*" and not quoted:
            return lambda job: key in job.labels
    raise FilterError(f"unsupported restriction {'.'.join(member)}{op}{value!r}")


def parse_filter(text: str) -> Any:
    """A predicate on CustomJob, or FilterError for a filter the service refuses."""
    return _Parser(text).parse()


# --------------------------------------------------------------------------- CreateCustomJob checks


def request_problem(job: aiplatform_v1.CustomJob) -> str | None:
    """What CreateCustomJob refuses with INVALID_ARGUMENT among the documented limits (aiplatform_v1
    proto docs): display_name ≤ 128 characters; ≤ 64 labels, keys and values ≤ 63 of lowercase
    letters, digits, '_' and '-' (keys starting with a letter; Google Cloud's label rules);
    ContainerSpec.env "Maximum limit is 100", EnvVar.name "a valid C identifier"."""
    if not job.display_name or len(job.display_name) > 128:
        return "display_name must have 1 to 128 characters"
    if len(job.labels) > 64:
        return "at most 64 labels"
    for key, value in job.labels.items():
        if not re.match(r"^[a-z][a-z0-9_-]{0,62}$", key) or not re.match(r"^[a-z0-9_-]{0,63}$", value):
            return f"invalid label {key}={value}"
    for pool in job.job_spec.worker_pool_specs:
        env = pool.container_spec.env
        if len(env) > 100:
            return "container_spec.env: maximum limit is 100"
        for item in env:
            if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", item.name):
                return f"env name {item.name!r} is not a valid C identifier"
    return None


def _expand_env(items: list[tuple[str, str]]) -> dict[str, str]:
    """EnvVar.value: "$(VAR_NAME)" expands to a variable defined before it; "$$(" escapes it."""
    out: dict[str, str] = {}
    for name, value in items:

        def expand(match: re.Match[str]) -> str:
            if match.group(0).startswith("$$"):
                return match.group(0)[1:]
            return out.get(match.group(1), match.group(0))

        out[name] = re.sub(r"\$\$\(|\$\(([A-Za-z_][A-Za-z0-9_]*)\)", expand, value)
    return out
