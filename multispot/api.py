"""The public Python API: ``plan``, ``submit``, ``get``, ``runs`` and the ``Run`` handle.

The CLI is a thin shell over these calls.
"""

from __future__ import annotations

import html
import os
import time
from collections.abc import Collection, Iterator, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from multispot import registry
from multispot.billing import CostReport, SavingsReport, report_for_job
from multispot.billing import savings as _savings
from multispot.checkpoint import CheckpointStore
from multispot.controller import STALE_AFTER, ensure_controller
from multispot.errors import JobNotFound, JobSpecError, MultispotError, Problem, ValidationFailed
from multispot.job import Job
from multispot.local.preemptions import with_injection
from multispot.plan import Plan
from multispot.plan import plan as make_plan
from multispot.plan import provider_name as _provider_name
from multispot.policy.interval import IntervalAdvice, advise
from multispot.provider import LaunchContext
from multispot.runtime.checkpointer import resumed_from_step
from multispot.status import Attempt, JobState, iso_time
from multispot.store import Event, JobRecord, Store, new_job_id, open_store
from multispot.store.base import DEFAULT_TEAM
from multispot.units import format_duration

if TYPE_CHECKING:
    from multispot.catalog import PriceTable
    from multispot.client import Client as RemoteClient
    from multispot.client import RemoteReport


def prices(
    accelerator: str | None = None,
    providers: list[str] | None = None,
    regions: list[str] | None = None,
    spot: bool = True,
) -> PriceTable:
    """Spot and on-demand prices of ``accelerator`` (``"A100:8"``; None: CPU shapes) across clouds."""
    from multispot.catalog import compare, load_catalog

    try:
        return compare(load_catalog(), accelerator, providers, regions, "spot" if spot else "on-demand")
    except ValueError as exc:
        raise JobSpecError([Problem("accelerator", str(exc))]) from None


def plan(job: Job, provider: str | None = None, *, region_hint: str | None = None) -> Plan:
    """The placements the job may run on, priced, in the order its policy would try them
    (``provider`` restricts to that provider): ``multispot.plan``."""
    return make_plan(job, provider, only=provider is not None, region_hint=region_hint)


def check(job: Job, provider: str | None = None) -> Plan:
    """Everything that can be checked before submitting: providers installed, options, command, env.

    Raises ``JobSpecError``/``ValidationFailed``/``ProviderNotFound``; nothing is uploaded or started.
    """
    placements = plan(job, provider)
    if not placements:
        raise ValidationFailed(
            _provider_name(job, provider), [("targets", "no placement matches the targets")]
        )
    seen: set[str] = set()
    for placement in placements:
        if placement.provider not in seen:
            registry.get(placement.provider).validate(job, placement)
            seen.add(placement.provider)
    job.resolve_env()  # a missing ${VAR} fails here, before anything starts
    return placements


def interval_advice(
    job: Job,
    provider: str | None = None,
    save_seconds: float | None = None,
    mtbp: float | None = None,
    store: Store | None = None,
) -> IntervalAdvice | str:
    """Young/Daly checkpoint interval for ``job``, or why there is none yet.

    The save time is ``save_seconds`` or what the newest checkpoint of the last job of this name
    measured; the mean time between preemptions is ``mtbp`` or, on the local provider, what the
    injected preemptions imply.
    """
    save_source = mtbp_source = "given"
    if save_seconds is None:
        store = store or open_store()
        for record in store.jobs(200):
            if record.name != job.name:
                continue
            try:
                manifest = CheckpointStore(record.checkpoint_uri).newest_manifest()
            except (OSError, ValueError):
                manifest = None
            if manifest is not None and manifest.metadata.get("write_seconds") is not None:
                save_seconds = float(manifest.metadata["write_seconds"])
                save_source = f"measured by {record.id} at step {manifest.step}"
                break
    if mtbp is None and _provider_name(job, provider) == "local":
        from multispot.local.provider import LocalProvider

        mtbp = LocalProvider().preemptions(job).mean_time_between()
        mtbp_source = "implied by the injected preemptions"
    if save_seconds is None:
        return "no measured save time yet: run the job once (or give --save-seconds)"
    if mtbp is None:
        return "no expected time between preemptions: give --mtbp (or a spot trace)"
    return advise(max(save_seconds, 1e-3), mtbp, save_source, mtbp_source)


def dry_run(
    job: Job,
    provider: str | None = None,
    inject_preemptions: str | None = None,
    save_seconds: float | None = None,
    mtbp: float | None = None,
    traces: list[str] | None = None,
) -> dict[str, Any]:
    """What would be submitted: the first placement's native request. Submits nothing.

    ``plan`` lists the pools in the order the job's policy tries them and the expected cost range
    from their prices (with ``spot.work``), and, given spot ``traces``, the simulated cost.
    """
    job = with_injection(job, inject_preemptions)
    placements = check(job, provider)
    if traces:  # a trace's name (us-east-1c_v100_1) says which region to price at
        placements = plan(job, provider, region_hint=os.path.splitext(os.path.basename(traces[0]))[0])
    first = placements[0]
    prov = registry.get(first.provider)
    job_id = f"{job.name}-dryrun"
    ctx = LaunchContext(
        job_id=job_id,
        attempt=1,
        checkpoint_uri=job.checkpoint.uri or prov.default_uri("checkpoints", job_id, job),
        output_uri=job.output_uri or prov.default_uri("outputs", job_id, job),
        env=dict(job.env),  # ${VAR} references stay unresolved: a dry run never prints secrets
        workdir=os.getcwd(),
    )
    return {
        "provider": first.provider,
        "placement": first.to_dict(),
        "placements": [p.to_dict() for p in placements],
        "request": prov.render(job, first, ctx),
        "interval_advice": _advice_dict(interval_advice(job, provider, save_seconds, mtbp)),
        "plan": cost_plan(job, placements, traces),
        "capabilities": [
            {"name": c.name, "supported": c.supported, "reason": c.reason} for c in prov.capabilities
        ],
    }


def submit(
    job: Job,
    provider: str | None = None,
    *,
    inject_preemptions: str | None = None,
    store: Store | None = None,
    start_controller: bool = True,
    resume_checkpoints: bool = False,
    workdir: str | None = None,
    team: str = DEFAULT_TEAM,
    submitted_by: str = "",
    job_id: str | None = None,
    options: Mapping[str, Any] | None = None,
) -> Run:
    """Validate, record and start the job; a detached controller drives it from then on.

    An explicit ``checkpoint.uri`` in use by a live job is refused; one that holds another job's
    checkpoints is refused unless ``resume_checkpoints`` says to resume from them (no writer may
    silently resume from, or destroy, another's checkpoints). ``workdir`` (default: the current
    directory) is where a job without ``source_dir`` runs; ``team`` and ``submitted_by`` say whose
    job it is (the server sets them from the caller's token). ``job_id`` is the id to record it
    under (default: a new one; a sweep's driver chooses it before submitting, and a taken id is a
    ``StoreError``); ``options`` are kept in the job's record beside multispot's own (a sweep's
    member names its group there)."""
    remote = _server(store)
    if remote is not None:
        if job_id is not None or options:
            raise MultispotError("job_id and options are for a local store: the server chooses its own")
        return remote.submit(job, provider, inject_preemptions, resume_checkpoints)
    job = with_injection(job, inject_preemptions)
    name = _provider_name(job, provider)
    check(job, name)
    store = store or open_store()
    if job.checkpoint.uri:
        _check_checkpoint_uri(job.checkpoint.uri, store, resume_checkpoints)
    job_id = job_id or new_job_id(job.name)
    prov = registry.get(name)
    record = JobRecord(
        id=job_id,
        name=job.name,
        spec=job.to_data(),
        provider=name,
        state=JobState.PENDING,
        checkpoint_uri=job.checkpoint.uri or prov.default_uri("checkpoints", job_id, job),
        output_uri=job.output_uri or prov.default_uri("outputs", job_id, job),
        options={
            **(options or {}),
            "workdir": workdir or os.getcwd(),
            "only_provider": provider is not None,
        },
        team=team,
        submitted_by=submitted_by,
    )
    store.create_job(record)
    if start_controller:
        ensure_controller(store, job_id)  # unless the controller service's workers lease it
    return Run(job_id, store)


def _server(store: Store | None) -> RemoteClient | None:
    """The multispot server this process talks to, or None to work on the local store: the one
    place that decides. An explicit ``store`` always means local (the server itself passes one)."""
    if store is not None:
        return None
    from multispot.client import connect

    return connect()


def _check_checkpoint_uri(uri: str, store: Store, resume: bool) -> None:
    live = [r for r in store.jobs(100_000) if r.checkpoint_uri == uri and not r.state.job_terminal]
    if live:
        raise ValidationFailed(
            "multispot",
            [("checkpoint.uri", f"in use by the live job {live[0].id}: cancel it, or choose another URI")],
        )
    if resume:
        return
    try:
        newest = CheckpointStore(uri).newest_manifest()
    except (OSError, ValueError, ImportError, MultispotError):
        return  # cannot be read from here (credentials, a missing extra): the job's runtime will see
    if newest is not None:
        owner = f"job {newest.job_id}" if newest.job_id else "an earlier run"
        raise ValidationFailed(
            "multispot",
            [
                (
                    "checkpoint.uri",
                    f"holds checkpoints of {owner} (newest: step {newest.step}): resume from them with "
                    "--resume-checkpoints (resume_checkpoints=True), or choose a new checkpoint.uri",
                )
            ],
        )


def with_overrides(job: Job, deadline: str | None = None, policy: str | None = None) -> Job:
    """``job`` with ``limits.deadline`` and/or ``spot.policy`` replaced (``submit --deadline/--policy``)."""
    if deadline is None and policy is None:
        return job
    data = job.to_data()
    if deadline is not None:
        data["limits"] = {**data.get("limits", {}), "deadline": deadline}
    if policy is not None:
        data["spot"] = {**data.get("spot", {}), "policy": policy}
    return Job.validate_data(data)


def cost_plan(job: Job, placements: Plan, traces: list[str] | None = None) -> dict[str, Any]:
    """Pools in the order the job's policy tries them, with each price and its source, and the
    cost range for ``spot.work`` those prices imply; given ``traces``, the simulated cost."""
    plan: dict[str, Any] = {
        "policy": placements.policy,
        "pools": [{**p.to_dict(), "price_source": placements.source(p)} for p in placements],
        "work_hours": None if job.spot.work is None else job.spot.work / 3600,
        "cost_range": None,
        "simulated": None,
    }
    priced = [p for p in placements if p.price_per_hour is not None]
    if job.spot.work is not None and priced:
        hours = job.spot.work / 3600
        costs = [p.price_per_hour * p.count * hours for p in priced if p.price_per_hour is not None]
        plan["cost_range"] = {
            "low": min(costs),
            "high": max(costs),
            "basis": "spot.work × the pools' prices",
            "price_sources": sorted({(placements.source(p) or "").split(" from ")[0] for p in priced}),
        }
    if traces:
        from multispot.simulation import simulate as replay

        deadline = job.limits.deadline if isinstance(job.limits.deadline, (int, float)) else None
        if deadline is not None:
            report = replay(job, list(traces), deadline, policies=[job.spot.policy], placements=placements)
            outcome = report.outcomes[0]
            plan["simulated"] = {
                "policy": outcome.policy,
                "cost": outcome.cost,
                "deadline_met": outcome.deadline_met,
                "optimum": report.optimum_cost,
                "work_source": report.work_source,
                "price_source": report.price_source,
                "prices": report.prices,
            }
        else:
            plan["simulated"] = {"error": "a simulation needs limits.deadline as a duration (or --deadline)"}
    return plan


def simulate(
    job: Job,
    traces: list[str],
    deadline: float | str | None = None,
    **options: Any,
) -> Any:
    """Each policy on real spot ``traces`` against the omniscient optimum (``multispot.simulation``)."""
    from multispot.simulation import simulate as replay

    return replay(job, list(traces), deadline, **options)


def _advice_dict(advice: IntervalAdvice | str) -> dict[str, Any]:
    if isinstance(advice, str):
        return {"interval": None, "reason": advice}
    return {**advice.to_dict(), "text": str(advice)}


def get(ref: str, store: Store | None = None) -> Run:
    remote = _server(store)
    if remote is not None:
        return remote.get(ref)
    store = store or open_store()
    return Run(store.get_job(ref).id, store)


def runs(
    limit: int = 50,
    store: Store | None = None,
    *,
    team: str | None = None,
    states: Collection[JobState] | None = None,
) -> list[Run]:
    """The newest ``limit`` jobs (of ``team`` only, in ``states`` only, when given)."""
    remote = _server(store)
    if remote is not None:
        return list(remote.runs(limit, states))
    store = store or open_store()
    return [Run(record.id, store, record) for record in store.jobs(limit, team=team, states=states)]


def checkpoints(target: str, store: Store | None = None) -> dict[str, Any]:
    """The checkpoints of a job (id, name or prefix), of a URI, or of a local folder."""
    remote = _server(store)
    if remote is not None and "://" not in target and not os.path.isdir(target):
        return remote.checkpoints(target)
    if "://" in target:
        return checkpoint_listing(target)
    try:
        uri = (store or open_store()).get_job(target).checkpoint_uri
    except JobNotFound:
        from pathlib import Path

        uri = Path(target).resolve().as_uri()
    return checkpoint_listing(uri)


def checkpoint_listing(uri: str) -> dict[str, Any]:
    """Every step under ``uri``, newest first, committed or not and why (``multispot checkpoints``)."""
    checkpoints = CheckpointStore(uri)
    rows = []
    for step in reversed(checkpoints.steps()):
        verdict = checkpoints.verify(step)
        manifest = checkpoints.manifest(step)
        rows.append(
            {
                "step": step,
                "valid": verdict.ok,
                "reason": verdict.reason,
                "bytes": manifest.size if manifest else None,
                "time": manifest.time if manifest else None,
                "attempt": manifest.attempt if manifest else None,
            }
        )
    return {"uri": uri, "latest_hint": checkpoints.latest_hint(), "checkpoints": rows}


def _progress(record: JobRecord) -> tuple[int, int | None] | None:
    """(step, total) from the newest committed checkpoint's manifest of the job of ``record``."""
    try:
        return CheckpointStore(record.checkpoint_uri).progress()
    except (OSError, ValueError):
        return None


def run_dicts(runs: Collection[Run]) -> list[dict[str, Any]]:
    """``Run.to_dict`` of each run (``multispot list``, the server's job list). Each job's row and
    attempts come from the job store on this thread; what lives in each job's checkpoint store
    (progress from the newest manifest, the step each attempt restored) is read for up to 8 jobs
    at once: on an object store those are requests, and one job after another they added up to
    tens of round trips for a listing of cloud jobs."""
    from concurrent.futures import ThreadPoolExecutor

    rows = [(run.record, run.attempts) for run in runs]

    def checkpoint_facts(row: tuple[JobRecord, list[Attempt]]) -> tuple[Any, list[int | None]]:
        record, attempts = row
        return _progress(record), [resumed_from_step(record.checkpoint_uri, a.n, record.id) for a in attempts]

    if len(rows) > 1:
        with ThreadPoolExecutor(max_workers=min(8, len(rows)), thread_name_prefix="multispot-list") as pool:
            facts = list(pool.map(checkpoint_facts, rows))
    else:
        facts = [checkpoint_facts(row) for row in rows]
    return [
        _run_dict(record, attempts, progress, resumed)
        for (record, attempts), (progress, resumed) in zip(rows, facts, strict=True)
    ]


def _run_dict(
    record: JobRecord,
    attempts: list[Attempt],
    progress: tuple[int, int | None] | None,
    resumed: list[int | None],
) -> dict[str, Any]:
    return {
        "id": record.id,
        "name": record.name,
        "state": record.state.value,
        "message": record.message,
        "provider": record.provider,
        "created": iso_time(record.created),
        "ended": iso_time(record.ended),
        "checkpoint_uri": record.checkpoint_uri,
        "output_uri": record.output_uri,
        "progress": {"step": progress[0], "total_steps": progress[1]} if progress else None,
        "preemptions": sum(a.state is JobState.PREEMPTED for a in attempts)
        + sum(a.interruptions for a in attempts),
        "attempts": [
            # resumed_from_step: the checkpoint step the attempt's runtime restored (None: from scratch)
            {**a.to_dict(), "resumed_from_step": step}
            for a, step in zip(attempts, resumed, strict=True)
        ],
    }


class Run:
    """A submitted job: its state, attempts, logs, cost; the same thing ``multispot status`` shows."""

    def __init__(self, job_id: str, store: Store | None = None, record: JobRecord | None = None) -> None:
        """``record``: the job's row, when just read (a listing): it answers the first read of
        ``record`` (``status``, ``to_dict``...) instead of the store; later reads are fresh."""
        self.id = job_id
        self.store = store or open_store()
        self._record = record

    @property
    def record(self) -> JobRecord:
        record, self._record = self._record, None  # a listing's row serves once
        return record if record is not None else self.store.get_job(self.id)

    @property
    def job(self) -> Job:
        return Job.from_record(self.record.spec)

    @property
    def status(self) -> JobState:
        return self.record.state

    @property
    def attempts(self) -> list[Attempt]:
        return self.store.attempts(self.id)

    def events(self, after: int = 0) -> list[tuple[int, Event]]:
        return self.store.events(self.id, after)

    def progress(self) -> tuple[int, int | None] | None:
        """(step, total) from the newest committed checkpoint's manifest."""
        return _progress(self.record)

    def ensure_driven(self) -> bool:
        """Restart the controller if the job is unfinished and nobody drives it."""
        if self._record is not None and self._record.state.job_terminal:
            return False  # the listing's row says finished, and a finished job stays so: no read
        started = ensure_controller(self.store, self.id)
        if started:
            self._record = None  # a controller now changes the row: the next read is fresh
        return started

    def wait(self, timeout: float | None = None, poll: float = 0.5, show: bool = False) -> JobState:
        """Block until the job ends (or ``timeout``); ``show`` prints live progress."""
        if show:
            from multispot.display import follow

            return follow(self, timeout=timeout)
        deadline = None if timeout is None else time.time() + timeout
        last_check = 0.0
        while True:
            state = self.status
            if state.job_terminal:
                return state
            if deadline is not None and time.time() > deadline:
                raise TimeoutError(f"{self.id} is still {state.value} after {timeout:g}s")
            if time.time() - last_check > STALE_AFTER / 2:
                self.ensure_driven()
                last_check = time.time()
            time.sleep(poll)

    def cancel(self) -> None:
        """Ask the controller to stop the job; the current attempt is cancelled at the provider."""
        self.store.request_cancel(self.id)
        self.ensure_driven()

    def _log_items(self, follow: bool, attempt: int | None) -> Iterator[tuple[Attempt, str | None]]:
        """(attempt, None) as each started attempt comes up, then (attempt, line) for its output."""
        shown = 0
        while True:
            over = self.status.job_terminal  # read first: attempts listed after it are complete
            started = [a for a in self.attempts if a.handle is not None and attempt in (None, a.n)]
            for item in started[shown:]:
                assert item.handle is not None
                newest = item is started[-1] and not over
                yield item, None
                for line in registry.get(item.handle.provider).logs(item.handle, follow=follow and newest):
                    yield item, line
            shown = len(started)
            if not follow or over or attempt is not None:
                return
            time.sleep(0.3)

    def log_lines(self, follow: bool = False, attempt: int | None = None) -> Iterator[tuple[Attempt, str]]:
        """(attempt, line) for the job's output, attempt after attempt."""
        for item, line in self._log_items(follow, attempt):
            if line is not None:
                yield item, line

    def logs(self, follow: bool = False, attempt: int | None = None) -> Iterator[str]:
        """The job's output, attempt after attempt, each under a header line of its own (a last
        line left open, as a progress bar leaves it, is closed first); an attempt that printed
        nothing is listed with ``(no output)``."""
        pending: str | None = None  # the header of an attempt that has printed nothing yet
        line_open = False
        for item, line in self._log_items(follow, attempt):
            if line is None:
                if line_open:  # the attempt before ended mid-line
                    yield "\n"
                    line_open = False
                if pending is not None:
                    yield f"{pending} (no output)\n"
                pending = f"--- attempt {item.n} ({item.placement}) ---"
                continue
            if pending is not None:
                yield pending + "\n"
                pending = None
            yield line
            line_open = not line.endswith("\n")
        if pending is not None:
            yield f"{pending} (no output)\n"
        elif line_open:
            yield "\n"

    def cost(self, measured: bool = False) -> CostReport:
        """Per attempt and in total: actual cost, on-demand counterfactual, savings (``multispot.billing``).

        ``measured`` asks the providers' billing APIs (Cost Explorer, BigQuery export, Cost
        Management) for the billed figure; without it every figure is estimated.
        """
        return report_for_job(self.store, self.id, measured=measured)

    def to_dict(self) -> dict[str, Any]:
        """What ``status --output json`` shows."""
        return run_dicts([self])[0]

    def __repr__(self) -> str:
        record = self.record
        return f"Run({record.id!r}, {record.state.value}, attempts={len(self.attempts)})"

    def _repr_html_(self) -> str:
        data = self.to_dict()
        rows = "".join(
            f"<tr><td>{a['n']}</td><td>{a['market']}</td><td>{a['state']}</td>"
            f"<td>{html.escape(a['message'] or '')}</td></tr>"
            for a in data["attempts"]
        )
        progress = data["progress"]
        step = f" — step {progress['step']}/{progress['total_steps'] or '?'}" if progress else ""
        return (
            f"<b>{html.escape(data['id'])}</b>: {data['state']}{step}"
            f"<table><tr><th>attempt</th><th>market</th><th>state</th><th>message</th></tr>{rows}</table>"
        )


def savings(
    since: str | float | None = None,
    provider: str | None = None,
    store: Store | None = None,
    *,
    team: str | None = None,
) -> SavingsReport | RemoteReport:
    """Savings of every job in the store (created since ``since``: ``7d`` or ``2026-11-01``; of
    ``team`` only, when given), grouped by provider and instance type, with totals; estimated."""
    remote = _server(store)
    if remote is not None:
        return remote.savings(since, provider)
    return _savings(store, since, provider, team=team)


def elapsed(listed: Mapping[str, Any]) -> str:
    """How long a job ran, or has been running, from its ``run_dicts`` row: no second read of the
    job's row per listed job."""
    created = datetime.fromisoformat(listed["created"]).timestamp()
    ended = datetime.fromisoformat(listed["ended"]).timestamp() if listed["ended"] else time.time()
    return format_duration(ended - created)


__all__ = [
    "JobSpecError",
    "Run",
    "check",
    "dry_run",
    "get",
    "plan",
    "prices",
    "run_dicts",
    "runs",
    "savings",
    "simulate",
    "submit",
]


# --------------------------------------------------------------------------- sweeps and job arrays


def _group_file(spec: Any) -> Any:
    from multispot.sweep.spec import GroupFile, load

    return spec if isinstance(spec, GroupFile) else load(spec)


def sweep(
    spec: Any,
    provider: str | None = None,
    *,
    inject_preemptions: str | None = None,
    wait: bool = True,
    timeout: float | None = None,
    store: Store | None = None,
    **owner: str,
) -> Any:
    """Start a sweep (a file with a ``sweep:`` section, or a loaded ``GroupFile``): each trial is
    an ordinary job. ``wait`` drives it in this process until every trial has ended; otherwise a
    detached driver does. Returns a ``multispot.sweep.Sweep`` (``.to_dict()``, ``.best()``, ...).
    ``owner``: ``team``, ``submitted_by``, ``workdir`` of its jobs (as for ``submit``)."""
    return _start_group(_group_file(spec), "sweep", provider, inject_preemptions, wait, timeout, store, owner)


def array(
    spec: Any,
    provider: str | None = None,
    *,
    inject_preemptions: str | None = None,
    wait: bool = True,
    timeout: float | None = None,
    store: Store | None = None,
    **owner: str,
) -> Any:
    """Start a job array (a file with an ``array:`` section): one job per task, each with
    ``MULTISPOT_TASK_INDEX``/``MULTISPOT_TASK_COUNT`` (and its shards) and its own checkpoints."""
    return _start_group(_group_file(spec), "array", provider, inject_preemptions, wait, timeout, store, owner)


def _start_group(
    gfile: Any,
    kind: str,
    provider: str | None,
    inject: str | None,
    wait: bool,
    timeout: float | None,
    store: Store | None,
    owner: dict[str, str],
) -> Any:
    from multispot.sweep.driver import create
    from multispot.sweep.view import Sweep

    if gfile.kind != kind:
        raise JobSpecError(
            [Problem("(top)", f"this file has an {gfile.kind}: section; use multispot {gfile.kind}")],
            gfile.source,
        )
    remote = _server(store)
    if remote is not None:
        return remote.start_group(gfile, provider, inject, wait, timeout)
    store = store or open_store()
    group = create(gfile, provider, inject_preemptions=inject, store=store, **owner)
    handle = Sweep(group.id, store)
    if wait:
        handle.run(timeout)
    else:
        handle.ensure_driven()
    return handle


def get_sweep(ref: str, store: Store | None = None) -> Any:
    """A sweep or array by id, name (the newest of that name) or unique id prefix."""
    from multispot.sweep.view import Sweep

    remote = _server(store)
    if remote is not None:
        return remote.sweep(ref)
    return Sweep(ref, store)


def sweeps(limit: int = 50, store: Store | None = None) -> list[Any]:
    from multispot.sweep.records import GroupStore
    from multispot.sweep.view import Sweep

    remote = _server(store)
    if remote is not None:
        return remote.sweeps(limit)
    store = store or open_store()
    return [Sweep(group.id, store) for group in GroupStore(store).groups(limit)]
