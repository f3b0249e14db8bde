"""Each recovery policy on hand-made situations where the right decision is known."""

from __future__ import annotations

import json
import math
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from multispot import policy
from multispot.errors import JobSpecError
from multispot.job import Job
from multispot.policy import Decision, PolicyContext, PoolStats
from multispot.policy.deadline import DeadlineAware, Diversified, GreedySpot, UniformProgress
from multispot.policy.market import MarketPolicy
from multispot.status import Attempt, JobState, Placement

A = Placement("local", "spot", "a", "x", price_per_hour=1.0)
B = Placement("local", "spot", "b", "x", price_per_hour=0.8)
OD = Placement("local", "on-demand", "a", "x", price_per_hour=3.0)
H = 3600.0


def job(**fields: Any) -> Job:
    return Job.validate_data({"name": "p", "command": "python -c pass", **fields})


def ctx(
    spec: Job | None = None,
    *,
    now: float = 0.0,
    progress: float = 0.0,
    work: float = 10 * H,
    deadline: float = 20 * H,
    current: Placement | None = None,
    available: set[Placement] | None = None,
    attempts: list[Attempt] | None = None,
    spent: float = 0.0,
) -> PolicyContext:
    spec = spec or job(limits={"deadline": deadline})
    return PolicyContext(
        spec,
        attempts or [],
        [A, B, OD],
        now,
        0.0,
        progress=progress,
        work=work,
        current=current,
        available=frozenset(available) if available is not None else None,
        restart_overhead=300.0,
        step=60.0,
        spent=spent,
    )


def where(d: Decision) -> str:
    if d.placement is None:
        return "idle" if d.idle else "stop"
    return d.placement.region if d.placement.market == "spot" else "od"  # type: ignore[return-value]


def test_on_demand_always() -> None:
    assert where(policy.get("on-demand").decide(ctx(available={A, B}))) == "od"
    assert where(policy.get("on-demand").decide(ctx(available={A, B}, current=OD))) == "od"


def test_greedy_takes_the_cheapest_spot_waits_with_slack_and_goes_on_demand_when_forced() -> None:
    g = GreedySpot()
    assert where(g.decide(ctx(available={A, B}))) == "b"  # cheapest first
    assert where(g.decide(ctx(available=set()))) == "idle"  # 10h of slack
    # slack = 20h - 14h - 10h... : now 14h, progress 4h -> need 6h, left 6h + 5 min: forced
    assert where(g.decide(ctx(now=14 * H, progress=4 * H + 300, available=set()))) == "od"
    # once on on-demand, greedy stays, even with spot back
    assert where(g.decide(ctx(now=1 * H, current=OD, available={A}))) == "od"


def test_greedy_keeps_a_running_spot_attempt_but_does_not_start_one_without_two_restarts_of_slack() -> None:
    g = GreedySpot()
    tight = {"now": 10 * H - 500, "progress": 0.0}  # slack 500 s: one restart, not two
    assert where(g.decide(ctx(**tight, current=A, available={A}))) == "a"
    assert where(g.decide(ctx(**tight, available={A}))) == "idle"  # a tick of idling is still safe
    assert where(g.decide(ctx(now=10 * H - 350, available={A}))) == "od"  # not after this tick


def test_fallback_after_n_preemptions_replayed() -> None:
    spec = job(limits={"deadline": 20 * H}, spot={"policy": "fallback", "fallback_after": 2})
    f = policy.get("fallback")
    one = [Attempt("j", 1, A, JobState.PREEMPTED, ended=0.0)]
    assert where(f.decide(ctx(spec, available={A}, attempts=one))) == "a"
    two = [*one, Attempt("j", 2, A, JobState.PREEMPTED, ended=0.0)]
    assert where(f.decide(ctx(spec, available={A}, attempts=two))) == "od"
    # on-demand is for good, and no spot capacity at all means on-demand at once
    assert where(f.decide(ctx(spec, available={A}, current=OD))) == "od"
    assert where(f.decide(ctx(spec, available=set()))) == "od"


def test_spot_only_replayed_stays_moves_or_waits() -> None:
    s = policy.get("spot")
    assert where(s.decide(ctx(available={A, B}))) == "a"  # the user's order, not the cheapest
    assert where(s.decide(ctx(available={A, B}, current=B))) == "b"  # stays while it runs
    pre = [Attempt("j", 1, A, JobState.PREEMPTED, ended=0.0)]
    assert where(s.decide(ctx(available={A, B}, attempts=pre))) == "b"  # away from the preempted
    assert where(s.decide(ctx(available=set(), attempts=pre))) == "idle"  # never on-demand


def test_diversified_moves_away_from_the_preempted_pool_and_bounds_its_wait() -> None:
    d = Diversified(max_wait=600.0, order="ordered")
    pre = [Attempt("j", 1, A, JobState.PREEMPTED, ended=0.0)]
    assert where(d.decide(ctx(available={A, B}, attempts=pre))) == "b"
    assert where(d.decide(ctx(now=300, available=set(), attempts=pre))) == "idle"
    assert where(d.decide(ctx(now=700, available=set(), attempts=pre))) == "od"
    # live (availability unknown): a pool that just had no capacity is skipped for a while
    live = [Attempt("j", 1, B, JobState.NO_CAPACITY, ended=time.time())]
    c = ctx(now=time.time(), deadline=10**10, attempts=live)
    assert where(Diversified().decide(c)) == "a"


def test_uniform_progress_rules() -> None:
    up = UniformProgress()
    # work 10h in 20h: ep(t) = t/2. At t=4h with 1h done, idle and behind: on-demand.
    assert where(up.decide(ctx(now=4 * H, progress=1 * H, available=set()))) == "od"
    # ahead (3h done) and idle: wait for spot
    assert where(up.decide(ctx(now=4 * H, progress=3 * H, available=set()))) == "idle"
    # taking risks: spot available while behind -> spot
    assert where(up.decide(ctx(now=4 * H, progress=1 * H, available={A}))) == "a"
    # hysteresis: on on-demand, cp = ep(t) exactly is not yet ep(t + 2d): stay
    assert where(up.decide(ctx(now=4 * H, progress=2 * H, current=OD, available={A}))) == "od"
    assert where(up.decide(ctx(now=4 * H, progress=2.2 * H, current=OD, available={A}))) == "a"
    # safety net: R < C + 2d -> on-demand even with spot available
    assert where(up.decide(ctx(now=14 * H, progress=4 * H + 100, available={A}))) == "od"


def seen(available: float, up: float, days: float = 3.0) -> PoolStats:
    """What three days of a pool with availability ``available`` and mean up-time ``up`` look like."""
    seconds = days * 86400
    runs = max(1, round(seconds * available / up))
    return PoolStats(seconds, seconds * available, runs, runs)


def with_stats(c: PolicyContext, s: PoolStats) -> PolicyContext:
    return replace(c, stats={A: s, B: s}, any_stats=s)


def test_deadline_aware_is_greedy_until_it_has_seen_the_pools() -> None:
    da = DeadlineAware()
    assert where(da.decide(ctx(available=set()))) == "idle"
    assert where(da.decide(ctx(now=9 * H, available=set()))) == "idle"  # slack 1h, greedy waits
    assert where(da.decide(ctx(available={A, B}))) == "b"


def test_deadline_aware_weighs_waiting_against_on_demand_by_the_gaps_it_has_seen() -> None:
    da = DeadlineAware()
    long_gaps = seen(0.1, 1 * H)  # gaps of 9h on average
    short_gaps = seen(0.5, 0.1 * H)  # gaps of 6 min
    # plenty of slack: waiting is cheap whatever the pool (on-demand can still be bought later)
    assert where(da.decide(with_stats(ctx(available=set()), long_gaps))) == "idle"
    # 12 min of slack (greedy still waits: it needs only one restart of 5 min): with gaps of 9h
    # the rest of the slack is worth more as room to go back to spot; with 6-min gaps, wait
    late = ctx(now=9.8 * H, available=set())
    assert where(GreedySpot().decide(late)) == "idle"
    assert where(da.decide(with_stats(late, long_gaps))) == "od"
    assert where(da.decide(with_stats(late, short_gaps))) == "idle"
    # back to spot from on-demand while hour-long stretches pay the two restarts; stretches of
    # 6 min (a restart of 5 min leaves about 2.6 min of work each) are not worth leaving it for
    hours = seen(0.5, 1 * H)
    assert where(da.decide(with_stats(ctx(now=1 * H, current=OD, available={A}), hours))) in ("a", "b")
    assert where(da.decide(with_stats(ctx(now=1 * H, current=OD, available={A}), short_gaps))) == "od"
    assert where(da.decide(with_stats(ctx(now=9 * H, current=OD, available={A}), short_gaps))) == "od"


def test_deadline_aware_keeps_greedys_safety_net() -> None:
    da = DeadlineAware()
    plenty = seen(0.9, 10 * H)
    # slack below one restart: on-demand whatever the model says
    assert where(da.decide(with_stats(ctx(now=10 * H - 250, available=set()), plenty))) == "od"


def test_deadline_aware_moves_to_a_cheaper_pool_only_when_its_stretch_pays_the_restart() -> None:
    da = DeadlineAware()
    long = seen(0.9, 10 * H)
    c = with_stats(ctx(current=A, available={A, B}), long)
    assert where(da.decide(c)) == "b"  # B is 20% cheaper and lives ~10h
    short = replace(c, stats={A: long, B: seen(0.5, 120.0)})
    assert where(da.decide(short)) == "a"  # B's stretches do not pay the restart


def test_pool_estimate_and_supply_follow_the_markov_chain() -> None:
    from multispot.policy.deadline import Pool, stats_from_attempts

    m = Pool.estimate(PoolStats(100 * H, 25 * H, 25, 25))
    assert m is not None and m.up == pytest.approx(H) and m.down == pytest.approx(3 * H)
    assert m.fraction == pytest.approx(0.25)
    assert Pool.estimate(PoolStats(H, H, 1, 0)) == Pool(float("inf"), 0.0)  # never down: greedy
    assert Pool.estimate(PoolStats(0.0, 0.0, 0, 0)) is None
    # live: the job's own attempts: 2h up then preempted, back 1h later, still running: one drop
    # and one return seen (the running stretch has not ended: censored)
    attempts = [
        Attempt("j", 1, A, JobState.PREEMPTED, started=0.0, ended=2 * H),
        Attempt("j", 2, A, JobState.RUNNING, started=3 * H),
    ]
    s = stats_from_attempts(attempts, now=4 * H)[A]
    assert (s.seconds, s.available, s.runs, s.gaps) == (4 * H, 3 * H, 1, 1)


@pytest.mark.parametrize("name", policy.names())
def test_max_price_and_budget_are_respected(name: str) -> None:
    capped = job(limits={"deadline": 20 * H, "max_price": 0.9})
    d = policy.get(name).decide(ctx(capped, available={A}))
    assert d.placement != A and d.placement != OD  # A costs 1.0/h > 0.9, on-demand too: wait or stop
    poor = job(limits={"deadline": 20 * H, "budget": 5.0})
    d = policy.get(name).decide(ctx(poor, available={A, B}, spent=5.0))
    assert d.placement is None and not d.idle and "budget" in d.reason


def test_each_name_is_one_object_of_the_right_kind() -> None:
    assert policy.names() == (
        "spot",
        "on-demand",
        "fallback",
        "greedy",
        "diversified",
        "uniform-progress",
        "deadline-aware",
    )
    for name in policy.names():
        assert policy.get(name) is policy.get(name)
        assert policy.get(name).name == name and policy.get(name).summary
    assert isinstance(policy.get("spot"), MarketPolicy)
    assert isinstance(policy.get("fallback"), MarketPolicy)
    assert isinstance(policy.get("greedy"), GreedySpot)
    assert isinstance(policy.get("deadline-aware"), DeadlineAware)
    assert isinstance(policy.get("uniform-progress"), UniformProgress)
    with pytest.raises(JobSpecError, match="unknown policy 'nope': use one of spot, on-demand"):
        policy.get("nope")


def test_deadline_passed_stops_as_timed_out() -> None:
    d = GreedySpot().decide(ctx(now=21 * H, available={A}))
    assert d.placement is None and d.final_state is JobState.TIMED_OUT


@pytest.mark.parametrize("name", policy.names())
def test_the_controller_and_the_simulator_ask_the_same_object(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from multispot import api
    from multispot.controller import Controller
    from multispot.simulation import simulate
    from multispot.store import JobStore

    monkeypatch.setenv("MULTISPOT_HOME", str(tmp_path / "home"))
    the_object = policy.get(name)
    asked: list[str] = []

    def spy(c: PolicyContext) -> Decision:
        asked.append("simulator" if c.available is not None else "controller")
        return Decision(None, "stopped by the test")

    monkeypatch.setattr(the_object, "decide", spy)
    spec = job(spot={"policy": name, "work": "1h"}, limits={"deadline": "2h"})
    store = JobStore(tmp_path / "jobs.sqlite")
    run = api.submit(spec, store=store, start_controller=False)
    Controller(run.id, store).step()
    assert run.status is JobState.FAILED and "stopped by the test" in run.record.message
    trace = tmp_path / "trace.json"
    trace.write_text(json.dumps({"metadata": {"gap_seconds": 600}, "data": [1] * 20}))
    simulate(spec, [str(trace)], policies=[name], optimum=False)
    assert asked == ["controller", "simulator"]


def test_deadline_aware_starts_on_the_pool_cheapest_per_useful_hour() -> None:
    # B is 20 % cheaper but its stretches (6 min) barely outlast a restart (5 min): an hour of
    # progress there costs 0.8·e^(5/6) ≈ 1.84, on A (10-hour stretches) about 1.0
    da = DeadlineAware()
    c = replace(ctx(available={A, B}), stats={A: seen(0.9, 10 * H), B: seen(0.5, 0.1 * H)})
    assert where(GreedySpot().decide(c)) == "b"
    assert where(da.decide(c)) == "a"
    assert da.per_useful_hour(c, B) == pytest.approx(0.8 * math.exp(300 / (0.1 * H)), rel=0.01)
    # the same pools with equal stretches: the cheaper one
    even = replace(c, stats={A: seen(0.9, 10 * H), B: seen(0.9, 10 * H)})
    assert where(da.decide(even)) == "b"


def test_several_pools_as_one_keep_the_running_pools_stretch() -> None:
    from multispot.policy.deadline import _Chain

    # some pool up for hours, but the attempt runs on a pool whose stretches last 10 min: it
    # survives a 5-min unit with e^(-1/2), not with the joint pool's e^(-1/24)
    da = DeadlineAware()
    c = replace(ctx(current=B, available={B}), stats={B: seen(0.5, 600.0)}, any_stats=seen(0.9, 2 * H))
    model = da.model(c)
    assert model is not None and model.run == pytest.approx(600.0, rel=0.01)
    chain = _Chain.of(model.up / 300, model.down / 300, model.run / 300)
    assert chain.survive == pytest.approx(math.exp(-0.5), rel=0.02)
    assert chain.stay_up > chain.survive  # another pool is likely up when it drops


def test_a_running_attempt_survives_a_unit_only_without_a_drop_in_it() -> None:
    from multispot.policy.deadline import _Chain

    # stretches of 10/3 units, gaps of 10/9 (a=0.75 at 10-min stretches, 3-min units): the pool
    # is up again at the unit's end with ~0.83, but an attempt outlives the unit only with e^(-0.3)
    c = _Chain.of(10 / 3, 10 / 9)
    assert c.survive == pytest.approx(math.exp(-0.3))
    assert c.stay_up > c.survive + 0.05
    # the attempt's expected share of the unit splits into survived and dropped parts
    assert c.used == pytest.approx(c.survive + (1 - c.survive) * c.ran)
    assert c.stay_up == pytest.approx(c.survive + (1 - c.survive) * c.back)
    assert c.used == pytest.approx((10 / 3) * (1 - math.exp(-0.3)))
    # the chain after a fraction of a unit tends to the long-run fraction from either state
    assert c.after(0.0, 1) == pytest.approx(1.0) and c.after(0.0, 0) == pytest.approx(0.0)
    assert c.after(1e6, 1) == pytest.approx(0.75) and c.after(1e6, 0) == pytest.approx(0.75)


@pytest.mark.parametrize("key", [(10 / 3, 10 / 9, 10 / 3), (20.0, 2.2, 5.0), (1.2, 1.2, 1.2)])
def test_the_solved_programme_is_the_least_of_its_actions(key: tuple[float, float, float]) -> None:
    """``_solve`` shares vectors between states for speed; each state's value must still be the
    least of ``_action_values`` (the definition ``_State.actions`` decides with)."""
    import numpy as np

    from multispot.policy.deadline import _action_values, _solve

    values, chain = _solve(key, 60, 30, 0.05, 0.15)
    for steps in range(1, 61):
        for mode, up in ((0, 0), (0, 1), (1, 1), (2, 0), (2, 1)):
            choices = _action_values(values[steps - 1], chain, mode, up, 0.05, 0.15)
            least = np.minimum.reduce(list(choices.values()))
            least[0] = 0.0
            assert np.allclose(values[steps, mode, up], least, rtol=1e-12, atol=1e-12)
