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
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any

from multispot.job import Job
from multispot.policy import Decision, PolicyContext, PoolStats, absolute_deadline, within_budget
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
    """The decision with the least expected cost, under a model of the spot pools learned as the
    job runs. No constant is tuned: every quantity is the job's (work, deadline, restart
    overhead, prices) or estimated from what has been seen of the pools.

    *The model.* Each spot pool is a two-state Markov chain (capacity, no capacity), in the
    ticks at which it is seen (``ctx.step``: the trace's; live, the controller's polls, where it
    is as good as continuous), whose mean up-time ``U`` and mean gap ``G`` are estimated from what
    has been seen of it (``ctx.stats``: the trace so far in the simulator; live, the job's own
    attempts): the stretch or gap under way is censored, and the chance per tick that one ends
    is the rule of succession's (``Pool.estimate``). Several pools are taken as independent: the
    job can run while any has capacity.

    *The decision.* On that model the job is a small Markov decision process: time left and
    work left in units of the restart overhead ``d`` (a start or switch costs one unit without
    progress), where the job runs (nothing, spot, on-demand) and whether spot has capacity. Its
    expected cost-to-go is solved once per job and model by backward induction (``_solve``,
    cached), and each tick takes the action it prices lowest: idle through a gap, buy on-demand
    in it, go back to spot, or stay. Missing the deadline costs infinitely, so the programme
    hedges against long gaps exactly as much as the estimated gap lengths warrant.

    With nothing seen yet (no gap, or no stretch with capacity) it is greedy. Greedy's safety
    net comes first, so no deadline is missed while on-demand is allowed. A running spot attempt
    moves to a cheaper pool with capacity when that pool's expected useful stretch
    (``U·e^(-d/U)``) pays for the restart at the price difference.
    """

    name = "deadline-aware"
    summary = "least expected cost on a Markov model of the pools learned so far; greedy's safety net"

    def choose(self, ctx: PolicyContext) -> Decision:
        if self.forced(ctx):
            return self.go_on_demand(ctx, "the deadline forces on-demand")
        pools = self.spot_pools(ctx)
        model = self.model(ctx)
        if ctx.current is not None and ctx.current in pools:
            better = self.cheaper_pool(ctx, pools)
            if better is not None:
                return Decision(better, "a cheaper spot pool has capacity: move")
        on_od = ctx.current is not None and ctx.current.market == "on-demand"
        on_spot = ctx.current is not None and ctx.current in pools
        action = self.best_action(ctx, model, up=bool(pools))
        if action == "spot" or (action is None and pools and not on_od):
            if on_spot:
                return Decision(ctx.current, "spot runs: stay")
            if pools and self.can_enter_spot(ctx):
                return Decision(self.pick_spot(ctx, pools), "spot has capacity")
            action = "on-demand" if on_od else "idle"
        if action == "on-demand" or (action is None and on_od):
            if on_od:
                return Decision(ctx.current, "on-demand: the cheaper expected cost from here")
            return self.go_on_demand(ctx, "on-demand now: cheaper in expectation than waiting for spot")
        if on_spot:
            return Decision(ctx.current, "spot runs: stay")
        return self.idle(ctx, "waiting for spot: cheaper in expectation than on-demand now")

    # ----------------------------------------------------------------- the model

    def model(self, ctx: PolicyContext) -> Pool | None:
        """The allowed spot pools as one: from what was seen of "some pool has capacity" when
        known (the simulator), else the best single pool (no diversification is assumed that
        has not been seen). None while nothing has been seen long enough to estimate. With
        several pools, a running attempt still ends when *its* pool drops: ``run`` is the mean
        stretch of the pool the job would run on (``runner``)."""
        stats = self.seen(ctx)
        if ctx.any_stats is not None:
            joint = Pool.estimate(
                ended(ctx.any_stats, None if ctx.available is None else bool(ctx.available)), ctx.step
            )
            runner = self.runner(ctx)
            own = Pool.estimate(stats[runner], ctx.step) if runner is not None and runner in stats else None
            if joint is None or own is None or not 0 < own.up < joint.up:
                return joint
            return replace(joint, run=own.up)
        pools = [c for c in self.allowed(ctx) if c.market == "spot"]
        known = [m for m in (Pool.estimate(stats[p], ctx.step) for p in pools if p in stats) if m is not None]
        return max(known, key=lambda m: (m.fraction, m.up)) if known else None

    def runner(self, ctx: PolicyContext) -> Placement | None:
        """The spot pool the job runs on now, else the one it would start on: of those with
        capacity now (all allowed, when none has), the least expected price per useful hour."""
        pools = self.spot_pools(ctx)
        if ctx.current is not None and ctx.current in pools:
            return ctx.current
        pools = pools or [c for c in self.allowed(ctx) if c.market == "spot"]
        return min(pools, key=lambda p: self.per_useful_hour(ctx, p)) if pools else None

    def per_useful_hour(self, ctx: PolicyContext, p: Placement) -> float:
        """The price of an hour of progress on pool ``p``: a start pays the restart ``d`` and an
        exponential stretch of mean ``U`` then runs ``U·e^(−d/U)`` useful, so per useful hour
        ``price·e^(d/U)`` (the price itself for a pool never seen to drop)."""
        stats = self.seen(ctx)
        m = Pool.estimate(stats[p]) if p in stats else None
        price = _price(p) * p.count
        if m is None or m.up == math.inf:
            return price
        if m.up <= 0:
            return math.inf
        return price * math.exp(min(self.overhead(ctx) / m.up, 700.0))

    def pick_spot(self, ctx: PolicyContext, pools: list[Placement]) -> Placement:
        """The current pool if it still runs, else the cheapest per useful hour (``per_useful_hour``:
        a cheap pool whose stretches barely outlast a restart is not cheap), away from the one
        that just preempted."""
        if ctx.current is not None and ctx.current in pools:
            return ctx.current
        last = next((a.placement for a in reversed(ctx.attempts) if a.state is JobState.PREEMPTED), None)
        choices = [p for p in pools if last is None or _key(p) != _key(last)] or pools
        return min(choices, key=lambda p: self.per_useful_hour(ctx, p))

    def seen(self, ctx: PolicyContext) -> dict[Placement, PoolStats]:
        """The evidence per spot pool: what this run has seen (the trace so far, or live the
        job's own attempts) added to the job store's history of the pool (``ctx.history``), the
        prior evidence: for a two-state chain the two are additive."""
        from multispot.policy.history import merge

        if ctx.stats is not None:
            own = {p: ended(s, up_now(ctx, p)) for p, s in ctx.stats.items()}
        else:
            own = stats_from_attempts(ctx.attempts, ctx.now)
        prior = ctx.history or {}
        return {p: merge(own.get(p), prior.get(p)) for p in {*own, *prior}}

    def programme(self, ctx: PolicyContext, model: Pool | None) -> _State | None:
        """The solved decision process and where the job stands in it, or None when it does not
        apply (nothing known, always up so far, no deadline or work, no prices): then greedy."""
        if model is None or not (0 < model.up < math.inf and 0 < model.down < math.inf):
            return None  # never seen both with and without capacity: greedy
        deadline = absolute_deadline(ctx.job, ctx.submitted_at)
        work = ctx.work if ctx.work is not None else ctx.job.spot.work
        od = self.on_demand(ctx)
        spot = [c for c in self.allowed(ctx) if c.market == "spot" and c.price_per_hour is not None]
        if deadline is None or work is None or od is None or od.price_per_hour is None or not spot:
            return None
        unit = max(self.overhead(ctx), ctx.step)
        runner = self.runner(ctx)
        price = (
            _price(runner) * runner.count
            if runner is not None and runner.price_per_hour is not None
            else None
        )
        p_s = (price if price is not None else min(_price(c) * c.count for c in spot)) * unit / 3600.0
        p_od = od.price_per_hour * od.count * unit / 3600.0
        horizon = max(1, math.ceil((deadline - ctx.submitted_at) / unit))
        total = max(1, math.ceil(work / unit))
        solved = _solve(_key_of(model, unit, ctx.step), horizon, total, p_s, p_od)
        _, need = self.remaining(ctx)
        # a restart under way is sunk: count it as running, with its rest taken from the time left
        pending = ctx.overhead_left if ctx.current is not None else 0.0
        left = deadline - ctx.now - ctx.at_risk - pending
        # The grid is whole units; the job stands between grid points. Work is rounded to the
        # nearest unit and the time left shifted by the same amount, so the slack is exact, and
        # the values are interpolated in time. One tick is kept back: the guards that act on the
        # plan (``forced``, ``can_enter_spot``) need a tick more than the programme's restarts,
        # and a plan that counts on that tick (wait, buy on-demand at the last unit, go back to
        # spot with two units left) is one the guards will not carry out.
        work_left = (need or 0.0) / unit
        q = min(total, max(0, round(work_left)))
        at = min(float(horizon), max(0.0, (left - ctx.step) / unit - (work_left - q)))
        return _State(solved, at, q, p_s, p_od, unit, ctx.step / unit)

    def best_action(self, ctx: PolicyContext, model: Pool | None, up: bool) -> str | None:
        """``idle``, ``spot`` or ``on-demand``: the action of least expected cost-to-go, or None
        when the programme does not apply."""
        state = self.programme(ctx, model)
        if state is None or state.q == 0:
            return None
        mode = _NOTHING
        if ctx.current is not None and ctx.current.market == "on-demand":
            mode = _OD
        elif ctx.current is not None and up:
            mode = _SPOT
        choices = state.actions(mode, 1 if up else 0)
        if not choices:
            return None
        best = min(choices.values())
        # A tie (to rounding) keeps what runs; with nothing running it goes to progress, never
        # to idling: far from the deadline the cost-to-go is flat in time, so idling with spot
        # up ties with starting it, yet spends slack the model cannot price (an earlier rule
        # that kept "idle" on ties idled for hours beside capacity: docs/decisions.md).
        keep = {_NOTHING: None, _SPOT: "spot", _OD: "on-demand"}[mode]
        for name in (keep, "spot", "on-demand", "idle"):
            if name in choices and choices[name] <= best * (1 + 1e-9) + 1e-12:
                return name
        return min(choices, key=choices.__getitem__)

    def cheaper_pool(self, ctx: PolicyContext, pools: list[Placement]) -> Placement | None:
        """A running spot attempt moves to a cheaper pool with capacity when that pool's expected
        useful stretch, at the price difference, pays for what the restart costs: its price and,
        from the programme, the expected cost of the time it takes."""
        here = ctx.current
        if here is None or here.price_per_hour is None or not self.can_enter_spot(ctx):
            return None
        stats = self.seen(ctx)
        state = self.programme(ctx, self.model(ctx))
        restart = 0.0
        if state is not None and state.q > 0:
            stay, move = state.actions(_SPOT, 1), state.actions(_NOTHING, 1)
            if "spot" in stay and "spot" in move:
                restart = move["spot"] - stay["spot"]
        best: Placement | None = None
        gain = 0.0
        d = self.overhead(ctx)
        for p in pools:
            if p == here or p.price_per_hour is None or p.price_per_hour >= here.price_per_hour:
                continue
            m = Pool.estimate(stats[p]) if p in stats else None
            if m is None:
                continue
            cost = restart if state is not None else d * p.price_per_hour / 3600.0
            value = m.useful(d) * (here.price_per_hour - p.price_per_hour) / 3600.0 - cost
            if value > gain:
                best, gain = p, value
        return best


_NOTHING, _SPOT, _OD = 0, 1, 2


def _key_of(model: Pool, unit: float, tick: float = 0.0) -> tuple[float, float, float, float]:
    """The model on a log grid of 1/16 octave (about 4 %): nearby estimates share one solution
    (the estimates move a little at every refresh; a 4 % change moves no decision much), and the
    ticks per unit (``unit / tick``; infinite for a pool watched continuously)."""
    run = model.up if model.run is None else model.run
    up, down, stretch = (
        2.0 ** (round(16 * math.log2(max(x, 1e-3) / unit)) / 16) for x in (model.up, model.down, run)
    )
    return up, down, stretch, unit / tick if tick > 0 else math.inf


@dataclass(frozen=True)
class _Chain:
    """The pool's chain over one unit, from its mean up-time and gap in units (``U``, ``G``).

    The pool is seen at ticks (the trace's; live, the controller's polls), ``k`` to a unit, and
    ``U`` and ``G`` are measured in them: a stretch of capacity ends after a tick with
    probability ``p = 1/(kU)``, a gap with ``r = 1/(kG)`` (the maximum-likelihood two-state chain
    of what was seen at those ticks). An idle job sees only where the chain is at the next unit:
    up again with probability ``stay_up = f + (1 − f)λ^k`` when up, ``come_up = f(1 − λ^k)`` when
    down (``f = U/(U + G)``, ``λ = 1 − p − r``). A *running* spot attempt needs more than that:
    it is preempted by any drop inside the unit, even one the pool recovers from before the unit
    ends, so it survives the unit with probability ``survive = (1 − p)^k`` only; when it does
    not, the pool is up at the unit's end with probability ``back``, and the attempt ran (and
    was billed, and progressed) for the ticks before the drop, a fraction ``ran`` of the unit.
    With ``k`` infinite (a pool watched continuously) these are the continuous-time chain's
    ``λ^k = e^(−1/τ)`` (``τ = UG/(U + G)``) and ``survive = e^(−1/U)``. Where a unit is a tick or
    two (10-minute traces, a 3-minute restart) the continuous chain, fitted to the same means,
    is wrong about the ticks: it lets a gap end and the pool drop again within one, so it holds
    a gap about 10–20 % longer and a stretch about as much longer than was seen, and bills a
    spot tick as partly run. Taking the two-point probability for a running attempt (as an
    earlier version did) overstates how long spot runs in pools whose stretches last a few
    units."""

    stay_up: float
    come_up: float
    survive: float
    back: float  # P(up at the unit's end | the attempt dropped inside it)
    used: float  # expected fraction of the unit a spot attempt started up runs (and is billed)
    ran: float  # the same, given that it dropped inside the unit
    f: float  # long-run fraction up
    decay: float  # λ: how much of the chain's state is left after one tick
    ticks: float  # k: ticks per unit (infinite: continuous)

    @classmethod
    def of(cls, up: float, down: float, run: float | None = None, ticks: float = math.inf) -> _Chain:
        """``run``: the mean stretch of the pool a spot attempt runs on, when the job sees several
        pools as one (``up`` is then "some pool has capacity", and an attempt ends sooner).
        ``ticks``: ticks per unit (``math.inf``: the continuous-time chain)."""
        run = up if run is None else min(run, up)
        if math.isinf(ticks):
            f = up / (up + down)
            lam, k = math.exp(-(up + down) / (up * down)), 1.0  # the whole unit as one step
            survive = math.exp(-1.0 / run)
            used = run * (1.0 - survive)  # E[min(X, 1)] for an exponential stretch of mean ``run``
        else:
            k = ticks
            p, r, drop = (min(1.0, 1.0 / (x * k)) for x in (up, down, run))
            f = r / (p + r)
            lam = 1.0 - p - r
            survive = (1.0 - drop) ** k
            used = (1.0 - survive) / (drop * k)  # ticks run before the drop (all k if none), over k
        decay = _power(lam, k)
        stay_up = f + (1 - f) * decay
        dropped = 1.0 - survive
        back = (stay_up - survive) / dropped if dropped > 0 else 0.0
        ran = (used - survive) / dropped if dropped > 0 else 0.0
        return cls(
            stay_up,
            f * (1 - decay),
            survive,
            min(1.0, max(0.0, back)),
            used,
            min(1.0, max(0.0, ran)),
            f,
            lam,
            k if not math.isinf(ticks) else math.inf,
        )

    def after(self, t: float, up: int) -> float:
        """P(up ``t`` units from now | up now or not)."""
        decay = _power(self.decay, t if math.isinf(self.ticks) else t * self.ticks)
        return self.f + (1 - self.f) * decay if up else self.f * (1 - decay)


def _power(lam: float, n: float) -> float:
    """``λ^n`` for the chain's ``λ`` (negative when ``p + r > 1``: the chain flips more often than
    not, which only whole ticks can do; a fraction of a tick is taken as no memory left)."""
    if lam >= 0:
        return float(lam**n)
    whole = round(n)
    return float(lam**whole) if abs(n - whole) < 1e-9 else 0.0


def _action_values(prev: Any, chain: _Chain, mode: int, a: int, p_s: float, p_od: float) -> dict[str, Any]:
    """The expected cost of each action for one unit (one vector over the work left), from the
    next unit's values ``prev[mode, up, q]``: ``idle``, ``on-demand`` and, when spot is up
    (``a``), ``spot``. Running on the mode it is already in progresses one unit; a start or a
    switch pays the unit without progress."""
    import numpy as np

    inf = np.inf
    p_up = chain.stay_up if a else chain.come_up

    def next_of(m: int) -> Any:
        return _blend(p_up, prev[m, 1], prev[m, 0])

    def advance(v: Any) -> Any:  # progress one unit: the value at one unit less of work
        out = np.full(v.shape, inf)
        out[1:] = v[:-1]
        out[0] = 0.0
        return out

    od = next_of(_OD)
    out = {"idle": next_of(_NOTHING), "on-demand": p_od + (advance(od) if mode == _OD else od)}
    if a == 1:
        lost = _blend(chain.back, prev[_NOTHING, 1], prev[_NOTHING, 0])
        if mode == _SPOT:  # running: progress for the time it runs (all of the unit if it survives)
            # it progressed for the time it ran: a fraction ``ran`` of a unit in expectation. Where
            # losing that fraction would leave no time to finish (an infinite cost), the real loss
            # is under one unit, which the safety net's margin absorbs: count the unit as done.
            done = advance(lost)
            mix = _blend(chain.ran, done, lost)
            partial = np.where(np.isfinite(mix), mix, done)
            spot = _blend(chain.survive, advance(prev[_SPOT, 1]), partial)
        else:  # a start: the unit is the restart, no progress either way
            spot = _blend(chain.survive, prev[_SPOT, 1], lost)
        out["spot"] = p_s * chain.used + spot
    return out


@lru_cache(maxsize=8)
def _solve(key: tuple[float, float, float, float], horizon: int, total: int, p_s: float, p_od: float) -> Any:
    """Expected cost-to-go ``V[steps, mode, up, q]`` of the job's decision process, by backward
    induction: ``steps`` units of time left, ``q`` units of work left, ``mode`` where it runs
    (nothing, spot, on-demand; a start or a switch costs one unit without progress), ``up``
    whether spot has capacity. ``key`` is (mean up, mean gap, mean stretch of the pool it runs
    on) in units and the ticks per unit; the chain is ``_Chain``'s. Missing the deadline costs
    infinity."""
    import numpy as np

    chain = _Chain.of(*key)
    values = np.full((horizon + 1, 3, 2, total + 1), np.inf)
    values[:, :, :, 0] = 0.0
    c = chain
    zero = np.zeros(1)

    def advance(v: Any) -> Any:  # one unit of progress: the value at one unit less of work
        return np.concatenate((zero, v[:-1]))

    # ``_action_values`` for every (mode, up) at once, sharing the vectors they have in common
    # (``tests/unit/test_policies.py`` checks the two agree)
    for steps in range(1, horizon + 1):
        prev, row = values[steps - 1], values[steps]
        lost = _blend(c.back, prev[_NOTHING, 1], prev[_NOTHING, 0])
        done = advance(lost)
        mix = _blend(c.ran, done, lost)
        partial = np.where(np.isfinite(mix), mix, done)
        spot_start = p_s * c.used + _blend(c.survive, prev[_SPOT, 1], lost)
        spot_run = p_s * c.used + _blend(c.survive, advance(prev[_SPOT, 1]), partial)
        for a, p_up in ((0, c.come_up), (1, c.stay_up)):
            idle = _blend(p_up, prev[_NOTHING, 1], prev[_NOTHING, 0])
            od = _blend(p_up, prev[_OD, 1], prev[_OD, 0])
            start_od = np.minimum(idle, p_od + od)
            row[_NOTHING, a] = start_od
            row[_OD, a] = np.minimum(idle, p_od + advance(od))
            if a == 1:
                row[_NOTHING, 1] = np.minimum(start_od, spot_start)
                row[_OD, 1] = np.minimum(row[_OD, 1], spot_start)
                row[_SPOT, 1] = np.minimum(start_od, spot_run)
        row[:, :, 0] = 0.0
    return values, chain


@dataclass(frozen=True)
class _State:
    """Where the job stands in its solved decision process (units of ``unit`` seconds)."""

    solved: Any  # (V[steps, mode, up, q], the chain)
    at: float  # units of time left (between grid points)
    q: int  # units of work left
    p_s: float  # USD per unit
    p_od: float
    unit: float
    tick: float = 1.0  # units until the policy is asked again

    @property
    def steps(self) -> int:
        return math.floor(self.at)

    def actions(self, mode: int, a: int) -> dict[str, float]:
        """The expected cost of each action now, in mode ``mode`` with spot up (``a``) or not:
        interpolated between the grid's whole units of time. Idling is for one tick only (the
        policy decides again then), which the grid's whole unit would overprice."""
        values, chain = self.solved
        lo, w = self.steps, self.at - self.steps
        if lo <= 0:
            return {}
        out = self._grid(lo, mode, a)
        if w > 0 and lo + 1 < len(values):
            hi = self._grid(lo + 1, mode, a)
            out = {k: _mix(v, hi[k], w) for k, v in out.items()}
        if self.tick < 1.0:
            p_up = chain.after(self.tick, a)
            later = self.at - self.tick
            out["idle"] = float(
                _blend(p_up, self._value(_NOTHING, 1, later), self._value(_NOTHING, 0, later))
            )
        return out

    def _grid(self, steps: int, mode: int, a: int) -> dict[str, float]:
        values, chain = self.solved
        choices = _action_values(values[steps - 1], chain, mode, a, self.p_s, self.p_od)
        return {k: float(v[self.q]) for k, v in choices.items()}

    def _value(self, mode: int, up: int, at: float) -> float:
        """The optimal expected cost-to-go at ``at`` units of time left, interpolated."""
        values, _ = self.solved
        if at < 0:
            return math.inf
        lo = min(math.floor(at), len(values) - 1)
        here = float(values[lo, mode, up, self.q])
        if lo + 1 >= len(values):
            return here
        return _mix(here, float(values[lo + 1, mode, up, self.q]), at - lo)


def _blend(w: float, x: Any, y: Any) -> Any:
    """``w·x + (1 − w)·y`` for a probability ``w``, with a certain outcome's other branch left out
    (``0·∞`` is no cost: a branch that cannot happen)."""
    if w >= 1.0:
        return x
    if w <= 0.0:
        return y
    return w * x + (1 - w) * y


def _mix(a: float, b: float, w: float) -> float:
    """``a`` at a whole unit, ``b`` one unit later, ``w`` of the way: linear (infinite if ``a``
    is and ``w`` < 1: more time never costs more, so only ``a`` can be)."""
    if w <= 0:
        return a
    if w >= 1:
        return b
    return math.inf if math.isinf(a) else (1 - w) * a + w * b


@dataclass(frozen=True)
class Pool:
    """A spot pool (or several, as one) as a two-state Markov chain: mean up and down, seconds."""

    up: float
    down: float
    run: float | None = None  # several pools as one: the mean stretch of the one the job runs on

    @property
    def fraction(self) -> float:
        return self.up / (self.up + self.down) if self.up + self.down > 0 else 0.0

    @classmethod
    def estimate(cls, s: PoolStats, tick: float = 0.0) -> Pool | None:
        """Means from what was seen, ``s`` counting the stretches that ended (``ended``). Without
        ``tick``: maximum likelihood, time with (without) capacity over the stretches of each
        kind that ended (at least one). With the ``tick`` at which the pool was seen: the
        posterior mean of the chance per tick that a stretch (a gap) ends, under a uniform prior
        (the rule of succession, ``(n + 1)/(ticks + 2)``), as a mean ``tick/p``: with hundreds
        of stretches seen it is the maximum-likelihood mean, with one or two (a job that starts
        with the pool) it no longer takes a stretch still under way, a tick old, for a pool whose
        every stretch ends after one tick. None before the pool has been seen both with and
        without capacity (a pool only ever up is taken as always up: greedy)."""
        if s.seconds <= 0:
            return None
        down_time = s.seconds - s.available
        if down_time <= 0:
            return cls(math.inf, 0.0)
        if s.available <= 0:
            return cls(0.0, math.inf) if s.gaps else None
        if tick > 0:
            return cls((s.available + 2 * tick) / (s.runs + 1), (down_time + 2 * tick) / (s.gaps + 1))
        return cls(s.available / max(s.runs, 1), down_time / max(s.gaps, 1))

    @classmethod
    def union(cls, pools: list[Pool]) -> Pool:
        """Capacity in any of several independent pools: all are down with probability
        Π(1 − f_i), and the union's gaps end at the sum of the rates at which each pool's end."""
        if len(pools) == 1:
            return pools[0]
        if any(p.down == 0 for p in pools):
            return cls(math.inf, 0.0)
        rate = sum(1.0 / p.down for p in pools if p.down < math.inf)
        if rate == 0:
            return cls(0.0, math.inf)
        down = 1.0 / rate
        all_down = math.prod(1.0 - p.fraction for p in pools)
        if all_down <= 0:
            return cls(math.inf, 0.0)
        return cls(down * (1.0 - all_down) / all_down, down)

    def useful(self, d: float) -> float:
        """Expected running time of one stretch of capacity past a restart of ``d`` seconds."""
        if self.up == math.inf:
            return math.inf
        return self.up * math.exp(-d / self.up) if self.up > 0 else 0.0

    def supply(self, horizon: float, up_now: bool, d: float) -> float:
        """Expected useful spot seconds in the next ``horizon`` seconds, from the state now."""
        if horizon <= 0:
            return 0.0
        if self.down == 0:
            return horizon
        if self.up == 0:
            return 0.0
        if self.up == math.inf:
            return horizon
        f = self.fraction
        tau = self.up * self.down / (self.up + self.down)  # relaxation time of the chain
        settle = tau * (1.0 - math.exp(-horizon / tau))
        expected = f * horizon + ((1.0 - f) * settle if up_now else -f * settle)
        return max(0.0, expected) * math.exp(-d / self.up)


def up_now(ctx: PolicyContext, p: Placement) -> bool | None:
    """Whether spot pool ``p`` has capacity now, when known (the simulator says)."""
    return None if ctx.available is None else p in ctx.available


def ended(s: PoolStats, up: bool | None) -> PoolStats:
    """``s`` with the stretch under way left out of the count of stretches that ended: it is
    censored (its time counts, its end was not seen). ``PoolStats`` counts stretches begun, the
    one under way too; the maximum-likelihood mean under censoring divides by the ends seen, as
    the live evidence does (``multispot.policy.history.observed``). Left as is when whether the
    pool is up now is unknown."""
    if up is None:
        return s
    return replace(s, runs=max(0, s.runs - up), gaps=max(0, s.gaps - (not up)))


def stats_from_attempts(attempts: list[Attempt], now: float) -> dict[Placement, PoolStats]:
    """Live, what the job's own attempts say of each spot pool up to ``now``: a stretch with
    capacity from each start to its end, a gap from each preemption or refusal to the next start
    there, censored as ``multispot.policy.history.observed`` says."""
    from multispot.policy.history import observed, pool_key

    seen = observed(attempts, now)
    return {a.placement: seen[pool_key(a.placement)] for a in attempts if pool_key(a.placement) in seen}


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
