"""The market policies: ``spot`` (spot only), ``on-demand`` (never spot) and ``fallback`` (spot,
then on-demand after ``spot.fallback_after`` preemptions or when spot has no capacity).

Among the candidates of the market it wants, a market policy keeps the user's order, moves away
from a pool that just lost capacity when there is another, and never exceeds
``limits.max_price``. Live (the controller asks between attempts) it resubmits at once, backing
off after no capacity; replayed (the simulator asks every tick with the pools that have capacity
now) it stays where it runs, moves to a pool with capacity, and otherwise waits (``spot``) or
buys on-demand (``fallback``) — what the live policy does when the service reports no capacity.
"""

from __future__ import annotations

from multispot.policy import Decision, PolicyContext, absolute_deadline, preemptions, within_budget
from multispot.status import JobState, Placement

MARKETS = {"spot": ("spot",), "on-demand": ("on-demand",), "fallback": ("spot", "on-demand")}
SUMMARIES = {
    "spot": "spot only, in the targets' order; resubmits after each preemption",
    "on-demand": "on-demand only: the baseline every saving is measured against",
    "fallback": "spot, then on-demand for good after spot.fallback_after preemptions or no capacity",
}


class MarketPolicy:
    def __init__(self, name: str, no_capacity_backoff: float = 5.0) -> None:
        if name not in MARKETS:
            raise ValueError(f"a market policy is one of {', '.join(MARKETS)}")
        self.name = name
        self.summary = SUMMARIES[name]
        self.no_capacity_backoff = no_capacity_backoff

    def markets(self, job: object = None) -> tuple[str, ...]:
        return MARKETS[self.name]

    def preview(self, candidates: list[Placement]) -> list[Placement]:
        return [c for market in MARKETS[self.name] for c in candidates if c.market == market]

    def decide(self, ctx: PolicyContext) -> Decision:
        job, attempts = ctx.job, ctx.attempts
        deadline = absolute_deadline(job, ctx.submitted_at)
        if deadline is not None and ctx.now >= deadline:
            return Decision(None, "the deadline has passed", final_state=JobState.TIMED_OUT)
        if len(attempts) >= job.spot.max_attempts:
            return Decision(None, f"gave up after {len(attempts)} attempts (spot.max_attempts)")
        market = self._market(ctx)
        pool = _allowed(ctx, market)
        if not pool:
            return Decision(None, f"no {market} placement within the job's targets and max_price")
        if ctx.available is not None:
            return within_budget(ctx, self._tick(ctx, market, pool))
        if ctx.current is not None and ctx.current in pool:
            return Decision(ctx.current, f"{market} runs: stay")  # live, asked about a running attempt
        last = attempts[-1] if attempts else None
        choice = self._after(pool, last.placement if last and last.placement.market == market else None)
        delay = self.no_capacity_backoff if last and last.state is JobState.NO_CAPACITY else 0.0
        if last and last.state is JobState.NO_CAPACITY and market == "on-demand":
            delay = 0.0
        reason = "first attempt" if last is None else f"after {last.state.value.lower()}: {market}"
        return within_budget(ctx, Decision(choice, reason, delay=delay))

    def _tick(self, ctx: PolicyContext, market: str, pool: list[Placement]) -> Decision:
        """Replayed: the pools with capacity now are known."""
        running = ctx.current is not None and ctx.current in pool
        if running and (market == "on-demand" or ctx.current in (ctx.available or ())):
            return Decision(ctx.current, f"{market} runs: stay")
        if market == "on-demand":
            return Decision(pool[0], "on-demand")
        up = [c for c in pool if c in (ctx.available or ())]
        if up:
            last = next((a.placement for a in reversed(ctx.attempts) if a.state is JobState.PREEMPTED), None)
            return Decision(self._after(up, last), "a spot pool has capacity")
        if self.name == "fallback":
            on_demand = _allowed(ctx, "on-demand")
            if on_demand:
                return Decision(on_demand[0], "no spot capacity: on-demand for good")
        return Decision(None, "waiting for spot capacity", idle=True, delay=ctx.step)

    def _market(self, ctx: PolicyContext) -> str:
        if self.name != "fallback":
            return self.name
        if ctx.current is not None and ctx.current.market == "on-demand":
            return "on-demand"  # for good
        attempts = ctx.attempts
        if preemptions(attempts) >= ctx.job.spot.fallback_after:
            return "on-demand"
        if attempts and attempts[-1].state is JobState.NO_CAPACITY:
            return "on-demand"
        return "spot"

    @staticmethod
    def _after(pool: list[Placement], lost: Placement | None) -> Placement:
        """The first pool, or the one after the pool that just lost capacity (wrapping around)."""
        if lost is None or len(pool) < 2:
            return pool[0]
        same = [i for i, c in enumerate(pool) if _same_pool(c, lost)]
        return pool[(same[0] + 1) % len(pool)] if same else pool[0]


def _allowed(ctx: PolicyContext, market: str) -> list[Placement]:
    """The candidates of ``market`` within ``limits.max_price``, in the user's order."""
    cap = ctx.job.limits.max_price
    return [
        c
        for c in ctx.candidates
        if c.market == market and (cap is None or c.price_per_hour is None or c.price_per_hour <= cap)
    ]


def _same_pool(a: Placement, b: Placement) -> bool:
    return (a.provider, a.region, a.instance_type) == (b.provider, b.region, b.instance_type)
