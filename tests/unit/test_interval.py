"""Checkpoint-interval advice: Young/Daly, trace estimates, and where dry-run gets its inputs."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from multispot import api
from multispot.checkpoint import CheckpointStore
from multispot.job import Job
from multispot.local.preemptions import PreemptionSpec
from multispot.policy.interval import advise, daly, expected_overhead, mtbp_from_trace, young
from multispot.status import JobState
from multispot.store import JobRecord, JobStore


def exact_waste(interval: float, save: float, mtbp: float) -> float:
    """Expected fraction of time wasted with exponential preemptions (Daly's model, restart cost 0)."""
    return mtbp * (math.exp((interval + save) / mtbp) - 1) / interval - 1


@pytest.mark.parametrize(("save", "mtbp"), [(10.0, 3600.0), (60.0, 1800.0), (1.0, 600.0), (120.0, 7200.0)])
def test_daly_is_close_to_the_numerical_optimum(save: float, mtbp: float) -> None:
    grid = [save * 0.5 + i * 0.25 for i in range(1, 40_000)]
    best = min(grid, key=lambda t: exact_waste(t, save, mtbp))
    assert abs(daly(save, mtbp) - best) / best < 0.03
    assert young(save, mtbp) == pytest.approx(math.sqrt(2 * save * mtbp))
    assert exact_waste(daly(save, mtbp), save, mtbp) <= exact_waste(young(save, mtbp), save, mtbp) + 1e-9


def test_daly_caps_at_mtbp_when_saves_are_too_slow() -> None:
    assert daly(500.0, 200.0) == 200.0


def test_advice_reports_overhead_and_sources() -> None:
    advice = advise(30.0, 3600.0, "measured", "trace")
    assert advice.interval == pytest.approx(daly(30.0, 3600.0))
    assert advice.overhead == pytest.approx(expected_overhead(advice.interval, 30.0, 3600.0))
    assert "measured" in str(advice) and "trace" in str(advice)
    with pytest.raises(ValueError):
        advise(0.0, 10.0)


def test_mtbp_from_trace_is_the_mean_up_run() -> None:
    assert mtbp_from_trace([1, 1, 0, 1, 1, 1, 1, 0, 0, 1, 1, 1], 60.0) == pytest.approx(3 * 60.0)
    assert mtbp_from_trace([1, 1, 1], 60.0) is None  # never preempted: no estimate
    assert mtbp_from_trace([0, 0], 60.0) is None


def test_local_spec_implies_a_mean_time_between_preemptions(tmp_path: Path) -> None:
    assert PreemptionSpec("every=30s").mean_time_between() == 30.0
    assert PreemptionSpec("rate=6/h").mean_time_between() == pytest.approx(600.0)
    assert PreemptionSpec("at=10s,save:2,20s!").mean_time_between() == 15.0
    assert PreemptionSpec("none").mean_time_between() is None
    trace = tmp_path / "t.json"
    trace.write_text('{"metadata": {"gap_seconds": 100}, "data": [1, 1, 0, 1, 1, 1, 1, 0]}')
    assert PreemptionSpec(f"trace={trace}", time_scale=0.5).mean_time_between() == pytest.approx(150.0)


def test_dry_run_measures_the_save_time_of_the_last_run(tmp_path: Path) -> None:
    store = JobStore(tmp_path / "jobs.sqlite")
    job = Job.validate_data(
        {
            "name": "adv",
            "command": "python -c pass",
            "provider_options": {"local": {"preemptions": "every=10m"}},
        }
    )
    assert "no measured save time" in str(api.interval_advice(job, store=store))
    uri = (tmp_path / "ckpt").as_uri()
    store.create_job(JobRecord("adv-1", "adv", job.to_data(), "local", JobState.SUCCEEDED, uri, uri))
    with CheckpointStore(uri).writer(40) as w:
        w.write_bytes("a", b"x" * 1000)
    advice = api.interval_advice(job, store=store)
    assert not isinstance(advice, str)
    assert advice.mtbp == 600.0 and "adv-1" in advice.save_source and advice.save_seconds > 0
    assert "no expected time" in str(
        api.interval_advice(job.model_copy(update={"provider_options": {}}), store=store)
    )
