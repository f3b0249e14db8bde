"""The simulator's accounting (cost, progress, restart overhead, lost work), checked by hand."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from multispot import policy
from multispot.job import Job
from multispot.policy import Decision, PolicyContext
from multispot.simulation import Trace, build_scenario, run_policy, simulate
from multispot.status import Placement

JOB = Job.validate_data({"name": "sim", "command": "python -c pass"})
SPOT = Placement("local", "spot", "a", "x", price_per_hour=0.6)
OD = Placement("local", "on-demand", "a", "x", price_per_hour=3.0)


def trace(tmp_path: Path, data: list[int], gap: float = 60.0, name: str = "t") -> Path:
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps({"metadata": {"gap_seconds": gap}, "data": data}))
    return path


class Always:
    """Asks for one placement every tick (spot without capacity means an idle tick)."""

    name = "always"

    def __init__(self, placement: Placement) -> None:
        self.placement = placement

    def decide(self, ctx: PolicyContext) -> Decision:
        return Decision(self.placement, "always")


def test_trace_loads_and_resamples(tmp_path: Path) -> None:
    t = Trace.load(trace(tmp_path, [0, 2, 1, 0], gap=120))
    assert t.gap == 120 and t.data == (0, 2, 1, 0)
    assert t.resample(60) == [False, False, True, True, True, True, False, False]
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(ValueError, match="not a spot trace"):
        Trace.load(tmp_path / "bad.json")


def test_spot_accounting_with_preemption_saved_on_notice(tmp_path: Path) -> None:
    # 1-minute ticks; spot up 4, down 2, up 6. Work 5 min, restart 2 min, deadline 12 min.
    t = Trace.load(trace(tmp_path, [1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1]))
    sc, _ = build_scenario(JOB, [t], 12 * 60, 5 * 60, restart_overhead=120, placements=[SPOT, OD])
    out = run_policy(sc, Always(SPOT), JOB)
    # ticks 0-1 restart, 2-3 work (2), 4-5 down, 6-7 restart, 8-10 work (3): done at 11 min.
    assert out.finish_hours == pytest.approx(11 / 60)
    assert out.deadline_met and out.preemptions == 1 and out.lost_hours == 0
    assert out.overhead_hours == pytest.approx(4 / 60)
    assert out.spot_hours == pytest.approx(9 / 60) and out.on_demand_hours == 0
    assert out.cost == pytest.approx(9 * 0.6 / 60)
    assert out.min_slack_hours == pytest.approx(1 / 60)  # deadline risk: one minute to spare at 8-10


def test_preemption_without_notice_save_loses_work_since_the_checkpoint(tmp_path: Path) -> None:
    t = Trace.load(trace(tmp_path, [1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]))
    sc, _ = build_scenario(
        JOB,
        [t],
        16 * 60,
        5 * 60,
        restart_overhead=60,
        checkpoint_interval=180,
        save_on_notice=False,
        placements=[SPOT, OD],
    )
    out = run_policy(sc, Always(SPOT), JOB)
    # tick 0 restart, 1-4 work (4 > period 3: checkpoint at 3), preempted at 5: back to 3 (1 lost);
    # 6 restart, 7-8 work: 5 done at 9 min.
    assert out.lost_hours == pytest.approx(1 / 60)
    assert out.finish_hours == pytest.approx(9 / 60)


def test_unfinished_by_the_deadline_is_finished_on_demand_and_reported_missed(tmp_path: Path) -> None:
    t = Trace.load(trace(tmp_path, [0] * 30))
    sc, _ = build_scenario(JOB, [t], 10 * 60, 5 * 60, restart_overhead=60, placements=[SPOT, OD])
    out = run_policy(sc, Always(SPOT), JOB)
    # never any spot: at the deadline (10) on-demand starts: restart at 10, work 11-15.
    assert not out.deadline_met
    assert out.finish_hours == pytest.approx(16 / 60)
    assert out.cost == pytest.approx(6 * 3.0 / 60)
    assert out.min_slack_hours == pytest.approx(-6 / 60)  # finished 6 minutes late


def test_price_times_count(tmp_path: Path) -> None:
    t = Trace.load(trace(tmp_path, [1] * 10))
    four = Placement("local", "spot", "a", "x", count=4, price_per_hour=0.6)
    sc, _ = build_scenario(JOB, [t], 10 * 60, 3 * 60, restart_overhead=0, placements=[four, OD])
    assert run_policy(sc, Always(four), JOB).cost == pytest.approx(3 * 4 * 0.6 / 60)


def test_simulate_reports_every_policy_against_the_optimum(tmp_path: Path) -> None:
    data = ([1] * 40 + [0] * 25) * 6
    report = simulate(
        JOB, [trace(tmp_path, data)], "5h", work="3h", restart_overhead="2m", placements=[SPOT, OD]
    )
    names = [o.policy for o in report.outcomes]
    assert names == list(policy.names())  # every registered name, the controller's objects
    assert report.optimum_cost is not None
    on_demand = report.outcomes[names.index("on-demand")]
    assert on_demand.cost == pytest.approx((3 * 60 + 2) * 3.0 / 60)  # work + one restart
    for o in report.outcomes:
        assert o.deadline_met, o.policy
        assert o.cost >= report.optimum_cost - 1e-9, o.policy  # nobody beats the omniscient optimum
        assert o.ratio_to_optimum == pytest.approx(o.cost / report.optimum_cost)
    data_out = report.to_dict()
    assert set(data_out["policies"]) == set(names)


def test_the_deadline_must_fit_in_the_trace(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="does not fit"):
        simulate(JOB, [trace(tmp_path, [1] * 10)], "1h", work="10m", placements=[SPOT, OD])


def test_work_defaults_to_two_thirds_of_the_deadline_and_says_so(tmp_path: Path) -> None:
    report = simulate(JOB, [trace(tmp_path, [1] * 200)], "90m", placements=[SPOT, OD], policies=["greedy"])
    assert report.work_hours == pytest.approx(1.0)
    assert "assumed" in report.work_source
