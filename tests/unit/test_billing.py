"""Usage → CostReport: actual cost, the on-demand counterfactual minus lost work, and savings."""

from __future__ import annotations

import json

import pytest

from multispot.billing import CostReport, cost_report
from multispot.status import Attempt, JobState, Placement, Usage

T0 = 1_700_000_000.0


def attempt(
    n: int,
    state: JobState,
    billable: float,
    price: float | None,
    count: int = 1,
    started: float | None = T0,
    ended: float | None = None,
    market: str = "spot",
    instance: str = "p3.2xlarge",
) -> Attempt:
    return Attempt(
        job_id="job-1",
        n=n,
        placement=Placement(
            provider="sagemaker",
            market=market,
            region="us-east-1",
            instance_type=instance,
            count=count,
            price_per_hour=price,
        ),
        state=state,
        started=started,
        ended=ended if ended is not None else (None if started is None else started + billable),
        usage=Usage(
            runtime_seconds=billable,
            billable_seconds=billable,
            instance_type=instance,
            count=count,
            market=market,
        ),
    )


def test_report_with_prices() -> None:
    attempts = [
        # an hour on spot at $1/h, preempted 10 minutes after its last checkpoint
        attempt(1, JobState.PREEMPTED, 3600, 1.0),
        # 30 minutes on spot, finished
        attempt(2, JobState.SUCCEEDED, 1800, 1.0, started=T0 + 4000),
    ]
    report = cost_report("job-1", attempts, on_demand_price_per_hour=3.0, checkpoint_times={1: T0 + 3000})
    first, second = report.lines
    assert (first.lost_seconds, second.lost_seconds) == (600.0, 0.0)
    assert first.cost == pytest.approx(1.0)
    assert second.cost == pytest.approx(0.5)
    assert report.actual == pytest.approx(1.5)
    assert report.billable_seconds == 5400
    assert report.lost_seconds == 600
    # useful work: 5400 - 600 s = 80 minutes at $3/h
    assert report.on_demand == pytest.approx(4.0)
    assert report.savings == pytest.approx(2.5)
    assert report.savings_fraction == pytest.approx(0.625)
    assert report.notes == []
    assert (first.outcome, second.outcome) == ("PREEMPTED", "SUCCEEDED")
    assert first.market == "spot" and first.instance_type == "p3.2xlarge" and first.provider == "sagemaker"


def test_instance_count_multiplies_cost_and_time() -> None:
    attempts = [
        attempt(1, JobState.PREEMPTED, 1800, 2.0, count=4),  # no checkpoint: all 30 min lost
        attempt(2, JobState.SUCCEEDED, 3600, 2.0, count=4, started=T0 + 2000),
    ]
    report = cost_report("job-1", attempts, on_demand_price_per_hour=5.0)
    assert report.lines[0].lost_seconds == 1800
    assert report.lines[0].instance_seconds == 4 * 1800
    assert report.billable_seconds == 4 * 5400
    assert report.lost_seconds == 4 * 1800
    assert report.actual == pytest.approx(4 * 1.5 * 2.0)
    assert report.on_demand == pytest.approx(4 * 1.0 * 5.0)
    assert report.savings == pytest.approx(20.0 - 12.0)
    assert report.savings_fraction == pytest.approx(0.4)


def test_lost_work_is_capped_by_what_was_billed() -> None:
    # ran 2 h of wall time but the provider billed 1 h (e.g. waiting was free)
    a = attempt(1, JobState.PREEMPTED, 3600, 1.0, ended=T0 + 7200)
    report = cost_report("job-1", [a], on_demand_price_per_hour=3.0)
    assert report.lines[0].lost_seconds == 3600
    assert report.on_demand == 0.0
    assert report.savings == pytest.approx(-1.0)
    assert report.savings_fraction is None  # no useful work: no fraction to show


def test_a_checkpoint_from_before_the_attempt_started_does_not_count() -> None:
    a = attempt(1, JobState.PREEMPTED, 600, 1.0)
    report = cost_report("job-1", [a], 3.0, checkpoint_times={1: T0 - 10_000})
    assert report.lines[0].lost_seconds == 600


def test_only_preempted_attempts_lose_work() -> None:
    attempts = [
        attempt(1, JobState.FAILED, 100, 1.0),
        attempt(2, JobState.CANCELLED, 100, 1.0, started=T0 + 200),
        attempt(3, JobState.RUNNING, 100, 1.0, started=T0 + 400, ended=None),
    ]
    attempts[2].ended = None
    report = cost_report("job-1", attempts, 3.0)
    assert [line.lost_seconds for line in report.lines] == [0.0, 0.0, 0.0]
    assert report.lines[2].outcome is None
    assert "running" in report.rows()[2]


def test_an_attempt_without_usage_costs_nothing_yet() -> None:
    a = Attempt("job-1", 1, Placement(provider="local", market="spot", price_per_hour=1.0, count=2))
    report = cost_report("job-1", [a], 1.0)
    [line] = report.lines
    assert (line.billable_seconds, line.cost, line.count) == (0.0, 0.0, 2)
    assert report.actual == 0.0
    assert report.savings == 0.0


def test_unknown_instance_price() -> None:
    attempts = [attempt(1, JobState.SUCCEEDED, 3600, None), attempt(2, JobState.SUCCEEDED, 3600, 1.0)]
    report = cost_report("job-1", attempts, on_demand_price_per_hour=3.0)
    assert report.lines[0].cost is None
    assert report.actual is None
    assert report.on_demand == pytest.approx(6.0)
    assert report.savings is None
    assert report.savings_fraction is None
    assert report.notes and "unknown" in report.notes[0]
    assert "n/a" in report.summary()
    assert report.to_dict()["actual_usd"] is None


def test_unknown_on_demand_price() -> None:
    report = cost_report("job-1", [attempt(1, JobState.SUCCEEDED, 3600, 1.0)], on_demand_price_per_hour=None)
    assert report.actual == pytest.approx(1.0)
    assert report.on_demand is None
    assert report.savings is None
    assert report.savings_fraction is None
    assert report.notes


def test_report_renders() -> None:
    attempts = [
        attempt(1, JobState.PREEMPTED, 3600, 1.0),
        attempt(2, JobState.SUCCEEDED, 1800, 1.0, started=T0 + 4000),
    ]
    report = cost_report("job-<1>", attempts, 3.0, checkpoint_times={1: T0 + 3000})
    data = report.to_dict()
    json.dumps(data)  # JSON-safe for --output json
    assert data["savings_usd"] == pytest.approx(2.5)
    assert data["lost_instance_seconds"] == 600
    assert [a["attempt"] for a in data["attempts"]] == [1, 2]
    assert "saved" in report.summary() and "62%" in report.summary()
    assert "job-<1>" in repr(report)
    html = report._repr_html_()
    assert "job-&lt;1&gt;" in html and "job-<1>" not in html
    assert html.count("<tr>") == 3
    rows = report.rows()
    assert len(rows) == 2 and all(len(r) == len(CostReport.HEADERS) for r in rows)
    assert rows[0][-1] == "$1.0000"
