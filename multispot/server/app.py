"""The multispot HTTP API (``/api/v1``): routes over ``multispot.api`` and the job store.

Each route authenticates the caller (``Authorization: Bearer <token>`` → SHA-256 → the store's
user), scopes what it reads to the caller's team (an admin sees every team; another team's job
is answered 404, as if it did not exist), and records every change in the audit log. The
answers are the JSON the CLI prints with ``--output json``; errors are
``{"error": {"type", "message", "field"?}}`` (``multispot.server.errors``).

The server process holds one job store, shared by every request (both backends are safe to
share between threads: SQLite's handle takes turns on its one connection, PostgreSQL's has a pool).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from multispot import __version__, api
from multispot.errors import JobNotFound, JobSpecError, MultispotError, Problem, ServerError
from multispot.job import Job
from multispot.server import errors, staging
from multispot.server.auth import hash_token
from multispot.server.limits import BodyLimit
from multispot.status import JobState, iso_time
from multispot.store import Store as StoreProtocol
from multispot.store import User as StoreUser
from multispot.store import home, open_store
from multispot.store.base import DEFAULT_TEAM

API = "/api/v1"
# How long one request waits for a lost database before answering 503: well inside the client's
# 60 s, so a person reads "the job store … unreachable", not "cannot reach the server" after a
# minute (the store's own default, 120 s, suits controllers that must ride out a failover).
STORE_RECONNECT_WAIT = 10.0
MAX_JSON_BYTES = 1 << 20  # a job spec is a few KiB (the spec loader refuses more than 1 MiB)
MAX_LIMIT = 1000


# --------------------------------------------------------------------------- store and caller


def store_of(request: Request) -> StoreProtocol:
    store: StoreProtocol = request.app.state.store
    return store


def caller(request: Request, store: Annotated[StoreProtocol, Depends(store_of)]) -> StoreUser:
    """The user the bearer token belongs to; 401 without a token or with one the store does not know."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise ServerError(
            "no token: send Authorization: Bearer <token> (`multispot login URL --token T`)", 401
        )
    user = store.user_by_token_hash(hash_token(token))
    if user is None:
        raise ServerError("this token is not valid (revoked or mistyped): ask an admin for a new one", 401)
    return user


StoreDep = Annotated[StoreProtocol, Depends(store_of)]
Caller = Annotated[StoreUser, Depends(caller)]


def visible_team(user: StoreUser) -> str | None:
    """The team whose jobs ``user`` may see; None: every team (an admin)."""
    return None if user.admin else str(user.team)


def job_for(user: StoreUser, store: StoreProtocol, ref: str) -> api.Run:
    """The job ``ref`` (id, name or id prefix) if ``user`` may see it; otherwise 404 either way, so
    another team's job ids cannot be probed."""
    hidden = JobNotFound(f"no job {ref!r} visible to you: `multispot list` shows your team's jobs")
    try:
        record = store.get_job(ref)
    except JobNotFound:
        raise hidden from None
    if not user.admin and record.team != user.team:
        raise hidden
    return api.Run(record.id, store)


@contextmanager
def audited(
    store: StoreProtocol, user: StoreUser, action: str, target: str, detail: dict[str, Any]
) -> Iterator[dict[str, Any]]:
    """Record ``action`` by ``user`` whatever its outcome: the handler may add to ``detail`` (the
    job id it made); a refusal is recorded with the error's type."""
    outcome = "error"
    try:
        yield detail
        outcome = "ok"
    except MultispotError as exc:
        outcome = type(exc).__name__
        raise
    finally:
        store.audit(user.name, action, str(detail.pop("target", target)), {**detail, "outcome": outcome})


# --------------------------------------------------------------------------- request bodies


class SubmitOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    inject_preemptions: str | None = Field(None, max_length=1000)
    resume_checkpoints: bool = False
    code_id: str | None = Field(None, max_length=64, description="what POST /api/v1/code answered")


class SubmitRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    spec: dict[str, Any] = Field(description="the job spec, as `Job.to_data()` writes it")
    provider: str | None = Field(None, max_length=100)
    options: SubmitOptions = SubmitOptions()


# --------------------------------------------------------------------------- routes

router = APIRouter(prefix=API)


@router.get("/health")
def health() -> dict[str, Any]:
    return {"status": "ok", "version": __version__}


@router.get("/me")
def me(user: Caller) -> dict[str, Any]:
    return {"id": user.id, "name": user.name, "team": user.team, "admin": user.admin}


@router.post("/code", status_code=201)
async def upload_code(request: Request, user: Caller, store: StoreDep) -> dict[str, Any]:
    """A tar.gz of the client's ``source_dir``; answers the ``code_id`` to submit with."""
    data = await request.body()
    if len(data) > staging.MAX_UPLOAD_BYTES:
        raise ServerError(f"the code archive is larger than {staging.MAX_UPLOAD_BYTES} bytes", 413, "code")
    with audited(store, user, "upload-code", "code", {"bytes": len(data)}) as detail:
        code_id = await run_in_threadpool(staging.stage, data, staging.code_home(), user.team)
        detail["target"] = code_id
    return {"code_id": code_id}


def server_spec(spec: dict[str, Any], code_id: str | None, user: StoreUser) -> tuple[dict[str, Any], Path]:
    """A job spec sent to the server, made safe to run here: its code is the upload ``code_id``
    names (a ``source_dir`` of its own would name a folder of the server), and ``${VAR}`` in
    ``env`` is refused (it would be filled from the server's environment: its secrets). Returns
    the spec and the folder its job runs in."""
    spec = dict(spec)
    if code_id:
        code_dir = staging.staged_dir(staging.code_home(), user.team, code_id)
        spec["source_dir"] = str(code_dir)
    elif spec.get("source_dir"):
        raise ServerError(
            "source_dir names a folder of the server: upload the code (POST /api/v1/code) and "
            "pass options.code_id (the CLI does this for you)",
            422,
            "spec.source_dir",
        )
    else:
        code_dir = _scratch(user.team)
    env = spec.get("env")
    if isinstance(env, dict):
        refs = [
            key for key, value in env.items() if isinstance(value, str) and "${" in value.replace("$${", "")
        ]
        if refs:
            raise JobSpecError(
                [
                    Problem(
                        f"env.{key}",
                        "a job sent to a multispot server cannot read environment variables (the "
                        "server's are not yours): write the value, or use secrets:",
                    )
                    for key in refs
                ]
            )
    return spec, code_dir


@router.post("/jobs", status_code=201)
def submit(body: SubmitRequest, user: Caller, store: StoreDep) -> dict[str, Any]:
    detail: dict[str, Any] = {"provider": body.provider, "name": body.spec.get("name")}
    with audited(store, user, "submit", "job", detail):
        spec, workdir = server_spec(body.spec, body.options.code_id, user)
        run = api.submit(
            Job.validate_data(spec),
            body.provider,
            inject_preemptions=body.options.inject_preemptions,
            store=store,
            resume_checkpoints=body.options.resume_checkpoints,
            workdir=str(workdir),
            team=user.team,
            submitted_by=user.name,
        )
        detail["target"] = run.id
    return run.to_dict()


def _scratch(team: str) -> Path:
    """Where a job without ``source_dir`` runs on the server: an empty folder of its team."""
    path = home() / "server" / "work" / staging.team_folder(team)
    path.mkdir(parents=True, exist_ok=True)
    return path


@router.get("/jobs")
def list_jobs(
    user: Caller,
    store: StoreDep,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 20,
    state: Annotated[list[JobState] | None, Query()] = None,
) -> list[dict[str, Any]]:
    # Each run holds its listed row: a finished job's is not read again (a round trip on PostgreSQL).
    runs = api.runs(limit, store, team=visible_team(user), states=state or None)
    for run in runs:
        run.ensure_driven()
    return api.run_dicts(runs)


@router.get("/jobs/{ref}")
def job_status(ref: str, user: Caller, store: StoreDep) -> dict[str, Any]:
    run = job_for(user, store, ref)
    run.ensure_driven()
    return run.to_dict()


@router.get("/jobs/{ref}/attempts")
def job_attempts(ref: str, user: Caller, store: StoreDep) -> list[dict[str, Any]]:
    """The attempts as ``status`` shows them, with the raw times and handle (the client rebuilds them)."""
    run = job_for(user, store, ref)
    shown = run.to_dict()["attempts"]
    return [
        {
            **row,
            "times": {"submitted": a.submitted, "started": a.started, "ended": a.ended},
            "handle_data": a.handle.to_dict() if a.handle else None,
        }
        for a, row in zip(run.attempts, shown, strict=False)
    ]


@router.get("/jobs/{ref}/events")
def job_events(
    ref: str, user: Caller, store: StoreDep, after: Annotated[int, Query(ge=0)] = 0
) -> list[dict[str, Any]]:
    run = job_for(user, store, ref)
    return [
        {
            "id": event_id,
            "attempt": event.attempt,
            "time": event.time,
            "iso_time": iso_time(event.time),
            "kind": event.kind,
            "message": event.message,
        }
        for event_id, event in run.events(after)
    ]


@router.get("/jobs/{ref}/logs")
def job_logs(
    request: Request,
    ref: str,
    user: Caller,
    store: StoreDep,
    follow: bool = False,
    attempt: Annotated[int | None, Query(ge=1)] = None,
    format: Annotated[str, Query(pattern="^(text|jsonl)$")] = "text",
) -> StreamingResponse:
    """The job's output as the CLI prints it (``jsonl``: one ``{"attempt", "line"}`` per line);
    with ``follow``, streamed until the job ends."""
    job_id = job_for(user, store, ref).id

    def lines() -> Iterator[str]:
        run = api.Run(job_id, store)
        if format == "jsonl":
            for item, line in run.log_lines(follow=follow, attempt=attempt):
                yield json.dumps({"attempt": item.n, "line": line.rstrip("\n")}) + "\n"
        else:
            yield from run.logs(follow=follow, attempt=attempt)

    media = "application/x-ndjson" if format == "jsonl" else "text/plain; charset=utf-8"
    return StreamingResponse(lines(), media_type=media)


@router.post("/jobs/{ref}/cancel")
def cancel(ref: str, user: Caller, store: StoreDep) -> dict[str, Any]:
    with audited(store, user, "cancel", ref, {}) as detail:  # a refused try is recorded too
        run = job_for(user, store, ref)
        detail["target"] = run.id
        ended = run.status.job_terminal
        if not ended:
            run.cancel()
        detail["cancel_requested"] = not ended
    return {"id": run.id, "state": run.status.value, "cancel_requested": not ended}


@router.get("/jobs/{ref}/checkpoints")
def job_checkpoints(ref: str, user: Caller, store: StoreDep) -> dict[str, Any]:
    return api.checkpoint_listing(job_for(user, store, ref).record.checkpoint_uri)


@router.get("/jobs/{ref}/cost")
def job_cost(
    ref: str,
    user: Caller,
    store: StoreDep,
    measured: bool = False,
    view: Annotated[str, Query(pattern="^(json|table)$")] = "json",
) -> dict[str, Any]:
    """The job's CostReport (``view=table``: the headers, rows and notes the CLI's table shows)."""
    report = job_for(user, store, ref).cost(measured=measured)
    if view == "table":
        return {
            "headers": report.headers(),
            "rows": report.rows(),
            "summary": report.summary(),
            "details": report.details(),
            "job_id": report.job_id,
        }
    return report.to_dict()


@router.get("/savings", response_model=None)
def savings(
    user: Caller,
    store: StoreDep,
    since: str | None = None,
    provider: str | None = None,
    group_by: Annotated[str | None, Query(pattern="^(team|provider|instance_type)$")] = None,
    view: Annotated[str, Query(pattern="^(json|table)$")] = "json",
) -> dict[str, Any] | list[dict[str, Any]]:
    """Savings of the caller's team (an admin: every team): the CLI's report, or with
    ``group_by`` a list of ``{key, cost, on_demand, saved, jobs}``."""
    report = _savings_report(user, store, since, provider)
    if group_by is not None:
        return _grouped(report, store, group_by, None)
    if view == "table":
        return {
            "headers": report.HEADERS,
            "rows": report.rows(),
            "summary": report.summary(),
            "details": report.details(),
        }
    return dict(report.to_dict())


@router.get("/savings/timeline")
def savings_timeline(
    user: Caller,
    store: StoreDep,
    group_by: Annotated[str, Query(pattern="^(team|provider|instance_type)$")] = "provider",
    bucket: Annotated[str, Query(pattern="^day$")] = "day",
    since: str | None = None,
    provider: str | None = None,
) -> list[dict[str, Any]]:
    """``{bucket, key, cost, on_demand, saved, jobs}`` per UTC day of the attempts' end."""
    return _grouped(_savings_report(user, store, since, provider), store, group_by, bucket)


def _savings_report(user: Any, store: Any, since: str | None, provider: str | None) -> Any:
    from multispot.billing import parse_since

    try:
        parse_since(since)
    except ValueError as exc:
        raise ServerError(str(exc), 422, "since") from None
    return api.savings(since, provider, store, team=visible_team(user))


def _grouped(report: Any, store: Any, group_by: str, bucket: str | None) -> list[dict[str, Any]]:
    from multispot.billing.savings_report import grouped_savings

    teams = {r.job_id: store.get_job(r.job_id).team for r in report.reports}
    return grouped_savings(report, group_by, teams, bucket)


def _sweep_for(user: Any, store: Any, ref: str) -> Any:
    """A sweep if ``user`` may see it: an admin, or the team that started it."""
    from multispot.sweep.view import Sweep

    hidden = JobNotFound(f"no sweep {ref!r} visible to you: `multispot sweeps` lists your team's")
    try:
        handle = Sweep(ref, store)
    except MultispotError:
        raise hidden from None
    if not user.admin and handle.group.spec.get("team", DEFAULT_TEAM) != user.team:
        raise hidden
    return handle


@router.get("/sweeps")
def list_sweeps(
    user: Caller, store: StoreDep, limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 20
) -> list[dict[str, Any]]:
    visible = []
    for handle in api.sweeps(limit, store):
        try:
            visible.append(_sweep_for(user, store, handle.id).summary())
        except JobNotFound:
            continue
    return visible


class SweepRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["sweep", "array"]
    spec: dict[str, Any] = Field(description="the sweep or array file's fields (the job's and its section)")
    provider: str | None = Field(None, max_length=100)
    options: SubmitOptions = SubmitOptions()


@router.post("/sweeps", status_code=201)
def start_sweep(body: SweepRequest, user: Caller, store: StoreDep) -> dict[str, Any]:
    """Start a sweep or array; the server's detached driver runs it (the answer comes at once)."""
    from multispot.sweep.spec import from_data

    detail: dict[str, Any] = {"kind": body.kind, "provider": body.provider, "name": body.spec.get("name")}
    with audited(store, user, f"start-{body.kind}", body.kind, detail):
        spec, workdir = server_spec(body.spec, body.options.code_id, user)
        start = api.sweep if body.kind == "sweep" else api.array
        handle = start(
            from_data(spec),
            body.provider,
            inject_preemptions=body.options.inject_preemptions,
            wait=False,
            store=store,
            team=user.team,
            submitted_by=user.name,
            workdir=str(workdir),
        )
        detail["target"] = handle.id
    return dict(handle.to_dict())


@router.get("/sweeps/{ref}")
def sweep_status(ref: str, user: Caller, store: StoreDep) -> dict[str, Any]:
    handle = _sweep_for(user, store, ref)
    handle.ensure_driven()
    return dict(handle.to_dict())


@router.post("/sweeps/{ref}/cancel")
def sweep_cancel(ref: str, user: Caller, store: StoreDep) -> dict[str, Any]:
    with audited(store, user, "sweep-cancel", ref, {}) as detail:
        handle = _sweep_for(user, store, ref)
        detail["target"] = handle.id
        handle.cancel()
    return {"id": handle.id, "state": handle.state}


@router.get("/audit")
def audit_log(
    user: Caller, store: StoreDep, limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 100
) -> list[dict[str, Any]]:
    if not user.admin:
        raise ServerError("the audit log is for admins", 403)
    return [
        {
            "id": e.id,
            "time": iso_time(e.time),
            "actor": e.actor,
            "action": e.action,
            "target": e.target,
            "detail": e.detail,
        }
        for e in store.audit_log(limit)
    ]


# --------------------------------------------------------------------------- the application


def create_app(store_url: str | None = None) -> FastAPI:
    """The server on the job store at ``store_url`` (default: ``$MULTISPOT_DB``, else the SQLite
    store under ``$MULTISPOT_HOME``), with the dashboard mounted when it is installed."""
    # Opened now: a bad URL fails at start, not at the first request.
    store = open_store(store_url, reconnect_wait=STORE_RECONNECT_WAIT)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        store.close()

    app = FastAPI(
        lifespan=lifespan,
        title="multispot",
        version=__version__,
        openapi_url=f"{API}/openapi.json",
        docs_url=f"{API}/docs",
        redoc_url=None,
    )
    app.state.store = store  # one per process; both backends are safe to share between threads
    app.add_middleware(BodyLimit, json_limit=MAX_JSON_BYTES, upload_limit=staging.MAX_UPLOAD_BYTES)
    errors.install(app)
    app.include_router(router)
    try:
        from multispot.server.dashboard import mount_dashboard  # type: ignore[import-not-found,import-untyped,unused-ignore]
    except ImportError:
        pass
    else:
        mount_dashboard(app)
    return app
