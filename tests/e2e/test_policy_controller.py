"""The controller driving real local attempts under the deadline-oriented policies.

Live, the controller asks the job's policy between attempts (``PolicyContext`` with the real
clock, the job's restart overhead, 180 s by default, and a step of 1 s). A short worker job
claims a longer ``spot.work`` so that the deadline arithmetic (slack = time left - work left, in seconds) is
what decides, while the job itself ends in seconds:

- slack below the restart overhead: the deadline forces on-demand from the first attempt;
- slack just above two restarts: spot first, and once a preemption has eaten into it (the pool
  that preempted is skipped for ``RETRY_AFTER``), below the policy's reserve: on-demand;
- plenty of slack: after a preemption the policy *idles* (waits for spot) instead of ending the
  job or paying for on-demand, and returns to spot when the pool may be tried again.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest

from multispot import api
from multispot.controller import Controller
from multispot.job import Job
from multispot.policy import deadline as deadline_policies
from multispot.status import JobState
from multispot.store import JobStore
from multispot.testing.worker import expected_sum

STEPS = 40  # 40 × 0.05 s of real work
CLAIMED = 200  # seconds of spot.work the policy is told


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> JobStore:
    monkeypatch.setenv("MULTISPOT_HOME", str(tmp_path / "home"))
    return JobStore(tmp_path / "jobs.sqlite")


def job_with_slack(
    tmp_path: Path,
    slack: float,
    preemptions: str,
    policy: str = "deadline-aware",
    overhead: float | None = None,
) -> Job:
    spot: dict[str, Any] = {"policy": policy, "work": f"{CLAIMED}s", "max_attempts": 6}
    if overhead is not None:
        spot["restart_overhead"] = f"{overhead:g}s"
    return Job.validate_data(
        {
            "name": "policy",
            "command": f"python -m multispot.testing.worker --steps {STEPS} --step-seconds 0.05",
            "output_uri": str(tmp_path / "out"),
            "provider_options": {"local": {"time_scale": 0.02, "preemptions": preemptions}},
            "spot": spot,
            "limits": {"deadline": f"{CLAIMED + slack:g}s"},
        },
        base_dir=tmp_path,
    )


def drive(job: Job, store: JobStore) -> api.Run:
    run = api.submit(job, store=store, start_controller=False)
    Controller(run.id, store, poll_interval=0.05).run()
    return run


def result(tmp_path: Path) -> dict[str, Any]:
    return dict(json.loads((tmp_path / "out" / "result.json").read_text()))


def markets(run: api.Run) -> list[tuple[str, JobState]]:
    return [(a.placement.market, a.state) for a in run.attempts]


@pytest.mark.parametrize("policy", ["greedy", "deadline-aware"])
def test_the_deadline_forces_on_demand_from_the_start(tmp_path: Path, store: JobStore, policy: str) -> None:
    # slack 100 s < the 180 s restart overhead: starting spot could miss the deadline
    run = drive(job_with_slack(tmp_path, 100, "every=0.5s,max=5", policy), store)
    assert run.status is JobState.SUCCEEDED
    assert markets(run) == [("on-demand", JobState.SUCCEEDED)]  # on-demand is never reclaimed
    assert result(tmp_path)["sum"] == expected_sum(STEPS)


@pytest.mark.slow
def test_deadline_aware_falls_back_when_the_slack_reaches_the_reserve(
    tmp_path: Path, store: JobStore
) -> None:
    # 45 s of slack with a 20 s restart overhead: enough to start spot (2 restarts + a step =
    # 41 s), but after a preemption the slack no longer allows another spot start: on-demand (the
    # safety net). The same 4 s margin as with the default 180 s overhead (365 s of slack), whose
    # slack took three minutes of real time to run down to the reserve.
    overhead = 20.0
    run = drive(job_with_slack(tmp_path, 2 * overhead + 5, "every=0.8s,max=5", overhead=overhead), store)
    assert run.status is JobState.SUCCEEDED
    assert markets(run) == [("spot", JobState.PREEMPTED), ("on-demand", JobState.SUCCEEDED)]
    switches = [e.message for _, e in run.events() if e.kind == "fallback"]
    assert len(switches) == 1 and "switching to on-demand" in switches[0] and "deadline" in switches[0]
    assert result(tmp_path)["sum"] == expected_sum(STEPS)


@pytest.mark.slow
def test_an_idle_decision_waits_for_spot_instead_of_ending_the_job(
    tmp_path: Path, store: JobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    retry = 1.5
    monkeypatch.setattr(deadline_policies, "RETRY_AFTER", retry)  # live skip of a pool that preempted
    seen: list[tuple[bool, str]] = []
    decide = deadline_policies.DeadlineAware.decide

    def spy(self: deadline_policies.DeadlineAware, ctx: Any) -> Any:
        decision = decide(self, ctx)
        seen.append((decision.idle, decision.reason))
        return decision

    monkeypatch.setattr(deadline_policies.DeadlineAware, "decide", spy)
    # an hour of slack: after each preemption, waiting for spot is cheaper than on-demand
    run = drive(job_with_slack(tmp_path, 3600, "every=0.8s,max=2"), store)
    assert run.status is JobState.SUCCEEDED
    assert markets(run) == [
        ("spot", JobState.PREEMPTED),
        ("spot", JobState.PREEMPTED),
        ("spot", JobState.SUCCEEDED),
    ]
    idle = [reason for was_idle, reason in seen if was_idle]
    assert idle and all("waiting for spot" in reason for reason in idle)
    attempts = run.attempts
    for before, after in itertools.pairwise(attempts):
        assert before.ended is not None and after.submitted is not None
        assert after.submitted - before.ended >= retry * 0.9  # it waited; it did not retry at once
    assert not [e for _, e in run.events() if e.kind == "fallback"]  # never paid for on-demand
    assert result(tmp_path)["sum"] == expected_sum(STEPS)


@pytest.mark.slow
def test_the_controller_moves_a_waiting_spot_attempt_to_on_demand_when_the_slack_runs_out(
    tmp_path: Path, store: JobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Mid-attempt, as the simulator assumes: spot is preempted (a trace), the next spot attempt
    waits for capacity that does not come back, and once the slack runs out the controller asks
    the policy, ends the waiting attempt and starts on-demand from the checkpoint saved on the
    notice. Nothing is lost: the result is the uninterrupted one."""
    from multispot import controller

    monkeypatch.setattr(deadline_policies, "RETRY_AFTER", 0.2)  # spot may be retried at once
    monkeypatch.setattr(controller, "CONSULT_EVERY", 1.0)
    trace = tmp_path / "trace.json"  # 3 s ticks at time_scale 0.05: up 9 s, then down for 2 min
    trace.write_text(json.dumps({"metadata": {"gap_seconds": 60}, "data": [1] * 3 + [0] * 40 + [1] * 10}))
    steps = 120
    job = Job.validate_data(
        {
            "name": "switch",
            "command": f"python -m multispot.testing.worker --steps {steps} --step-seconds 0.1 --save-every 5",
            "output_uri": str(tmp_path / "out"),
            "provider_options": {
                "local": {
                    "time_scale": 0.05,
                    "emulate": "gcp",
                    "preemptions": f"trace={trace}",
                    "price_per_hour": {"spot": 1.0, "on-demand": 3.0},
                }
            },
            "spot": {"policy": "greedy", "work": "30s", "restart_overhead": "2s", "max_attempts": 6},
            "limits": {"deadline": "50s"},
        },
        base_dir=tmp_path,
    )
    run = drive(job, store)
    assert run.status is JobState.SUCCEEDED, run.record.message
    assert markets(run) == [
        ("spot", JobState.PREEMPTED),
        ("spot", JobState.SWITCHED),
        ("on-demand", JobState.SUCCEEDED),
    ]
    switches = [(e.attempt, e.message) for _, e in run.events() if e.kind == "switch"]
    assert len(switches) == 1 and switches[0][0] == 2 and "deadline forces on-demand" in switches[0][1]
    resumed = [line for line in run.logs(attempt=3) if "resumed from step" in line]
    assert resumed and int(resumed[0].split()[-1]) > 0  # the on-demand attempt kept spot's progress
    assert result(tmp_path)["sum"] == expected_sum(steps)
