"""Each recovery policy on hand-made situations where the right decision is known."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from multispot import policy
from multispot.errors import JobSpecError
from multispot.job import Job
from multispot.policy import Decision, PolicyContext
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


def test_deadline_aware_waits_above_its_reserve_and_fills_gaps_below_it() -> None:
    da = DeadlineAware(keep=0.2)
    assert where(da.decide(ctx(available=set()))) == "idle"  # 10h slack, reserve ~2h
    # 2h into the job with nothing done: slack 8h, still above the reserve
    assert where(da.decide(ctx(now=2 * H, available=set()))) == "idle"
    # 9h in, nothing done: slack 1h < reserve (0.2 * 10h * 11/20 = 1.1h): on-demand in the gap
    assert where(da.decide(ctx(now=9 * H, available=set()))) == "od"
    # and back to spot when it has capacity (the stretch pays back two restarts)
    assert where(da.decide(ctx(now=9 * H, current=OD, available={A}))) == "a"


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
