"""Client mode: the CLI and ``import multispot`` talking to a multispot server instead of the local
store (standard library ``urllib`` only: the core needs no HTTP package).

On when ``MULTISPOT_SERVER`` is set (the token in ``MULTISPOT_TOKEN``), or after
``multispot login URL --token T`` (kept in ``$MULTISPOT_HOME/credentials.json``, mode 0600);
``multispot.api`` decides in one place (``api._server``). The objects here answer like their local
counterparts (``Run``, ``CostReport``, ``SavingsReport``, ``Sweep``), with the JSON the server
sends, which is the JSON the CLI prints locally. An error answer is raised as the same exception
(type and message) the server raised, so the CLI prints what it would print locally.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tarfile
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Collection, Iterator
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from multispot import errors
from multispot.api import Run
from multispot.status import Attempt, Handle, JobState, Placement, Usage
from multispot.store import JobRecord, home, home_path

if TYPE_CHECKING:
    from multispot.job import Job

CREDENTIALS = "credentials.json"
TIMEOUT = 60.0  # seconds for one request (a streamed log has no overall limit)


# --------------------------------------------------------------------------- where and who


def credentials_path() -> Path:
    return home_path() / CREDENTIALS


def connect() -> Client | None:
    """The server to talk to: ``$MULTISPOT_SERVER`` (token ``$MULTISPOT_TOKEN``), else the one of
    ``multispot login``; None: work locally."""
    url = os.environ.get("MULTISPOT_SERVER", "").strip()
    if url:
        return Client(url, os.environ.get("MULTISPOT_TOKEN", "").strip() or None)
    path = credentials_path()
    if not path.is_file():
        return None
    try:
        saved = json.loads(path.read_text())
        return Client(str(saved["url"]), str(saved["token"]))
    except (OSError, ValueError, KeyError, TypeError):
        raise errors.ServerError(
            f"{path} is not a multispot login: `multispot logout`, then log in again"
        ) from None


def save_login(url: str, token: str) -> Path:
    """Keep ``url`` and ``token`` for later commands, readable by the user only (0600)."""
    path = home() / CREDENTIALS
    tmp = path.with_name(f".{CREDENTIALS}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"url": url, "token": token}, f)
    os.replace(tmp, path)
    return path


def forget_login() -> bool:
    path = credentials_path()
    if path.exists():
        path.unlink()
        return True
    return False


# --------------------------------------------------------------------------- the HTTP client


class Client:
    """Requests to one multispot server, as one user."""

    def __init__(self, url: str, token: str | None, timeout: float = TIMEOUT) -> None:
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise errors.ServerError(
                f"{url!r} is not a server URL: use http(s)://HOST:PORT", 0, "MULTISPOT_SERVER"
            )
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = timeout

    def _open(
        self,
        method: str,
        path: str,
        query: dict[str, Any] | None = None,
        body: Any = None,
        data: bytes | None = None,
        content_type: str = "application/json",
        timeout: float | None = TIMEOUT,
    ) -> Any:
        pairs = [(k, v) for k, v in (query or {}).items() if v is not None]
        flat = [(k, item) for k, v in pairs for item in (v if isinstance(v, list) else [v])]
        qs = urllib.parse.urlencode([(k, str(v).lower() if isinstance(v, bool) else v) for k, v in flat])
        url = f"{self.url}/api/v1{path}" + (f"?{qs}" if qs else "")
        if body is not None:
            data = json.dumps(body).encode()
        request = urllib.request.Request(url, data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", content_type)
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            return urllib.request.urlopen(request, timeout=timeout)
        except urllib.error.HTTPError as exc:
            raise _error_from(exc) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise errors.ServerError(f"cannot reach the multispot server at {self.url}: {reason}") from None

    def call(self, method: str, path: str, query: dict[str, Any] | None = None, body: Any = None) -> Any:
        with self._open(method, path, query, body) as answer:
            return json.loads(answer.read())

    def lines(self, path: str, query: dict[str, Any]) -> Iterator[str]:
        """A streamed answer, line by line as it arrives (no overall timeout: a log may follow for hours)."""
        with self._open("GET", path, query, timeout=None) as answer:
            for raw in answer:
                yield raw.decode("utf-8", "replace")

    # ----------------------------------------------------------------- what multispot.api asks

    def submit(
        self, job: Job, provider: str | None, inject_preemptions: str | None, resume_checkpoints: bool
    ) -> RemoteRun:
        spec, options = self._with_code(job.to_data())
        options.update(inject_preemptions=inject_preemptions, resume_checkpoints=resume_checkpoints)
        data = self.call("POST", "/jobs", body={"spec": spec, "provider": provider, "options": options})
        return RemoteRun(self, data["id"])

    def start_group(
        self,
        gfile: Any,
        provider: str | None,
        inject_preemptions: str | None,
        wait: bool,
        timeout: float | None,
    ) -> RemoteSweep:
        """A sweep or array file (a loaded ``GroupFile``) started on the server; with ``wait``,
        followed until it ends (its driver runs on the server either way)."""
        spec, options = self._with_code(gfile.job.to_data())
        spec[gfile.kind] = gfile.spec.model_dump(mode="json", by_alias=True)
        options["inject_preemptions"] = inject_preemptions
        body = {"kind": gfile.kind, "spec": spec, "provider": provider, "options": options}
        data = self.call("POST", "/sweeps", body=body)
        handle = RemoteSweep(self, data["id"], data)
        if wait:
            handle.run(timeout)
        return handle

    def _with_code(self, spec: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """The spec without ``source_dir``, and the options naming its uploaded code instead."""
        source = spec.pop("source_dir", None)
        return spec, ({"code_id": self.upload_code(Path(source))} if source else {})

    def upload_code(self, source: Path) -> str:
        """``source`` staged as a local job's would be (the same skips and bounds), as tar.gz."""
        from multispot.local.provider import stage_tree

        with tempfile.TemporaryDirectory(prefix="multispot-code-") as tmp:
            staged = Path(tmp) / "code"
            try:
                stage_tree(source, staged, skip=(home_path(),))
            except ValueError as exc:
                raise errors.JobSpecError([errors.Problem("source_dir", str(exc))]) from None
            buffer = io.BytesIO()
            with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
                for entry in sorted(staged.iterdir()):
                    archive.add(entry, arcname=entry.name)
            shutil.rmtree(staged, ignore_errors=True)
        with self._open("POST", "/code", data=buffer.getvalue(), content_type="application/gzip") as answer:
            return str(json.loads(answer.read())["code_id"])

    def get(self, ref: str) -> RemoteRun:
        return RemoteRun(self, self.call("GET", f"/jobs/{_quote(ref)}")["id"])

    def runs(self, limit: int, states: Collection[JobState] | None = None) -> list[RemoteRun]:
        query = {"limit": limit, "state": [s.value for s in states or ()] or None}
        return [RemoteRun(self, row["id"], row) for row in self.call("GET", "/jobs", query)]

    def savings(self, since: str | float | None, provider: str | None) -> RemoteReport:
        return RemoteReport(self, "/savings", {"since": since, "provider": provider})

    def checkpoints(self, ref: str) -> dict[str, Any]:
        return dict(self.call("GET", f"/jobs/{_quote(ref)}/checkpoints"))

    def sweeps(self, limit: int) -> list[RemoteSweep]:
        return [RemoteSweep(self, row["id"], row) for row in self.call("GET", "/sweeps", {"limit": limit})]

    def sweep(self, ref: str) -> RemoteSweep:
        data = self.call("GET", f"/sweeps/{_quote(ref)}")
        return RemoteSweep(self, data["id"], data)


def _quote(ref: str) -> str:
    return urllib.parse.quote(ref, safe="")


def _error_from(exc: urllib.error.HTTPError) -> errors.MultispotError:
    """The server's error answer as the exception it came from (same type, same message)."""
    try:
        body = json.loads(exc.read(1 << 20))["error"]
        kind, message = str(body["type"]), str(body["message"])
    except (ValueError, KeyError, TypeError, OSError):
        return errors.ServerError(f"the server answered {exc.code} {exc.reason}", exc.code)
    problems = [errors.Problem(p["path"], p["message"], p.get("line")) for p in body.get("problems") or ()]
    cls = getattr(errors, kind, None)
    if kind == "ServerError" or not (isinstance(cls, type) and issubclass(cls, errors.MultispotError)):
        return errors.ServerError(message, exc.code, body.get("field"))
    if cls is errors.JobSpecError:
        return errors.JobSpecError(problems)
    if cls is errors.ValidationFailed:
        return errors.ValidationFailed(str(body.get("provider") or "multispot"), problems)
    error = cls.__new__(cls)
    Exception.__init__(error, message)  # the server's message as is, whatever the class's own __init__
    return error


# --------------------------------------------------------------------------- a job on the server


def _stamp(iso: str | None) -> float | None:
    return None if iso is None else datetime.fromisoformat(iso).timestamp()


def _attempt(job_id: str, row: dict[str, Any]) -> Attempt:
    times = row.get("times") or {}
    handle = row.get("handle_data")
    return Attempt(
        job_id=job_id,
        n=int(row["n"]),
        placement=Placement(
            provider=row["provider"],
            market=row["market"],
            region=row.get("region"),
            instance_type=row.get("instance_type"),
        ),
        state=JobState(row["state"]),
        handle=Handle.from_dict(handle) if handle else None,
        message=row.get("message") or "",
        interruptions=int(row.get("interruptions") or 0),
        submitted=times.get("submitted", _stamp(row.get("submitted"))),
        started=times.get("started", _stamp(row.get("started"))),
        ended=times.get("ended", _stamp(row.get("ended"))),
        usage=Usage.from_dict(row["usage"]) if row.get("usage") else None,
    )


class RemoteRun(Run):
    """A job on the server, answering like ``multispot.api.Run`` (every method of it is answered
    by the server; ``record`` is the server's view of it, without the spec)."""

    def __init__(self, client: Client, job_id: str, data: dict[str, Any] | None = None) -> None:
        self.client = client
        self.id = job_id
        self._data = data

    @property
    def record(self) -> JobRecord:
        data = self.to_dict()
        return JobRecord(
            id=data["id"],
            name=data["name"],
            spec={},
            provider=data["provider"],
            state=JobState(data["state"]),
            checkpoint_uri=data["checkpoint_uri"],
            output_uri=data["output_uri"],
            message=data.get("message") or "",
            created=_stamp(data["created"]) or 0.0,
            ended=_stamp(data.get("ended")),
        )

    @property
    def job(self) -> Job:
        raise errors.ServerError(f"the spec of {self.id} stays on the server: `multispot status {self.id}`")

    def progress(self) -> tuple[int, int | None] | None:
        shown = self.to_dict()["progress"]
        return None if shown is None else (shown["step"], shown["total_steps"])

    def to_dict(self) -> dict[str, Any]:
        data = self._data or self.client.call("GET", f"/jobs/{_quote(self.id)}")
        self._data = None  # a listing's row serves once; later reads are fresh
        return dict(data)

    @property
    def status(self) -> JobState:
        data = self._data or self.to_dict()  # a listing's row answers without another request
        return JobState(data["state"])

    @property
    def attempts(self) -> list[Attempt]:
        rows = self.client.call("GET", f"/jobs/{_quote(self.id)}/attempts")
        return [_attempt(self.id, row) for row in rows]

    def events(
        self, after: int = 0
    ) -> list[tuple[int, Any]]:  # Event-like: job_id, attempt, time, kind, message
        rows = self.client.call("GET", f"/jobs/{_quote(self.id)}/events", {"after": after})
        return [
            (
                row["id"],
                SimpleNamespace(
                    job_id=self.id,
                    attempt=row["attempt"],
                    time=row["time"],
                    kind=row["kind"],
                    message=row["message"],
                ),
            )
            for row in rows
        ]

    def ensure_driven(self) -> bool:
        """The server restarts a job's controller when it reads the job; nothing to do here."""
        return False

    def wait(self, timeout: float | None = None, poll: float = 0.5, show: bool = False) -> JobState:
        deadline = None if timeout is None else time.time() + timeout
        seen = 0
        console = None
        if show:
            from rich.console import Console

            console = Console(highlight=False)
        while True:
            if console is not None:
                for event_id, event in self.events(seen):
                    seen = event_id
                    stamp = time.strftime("%H:%M:%S", time.localtime(event.time))
                    console.print(f"[dim]{stamp}[/] {event.kind}: {event.message}", markup=True)
            state = self.status
            if state.job_terminal:
                return state
            if deadline is not None and time.time() > deadline:
                raise TimeoutError(f"{self.id} is still {state.value} after {timeout:g}s")
            time.sleep(poll)

    def cancel(self) -> None:
        self.client.call("POST", f"/jobs/{_quote(self.id)}/cancel")

    def logs(self, follow: bool = False, attempt: int | None = None) -> Iterator[str]:
        query = {"follow": follow, "attempt": attempt, "format": "text"}
        return self.client.lines(f"/jobs/{_quote(self.id)}/logs", query)

    def log_lines(self, follow: bool = False, attempt: int | None = None) -> Iterator[tuple[Attempt, str]]:
        known: dict[int, Attempt] = {}
        query = {"follow": follow, "attempt": attempt, "format": "jsonl"}
        for raw in self.client.lines(f"/jobs/{_quote(self.id)}/logs", query):
            item = json.loads(raw)
            n = int(item["attempt"])
            if n not in known:
                known = {a.n: a for a in self.attempts}
            yield known[n], item["line"] + "\n"

    def cost(self, measured: bool = False) -> Any:  # a RemoteReport, answering like a CostReport
        return RemoteReport(self.client, f"/jobs/{_quote(self.id)}/cost", {"measured": measured})

    def __repr__(self) -> str:
        return f"RemoteRun({self.id!r}, {self.status.value}, server={self.client.url!r})"


class RemoteReport:
    """A CostReport or SavingsReport computed by the server: ``to_dict()`` is its JSON; the table
    parts (``headers``/``rows``/``summary``/``details``) are what the server's report renders."""

    def __init__(self, client: Client, path: str, query: dict[str, Any]) -> None:
        self.client = client
        self.path = path
        self.query = query
        self._table: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.client.call("GET", self.path, {**self.query, "view": "json"}))

    def _view(self) -> dict[str, Any]:
        if self._table is None:
            self._table = dict(self.client.call("GET", self.path, {**self.query, "view": "table"}))
        return self._table

    @property
    def HEADERS(self) -> tuple[str, ...]:  # the name SavingsReport gives its headers
        return tuple(self._view()["headers"])

    @property
    def job_id(self) -> str:
        return str(self._view().get("job_id"))

    def headers(self) -> tuple[str, ...]:
        return self.HEADERS

    def rows(self) -> list[list[str]]:
        return [list(row) for row in self._view()["rows"]]

    def summary(self) -> str:
        return str(self._view()["summary"])

    def details(self) -> list[str]:
        return list(self._view()["details"])

    def __repr__(self) -> str:
        return f"RemoteReport({self.summary()})"


class RemoteSweep:
    """A sweep or job array on the server, answering like ``multispot.sweep.Sweep``."""

    def __init__(self, client: Client, sweep_id: str, data: dict[str, Any]) -> None:
        self.client = client
        self.id = sweep_id
        self._data = data

    @property
    def kind(self) -> str:
        return str(self._data["kind"])

    @property
    def state(self) -> str:
        return str(self.client.call("GET", f"/sweeps/{_quote(self.id)}")["state"])

    def summary(self) -> dict[str, Any]:
        row = self._data
        members = row["members"]
        return {**row, "members": members if isinstance(members, int) else len(members)}

    def to_dict(self) -> dict[str, Any]:
        return dict(self.client.call("GET", f"/sweeps/{_quote(self.id)}"))

    def ensure_driven(self) -> bool:
        """The server restarts a sweep's driver when it reads the sweep; nothing to do here."""
        return False

    def run(self, timeout: float | None = None, poll: float = 1.0) -> str:
        """Follow the sweep until it ends (its driver runs on the server); returns its state."""
        end = None if timeout is None else time.time() + timeout
        while True:
            state = self.state
            if state != "running":
                return state
            if end is not None and time.time() > end:
                raise TimeoutError(f"{self.id} is still running after {timeout:g}s")
            time.sleep(poll)

    wait = run

    def cancel(self) -> None:
        self._data = {**self._data, **self.client.call("POST", f"/sweeps/{_quote(self.id)}/cancel")}
