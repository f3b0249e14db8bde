"""Sweeps and job arrays end to end on the local provider: real jobs, real controllers, injected
preemptions. Each trial is the stdlib-only examples/sweep/trial.py (about a second of work).
Assertions are on states, outcomes and counts, never on how long anything took."""

from __future__ import annotations

import collections
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from multispot import api
from multispot.runtime.checkpointer import resumed_from_step
from multispot.status import JobState
from multispot.store import JobStore

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "sweep"
MULTISPOT = str(Path(sys.executable).with_name("multispot"))


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "home"
    monkeypatch.setenv("MULTISPOT_HOME", str(path))
    return path


def _sweep_file(
    tmp_path: Path, sweep: str, preemptions: str = "every=0.5s,max=1", price: float = 0.069
) -> Path:
    shutil.copy(EXAMPLES / "trial.py", tmp_path / "trial.py")
    path = tmp_path / "sweep.yaml"
    body = f"""\
        name: t
        command: python trial.py
        source_dir: .
        hyperparameters: {{steps: 30}}
        checkpoint: {{every_steps: 4}}
        spot: {{policy: spot, max_attempts: 5}}
        provider_options:
          local:
            time_scale: 0.02
            preemptions: "{preemptions}"
            price_per_hour: {{spot: {price}, on-demand: {price * 3}}}
        sweep:
        """
    path.write_text(textwrap.dedent(body) + textwrap.indent(textwrap.dedent(sweep), "  "))
    return path


def _ended(data: dict) -> bool:
    return all(JobState(m["job_state"]).job_terminal for m in data["members"])


@pytest.mark.slow
def test_cli_sweep_example_resumes_prunes_and_reports_the_best(home: Path) -> None:
    """The issue's check: the example sweep with injected preemptions, from the CLI, as JSON."""
    env = dict(os.environ, MULTISPOT_HOME=str(home))
    done = subprocess.run(
        [MULTISPOT, "sweep", str(EXAMPLES / "sweep.yaml"), "--output", "json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["state"] == "done" and data["ended_all"] and _ended(data)
    assert len(data["members"]) == data["planned"] == 6
    assert data["best"] is not None and data["best"]["outcome"] == "succeeded"
    succeeded = [m for m in data["members"] if m["outcome"] == "succeeded"]
    assert data["best"]["value"] == min(m["value"] for m in succeeded)
    assert data["cost"]["actual"] <= data["cost"]["budget"]
    # every trial lost its capacity once; the ones that went on resumed from their checkpoint
    store = JobStore(home / "jobs.sqlite")
    for member in succeeded:
        assert member["preemptions"] >= 1
        record = store.get_job(member["job"])
        assert resumed_from_step(record.checkpoint_uri, 2, record.id) is not None
    # the Optuna study in the job store knows each trial's job
    import optuna

    study = optuna.load_study(study_name=data["id"], storage=f"sqlite:///{home / 'jobs.sqlite'}")
    assert {t.user_attrs["multispot_job"] for t in study.trials} == {m["job"] for m in data["members"]}
    assert all(t.state.is_finished() for t in study.trials)
    # the same table again, by id, and as a table for people
    again = subprocess.run(
        [MULTISPOT, "sweep-status", data["id"], "-o", "json"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert json.loads(again.stdout)["best"]["job"] == data["best"]["job"]
    table = subprocess.run(
        [MULTISPOT, "sweep-status", data["id"]],
        capture_output=True,
        text=True,
        env=dict(env, COLUMNS="200"),
        check=False,
    )
    assert "best: #" in table.stdout and "cost: $" in table.stdout


@pytest.mark.slow
def test_pruned_and_abandoned_trials(home: Path, tmp_path: Path) -> None:
    # parallelism 1 and a seeded grid: the order of trials is fixed, so the bad learning rates
    # that come after a good one are pruned by the median rule
    path = _sweep_file(
        tmp_path,
        """\
        parameters: {lr: {choice: [0.3, 0.001]}, steps: {choice: [30, 31, 32]}}
        objective: {metric: loss}
        algorithm: grid
        seed: 1
        parallelism: 1
        trials: 6
        pruner: {kind: median, startup_trials: 1, warmup_steps: 2}
        """,
        preemptions="none",
    )
    data = api.sweep(path).to_dict()
    outcomes = collections.Counter(m["outcome"] for m in data["members"])
    assert data["state"] == "done" and _ended(data)
    # seed 1 orders the grid 0.3, 0.3, 0.001, 0.3, 0.001, 0.001: each 0.001 comes after a
    # completed 0.3 and falls behind its median (the 0.3 trials tie, and a tie is not pruned)
    assert outcomes == {"succeeded": 3, "pruned": 3}
    for member in data["members"]:
        if member["outcome"] == "pruned":
            assert member["params"]["lr"] == 0.001 and member["job_state"] == "CANCELLED"
            assert member["message"].startswith("pruned at step")
    assert data["best"]["params"]["lr"] == 0.3

    (tmp_path / "b").mkdir()
    path = _sweep_file(
        tmp_path / "b",
        """\
        parameters: {lr: {uniform: [0.1, 0.3]}}
        objective: {metric: loss}
        algorithm: random
        trials: 2
        parallelism: 2
        on_preemption: abandon
        """,
    )
    data = api.sweep(path).to_dict()
    assert data["state"] == "done" and _ended(data)
    assert [m["outcome"] for m in data["members"]] == ["abandoned", "abandoned"]
    assert data["best"] is None
    assert all(m["attempts"] == 1 and m["preemptions"] == 1 for m in data["members"])


@pytest.mark.slow
def test_restart_starts_a_trial_over_in_a_new_job(home: Path, tmp_path: Path) -> None:
    path = _sweep_file(
        tmp_path,
        """\
        parameters: {lr: {uniform: [0.1, 0.3]}}
        objective: {metric: loss}
        algorithm: random
        trials: 1
        on_preemption: restart
        max_restarts: 1
        """,
    )
    data = api.sweep(path).to_dict()
    (member,) = data["members"]
    # each job of the trial is preempted once (the injection is per job): restarted once, then abandoned
    assert len(member["jobs"]) == 2 and member["outcome"] == "abandoned"
    store = JobStore(home / "jobs.sqlite")
    first, second = (store.get_job(j) for j in member["jobs"])
    assert first.checkpoint_uri != second.checkpoint_uri
    assert resumed_from_step(second.checkpoint_uri, 1, second.id) is None  # started from scratch


@pytest.mark.slow
def test_budget_stops_a_sweep(home: Path, tmp_path: Path) -> None:
    # $1800/h: a trial of a second or two costs about a dollar, so a $1.50 budget allows few
    path = _sweep_file(
        tmp_path,
        """\
        parameters: {lr: {uniform: [0.1, 0.3]}}
        objective: {metric: loss}
        algorithm: random
        trials: 8
        budget: 1.5
        """,
        preemptions="none",
        price=1800.0,
    )
    handle = api.sweep(path)
    data = handle.to_dict()
    assert data["state"] == "stopped" and "budget" in data["message"]
    assert len(data["members"]) < 8 and _ended(data)
    assert handle.history()[-1]["cumulative_cost"] == pytest.approx(data["cost"]["actual"])


@pytest.mark.slow
def test_array_tasks_killed_mid_shard_process_each_shard_once(home: Path, tmp_path: Path) -> None:
    shutil.copy(EXAMPLES / "process.py", tmp_path / "process.py")
    log = tmp_path / "shards.log"
    spec = (EXAMPLES / "array.yaml").read_text() + f"env: {{SHARD_LOG: {json.dumps(str(log))}}}\n"
    (tmp_path / "array.yaml").write_text(spec)
    handle = api.array(tmp_path / "array.yaml")
    data = handle.to_dict()
    assert data["state"] == "done" and _ended(data)
    assert [m["outcome"] for m in data["members"]] == ["succeeded"] * 3
    lines = [line.split() for line in log.read_text().splitlines()]
    done = collections.Counter(shard for event, _, shard in lines if event == "done")
    started = collections.Counter(shard for event, _, shard in lines if event == "start")
    shards = [f"part-{i:03d}" for i in range(8)]
    assert done == dict.fromkeys(shards, 1)  # each exactly once to completion
    assert sum(started.values()) > len(shards)  # some were cut off in the middle and done again
    assert sum(m["preemptions"] for m in data["members"]) >= 3
    # each task ran with its own index, count and shards, and its own checkpoint prefix
    for _event, index, shard in lines:
        assert shard in (data["members"][int(index)]["shards"] or [])
    store = JobStore(home / "jobs.sqlite")
    assert len({store.get_job(m["job"]).checkpoint_uri for m in data["members"]}) == 3


def test_cli_refuses_a_bad_sweep_file_with_the_field_path(home: Path, tmp_path: Path) -> None:
    path = _sweep_file(tmp_path, "parameters: {lr: {loguniform: [0, 1]}}\nobjective: {metric: loss}\n")
    env = dict(os.environ, MULTISPOT_HOME=str(home))
    done = subprocess.run(
        [MULTISPOT, "sweep", str(path)], capture_output=True, text=True, env=env, check=False
    )
    assert done.returncode == 2 and "sweep.parameters.lr" in done.stderr and "Traceback" not in done.stderr
    done = subprocess.run(
        [MULTISPOT, "array", str(path), "-o", "json"], capture_output=True, text=True, env=env, check=False
    )
    assert done.returncode == 2 and "sweep.parameters.lr" in done.stdout
    done = subprocess.run(
        [MULTISPOT, "sweep-status", "nope"], capture_output=True, text=True, env=env, check=False
    )
    assert done.returncode == 2 and "no sweep or array" in done.stderr


@pytest.mark.slow
def test_a_sweep_on_postgres(
    home: Path, tmp_path: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MULTISPOT_DB on PostgreSQL: the group rows, the trials' jobs (driven by detached
    controllers that find the store through the same variable) and Optuna's study all live there."""
    import optuna

    from multispot.store import open_store

    monkeypatch.setenv("MULTISPOT_DB", postgres_url)
    path = _sweep_file(
        tmp_path,
        """\
        parameters: {lr: {uniform: [0.1, 0.3]}}
        objective: {metric: loss}
        algorithm: random
        seed: 3
        trials: 3
        parallelism: 2
        pruner: {kind: median, startup_trials: 1, warmup_steps: 2}
        """,
    )
    data = api.sweep(path).to_dict()
    assert data["state"] == "done" and _ended(data) and len(data["members"]) == 3
    assert {m["outcome"] for m in data["members"]} <= {"succeeded", "pruned"}
    assert data["best"] is not None and data["best"]["outcome"] == "succeeded"
    assert not (home / "jobs.sqlite").exists()  # nothing went to the local store
    store = open_store(postgres_url)
    try:
        assert [g.id for g in store.groups()] == [data["id"]]
        for member in data["members"]:
            record = store.get_job(member["job"])
            assert record.options["group"] == data["id"] and record.options["member"] == member["n"]
            if member["outcome"] == "succeeded":  # lost its capacity once, resumed from its checkpoint
                assert member["preemptions"] >= 1
                assert resumed_from_step(record.checkpoint_uri, 2, record.id) is not None
        url, kwargs = store.library_engine("optuna")
    finally:
        store.close()
    study = optuna.load_study(
        study_name=data["id"], storage=optuna.storages.RDBStorage(url, engine_kwargs=kwargs)
    )
    assert {t.user_attrs["multispot_job"] for t in study.trials} == {m["job"] for m in data["members"]}
    assert all(t.state.is_finished() for t in study.trials)
    assert all(t.intermediate_values for t in study.trials)  # the driver reported each one's progress


@pytest.mark.slow
def test_a_trial_gets_the_checks_of_any_submit(home: Path, tmp_path: Path) -> None:
    """Trials go through api.submit: the same sweep file run again, with an explicit checkpoint.uri,
    would have its first trial resume from (and overwrite) the first run's checkpoints; submit
    refuses that, and the sweep stops saying why instead of creating the job."""
    ckpt = tmp_path / "ckpt"
    path = _sweep_file(
        tmp_path,
        """\
        parameters: {lr: {uniform: [0.1, 0.3]}}
        objective: {metric: loss}
        algorithm: random
        trials: 1
        """,
        preemptions="none",
    )
    path.write_text(
        path.read_text().replace("{every_steps: 4}", f"{{every_steps: 4, uri: {json.dumps(str(ckpt))}}}")
    )
    first = api.sweep(path).to_dict()
    assert first["state"] == "done" and first["members"][0]["outcome"] == "succeeded"
    again = api.sweep(path).to_dict()
    assert again["state"] == "stopped"
    assert "trial 0 was refused" in again["message"] and "holds checkpoints" in again["message"]
    (member,) = again["members"]
    assert member["outcome"] == "failed"
    store = JobStore(home / "jobs.sqlite")
    assert [j.id for j in store.jobs()] == [first["members"][0]["job"]]  # no job for the refused trial
    import optuna

    study = optuna.load_study(study_name=again["id"], storage=f"sqlite:///{home / 'jobs.sqlite'}")
    assert [t.state.name for t in study.trials] == ["FAIL"]
