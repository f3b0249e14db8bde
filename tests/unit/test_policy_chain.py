"""deadline-aware's pool model at the ticks the pool is seen at (issue 16, third round)."""

from __future__ import annotations

import math

import pytest

from multispot.job import Job
from multispot.policy import PoolStats, get
from multispot.policy.deadline import DeadlineAware, Pool, _Chain, ended
from multispot.simulation import Trace, build_scenario, run_policy


def test_a_chain_of_one_tick_per_unit_is_the_chain_of_the_ticks() -> None:
    # stretches of 4 ticks and gaps of 2 on average, a unit of one tick (a 10-minute trace,
    # a 3-minute restart): a stretch ends after a tick with 1/4, a gap with 1/2
    c = _Chain.of(4.0, 2.0, ticks=1.0)
    assert c.survive == pytest.approx(0.75)
    assert c.stay_up == pytest.approx(0.75)  # one tick: up again only if it did not drop
    assert c.come_up == pytest.approx(0.5)
    assert c.used == pytest.approx(1.0)  # the tick it was up in is run (and billed) whole
    assert c.f == pytest.approx(2 / 3)
    # the continuous chain with the same means holds the gap longer and bills a part tick
    old = _Chain.of(4.0, 2.0)
    assert old.come_up < c.come_up - 0.1 and old.used < 0.9
    # two ticks to a unit (the same pool: 2 and 1 units) are the tick chain squared
    two = _Chain.of(2.0, 1.0, ticks=2.0)
    assert two.survive == pytest.approx(0.75**2)
    assert two.stay_up == pytest.approx(0.75 * 0.75 + 0.25 * 0.5)
    assert two.after(0.5, 0) == pytest.approx(0.5)  # half a unit is one tick


def test_many_ticks_per_unit_tend_to_the_continuous_chain() -> None:
    fine, cont = _Chain.of(10 / 3, 10 / 9, ticks=1e5), _Chain.of(10 / 3, 10 / 9)
    for name in ("survive", "stay_up", "come_up", "used", "back", "ran"):
        assert getattr(fine, name) == pytest.approx(getattr(cont, name), rel=1e-3)
    assert fine.after(0.3, 1) == pytest.approx(cont.after(0.3, 1), rel=1e-3)


def test_the_stretch_under_way_is_censored() -> None:
    s = PoolStats(10 * 600.0, 4 * 600.0, 2, 2)  # stretches begun: the one under way too
    assert ended(s, True) == PoolStats(10 * 600.0, 4 * 600.0, 1, 2)
    assert ended(s, False) == PoolStats(10 * 600.0, 4 * 600.0, 2, 1)
    assert ended(s, None) == s  # unknown: as given
    # a gap of 3 ticks, then a stretch of one tick still under way: no stretch has ended, so
    # its mean is not "one tick" (the rule of succession: 3 ticks, not 1)
    first = ended(PoolStats(4 * 600.0, 600.0, 1, 1), True)
    model = Pool.estimate(first, 600.0)
    assert model is not None
    assert model.up == pytest.approx(3 * 600.0)
    assert model.down == pytest.approx(2.5 * 600.0)
    # with hundreds seen it is the maximum-likelihood mean
    many = Pool.estimate(PoolStats(3000 * 600.0, 2000 * 600.0, 400, 400), 600.0)
    assert many is not None and many.up == pytest.approx(5 * 600.0, rel=0.01)
    # without a tick, as before: time over the ends seen, at least one
    plain = Pool.estimate(first)
    assert plain is not None and plain.up == pytest.approx(600.0) and plain.down == pytest.approx(1800.0)


def test_a_young_gap_early_in_the_job_is_waited_out_as_greedy_does() -> None:
    """A job that starts with the pool (nothing seen before): a 3-tick gap, a 4-tick stretch,
    then a gap. The continuous chain on the raw counts (the gap under way counted as one that
    ended, 2.5 ticks) bought on-demand two ticks into it and paid $5.20; the pool is back a tick
    later, and waiting, as greedy does, costs $3.98."""
    job = Job.validate_data({"name": "p", "command": "python -c pass"})
    pattern = "000111100001111111111111111111111111101111110110111000110010" + "1" * 60
    trace = Trace("synthetic", 600.0, tuple(int(c) for c in pattern))
    sc, _ = build_scenario(
        job,
        [trace],
        6 * 3600.0,
        4 * 3600.0,
        restart_overhead=180.0,
        spot_prices=[0.918],
        on_demand_price=3.06,
    )
    greedy = run_policy(sc, get("greedy"), job)
    da = run_policy(sc, DeadlineAware(), job)
    assert da.deadline_met and da.on_demand_hours == 0.0
    assert da.cost == pytest.approx(greedy.cost)
    assert math.isclose(greedy.cost, 3.978, rel_tol=1e-6)
