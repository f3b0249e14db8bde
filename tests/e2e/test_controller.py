"""The controller driving real local attempts: fallback, limits, capacity loss, multi-node."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from multispot import api
from multispot.controller import Controller
from multispot.job import Job
from multispot.status import JobState
from multispot.store import JobStore
from multispot.testing.worker import expected_sum


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> JobStore:
    monkeypatch.setenv("MULTISPOT_HOME", str(tmp_path / "home"))
    return JobStore(tmp_path / "jobs.sqlite")


def worker_job(tmp_path: Path, steps: int, local: dict[str, Any], **fields: Any) -> Job:
    data: dict[str, Any] = {
        "name": "ctl",
        "command": f"python -m multispot.testing.worker --steps {steps} --step-seconds 0.05",
        "output_uri": str(tmp_path / "out"),
        "provider_options": {"local": {"time_scale": 0.02, **local}},
        **fields,
    }
    return Job.validate_data(data, base_dir=tmp_path)


def drive(job: Job, store: JobStore) -> api.Run:
    run = api.submit(job, store=store, start_controller=False)
    Controller(run.id, store, poll_interval=0.05).run()
    return run


def result(tmp_path: Path) -> dict[str, Any]:
    return dict(json.loads((tmp_path / "out" / "result.json").read_text()))


@pytest.mark.slow
def test_fallback_to_on_demand_after_preemptions(tmp_path: Path, store: JobStore) -> None:
    job = worker_job(
        tmp_path, 40, {"preemptions": "every=0.8s,max=10"}, spot={"policy": "fallback", "fallback_after": 2}
    )
    run = drive(job, store)
    assert run.status is JobState.SUCCEEDED
    markets = [(a.placement.market, a.state) for a in run.attempts]
    assert markets == [
        ("spot", JobState.PREEMPTED),
        ("spot", JobState.PREEMPTED),
        ("on-demand", JobState.SUCCEEDED),  # on-demand capacity is never reclaimed
    ]
    assert result(tmp_path)["sum"] == expected_sum(40)
    assert any(e.kind == "fallback" for _, e in run.events())


@pytest.mark.slow
def test_gives_up_after_max_attempts(tmp_path: Path, store: JobStore) -> None:
    job = worker_job(tmp_path, 400, {"preemptions": "every=0.5s,max=10"}, spot={"max_attempts": 2})
    run = drive(job, store)
    assert run.status is JobState.FAILED
    assert len(run.attempts) == 2 and "max_attempts" in run.record.message


@pytest.mark.slow
def test_max_runtime_times_out(tmp_path: Path, store: JobStore) -> None:
    job = worker_job(tmp_path, 400, {}, limits={"max_runtime": "1.5s"})
    run = drive(job, store)
    assert run.status is JobState.TIMED_OUT
    assert run.attempts[0].state is JobState.TIMED_OUT


@pytest.mark.slow
def test_no_capacity_from_a_trace_falls_back(tmp_path: Path, store: JobStore) -> None:
    trace = tmp_path / "trace.json"
    trace.write_text(json.dumps({"metadata": {"gap_seconds": 60}, "data": [0] * 50}))
    job = worker_job(
        tmp_path,
        10,
        {"preemptions": f"trace={trace}", "time_scale": 0.01},
        spot={"policy": "fallback"},
        limits={"max_wait": "10m"},
    )
    run = drive(job, store)
    assert run.status is JobState.SUCCEEDED
    assert [(a.placement.market, a.state) for a in run.attempts] == [
        ("spot", JobState.NO_CAPACITY),
        ("on-demand", JobState.SUCCEEDED),
    ]


@pytest.mark.slow
def test_trace_preempts_when_capacity_goes(tmp_path: Path, store: JobStore) -> None:
    trace = tmp_path / "trace.json"
    # capacity for 2 ticks of 100 s (at time_scale 0.01: 2 s), gone for 1 tick, then back for good
    trace.write_text(json.dumps({"metadata": {"gap_seconds": 100}, "data": [1, 1, 0, 1, 1, 1, 1, 1, 1, 1]}))
    job = worker_job(tmp_path, 60, {"preemptions": f"trace={trace}", "time_scale": 0.01})
    run = drive(job, store)
    assert run.status is JobState.SUCCEEDED
    assert [a.state for a in run.attempts] == [JobState.PREEMPTED, JobState.SUCCEEDED]
    assert result(tmp_path)["sum"] == expected_sum(60)


@pytest.mark.slow
def test_multi_node_runs_one_process_per_rank(tmp_path: Path, store: JobStore) -> None:
    script = tmp_path / "ranks.py"
    script.write_text(
        "import json, os, pathlib\n"
        "out = pathlib.Path(os.environ['MULTISPOT_OUTPUT_URI'][len('file://'):])\n"
        "out.mkdir(parents=True, exist_ok=True)\n"
        "keys = ('RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT', 'MULTISPOT_ATTEMPT')\n"
        "(out / f\"rank-{os.environ['RANK']}.json\").write_text(json.dumps({k: os.environ[k] for k in keys}))\n"
    )
    job = Job.validate_data(
        {
            "name": "ranks",
            "command": "python ranks.py",
            "source_dir": ".",
            "resources": {"nodes": 3},
            "output_uri": str(tmp_path / "out"),
        },
        base_dir=tmp_path,
    )
    run = drive(job, store)
    assert run.status is JobState.SUCCEEDED
    ranks = [json.loads((tmp_path / "out" / f"rank-{r}.json").read_text()) for r in range(3)]
    assert [r["RANK"] for r in ranks] == ["0", "1", "2"]
    assert {r["WORLD_SIZE"] for r in ranks} == {"3"} and len({r["MASTER_PORT"] for r in ranks}) == 1


@pytest.mark.slow
def test_cancel_through_the_api(tmp_path: Path, store: JobStore) -> None:
    job = worker_job(tmp_path, 1000, {})
    run = api.submit(job, store=store, start_controller=False)
    controller = Controller(run.id, store, poll_interval=0.05)
    while not (run.attempts and run.attempts[0].state is JobState.RUNNING):
        controller.step()
    run.store.request_cancel(run.id)
    while not controller.step():
        pass
    assert run.status is JobState.CANCELLED and run.attempts[0].state is JobState.CANCELLED


@pytest.mark.slow
@pytest.mark.parametrize("crash", ["after-insert", "inside-submit"])
def test_a_controller_dying_around_submit_neither_loses_nor_duplicates(
    tmp_path: Path, store: JobStore, crash: str
) -> None:
    """A controller dies after writing attempt 1's row, before (or while) the provider starts it:
    the next controller submits it exactly once."""
    from multispot import registry
    from multispot.provider import LaunchContext
    from multispot.status import Attempt

    job = worker_job(tmp_path, 5, {})
    run = api.submit(job, store=store, start_controller=False)
    placement = registry.get("local").placements(job)[0]
    assert store.add_attempt(Attempt(run.id, 1, placement))  # the dead controller's last write
    if crash == "inside-submit":  # the provider had started it, the handle was never recorded
        record = store.get_job(run.id)
        ctx = LaunchContext(run.id, 1, record.checkpoint_uri, record.output_uri, submitted_at=record.created)
        registry.get("local").submit(job, placement, ctx)
    Controller(run.id, store, poll_interval=0.05).run()
    assert run.status is JobState.SUCCEEDED
    assert [a.n for a in run.attempts] == [1]
    assert len(list((tmp_path / "out" / "starts").iterdir())) == 1, "the command started twice"
    assert result(tmp_path)["sum"] == expected_sum(5)
