"""A sweep or array as a user sees it: a table of members (state, parameters or shards,
objective, cost, preemptions), the best trial, the cost over every member, the history."""

from __future__ import annotations

import html
import time
from typing import Any

from multispot.controller import ensure_controller
from multispot.errors import JobNotFound
from multispot.runtime.report import last_value, read_reports
from multispot.status import JobState
from multispot.store import Store, open_store
from multispot.sweep.records import RUNNING, STOPPED, Group, GroupStore, Member
from multispot.sweep.spec import ArraySpec, SweepSpec


class Sweep:
    """A submitted sweep or job array (``ms.sweep(...)``, ``ms.array(...)``, ``ms.get_sweep(id)``)."""

    def __init__(self, group_id: str, store: Store | None = None) -> None:
        self.store = store or open_store()
        self.groups = GroupStore(self.store)
        self.id = self.groups.get(group_id).id

    @property
    def group(self) -> Group:
        return self.groups.get(self.id)

    @property
    def kind(self) -> str:
        return self.group.kind

    @property
    def state(self) -> str:
        return self.group.state

    @property
    def section(self) -> SweepSpec | ArraySpec:
        data = self.group.spec["section"]
        return SweepSpec.model_validate(data) if self.kind == "sweep" else ArraySpec.model_validate(data)

    def members(self) -> list[Member]:
        return self.groups.members(self.id)

    def ensure_driven(self) -> bool:
        """Start a detached driver if the group is unfinished and nobody drives it."""
        group = self.group
        if group.state != RUNNING or self.groups.driver_alive(self.id):
            return False
        from multispot.sweep.driver import spawn_driver

        spawn_driver(self.id, group.spec.get("workdir"))
        return True

    def run(self, timeout: float | None = None) -> str:
        """Drive the group in this process until it ends (or ``timeout``); returns its state."""
        from multispot.sweep.driver import run

        run(self.id, self.store, timeout)
        return self.state

    def wait(self, timeout: float | None = None, poll: float = 0.5) -> str:
        """Wait for a detached driver to end the group (restarting the driver if it died)."""
        end = None if timeout is None else time.time() + timeout
        while self.state == RUNNING:
            if end is not None and time.time() > end:
                raise TimeoutError(f"{self.id} is still running after {timeout:g}s")
            self.ensure_driven()
            time.sleep(poll)
        return self.state

    def cancel(self) -> None:
        """Stop the group: no member starts, running ones are cancelled."""
        for member in self.members():
            try:
                record = self.store.get_job(member.job_id)
            except JobNotFound:
                continue
            if not record.state.job_terminal:
                self.store.request_cancel(record.id)
                ensure_controller(self.store, record.id)
            if not member.outcome:
                self.groups.set_outcome(self.id, member.n, "cancelled", "cancelled by the user")
        if self.kind == "sweep":
            from multispot.sweep.driver import open_study, optuna_module, tell

            optuna = optuna_module()
            study = open_study(self.store, self.group, self.section)  # type: ignore[arg-type]
            for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
                tell(study, trial.number, state=optuna.trial.TrialState.FAIL)
        self.groups.finish(self.id, STOPPED, "cancelled by the user")

    # ----------------------------------------------------------------- what it shows

    def rows(self) -> list[dict[str, Any]]:
        from multispot.sweep.driver import CostTracker

        costs = CostTracker(self.store)
        section = self.section
        metric = section.objective.metric if isinstance(section, SweepSpec) else None
        rows = []
        for member in self.members():
            try:
                record = self.store.get_job(member.job_id)
            except JobNotFound:
                record = None
            attempts = [a for job_id in member.jobs for a in _attempts(self.store, job_id)]
            actual, on_demand = costs.member(member)
            value, step = member.value, None
            if metric and record is not None:
                try:
                    found = last_value(read_reports(record.checkpoint_uri), metric)
                except (OSError, ValueError):
                    found = None
                if found is not None:
                    step = found[0]
                    if value is None and not member.outcome:
                        value = found[1]  # the newest report of a trial still running
            state = member.outcome or (record.state.value.lower() if record else "pending")
            if member.outcome and record is not None and not record.state.job_terminal:
                state = f"{member.outcome} (job {record.state.value.lower()})"
            rows.append(
                {
                    "n": member.n,
                    "job": member.job_id,
                    "jobs": list(member.jobs),
                    "state": state,
                    "outcome": member.outcome or None,
                    "job_state": record.state.value if record else None,
                    "params": dict(member.params),
                    "shards": section.shards_of(member.n) if isinstance(section, ArraySpec) else None,
                    "value": value,
                    "step": step,
                    "cost": actual,
                    "on_demand": on_demand,
                    "attempts": len(attempts),
                    "preemptions": sum(a.state is JobState.PREEMPTED for a in attempts)
                    + sum(a.interruptions for a in attempts),
                    "message": member.message or (record.message if record else ""),
                }
            )
        return rows

    def best(self, rows: list[dict[str, Any]] | None = None) -> dict[str, Any] | None:
        """The completed trial with the best objective (None for an array, or before any)."""
        section = self.section
        if not isinstance(section, SweepSpec):
            return None
        done = [r for r in rows or self.rows() if r["outcome"] == "succeeded" and r["value"] is not None]
        if not done:
            return None
        pick = min if section.objective.goal == "minimize" else max
        return pick(done, key=lambda r: r["value"])

    def cost(self, rows: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        rows = rows if rows is not None else self.rows()
        actual = sum(r["cost"] for r in rows)
        known = [r["on_demand"] for r in rows if r["on_demand"] is not None]
        on_demand = sum(known) if len(known) == len(rows) else None
        return {
            "actual": actual,
            "on_demand": on_demand,
            "savings": None if on_demand is None else on_demand - actual,
            "budget": self.section.budget,
            "basis": "estimated: ended attempts as billing reports them, running ones at their price",
        }

    def history(self, rows: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
        """Per member in order: its objective, the best so far, and the cumulative cost."""
        rows = rows if rows is not None else self.rows()
        section = self.section
        sign = -1.0 if isinstance(section, SweepSpec) and section.objective.goal == "maximize" else 1.0
        best: float | None = None
        spent = 0.0
        out = []
        for row in rows:
            spent += row["cost"]
            value = row["value"]
            if (
                row["outcome"] == "succeeded"
                and value is not None
                and (best is None or sign * value < sign * best)
            ):
                best = value
            out.append(
                {
                    "n": row["n"],
                    "value": row["value"],
                    "outcome": row["outcome"],
                    "best": best,
                    "cumulative_cost": spent,
                }
            )
        return out

    def summary(self) -> dict[str, Any]:
        """One line of ``multispot sweeps``: id, kind, state, how many jobs, message."""
        group = self.group
        members = self.members()
        return {
            "id": group.id,
            "kind": group.kind,
            "state": group.state,
            "members": len(members),
            "message": group.message,
        }

    def to_dict(self) -> dict[str, Any]:
        group, section = self.group, self.section
        rows = self.rows()
        data: dict[str, Any] = {
            "id": group.id,
            "kind": group.kind,
            "name": group.name,
            "state": group.state,
            "message": group.message,
            "planned": section.planned_trials() if isinstance(section, SweepSpec) else section.tasks,
            "parallelism": section.parallelism,
            "deadline": section.deadline_at(group.created),
            "members": rows,
            "cost": self.cost(rows),
            "ended_all": all(
                r["job_state"] is not None and JobState(r["job_state"]).job_terminal for r in rows
            ),
        }
        if isinstance(section, SweepSpec):
            data["objective"] = section.objective.model_dump()
            data["algorithm"] = section.algorithm
            data["on_preemption"] = section.on_preemption
            data["best"] = self.best(rows)
        return data

    def __repr__(self) -> str:
        group = self.group
        return f"Sweep({group.id!r}, {group.kind}, {group.state}, members={len(self.members())})"

    def _repr_html_(self) -> str:
        data = self.to_dict()
        head = "".join(
            f"<th>{h}</th>" for h in ("#", "state", "params/shards", "value", "cost $", "preemptions")
        )
        body = "".join(
            f"<tr><td>{r['n']}</td><td>{html.escape(r['state'])}</td>"
            f"<td>{html.escape(_params_text(r))}</td><td>{_num(r['value'])}</td>"
            f"<td>{r['cost']:.4f}</td><td>{r['preemptions']}</td></tr>"
            for r in data["members"]
        )
        best = data.get("best")
        best_text = f" — best #{best['n']}: {_num(best['value'])}" if best else ""
        return (
            f"<b>{html.escape(data['id'])}</b> ({data['kind']}): {data['state']}{best_text}, "
            f"cost ${data['cost']['actual']:.4f}<table><tr>{head}</tr>{body}</table>"
        )


def _attempts(store: Store, job_id: str) -> list[Any]:
    try:
        return store.attempts(job_id)
    except JobNotFound:
        return []


def _num(value: float | None) -> str:
    return "" if value is None else f"{value:.4g}"


def _params_text(row: dict[str, Any]) -> str:
    if row.get("shards") is not None:
        return ", ".join(row["shards"])
    return ", ".join(f"{k}={_num(v) if isinstance(v, float) else v}" for k, v in row["params"].items())
