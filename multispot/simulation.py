"""Replay spot traces through the same policy objects the controller uses.

A trace is the JSON of the Can't Be Late study: ``{"metadata": {"gap_seconds": g}, "data": [n, ...]}``
with ``n`` the instances available (availability traces) or alive (preemption traces) at each tick;
``n > 0`` means the pool has capacity for the tick. One trace per spot pool; traces with different
ticks are resampled to the finest one.

The model is discrete (``Scenario``) so that the omniscient optimum
(``multispot.policy.optimum``) is exact for it:

- time advances in ticks of the trace; a placement chosen at a tick runs for the whole tick and
  is billed for it (its price × count × tick);
- every start or switch pays the restart overhead, rounded up to whole ticks, billed but without
  progress;
- a running tick adds one tick of progress; the job needs ``work`` (plus one save of
  ``save_seconds`` per ``checkpoint_interval``, when given) rounded up to whole ticks;
- a spot attempt is preempted at the first tick its pool has no capacity; with
  ``save_on_notice`` (the runtime saves when the notice comes: the default) nothing is lost,
  otherwise progress falls back to the last periodic checkpoint; a switch the policy asks for
  saves first and loses nothing;
- the policy is asked at every tick until the deadline; a job unfinished by then is finished
  on on-demand (cost and finish time still count) and reported as having missed it.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from multispot.job import Job
from multispot.plan import Plan, both_markets, price_of
from multispot.policy import Decision, Policy, PolicyContext, PoolStats, registry
from multispot.policy import get as policy_get
from multispot.status import Attempt, JobState, Placement

DEFAULT_OVERHEAD = 180.0  # seconds from the start of an attempt to useful progress
ASSUMED_PRICES = {"on-demand": 1.0, "spot": 0.3}  # relative, when neither the job nor the caller says
STATS_EVERY = 600.0  # seconds of trace between refreshes of the statistics a policy sees
ALL_POLICIES = registry.names()  # the one registry: every name the job spec accepts


@dataclass(frozen=True)
class Trace:
    name: str
    gap: float  # seconds per tick
    data: tuple[int, ...]
    path: str | None = None

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Trace:
        file = Path(path)
        try:
            raw = json.loads(file.read_text())
            gap = float(raw["metadata"]["gap_seconds"])
            data = tuple(int(x) for x in raw["data"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ValueError(
                f"{file}: not a spot trace ({exc}); expected "
                '{"metadata": {"gap_seconds": N}, "data": [instances per tick, ...]}'
            ) from exc
        if gap <= 0 or not data:
            raise ValueError(f"{file}: gap_seconds must be positive and data non-empty")
        return cls(file.stem, gap, data, str(file))

    @property
    def seconds(self) -> float:
        return self.gap * len(self.data)

    def resample(self, gap: float) -> list[bool]:
        """Capacity per tick of ``gap`` seconds (the value in force at each tick's start)."""
        n = int(self.seconds // gap)
        return [self.data[min(len(self.data) - 1, int(i * gap // self.gap))] > 0 for i in range(n)]


@dataclass(frozen=True)
class Scenario:
    """The discrete model shared by the simulator and the optimum."""

    tick: float
    pools: list[Placement]  # spot, one per trace, prices filled in
    avail: list[list[bool]]  # per pool, per tick from the job's start (at least deadline_ticks long)
    on_demand: list[Placement]  # prices filled in
    work_ticks: int
    deadline_ticks: int
    overhead_ticks: int
    period_ticks: int | None  # None: a preemption loses nothing (saved on the notice)
    history: list[tuple[float, float, int, int, bool | None]]  # per pool before the start:
    # seconds, seconds with capacity, stretches with, stretches without, capacity at the last tick
    extra_ticks: list[list[bool]] = field(default_factory=list)  # capacity after the deadline
    price_sources: dict[Placement, str] = field(default_factory=dict)  # where each price came from
    any_history: tuple[float, float, int, int, bool | None] | None = None  # "some pool up", as history

    def tick_price(self, placement: Placement) -> float:
        return (placement.price_per_hour or 0.0) * placement.count * self.tick / 3600.0

    @property
    def candidates(self) -> list[Placement]:
        return [*self.pools, *self.on_demand]


@dataclass
class Outcome:
    policy: str
    cost: float
    finish_hours: float | None  # since submit; None: never finished within the trace
    deadline_met: bool
    preemptions: int
    lost_hours: float  # progress lost to preemptions
    overhead_hours: float  # restart overhead paid
    spot_hours: float
    on_demand_hours: float
    attempts: int
    stopped: str | None = None  # the policy's reason, when it stopped the job
    savings_vs_on_demand: float | None = None  # fraction
    ratio_to_optimum: float | None = None
    min_slack_hours: float | None = None  # deadline risk: least (time left - work left) seen; < 0: missed

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class SimulationReport:
    traces: list[str]
    tick_seconds: float
    work_hours: float
    deadline_hours: float
    restart_overhead_seconds: float
    prices: dict[str, float]
    price_source: str
    work_source: str
    optimum_cost: float | None
    optimum_kind: str
    outcomes: list[Outcome]
    start_tick: int = 0
    price_sources: dict[str, str] = field(default_factory=dict)  # per entry of ``prices``

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["outcomes"] = [o.to_dict() for o in self.outcomes]
        data["policies"] = {o.policy: o.to_dict() for o in self.outcomes}
        return data

    def __repr__(self) -> str:
        rows = ", ".join(
            f"{o.policy}=${o.cost:.2f}{'' if o.deadline_met else ' (missed)'}" for o in self.outcomes
        )
        return f"SimulationReport(optimum=${self.optimum_cost or 0:.2f}, {rows})"

    def _repr_html_(self) -> str:
        head = (
            "<tr><th>policy</th><th>cost</th><th>× optimum</th><th>deadline</th><th>min slack h</th>"
            "<th>preemptions</th><th>savings</th></tr>"
        )
        rows = "".join(
            f"<tr><td>{o.policy}</td><td>${o.cost:.2f}</td><td>{_fmt(o.ratio_to_optimum)}</td>"
            f"<td>{'met' if o.deadline_met else 'missed'}</td><td>{_fmt(o.min_slack_hours)}</td><td>{o.preemptions}</td>"
            f"<td>{_fmt(o.savings_vs_on_demand, pct=True)}</td></tr>"
            for o in self.outcomes
        )
        return f"<b>optimum ${self.optimum_cost or 0:.2f}</b><table>{head}{rows}</table>"


def _fmt(value: float | None, pct: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:.1%}" if pct else f"{value:.3f}"


# --------------------------------------------------------------------------- building a scenario


def build_scenario(
    job: Job,
    traces: list[Trace],
    deadline: float,
    work: float,
    *,
    restart_overhead: float = DEFAULT_OVERHEAD,
    checkpoint_interval: float | None = None,
    save_seconds: float = 0.0,
    save_on_notice: bool = True,
    start: int = 0,
    spot_prices: list[float] | None = None,
    on_demand_price: float | None = None,
    placements: Sequence[Placement] | None = None,
) -> tuple[Scenario, str]:
    """The discrete model of ``job`` on ``traces`` (one per spot pool); also where prices came from."""
    if not traces:
        raise ValueError("give at least one trace")
    if deadline <= 0 or work <= 0:
        raise ValueError("deadline and work must be positive")
    tick = min(t.gap for t in traces)
    series = [t.resample(tick) if t.gap != tick else [x > 0 for x in t.data] for t in traces]
    length = min(len(s) for s in series)
    deadline_ticks = int(deadline // tick)
    if start < 0 or start + deadline_ticks > length:
        hours = (length - start) * tick / 3600
        raise ValueError(
            f"the traces hold {hours:.1f}h from tick {start}; the deadline ({deadline / 3600:.1f}h) does not fit"
        )
    spots, ods, source, origins = _placements(
        job, placements, len(traces), traces, spot_prices, on_demand_price
    )
    running = work * (1.0 + save_seconds / checkpoint_interval) if checkpoint_interval else work
    period = None
    if not save_on_notice:
        period = max(1, round((checkpoint_interval + save_seconds) / tick)) if checkpoint_interval else 10**9
    history = [_history(s[:start], tick) for s in series]
    union = [any(up) for up in zip(*(s[:start] for s in series), strict=True)] if start else []
    scenario = Scenario(
        tick=tick,
        pools=spots,
        avail=[s[start : start + deadline_ticks] for s in series],
        on_demand=ods,
        work_ticks=max(1, math.ceil(running / tick - 1e-9)),
        deadline_ticks=deadline_ticks,
        overhead_ticks=math.ceil(restart_overhead / tick - 1e-9) if restart_overhead > 0 else 0,
        period_ticks=period,
        history=history,
        extra_ticks=[s[start + deadline_ticks :] for s in series],
        price_sources=origins,
        any_history=_history(union, tick),
    )
    return scenario, source


def _history(values: list[bool], tick: float) -> tuple[float, float, int, int, bool | None]:
    up = sum(values)
    runs = sum(1 for i, v in enumerate(values) if v and (i == 0 or not values[i - 1]))
    gaps = sum(1 for i, v in enumerate(values) if not v and (i == 0 or values[i - 1]))
    return len(values) * tick, up * tick, runs, gaps, (values[-1] if values else None)


def _placements(
    job: Job,
    given: Sequence[Placement] | None,
    n: int,
    traces: list[Trace],
    spot_prices: list[float] | None,
    on_demand_price: float | None,
) -> tuple[list[Placement], list[Placement], str, dict[Placement, str]]:
    """Spot pools (one per trace) and on-demand placements with prices, and where each price came
    from: given (``--spot-price``/``--on-demand-price``) wins, then the placement's own price, then
    the catalog, then the relative ``ASSUMED_PRICES``."""
    known = given if given is not None else both_markets(job)
    spots = [p for p in known if p.market == "spot"]
    ods = [p for p in known if p.market == "on-demand"]
    template = spots[0] if spots else (ods[0] if ods else Placement("local", "spot"))
    pools = []
    for i in range(n):
        base = spots[i] if i < len(spots) else replace(template, market="spot", region=traces[i].name)
        pools.append(base)
    if not ods:
        ods = [replace(template, market="on-demand", price_per_hour=None)]
    origin: dict[int, str] = {}  # index in pools + ods -> source of its price
    if spot_prices is not None:
        if len(spot_prices) not in (1, n):
            raise ValueError(f"give one spot price or one per trace ({n})")
        pools = [
            replace(p, price_per_hour=spot_prices[min(i, len(spot_prices) - 1)]) for i, p in enumerate(pools)
        ]
        origin.update({i: "given" for i in range(len(pools))})
    if on_demand_price is not None:
        ods = [replace(p, price_per_hour=on_demand_price) for p in ods]
        origin.update({len(pools) + i: "given" for i in range(len(ods))})
    everything = [*pools, *ods]
    hints = [t.name for t in traces[: len(pools)]] + [traces[0].name] * len(ods)
    for i, p in enumerate(everything):
        if i in origin:
            continue
        if p.price_per_hour is not None:
            planned = given.source(p) if isinstance(given, Plan) and p in given else None
            origin[i] = planned if planned and planned.startswith("catalog") else "the job's placements"
            continue
        found = price_of(job, p, hints[i])
        if found is not None:
            everything[i] = replace(p, price_per_hour=found[0])
            origin[i] = found[1]
        else:
            everything[i] = replace(p, price_per_hour=ASSUMED_PRICES[p.market])
            origin[i] = ASSUMED_SOURCE
    pools, ods = everything[: len(pools)], everything[len(pools) :]
    sources = {everything[i]: origin[i] for i in range(len(everything))}
    return pools, ods, _summary(list(origin.values())), sources


ASSUMED_SOURCE = "assumed (relative: on-demand 1.0, spot 0.3 per hour)"


def _summary(origins: list[str]) -> str:
    """One line for the report: the distinct sources (catalog entries without their URL)."""
    seen: list[str] = []
    for text in origins:
        short = text.split(" from ")[0] if text.startswith("catalog:") else text
        if short not in seen:
            seen.append(short)
    return "; ".join(seen) or "the job's placements"


# --------------------------------------------------------------------------- running a policy


def run_policy(scenario: Scenario, policy: Policy, job: Job, name: str | None = None) -> Outcome:
    """Replay ``scenario`` through ``policy``; the accounting of the module docstring."""
    sc = scenario
    g = sc.tick
    sim_job = _with_limits(job, sc.deadline_ticks * g, sc.work_ticks * g)
    candidates = sc.candidates
    prices = {p: sc.tick_price(p) for p in candidates}
    counters = [[h[0], h[1], h[2], h[3]] for h in sc.history]  # seconds, up, runs, gaps
    last_up = [h[4] for h in sc.history]
    joint = sc.any_history or _history([], g)
    any_counter = [joint[0], joint[1], joint[2], joint[3]]
    any_last = joint[4]
    any_stats: PoolStats | None = None
    stats: dict[Placement, PoolStats] | None = None
    refresh = max(1, int(STATS_EVERY // g))
    q = 0
    mode: Placement | None = None
    overhead_left = 0
    cost = 0.0
    attempts: list[Attempt] = []
    preempted = lost = overhead = spot_ticks = od_ticks = 0
    stopped: str | None = None
    finish: int | None = None
    t = 0
    horizon = sc.deadline_ticks + min(len(e) for e in sc.extra_ticks) if sc.extra_ticks else sc.deadline_ticks
    period = sc.period_ticks
    least = sc.deadline_ticks - sc.work_ticks  # slack in ticks, its minimum over the run
    while t < horizon:
        if q >= sc.work_ticks:
            finish = t
            break
        least = min(least, (sc.deadline_ticks - t) - (sc.work_ticks - q))
        avail_now = frozenset(
            p
            for p, a, extra in zip(sc.pools, sc.avail, sc.extra_ticks or [[]] * len(sc.pools), strict=True)
            if (a[t] if t < sc.deadline_ticks else extra[t - sc.deadline_ticks])
        )
        for i, p in enumerate(sc.pools):
            c = counters[i]
            up = p in avail_now
            c[0] += g
            if up:
                c[1] += g
                if last_up[i] is not True:
                    c[2] += 1
            elif last_up[i] is not False:
                c[3] += 1
            last_up[i] = up
        some = bool(avail_now)
        any_counter[0] += g
        if some:
            any_counter[1] += g
            if any_last is not True:
                any_counter[2] += 1
        elif any_last is not False:
            any_counter[3] += 1
        any_last = some
        if mode is not None and mode.market == "spot" and mode not in avail_now:
            attempts[-1].state, attempts[-1].ended = JobState.PREEMPTED, t * g
            preempted += 1
            if period is not None:
                kept = (q // period) * period
                lost += q - kept
                q = kept
            mode, overhead_left = None, 0
        if t < sc.deadline_ticks:
            if stats is None or t % refresh == 0:
                stats = {
                    p: PoolStats(c[0], c[1], int(c[2]), int(c[3]))
                    for p, c in zip(sc.pools, counters, strict=True)
                }
                a = any_counter
                any_stats = PoolStats(a[0], a[1], int(a[2]), int(a[3]))
            at_risk = 0
            if period is not None and mode is not None and mode.market == "spot":
                at_risk = q - (q // period) * period
            ctx = PolicyContext(
                sim_job,
                attempts,
                candidates,
                float(t * g),
                0.0,
                progress=float(q * g),
                work=float(sc.work_ticks * g),
                current=mode,
                overhead_left=float(overhead_left * g),
                available=avail_now,
                restart_overhead=float(sc.overhead_ticks * g),
                step=g,
                spent=cost,
                at_risk=float(at_risk * g),
                stats=stats,
                any_stats=any_stats,
            )
            decision: Decision = policy.decide(ctx)
            target = decision.placement
            if target is None and not decision.idle:
                stopped = decision.reason
                if mode is not None:
                    attempts[-1].state, attempts[-1].ended = JobState.CANCELLED, t * g
                break
        else:  # past the deadline: finish on on-demand
            target = (
                mode
                if mode is not None and mode.market == "on-demand"
                else min(sc.on_demand, key=prices.__getitem__)
            )
        if target is not None and target.market == "spot" and target not in avail_now:
            attempts.append(Attempt("sim", len(attempts) + 1, target, JobState.NO_CAPACITY, ended=t * g))
            target = None
        if target != mode:
            if mode is not None:
                attempts[-1].state, attempts[-1].ended = JobState.CANCELLED, t * g  # switched away
            if target is not None:
                attempts.append(Attempt("sim", len(attempts) + 1, target, JobState.RUNNING, started=t * g))
                overhead_left = sc.overhead_ticks
            mode = target
        if mode is not None:
            cost += prices[mode]
            if mode.market == "spot":
                spot_ticks += 1
            else:
                od_ticks += 1
            if overhead_left > 0:
                overhead_left -= 1
                overhead += 1
            else:
                q += 1
        t += 1
    else:
        if q >= sc.work_ticks:
            finish = t
    if finish is not None and attempts and attempts[-1].state is JobState.RUNNING:
        attempts[-1].state, attempts[-1].ended = JobState.SUCCEEDED, finish * g
    hours = g / 3600.0
    return Outcome(
        policy=name or str(getattr(policy, "name", type(policy).__name__)),
        cost=cost,
        finish_hours=None if finish is None else finish * hours,
        deadline_met=finish is not None and finish <= sc.deadline_ticks and stopped is None,
        preemptions=preempted,
        lost_hours=lost * hours,
        overhead_hours=overhead * hours,
        spot_hours=spot_ticks * hours,
        on_demand_hours=od_ticks * hours,
        attempts=sum(a.state is not JobState.NO_CAPACITY for a in attempts),
        stopped=stopped,
        min_slack_hours=least * hours,
    )


def _with_limits(job: Job, deadline: float, work: float) -> Job:
    data = job.to_data()
    data["limits"] = {**data.get("limits", {}), "deadline": deadline}
    data["spot"] = {**data.get("spot", {}), "work": work}
    return Job.validate_data(data)


# --------------------------------------------------------------------------- the whole comparison


def simulate(
    job: Job,
    traces: list[str | os.PathLike[str] | Trace],
    deadline: float | str | None = None,
    *,
    policies: str | list[str] = "all",
    work: float | str | None = None,
    restart_overhead: float | str = DEFAULT_OVERHEAD,
    checkpoint_interval: float | str | None = None,
    save_seconds: float = 0.0,
    save_on_notice: bool = True,
    start: int = 0,
    spot_prices: list[float] | None = None,
    on_demand_price: float | None = None,
    placements: Sequence[Placement] | None = None,
    optimum: bool = True,
) -> SimulationReport:
    """Each policy's cost, finish, deadline and preemptions on ``traces``, against the optimum.

    ``deadline`` and ``work`` are durations (``"36h"`` or seconds); they default to the job's
    ``limits.deadline`` (a duration) and ``spot.work``; without a work, two thirds of the
    deadline is assumed (and said so in ``work_source``).
    """
    from multispot.policy.optimum import optimum as solve
    from multispot.units import parse_duration

    def seconds(value: float | str | None) -> float | None:
        return (
            None if value is None else (float(value) if not isinstance(value, str) else parse_duration(value))
        )

    loaded = [t if isinstance(t, Trace) else Trace.load(t) for t in traces]
    total = seconds(deadline)
    if total is None:
        if job.limits.deadline is None or not isinstance(job.limits.deadline, (int, float)):
            raise ValueError("give a deadline (a duration such as 36h): the job has none as a duration")
        total = float(job.limits.deadline)
    needed = seconds(work)
    work_source = "given"
    if needed is None and job.spot.work is not None:
        needed, work_source = float(job.spot.work), "the job's spot.work"
    if needed is None:
        needed, work_source = total * 2 / 3, "assumed: two thirds of the deadline (give --work or spot.work)"
    interval = seconds(checkpoint_interval)
    if interval is None and job.checkpoint.interval is not None:
        interval = float(job.checkpoint.interval)
    overhead_s = seconds(restart_overhead)
    scenario, price_source = build_scenario(
        job,
        loaded,
        total,
        needed,
        restart_overhead=overhead_s if overhead_s is not None else DEFAULT_OVERHEAD,
        checkpoint_interval=interval,
        save_seconds=save_seconds,
        save_on_notice=save_on_notice,
        start=start,
        spot_prices=spot_prices,
        on_demand_price=on_demand_price,
        placements=placements,
    )
    names = list(ALL_POLICIES) if policies == "all" else [policies] if isinstance(policies, str) else policies
    outcomes = [run_policy(scenario, policy_get(n), job, n) for n in names]
    best = solve(scenario).cost if optimum else None
    baseline = next((o.cost for o in outcomes if o.policy == "on-demand"), None)
    if baseline is None:
        baseline = run_policy(scenario, policy_get("on-demand"), job).cost
    for o in outcomes:
        if o.stopped is not None and o.finish_hours is None:
            continue  # the policy ended the job unfinished: its cost buys less work, no ratio
        o.savings_vs_on_demand = 1.0 - o.cost / baseline if baseline > 0 else None
        o.ratio_to_optimum = o.cost / best if best else None
    return SimulationReport(
        traces=[t.path or t.name for t in loaded],
        tick_seconds=scenario.tick,
        work_hours=scenario.work_ticks * scenario.tick / 3600,
        deadline_hours=scenario.deadline_ticks * scenario.tick / 3600,
        restart_overhead_seconds=scenario.overhead_ticks * scenario.tick,
        prices={_label(p): p.price_per_hour or 0.0 for p in scenario.candidates},
        price_source=price_source,
        work_source=work_source,
        optimum_cost=best,
        optimum_kind="exact" if optimum else "not computed",
        outcomes=outcomes,
        start_tick=start,
        price_sources={_label(p): scenario.price_sources.get(p, price_source) for p in scenario.candidates},
    )


def _label(p: Placement) -> str:
    return f"{p.region or p.provider} {p.market}"
