"""Sweep and array sections, reports and shard progress: the pure parts, no process started."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from multispot.errors import JobSpecError
from multispot.job import Job
from multispot.runtime import shards
from multispot.runtime.env import detect
from multispot.runtime.report import last_value, read_reports, report
from multispot.sweep.driver import member_job
from multispot.sweep.spec import ArraySpec, SweepSpec, load, load_text

JOB = "name: t\ncommand: python x.py\n"


def test_sweep_section_loads() -> None:
    g = load_text(
        JOB
        + """sweep:
  parameters:
    lr: {loguniform: [0.001, 0.1]}
    layers: {int: [1, 4]}
    opt: {choice: [sgd, adam]}
  objective: {metric: loss, goal: maximise}
  trials: 5
"""
    )
    assert g.kind == "sweep" and g.job.name == "t"
    assert isinstance(g.spec, SweepSpec)
    assert g.spec.objective.goal == "maximize"
    assert g.spec.parameters["layers"].grid() == [1, 2, 3, 4]


def test_sweep_problems_name_their_field_and_line() -> None:
    with pytest.raises(JobSpecError) as err:
        load_text(
            JOB
            + """sweep:
  parameters:
    lr: {loguniform: [0, 0.1]}
    x: {int: [1, 2], uniform: [1, 2]}
  objective: {metric: loss, goal: up}
  trials: 0
  on_preemption: retry
"""
        )
    found = {(p.path, p.line) for p in err.value.problems}
    assert ("sweep.parameters.lr", 5) in found
    assert ("sweep.parameters.x", 6) in found
    assert ("sweep.objective.goal", 7) in found
    assert ("sweep.trials", 8) in found
    assert ("sweep.on_preemption", 9) in found


def test_grid_needs_discrete_parameters() -> None:
    with pytest.raises(JobSpecError, match=r"parameters\.lr: grid search needs discrete"):
        load_text(
            JOB
            + "sweep:\n  parameters: {lr: {uniform: [0, 1]}}\n  objective: {metric: m}\n  algorithm: grid\n"
        )
    g = load_text(
        JOB
        + "sweep:\n  parameters: {a: {choice: [1, 2]}, b: {int: [0, 2]}}\n"
        + "  objective: {metric: m}\n  algorithm: grid\n  trials: 100\n"
    )
    assert isinstance(g.spec, SweepSpec) and g.spec.planned_trials() == 6


def test_a_file_needs_exactly_one_section_and_job_problems_keep_their_paths(tmp_path: Path) -> None:
    with pytest.raises(JobSpecError, match="no sweep: or array: section"):
        load_text(JOB)
    with pytest.raises(JobSpecError, match="either sweep: or array:"):
        load_text(JOB + "sweep: {}\narray: {count: 2}\n")
    with pytest.raises(JobSpecError) as err:
        load_text("job: {name: t}\narray: {count: 2}\n")
    assert err.value.problems[0].path == "job.command"
    (tmp_path / "job.yaml").write_text(JOB)
    (tmp_path / "a.yaml").write_text("job: job.yaml\narray: {count: 2}\n")
    assert load(tmp_path / "a.yaml").job.name == "t"


def test_array_shards_are_dealt_round_robin() -> None:
    spec = ArraySpec(shards=[f"s{i}" for i in range(7)], count=3)
    assert [spec.shards_of(i) for i in range(3)] == [["s0", "s3", "s6"], ["s1", "s4"], ["s2", "s5"]]
    assert ArraySpec(shards=["a", "b"]).tasks == 2
    with pytest.raises(ValueError, match="at most one per shard"):
        ArraySpec(shards=["a"], count=2)
    with pytest.raises(ValueError, match="listed twice"):
        ArraySpec(shards=["a", "a"])


def test_member_jobs_get_their_own_prefix_parameters_and_task() -> None:
    base = Job.validate_data(
        {
            "name": "x" * 40,
            "command": "python t.py",
            "checkpoint": {"uri": "memory://ck"},
            "output_uri": "memory://o",
        }
    )
    sweep = SweepSpec.model_validate(
        {"parameters": {"lr": {"uniform": [0, 1]}}, "objective": {"metric": "m"}, "on_preemption": "abandon"}
    )
    job = member_job("sweep", base, sweep, base.name, 12, {"lr": 0.5}, 0)
    assert len(job.name) <= 40 and job.name.endswith("-12")
    assert job.checkpoint.uri == "memory://ck/trial-0012" and job.output_uri == "memory://o/trial-0012"
    assert job.hyperparameters == {"lr": 0.5} and job.spot.max_attempts == 1
    again = member_job("sweep", base, sweep, base.name, 12, {"lr": 0.5}, 1)
    assert again.checkpoint.uri == "memory://ck/trial-0012-r1"
    array = ArraySpec(shards=["a", "b", "c"], count=2)
    task = member_job("array", base, array, "arr", 1, {}, 0)
    env = task.resolve_env({})
    assert env["MULTISPOT_TASK_INDEX"] == "1" and env["MULTISPOT_TASK_COUNT"] == "2"
    assert json.loads(env["MULTISPOT_TASK_SHARDS"]) == ["b"]
    assert shards.task(env) == shards.Task(1, 2, ("b",))
    # the stored spec reloads (the controller validates it again)
    assert Job.from_record(task.to_data()).task == task.task


def test_reports_round_trip_and_refuse_bad_metrics(tmp_path: Path) -> None:
    env = detect({"MULTISPOT_CHECKPOINT_URI": tmp_path.as_uri(), "MULTISPOT_ATTEMPT": "2"})
    report(3, env=env, loss=0.5, acc=1)
    report(1, env=env, loss=0.9)
    report(3, env=env, loss=0.4)  # a resumed attempt reports the step again: it replaces it
    (tmp_path / ".multispot" / "reports" / "step-000000000007.json").write_text("{not json")
    reports = read_reports(tmp_path.as_uri())
    assert [(r.step, r.metrics.get("loss")) for r in reports] == [(1, 0.9), (3, 0.4)]
    assert reports[1].attempt == 2
    assert last_value(reports, "loss") == (3, 0.4)
    assert last_value(reports, "nope") is None
    for bad in ({"loss": float("nan")}, {"loss": "x"}, {}):
        with pytest.raises(ValueError):
            report(1, env=env, **bad)
    with pytest.raises(ValueError):
        report(-1, env=env, loss=1.0)


def test_pending_skips_what_an_earlier_attempt_finished(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MULTISPOT_CHECKPOINT_URI", tmp_path.as_uri())
    monkeypatch.delenv("MULTISPOT_CHECKPOINT_DIR", raising=False)
    items = ["a", "b", "c", "d"]
    seen = []
    for item in shards.pending(items):
        seen.append(item)
        if item == "b":
            break  # the loop left during b: b is not done
    assert seen == ["a", "b"]
    with pytest.raises(RuntimeError):
        for item in shards.pending(items):
            seen.append(item)
            raise RuntimeError("c failed")  # an error inside the body: not done either
    assert list(shards.pending(items)) == ["b", "c", "d"]
    assert sorted(shards.Progress(tmp_path.as_uri()).done()) == items
    assert list(shards.pending(items)) == []
