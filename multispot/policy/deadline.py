"""Recovery policies that know the deadline: where the job runs now, tick after tick.

Every policy here answers the same question for the controller (an attempt has ended: where does
the next one run?) and for the simulator (at each tick: stay, switch, or run nothing for now).
They share the guards in ``TickPolicy.decide``: never a placement above ``limits.max_price``,
never a step that would take the spend past ``limits.budget``, and, once the deadline leaves no
other way, on-demand (the *safety net*; only when the job allows on-demand at all).

Time is in seconds, prices in USD per instance-hour. With ``d`` the restart overhead (from an
attempt's start to useful progress), ``R`` the time left before the deadline and ``C`` the
running time the job still needs, the *slack* is ``R - C``: idling or paying a restart spends it,
running on anything keeps it. Starting on-demand needs ``d`` of slack, so a policy may idle for a
tick only while ``R - step - C >= d``, and may start a spot attempt only while ``R - C >= 2d``
(the restart, and the restart of on-demand if spot is lost at once).
"""

from __future__ import annotations

import math
import time

from multispot.job import Job
from multispot.policy import Decision, PolicyContext, absolute_deadline, within_budget
from multispot.status import Attempt, JobState, Placement

RETRY_AFTER = 300.0  # live: a pool that just had no capacity (or preempted) is skipped this long


class TickPolicy:
    """Shared guards and helpers; subclasses implement ``choose``."""

    name = "tick"
    summary = ""

    def __init__(self, order: str = "cheapest") -> None:
        if order not in ("cheapest", "ordered"):
            raise ValueError("order is 'cheapest' or 'ordered'")
        self.order = order

    # ----------------------------------------------------------------- the interface

    def markets(self, job: Job | None = None) -> tuple[str, ...]:
        return ("spot", "on-demand")

    def preview(self, candidates: list[Placement]) -> list[Placement]:
        """Spot pools (cheapest first, or in the user's order), then on-demand likewise."""
        out: list[Placement] = []
        for market in ("spot", "on-demand"):
            pool = [c for c in candidates if c.market == market]
            out += sorted(pool, key=_price) if self.order == "cheapest" else pool
        return out

    def decide(self, ctx: PolicyContext) -> Decision:
        deadline = absolute_deadline(ctx.job, ctx.submitted_at)
        if deadline is not None and ctx.now >= deadline:
            return Decision(None, "the deadline has passed", final_state=JobState.TIMED_OUT)
        if not self.allowed(ctx):
            return Decision(None, "no placement within the job's targets and max_price")
        return within_budget(ctx, self.choose(ctx))

    def choose(self, ctx: PolicyContext) -> Decision:
        raise NotImplementedError

    # ----------------------------------------------------------------- helpers

    def allowed(self, ctx: PolicyContext) -> list[Placement]:
        cap = ctx.job.limits.max_price
        return [
            c for c in ctx.candidates if cap is None or c.price_per_hour is None or c.price_per_hour <= cap
        ]

    def on_demand(self, ctx: PolicyContext) -> Placement | None:
        pool = [c for c in self.allowed(ctx) if c.market == "on-demand"]
        if not pool:
            return None
        if ctx.current is not None and ctx.current in pool:
            return ctx.current
        return min(pool, key=_price) if self.order == "cheapest" else pool[0]

    def spot_pools(self, ctx: PolicyContext) -> list[Placement]:
        """Spot placements that have capacity now: known (simulator) or not ruled out (live)."""
        pools = [c for c in self.allowed(ctx) if c.market == "spot"]
        if ctx.available is not None:
            return [c for c in pools if c in ctx.available]
        recent = {
            _key(a.placement)
            for a in ctx.attempts
            if a.state in (JobState.NO_CAPACITY, JobState.PREEMPTED)
            and a.ended is not None
            and ctx.now - a.ended < RETRY_AFTER
        }
        return [c for c in pools if _key(c) not in recent]

    def pick_spot(self, ctx: PolicyContext, pools: list[Placement]) -> Placement:
        """The current pool if it still runs, else cheapest (or first), away from the last preempted."""
        if ctx.current is not None and ctx.current in pools:
            return ctx.current
        last = next((a.placement for a in reversed(ctx.attempts) if a.state is JobState.PREEMPTED), None)
        choices = [p for p in pools if last is None or _key(p) != _key(last)] or pools
        return min(choices, key=_price) if self.order == "cheapest" else choices[0]

    def remaining(self, ctx: PolicyContext) -> tuple[float, float | None]:
        """(R, C): seconds to the deadline (inf without one), running seconds still needed."""
        deadline = absolute_deadline(ctx.job, ctx.submitted_at)
        left = math.inf if deadline is None else deadline - ctx.now
        work = ctx.work if ctx.work is not None else ctx.job.spot.work
        if work is None:
            return left, None
        return left, max(0.0, work - (ctx.progress or 0.0))

    def slack(self, ctx: PolicyContext) -> float:
        left, need = self.remaining(ctx)
        if need is None:
            return math.inf if left == math.inf else left  # unknown work: only the deadline itself
        return left - need - ctx.at_risk - (ctx.overhead_left if ctx.current is not None else 0.0)

    def overhead(self, ctx: PolicyContext) -> float:
        return max(ctx.restart_overhead, 1e-9)

    def forced(self, ctx: PolicyContext) -> bool:
        """True when not starting (or keeping) on-demand now could miss the deadline."""
        slack, d = self.slack(ctx), self.overhead(ctx)
        if ctx.current is not None and ctx.current.market == "on-demand":
            return slack < d + ctx.step  # leaving it now means paying its restart again later
        running = ctx.current is not None and ctx.current.market == "spot" and ctx.overhead_left <= 0
        if running and ctx.available is not None and ctx.current in ctx.available:
            return slack < d  # running spot keeps the slack; a preemption then needs d
        return slack - ctx.step < d

    def can_enter_spot(self, ctx: PolicyContext) -> bool:
        return self.slack(ctx) >= 2 * self.overhead(ctx) + ctx.step

    def go_on_demand(self, ctx: PolicyContext, reason: str) -> Decision:
        od = self.on_demand(ctx)
        if od is None:
            return self.idle(ctx, f"{reason}, but the job allows no on-demand placement")
        return Decision(od, reason)

    def idle(self, ctx: PolicyContext, reason: str) -> Decision:
        return Decision(None, reason, idle=True, delay=ctx.step)


class GreedySpot(TickPolicy):
    """Spot whenever a pool has capacity; on-demand only once the deadline forces it, then for good."""

    name = "greedy"
    summary = "spot whenever a pool has capacity; on-demand once the deadline forces it, then for good"

    def choose(self, ctx: PolicyContext) -> Decision:
        if ctx.current is not None and ctx.current.market == "on-demand":
            return Decision(ctx.current, "on-demand until the end")
        if self.forced(ctx):
            return self.go_on_demand(ctx, "the deadline forces on-demand")
        pools = self.spot_pools(ctx)
        if pools and (ctx.current in pools or self.can_enter_spot(ctx)):
            return Decision(self.pick_spot(ctx, pools), "spot has capacity")
        return self.idle(ctx, "waiting for spot capacity")


class Diversified(TickPolicy):
    """Spot over several pools (cheapest first, or in the user's order), away from the one that
    just preempted; when no pool has capacity, wait at most ``max_wait`` seconds, then on-demand
    until a pool has capacity again (and the rest of the work is worth a restart)."""

    name = "diversified"
    summary = "spot over several pools; on-demand after limits.max_wait (30 min) without capacity"

    def __init__(self, max_wait: float | None = None, order: str = "cheapest") -> None:
        super().__init__(order)
        self._max_wait = max_wait  # None: the job's limits.max_wait, else 30 minutes

    def max_wait(self, ctx: PolicyContext) -> float:
        if self._max_wait is not None:
            return self._max_wait
        return float(ctx.job.limits.max_wait) if ctx.job.limits.max_wait is not None else 1800.0

    def choose(self, ctx: PolicyContext) -> Decision:
        if self.forced(ctx):
            return self.go_on_demand(ctx, "the deadline forces on-demand")
        pools = self.spot_pools(ctx)
        on_od = ctx.current is not None and ctx.current.market == "on-demand"
        _, need = self.remaining(ctx)
        worth = need is None or need > 4 * self.overhead(ctx)
        if pools and (ctx.current in pools or (self.can_enter_spot(ctx) and (not on_od or worth))):
            return Decision(self.pick_spot(ctx, pools), "a spot pool has capacity")
        if on_od:
            return Decision(ctx.current, "no spot capacity: staying on on-demand")
        waited, max_wait = _waiting_since(ctx), self.max_wait(ctx)
        if waited is not None and ctx.now - waited >= max_wait:
            return self.go_on_demand(ctx, f"no spot capacity for {max_wait:g}s")
        return self.idle(ctx, "waiting for spot capacity")


class UniformProgress(TickPolicy):
    """Uniform Progress (Wu et al., "Can't Be Late", NSDI '24), as published.

    With C the job's work, D the deadline (from submit), t the time since submit, d the restart
    overhead, cp(t) the progress made and ep(t) = C·t/D the expected (uniform) progress:

    1. *Uniform progress*: when idle and cp(t) < ep(t), run on-demand.
    2. *Taking risks / exploitation*: use spot whenever it has capacity, even when behind; stay
       on it until it is preempted.
    3. *Hysteresis*: once on on-demand, stay until cp(t) >= ep(t + 2d).
    4. *Safety net*: when idle and R(t) < C(t) + 2d, run on-demand until the end.

    Several spot pools count as one: spot "has capacity" when any allowed pool has; the cheapest
    of them is used. Without a deadline or a known work it runs as greedy spot.
    """

    name = "uniform-progress"
    summary = "Uniform Progress (Can't Be Late, NSDI '24): on-demand when behind C·t/D, spot otherwise"

    def choose(self, ctx: PolicyContext) -> Decision:
        deadline = absolute_deadline(ctx.job, ctx.submitted_at)
        left, need = self.remaining(ctx)
        work = ctx.work if ctx.work is not None else ctx.job.spot.work
        pools = self.spot_pools(ctx)
        if deadline is None or need is None or work is None:
            if pools:
                return Decision(self.pick_spot(ctx, pools), "spot has capacity (no deadline or work)")
            return self.idle(ctx, "waiting for spot capacity")
        d = max(ctx.restart_overhead, ctx.step)  # one tick at least: the safety net must fire in time
        total = deadline - ctx.submitted_at
        elapsed = ctx.now - ctx.submitted_at
        progress = ctx.progress or 0.0

        def ep(t: float) -> float:
            return work * min(1.0, t / total)

        on_spot = ctx.current is not None and ctx.current.market == "spot" and ctx.current in pools
        on_od = ctx.current is not None and ctx.current.market == "on-demand"
        safety = left < need + 2 * d
        if on_spot:
            return Decision(ctx.current, "exploitation: stay on spot until preempted")
        if on_od:
            if safety:
                return Decision(ctx.current, "safety net: on-demand until the end")
            if progress < ep(elapsed + 2 * d):
                return Decision(ctx.current, "hysteresis: on-demand until cp(t) >= ep(t + 2d)")
            if pools:
                return Decision(self.pick_spot(ctx, pools), "ahead of uniform progress: back to spot")
            return self.idle(ctx, "ahead of uniform progress: idle")
        if safety:
            return self.go_on_demand(ctx, "safety net: R(t) < C(t) + 2d")
        if pools:
            return Decision(self.pick_spot(ctx, pools), "taking risks: spot has capacity")
        if progress < ep(elapsed):
            return self.go_on_demand(ctx, "uniform progress: behind ep(t), idle")
        return self.idle(ctx, "at or ahead of uniform progress: waiting for spot")


class DeadlineAware(TickPolicy):
    """Greedy about spot, with a slack reserve sized for the restarts still to come.

    The slack (time left minus work left) is spent two ways: idling through a gap costs it one
    for one, and a spot stretch between two on-demand stretches costs two restarts (``2d``)
    however long it runs. So this policy idles through gaps only while the slack stays above a
    *reserve* of ``2d`` per spot stretch still expected (work left over the mean spot-plus-gap
    cycle seen so far, per pool statistics), and never below ``keep`` (0.2) of Uniform Progress's
    pacing (the initial slack scaled by the time left), so long gaps early cannot eat the slack
    the end needs; below it, it fills gaps with on-demand and goes back
    to spot whenever a pool has capacity and the expected stretch pays back its two restarts at
    the two prices. The safety net is greedy's, so no deadline is missed while on-demand is
    allowed. Spot pools are used cheapest first.
    """

    name = "deadline-aware"
    summary = "greedy about spot with a slack reserve sized for the restarts still to come"

    def __init__(self, cycle_prior: float = 7200.0, keep: float = 0.2, order: str = "cheapest") -> None:
        super().__init__(order)
        self.cycle_prior = cycle_prior
        self.keep = keep

    def choose(self, ctx: PolicyContext) -> Decision:
        if self.forced(ctx):
            return self.go_on_demand(ctx, "the deadline forces on-demand")
        pools = self.spot_pools(ctx)
        on_od = ctx.current is not None and ctx.current.market == "on-demand"
        if ctx.current is not None and ctx.current in pools:
            return Decision(ctx.current, "spot runs: stay")
        if pools and self.can_enter_spot(ctx):
            choice = self.pick_spot(ctx, pools)
            if not on_od or self.worth_leaving(ctx, choice):
                return Decision(choice, "spot has capacity")
        reserve = self.reserve(ctx)
        slack = self.slack(ctx)
        if on_od:
            if slack - ctx.step >= reserve + 2 * self.overhead(ctx):
                return self.idle(ctx, "slack above the reserve again: leave on-demand, wait for spot")
            return Decision(ctx.current, "slack at the reserve: on-demand until spot has capacity")
        if slack - ctx.step >= reserve:
            return self.idle(
                ctx, f"waiting for spot (slack {slack / 3600:.2f}h, reserve {reserve / 3600:.2f}h)"
            )
        return self.go_on_demand(
            ctx, f"slack down to the reserve ({reserve / 3600:.2f}h): on-demand in the gap"
        )

    def cycle(self, ctx: PolicyContext) -> tuple[float, float]:
        """(mean spot stretch, mean spot-plus-gap cycle) seen so far, over the allowed pools."""
        pools = [c for c in self.allowed(ctx) if c.market == "spot"]
        stats = [ctx.stats[p] for p in pools if ctx.stats and p in ctx.stats and ctx.stats[p].runs > 0]
        if not stats:
            return self.cycle_prior / 2, self.cycle_prior
        up = max(s.mean_up or 0.0 for s in stats)
        cycle = min(s.seconds / max(s.runs, 1) for s in stats)  # the most often interrupted pool
        return up, max(cycle, ctx.step)

    def reserve(self, ctx: PolicyContext) -> float:
        _, need = self.remaining(ctx)
        if need is None:
            return 0.0
        d = self.overhead(ctx)
        _, cycle = self.cycle(ctx)
        restarts = 2 * d * (1.0 + need / cycle) + ctx.step
        deadline = absolute_deadline(ctx.job, ctx.submitted_at)
        work = ctx.work if ctx.work is not None else ctx.job.spot.work
        if deadline is None or work is None:
            return restarts
        total = deadline - ctx.submitted_at
        left = deadline - ctx.now
        paced = self.keep * (total - work) * left / total  # a share of Uniform Progress's pacing
        return max(restarts, paced)

    def worth_leaving(self, ctx: PolicyContext, spot: Placement) -> bool:
        od = ctx.current
        if od is None or od.price_per_hour is None or spot.price_per_hour is None:
            return True
        p_od, p_s = od.price_per_hour, spot.price_per_hour
        if p_s >= p_od:
            return False
        up, _ = self.cycle(ctx)
        _, need = self.remaining(ctx)
        run = min(up, need) if need is not None else up
        d = self.overhead(ctx)
        return (run - d) * (p_od - p_s) > d * (p_s + p_od)


def estimate_progress(attempts: list[Attempt]) -> float:
    """Live estimate of the running time kept so far: each attempt from its start to its last
    checkpoint (the whole run for a succeeded one)."""
    kept = 0.0
    for a in attempts:
        if a.started is None:
            continue
        end = a.ended if a.state is JobState.SUCCEEDED else a.last_checkpoint
        if end is not None:
            kept += max(0.0, end - a.started)
    return kept


def estimate_spent(attempts: list[Attempt], now: float | None = None) -> float:
    """Live estimate of the spend so far: each attempt's running time at its placement's price."""
    now = time.time() if now is None else now
    spent = 0.0
    for a in attempts:
        if a.started is None or a.placement.price_per_hour is None:
            continue
        hours = max(0.0, (a.ended or now) - a.started) / 3600.0
        spent += hours * a.placement.price_per_hour * a.placement.count
    return spent


def _waiting_since(ctx: PolicyContext) -> float | None:
    """Since when nothing has run: the end of the last attempt (or the submit)."""
    if ctx.current is not None:
        return None
    if not ctx.attempts:
        return ctx.submitted_at
    ended = ctx.attempts[-1].ended
    return ended if ended is not None else ctx.now


def _price(p: Placement) -> float:
    return p.price_per_hour if p.price_per_hour is not None else math.inf


def _key(p: Placement) -> tuple[str, str, str | None, str | None]:
    return (p.provider, p.market, p.region, p.instance_type)
