"""A small local fake of the Azure ML management API (HTTPS), plus Azurite, for the real MLClient.

The fake speaks the wire the SDK uses (ARM jobs/codes/computes, the workspace discovery document,
run-history details, Cost Management query) and plays the service: it runs a submitted command
job's command locally, with the code downloaded from Azurite, each read-write output "mounted" as
a temp folder kept in sync with its Azurite path, an Instance Metadata Scheduled Events document
for the preemption notice, and the run's log uploaded as a blob with a SAS URL in its details.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from multispot.testing.files import files_under

AZURITE_ACCOUNT = "devstoreaccount1"
# Azurite's published development key (public, documented; it opens nothing but the emulator).
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
WORKSPACE_CONTAINER = "azureml-blobstore-fake"
AZURITE_FLAGS = (
    "--inMemoryPersistence",
    "--skipApiVersionCheck",
    "--loose",
    "--disableTelemetry",
    "--silent",
)
_LAST = ("MANIFEST.json", "LATEST")
# Seconds the first Scheduled Events call of a VM takes (see scheduled_events): shorter than the
# service's up to two minutes so the contract's short jobs still see their notice; the client's
# first-call wait itself is held to the documented delay in test_azureml_runtime.
FIRST_EVENTS_DELAY = 0.5
OTHER_CONTAINER, OTHER_DATASTORE = (
    "other-data",
    "otherdata",
)  # a second datastore on its own container  # uploaded after the files they describe, like a careful sync


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Azurite:
    """The Azurite blob emulator from the npm package, in memory, on a free loopback port."""

    def __init__(self, binary: Path) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen(
            [str(binary), "--blobHost", "127.0.0.1", "--blobPort", str(self.port), *AZURITE_FLAGS],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.time() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                break
            except OSError:
                if time.time() > deadline or self.proc.poll() is not None:
                    raise RuntimeError("Azurite did not start") from None
                time.sleep(0.1)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}/{AZURITE_ACCOUNT}"

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
            f"BlobEndpoint={self.endpoint};"
        )

    def service(self) -> Any:
        from azure.storage.blob import BlobServiceClient

        return BlobServiceClient.from_connection_string(self.connection_string)

    def sas(self, container: str, blob: str | None = None) -> str:
        from azure.storage.blob import (
            BlobSasPermissions,
            ContainerSasPermissions,
            generate_blob_sas,
            generate_container_sas,
        )

        expiry = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1)
        if blob is None:
            token = generate_container_sas(
                AZURITE_ACCOUNT, container, account_key=AZURITE_KEY, expiry=expiry,
                permission=ContainerSasPermissions(read=True, write=True, list=True, create=True),
            )  # fmt: skip
            return f"{self.endpoint}/{container}?{token}"
        token = generate_blob_sas(
            AZURITE_ACCOUNT, container, blob, account_key=AZURITE_KEY, expiry=expiry,
            permission=BlobSasPermissions(read=True),
        )  # fmt: skip
        return f"{self.endpoint}/{container}/{blob}?{token}"

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 (the SDK sends bearer tokens only over HTTPS)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


def iso(stamp: float | None) -> str | None:
    if stamp is None:
        return None
    return datetime.datetime.fromtimestamp(stamp, tz=datetime.timezone.utc).isoformat().replace("+00:00", "Z")


class FakeJob:
    """One submitted command job, as the service runs it."""

    def __init__(self, fake: FakeAzureML, name: str, body: dict[str, Any]) -> None:
        self.fake, self.name, self.body = fake, name, body
        self.status = "NotStarted"
        self.created = time.time()
        self.started: float | None = None
        self.ended: float | None = None
        self.error: dict[str, str] | None = None
        self.warnings: list[dict[str, str]] = []
        self.proc: subprocess.Popen[bytes] | None = None
        self.root = Path(tempfile.mkdtemp(prefix=f"aml-{name}-", dir=fake.workdir))
        self.mounts: dict[str, tuple[Path, str, str]] = {}  # output -> (dir, container, prefix)
        self.preempt_at: float | None = None  # the Scheduled Events document announces it
        self.evicted = False  # the node was taken (the fake stopped the process at the deadline)
        self.node = f"{name[:20]}_0"  # this job's VM name (IMDS compute.name)
        self.other_preempts: list[str] = []  # other VMs' Preempt events, in the same document
        self.events_enabled = False
        self.log_blob = f"ExperimentRun/dcid.{name}/user_logs/std_log.txt"
        self.lock = threading.Lock()
        self.cancelled = False
        threading.Thread(target=self._run, daemon=True).start()

    # ----------------------------------------------------------- the service's side

    def _run(self) -> None:
        self.status = "Queued"
        time.sleep(0.1)
        while True:
            outcome = self._attempt()
            if outcome != "requeue":
                return
            self.status = "Queued"
            time.sleep(0.1)

    def _attempt(self) -> str:
        props = self.body["properties"]
        if self.cancelled:
            self._end("Canceled")
            return "done"
        self.status = "Preparing"
        code = self.root / "code"
        shutil.rmtree(code, ignore_errors=True)
        code.mkdir()
        if props.get("codeId"):
            self.fake.download_code(props["codeId"], code)
        command = props["command"]
        for output, spec in (props.get("outputs") or {}).items():
            container, prefix = self.fake.datastore_path(spec["uri"])
            folder = self.root / "mounts" / output
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
            self.fake.download(container, prefix, folder)
            self.mounts[output] = (folder, container, prefix)
            command = command.replace(f"${{{{outputs.{output}}}}}", str(folder))
        # A fresh container from the environment's image: a Python with pip and nothing else (the
        # curated images have no multispot), a fresh /tmp, and only the variables the request
        # sets plus the service's own. Whatever multispot the command uses, it installed itself.
        image = self.root / "image"
        shutil.rmtree(image, ignore_errors=True)
        self.fake.image_into(image)
        tmp = self.root / "tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        env = {
            "PATH": f"{image / 'bin'}{os.pathsep}/usr/local/bin{os.pathsep}/usr/bin{os.pathsep}/bin",
            "HOME": str(self.root),
            "TMPDIR": str(tmp),
            "LANG": "C.UTF-8",
        }
        env.update(props.get("environmentVariables") or {})
        env["AZUREML_RUN_ID"] = self.name
        for output, (folder, _, _) in self.mounts.items():
            env[f"AZURE_ML_OUTPUT_{output}"] = str(folder)  # as the service sets for each output
        env["MULTISPOT_AZURE_SCHEDULED_EVENTS_URL"] = (
            f"{self.fake.imds_url}/metadata/scheduledevents/{self.name}"
        )
        env["MULTISPOT_AZURE_INSTANCE_URL"] = f"{self.fake.imds_url}/metadata/instance/{self.name}"
        self.preempt_at = None
        self.evicted = False
        log = open(self.root / "std_log.txt", "ab")  # noqa: SIM115 (closed when the process ends)
        with self.lock:
            self.proc = subprocess.Popen(
                ["bash", "-c", command], cwd=code, env=env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        if self.started is None:
            self.started = time.time()
        self.status = "Running"
        while self.proc.poll() is None:
            self._sync()
            time.sleep(0.15)
        log.close()
        self._sync()
        code_rc = self.proc.returncode
        if self.cancelled:
            self._end("Canceled")
        elif not self.evicted and code_rc != 0:
            # The process ended by itself before the node was taken (e.g. it exited on the notice):
            # to the service that is the user's command failing, whatever came next.
            self.error = {
                "code": "UserError",
                "message": f"Execution failed: the process exited with {code_rc}",
            }
            self._end("Failed")
        elif self.evicted and self.fake.requeue_on_preemption:
            self.warnings.append({"source": "fake", "message": "Low priority node preempted; job requeued"})
            return "requeue"
        elif self.evicted:
            self.error = {"code": "ServiceError", "message": "The job's low priority node was preempted"}
            self._end("Failed")
        elif code_rc == 0:
            self._end("Completed")
        else:
            self.error = {
                "code": "UserError",
                "message": f"Execution failed: the process exited with {code_rc}",
            }
            self._end("Failed")
        return "done"

    def _end(self, status: str) -> None:
        self.ended = time.time()
        self.status = status

    def _sync(self) -> None:
        """Mounted outputs → Azurite (what blobfuse does), the log → its blob."""
        for folder, container, prefix in self.mounts.values():
            files = files_under(folder)
            files.sort(key=lambda p: p.name in _LAST)
            present = set()
            for path in files:
                key = str(path.relative_to(folder))
                try:
                    stat = path.stat()
                    mark = (stat.st_size, stat.st_mtime_ns)
                    if self.fake.synced.get((container, prefix, key)) != mark:
                        data = path.read_bytes()
                        self.fake.blobs.get_blob_client(container, f"{prefix}/{key}").upload_blob(
                            data, overwrite=True
                        )
                        self.fake.synced[(container, prefix, key)] = mark
                except FileNotFoundError:
                    continue  # deleted by retention since the listing
                present.add(key)
            for gone in [k for k in self.fake.synced if k[:2] == (container, prefix) and k[2] not in present]:
                del self.fake.synced[gone]  # a deletion through the mount deletes the blob
                self.fake.blobs.get_blob_client(container, f"{prefix}/{gone[2]}").delete_blob()
        log = self.root / "std_log.txt"
        if log.exists():
            self.fake.blobs.get_blob_client(WORKSPACE_CONTAINER, self.log_blob).upload_blob(
                log.read_bytes(), overwrite=True
            )

    def preempt(self, notice: float) -> None:
        """Announce the eviction in Scheduled Events, then SIGTERM and kill after ``notice``."""
        self.preempt_at = time.time() + notice
        proc = self.proc

        def evict() -> None:
            assert proc is not None
            try:
                proc.wait(notice)
                return
            except subprocess.TimeoutExpired:
                pass
            self.evicted = True
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)

        threading.Thread(target=evict, daemon=True).start()

    def cancel(self) -> None:
        self.cancelled = True
        with self.lock:
            if self.proc is not None and self.proc.poll() is None:
                os.killpg(self.proc.pid, signal.SIGTERM)

    # ----------------------------------------------------------- what the API shows

    def rest(self) -> dict[str, Any]:
        body = json.loads(json.dumps(self.body))
        body["id"] = f"{self.fake.workspace_id}/jobs/{self.name}"
        body["type"] = "Microsoft.MachineLearningServices/workspaces/jobs"
        body["properties"]["status"] = self.status
        return body

    def details(self) -> dict[str, Any]:
        return {
            "runId": self.name,
            "status": self.status,
            "createdTimeUtc": iso(self.created),
            "startTimeUtc": iso(self.started),
            "endTimeUtc": iso(self.ended),
            "error": {"error": self.error} if self.error else None,
            "warnings": self.warnings,
            "logFiles": {"user_logs/std_log.txt": self.fake.azurite.sas(WORKSPACE_CONTAINER, self.log_blob)},
        }

    def scheduled_events(self) -> dict[str, Any]:
        # "Scheduled Events is enabled for your service the first time you make a request for
        # events. You should expect a delayed response in your first call of up to two minutes."
        # (Azure Metadata Service: Scheduled Events for Linux VMs.) The fake's delay is shorter.
        if not self.events_enabled:
            time.sleep(FIRST_EVENTS_DELAY)
            self.events_enabled = True
        others = [
            {
                "EventId": str(uuid.uuid4()),
                "EventType": "Preempt",
                "ResourceType": "VirtualMachine",
                "Resources": [node],
                "EventStatus": "Scheduled",
                "NotBefore": format_datetime(
                    datetime.datetime.fromtimestamp(time.time() + 30, tz=datetime.timezone.utc), usegmt=True
                ),
            }
            for node in self.other_preempts
        ]
        if self.preempt_at is None:
            return {"DocumentIncarnation": 1 + len(others), "Events": others}
        return {
            "DocumentIncarnation": 2 + len(others),
            "Events": [
                *others,
                {
                    "EventId": str(uuid.uuid4()),
                    "EventType": "Preempt",
                    "ResourceType": "VirtualMachine",
                    "Resources": [self.node],
                    "EventStatus": "Scheduled",
                    "NotBefore": format_datetime(
                        datetime.datetime.fromtimestamp(self.preempt_at, tz=datetime.timezone.utc),
                        usegmt=True,
                    ),
                },
            ],
        }


class FakeAzureML:
    """The HTTPS fake; ``url`` is the ARM endpoint, the discovery/history endpoint and IMDS at once."""

    def __init__(
        self, azurite: Azurite, workdir: Path, subscription: str, resource_group: str, workspace: str
    ):
        self.azurite, self.workdir = azurite, workdir
        self.blobs = azurite.service()
        # The workspace's datastores: name → container (all in Azurite's one account).
        self.datastores = {"workspaceblobstore": WORKSPACE_CONTAINER, OTHER_DATASTORE: OTHER_CONTAINER}
        for container in self.datastores.values():
            if not self.blobs.get_container_client(container).exists():
                self.blobs.create_container(container)
        self._image = workdir / "image"
        self._image_lock = threading.Lock()
        self.workspace_id = (
            f"/subscriptions/{subscription}/resourceGroups/{resource_group}"
            f"/providers/Microsoft.MachineLearningServices/workspaces/{workspace}"
        )
        self.workspace = workspace
        self.jobs: dict[str, FakeJob] = {}
        self.codes: dict[str, dict[str, Any]] = {}  # code arm id -> version body
        self.uploads: dict[str, str] = {}  # code arm id -> blob prefix
        self.computes: dict[str, dict[str, Any]] = {}
        self.requests: list[tuple[str, str, Any]] = []
        self.cost_queries: list[tuple[str, dict[str, Any]]] = []
        self.cost_rows: list[list[Any]] = []
        self.synced: dict[tuple[str, str, str], tuple[int, int]] = {}
        self.requeue_on_preemption = False
        self.cert, key = self_signed(workdir)
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert, key)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self.server.server_address[1]}"
        # The Scheduled Events endpoint is plain HTTP, like the real one.
        self.imds = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.imds_url = f"http://127.0.0.1:{self.imds.server_address[1]}"
        for server in (self.server, self.imds):
            threading.Thread(target=server.serve_forever, daemon=True).start()

    def cloud_metadata(self) -> dict[str, str]:
        url = self.url + "/"
        return {
            "azure_portal": url,
            "resource_manager": url,
            "active_directory": url,
            "aml_resource_id": url,
            "storage_endpoint": "core.windows.net",
            "registry_discovery_endpoint": url,
        }

    def stop(self) -> None:
        for job in self.jobs.values():
            job.cancel()
        for server in (self.server, self.imds):
            server.shutdown()
            server.server_close()

    # ------------------------------------------------------------------ storage helpers

    def datastore_path(self, uri: str) -> tuple[str, str]:
        """A datastore path → (container, prefix): the container is the datastore's own."""
        match = re.match(r"azureml://datastores/([^/]+)/paths/(.*)$", uri)
        assert match and match[1] in self.datastores, uri  # refused at PUT otherwise
        return self.datastores[match[1]], match[2].strip("/")

    def download(self, container: str, prefix: str, target: Path) -> None:
        client = self.blobs.get_container_client(container)
        if not client.exists():
            client.create_container()
        for blob in client.list_blobs(name_starts_with=f"{prefix}/" if prefix else None):
            relative = blob.name[len(prefix) + 1 :] if prefix else blob.name
            path = target / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(client.download_blob(blob.name).readall())
            stat = path.stat()
            self.synced[(container, prefix, relative)] = (stat.st_size, stat.st_mtime_ns)

    def download_code(self, code_id: str, target: Path) -> None:
        """The code version's files, from where its ``codeUri`` points (what the SDK uploaded)."""
        asset = code_id.split("?")[0]
        folder = str(self.codes[asset]["properties"]["codeUri"]).rstrip("/").rsplit("/", 1)[-1]
        self.download(self.uploads[asset.split("/versions/")[0]], folder, target)

    # ------------------------------------------------------------------ routes

    def handle(self, method: str, path: str, query: str, body: Any) -> tuple[int, Any, dict[str, str]]:
        self.requests.append((method, path, body))
        ws = self.workspace_id
        if path.startswith("/metadata/scheduledevents/"):
            job = self.jobs.get(path.rsplit("/", 1)[-1])
            return 200, job.scheduled_events() if job else {"Events": []}, {}
        instance = re.match(r"^/metadata/instance/([^/]+)/compute/name$", path)
        if instance:  # IMDS compute.name, asked for with format=text
            job = self.jobs.get(instance[1])
            return (200, job.node.encode(), {}) if job else _not_found()
        if path == "/discovery":
            return 200, {"api": self.url, "history": self.url, "experimentation": self.url}, {}
        if path.startswith("/operations/"):
            return 200, {"status": "Succeeded"}, {}
        if path.endswith("/providers/Microsoft.CostManagement/query") and method == "POST":
            self.cost_queries.append((path, body))
            columns = [{"name": "Cost", "type": "Number"}, {"name": "Currency", "type": "String"}]
            return (
                200,
                {"id": "q", "name": "q", "properties": {"columns": columns, "rows": self.cost_rows}},
                {},
            )
        history = re.match(r"^/history/v1\.0" + re.escape(ws) + r"/runs/([^/]+)/details$", path)
        if history:
            job = self.jobs.get(history[1])
            return (200, job.details(), {}) if job else _not_found()
        if path == ws:
            return 200, self._workspace(), {}
        if not path.startswith(ws + "/"):
            return _not_found()
        rest = path[len(ws) + 1 :]
        parts = rest.split("/")
        if parts[0] == "datastores":
            return self._datastores(parts, path)
        if parts[0] == "codes":
            return self._codes(method, parts, path, query, body)
        if parts[0] == "computes" and len(parts) == 2:
            if method == "PUT":
                body = dict(body, id=path, name=parts[1])
                body.setdefault("properties", {})["provisioningState"] = "Succeeded"
                self.computes[parts[1]] = body
                return 200, body, {}
            return (200, self.computes[parts[1]], {}) if parts[1] in self.computes else _not_found()
        if parts[0] == "jobs" and len(parts) == 2:
            name = parts[1]
            if method == "PUT":
                if name in self.jobs:
                    return 400, {"error": {"code": "UserError", "message": f"job {name} already exists"}}, {}
                refused = self.refuse_job(body)
                if refused:
                    return 400, {"error": {"code": "UserError", "message": refused}}, {}
                self.jobs[name] = FakeJob(self, name, body)
                return 201, self.jobs[name].rest(), {}
            return (200, self.jobs[name].rest(), {}) if name in self.jobs else _not_found()
        if parts[0] == "jobs" and len(parts) == 3 and parts[2] == "cancel":
            self.jobs[parts[1]].cancel()
            return 202, None, {"Location": f"{self.url}/operations/cancel-{parts[1]}", "Retry-After": "0"}
        return _not_found()

    def refuse_job(self, body: dict[str, Any]) -> str | None:
        """What the service rejects in PUT jobs/{name} about the job's data paths.

        Outputs are written only to datastore paths, ``azureml://datastores/<name>/paths/<path>``
        ("Access data in a job": supported paths for outputs), on a datastore the workspace has.
        """
        props = body.get("properties") or {}
        for name, spec in (props.get("outputs") or {}).items():
            uri = str(spec.get("uri") or "")
            match = re.match(r"^azureml://datastores/([^/]+)/paths/.+$", uri)
            if match is None:
                return f"output {name}: {uri!r} is not a datastore path"
            if match[1] not in self.datastores:
                return f"output {name}: datastore {match[1]!r} not found in the workspace"
        for name, spec in (props.get("inputs") or {}).items():
            match = re.match(r"^azureml://datastores/([^/]+)/paths/", str(spec.get("uri") or ""))
            if match is not None and match[1] not in self.datastores:
                return f"input {name}: datastore {match[1]!r} not found in the workspace"
        return None

    def _datastore_rest(self, name: str) -> dict[str, Any]:
        container = self.datastores[name]
        return {
            "id": f"{self.workspace_id}/datastores/{name}",
            "name": name,
            "type": "Microsoft.MachineLearningServices/workspaces/datastores",
            "properties": {
                "datastoreType": "AzureBlob",
                "accountName": AZURITE_ACCOUNT,
                "containerName": container,
                "endpoint": "core.windows.net",
                "protocol": "https",
                "credentials": {"credentialsType": "None"},
                "isDefault": name == "workspaceblobstore",
            },
        }

    def _datastores(self, parts: list[str], path: str) -> tuple[int, Any, dict[str, str]]:
        if len(parts) == 1:
            return 200, {"value": [self._datastore_rest(n) for n in sorted(self.datastores)]}, {}
        if len(parts) == 2 and parts[1] in self.datastores:
            return 200, self._datastore_rest(parts[1]), {}
        return _not_found()

    def image_into(self, target: Path) -> None:
        """A copy of the environment's "image": a virtualenv with pip and no other package."""
        with self._image_lock:
            if not self._image.exists():
                building = self._image.with_name("image-building")
                shutil.rmtree(building, ignore_errors=True)
                subprocess.run([sys.executable, "-m", "venv", str(building)], check=True)
                building.rename(self._image)
        shutil.copytree(self._image, target, symlinks=True)

    def _workspace(self) -> dict[str, Any]:
        return {
            "id": self.workspace_id,
            "name": self.workspace,
            "location": "eastus",
            "type": "Microsoft.MachineLearningServices/workspaces",
            "properties": {"discoveryUrl": f"{self.url}/discovery", "workspaceId": "0000-fake"},
        }

    def _codes(
        self, method: str, parts: list[str], path: str, query: str, body: Any
    ) -> tuple[int, Any, dict[str, str]]:
        asset = path.split("/versions")[0]
        if len(parts) == 3 and method == "GET":  # codes/{name}/versions?hash=...
            found = [v for k, v in self.codes.items() if k.startswith(asset) and v.get("_hash") in query]
            return 200, {"value": found}, {}
        if len(parts) == 5 and parts[4] == "startPendingUpload":
            # One temporary container per upload (the service hands out a temporary blob reference):
            # the SDK reads Azurite's path-style URL one segment off, so it uploads to
            # <container>/<folder name>/..., and a shared container would mix two uploads.
            container = f"upload-{uuid.uuid4().hex[:20]}"
            self.blobs.create_container(container)
            self.uploads[asset] = container
            reference = {
                "blobUri": f"{self.azurite.endpoint}/{container}/LocalUpload",
                "credential": {"credentialType": "SAS", "sasUri": self.azurite.sas(container)},
            }
            return (
                200,
                {"blobReferenceForConsumption": reference, "pendingUploadType": "TemporaryBlobReference"},
                {},
            )
        if len(parts) == 4 and method == "PUT":
            version = dict(body, id=path, name=parts[3])
            self.codes[path] = version
            return 200, version, {}
        if len(parts) == 4 and path in self.codes:
            return 200, self.codes[path], {}
        return _not_found()


def _not_found() -> tuple[int, Any, dict[str, str]]:
    return 404, {"error": {"code": "ResourceNotFound", "message": "not found"}}, {}


def _handler(fake: FakeAzureML) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            path, _, query = self.path.partition("?")
            try:
                body = json.loads(raw) if raw else None
                status, payload, headers = fake.handle(self.command, path, query, body)
            except Exception as exc:  # the test reads this in the SDK's error
                status, payload, headers = 500, {"error": {"code": "FakeError", "message": repr(exc)}}, {}
            if isinstance(payload, bytes):
                data = payload
            else:
                data = b"" if payload is None else json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for key, value in headers.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_PUT = do_POST = do_PATCH = do_DELETE = _serve

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler
