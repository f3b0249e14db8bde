"""The driver of a sweep or a job array: starts members (trials or tasks) as ordinary multispot
jobs, follows them, and settles each one's outcome.

Each member is a job with its own detached controller, so preemptions are recovered by the
controller whatever happens to the driver. The driver itself keeps nothing in memory that is not
in the job store: a driver killed at any point is replaced by ``multispot sweep --resume ID``
(or ``sweep.run(ID)``), which finds the members and their jobs and goes on. For a sweep, Optuna's
study lives in the job store's database too (Optuna's RDB storage; on PostgreSQL in the schema
``optuna``), named by the sweep's id; each trial names its multispot job in the user attribute
``multispot_job``. Each member's job goes through ``api.submit`` with its id chosen in advance.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

from multispot.controller import STALE_AFTER as CONTROLLER_STALE
from multispot.controller import ensure_controller
from multispot.errors import JobNotFound, MultispotError
from multispot.job import Job
from multispot.local.preemptions import with_injection
from multispot.plan import provider_name
from multispot.runtime.report import last_value, read_reports
from multispot.status import JobState
from multispot.store import JobRecord, Store, new_job_id, open_store, owner_id
from multispot.store.base import DEFAULT_TEAM
from multispot.sweep.records import DONE, RUNNING, STOPPED, Group, GroupStore, Member
from multispot.sweep.spec import ArraySpec, GroupFile, SweepSpec

if TYPE_CHECKING:
    import optuna

INSTALL_HINT = "sweeps need Optuna: pip install 'multispot[sweep]'"
LOST = (JobState.PREEMPTED, JobState.NO_CAPACITY)


class SweepError(MultispotError):
    """A sweep or array that cannot go on; the message says why."""


class _Refused(SweepError):
    """``submit`` refused a member's job: the group has been stopped (inside ``Driver.step``)."""


def optuna_module() -> Any:
    try:
        import optuna
    except ImportError:
        raise SweepError(INSTALL_HINT) from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def study_storage(store: Store) -> Any:
    """Optuna's RDB storage in the job store's own database (PostgreSQL: in a schema of its own,
    so Optuna's tables and its Alembic version never meet the store's)."""
    lib = optuna_module()
    url, engine_kwargs = store.library_engine("optuna")
    return lib.storages.RDBStorage(url, engine_kwargs=engine_kwargs)


def open_study(
    store: Store, group: Group, spec: SweepSpec, create: bool = False, storage: Any = None
) -> optuna.Study:
    """The sweep's Optuna study, in the job store's database (its sampler and pruner rebuilt from
    the spec: Optuna keeps trials, not samplers)."""
    lib = optuna_module()
    storage = storage or study_storage(store)
    seed = spec.seed
    if spec.algorithm == "grid":
        space = {name: param.grid() or [] for name, param in spec.parameters.items()}
        sampler = lib.samplers.GridSampler(space, seed=seed)
    elif spec.algorithm == "random":
        sampler = lib.samplers.RandomSampler(seed=seed)
    else:
        sampler = lib.samplers.TPESampler(seed=seed, n_startup_trials=max(1, min(10, spec.trials // 2)))
    if spec.pruner.kind == "median":
        pruner = lib.pruners.MedianPruner(
            n_startup_trials=spec.pruner.startup_trials, n_warmup_steps=spec.pruner.warmup_steps
        )
    elif spec.pruner.kind == "hyperband":
        pruner = lib.pruners.HyperbandPruner(min_resource=max(1, spec.pruner.warmup_steps))
    else:
        pruner = lib.pruners.NopPruner()
    direction = spec.objective.goal
    study: optuna.Study
    if create:
        study = lib.create_study(
            storage=storage, sampler=sampler, pruner=pruner, study_name=group.id, direction=direction
        )
    else:
        study = lib.load_study(storage=storage, study_name=group.id, sampler=sampler, pruner=pruner)
    return study


def tell(study: optuna.Study, number: int, value: float | None = None, state: Any = None) -> None:
    """``study.tell`` that may be repeated (a driver replaced mid-way tells again)."""
    try:
        study.tell(number, value, state=state, skip_if_finished=True)
    except RuntimeError as exc:
        # GridSampler.after_trial calls study.stop() once the grid is used up, which Optuna
        # refuses outside optimize(); the trial's state is stored before that (optuna/study/_tell.py
        # sets it in a finally), and the driver stops at the planned number of trials anyway.
        if "Study.stop" not in str(exc):
            raise


def distributions(spec: SweepSpec) -> dict[str, Any]:
    optuna = optuna_module()
    dist = optuna.distributions
    out: dict[str, Any] = {}
    for name, param in spec.parameters.items():
        if param.choice is not None:
            out[name] = dist.CategoricalDistribution(param.choice)
        elif param.uniform is not None:
            out[name] = dist.FloatDistribution(*param.uniform, step=param.step)
        elif param.loguniform is not None:
            out[name] = dist.FloatDistribution(*param.loguniform, log=True)
        elif param.int_ is not None:
            step = 1 if param.log else int(param.step or 1)
            out[name] = dist.IntDistribution(*param.int_, log=param.log, step=step)
    return out


# --------------------------------------------------------------------------- creating a group


def create(
    gfile: GroupFile,
    provider: str | None = None,
    *,
    inject_preemptions: str | None = None,
    store: Store | None = None,
    team: str = DEFAULT_TEAM,
    submitted_by: str = "",
    workdir: str | None = None,
) -> Group:
    """Record a sweep or array (and its Optuna study). Its first member's job is checked the way
    ``submit`` checks a job, so nothing is created for a spec that could not run. ``team`` and
    ``submitted_by`` say whose its jobs are; ``workdir`` where they run without ``source_dir``."""
    from multispot.api import check

    store = store or open_store()
    base = with_injection(gfile.job, inject_preemptions)
    name = provider_name(base, provider)
    section = gfile.spec
    first = member_job(gfile.kind, base, section, gfile.name, 0, _first_params(section), 0)
    check(first, name)
    if gfile.kind == "sweep":
        optuna_module()
    group = Group(
        id=new_job_id(gfile.name),
        kind=gfile.kind,
        name=gfile.name,
        spec={
            "job": base.to_data(),
            "section": section.model_dump(mode="json", by_alias=True),
            "provider": provider,
            "workdir": workdir or os.getcwd(),
            "source": gfile.source,
            "team": team,
            "submitted_by": submitted_by,
        },
        created=time.time(),
        state=RUNNING,
    )
    groups = GroupStore(store)
    groups.create(group)
    if isinstance(section, SweepSpec):
        open_study(store, group, section, create=True)
    return group


def _first_params(section: SweepSpec | ArraySpec) -> dict[str, Any]:
    """Parameter values to check the job with: each dimension's low end or first choice."""
    if isinstance(section, ArraySpec):
        return {}
    out: dict[str, Any] = {}
    for name, param in section.parameters.items():
        if param.choice is not None:
            out[name] = param.choice[0]
        elif param.bounds is not None:
            out[name] = int(param.bounds[0]) if param.kind == "int" else float(param.bounds[0])
    return out


def _member_name(group_name: str, n: int) -> str:
    suffix = f"-{n}"
    return group_name[: 40 - len(suffix)].rstrip("-") + suffix


def member_job(
    kind: str,
    base: Job,
    section: SweepSpec | ArraySpec,
    group_name: str,
    n: int,
    params: dict[str, Any],
    restart: int,
) -> Job:
    """Member ``n``'s job: the base job with the trial's parameters as hyperparameters (a sweep)
    or the task's variables (an array), and its own checkpoint and output prefix."""
    data = base.to_data()
    data["name"] = _member_name(group_name, n)
    label = f"trial-{n:04d}" if kind == "sweep" else f"task-{n:04d}"
    if restart:
        label += f"-r{restart}"
    if base.checkpoint.uri:
        data["checkpoint"] = {
            **data.get("checkpoint", {}),
            "uri": f"{base.checkpoint.uri.rstrip('/')}/{label}",
        }
    if base.output_uri:
        data["output_uri"] = f"{base.output_uri.rstrip('/')}/{label}"
    if isinstance(section, SweepSpec):
        data["hyperparameters"] = {**data.get("hyperparameters", {}), **params}
        if section.on_preemption != "resume":
            # One attempt: a lost one ends the job, and the driver restarts or abandons the trial.
            data["spot"] = {**data.get("spot", {}), "max_attempts": 1}
    else:
        # The task's MULTISPOT_TASK_* variables come from this field (Job.resolve_env).
        data["task"] = {"index": n, "count": section.tasks, "shards": section.shards_of(n)}
    return Job.from_record(data)


# --------------------------------------------------------------------------- the driver


class Driver:
    def __init__(self, group_id: str, store: Store | None = None, poll_interval: float = 0.5) -> None:
        self.store = store or open_store()
        self.groups = GroupStore(self.store)
        self.group = self.groups.get(group_id)
        self.id = self.group.id
        self.poll_interval = poll_interval
        self.owner = owner_id()
        spec = self.group.spec
        self.base = Job.from_record(spec["job"])
        self.section: SweepSpec | ArraySpec = (
            SweepSpec.model_validate(spec["section"])
            if self.group.kind == "sweep"
            else ArraySpec.model_validate(spec["section"])
        )
        self.provider: str | None = spec.get("provider")
        self.workdir: str | None = spec.get("workdir")
        self._study: optuna.Study | None = None
        self._storage: Any = None  # Optuna's storage: its public API reaches a stored trial by id
        self._study_id: int | None = None
        self._last_ensure: dict[str, float] = {}
        self.costs = CostTracker(self.store)

    @property
    def study(self) -> optuna.Study:
        assert isinstance(self.section, SweepSpec)
        if self._study is None:
            self._storage = study_storage(self.store)
            self._study = open_study(self.store, self.group, self.section, storage=self._storage)
        return self._study

    def _trial_id(self, number: int) -> int:
        """Optuna's id of trial ``number`` (its storage API takes ids; trials show numbers)."""
        study = self.study
        if self._study_id is None:
            self._study_id = self._storage.get_study_id_from_name(study.study_name)
        trial_id: int = self._storage.get_trial_id_from_study_id_trial_number(self._study_id, number)
        return trial_id

    @property
    def total(self) -> int:
        return self.section.planned_trials() if isinstance(self.section, SweepSpec) else self.section.tasks

    def run(self, timeout: float | None = None) -> Group:
        """Drive the group until every member has ended (or ``timeout``), unless another live
        driver already does (then return at once)."""
        if self.groups.get(self.id).state != RUNNING:
            return self.groups.get(self.id)
        if not self.groups.acquire(self.id, self.owner):
            return self.groups.get(self.id)
        end = None if timeout is None else time.time() + timeout
        try:
            self.reconcile()
            while not self.step():
                if end is not None and time.time() > end:
                    break
                time.sleep(self.poll_interval)
                if not self.groups.heartbeat(self.id, self.owner):
                    break  # another driver took over
        finally:
            self.groups.release(self.id, self.owner)
        return self.groups.get(self.id)

    def reconcile(self) -> None:
        """After a driver died: trials Optuna started that have no member yet get one."""
        if not isinstance(self.section, SweepSpec):
            return
        optuna = optuna_module()
        known = {m.n for m in self.groups.members(self.id)}
        for trial in self.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
            if trial.number not in known:
                job_id = trial.user_attrs.get("multispot_job") or new_job_id(
                    _member_name(self.group.name, trial.number)
                )
                self.groups.add_member(Member(self.id, trial.number, [job_id], dict(trial.params)))

    # ----------------------------------------------------------------- one pass

    def step(self) -> bool:
        """One pass over the members; True when the group is over."""
        try:
            return self._pass()
        except _Refused:
            return True

    def _pass(self) -> bool:
        group = self.groups.get(self.id)
        if group.state != RUNNING:
            return True
        members = self.groups.members(self.id)
        frozen = self._trials() if isinstance(self.section, SweepSpec) else {}
        unfinished = 0
        for member in members:
            record = self._record(member)
            if not member.outcome:
                if isinstance(self.section, SweepSpec) and not record.state.job_terminal:
                    self._ingest(member, record, frozen.get(member.n))
                    member = self.groups.member(self.id, member.n)
                if record.state.job_terminal and not member.outcome:
                    self._settle(member, record, frozen.get(member.n))
                    record = self._record(self.groups.member(self.id, member.n))
            if not record.state.job_terminal:
                unfinished += 1
                self._keep_driven(record)
        stop = self._stop_reason(members)
        if stop and stop.startswith("budget"):
            self._stop_running(members, stop)
        started = len(members)
        while not stop and started < self.total and unfinished < self.section.parallelism:
            self._start(started)
            started += 1
            unfinished += 1
            stop = self._stop_reason(self.groups.members(self.id))
        if unfinished:
            if stop and group.message != stop:
                self.groups.set_message(self.id, stop)
            return False
        if started >= self.total:
            self.groups.finish(self.id, DONE, f"all {started} {self._noun()} ended")
        else:
            self.groups.finish(self.id, STOPPED, stop or "stopped")
        return True

    def _noun(self) -> str:
        return "trials" if self.group.kind == "sweep" else "tasks"

    def _trials(self) -> dict[int, Any]:
        return {t.number: t for t in self.study.get_trials(deepcopy=False)}

    def _record(self, member: Member) -> JobRecord:
        """The member's current job, created now if the driver died before creating it."""
        try:
            record = self.store.get_job(member.job_id)
            if record.id == member.job_id:
                return record
        except JobNotFound:
            pass
        self._create_job(member, member.job_id, len(member.jobs) - 1)
        return self.store.get_job(member.job_id)

    def _keep_driven(self, record: JobRecord) -> None:
        now = time.time()
        if now - self._last_ensure.get(record.id, 0.0) > CONTROLLER_STALE / 2:
            self._last_ensure[record.id] = now
            ensure_controller(self.store, record.id)

    # ----------------------------------------------------------------- starting members

    def _start(self, n: int) -> None:
        if isinstance(self.section, SweepSpec):
            trial = self.study.ask(fixed_distributions=distributions(self.section))
            n = trial.number
            job_id = new_job_id(_member_name(self.group.name, n))
            member = self.groups.add_member(Member(self.id, n, [job_id], dict(trial.params)))
            trial.set_user_attr("multispot_job", member.job_id)
        else:
            job_id = new_job_id(_member_name(self.group.name, n))
            member = self.groups.add_member(Member(self.id, n, [job_id], {}))
        self._create_job(member, member.job_id, len(member.jobs) - 1)

    def _create_job(self, member: Member, job_id: str, restart: int) -> None:
        """Submit the member's job under the id its member row already names, with every check
        ``submit`` makes (a checkpoint URI another job uses or holds is refused)."""
        from multispot.api import submit

        job = member_job(
            self.group.kind, self.base, self.section, self.group.name, member.n, member.params, restart
        )
        try:
            submit(
                job,
                self.provider,
                store=self.store,
                workdir=self.workdir,
                team=self.group.spec.get("team", DEFAULT_TEAM),
                submitted_by=self.group.spec.get("submitted_by", ""),
                job_id=job_id,
                options={"group": self.id, "member": member.n},
            )
        except MultispotError as exc:
            if _exists(self.store, job_id):  # another driver created it between our look and now
                ensure_controller(self.store, job_id)  # unless the controller service's workers lease it
            else:
                # What submit refuses (a checkpoint URI in use or holding another run's checkpoints,
                # a placement gone) would be refused for the next member too: stop the group, say why.
                reason = f"{self._noun()[:-1]} {member.n} was refused: {exc}"
                self._fail(member, "failed", str(exc))
                self._stop_running(self.groups.members(self.id), reason)
                self.groups.finish(self.id, STOPPED, reason)
                raise _Refused(reason) from exc
        self._last_ensure[job_id] = time.time()

    # ----------------------------------------------------------------- following members

    def _ingest(self, member: Member, record: JobRecord, trial: Any) -> None:
        """New intermediate reports go to Optuna; a trial its pruner stops is cancelled."""
        assert isinstance(self.section, SweepSpec)
        if trial is None or trial.state.is_finished():
            return
        optuna = optuna_module()
        metric = self.section.objective.metric
        try:
            reports = read_reports(record.checkpoint_uri)
        except (OSError, ValueError):
            return
        new = [
            (r.step, r.metrics[metric])
            for r in reports
            if metric in r.metrics and r.step not in trial.intermediate_values
        ]
        if not new:
            return
        # What Trial.report/should_prune do, through the storage's public API: the trial was asked
        # by an earlier pass (or driver), so there is no live Trial handle to call them on.
        trial_id = self._trial_id(member.n)
        for step, value in new:
            self._storage.set_trial_intermediate_value(trial_id, step, float(value))
        if self.study.pruner.prune(self.study, self._storage.get_trial(trial_id)):
            step, value = new[-1]
            self.store.request_cancel(record.id)
            ensure_controller(self.store, record.id)
            tell(self.study, member.n, state=optuna.trial.TrialState.PRUNED)
            self.groups.set_outcome(
                self.id, member.n, "pruned", f"pruned at step {step} ({metric}={value:g})", value
            )

    def _settle(self, member: Member, record: JobRecord, trial: Any) -> None:
        """The member's job has ended: the member's outcome (and the Optuna trial's state)."""
        state = record.state
        if not isinstance(self.section, SweepSpec):
            outcome = "succeeded" if state is JobState.SUCCEEDED else state.value.lower()
            self.groups.set_outcome(self.id, member.n, outcome, record.message)
            return
        metric = self.section.objective.metric
        if trial is not None and trial.state.is_finished():  # told before a driver died
            outcome = {"COMPLETE": "succeeded", "PRUNED": "pruned"}.get(
                trial.state.name, str(trial.user_attrs.get("multispot_outcome", "failed"))
            )
            self.groups.set_outcome(self.id, member.n, outcome, record.message, trial.value)
            return
        attempts = self.store.attempts(record.id)
        lost = state is JobState.FAILED and bool(attempts) and attempts[-1].state in LOST
        if state is JobState.SUCCEEDED:
            try:
                found = last_value(read_reports(record.checkpoint_uri), metric)
            except (OSError, ValueError):
                found = None
            if found is None:
                self._fail(member, "failed", f"the job succeeded but never reported {metric!r}")
            else:
                tell(self.study, member.n, found[1])
                self.groups.set_outcome(
                    self.id, member.n, "succeeded", f"{metric}={found[1]:g} at step {found[0]}", found[1]
                )
        elif (
            lost and self.section.on_preemption == "restart" and len(member.jobs) <= self.section.max_restarts
        ):
            job_id = new_job_id(_member_name(self.group.name, member.n))
            self.groups.add_job(self.id, member.n, job_id)
            restarted = self.groups.member(self.id, member.n)
            if trial is not None:
                self._storage.set_trial_user_attr(self._trial_id(member.n), "multispot_job", job_id)
            self._create_job(restarted, job_id, len(restarted.jobs) - 1)
        elif lost:
            again = " again" if len(member.jobs) > 1 else ""
            self._fail(
                member, "abandoned", f"abandoned after losing its capacity{again} ({attempts[-1].message})"
            )
        else:
            self._fail(member, state.value.lower(), record.message)

    def _fail(self, member: Member, outcome: str, message: str) -> None:
        trial = self._trials().get(member.n) if isinstance(self.section, SweepSpec) else None
        if trial is not None and not trial.state.is_finished():
            optuna = optuna_module()
            self._storage.set_trial_user_attr(self._trial_id(member.n), "multispot_outcome", outcome)
            tell(self.study, member.n, state=optuna.trial.TrialState.FAIL)
        self.groups.set_outcome(self.id, member.n, outcome, message)

    # ----------------------------------------------------------------- budget and deadline

    def _stop_reason(self, members: list[Member]) -> str | None:
        deadline = self.section.deadline_at(self.group.created)
        if deadline is not None and time.time() >= deadline:
            return f"deadline passed: no {self._noun()[:-1]} starts after it"
        budget = self.section.budget
        if budget is None:
            return None
        spent = sum(self.costs.member(m)[0] for m in members)
        if spent >= budget:
            return f"budget reached: ${spent:.4f} of ${budget:.4f} spent"
        dearest = max(
            (self.costs.member(m)[0] for m in members if self._settled(m)),
            default=0.0,
        )
        if spent + dearest > budget:
            return (
                f"budget: ${spent:.4f} of ${budget:.4f} spent; the next {self._noun()[:-1]} could cost "
                f"${dearest:.4f} (the dearest so far), so none more starts"
            )
        return None

    def _settled(self, member: Member) -> bool:
        try:
            return self.store.get_job(member.job_id).state.job_terminal
        except JobNotFound:
            return False

    def _stop_running(self, members: list[Member], reason: str) -> None:
        for member in members:
            try:
                record = self.store.get_job(member.job_id)
            except JobNotFound:
                continue
            if record.state.job_terminal or record.cancel_requested:
                continue
            self.store.request_cancel(record.id)
            ensure_controller(self.store, record.id)
            if not member.outcome:
                self._fail(member, "stopped", reason)


def _exists(store: Store, job_id: str) -> bool:
    try:
        return store.get_job(job_id).id == job_id
    except JobNotFound:
        return False


# --------------------------------------------------------------------------- costs


class CostTracker:
    """What each member's jobs cost so far: ended attempts as billing reports them, a running
    attempt at its placement's price for the time it has run (billing counts it once it ends)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._final: dict[str, tuple[float, float | None]] = {}
        self._catalog: Any = None

    def job(self, job_id: str) -> tuple[float, float | None]:
        """(actual USD, on-demand counterfactual USD or None) of one job so far."""
        if job_id in self._final:
            return self._final[job_id]
        from multispot.billing import report_for_job
        from multispot.catalog import load_catalog

        if self._catalog is None:
            self._catalog = load_catalog()
        try:
            record = self.store.get_job(job_id)
        except JobNotFound:
            return 0.0, None
        report = report_for_job(self.store, job_id, catalog=self._catalog, read_checkpoints=False)
        actual = report.actual or 0.0
        on_demand = report.on_demand
        now = time.time()
        for attempt in self.store.attempts(job_id):
            if attempt.usage is None and attempt.started and not attempt.ended:
                price = attempt.placement.price_per_hour or 0.0
                actual += price * attempt.placement.count * (now - attempt.started) / 3600
        figures = (actual, on_demand)
        if record.state.job_terminal and all(
            a.usage is not None or a.started is None for a in self.store.attempts(job_id)
        ):
            self._final[job_id] = figures
        return figures

    def member(self, member: Member) -> tuple[float, float | None]:
        actual, on_demand = 0.0, 0.0
        known = True
        for job_id in member.jobs:
            a, o = self.job(job_id)
            actual += a
            if o is None:
                known = False
            else:
                on_demand += o
        return actual, on_demand if known else None


def run(group_id: str, store: Store | None = None, timeout: float | None = None) -> Group:
    return Driver(group_id, store).run(timeout)


def spawn_driver(group_id: str, workdir: str | None = None) -> int:
    """A detached driver process (``multispot sweep --detach``); output in controllers.log."""
    import subprocess
    import sys

    from multispot.store import home

    with open(home() / "controllers.log", "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "multispot.sweep.driver", group_id],
            cwd=workdir if workdir and os.path.isdir(workdir) else None,
            env=dict(os.environ, MULTISPOT_HOME=str(home())),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return proc.pid


def main(argv: list[str] | None = None) -> int:
    import sys

    args = argv if argv is not None else sys.argv[1:]
    if len(args) != 1:
        print("usage: python -m multispot.sweep.driver GROUP_ID", file=sys.stderr)
        return 2
    group = run(args[0])
    return 0 if group.state != RUNNING else 1


if __name__ == "__main__":
    import sys

    sys.exit(main())
