"""Savings across jobs: every job of the store (since a date), grouped by provider and instance."""

from __future__ import annotations

import html
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from typing import TYPE_CHECKING, Any

from multispot.billing.assemble import report_for_job
from multispot.billing.model import CostLine, CostReport
from multispot.billing.render import html_report, usd
from multispot.status import iso_time
from multispot.units import parse_duration

if TYPE_CHECKING:
    from multispot.catalog import Catalog
    from multispot.store import Store


def parse_since(value: str | float | datetime | date | None, now: float | None = None) -> float | None:
    """A unix time from a duration back from now (``7d``, ``12h``) or a date/time (ISO, UTC if naive)."""
    if value is None:
        return None
    import time

    now = time.time() if now is None else now
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=timezone.utc)
        return moment.timestamp()
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=timezone.utc).timestamp()
    if isinstance(value, (int, float)):
        return now - parse_duration(value)
    try:
        return now - parse_duration(value)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"{value!r}: give a duration back from now ('7d', '12h') or a date ('2026-11-01')"
        ) from None
    return parse_since(moment, now)


@dataclass
class SavingsGroup:
    """Attempts on one provider and instance type, across jobs."""

    provider: str
    instance_type: str | None
    jobs: set[str] = field(default_factory=set)
    attempts: int = 0
    instance_seconds: float = 0.0
    actual: float = 0.0
    on_demand: float = 0.0
    lost: float = 0.0
    checkpointing: float = 0.0

    @property
    def savings(self) -> float:
        return self.on_demand - self.actual

    @property
    def savings_fraction(self) -> float | None:
        return self.savings / self.on_demand if self.on_demand else None

    def add(self, line: CostLine, job_id: str) -> None:
        self.jobs.add(job_id)
        self.attempts += 1
        self.instance_seconds += line.instance_seconds
        self.actual += line.cost or 0.0
        self.on_demand += line.counterfactual or 0.0
        self.lost += line.lost_cost or 0.0
        self.checkpointing += line.checkpoint_cost or 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "instance_type": self.instance_type,
            "jobs": len(self.jobs),
            "attempts": self.attempts,
            "instance_hours": self.instance_seconds / 3600.0,
            "actual_usd": self.actual,
            "on_demand_usd": self.on_demand,
            "savings_usd": self.savings,
            "savings_fraction": self.savings_fraction,
            "lost_work_usd": self.lost,
            "checkpointing_usd": self.checkpointing,
        }


@dataclass
class SavingsReport:
    """Savings over many jobs, grouped by provider and instance type (estimated figures)."""

    since: float | None
    provider: str | None
    groups: list[SavingsGroup]
    reports: list[CostReport]
    unpriced: list[tuple[str, int]] = field(default_factory=list)  # (job, attempt) left out: price unknown
    notes: list[str] = field(default_factory=list)

    HEADERS = (
        "provider",
        "instance",
        "jobs",
        "attempts",
        "instance-hours",
        "actual",
        "on-demand",
        "saved",
        "saved %",
        "lost work",
        "checkpointing",
    )

    @property
    def total(self) -> SavingsGroup:
        total = SavingsGroup("total", None)
        for group in self.groups:
            total.jobs |= group.jobs
            total.attempts += group.attempts
            total.instance_seconds += group.instance_seconds
            total.actual += group.actual
            total.on_demand += group.on_demand
            total.lost += group.lost
            total.checkpointing += group.checkpointing
        return total

    def rows(self, with_total: bool = True) -> list[list[str]]:
        groups = [*self.groups, self.total] if with_total else self.groups
        return [
            [
                g.provider,
                g.instance_type or "-",
                str(len(g.jobs)),
                str(g.attempts),
                f"{g.instance_seconds / 3600:.3f}",
                usd(g.actual),
                usd(g.on_demand),
                usd(g.savings),
                "-" if g.savings_fraction is None else f"{g.savings_fraction:.0%}",
                usd(g.lost),
                usd(g.checkpointing),
            ]
            for g in groups
        ]

    def summary(self) -> str:
        t = self.total
        saved = "" if t.savings_fraction is None else f" ({t.savings_fraction:.0%})"
        return (
            f"{len(t.jobs)} jobs, {t.attempts} attempts: actual {usd(t.actual)}, "
            f"on-demand {usd(t.on_demand)}, saved {usd(t.savings)}{saved} (estimated)"
        )

    def details(self) -> list[str]:
        out = []
        if self.since is not None:
            out.append(f"jobs created since {iso_time(self.since)}")
        if self.unpriced:
            listed = ", ".join(f"{j}#{n}" for j, n in self.unpriced[:5])
            more = f" and {len(self.unpriced) - 5} more" if len(self.unpriced) > 5 else ""
            out.append(f"{len(self.unpriced)} attempts left out, price unknown: {listed}{more}")
        return out + self.notes

    def to_dict(self) -> dict[str, Any]:
        return {
            "since": iso_time(self.since),
            "provider": self.provider,
            "basis": "estimated",
            "groups": [g.to_dict() for g in self.groups],
            "total": self.total.to_dict(),
            "jobs": [
                {
                    "job_id": r.job_id,
                    "name": r.name,
                    "actual_usd": r.actual,
                    "on_demand_usd": r.on_demand,
                    "savings_usd": r.savings,
                }
                for r in self.reports
            ],
            "unpriced_attempts": [{"job_id": j, "attempt": n} for j, n in self.unpriced],
            "notes": self.details(),
        }

    def __repr__(self) -> str:
        return f"SavingsReport({self.summary()})"

    def _repr_html_(self) -> str:
        title = f"<b>Savings</b>: {html.escape(self.summary())}"
        return html_report(title, self.HEADERS, self.rows(), self.details())

    def plot(self, ax: Any = None) -> Any:
        """Cumulative actual cost vs the on-demand counterfactual over the jobs' attempts (Axes)."""
        from multispot.billing.plots import cumulative

        lines = sorted(
            (
                line
                for r in self.reports
                for line in r.lines
                if line.cost is not None and line.counterfactual is not None
            ),
            key=lambda line: line.ended or line.started or 0.0,
        )
        return cumulative(lines, self.summary(), ax, timed=True, from_zero=False)


def savings(
    store: Store | None = None,
    since: str | float | datetime | date | None = None,
    provider: str | None = None,
    *,
    catalog: Catalog | None = None,
    team: str | None = None,
) -> SavingsReport:
    """Savings of every job in the store (created since ``since``), grouped by provider and instance.

    Figures are estimated (billing APIs are asked only by ``cost --measured``). Checkpointing cost
    is counted for jobs whose checkpoints are on this machine.
    """
    from multispot.store import open_store

    store = store or open_store()
    if catalog is None:
        from multispot.catalog import load_catalog

        catalog = load_catalog()
    cutoff = parse_since(since)
    groups: dict[tuple[str, str | None], SavingsGroup] = {}
    reports: list[CostReport] = []
    unpriced: list[tuple[str, int]] = []
    remote = 0
    records = store.jobs(10**9, team=team)
    for record in reversed(records):
        if cutoff is not None and record.created < cutoff:
            continue
        local = record.checkpoint_uri.startswith(("file:", "/"))
        remote += not local
        report = report_for_job(store, record.id, catalog=catalog, read_checkpoints=local)
        lines = [line for line in report.lines if provider is None or line.provider == provider]
        if not lines:
            continue
        reports.append(report)
        for line in lines:
            if line.cost is None or line.counterfactual is None:
                unpriced.append((record.id, line.attempt))
                continue
            key = (line.provider, line.instance_type)
            groups.setdefault(key, SavingsGroup(*key)).add(line, record.id)
    notes = []
    if remote:
        notes.append(f"checkpointing cost not counted for {remote} jobs with remote checkpoints")
    ordered = sorted(groups.values(), key=lambda g: (g.provider, g.instance_type or ""))
    return SavingsReport(cutoff, provider, ordered, reports, unpriced, notes)


GROUP_KEYS = ("team", "provider", "instance_type")


def grouped_savings(
    report: SavingsReport, group_by: str, teams: Mapping[str, str], bucket: str | None = None
) -> list[dict[str, Any]]:
    """The priced attempts of ``report`` summed per ``group_by`` (team, provider or instance type;
    ``teams`` maps job id to team), and per UTC day of the attempt's end when ``bucket`` is "day":
    ``{key, cost, on_demand, saved, jobs}`` (with ``bucket``), ordered by bucket and key."""
    if group_by not in GROUP_KEYS:
        raise ValueError(f"group_by must be one of {', '.join(GROUP_KEYS)}, not {group_by!r}")
    if bucket not in (None, "day"):
        raise ValueError(f"bucket must be day, not {bucket!r}")
    sums: dict[tuple[str, str], dict[str, Any]] = {}
    for cost_report in report.reports:
        for line in cost_report.lines:
            if line.cost is None or line.counterfactual is None:
                continue
            if report.provider is not None and line.provider != report.provider:
                continue
            key = {
                "team": teams.get(cost_report.job_id, "default"),
                "provider": line.provider,
                "instance_type": line.instance_type or "-",
            }[group_by]
            when = line.ended or line.started
            day = "" if bucket is None or when is None else (iso_time(when) or "")[:10]
            entry = sums.setdefault(
                (day, key), {"key": key, "cost": 0.0, "on_demand": 0.0, "saved": 0.0, "jobs": set()}
            )
            entry["cost"] += line.cost
            entry["on_demand"] += line.counterfactual
            entry["saved"] += line.counterfactual - line.cost
            entry["jobs"].add(cost_report.job_id)
    rows = []
    for (day, _key), entry in sorted(sums.items()):
        row = {**entry, "jobs": len(entry["jobs"])}
        rows.append({"bucket": day, **row} if bucket else row)
    return rows
